"""Reads behind the REST lists: projects' labels, items and annotations, filtered."""
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import CharField, OuterRef, QuerySet, Subquery, Value
from rest_framework.authtoken.models import Token

from labelhub.api import DomainError

from ..models import Annotation, Item, Label, Membership, Project


def project_list(user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user can open (all for staff), each with the user's ``role``, in one statement."""
    if user.is_staff:
        return Project.objects.annotate(role=Value("admin", output_field=CharField())).order_by("name", "id")
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return Project.objects.filter(memberships__user=user).annotate(role=Subquery(role)).order_by("name", "id")


def label_list(project: Project) -> QuerySet[Label]:
    """The project's labels in display order."""
    return Label.objects.filter(project=project).order_by("order", "name", "id")


def label_get(project: Project, label_id: int) -> Label | None:
    """One label of the project, or None."""
    return Label.objects.filter(project=project, pk=label_id).first()


def item_list(project: Project) -> QuerySet[Item]:
    """The project's items (the cursor paginator orders them by id)."""
    return Item.objects.filter(project=project).select_related("resolved_label")


def annotation_list(
    project: Project,
    *,
    updated_since: datetime | None = None,
    annotator: str | None = None,
    label: str | None = None,
    reviewed: bool | None = None,
    audit: bool | None = None,
) -> QuerySet[Annotation]:
    """The project's annotations, filtered; an unknown annotator or label name is a 400 on that field."""
    qs = Annotation.objects.filter(item__project=project).select_related(
        "item", "label", "annotator", "predicted_label", "item__resolved_label"
    )
    if updated_since is not None:
        qs = qs.filter(updated_at__gte=updated_since)
    if annotator is not None:
        user_id = get_user_model().objects.filter(username=annotator).values_list("pk", flat=True).first()
        if user_id is None:
            raise DomainError("Invalid input.", details={"annotator": [f"No user named {annotator!r}."]})
        qs = qs.filter(annotator_id=user_id)
    if label is not None:
        label_id = Label.objects.filter(project=project, name=label).values_list("pk", flat=True).first()
        if label_id is None:
            raise DomainError("Invalid input.", details={"label": [f"No label named {label!r} in this project."]})
        qs = qs.filter(label_id=label_id)
    if reviewed is not None:
        qs = qs.filter(item__resolved_label__isnull=not reviewed)
    if audit is not None:
        qs = qs.filter(is_audit=audit)
    return qs


def api_token_get(user: AbstractBaseUser) -> Token | None:
    """The user's API token, if they made one."""
    return Token.objects.filter(user=user).first()
