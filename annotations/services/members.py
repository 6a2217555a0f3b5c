"""Writes of a project's team: add a member, change a role, remove one, invite by email, accept an invitation.

A project always keeps one manager at least: the last one can be neither demoted nor removed. Each
write that could take the last manager away locks the project's row first, so that two managers
demoting each other at once cannot both succeed.
"""
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from labelhub.api import Conflict, DomainError, NotFound

from ..models import INVITABLE_ROLES, Invitation, Lease, Membership, Project
from ..selectors.members import invitation_check, invitation_token_hash

logger = logging.getLogger(__name__)

INVITATION_TTL = timedelta(days=7)
IDENTIFIER_MAX_CHARS = 254


def _role(role: object) -> str:
    if role not in INVITABLE_ROLES:
        raise DomainError("Choose a role: annotator, reviewer or manager.")
    return str(role)


def _may_join(user: AbstractBaseUser) -> None:
    """Refuse accounts that cannot be a member: deactivated ones and API client accounts."""
    if not user.is_active:
        raise DomainError(f"The account {user.get_username()} is deactivated.")
    if Membership.objects.filter(user=user, role=Membership.Role.CLIENT).exists():
        raise DomainError(f"{user.get_username()} is an API client account; it cannot be a member.")


def _join(project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Make the user a member with the role; Conflict if they already are one."""
    existing = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    if existing is not None:
        raise Conflict(f"{user.get_username()} is already a member of this project ({existing}).")
    try:
        with transaction.atomic():
            return Membership.objects.create(project=project, user=user, role=role)
    except IntegrityError:
        raise Conflict(f"{user.get_username()} is already a member of this project.") from None


def member_add(*, project: Project, identifier: str, role: str) -> Membership:
    """Add an existing account, named by its username or its email, to the project with the role."""
    role = _role(role)
    identifier = identifier.strip() if isinstance(identifier, str) else ""
    if not identifier or len(identifier) > IDENTIFIER_MAX_CHARS:
        raise DomainError("Give the username or email of an existing account.")
    User = get_user_model()
    user = User.objects.filter(username=identifier).first()
    if user is None and "@" in identifier:
        matches = list(User.objects.filter(email__iexact=identifier)[:2])
        if len(matches) > 1:
            raise Conflict(f"Several accounts use {identifier}; add by username instead.")
        user = matches[0] if matches else None
    if user is None:
        raise NotFound(f"No account has the username or email {identifier!r}. Invite them by email instead.")
    _may_join(user)
    return _join(project, user, role)


def _manager_count_locked(project: Project, membership: Membership) -> tuple[str | None, int]:
    """The member's role now, and how many other managers the project has (its row locked until the commit)."""
    Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True).first()
    current = Membership.objects.filter(pk=membership.pk).values_list("role", flat=True).first()
    managers = Membership.objects.filter(project=project, role=Membership.Role.MANAGER)
    return current, managers.exclude(pk=membership.pk).count()


def member_role_change(*, project: Project, membership: Membership, role: str) -> Membership:
    """Give a member another role; the project's last manager keeps theirs."""
    role = _role(role)
    with transaction.atomic():
        current, others = _manager_count_locked(project, membership)
        if current == Membership.Role.MANAGER and role != current and not others:
            raise Conflict(f"{membership.user.get_username()} is the project's last manager: make someone else "
                           "manager first.")
        if not Membership.objects.filter(pk=membership.pk, project=project, role__in=INVITABLE_ROLES).update(role=role):
            raise NotFound("Member not found in this project.")
    membership.role = role
    return membership


def member_remove(*, project: Project, membership: Membership) -> None:
    """Remove a member from the project and give back the items they hold; the last manager stays."""
    with transaction.atomic():
        current, others = _manager_count_locked(project, membership)
        if current == Membership.Role.MANAGER and not others:
            raise Conflict(f"{membership.user.get_username()} is the project's last manager: make someone else "
                           "manager first.")
        if not Membership.objects.filter(pk=membership.pk, project=project, role__in=INVITABLE_ROLES).delete()[0]:
            raise NotFound("Member not found in this project.")
        Lease.objects.filter(project=project, user_id=membership.user_id, status=Lease.Status.ACTIVE).update(
            status=Lease.Status.RELEASED)


