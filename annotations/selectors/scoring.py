"""Reads for pool scoring: the unlabeled pool, labeled items, scorings and their top-ranked items."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from django.db import connection
from django.db.models import BooleanField, Exists, Max, OuterRef, Q
from django.db.models.expressions import RawSQL

from labelhub import rows

from ..models import Annotation, Item, ItemScore, Project, QueueScoring


def pool_unlabeled_item_ids(project_id: int) -> np.ndarray:
    """Ids of the project's items still in the queue (not labeled as often as the overlap asks), ascending."""
    ids = Item.objects.filter(project_id=project_id, queue_done=False).order_by("pk").values_list("pk", flat=True)
    return np.fromiter(ids.iterator(chunk_size=100_000), dtype=np.int64)


def queue_done_item_ids(project_id: int, id_range: tuple[int, int] | None = None) -> np.ndarray:
    """Ids of the project's items labeled as often as the overlap asks (optionally within an inclusive id range)."""
    # label_count > 0 holds for every done item and lets the labeled items' partial index serve this.
    done = Item.objects.filter(project_id=project_id, label_count__gt=0, queue_done=True)
    if id_range is not None:
        done = done.filter(pk__gte=id_range[0], pk__lte=id_range[1])
    return np.fromiter(done.order_by("pk").values_list("pk", flat=True).iterator(), dtype=np.int64)


def labeled_item_ids(project_id: int, limit: int | None = None) -> list[int]:
    """Ids of the project's items that have at least one label, most recently labeled first."""
    newest = (
        Annotation.objects.filter(item__project_id=project_id)
        .values("item_id")
        .annotate(last=Max("pk"))
        .order_by("-last")
        .values_list("item_id", flat=True)
    )
    return list(newest if limit is None else newest[:limit])


def scoring_current_id_sql(project: str) -> str:
    """SQL for the id of a project's newest complete scoring, the one the queue serves (NULL if none), as a subquery.

    ``project`` is the SQL of the project's id: a column of the outer statement, or a placeholder.
    Every read of the served scoring goes through this, the queue's hot statements included.
    Uses index: scoring_newest_complete (project, status, finished_at DESC).
    """
    return (
        f"SELECT s.id FROM {rows.qn(QueueScoring._meta.db_table)} s WHERE s.project_id = {project}"
        f" AND s.status = '{QueueScoring.Status.COMPLETE.value}' AND s.finished_at IS NOT NULL"
        " ORDER BY s.finished_at DESC, s.id DESC LIMIT 1"
    )


def scoring_current(project_id: int) -> QueueScoring | None:
    """The project's newest complete scoring, the one the queue serves from, or None."""
    row = rows.fetch_one(
        f"SELECT {rows.columns(QueueScoring, 'c')} FROM {rows.qn(QueueScoring._meta.db_table)} c"
        f" WHERE c.id = ({scoring_current_id_sql('%s')})",
        [project_id],
    )
    return rows.build(QueueScoring, row)[0] if row else None


def scorings_running(project_id: int) -> list[QueueScoring]:
    """The project's scorings still running, oldest first."""
    return list(
        QueueScoring.objects.filter(project_id=project_id, status=QueueScoring.Status.RUNNING).order_by("started_at")
    )


def scoring_get(scoring_id: int) -> QueueScoring | None:
    """The scoring with this id, or None if it is gone."""
    return QueueScoring.objects.filter(pk=scoring_id).first()


def scoring_ordinal(scoring: QueueScoring) -> int:
    """How many scorings of its project were planned up to this one, itself included (1 for the first)."""
    return QueueScoring.objects.filter(project_id=scoring.project_id, pk__lte=scoring.pk).count()


def scoring_latest_id(project_id: int) -> int:
    """Id of the project's most recently planned scoring in any state, or 0."""
    return QueueScoring.objects.filter(project_id=project_id).aggregate(n=Max("pk"))["n"] or 0


def scoring_newest_standing(project_id: int, *, running_since: datetime, newer_than: int = 0) -> QueueScoring | None:
    """The project's newest scoring that is complete, or running and started after ``running_since``; id above ``newer_than``."""
    return (
        QueueScoring.objects.filter(project_id=project_id, pk__gt=newer_than)
        .filter(
            Q(status=QueueScoring.Status.COMPLETE)
            | Q(status=QueueScoring.Status.RUNNING, started_at__gt=running_since)
        )
        .order_by("-pk")
        .first()
    )


