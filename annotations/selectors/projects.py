"""Reads of projects and memberships."""
from collections.abc import Collection
from datetime import date, datetime, time, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from labelhub import rows
from labelhub.api import NotFound

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
    ).order_by("name")


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
