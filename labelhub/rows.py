"""Rows of the hot paths in plain SQL: model instances read from joined rows, and inserted, without the ORM's compiler.

The labeling queue runs a dozen statements per item served; compiling each through the ORM cost
more Python time than PostgreSQL spent running it. These helpers keep what the ORM guarantees
that matters here: values pass through the same database converters (``from_db_value``, the
backend's own), and an insert prepares every concrete field as ``save()`` would (defaults,
``auto_now``), so a field added to a model later is read and written without touching the SQL.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

M = TypeVar("M", bound=models.Model)


@cache
def qn(name: str) -> str:
    """The name quoted for the database (the app runs on one database, so the quoting never changes)."""
    return connection.ops.quote_name(name)


def _db():
    """The default database's connection itself: ``django.db.connection`` is a proxy that looks it up
    on every attribute access, which the per-row loops below would pay for each value."""
    return connections[DEFAULT_DB_ALIAS]


@cache
def columns(model: type[models.Model], alias: str) -> str:
    """The model's concrete columns under the table alias, in field order (as ``build`` reads them)."""
    return ", ".join(f"{alias}.{qn(field.column)}" for field in model._meta.concrete_fields)


@cache
def _readers(model: type[models.Model], vendor: str) -> tuple[list[str], list[tuple[Any, list]]]:
    attnames, readers = [], []
    for field in model._meta.concrete_fields:
        column = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        attnames.append(field.attname)
        readers.append((column, converters))
    return attnames, readers


def build(model: type[M], row: Sequence[Any], start: int = 0) -> tuple[M | None, int]:
    """The instance whose ``columns`` start at ``row[start]`` (None if its key is NULL, as after a
    LEFT JOIN that found nothing), and the index just past them."""
    db = _db()
    attnames, readers = _readers(model, db.vendor)
    end = start + len(attnames)
    values = []
    for value, (column, converters) in zip(row[start:end], readers, strict=True):
        for converter in converters:
            value = converter(value, column, db)
        values.append(value)
    pk_index = attnames.index(model._meta.pk.attname)
    if values[pk_index] is None:
        return None, end
    return model.from_db(db.alias, attnames, values), end


@cache
def _insert_sql(model: type[models.Model], vendor: str) -> tuple[str, list[models.Field]]:
    meta = model._meta
    fields = [field for field in meta.concrete_fields if field is not meta.auto_field]
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(field.column) for field in fields)})"
        f" VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if meta.auto_field is not None:
        sql += f" RETURNING {qn(meta.auto_field.column)}"
    return sql, fields


def insert(obj: M) -> M:
    """INSERT a new instance as ``save()`` would (defaults, ``auto_now``), in one precompiled statement; no signals."""
    meta, db = obj._meta, _db()
    sql, fields = _insert_sql(type(obj), db.vendor)
    params = [field.get_db_prep_save(field.pre_save(obj, True), db) for field in fields]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        if meta.auto_field is not None:
            setattr(obj, meta.auto_field.attname, cursor.fetchone()[0])
    obj._state.adding = False
    obj._state.db = db.alias
    return obj


def insert_values(obj: models.Model, **sql_values: str) -> tuple[str, str, list[Any]]:
    """What ``insert`` writes for a new instance, for an ``INSERT ... SELECT``: the column list, the
    select list and its params. ``sql_values`` give some fields (by attname) as SQL expressions instead."""
    db = _db()
    _, fields = _insert_sql(type(obj), db.vendor)
    expressions, params = [], []
    for field in fields:
        if field.attname in sql_values:
            expressions.append(sql_values[field.attname])
        else:
            expressions.append("%s")
            params.append(field.get_db_prep_save(field.pre_save(obj, True), db))
    return ", ".join(qn(field.column) for field in fields), ", ".join(expressions), params


def fetch_one(sql: str, params: Sequence[Any]) -> tuple | None:
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run a write; the number of rows it touched."""
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
