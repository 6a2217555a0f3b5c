"""Score partitions (PostgreSQL): one UNLOGGED partition per scoring, created at its start, indexed once
after its last chunk, dropped whole when a newer scoring completes.

Each planned scoring stores its rows in a partition of its own (``annotations_itemscore_s<id>``,
see migration 0008): chunks are copied in with no index to maintain, the partition is indexed
once when they are all stored, and dropped whole when it is no longer served. Being unlogged, a
partition is emptied by a database crash; learner's reconciliation then asks for the pool to be
scored again. SQLite keeps one plain table, which needs none of this.
"""
from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper

from ..models import ItemScore, QueueScoring
from ..selectors.scoring import head_at_least, item_score_partitions, scoring_partition, scorings_served

_SCORING = QueueScoring._meta.db_table
logger = logging.getLogger(__name__)

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


def item_scores_index(scoring_id: int) -> bool:
    """Index the scoring's partition once its chunks are stored; False if the scoring is no longer running.

    Built once over the whole partition, which is several times cheaper than keeping the
    indexes up to date row by row while the chunks are copied in. The queue needs two: by item,
    and by priority. Sorting a large pool by priority is the longest part of a scoring's finish,
    while the queue serves only its top for a long while: so a pool of more than
    LABELHUB_SCORING_HEAD items gets a partial index over its head instead (priorities from a
    floor estimated on a sample, recorded on the scoring as ``head_floor`` in the same
    transaction), and item_scores_index_rest indexes the whole pool once the scoring is served.
    The items browser's index by confidence and the partition's statistics come with the latter
    (a pool within the head goes without: the browser's reads of it are bounded by its size). Outside a transaction the item index is built at once on a second connection; inside one
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
    """Index a served scoring's whole partition by priority (the queue) and by confidence (the items
    browser's sorts and range), without blocking its readers or writers, gather its statistics, and
    clear its ``head_floor`` so that the queue reads past the head; False if there was nothing to do.

    The statistics let the planner see how many rows the browser's filters on the predicted label
    and the confidence keep (without them it guesses a handful, and joins the whole partition);
    autovacuum would gather them too, but only a while later, if it runs at all. PostgreSQL builds
    the indexes concurrently, which cannot run inside a transaction; inside one (tests), plainly.
    """
    if connection.vendor != "postgresql":
        return False
    if not QueueScoring.objects.filter(pk=scoring_id, head_floor__isnull=False).exists():
        return False
    partition = scoring_partition(scoring_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{partition}"'])
        if not cursor.fetchone()[0]:
            return False  # dropped meanwhile: a newer scoring is served
        for suffix, key in (("queue", "priority DESC"), ("confidence", "confidence")):
            if not _index_concurrently(cursor, partition, f"{partition}_{suffix}", key):
                return False  # another session is building it
        cursor.execute(f'ANALYZE "{partition}"')
    QueueScoring.objects.filter(pk=scoring_id).update(head_floor=None)
    logger.info("Scoring %s: the queue's index covers the whole pool", scoring_id)
    return True


def _index_concurrently(cursor: CursorWrapper, partition: str, name: str, key: str) -> bool:
    """Build the partition's index ``name`` on ``key`` unless it exists; False if another session is building it.

    A build that failed leaves an invalid index, dropped and built again here.
    """
    cursor.execute(
        "SELECT x.indisvalid,"
        " EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = x.indexrelid)"
        " FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname = %s",
        [name],
    )
    existing = cursor.fetchone()
    concurrently = "" if connection.in_atomic_block else "CONCURRENTLY "
    if existing is not None and not existing[0]:
        if existing[1]:
            return False
        cursor.execute(f'DROP INDEX {concurrently}IF EXISTS "{name}"')
        existing = None
    if existing is None:
        cursor.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
        try:
            cursor.execute(f'CREATE INDEX {concurrently}IF NOT EXISTS "{name}" ON "{partition}" ({key})')
        finally:
            cursor.execute("RESET maintenance_work_mem")
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
