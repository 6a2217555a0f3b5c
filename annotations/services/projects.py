"""Writes of projects, their labels, and users' API tokens."""
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from knox.models import AuthToken

from labelhub.api import DomainError
from labelhub.celery import TaskName, send_task_on_commit

from ..models import Item, Label, Membership, Project


def _checked(obj: Project | Label) -> None:
    """Run the model's validation; its field errors become a 400 naming the fields."""
    try:
        obj.full_clean(validate_unique=True, validate_constraints=True)
    except ValidationError as exc:
        raise DomainError("Invalid input.", details=exc.message_dict) from None


def project_create(*, user: AbstractBaseUser, **fields: Any) -> Project:
    """Create a project (staff only); its creator manages it."""
    if not user.is_staff:
        raise PermissionDenied("Only staff create projects.")
    project = Project(**fields)
    _checked(project)
    try:
        with transaction.atomic():
            project.save()
            Membership.objects.create(project=project, user=user, role=Membership.Role.MANAGER)
            if project.retrain_interval_minutes:
                send_task_on_commit(TaskName.SCHEDULE_SYNC, [project.pk])
    except IntegrityError:  # a concurrent request took the slug between the check and the insert
        raise DomainError("Invalid input.", details={"slug": ["A project with this slug already exists."]}) from None
    return project


def project_update(*, project: Project, **fields: Any) -> Project:
    """Change a project's settings; a new overlap re-marks items done, a new retrain interval moves its beat entry."""
    before = (project.overlap, project.retrain_interval_minutes)
    for name, value in fields.items():
        setattr(project, name, value)
    _checked(project)
    with transaction.atomic():
        project.save()
        if project.overlap != before[0]:
            project_overlap_apply(project)
        if project.retrain_interval_minutes != before[1]:
            send_task_on_commit(TaskName.SCHEDULE_SYNC, [project.pk])
    return project


def project_overlap_apply(project: Project) -> int:
    """Mark the project's items done or not again after its overlap changed; the number of items that changed.

    Raising the overlap puts labeled items back in the queue; their scores were dropped when
    they were done, so the pool is rescored (after commit) for the queue to rank them again.
    """
    with transaction.atomic():
        items = Item.objects.filter(project=project)
        reopened = items.filter(queue_done=True, label_count__lt=project.overlap).update(queue_done=False)
        closed = items.filter(queue_done=False, label_count__gte=project.overlap).update(queue_done=True)
        if reopened:
            send_task_on_commit(TaskName.SCORE_POOL, [project.pk])
    return reopened + closed


def label_create(*, project: Project, **fields: Any) -> Label:
    """Add a label to the project; a duplicate name or shortcut is a 400 on that field."""
    label = Label(project=project, **fields)
    _checked(label)
    try:
        with transaction.atomic():
            label.save()
    except IntegrityError:  # a concurrent request took the name or shortcut between the check and the insert
        raise DomainError("A label with this name or shortcut already exists in the project.") from None
    return label


def label_update(*, label: Label, **fields: Any) -> Label:
    """Rename, recolour, reorder or re-key a label."""
    for name, value in fields.items():
        setattr(label, name, value)
    _checked(label)
    try:
        with transaction.atomic():
            label.save()
    except IntegrityError:
        raise DomainError("A label with this name or shortcut already exists in the project.") from None
    return label


def api_token_regenerate(*, user: AbstractBaseUser) -> tuple[AuthToken, str]:
    """Give the user a new API token, and the token itself, which is not stored (only its digest is)
    and so can be shown this once; the user's previous token stops working at once."""
    with transaction.atomic():
        AuthToken.objects.filter(user=user).delete()
        return AuthToken.objects.create(user=user)


def api_token_revoke(*, user: AbstractBaseUser) -> bool:
    """Delete the user's API token; whether there was one."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return bool(deleted)
