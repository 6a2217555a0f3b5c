"""Reads behind the REST lists: projects' labels, items and annotations, filtered."""
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import CharField, Exists, OuterRef, QuerySet, Subquery, Value
from knox.models import AuthToken

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


def _project_annotator_id(project: Project, username: str) -> int | None:
    """The id of the user of that name who is a member of the project or has labeled in it, else None.

    Users outside the project are not found, exactly as names nobody has: a reviewer's filter must
    not tell whether an account exists elsewhere.
    """
    is_member = Membership.objects.filter(project=project, user=OuterRef("pk"))
    has_labeled = Annotation.objects.filter(item__project=project, annotator=OuterRef("pk"))
    return (
        get_user_model().objects.filter(username=username)
        .filter(Exists(is_member) | Exists(has_labeled))
        .values_list("pk", flat=True)
        .first()
    )


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
        user_id = _project_annotator_id(project, annotator)
        if user_id is None:
            message = f"No annotator named {annotator!r} in this project."
            raise DomainError("Invalid input.", details={"annotator": [message]})
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


def api_token_get(user: AbstractBaseUser) -> AuthToken | None:
    """The user's API token (its digest, start and dates; the token itself is not stored), if they have one."""
    return AuthToken.objects.filter(user=user).order_by("-created").first()
