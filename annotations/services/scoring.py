"""Pool scorings: their rows and item scores, written here on behalf of learner's scoring tasks."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction
from django.db.models import Case, F, FloatField, Value, When
from django.utils import timezone

from ..models import ItemScore, Project, QueueScoring

logger = logging.getLogger(__name__)

# Ranked (batch) and seed items get priorities from here up, above every uncertainty measure
# (least confident and margin lie in [0, 1], entropy in [0, ln k]), so they are served first.
PRIORITY_BOOST = 1_000_000.0
STORE_FIELDS = ("scoring_id", "item_id", "priority", "predicted_label_id", "confidence")
# PostgreSQL's binary COPY: signature, flags, header extension length; a field count -1 ends it.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)

ScoreRow = tuple[int, float, int | None, float | None]


@dataclass(frozen=True)
class ScoreColumns:
    """Many items' scores as parallel arrays; the fast form of (item_id, priority, label_id, confidence) rows.

    ``predicted_label_ids`` and ``confidences`` are None for rows that have no model behind them.
    """

    item_ids: np.ndarray
    priorities: np.ndarray
    predicted_label_ids: np.ndarray | None = None
    confidences: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_rows(cls, rows: Iterable[ScoreRow]) -> list[ScoreColumns]:
        """Group rows by which of their optional values are missing, one set of columns per group."""
        groups: dict[tuple[bool, bool], list[ScoreRow]] = {}
        for row in rows:
            groups.setdefault((row[2] is None, row[3] is None), []).append(row)
        out = []
        for (no_label, no_confidence), group in groups.items():
            item_ids, priorities, labels, confidences = zip(*group, strict=True)
            out.append(cls(
                np.asarray(item_ids, dtype=np.int64), np.asarray(priorities, dtype=np.float64),
                None if no_label else np.asarray(labels, dtype=np.int64),
                None if no_confidence else np.asarray(confidences, dtype=np.float64),
            ))
        return out


def scoring_start(
    *, project_id: int, model_version: int, strategy: str, chunks_total: int, items_total: int
) -> QueueScoring:
    """Record a new running scoring of the project's pool."""
    if strategy not in Project.Strategy.values:
        raise ValueError(f"unknown strategy {strategy!r}")
    return QueueScoring.objects.create(
        project_id=project_id, model_version=model_version, strategy=strategy,
        chunks_total=chunks_total, items_total=items_total,
    )


def item_scores_clear(scoring_id: int, *, item_range: tuple[int, int]) -> int:
    """Delete the scoring's rows of items with ids in the inclusive range; return how many there were."""
    lo, hi = item_range
    deleted, _ = ItemScore.objects.filter(scoring_id=scoring_id, item__gte=lo, item__lte=hi).delete()
    return deleted


def item_scores_store(scoring_id: int, rows: ScoreColumns | Iterable[ScoreRow]) -> int:
    """Store item scores under the scoring, given as ScoreColumns or (item_id, priority, label_id, confidence) rows.

    Returns how many rows were stored. Rows are inserted as they are: a chunk stored again must
    clear its earlier rows first (item_scores_clear, in the same transaction).
    """
    groups = [rows] if isinstance(rows, ScoreColumns) else ScoreColumns.from_rows(rows)
    groups = [group for group in groups if len(group)]
    if not groups:
        return 0
    if connection.vendor == "postgresql":
        _copy(scoring_id, groups)
    else:
        ItemScore.objects.bulk_create(
            [ItemScore(scoring_id=scoring_id, **fields) for group in groups for fields in _fields(group)],
            batch_size=5000,
        )
    return sum(len(group) for group in groups)


def scoring_chunk_done(scoring_id: int, items: int) -> bool:
    """Count one finished chunk of ``items`` scored items; True for the call that finishes the last chunk.

    A scoring that is no longer running (failed or superseded) counts nothing and returns False.
    """
    with transaction.atomic():
        # The row lock orders concurrent chunks, so exactly one of them sees the count reach the total.
        # NO KEY UPDATE: other chunks' foreign-key checks hold KEY SHARE on this row until they
        # commit, which a plain FOR UPDATE would wait for (and deadlock with).
        scoring = QueueScoring.objects.select_for_update(no_key=True).only("status", "chunks_done", "chunks_total").get(
            pk=scoring_id
        )
        if scoring.status != QueueScoring.Status.RUNNING:
            return False
        QueueScoring.objects.filter(pk=scoring_id).update(
            chunks_done=F("chunks_done") + 1, items_scored=F("items_scored") + items
        )
        return scoring.chunks_done + 1 == scoring.chunks_total