def invitation_create(
    *, project: Project, email: str, role: str, created_by: AbstractBaseUser
) -> tuple[Invitation, str]:
    """Invite an email address to the project with a role; returns the invitation and its token (shown once).

    An earlier pending invitation of the same address is withdrawn: only the newest link works.
    """
    role = _role(role)
    email = email.strip().lower() if isinstance(email, str) else ""
    try:
        if len(email) > IDENTIFIER_MAX_CHARS:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        raise DomainError("Enter a valid email address to invite.") from None
    member = Membership.objects.filter(project=project, user__email__iexact=email).select_related("user").first()
    if member is not None:
        raise Conflict(f"{email} is already a member of this project ({member.user.get_username()}, {member.role}).")
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        Invitation.objects.filter(project=project, email=email, accepted_at__isnull=True,
                                  revoked_at__isnull=True).update(revoked_at=now)
        invitation = Invitation.objects.create(
            project=project, email=email, role=role, token_hash=invitation_token_hash(token),
            created_by=created_by, expires_at=now + INVITATION_TTL,
        )
    return invitation, token


def invitation_email_send(*, invitation: Invitation, link: str) -> bool:
    """Mail the invitation's link when email is configured; whether it was sent (a mail server down is no error)."""
    if not getattr(settings, "LABELHUB_EMAIL_ENABLED", False):
        return False
    inviter = invitation.created_by.get_username() if invitation.created_by else "A manager"
    body = (f"{inviter} invites you to label in the LabelHub project \"{invitation.project.name}\" as "
            f"{invitation.role}.\n\nOpen this link to join (it works once, until "
            f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n{link}\n")
    try:
        send_mail(f"Join {invitation.project.name} on LabelHub", body, None, [invitation.email])
    except OSError:  # smtplib's errors are OSErrors: the manager still has the link to copy
        logger.warning("invitation email to %s not sent", invitation.email, exc_info=True)
        return False
    return True


def invitation_revoke(*, invitation: Invitation) -> None:
    """Withdraw a pending invitation: its link stops working."""
    Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now())


def _claim(invitation: Invitation, user: AbstractBaseUser) -> Membership:
    """Mark the invitation used by the user and make them a member (inside the caller's transaction)."""
    locked = Invitation.objects.select_for_update().select_related("project").filter(pk=invitation.pk).first()
    invitation = invitation_check(locked)
    membership = _join(invitation.project, user, invitation.role)
    Invitation.objects.filter(pk=invitation.pk).update(accepted_at=timezone.now(), accepted_by=user)
    return membership


def invitation_accept(*, invitation: Invitation, user: AbstractBaseUser) -> Membership:
    """A logged-in account accepts the invitation: it becomes a member with the invited role; the link is used up."""
    _may_join(user)
    with transaction.atomic():
        return _claim(invitation, user)


def invitation_register(
    *, invitation: Invitation, username: str, password: str, password_again: str
) -> AbstractBaseUser:
    """Create the invitee's account (the invitation's email, a password that passes the validators) and its membership."""
    User = get_user_model()
    username = username.strip() if isinstance(username, str) else ""
    password = password if isinstance(password, str) else ""
    errors: dict[str, list[str]] = {}
    if not username:
        errors["username"] = ["Choose a username."]
    elif len(username) > 150:
        errors["username"] = ["At most 150 characters."]
    else:
        try:
            User.username_validator(username)
        except ValidationError as exc:
            errors["username"] = list(exc.messages)
    if "username" not in errors and User.objects.filter(username__iexact=username).exists():
        errors["username"] = [f"The username {username} is taken; choose another."]
    if password != password_again:
        errors["password"] = ["The two passwords differ."]
    else:
        try:
            password_validation.validate_password(password, User(username=username, email=invitation.email))
        except ValidationError as exc:
            errors["password"] = list(exc.messages)
    if errors:
        raise DomainError("Your account could not be created.", details=errors)
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, email=invitation.email, password=password)
            _claim(invitation, user)
    except IntegrityError:
        raise Conflict(f"The username {username} is taken; choose another.") from None
    return user
