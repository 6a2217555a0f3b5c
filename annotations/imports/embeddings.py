"""Imported embeddings in the database: the project's dimension fixed under its row lock, vectors by external_id."""
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from django.conf import settings
from django.db import transaction

from labelhub.api import DomainError
from labelhub.celery import TaskName, send_task_on_commit

from ..models import Item, ItemEmbedding, Project
from .rows import ImportFileError, file_format
from .vectors import VECTOR_FILE_FORMATS, VectorRow, dimension_error, vector_record_row, vector_rows

# Rows of one JSON request body; a file is bounded by the import's size limit instead.
EMBEDDINGS_MAX_ROWS = 10_000
# Rows looked up and stored per transaction.
EMBEDDINGS_CHUNK = 2000
# The key of the embedding in a JSON request body's rows (files use the project's embedding_field).
BODY_FIELD = "embedding"


@dataclass
class EmbeddingsOutcome:
    """What storing rows of embeddings did: vectors stored anew or changed, the same as before, rows rejected."""

    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def embedding_dim_settle(project_id: int, dim: int) -> int:
    """Inside a transaction: lock the project's row and return its embedding dimension, fixing it to ``dim`` if unset.

    The lock makes every writer of vectors (imports, the embeddings API and command) see the
    dimension the first of them fixed, so that a project never gets two.
    """
    fixed = Project.objects.select_for_update().filter(pk=project_id).values_list("embedding_dim", flat=True).get()
    if fixed is None:
        Project.objects.filter(pk=project_id).update(embedding_dim=dim)
        return dim
    return fixed


def embeddings_replace(project_id: int, vectors: dict[int, bytes]) -> int:
    """Inside a transaction: store vectors of items already there (item id → float32 bytes); return how many changed.

    After commit, the learner computes the features of the items whose vector changed again.
    """
    if not vectors:
        return 0
    stored = dict(ItemEmbedding.objects.filter(item_id__in=list(vectors)).values_list("item_id", "vector"))
    changed = [pk for pk, vector in vectors.items() if pk not in stored or bytes(stored[pk]) != vector]
    ItemEmbedding.objects.bulk_create(
        [ItemEmbedding(item_id=pk, project_id=project_id, vector=vectors[pk]) for pk in changed],
        update_conflicts=True, unique_fields=["item"], update_fields=["vector", "updated_at"],
    )
    if changed:
        # robust: the vectors are committed either way; the learner's reconciliation finds items lacking features.
        send_task_on_commit(TaskName.FEATURES_REFRESH, [project_id, changed])
    return len(changed)


def embeddings_import_rows(*, project: Project, records: Sequence[Any]) -> EmbeddingsOutcome:
    """Store the vectors of a request body's rows, {"external_id": ..., "embedding": [...]}, on the project's items."""
    if len(records) > EMBEDDINGS_MAX_ROWS:
        raise DomainError(f"{len(records):,} rows, above the limit of {EMBEDDINGS_MAX_ROWS:,} per request.")
    rows = (vector_record_row(number, "", record, BODY_FIELD) for number, record in enumerate(records, 1))
    return _embeddings_store(project, rows, field_name=BODY_FIELD)


def embeddings_import_file(*, project: Project, filename: str, fileobj: IO[bytes]) -> EmbeddingsOutcome:
    """Store the vectors of a JSONL or CSV file's rows (external_id and the embedding) on the project's items.

    The file is read through once first: a file that cannot be read raises DomainError and stores nothing.
    """
    size = fileobj.seek(0, os.SEEK_END)
    limit = settings.LABELHUB_IMPORT_MAX_BYTES
    if size > limit:
        raise DomainError(f"{filename} is {size:,} bytes, above the {limit:,}-byte import limit.")
    try:
        fmt = file_format(filename)
    except ImportFileError:
        fmt = ""
    if fmt not in VECTOR_FILE_FORMATS:
        raise DomainError(f"{filename}: embeddings are imported from JSONL (.jsonl) or CSV (.csv) files.")
    field_name = project.embedding_field
    try:
        fileobj.seek(0)
        for _row in vector_rows(fileobj, fmt, field=field_name, name=filename):
            pass
    except ImportFileError as exc:
        raise DomainError(str(exc)) from exc
    fileobj.seek(0)
    rows = vector_rows(fileobj, fmt, field=field_name, name=filename)
    outcome = _embeddings_store(project, rows, field_name=field_name)
    if not (outcome.updated or outcome.unchanged or outcome.rejected):
        raise DomainError(f"{filename} holds no rows.")
    return outcome


def _embeddings_store(project: Project, rows: Iterable[VectorRow], *, field_name: str) -> EmbeddingsOutcome:
    """Store rows' vectors on the items they name, chunk by chunk, each chunk in one transaction; count and list."""
    outcome = EmbeddingsOutcome()
    kept = settings.LABELHUB_IMPORT_ERRORS_KEPT
    seen: dict[str, int] = {}
    for chunk in _chunks(rows, EMBEDDINGS_CHUNK):
        for row in chunk:
            if row.error is None and row.vector is None:
                row.error = f"the row has no embedding ({field_name!r})"
            if row.error is None:
                first = seen.setdefault(row.external_id, row.number)
                if first != row.number:
                    row.error = f"duplicate external_id, first at row {first}"
        updated, unchanged = _chunk_store(project.pk, [row for row in chunk if row.error is None])
        outcome.updated += updated
        outcome.unchanged += unchanged
        errors = [{"row": row.number, "where": row.where, "reason": row.error} for row in chunk if row.error]
        outcome.rejected += len(errors)
        outcome.errors += errors[:max(0, kept - len(outcome.errors))]
    return outcome


def _chunk_store(project_id: int, rows: list[VectorRow]) -> tuple[int, int]:
    """Store good rows' vectors in one transaction, rejecting rows naming no item or of another dimension."""
    ids = dict(
        Item.objects.filter(project_id=project_id, external_id__in=[row.external_id for row in rows])
        .values_list("external_id", "pk")
    )
    for row in rows:
        if row.external_id not in ids:
            row.error = f"no item of this project has external_id {row.external_id!r}"
    rows = [row for row in rows if row.error is None]
    if not rows:
        return 0, 0
    with transaction.atomic():
        dim = embedding_dim_settle(project_id, len(rows[0].vector) // 4)
        vectors = {}
        for row in rows:
            row.error = dimension_error(row.vector, dim)
            if row.error is None:
                vectors[ids[row.external_id]] = row.vector
        changed = embeddings_replace(project_id, vectors)
    return changed, len(vectors) - changed


def _chunks(rows: Iterable[VectorRow], size: int) -> Iterator[list[VectorRow]]:
    chunk: list[VectorRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
