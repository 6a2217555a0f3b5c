"""Storage of item scores: rows copied in with binary COPY (PostgreSQL) and a bit per chunk, so that a
redelivered chunk stores nothing twice; the partitions they go to are in ``score_partitions``."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import psycopg
from django.db import connection, transaction
from django.db.models import Case, FloatField, Value, When
from django.utils import timezone

from ..models import ItemScore, QueueScoring
from ..selectors.scoring import scoring_partition

_SCORING = QueueScoring._meta.db_table

STORE_FIELDS = ("scoring_id", "item_id", "priority", "predicted_label_id", "confidence")
# PostgreSQL's binary COPY: signature, flags, header extension length; a field count -1 ends it.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)

ScoreRow = tuple[int, float, int | None, float | None]


class ChunkStoredAlready(Exception):
    """The chunk's rows were stored by an earlier delivery of the same chunk."""


class ScoringGone(Exception):
    """The scoring was superseded or failed (its partition may be dropped): its rows would never be served."""


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


def scoring_chunk_ranges(scoring: QueueScoring) -> list[tuple[int, int]]:
    """The scoring's planned chunks' inclusive item id ranges, in chunk order."""
    pairs = np.frombuffer(bytes(scoring.chunk_ranges or b""), dtype="<i8").reshape(-1, 2)
    return [(int(lo), int(hi)) for lo, hi in pairs.tolist()]


def scoring_chunk_is_stored(scoring: QueueScoring, chunk: int) -> bool:
    """Whether the scoring row (as read) has the chunk's rows stored."""
    stored = bytes(scoring.chunks_stored or b"")
    return chunk // 8 < len(stored) and bool(stored[chunk // 8] & (1 << (chunk % 8)))


def item_scores_store(scoring_id: int, rows: ScoreColumns | Iterable[ScoreRow]) -> int:
    """Store item scores under the scoring, given as ScoreColumns or (item_id, priority, label_id, confidence) rows.

    Returns how many rows were stored. Rows are inserted as they are, into the scoring's
    partition or the default one; a planned scoring's chunks go through item_scores_store_chunk.
    """
    groups = _groups(rows)
    if not groups:
        return 0
    if connection.vendor == "postgresql":
        _copy(ItemScore._meta.db_table, scoring_id, groups)
    else:
        _bulk_create(scoring_id, groups)
    return sum(len(group) for group in groups)


def item_scores_store_chunk(scoring_id: int, chunk: int, rows: ScoreColumns | Iterable[ScoreRow]) -> bool:
    """Store one planned chunk's rows and count the chunk, in one transaction; True if it was the last one.

    Raises ChunkStoredAlready (storing nothing) if an earlier delivery of the chunk stored it,
    and ScoringGone if the scoring is no longer running.
    """
    groups = _groups(rows)
    try:
        with transaction.atomic():
            items = sum(len(group) for group in groups)
            if connection.vendor != "postgresql":
                # SQLite's transaction holds the only write lock: count first, then insert.
                last = scoring_chunk_done(scoring_id, items, chunk=chunk)
                _bulk_create(scoring_id, groups)
                return last
            # Straight into the scoring's partition: no routing, and a partition already dropped
            # (a newer scoring completed) fails here instead of filling the default one.
            _copy(scoring_partition(scoring_id), scoring_id, groups)
            # After the rows: the scoring row stays locked from this update until commit, so
            # concurrent chunks serialise only on this one statement.
            return scoring_chunk_done(scoring_id, items, chunk=chunk)
    except psycopg.errors.UndefinedTable:
        raise ScoringGone(f"scoring {scoring_id} has no partition any more") from None


def item_scores_priorities_set(scoring_id: int, priorities: Mapping[int, float]) -> int:
    """Give items of the scoring new priorities, by item id, in one statement; return the rows changed."""
    if not priorities:
        return 0
    new = Case(
        *(When(item_id=item_id, then=Value(float(priority))) for item_id, priority in priorities.items()),
        output_field=FloatField(),
    )
    return ItemScore.objects.filter(scoring_id=scoring_id, item_id__in=list(priorities)).update(priority=new)


def scoring_chunk_done(scoring_id: int, items: int, *, chunk: int | None = None) -> bool:
    """Count one finished chunk of ``items`` scored items; True for the call that finishes the last chunk.

    With ``chunk``, its bit in ``chunks_stored`` is set in the same statement, and a chunk whose
    bit is set already raises ChunkStoredAlready. A scoring that is no longer running (failed or
    superseded) raises ScoringGone with ``chunk``, and otherwise counts nothing and returns False.
    """
    if chunk is None:
        counted = _count_chunk(scoring_id, items)
    elif connection.vendor == "postgresql":
        counted = _count_chunk_postgresql(scoring_id, items, chunk)
    else:
        counted = _count_chunk_portable(scoring_id, items, chunk)
    if counted is None:
        if chunk is not None:
            raise ScoringGone(f"scoring {scoring_id} is not running")
        return False
    chunks_done, chunks_total = counted
    return chunks_done == chunks_total


