"""Writes of projects, their labels, and users' API tokens."""
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils.text import slugify
from knox.models import AuthToken

from labelhub.api import DomainError
from labelhub.celery import TaskName, send_task_on_commit

from ..models import Item, Label, Membership, Project
from .labels import checked as _checked
from .labels import label_color_next, label_order_next, labels_create


PROJECT_CREATE_PERMISSION = "annotations.add_project"
SLUG_BASE_MAX = 90  # room for "-" and a number within the slug's 100 characters
SLUG_TRIES = 5


def user_can_create_projects(user: AbstractBaseUser) -> bool:
    """Staff, and users an admin gave the permission to add projects."""
    return bool(user.is_active and (user.is_staff or user.has_perm(PROJECT_CREATE_PERMISSION)))


def project_slug_free(name: str) -> str:
    """A slug for the name that no project has: "Chest X-rays" → "chest-x-rays", then "chest-x-rays-2", …"""
    base = slugify(name)[:SLUG_BASE_MAX].strip("-") or "project"
    taken = set(Project.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    if base not in taken:
        return base
    numbers = [int(s[len(base) + 1:]) for s in taken if s[len(base) + 1:].isdigit() and s[len(base)] == "-"]
    return f"{base}-{max([1, *numbers]) + 1}"


def project_create(
    *, user: AbstractBaseUser, labels: list[Mapping[str, Any]] | None = None, **fields: Any
) -> Project:
    """Create a project with its labels in one transaction; its creator manages it.

    Staff, or a user with the ``annotations.add_project`` permission, may. Without a slug, one is
    derived from the name and made unique. Any bad field or label stores nothing.
    """
    if not user_can_create_projects(user):
        raise PermissionDenied("Only staff, or users allowed to create projects, create projects.")
    derive = not fields.get("slug")
    for _ in range(SLUG_TRIES if derive else 1):
        if derive:
            fields["slug"] = project_slug_free(fields.get("name", ""))
        project = Project(**fields)
        _checked(project)
        try:
            with transaction.atomic():
                project.save()
                Membership.objects.create(project=project, user=user, role=Membership.Role.MANAGER)
                if labels:
                    labels_create(project=project, labels=labels)
                if project.retrain_interval_minutes:
                    send_task_on_commit(TaskName.SCHEDULE_SYNC, [project.pk])
            return project
        except IntegrityError:  # a concurrent request took the slug between the check and the insert
            continue
    raise DomainError("Invalid input.", details={"slug": ["A project with this slug already exists."]})


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
    """Add a label to the project, last unless an order is given, in the palette's next free colour unless one is."""
    if not fields.get("color"):
        fields["color"] = label_color_next(project.labels.values_list("color", flat=True))
    if "order" not in fields:
        fields["order"] = label_order_next(project)
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
