"""Read a project's labels for export: items with their annotations, in item order, from one consistent snapshot.

On PostgreSQL the rows come from one server-side (named) cursor inside a READ ONLY, REPEATABLE READ
transaction: memory stays flat whatever the project's size, the first rows arrive at once, and
labels committed while the export runs are either wholly in it or wholly out, never twice. Other
databases (SQLite) are read in batches of items by key; each batch sees committed rows only, so
no label is half-written or repeated, but labels stored during a long export may or may not be in it.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from ..models import Annotation, Item, Project

MODES = ("final", "all")
FIRST_BATCH = 200


@dataclass(frozen=True)
class ExportOptions:
    """What to export: ``final`` (one row per item, its final label) or ``all`` (every annotation)."""

    mode: str = "final"
    since: datetime | None = None
    include_prediction: bool = False
    include_audit: bool = False


@dataclass(slots=True)
class ExportAnnotation:
    id: int
    annotator: str | None
    label_id: int
    source: str
    is_audit: bool
    created_at: str
    updated_at: str
    time_spent_ms: int | None
    model_version: int | None
    predicted_label_id: int | None
    predicted_confidence: float | None


@dataclass(slots=True)
class ExportItem:
    id: int
    external_id: str
    text: str
    values: str | None  # JSON text, as stored
    image: str
    metadata: str  # JSON text, as stored
    resolved_label_id: int | None
    annotations: list[ExportAnnotation] = field(default_factory=list)


def _iso(value) -> str:
    """An ISO 8601 UTC timestamp from a driver value (SQLite: a naive datetime in UTC, or 'YYYY-MM-DD HH:MM:SS[.f]')."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace(" ", "T", 1) + "+00:00"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt_timezone.utc)
    return value.isoformat()


# Row layout of ``export_rows``.
(I_ID, I_EXTERNAL_ID, I_TEXT, I_VALUES, I_IMAGE, I_METADATA, _I_RESOLVED, A_ID, A_ANNOTATOR, A_LABEL, A_SOURCE,
 A_AUDIT, A_CREATED, A_UPDATED, A_TIME_SPENT, A_MODEL_VERSION, A_PREDICTED, A_CONFIDENCE) = range(18)


# The live model version when the label was stored; 0 is the queue's seeding before any model, exported as null.
MODEL_VERSION_SQL = "NULLIF(a.model_version, 0)"


def timestamp_sql(column: str) -> str:
    """The timestamp as ISO 8601 text made by PostgreSQL (its driver's datetime parsing dominated the export).

    Its text form under the export's ``TimeZone = 'UTC'`` and ``DateStyle = ISO`` is
    '2026-12-01 13:05:42.123456+00'; two string edits cost PostgreSQL half of what to_char() does.
    """
    if connection.vendor == "postgresql":
        return f"replace(CAST({column} AS TEXT), ' ', 'T') || ':00'"
    return column


def export_statement(
    project: Project, options: ExportOptions, *, item_range: bool, select: str = "", select_params: tuple = ()
) -> tuple[str, list]:
    """The export's one statement: items joined to their annotations and annotators, ordered by item then annotation.

    ``select`` replaces the row layout of ``export_rows`` by other expressions over the aliases
    i (item), a (annotation) and u (annotator), with ``select_params`` for its placeholders.
    """
    q = connection.ops.quote_name
    item, annotation, user = q(Item._meta.db_table), q(Annotation._meta.db_table), q(get_user_model()._meta.db_table)
    since = connection.ops.adapt_datetimefield_value(options.since) if options.since is not None else None
    params: list = list(select_params)
    if options.mode == "all":
        join = f"INNER JOIN {annotation} a ON a.item_id = i.id"
        if since is not None:
            join += " AND a.updated_at >= %s"
            params.append(since)
        where = "i.project_id = %s"
        params.append(project.pk)
    else:
        # Final labels need every annotation of an item that changed, and items a reviewer resolved
        # without any annotation count too.
        join = f"LEFT JOIN {annotation} a ON a.item_id = i.id"
        where = "i.project_id = %s AND (a.id IS NOT NULL OR i.resolved_label_id IS NOT NULL)"
        params.append(project.pk)
        if since is not None:
            where += (
                f" AND (i.resolved_at >= %s OR EXISTS (SELECT 1 FROM {annotation} a2"
                " WHERE a2.item_id = i.id AND a2.updated_at >= %s))"
            )
            params += [since, since]
    if item_range:
        where += " AND i.id >= %s AND i.id <= %s"
    select = select or (
        f"i.id, i.external_id, i.text, CAST(i.{q('values')} AS TEXT), i.image, CAST(i.metadata AS TEXT),"
        f" i.resolved_label_id, a.id, u.{q('username')}, a.label_id, a.source, a.is_audit,"
        f" {timestamp_sql('a.created_at')}, {timestamp_sql('a.updated_at')}, a.time_spent_ms, {MODEL_VERSION_SQL},"
        f" a.predicted_label_id, a.predicted_confidence"
    )
    sql = (
        f"SELECT {select} FROM {item} i {join} LEFT JOIN {user} u ON u.id = a.annotator_id"
        f" WHERE {where} ORDER BY i.id, a.id"
    )
    return sql, params


