"""Reads of projects, memberships, labels, items and annotations, and users' API tokens."""
from collections.abc import Collection
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import CharField, Count, Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from knox.models import AuthToken

from labelhub import rows
from labelhub.api import DomainError, NotFound

from ..models import Annotation, Item, Label, Membership, Project


def project_list_for_user(user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user can open: all for staff, their memberships otherwise."""
    qs = Project.objects.all()
    if not user.is_staff:
        # An API client's project has no page it may open.
        qs = qs.filter(memberships__user=user, memberships__role__in=LADDER)
    return qs.annotate(
        item_count=Count("items", distinct=True),
        labeled_count=Count("items", filter=Q(items__annotations__isnull=False), distinct=True),
    ).order_by("name", "id")


def project_list_with_role(user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user belongs to in any role (all for staff), each with the user's ``role``, in one statement."""
    if user.is_staff:
        return Project.objects.annotate(role=Value("admin", output_field=CharField())).order_by("name", "id")
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return Project.objects.filter(memberships__user=user).annotate(role=Subquery(role)).order_by("name", "id")


def membership_role(user: AbstractBaseUser, project: Project) -> str | None:
    """Return the user's role in the project ('admin' for staff), or None."""
    if user.is_staff:
        return "admin"
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


# An API client ranks below every role of the ladder: a minimum role never admits it; the few
# endpoints it may use (predict, feedback) name it in ``also``.
ROLE_RANK = {"client": 0, "annotator": 1, "reviewer": 2, "manager": 3, "admin": 4}
LADDER = (Membership.Role.ANNOTATOR, Membership.Role.REVIEWER, Membership.Role.MANAGER)


def project_get_for_user(
    user: AbstractBaseUser, project_id: int, *, min_role: str = "annotator", also: Collection[str] = ()
) -> Project:
    """Return the project if the user holds at least ``min_role`` in it, or a role in ``also``; 404 otherwise."""
    if not 0 < int(project_id) < 2**63:
        raise NotFound("Project not found.")
    # One statement for the project and the user's role: every request of the queue starts here.
    row = rows.fetch_one(
        f"SELECT {rows.columns(Project, 'p')}, (SELECT m.{rows.qn('role')} FROM {rows.qn(Membership._meta.db_table)} m"
        f" WHERE m.{rows.qn('project_id')} = p.{rows.qn('id')} AND m.{rows.qn('user_id')} = %s)"
        f" FROM {rows.qn(Project._meta.db_table)} p WHERE p.{rows.qn('id')} = %s",
        [user.pk, int(project_id)],
    )
    project, end = rows.build(Project, row) if row else (None, 0)
    role = ("admin" if user.is_staff else row[end]) if project else None
    if project is None or role is None or (ROLE_RANK[role] < ROLE_RANK[min_role] and role not in also):
        # Not telling a stranger whether the project exists.
        raise NotFound("Project not found.")
    project.viewer_role = role  # the role just read, so that a page need not ask again
    return project


def project_labels(project: Project) -> list[Label]:
    """The project's labels in display order."""
    return list(project.labels.order_by("order", "name"))


def project_labels_with_usage(project: Project) -> list[Label]:
    """The project's labels in display order, each with ``annotation_count``: the experts' annotations that name it."""
    count = (Annotation.objects.filter(label=OuterRef("pk")).order_by().values("label")
             .annotate(n=Count("*")).values("n"))
    return list(project.labels.annotate(annotation_count=Coalesce(Subquery(count), 0)).order_by("order", "name"))


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


def project_counts(project: Project) -> dict[str, int]:
    """Pool, labeled and annotation counts of a project."""
    items = Item.objects.filter(project=project)
    return {
        "items": items.count(),
        "labeled": items.filter(annotations__isnull=False).distinct().count(),
        "annotations": Annotation.objects.filter(item__project=project).count(),
    }


def project_dashboard_counts(project_id: int) -> dict[str, int]:
    """Pool, labeled, done and audit item counts and the annotation count of a project, in two statements."""
    items = Item.objects.filter(project_id=project_id).aggregate(
        pool=Count("pk"), done=Count("pk", filter=Q(queue_done=True))
    )
    annotations = Annotation.objects.filter(item__project_id=project_id).aggregate(
        annotations=Count("pk"),
        labeled=Count("item_id", distinct=True),
        audit=Count("item_id", filter=Q(is_audit=True), distinct=True),
    )
    return {**items, **annotations}


def labels_per_day(project_id: int, days: int = 30) -> tuple[list[date], dict[str, list[int]]]:
    """The last ``days`` local days and, per expert (busiest first), their labels on each of those days."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first, time.min))
    rows = (
        Annotation.objects.filter(item__project_id=project_id, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values_list("day", "annotator__username")
        .annotate(n=Count("pk"))
        .order_by()
    )
    calendar = [first + timedelta(days=i) for i in range(days)]
    index = {day: i for i, day in enumerate(calendar)}
    per_expert: dict[str, list[int]] = {}
    for day, username, n in rows:
        if day in index:
            per_expert.setdefault(username, [0] * days)[index[day]] += n
    return calendar, dict(sorted(per_expert.items(), key=lambda kv: (-sum(kv[1]), kv[0])))
