"""Reads of learner's data: items needing features, pools as one matrix, and what the versions page and dashboard show."""
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection
from django.db.models import F, QuerySet
from scipy import sparse

from annotations.models import ImportJob, Item, Project
from annotations.selectors import queue_done_item_ids
from learner.ml.featurize import Featurizer, Matrix, featurizer_for, unpack
from learner.models import DriftCheck, FeatureVector, LiveModel, ModelVersion, SwapHistory, TrainingRun

# Rows fetched per round trip when a pool is loaded, and ids per IN (...) when a subset is.
POOL_FETCH_ROWS = 20_000
POOL_IDS_PER_QUERY = 10_000
# Bytes a PostgreSQL session allocates and frees once before its first chunk read (see
# _backend_heap_primed): below the 32 MiB that glibc's dynamic mmap threshold goes up to, and above
# a chunk read's largest block (string_agg doubles its buffer: 8 MiB for a 20,000-row chunk of 64
# float32 features, 16 MiB up to 128 features).
BACKEND_HEAP_PRIME_BYTES = 30_000_000
_backends_primed: weakref.WeakSet = weakref.WeakSet()
# Import jobs whose own feature tasks are still to come or under way.
FEATURES_PENDING = [ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]


def project_featurizer(project_id: int) -> Featurizer:
    """Return the featurizer of the project's kind (and, for tabular, its columns)."""
    kind, feature_names = Project.objects.values_list("kind", "feature_names").get(pk=project_id)
    return featurizer_for(kind, feature_names)


def items_lacking_features(project_id: int) -> QuerySet[Item]:
    """Items of the project that have no stored features yet."""
    # An anti-join through the reverse one-to-one; NOT IN (subquery) would run row by row on
    # PostgreSQL once the subquery outgrows work_mem.
    return Item.objects.filter(project_id=project_id, features__isnull=True)


def features_plan(project_id: int, job_id: int | None) -> list[list[int]]:
    """Split the items lacking features into chunks of ids, in id order.

    With ``job_id``: the items of that import job. Without: all the project's items lacking
    features except those an import job is still computing, which are left to that job's chunks.
    """
    items = items_lacking_features(project_id)
    if job_id is not None:
        items = items.filter(import_job_id=job_id)
    else:
        items = items.exclude(import_job__features_status__in=FEATURES_PENDING)
    ids = list(items.order_by("pk").values_list("pk", flat=True))
    size = settings.LABELHUB_FEATURE_CHUNK
    return [ids[start:start + size] for start in range(0, len(ids), size)]


def import_jobs_features_counted(job_ids: Sequence[int]) -> list[int]:
    """Those of the import jobs whose feature count has reached their total."""
    counted = ImportJob.objects.filter(pk__in=job_ids, features_done__gte=F("features_total"))
    return list(counted.values_list("pk", flat=True))


def features_reconcile_targets(settled_before: datetime) -> list[tuple[int, int | None]]:
    """(project, import job or None) pairs whose features should exist by now but may not.

    Import jobs that finished before ``settled_before`` with their features not done, and
    projects with items outside any import created before it and still lacking features. The
    grace keeps work that is merely still queued from being planned twice.
    """
    jobs = ImportJob.objects.filter(
        status=ImportJob.Status.DONE, finished_at__lt=settled_before, features_status__in=FEATURES_PENDING
    ).values_list("project_id", "pk")
    loose = (
        Item.objects.filter(features__isnull=True, import_job__isnull=True, created_at__lt=settled_before)
        .order_by("project_id")  # not Item's default id order, which would defeat DISTINCT
        .values_list("project_id", flat=True)
        .distinct()
    )
    return sorted([*jobs, *((project_id, None) for project_id in loose)], key=lambda pair: (pair[0], pair[1] or 0))


def pool_matrix(project_id: int, item_ids: Sequence[int] | None = None) -> tuple[np.ndarray, Matrix]:
    """Load the project's stored features (or those of item_ids) as one matrix; rows in item id order.

    Returns the item ids and a float32 matrix: dense for images and tabular rows, CSR for text.
    Items without features in the project's current feature space are left out.
    """
    featurizer = project_featurizer(project_id)
    rows = FeatureVector.objects.filter(project_id=project_id, space=featurizer.space).order_by("item_id")
    if item_ids is None:
        querysets = [rows]
    else:
        wanted = sorted(set(item_ids))
        querysets = [
            rows.filter(item_id__in=wanted[start:start + POOL_IDS_PER_QUERY])
            for start in range(0, len(wanted), POOL_IDS_PER_QUERY)
        ]
    ids: list[int] = []
    values: list[bytes] = []
    indices: list[bytes] = []
    for queryset in querysets:
        for item_id, value, index in queryset.values_list("item_id", "values", "indices").iterator(
            chunk_size=POOL_FETCH_ROWS
        ):
            ids.append(item_id)
            values.append(value)
            indices.append(index)
    matrix = unpack(values, indices if featurizer.sparse else None, featurizer.n_features)
    return np.array(ids, dtype=np.int64), matrix