def scoring_complete(scoring_id: int) -> bool:
    """Make a running scoring the one the queue serves, then delete the rows of the project's older scorings.

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
    older = QueueScoring.objects.filter(project_id=project_id, pk__lt=scoring_id)
    deleted, _ = ItemScore.objects.filter(scoring__in=older).delete()
    if deleted:
        logger.info("Scoring %s complete; deleted %s scores of older scorings", scoring_id, deleted)
    return True


def scoring_fail(scoring_id: int, error: str) -> bool:
    """Mark a running scoring failed with the reason; the queue keeps serving the previous one."""
    updated = QueueScoring.objects.filter(pk=scoring_id, status=QueueScoring.Status.RUNNING).update(
        status=QueueScoring.Status.FAILED, finished_at=timezone.now(), error=error[:10_000]
    )
    return bool(updated)


def item_scores_reprioritise(scoring_id: int, item_ids_in_order: Sequence[int]) -> int:
    """Put these items above every other item of the scoring, the first one highest; return rows changed.

    The new priorities depend only on the order given, so running this again changes nothing.
    """
    if not item_ids_in_order:
        return 0
    n = len(item_ids_in_order)
    ranks = Case(
        *(When(item_id=item_id, then=Value(PRIORITY_BOOST + n - rank)) for rank, item_id in enumerate(item_ids_in_order)),
        output_field=FloatField(),
    )
    return ItemScore.objects.filter(scoring_id=scoring_id, item_id__in=item_ids_in_order).update(priority=ranks)


def _fields(group: ScoreColumns) -> Iterable[dict]:
    n = len(group)
    labels = group.predicted_label_ids.tolist() if group.predicted_label_ids is not None else [None] * n
    confidences = group.confidences.tolist() if group.confidences is not None else [None] * n
    for item_id, priority, label_id, confidence in zip(
        group.item_ids.tolist(), group.priorities.tolist(), labels, confidences, strict=True
    ):
        yield {"item_id": item_id, "priority": priority, "predicted_label_id": label_id, "confidence": confidence}


def _binary_rows(scoring_id: int, group: ScoreColumns) -> bytes:
    """Encode rows as binary COPY tuples with numpy: fixed-width fields, a length of -1 for NULL."""
    fields: list[tuple[str, str, object]] = [
        ("scoring", ">i8", scoring_id), ("item", ">i8", group.item_ids), ("priority", ">f8", group.priorities),
    ]
    if group.predicted_label_ids is not None:
        fields.append(("label", ">i8", group.predicted_label_ids))
    if group.confidences is not None:
        fields.append(("confidence", ">f8", group.confidences))
    layout = [("count", ">i2")]
    for name, kind, _ in fields:
        layout += [(f"{name}_len", ">i4"), (name, kind)]
    nulls = [(name, ">i4") for name, present in (
        ("label_null", group.predicted_label_ids is not None), ("confidence_null", group.confidences is not None)
    ) if not present]
    # NULL columns are written after the present ones, so the COPY column list is reordered to match.
    tuples = np.empty(len(group), dtype=np.dtype(layout + nulls))
    tuples["count"] = len(STORE_FIELDS)
    for name, _, values in fields:
        tuples[f"{name}_len"] = 8
        tuples[name] = values
    for name, _ in nulls:
        tuples[name] = -1
    # Descending priority keeps the inserts into the queue-order index close together.
    return tuples[np.argsort(-group.priorities, kind="stable")].tobytes()


def _copy_columns(group: ScoreColumns) -> str:
    present = ["scoring_id", "item_id", "priority"]
    missing = []
    (present if group.predicted_label_ids is not None else missing).append("predicted_label_id")
    (present if group.confidences is not None else missing).append("confidence")
    return ", ".join(f'"{ItemScore._meta.get_field(name).column}"' for name in present + missing)


def _copy(scoring_id: int, groups: list[ScoreColumns]) -> None:
    """Insert rows with binary COPY, about an order of magnitude faster than a multi-row INSERT."""
    table = ItemScore._meta.db_table
    with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
        for group in groups:
            statement = f'COPY "{table}" ({_copy_columns(group)}) FROM STDIN (FORMAT BINARY)'
            with cursor.cursor.copy(statement) as copy:
                copy.write(COPY_HEADER + _binary_rows(scoring_id, group) + COPY_TRAILER)