def _count_chunk(scoring_id: int, items: int) -> tuple[int, int] | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_SCORING} SET chunks_done = chunks_done + 1, items_scored = items_scored + %s,"
            " progressed_at = %s WHERE id = %s AND status = %s RETURNING chunks_done, chunks_total",
            [items, _now(), scoring_id, QueueScoring.Status.RUNNING],
        )
        return cursor.fetchone()


def _count_chunk_postgresql(scoring_id: int, items: int, chunk: int) -> tuple[int, int] | None:
    # One conditional update: concurrent deliveries of a chunk re-check the bit after the row
    # lock, so exactly one sets it, and exactly one chunk sees the count reach the total.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_SCORING} SET chunks_stored = set_bit(chunks_stored, %s, 1), chunks_done = chunks_done + 1,"
            " items_scored = items_scored + %s, progressed_at = %s"
            " WHERE id = %s AND status = %s AND CASE WHEN %s < chunks_total THEN get_bit(chunks_stored, %s) = 0 END"
            " RETURNING chunks_done, chunks_total",
            [chunk, items, _now(), scoring_id, QueueScoring.Status.RUNNING, chunk, chunk],
        )
        counted = cursor.fetchone()
        if counted is not None:
            return counted
        cursor.execute(
            f"SELECT status, CASE WHEN %s < chunks_total THEN get_bit(chunks_stored, %s) = 1 END"
            f" FROM {_SCORING} WHERE id = %s",
            [chunk, chunk, scoring_id],
        )
        row = cursor.fetchone()
    if row is not None and row[0] == QueueScoring.Status.RUNNING:
        if row[1]:
            raise ChunkStoredAlready(f"chunk {chunk} of scoring {scoring_id} is stored already")
        raise ValueError(f"scoring {scoring_id} has no chunk {chunk}")
    return None


def _count_chunk_portable(scoring_id: int, items: int, chunk: int) -> tuple[int, int] | None:
    # SQLite: the transaction is IMMEDIATE, so nothing else writes between this read and the update.
    scoring = QueueScoring.objects.filter(pk=scoring_id).only("status", "chunks_total", "chunks_stored").first()
    if scoring is None or scoring.status != QueueScoring.Status.RUNNING:
        return None
    if not 0 <= chunk < scoring.chunks_total:
        raise ValueError(f"scoring {scoring_id} has no chunk {chunk}")
    if scoring_chunk_is_stored(scoring, chunk):
        raise ChunkStoredAlready(f"chunk {chunk} of scoring {scoring_id} is stored already")
    stored = bytearray(bytes(scoring.chunks_stored or b"").ljust((scoring.chunks_total + 7) // 8, b"\0"))
    stored[chunk // 8] |= 1 << (chunk % 8)
    return _count_chunk_with(scoring_id, items, bytes(stored))


def _count_chunk_with(scoring_id: int, items: int, stored: bytes) -> tuple[int, int] | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_SCORING} SET chunks_stored = %s, chunks_done = chunks_done + 1, items_scored = items_scored + %s,"
            " progressed_at = %s WHERE id = %s AND status = %s",
            [stored, items, _now(), scoring_id, QueueScoring.Status.RUNNING],
        )
        cursor.execute(f"SELECT chunks_done, chunks_total FROM {_SCORING} WHERE id = %s", [scoring_id])
        return cursor.fetchone()


def _now() -> object:
    return connection.ops.adapt_datetimefield_value(timezone.now())


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
    return tuples.tobytes()


def _copy_columns(group: ScoreColumns) -> str:
    present = ["scoring_id", "item_id", "priority"]
    missing = []
    (present if group.predicted_label_ids is not None else missing).append("predicted_label_id")
    (present if group.confidences is not None else missing).append("confidence")
    return ", ".join(f'"{ItemScore._meta.get_field(name).column}"' for name in present + missing)


def _groups(rows: ScoreColumns | Iterable[ScoreRow]) -> list[ScoreColumns]:
    groups = [rows] if isinstance(rows, ScoreColumns) else ScoreColumns.from_rows(rows)
    return [group for group in groups if len(group)]


def _bulk_create(scoring_id: int, groups: list[ScoreColumns]) -> None:
    ItemScore.objects.bulk_create(
        [ItemScore(scoring_id=scoring_id, **fields) for group in groups for fields in _fields(group)], batch_size=5000
    )


def _copy(table: str, scoring_id: int, groups: list[ScoreColumns]) -> None:
    """Insert rows with binary COPY, about an order of magnitude faster than a multi-row INSERT."""
    # psycopg's own errors (not Django's wrappers): the caller tells a dropped partition apart.
    with transaction.atomic(), connection.cursor() as cursor:
        for group in groups:
            statement = f'COPY "{table}" ({_copy_columns(group)}) FROM STDIN (FORMAT BINARY)'
            with cursor.cursor.copy(statement) as copy:
                copy.write(COPY_HEADER + _binary_rows(scoring_id, group) + COPY_TRAILER)
