"""Writes of a project's API clients: create one with its token, issue a new token, remove one."""
import re

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from labelhub.api import Conflict, DomainError

from ..models import Membership, Project
from .projects import api_token_regenerate, api_token_revoke

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


def api_client_username(project: Project, name: str) -> str:
    """The account name of a project's client: ``name@project-slug``."""
    return f"{name}@{project.slug}"


def _token_issue(user: AbstractBaseUser) -> str:
    """A new API token for the client account (its previous one stops working); the key, to be shown once."""
    _token, key = api_token_regenerate(user=user)
    return key


def api_client_create(*, project: Project, name: str) -> tuple[AbstractBaseUser, str]:
    """Create an API client of the project: an account without password, a client membership and a token.

    The account belongs to this project alone; it authenticates with its token as any user does.
    Returns the account and the token's key.
    """
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DomainError("Invalid input.", details={"name": [
            "1 to 40 letters, digits, '.', '-' or '_', starting with a letter or digit."]})
    username = api_client_username(project, name)
    User = get_user_model()
    try:
        with transaction.atomic():
            if User.objects.filter(username=username).exists():
                raise IntegrityError
            user = User(username=username)
            user.set_unusable_password()
            user.save()
            Membership.objects.create(project=project, user=user, role=Membership.Role.CLIENT)
            key = _token_issue(user)
    except IntegrityError:
        raise Conflict(f"The name {name!r} is taken in this project; choose another.") from None
    return user, key


def api_client_token_issue(*, client: AbstractBaseUser) -> str:
    """Give a client account a new token; the old one stops working at once. Returns the key."""
    return _token_issue(client)


def api_client_remove(*, project: Project, client: AbstractBaseUser) -> None:
    """Remove a client account from the project: its token is revoked and the account deactivated.

    The account stays (deactivated) so that its predictions keep naming who asked.
    """
    with transaction.atomic():
        Membership.objects.filter(project=project, user=client, role=Membership.Role.CLIENT).delete()
        api_token_revoke(user=client)
        client.is_active = False
        client.save(update_fields=["is_active"])