def item_scores_top(scoring_id: int, n: int) -> list[tuple[int, float]]:
    """The scoring's ``n`` highest-priority (item_id, priority) pairs, highest first.

    Read from the head (and its index) while only the head is indexed, unless it holds fewer.
    """
    scores = ItemScore.objects.filter(scoring_id=scoring_id).order_by("-priority", "item_id")
    floor = QueueScoring.objects.filter(pk=scoring_id).values_list("head_floor", flat=True).first()
    if floor is not None:
        top = list(scores.filter(RawSQL(head_at_least(floor), [], output_field=BooleanField())).values_list(
            "item_id", "priority"
        )[:n])
        if len(top) == n:
            return top
    return list(scores.values_list("item_id", "priority")[:n])


def import_items_unscored(job_ids: Sequence[int], scoring_id: int) -> bool:
    """Whether any item of these import jobs still in the queue lacks a score under the scoring."""
    scored = ItemScore.objects.filter(scoring_id=scoring_id, item_id=OuterRef("pk"))
    return Item.objects.filter(import_job_id__in=job_ids, queue_done=False).filter(~Exists(scored)).exists()


def scoring_partition(scoring_id: int) -> str:
    """The name of the scoring's own partition of the item-score table (PostgreSQL)."""
    return f"{ItemScore._meta.db_table}_s{int(scoring_id)}"


def item_score_partitions() -> list[int]:
    """Ids of the scorings that have a partition of their own (PostgreSQL; none elsewhere), ascending."""
    if connection.vendor != "postgresql":
        return []
    prefix = f"{ItemScore._meta.db_table}_s"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [ItemScore._meta.db_table],
        )
        names = [row[0] for row in cursor.fetchall()]
    return sorted(int(name[len(prefix):]) for name in names if name.startswith(prefix) and name[len(prefix):].isdigit())


def head_at_least(floor: float) -> str:
    """The head's condition with the floor as a literal (float8, written so that it reads back exactly):
    the planner uses the partial index only for a query whose condition it can prove implies it."""
    return f"priority >= float8 '{float(floor)!r}'"


def head_condition(scoring: QueueScoring, alias: str) -> str:
    """The SQL condition on ``alias``.priority keeping the scoring's head, or "" if the whole pool is indexed."""
    if scoring.head_floor is None:
        return ""
    return f"{alias}.{head_at_least(scoring.head_floor)}"


def scorings_served() -> dict[int, int]:
    """Each project's served scoring (its newest complete one) by project id, for the projects that have one."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.id, ({scoring_current_id_sql('p.id')}) FROM {rows.qn(Project._meta.db_table)} p ORDER BY p.id"
        )
        return {project_id: scoring_id for project_id, scoring_id in cursor.fetchall() if scoring_id is not None}


def scorings_stalled(stalled_before: datetime) -> list[QueueScoring]:
    """Running scorings with planned chunks that stored no chunk since ``stalled_before``."""
    return list(
        QueueScoring.objects.filter(status=QueueScoring.Status.RUNNING, chunks_total__gt=0)
        .filter(Q(progressed_at__lt=stalled_before) | Q(progressed_at__isnull=True, started_at__lt=stalled_before))
        .order_by("pk")
    )


def scorings_served_from_head(finished_before: datetime) -> list[int]:
    """Served scorings, complete before ``finished_before``, whose queue index still covers only their head."""
    served = scorings_served()
    return sorted(
        QueueScoring.objects.filter(
            pk__in=served.values(), head_floor__isnull=False, finished_at__lt=finished_before
        ).values_list("pk", flat=True)
    )


def scorings_served_without_rows() -> list[tuple[int, int]]:
    """(project, served scoring) pairs whose scoring has a partition with no rows although it scored items.

    An UNLOGGED partition is emptied when the database recovers from a crash; the queue would
    then serve only random items until the next scoring.
    """
    partitions = set(item_score_partitions())
    gone = []
    for project_id, scoring_id in sorted(scorings_served().items()):
        if scoring_id not in partitions:
            continue
        if not QueueScoring.objects.filter(pk=scoring_id, items_scored__gt=0).exists():
            continue
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{scoring_partition(scoring_id)}")')
            if not cursor.fetchone()[0]:
                gone.append((project_id, scoring_id))
    return gone