def _rows(queryset: QuerySet) -> list[tuple]:
    """Fetch a values_list queryset's rows; on PostgreSQL in binary, so that bytea arrives without hex decoding."""
    if connection.vendor != "postgresql":
        return list(queryset.iterator(chunk_size=POOL_FETCH_ROWS))
    sql, params = queryset.query.sql_with_params()
    connection.ensure_connection()
    # Django's client-side cursors cannot return binary results; a plain psycopg cursor on the
    # same connection (and so the same transaction) can, about five times faster for features.
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.fetchall()


def pool_scorable_count(project_id: int) -> int:
    """How many of the project's items have features and are still in the queue."""
    with_features = FeatureVector.objects.filter(project_id=project_id).count()
    done = Item.objects.filter(project_id=project_id, label_count__gt=0, queue_done=True, features__isnull=False)
    return with_features - done.count()


def pool_scorable_id_slices(project_id: int, slice_items: int) -> Iterator[np.ndarray]:
    """The ids of the project's items that have features and are still in the queue, ascending, a slice at a time.

    Each slice is one index range scan of the features' (project, item) index over the next
    ``slice_items`` ids, less the done items among them, so that a caller can act on the first
    ids before the last are read (a pool's chunks are sent while it is still being planned).
    """
    done = queue_done_item_ids(project_id)
    after = 0
    while True:
        ids = _feature_ids_after(project_id, after, slice_items)
        if not len(ids):
            return
        after = int(ids[-1])
        if len(done):
            ids = ids[~np.isin(ids, done, assume_unique=True)]
        if len(ids):
            yield ids


def _feature_ids_after(project_id: int, after: int, limit: int) -> np.ndarray:
    """Up to ``limit`` ids of the project's items with features above ``after``, ascending."""
    if connection.vendor != "postgresql":
        ids = FeatureVector.objects.filter(project_id=project_id, pk__gt=after).order_by("pk")
        return np.array(list(ids.values_list("pk", flat=True)[:limit]), dtype=np.int64)
    features = connection.ops.quote_name(FeatureVector._meta.db_table)
    # On PostgreSQL the ids come as one byte string built by the server and read with numpy,
    # without a Python object per id.
    sql = (
        f"SELECT string_agg(int8send(s.item_id), ''::bytea) FROM (SELECT f.item_id FROM {features} f"
        " WHERE f.project_id = %s AND f.item_id > %s ORDER BY f.item_id LIMIT %s) s"
    )
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, [project_id, after, limit], binary=True)
        stream = cursor.fetchone()[0]
    return np.sort(np.frombuffer(stream or b"", dtype=">i8").astype(np.int64))


def pool_matrix_unlabeled(
    project_id: int, id_range: tuple[int, int], featurizer: Featurizer | None = None
) -> tuple[np.ndarray, Matrix]:
    """Load the features of the project's items still in the queue with ids in the inclusive range.

    Items without features in the project's current space are left out. On PostgreSQL the rows
    come in one statement as three byte strings (ids, values, and for sparse rows their lengths
    and column indices) concatenated by the server, read with numpy without a Python object per
    row; rows are then in no particular order. Elsewhere, in id order through the ORM.
    """
    featurizer = featurizer or project_featurizer(project_id)
    if connection.vendor == "postgresql":
        return _chunk_matrix_aggregated(project_id, id_range, featurizer)
    lo, hi = id_range
    rows = _rows(
        FeatureVector.objects.filter(project_id=project_id, space=featurizer.space, pk__gte=lo, pk__lte=hi)
        .order_by("item_id")
        .values_list("item_id", "values", "indices")
    )
    done = set(queue_done_item_ids(project_id, id_range).tolist())
    if done:
        rows = [row for row in rows if row[0] not in done]
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    values = [row[1] for row in rows]
    if not featurizer.sparse and any(len(value) != 4 * featurizer.n_features for value in values):
        raise ValueError(f"stored feature rows do not have {featurizer.n_features} values each")
    indices = [row[2] for row in rows] if featurizer.sparse else None
    return ids, unpack(values, indices, featurizer.n_features)


