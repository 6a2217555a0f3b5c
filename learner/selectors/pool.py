"""Stored features as matrices: a project's pool, a scoring chunk's unlabeled items, and the scorable ids."""
from collections.abc import Iterator, Sequence

import numpy as np
from django.db import connection
from scipy import sparse

from annotations.models import Item
from annotations.selectors import queue_done_item_ids
from labelhub.rows import qn
from learner.ml.featurize import Featurizer, Matrix, unpack
from learner.models import FeatureVector

from .binary import backend_heap_primed, binary_cursor
from .features import project_featurizer

# Rows fetched per round trip when a pool is loaded, and ids per IN (...) when a subset is.
POOL_FETCH_ROWS = 20_000
POOL_IDS_PER_QUERY = 10_000


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
    features = qn(FeatureVector._meta.db_table)
    # On PostgreSQL the ids come as one byte string built by the server and read with numpy,
    # without a Python object per id.
    sql = (
        f"SELECT string_agg(int8send(s.item_id), ''::bytea) FROM (SELECT f.item_id FROM {features} f"
        " WHERE f.project_id = %s AND f.item_id > %s ORDER BY f.item_id LIMIT %s) s"
    )
    with binary_cursor() as cursor:
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
    rows = list(
        FeatureVector.objects.filter(project_id=project_id, space=featurizer.space, pk__gte=lo, pk__lte=hi)
        .order_by("item_id")
        .values_list("item_id", "values", "indices")
        .iterator(chunk_size=POOL_FETCH_ROWS)
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
    """PostgreSQL: the chunk's ids, values and sparse columns as byte strings aggregated by the server."""
    fv, item, values = qn(FeatureVector._meta.db_table), qn(Item._meta.db_table), qn("values")
    sparse_columns = (
        f", string_agg(int4send(length(f.{values})), ''::bytea), string_agg(COALESCE(f.indices, ''::bytea), ''::bytea)"
        if featurizer.sparse else ""
    )
    # A range scan of the features' primary key; the range's done items (few, found through the
    # labeled items' index) are left out by a hashed NOT IN. Each aggregate reads the rows in the
    # same order, so the i-th id belongs to the i-th row of values.
    sql = (
        f"SELECT COUNT(*), string_agg(int8send(f.item_id), ''::bytea), string_agg(f.{values}, ''::bytea){sparse_columns}"
        f" FROM {fv} f WHERE f.project_id = %s AND f.space = %s AND f.item_id BETWEEN %s AND %s AND f.item_id NOT IN"
        f" (SELECT i.id FROM {item} i WHERE i.project_id = %s AND i.label_count > 0 AND i.queue_done"
        " AND i.id BETWEEN %s AND %s)"
    )
    lo, hi = id_range
    with binary_cursor() as cursor:
        backend_heap_primed(cursor)
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