def _rows_iso(row_batches: Iterator[list[tuple]]) -> Iterator[list[tuple]]:
    """Other databases: timestamps to ISO 8601 text and flags to booleans, as PostgreSQL gives them."""
    for rows in row_batches:
        yield [
            (*row[:A_AUDIT], None if row[A_AUDIT] is None else bool(row[A_AUDIT]), _iso(row[A_CREATED]),
             _iso(row[A_UPDATED]), *row[A_TIME_SPENT:])
            for row in rows
        ]


def group_items(row_batches: Iterator[list[tuple]]) -> Iterator[list[ExportItem]]:
    """Fold rows (ordered by item) into items with their annotations; yield only items whose rows are all read."""
    current: ExportItem | None = None
    for rows in row_batches:
        done: list[ExportItem] = []
        for row in rows:
            if current is None or current.id != row[0]:
                if current is not None:
                    done.append(current)
                current = ExportItem(row[0], row[1], row[2], row[3], row[4], row[5] or "{}", row[6])
            if row[7] is not None:
                current.annotations.append(ExportAnnotation(*row[A_ID:]))
        if done:
            yield done
    if current is not None:
        yield [current]


def snapshot_rows(sql: str, params: list, batch: int) -> Iterator[list[tuple]]:
    """PostgreSQL: the rows through one named cursor inside a READ ONLY, REPEATABLE READ transaction."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            if outermost:
                # Must be the transaction's first statement; inside a caller's transaction, that one governs.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # The text forms of timestamps that timestamp_sql() relies on, and of floats (shortest exact) that
            # sql_writers relies on, for this transaction only.
            cursor.execute("SET LOCAL TimeZone = 'UTC'")
            cursor.execute("SET LOCAL DateStyle = 'ISO'")
            cursor.execute("SET LOCAL extra_float_digits = 1")
            # Compiling a big export's expressions took longer than reading the first rows without it.
            cursor.execute("SET LOCAL jit = off")
        with connection.connection.cursor(name=f"export_{uuid.uuid4().hex}") as cursor:
            cursor.itersize = batch
            cursor.execute(sql, params)
            # A small first batch: the client sees the first rows at once, whatever the batch size.
            size = min(batch, FIRST_BATCH)
            while rows := cursor.fetchmany(size):
                yield rows
                size = batch


def _keyset_rows(project: Project, options: ExportOptions, batch: int) -> Iterator[list[tuple]]:
    """Other databases: batches of items by id, each read whole in its own statement."""
    sql, params = export_statement(project, options, item_range=True)
    last = 0
    while True:
        ids = list(
            Item.objects.filter(project=project, pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch]
        )
        if not ids:
            return
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, ids[0], ids[-1]])
            rows = cursor.fetchall()
        if rows:
            yield rows
        last = ids[-1]


def export_rows(project: Project, options: ExportOptions, *, batch: int | None = None) -> Iterator[list[tuple]]:
    """The export's rows in batches: one per annotation (items without any: one with NULL annotation columns),
    ordered by item then annotation, timestamps as ISO 8601 text."""
    if options.mode not in MODES:
        raise ValueError(f"Unknown export mode {options.mode!r}.")
    batch = batch or settings.LABELHUB_EXPORT_BATCH
    if connection.vendor == "postgresql":
        sql, params = export_statement(project, options, item_range=False)
        return snapshot_rows(sql, params, batch)
    return _rows_iso(_keyset_rows(project, options, batch))
