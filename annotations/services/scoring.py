"""Pool scorings: their rows, which say the scoring the queue serves; item scores in ``score_storage``."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import Project, QueueScoring
from .score_partitions import item_scores_partition_create, item_scores_prune


def scoring_start(
    *, project_id: int, model_version: int, strategy: str, items_total: int,
    chunk_ranges: Sequence[tuple[int, int]] | None = None, chunks_total: int | None = None,
) -> QueueScoring:
    """Record a new running scoring of the project's pool, planned as these chunks, and create its partition.

    ``chunks_total`` without ``chunk_ranges`` records chunks whose ranges come later
    (``scoring_chunks_record``); until then reconciliation cannot send them again.
    """
    if strategy not in Project.Strategy.values:
        raise ValueError(f"unknown strategy {strategy!r}")
    ranges = np.asarray(list(chunk_ranges or []), dtype="<i8").reshape(-1, 2)
    total = len(ranges) if chunk_ranges is not None else chunks_total or 0
    with transaction.atomic():
        scoring = QueueScoring.objects.create(
            project_id=project_id, model_version=model_version, strategy=strategy, chunks_total=total,
            items_total=items_total, chunk_ranges=ranges.tobytes(), chunks_stored=bytes((total + 7) // 8),
        )
        if connection.vendor == "postgresql":
            # Committed at once with the row: the lock it takes holds up every reader of the table.
            item_scores_partition_create(scoring.pk)
    return scoring


def scoring_chunks_record(scoring_id: int, chunk_ranges: Sequence[tuple[int, int]], *, items_total: int) -> None:
    """Record the item id ranges of a scoring's chunks, planned after it started, and how many items they hold."""
    ranges = np.asarray(list(chunk_ranges), dtype="<i8").reshape(-1, 2)
    QueueScoring.objects.filter(pk=scoring_id).update(chunk_ranges=ranges.tobytes(), items_total=items_total)


def scoring_complete(scoring_id: int) -> bool:
    """Make a running scoring the one the queue serves, then drop the rows of the project's older scorings.

    Returns False, changing nothing, if the scoring is no longer running. A scoring that finishes
    after a newer one has completed is marked failed (superseded) instead, so the queue never
    goes back to an older ranking. Running scorings older than this one are superseded too.
    """
    project_id = QueueScoring.objects.values_list("project_id", flat=True).get(pk=scoring_id)
    with transaction.atomic():
        # Locking all the project's live scorings in id order serialises finishers of one project.
        scorings = list(
            QueueScoring.objects.select_for_update(no_key=True)
            .filter(project_id=project_id)
            .exclude(status=QueueScoring.Status.FAILED)
            .order_by("pk")
            .only("pk", "status")
        )
        this = next((s for s in scorings if s.pk == scoring_id), None)
        if this is None or this.status != QueueScoring.Status.RUNNING:
            return False
        now = timezone.now()
        newer_complete = [s.pk for s in scorings if s.pk > scoring_id and s.status == QueueScoring.Status.COMPLETE]
        if newer_complete:
            QueueScoring.objects.filter(pk=scoring_id).update(
                status=QueueScoring.Status.FAILED, finished_at=now,
                error=f"Superseded: scoring {newer_complete[-1]} completed first.",
            )
            return False
        QueueScoring.objects.filter(pk=scoring_id).update(status=QueueScoring.Status.COMPLETE, finished_at=now)
        older_running = [s.pk for s in scorings if s.pk < scoring_id and s.status == QueueScoring.Status.RUNNING]
        QueueScoring.objects.filter(pk__in=older_running).update(
            status=QueueScoring.Status.FAILED, finished_at=now, error=f"Superseded by scoring {scoring_id}."
        )
    # After commit the queue already serves this scoring, so the older rows can go.
    item_scores_prune(project_id, before=scoring_id)
    return True


def scoring_fail(scoring_id: int, error: str) -> bool:
    """Mark a running scoring failed with the reason; the queue keeps serving the previous one."""
    updated = QueueScoring.objects.filter(pk=scoring_id, status=QueueScoring.Status.RUNNING).update(
        status=QueueScoring.Status.FAILED, finished_at=timezone.now(), error=error[:10_000]
    )
    return bool(updated)


def scoring_progress_mark(scoring_id: int, stalled_before: datetime) -> bool:
    """Note that a stalled running scoring was taken care of (its chunks sent again); False if it was not stalled."""
    return bool(
        QueueScoring.objects.filter(pk=scoring_id, status=QueueScoring.Status.RUNNING)
        .filter(Q(progressed_at__lt=stalled_before) | Q(progressed_at__isnull=True, started_at__lt=stalled_before))
        .update(progressed_at=timezone.now())
    )
