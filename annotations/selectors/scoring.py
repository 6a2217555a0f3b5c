"""Reads for pool scoring: the unlabeled pool, labeled items, scorings and their top-ranked items."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from django.db.models import Exists, Max, OuterRef, Q

from ..models import Annotation, Item, ItemScore, QueueScoring


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


def scoring_current(project_id: int) -> QueueScoring | None:
    """The project's newest complete scoring, the one the queue serves from, or None."""
    return (
        QueueScoring.objects.filter(
            project_id=project_id, status=QueueScoring.Status.COMPLETE, finished_at__isnull=False
        )
        .order_by("-finished_at", "-pk")
        .first()
    )


def scorings_running(project_id: int) -> list[QueueScoring]:
    """The project's scorings still running, oldest first."""
    return list(
        QueueScoring.objects.filter(project_id=project_id, status=QueueScoring.Status.RUNNING).order_by("started_at")
    )


def scoring_get(scoring_id: int) -> QueueScoring | None:
    """The scoring with this id, or None if it is gone."""
    return QueueScoring.objects.filter(pk=scoring_id).first()


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
    """The scoring's ``n`` highest-priority (item_id, priority) pairs, highest first."""
    return list(
        ItemScore.objects.filter(scoring_id=scoring_id).order_by("-priority", "item_id").values_list(
            "item_id", "priority"
        )[:n]
    )


def import_items_unscored(job_ids: Sequence[int], scoring_id: int) -> bool:
    """Whether any item of these import jobs still in the queue lacks a score under the scoring."""
    scored = ItemScore.objects.filter(scoring_id=scoring_id, item_id=OuterRef("pk"))
    return Item.objects.filter(import_job_id__in=job_ids, queue_done=False).filter(~Exists(scored)).exists()
