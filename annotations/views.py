"""Server-rendered pages of projects, item media, the API token and API clients."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from labelhub.api import DomainError, NotFound

from . import selectors, services
from .exports.links import item_image_signature_valid
from .models import Item
from .view_helpers import project_or_404


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    return render(request, "annotations/project_list.html", {
        "projects": selectors.project_list_for_user(request.user),
        "can_create": services.user_can_create_projects(request.user),
    })


@login_required
@require_GET
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    role = selectors.membership_role(request.user, project)
    return render(
        request,
        "annotations/project_detail.html",
        {
            "project": project,
            "counts": selectors.project_counts(project),
            "labels": selectors.project_labels(project),
            "can_import": selectors.ROLE_RANK[role] >= selectors.ROLE_RANK["manager"],
            "is_manager": selectors.ROLE_RANK[role] >= selectors.ROLE_RANK["manager"],
            "can_review": selectors.ROLE_RANK[role] >= selectors.ROLE_RANK["reviewer"],
        },
    )


@require_GET
def item_media(request: HttpRequest, item_id: int, variant: str) -> HttpResponse:
    """Serve an item's image or thumbnail to members of its project, or to a signed link from an export."""
    signature = request.GET.get("sig")
    signed = signature is not None and item_image_signature_valid(item_id, signature)
    if not signed and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    item = get_object_or_404(Item.objects.only("id", "project_id", "image", "thumbnail"), pk=item_id)
    if not signed:
        project_or_404(request, item.project_id)
    field = item.thumbnail if variant == "thumbnail" and item.thumbnail else item.image
    if not field:
        raise Http404("This item has no image.")
    response = FileResponse(field.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_token(request: HttpRequest) -> HttpResponse:
    """Show the user's API token's dates, create (or regenerate) and revoke it.

    A new token is shown in the answer to the POST that made it and never again: only its digest is
    stored. Every answer of this page says ``Cache-Control: no-store``, so no cache keeps one.
    """
    new_key, replaced = None, False
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            if services.api_token_revoke(user=request.user):
                messages.success(request, "Your API token is revoked: requests that send it are refused from now on.")
            return redirect("api-token")
        replaced = selectors.api_token_get(request.user) is not None
        _token, new_key = services.api_token_regenerate(user=request.user)
    context = {"token": selectors.api_token_get(request.user), "new_key": new_key, "replaced": replaced}
    return render(request, "annotations/api_token.html", context)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def project_clients(request: HttpRequest, project_id: int) -> HttpResponse:
    """A project's API clients (managers): create one, give one a new token, remove one.

    A new token is shown in the answer to the POST that made it, never stored for a later page.
    """
    project = project_or_404(request, project_id, "manager")
    issued = None
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "create":
                user, key = services.api_client_create(project=project, name=request.POST.get("name", "").strip())
                issued = {"username": user.get_username(), "key": key}
            elif action in ("token", "remove"):
                try:
                    client_id = int(request.POST.get("client_id", ""))
                except ValueError:
                    raise NotFound("API client not found.") from None
                client = selectors.api_client_get(project, client_id)
                if action == "token":
                    issued = {"username": client.get_username(),
                              "key": services.api_client_token_issue(client=client)}
                else:
                    services.api_client_remove(project=project, client=client)
                    messages.success(request, f"{client.get_username()} is removed: its token no longer works.")
                    return redirect("project-clients", project.pk)
            else:
                raise DomainError("Unknown action.")
        except DomainError as exc:
            reasons = [" ".join(map(str, r)) for r in (exc.details or {}).values()]
            messages.error(request, " ".join([exc.message, *reasons]) if reasons else exc.message)
    return render(request, "annotations/api_clients.html", {
        "project": project, "clients": selectors.api_client_list(project), "issued": issued, "is_manager": True,
        "predict_url": request.build_absolute_uri(reverse("api-predict", args=[project.pk])),
    })
