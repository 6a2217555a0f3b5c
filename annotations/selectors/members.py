"""Reads of a project's team: its members (not its API clients) and its pending invitations."""
import hashlib

from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.utils import timezone

from labelhub.api import ID_MAX, DomainError, NotFound

from ..models import INVITABLE_ROLES, Invitation, Membership, Project

# A token is 43 URL-safe characters (secrets.token_urlsafe(32)); anything much longer is no token of ours.
TOKEN_MAX_CHARS = 100


class InvitationUnusable(DomainError):
    """The invitation was accepted, revoked or has expired: the link works no more (410 Gone)."""

    status_code = 410


def invitation_token_hash(token: str) -> str:
    """The digest stored for an invitation's token."""
    return hashlib.sha256(token.encode()).hexdigest()


def member_list(project: Project) -> QuerySet[Membership]:
    """The project's members with their users, managers first, then reviewers, then annotators (API clients apart)."""
    rank = Case(
        *(When(role=role, then=Value(i)) for i, role in enumerate(reversed(INVITABLE_ROLES))),
        output_field=IntegerField(),
    )
    return (
        Membership.objects.filter(project=project, role__in=INVITABLE_ROLES)
        .select_related("user").annotate(rank=rank).order_by("rank", "user__username", "pk")
    )


def member_client_count(project: Project) -> int:
    """How many API clients the project has (they are managed on their own page)."""
    return Membership.objects.filter(project=project, role=Membership.Role.CLIENT).count()


def member_get(project: Project, membership_id: int) -> Membership:
    """A member of this project (not an API client) by its membership id; NotFound otherwise."""
    if not 0 < int(membership_id) <= ID_MAX:
        raise NotFound("Member not found in this project.")
    membership = (
        Membership.objects.filter(project=project, pk=membership_id, role__in=INVITABLE_ROLES)
        .select_related("user").first()
    )
    if membership is None:
        raise NotFound("Member not found in this project.")
    return membership


def invitation_list_pending(project: Project) -> QuerySet[Invitation]:
    """The project's invitations that can still be accepted, newest first."""
    return Invitation.objects.filter(
        project=project, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).select_related("created_by").order_by("-created_at", "-pk")


def invitation_get_pending(project: Project, invitation_id: int) -> Invitation:
    """A pending invitation of this project; NotFound otherwise."""
    if not 0 < int(invitation_id) <= ID_MAX:
        raise NotFound("Invitation not found in this project.")
    invitation = invitation_list_pending(project).filter(pk=invitation_id).first()
    if invitation is None:
        raise NotFound("Invitation not found in this project (or no longer pending).")
    return invitation


def invitation_check(invitation: Invitation | None) -> Invitation:
    """The invitation if it can be accepted now; NotFound or InvitationUnusable, in words, otherwise."""
    if invitation is None:
        raise NotFound("This invitation link is not known. Check that you copied all of it, or ask for a new one.")
    if invitation.accepted_at is not None:
        raise InvitationUnusable("This invitation has already been used. Log in, or ask the project's manager "
                                 "for a new one.")
    if invitation.revoked_at is not None:
        raise InvitationUnusable("This invitation was withdrawn by the project's manager. Ask them for a new one.")
    if invitation.expires_at <= timezone.now():
        raise InvitationUnusable("This invitation has expired. Ask the project's manager for a new one.")
    return invitation


def invitation_get_by_token(token: str) -> Invitation:
    """The invitation a link's token opens, if it can be accepted now; NotFound or InvitationUnusable otherwise."""
    invitation = None
    if isinstance(token, str) and 0 < len(token) <= TOKEN_MAX_CHARS:
        invitation = (
            Invitation.objects.filter(token_hash=invitation_token_hash(token)).select_related("project").first()
        )
    return invitation_check(invitation)