def _chunk_matrix_aggregated(project_id: int, id_range: tuple[int, int], featurizer: Featurizer) -> tuple[np.ndarray, Matrix]:
    q = connection.ops.quote_name
    fv, item = q(FeatureVector._meta.db_table), q(Item._meta.db_table)
    sparse_columns = (
        ", string_agg(int4send(length(f.\"values\")), ''::bytea), string_agg(COALESCE(f.indices, ''::bytea), ''::bytea)"
        if featurizer.sparse else ""
    )
    # A range scan of the features' primary key; the range's done items (few, found through the
    # labeled items' index) are left out by a hashed NOT IN. Each aggregate reads the rows in the
    # same order, so the i-th id belongs to the i-th row of values.
    sql = (
        f"SELECT COUNT(*), string_agg(int8send(f.item_id), ''::bytea), string_agg(f.\"values\", ''::bytea){sparse_columns}"
        f" FROM {fv} f WHERE f.project_id = %s AND f.space = %s AND f.item_id BETWEEN %s AND %s AND f.item_id NOT IN"
        f" (SELECT i.id FROM {item} i WHERE i.project_id = %s AND i.label_count > 0 AND i.queue_done"
        " AND i.id BETWEEN %s AND %s)"
    )
    lo, hi = id_range
    connection.ensure_connection()
    # A plain psycopg cursor on Django's connection (the same transaction) can ask for binary
    # results, so the byte strings arrive as they are, without hex decoding.
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        _backend_heap_primed(cursor)
        cursor.execute(sql, [project_id, featurizer.space, lo, hi, project_id, lo, hi], binary=True)
        count, id_bytes, value_bytes, *sparse_parts = cursor.fetchone()
    if not count:
        return np.empty(0, dtype=np.int64), unpack([], [] if featurizer.sparse else None, featurizer.n_features)
    ids = np.frombuffer(id_bytes, dtype=">i8").astype(np.int64)
    data = np.frombuffer(value_bytes, dtype=np.float32)
    if not featurizer.sparse:
        if data.size != count * featurizer.n_features:
            raise ValueError(f"stored feature rows do not have {featurizer.n_features} values each")
        return ids, data.reshape(count, featurizer.n_features)
    lengths, index_bytes = sparse_parts
    indptr = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.frombuffer(lengths, dtype=">i4") // 4, out=indptr[1:])
    columns = np.frombuffer(index_bytes, dtype=np.int32)
    if indptr[-1] < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    return ids, sparse.csr_matrix((data, columns, indptr), shape=(count, featurizer.n_features))


