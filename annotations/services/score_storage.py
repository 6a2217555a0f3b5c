"""Storage of item scores: binary COPY, one UNLOGGED partition per scoring (PostgreSQL), chunk bookkeeping.

On PostgreSQL each planned scoring stores its rows in a partition of its own
(``annotations_itemscore_s<id>``, see migration 0007): chunks are copied in with no index to
maintain, a bit per chunk on the scoring row makes a redelivered chunk store nothing, the
partition is indexed once after its last chunk, and it is dropped whole when a newer scoring
completes. Being unlogged, a partition is emptied by a database crash; learner's reconciliation
then asks for the pool to be scored again. SQLite keeps one plain table.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import psycopg
from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from ..models import ItemScore, QueueScoring
from ..selectors.scoring import head_at_least, item_score_partitions, scoring_partition, scorings_served

_SCORING = QueueScoring._meta.db_table
logger = logging.getLogger(__name__)

STORE_FIELDS = ("scoring_id", "item_id", "priority", "predicted_label_id", "confidence")
# PostgreSQL's binary COPY: signature, flags, header extension length; a field count -1 ends it.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)

ScoreRow = tuple[int, float, int | None, float | None]
# A partition is created, and dropped, under an ACCESS EXCLUSIVE lock on the whole table, and
# every queue read arriving meanwhile waits behind that lock request. So each try waits at most a
# moment for the lock, and gives way (backing off) while others hold the table.
DDL_LOCK_TIMEOUT_MS = 100
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires
PARTITION_CREATE_WAIT_S = 30  # then the scoring fails, and its task is retried
PRUNE_WAIT_S = 2  # then the partition is left for the reconciliation task
# Memory for building a partition's indexes: a million rows sort in memory with this.
INDEX_BUILD_MEMORY = "256MB"
# Pages of a partition read to estimate the floor of its head (a few tens of thousands of rows).
HEAD_SAMPLE_PAGES = 200


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


def item_scores_partition_create(scoring_id: int) -> None:
    """Create the scoring's own UNLOGGED partition, in the caller's transaction (PostgreSQL)."""
    table, partition = ItemScore._meta.db_table, scoring_partition(scoring_id)
    _ddl_in_short_waits(
        [
            # A partition of this id can only be left over from a database whose sequences were reset.
            f'DROP TABLE IF EXISTS "{partition}"',
            f'CREATE UNLOGGED TABLE "{partition}" PARTITION OF "{table}" FOR VALUES IN ({int(scoring_id)})',
        ],
        within_s=PARTITION_CREATE_WAIT_S,
    )


def _ddl_in_short_waits(statements: list[str], *, within_s: float) -> None:
    """Run the statements in a savepoint, each try waiting at most DDL_LOCK_TIMEOUT_MS for its locks,
    trying again after a growing pause until ``within_s`` has passed; then raise the lock timeout."""
    deadline = time.monotonic() + within_s
    pause = 0.05
    while True:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT_MS}ms'")
                for statement in statements:
                    cursor.execute(statement)
            return
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


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


def item_scores_index(scoring_id: int) -> bool:
    """Index the scoring's partition once its chunks are stored; False if the scoring is no longer running.

    Built once over the whole partition, which is several times cheaper than keeping the
    indexes up to date row by row while the chunks are copied in. The queue needs two: by item,
    and by priority. Sorting a large pool by priority is the longest part of a scoring's finish,
    while the queue serves only its top for a long while: so a pool of more than
    LABELHUB_SCORING_HEAD items gets a partial index over its head instead (priorities from a
    floor estimated on a sample, recorded on the scoring as ``head_floor`` in the same
    transaction), and item_scores_index_rest indexes the whole pool once the scoring is served.
    Outside a transaction the item index is built at once on a second connection; inside one
    (tests), one after the other. Safe to run again.
    """
    if connection.vendor != "postgresql":
        return QueueScoring.objects.filter(pk=scoring_id, status=QueueScoring.Status.RUNNING).exists()
    partition = scoring_partition(scoring_id)
    by_item = f'CREATE UNIQUE INDEX IF NOT EXISTS "{partition}_item" ON "{partition}" (item_id)'
    alongside = None if connection.in_atomic_block else _IndexBuild(by_item)
    with transaction.atomic(), connection.cursor() as cursor:
        # The scoring's row lock makes a concurrent finisher of the same scoring wait, then find the indexes built.
        cursor.execute(f"SELECT status, items_scored FROM {_SCORING} WHERE id = %s FOR NO KEY UPDATE", [scoring_id])
        row = cursor.fetchone()
        if row is None or row[0] != QueueScoring.Status.RUNNING:
            return False
        if alongside is not None:
            alongside.start()
        try:
            _index_settings(cursor)
            if alongside is None:
                cursor.execute(by_item)
            floor = _head_floor(cursor, partition, row[1])
            if floor is None:
                cursor.execute(f'CREATE INDEX IF NOT EXISTS "{partition}_queue" ON "{partition}" (priority DESC)')
            else:
                cursor.execute(f'CREATE INDEX IF NOT EXISTS "{partition}_head" ON "{partition}" (priority DESC)'
                               f" WHERE {head_at_least(floor)}")
            cursor.execute(f"UPDATE {_SCORING} SET head_floor = %s WHERE id = %s", [floor, scoring_id])
        finally:
            if alongside is not None:
                alongside.join()
        if alongside is not None and alongside.error is not None:
            raise alongside.error
    return True


def _head_floor(cursor: CursorWrapper, partition: str, rows: int) -> float | None:
    """The priority from which about LABELHUB_SCORING_HEAD of the partition's ``rows`` lie, estimated on a
    sample of its pages; None if the pool is no larger than the head (or the sample came back empty)."""
    head = settings.LABELHUB_SCORING_HEAD
    if rows <= head:
        return None
    cursor.execute("SELECT pg_relation_size(%s) / current_setting('block_size')::int", [partition])
    percent = min(100.0, 100.0 * HEAD_SAMPLE_PAGES / max(cursor.fetchone()[0], 1))
    # REPEATABLE: a finisher run again draws the same pages, and so the same floor.
    cursor.execute(
        "SELECT percentile_disc(%s) WITHIN GROUP (ORDER BY priority DESC)"
        f' FROM "{partition}" TABLESAMPLE SYSTEM (%s) REPEATABLE (0)',
        [head / rows, percent],
    )
    return cursor.fetchone()[0]


def item_scores_index_rest(scoring_id: int) -> bool:
    """Index a served scoring's whole partition by priority, without blocking its readers or writers, and
    clear its ``head_floor`` so that the queue reads past the head; False if there was nothing to do.

    PostgreSQL builds it concurrently, which cannot run inside a transaction; inside one (tests),
    the index is built plainly. A build that failed leaves an invalid index, dropped and built
    again here; one still under way in another session is left to finish.
    """
    if connection.vendor != "postgresql":
        return False
    if not QueueScoring.objects.filter(pk=scoring_id, head_floor__isnull=False).exists():
        return False
    partition = scoring_partition(scoring_id)
    name = f"{partition}_queue"
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{partition}"'])
        if not cursor.fetchone()[0]:
            return False  # dropped meanwhile: a newer scoring is served
        cursor.execute(
            "SELECT x.indisvalid,"
            " EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = x.indexrelid)"
            " FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname = %s",
            [name],
        )
        existing = cursor.fetchone()
        if existing is not None and not existing[0]:
            if existing[1]:
                return False  # another session is building it
            cursor.execute(f'DROP INDEX {"" if connection.in_atomic_block else "CONCURRENTLY "}IF EXISTS "{name}"')
            existing = None
        if existing is None:
            concurrently = "" if connection.in_atomic_block else "CONCURRENTLY "
            cursor.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
            try:
                cursor.execute(f'CREATE INDEX {concurrently}IF NOT EXISTS "{name}" ON "{partition}" (priority DESC)')
            finally:
                cursor.execute("RESET maintenance_work_mem")
    QueueScoring.objects.filter(pk=scoring_id).update(head_floor=None)
    logger.info("Scoring %s: the queue's index covers the whole pool", scoring_id)
    return True


def _index_settings(cursor: CursorWrapper) -> None:
    cursor.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
    # The two builds already run side by side; parallel sort workers on top of them only contend.
    cursor.execute("SET LOCAL max_parallel_maintenance_workers = 0")


class _IndexBuild(threading.Thread):
    """One CREATE INDEX on a connection of its own, run while the caller builds the other index."""

    def __init__(self, statement: str) -> None:
        super().__init__(name="score-index", daemon=True)
        self.statement = statement
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _index_settings(cursor)
                cursor.execute(self.statement)
        except Exception as exc:  # noqa: BLE001 -- handed to the caller's thread, which raises it
            self.error = exc
        finally:
            connection.close()  # this thread's own connection


def item_scores_prune(project_id: int, *, before: int) -> int:
    """Drop the rows of the project's scorings older than ``before``: their partitions whole, and
    their few rows in the default partition; return how many partitions were dropped.

    A partition whose lock is not granted at once (a long reader holds the table) is left for
    the reconciliation task, rather than stall the queue's reads queued behind the lock.
    """
    older = list(
        QueueScoring.objects.filter(project_id=project_id, pk__lt=before).values_list("pk", flat=True)
    )
    if not older:
        return 0
    dropped, kept = 0, set()
    if connection.vendor == "postgresql":
        for scoring_id in sorted(set(older) & set(item_score_partitions())):
            if _partition_drop(scoring_id):
                dropped += 1
            else:
                kept.add(scoring_id)
    # Rows of scorings without a partition of their own (the default partition; SQLite's table).
    without_partition = [scoring_id for scoring_id in older if scoring_id not in kept]
    ItemScore.objects.filter(scoring_id__in=without_partition)._raw_delete(ItemScore.objects.db)
    if dropped:
        logger.info("Project %s: dropped the score partitions of %s scorings older than %s", project_id, dropped, before)
    return dropped


def _partition_drop(scoring_id: int) -> bool:
    try:
        _ddl_in_short_waits([f'DROP TABLE IF EXISTS "{scoring_partition(scoring_id)}"'], within_s=PRUNE_WAIT_S)
        return True
    except DatabaseError as exc:
        logger.warning("Score partition of scoring %s not dropped now (%s); reconciliation retries", scoring_id, exc)
        return False


def item_scores_prune_stale() -> int:
    """Drop score partitions no queue will read: of scorings gone, failed, or older than their project's served one.

    Catches what completion could not drop at once (a lock not granted) and partitions of
    deleted projects. Returns how many partitions were dropped.
    """
    partitions = item_score_partitions()
    if not partitions:
        return 0
    scorings = {
        pk: (project_id, status)
        for pk, project_id, status in QueueScoring.objects.filter(pk__in=partitions).values_list(
            "pk", "project_id", "status"
        )
    }
    served = scorings_served()
    dropped = 0
    for scoring_id in partitions:
        project_id, status = scorings.get(scoring_id, (None, None))
        stale = (
            project_id is None
            or status == QueueScoring.Status.FAILED
            or (project_id in served and scoring_id < served[project_id])
        )
        if stale and _partition_drop(scoring_id):
            dropped += 1
    return dropped


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
