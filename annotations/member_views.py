"""Server-rendered pages of a project's team: the Members page (managers) and the public page an invitation opens."""
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from labelhub.api import DomainError, NotFound

from . import selectors, services
from .models import INVITABLE_ROLES, Invitation, Membership, Project
from .view_helpers import project_or_404

ROLE_CHOICES = [(role.value, role.label) for role in INVITABLE_ROLES]


def _error_text(exc: DomainError) -> str:
    reasons = [" ".join(map(str, r)) for r in (exc.details or {}).values()] if isinstance(exc.details, dict) else []
    return " ".join([exc.message, *reasons])


def _posted_id(request: HttpRequest, name: str, what: str) -> int:
    try:
        return int(request.POST.get(name, ""))
    except ValueError:
        raise NotFound(f"{what} not found in this project.") from None


def _membership_action(request: HttpRequest, project: Project, action: str) -> HttpResponse:
    """Change a member's role or remove them; a manager who steps down themselves leaves for a page still theirs."""
    membership = selectors.member_get(project, _posted_id(request, "membership_id", "Member"))
    name = membership.user.get_username()
    yourself = membership.user_id == request.user.pk
    if action == "role":
        services.member_role_change(project=project, membership=membership, role=request.POST.get("role"))
        messages.success(request, f"{name} is now {membership.get_role_display().lower()}.")
        if yourself and membership.role != Membership.Role.MANAGER and not request.user.is_staff:
            return redirect("project-detail", project.pk)
    else:
        services.member_remove(project=project, membership=membership)
        messages.success(request, f"{name} is removed from the project; items they held are back in the queue.")
        if yourself and not request.user.is_staff:
            return redirect("home")
    return redirect("project-members", project.pk)


def _invite(request: HttpRequest, project: Project) -> dict:
    invitation, token = services.invitation_create(
        project=project, email=request.POST.get("email", ""), role=request.POST.get("role"), created_by=request.user,
    )
    link = request.build_absolute_uri(reverse("invitation-accept", args=[token]))
    sent = services.invitation_email_send(invitation=invitation, link=link)
    return {"invitation": invitation, "link": link, "sent": sent}


def _act(request: HttpRequest, project: Project) -> HttpResponse | dict:
    """Carry out the posted action; a redirect, or the invitation just made (its link is shown once)."""
    action = request.POST.get("action")
    if action == "add":
        membership = services.member_add(
            project=project, identifier=request.POST.get("user", ""), role=request.POST.get("role"))
        messages.success(request, f"{membership.user.get_username()} is added as "
                                  f"{membership.get_role_display().lower()}.")
    elif action == "invite":
        return _invite(request, project)
    elif action in ("role", "remove"):
        return _membership_action(request, project, action)
    elif action == "revoke":
        invitation = selectors.invitation_get_pending(project, _posted_id(request, "invitation_id", "Invitation"))
        services.invitation_revoke(invitation=invitation)
        messages.success(request, f"The invitation of {invitation.email} is withdrawn: its link no longer works.")
    else:
        raise DomainError("Unknown action.")
    return redirect("project-members", project.pk)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def project_members(request: HttpRequest, project_id: int) -> HttpResponse:
    """A project's team (managers): add an account, invite by email, change a role, remove a member, revoke.

    An invitation's link is shown in the answer to the POST that made it, never stored for a later page.
    """
    project = project_or_404(request, project_id, "manager")
    issued, status = None, 200
    if request.method == "POST":
        try:
            result = _act(request, project)
        except DomainError as exc:
            messages.error(request, _error_text(exc))
            status = exc.status_code
        else:
            if isinstance(result, HttpResponse):
                return result
            issued = result
    return render(request, "annotations/members.html", {
        "project": project, "is_manager": True, "members": selectors.member_list(project),
        "invitations": selectors.invitation_list_pending(project), "issued": issued,
        "client_count": selectors.member_client_count(project), "roles": ROLE_CHOICES,
        "form": request.POST if status != 200 else {},
    }, status=status)


def _accept_post(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    action = request.POST.get("action")
    if action == "accept" and request.user.is_authenticated:
        services.invitation_accept(invitation=invitation, user=request.user)
    elif action == "register" and not request.user.is_authenticated:
        user = services.invitation_register(
            invitation=invitation, username=request.POST.get("username", ""),
            password=request.POST.get("password", ""), password_again=request.POST.get("password_again", ""),
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    elif request.user.is_authenticated:
        raise DomainError(f"You are logged in as {request.user.get_username()}: accept as this account, "
                          "or log out first to create another.")
    else:
        raise DomainError("Create your account below, or log in to accept as an account you have.")
    messages.success(request, f"Welcome to {invitation.project.name}. Your role here: "
                              f"{invitation.get_role_display().lower()}.")
    return redirect("project-detail", invitation.project_id)


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The page an invitation's link opens: a visitor creates an account, a logged-in user accepts as themselves."""
    template = "annotations/invitation_accept.html"
    try:
        invitation = selectors.invitation_get_by_token(token)
    except DomainError as exc:
        return render(request, template, {"problem": exc.message}, status=exc.status_code)
    context = {
        "invitation": invitation,
        "login_url": f"{reverse('login')}?{urlencode({'next': request.path})}",
        "current_role": (selectors.membership_role(request.user, invitation.project)
                         if request.user.is_authenticated else None),
    }
    if request.method == "POST":
        try:
            return _accept_post(request, invitation)
        except selectors.InvitationUnusable as exc:
            return render(request, template, {"problem": exc.message}, status=exc.status_code)
        except DomainError as exc:
            context.update(error=exc.message, errors=exc.details if isinstance(exc.details, dict) else {},
                           username=request.POST.get("username", "")[:150])
            return render(request, template, context, status=exc.status_code)
    return render(request, template, context)