def _backend_heap_primed(cursor: psycopg.Cursor) -> None:
    """Once per database session: make its PostgreSQL backend keep the megabytes a chunk read frees.

    A chunk read makes the backend build byte strings of megabytes and free them at the end of
    the statement. glibc's malloc (on the database server) maps blocks above a threshold afresh
    and unmaps them when freed, and gives heap memory back to the kernel above a second
    threshold; it raises both only when it frees a mapped block larger than the first. A session
    whose history never did that faults every chunk's memory in again page by page: measured
    with two scoring workers, one of the two backends took about 4,000 page faults and 10 ms of
    kernel time per chunk, and read its chunks 1.5 times slower than the other. Allocating and
    freeing one block larger than a chunk's largest (and no larger than the 32 MiB the dynamic
    threshold goes up to) raises both thresholds for the rest of the session; blocks above that
    (chunks of very wide rows: LABELHUB_SCORING_CHUNK makes them smaller) are mapped afresh
    whatever is done. On a server with another allocator the statement costs one allocation and
    changes nothing.
    """
    if cursor.connection in _backends_primed:
        return
    cursor.execute("SELECT octet_length(repeat(repeat('x', 10000), %s))", [BACKEND_HEAP_PRIME_BYTES // 10_000])
    cursor.fetchone()
    _backends_primed.add(cursor.connection)


def model_version_by_number(project_id: int, number: int) -> ModelVersion:
    """The project's model version with this number."""
    return ModelVersion.objects.get(project_id=project_id, number=number)


def projects_with_live_model() -> list[int]:
    """Ids of projects that have a live model version."""
    return list(LiveModel.objects.filter(version__isnull=False).values_list("project_id", flat=True))


# The versions page and the dashboard.

STAGES = ["snapshot", "train", "evaluate", "gate", "swap"]


@dataclass
class VersionRow:
    """A model version with its training run, the swaps that made it live and its training time."""

    version: ModelVersion
    run: TrainingRun | None
    promotions: list[SwapHistory] = field(default_factory=list)

    @property
    def training_seconds(self) -> float | None:
        timings = self.run.timings if self.run else {}
        return round(sum(timings.values()), 2) if timings else None

    @property
    def stage_timings(self) -> list[tuple[str, float]]:
        """Seconds per stage, in the order the stages run."""
        timings = self.run.timings if self.run else {}
        return [(stage, timings[stage]) for stage in STAGES if stage in timings]

    @property
    def metrics(self) -> dict:
        return self.version.metrics or {}


@dataclass
class LiveSpan:
    """One stretch of time during which a version was live."""

    number: int
    previous: int | None
    start: datetime
    end: datetime | None
    swap: SwapHistory


def model_versions_overview(project_id: int) -> dict:
    """Every version of the project with its run and promotions, the live timeline and the live version.

    Four statements whatever the number of versions: versions with their runs, the swaps, the
    live pointer, and the latest runs.
    """
    versions = list(
        ModelVersion.objects.filter(project_id=project_id)
        .select_related("training_run", "training_run__requested_by")
        .order_by("-number")
    )
    rows = {v.pk: VersionRow(v, v.training_run) for v in versions}
    numbers = {v.pk: v.number for v in versions}
    swaps = list(SwapHistory.objects.filter(project_id=project_id).select_related("actor").order_by("created_at", "pk"))
    timeline: list[LiveSpan] = []
    for i, swap in enumerate(swaps):
        if swap.to_version_id in rows:
            rows[swap.to_version_id].promotions.append(swap)
        end = swaps[i + 1].created_at if i + 1 < len(swaps) else None
        timeline.append(LiveSpan(numbers.get(swap.to_version_id, 0), numbers.get(swap.from_version_id), swap.created_at,
                                 end, swap))
    live_id = LiveModel.objects.filter(project_id=project_id).values_list("version_id", flat=True).first()
    return {
        "rows": list(rows.values()),
        "live": rows[live_id].version if live_id in rows else None,
        "timeline": timeline[::-1],  # newest first
        "runs": list(TrainingRun.objects.filter(project_id=project_id).select_related("requested_by")
                     .order_by("-created_at")[:20]),
    }


def model_version_row(project_id: int, number: int) -> VersionRow | None:
    """One version with its run and the swaps that made it live; None if the project has no such version."""
    version = (
        ModelVersion.objects.filter(project_id=project_id, number=number)
        .select_related("training_run", "training_run__requested_by")
        .first()
    )
    if version is None:
        return None
    swaps = SwapHistory.objects.filter(to_version=version).select_related("actor").order_by("created_at", "pk")
    return VersionRow(version, version.training_run, list(swaps))


@dataclass
class ModelStatus:
    """The live version and the latest finished run, as the labeling page's model panel shows them."""

    live: ModelVersion | None
    latest_run: TrainingRun | None
    active_run: TrainingRun | None


def model_status(project_id: int) -> ModelStatus:
    """The project's live version, its latest finished training run and the run under way (three reads)."""
    live = LiveModel.objects.filter(project_id=project_id).select_related("version").first()
    runs = TrainingRun.objects.filter(project_id=project_id).select_related("requested_by", "model_version")
    return ModelStatus(
        live.version if live is not None else None,
        runs.filter(finished_at__isnull=False).order_by("-finished_at").first(),
        runs.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).first(),
    )


def drift_check_latest(project_id: int) -> DriftCheck | None:
    """The project's latest drift measurement, with the retrain it asked for."""
    return DriftCheck.objects.filter(project_id=project_id).select_related("training_run").order_by("-created_at").first()


def training_runs_recent(project_id: int, limit: int = 10) -> list[TrainingRun]:
    """The project's latest training runs, each with whoever asked for it and the version it trained."""
    return list(
        TrainingRun.objects.filter(project_id=project_id)
        .select_related("requested_by", "model_version")
        .order_by("-created_at")[:limit]
    )


def training_runs_active(project_id: int) -> list[TrainingRun]:
    """The project's queued or running training runs (at most one, by constraint)."""
    return list(
        TrainingRun.objects.filter(
            project_id=project_id, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        ).order_by("created_at")
    )


# Why a live model is known to be stale, by the kind of finding (drift first when both).
STALE_BECAUSE = {
    TrainingRun.Trigger.DRIFT: "data drift was found",
    TrainingRun.Trigger.DEGRADATION: "its audit accuracy fell",
}


def live_model_stale_reason(project_id: int, live_number: int, run: TrainingRun | None = None) -> str:
    """Why the live version is known to be stale, in words, or "" if nothing says so.

    Stale: the run itself was started by drift or degradation, or such a finding was recorded
    against it, or a drift check found drift while this version was live, or a degradation
    retrain was asked for against it.
    """
    kinds = set()
    if run is not None:
        findings = (run.evidence or {}).get("findings") or []
        kinds = {run.trigger} | {finding.get("kind") for finding in findings if isinstance(finding, dict)}
    if TrainingRun.Trigger.DRIFT not in kinds and DriftCheck.objects.filter(
        project_id=project_id, model_version=live_number, drifted=True
    ).exists():
        kinds.add(TrainingRun.Trigger.DRIFT)
    if not kinds & set(STALE_BECAUSE) and TrainingRun.objects.filter(
        project_id=project_id, trigger=TrainingRun.Trigger.DEGRADATION, evidence__model_version=live_number
    ).exists():
        kinds.add(TrainingRun.Trigger.DEGRADATION)
    for kind, because in STALE_BECAUSE.items():
        if kind in kinds:
            return because
    return ""
