"""Reads of a project's API clients: the downstream services that predict and give feedback."""
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, Q, QuerySet

from labelhub.api import NotFound

from ..models import Membership, Project


def _own_account(project: Project) -> Q:
    """Memberships whose user is a client account of this project alone: made for it, no password, no other role.

    Only such an account's token may a manager issue: a token of anyone else would be a way into
    another person's account or another project.
    """
    elsewhere = Membership.objects.filter(user_id=OuterRef("user_id")).exclude(project=project)
    return Q(user__is_staff=False, user__password__startswith=UNUSABLE_PASSWORD_PREFIX) & ~Q(Exists(elsewhere))


def api_client_list(project: Project) -> QuerySet[Membership]:
    """The project's API client memberships with their users; ``managed``: whether its managers issue its tokens."""
    return (
        Membership.objects.filter(project=project, role=Membership.Role.CLIENT)
        .select_related("user")
        .annotate(managed=_own_account(project))
        .order_by("user__username", "pk")
    )


def api_client_get(project: Project, client_id: int) -> AbstractBaseUser:
    """A client account of this project that its managers may issue tokens for or remove; 404 otherwise."""
    if not 0 < int(client_id) < 2**63:
        raise NotFound("API client not found.")
    membership = (
        Membership.objects.filter(project=project, role=Membership.Role.CLIENT, user_id=client_id)
        .filter(_own_account(project)).select_related("user").first()
    )
    if membership is None:
        raise NotFound("API client not found (or not an account of this project alone).")
    return membership.user
