"""Mode ``all`` as JSONL, JSON or CSV written by PostgreSQL itself: one SELECT of finished lines, passed on in chunks.

Formatting each of a million rows in Python cost more than reading it; here PostgreSQL builds every
line (JSON text, or CSV cells neutralised and quoted) inside the export's READ ONLY, REPEATABLE READ
snapshot, and Python only joins each batch of lines. The output is byte for byte what ``formats``'
writers make of ``rows.export_rows`` (tests compare the two). Image projects keep that Python path: their
signed links need the secret key.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from django.db import connection

from ..models import Project
from . import formats
from .rows import MODEL_VERSION_SQL, ExportOptions, export_statement, snapshot_rows, timestamp_sql

FORMATS = ("jsonl", "json", "csv")
# csv.writer (excel dialect, minimal quoting) quotes a cell that holds one of these, or a quote.
CSV_QUOTE_IF = (",", "\n", "\r")


def supported(project: Project, fmt: str, options: ExportOptions) -> bool:
    """Whether PostgreSQL writes this export: mode all as JSONL, JSON or CSV of a text or tabular project."""
    return (
        connection.vendor == "postgresql" and options.mode == "all" and fmt in FORMATS
        and project.kind != Project.Kind.IMAGE
    )


def _char(char: str) -> str:
    """A one-character SQL string constant."""
    return f"'{char}'" if char.isprintable() and char not in "'\\" else f"chr({ord(char)})"


def _py_float(column: str) -> str:
    """SQL for the float as Python's repr() writes it (PostgreSQL writes 1.0 as '1' and 1e15 as '1e+15')."""
    digits = f"replace(split_part(CAST(abs({column}) AS TEXT), 'e', 1), '.', '')"
    return (
        f"CASE WHEN {column} = 'NaN' THEN 'nan' WHEN {column} = 'Infinity' THEN 'inf'"
        f" WHEN {column} = '-Infinity' THEN '-inf'"
        # repr() keeps fixed notation below 1e16, PostgreSQL below 1e15: spell the digits out.
        f" WHEN abs({column}) >= 1e15 AND abs({column}) < 1e16 THEN"
        f" CASE WHEN {column} < 0 THEN '-' ELSE '' END || CASE WHEN length({digits}) <= 16"
        f" THEN rpad({digits}, 16, '0') || '.0' ELSE left({digits}, 16) || '.' || substr({digits}, 17) END"
        f" WHEN {column} = trunc({column}) AND abs({column}) < 1e15 THEN CAST({column} AS TEXT) || '.0'"
        f" ELSE CAST({column} AS TEXT) END"
    )


def _json_string(expr: str) -> str:
    """SQL for the text as a JSON string; PostgreSQL escapes as json.encoder.encode_basestring does."""
    return f"CAST(to_json(CAST({expr} AS TEXT)) AS TEXT)"


def _csv_text(expr: str) -> str:
    """SQL for the text as ``formats.csv_text`` writes it: a formula start neutralised, quoted as csv.writer."""
    starts = ", ".join(_char(char) for char in formats.FORMULA_STARTS)
    cell = f"CASE WHEN left({expr}, 1) IN ({starts}) THEN '''' || {expr} ELSE {expr} END"
    special = " OR ".join(f"strpos({expr}, {_char(char)}) > 0" for char in CSV_QUOTE_IF)
    return (
        f"""CASE WHEN strpos({expr}, '"') > 0 THEN '"' || replace({cell}, '"', '""') || '"'"""
        f""" WHEN {special} THEN '"' || {cell} || '"' ELSE {cell} END"""
    )


def _json_select(kind: str, options: ExportOptions, names: str) -> tuple[str, tuple]:
    """One annotation's JSON text, key for key as ``formats.annotation_json`` writes it; its parameters."""
    q = connection.ops.quote_name
    label = "CAST(%s AS jsonb) ->> CAST({} AS TEXT)"
    if kind == Project.Kind.TEXT:
        data = f"""',"text":' || {_json_string('i.text')}"""
    else:
        data = f"""',"values":' || COALESCE(CAST(i.{q('values')} AS TEXT), 'null')"""
    annotator = _json_string(f"u.{q('username')}")
    parts = [
        """'{"annotation_id":' || a.id""", """',"item_id":' || i.id""",
        f"""',"external_id":' || {_json_string('i.external_id')}""", data,
        f"""',"label":' || COALESCE({label.format('a.label_id')}, 'null')""",
        f"""',"annotator":' || COALESCE({annotator}, 'null')""",
        f"""',"source":' || {_json_string('a.source')}""",
        f"""',"created_at":"' || {timestamp_sql('a.created_at')} || '"'""",
        f"""',"updated_at":"' || {timestamp_sql('a.updated_at')} || '"'""",
        """',"time_spent_ms":' || COALESCE(CAST(a.time_spent_ms AS TEXT), 'null')""",
    ]
    params = [names]
    if options.include_audit:
        parts.append("""',"is_audit":' || CASE WHEN a.is_audit THEN 'true' ELSE 'false' END""")
    if options.include_prediction:
        parts += [
            f"""',"model_version":' || COALESCE(CAST({MODEL_VERSION_SQL} AS TEXT), 'null')""",
            f"""',"predicted_label":' || COALESCE({label.format('a.predicted_label_id')}, 'null')""",
            f"""',"confidence":' || COALESCE({_py_float('a.predicted_confidence')}, 'null')""",
        ]
        params.append(names)
    parts.append("""',"metadata":' || COALESCE(CAST(i.metadata AS TEXT), '{}') || '}'""")
    return " || ".join(parts), tuple(params)


def _csv_select(kind: str, options: ExportOptions, names: str) -> tuple[str, tuple]:
    """One annotation's CSV line (without its end) as ``formats.annotation_csv`` writes it; its parameters."""
    q = connection.ops.quote_name
    label = "COALESCE(CAST(%s AS jsonb) ->> CAST({} AS TEXT), '')"
    data = "i.text" if kind == Project.Kind.TEXT else f"CAST(i.{q('values')} AS TEXT)"
    annotator = _csv_text(f"u.{q('username')}")
    cells = [
        "CAST(a.id AS TEXT)", "CAST(i.id AS TEXT)", _csv_text("i.external_id"), f"COALESCE({_csv_text(data)}, '')",
        label.format("a.label_id"), f"COALESCE({annotator}, '')", "a.source",
        timestamp_sql("a.created_at"), timestamp_sql("a.updated_at"), "COALESCE(CAST(a.time_spent_ms AS TEXT), '')",
    ]
    params = [names]
    if options.include_audit:
        cells.append("CASE WHEN a.is_audit THEN 'true' ELSE 'false' END")
    if options.include_prediction:
        cells += [
            f"COALESCE(CAST({MODEL_VERSION_SQL} AS TEXT), '')", label.format("a.predicted_label_id"),
            f"COALESCE({_py_float('a.predicted_confidence')}, '')",
        ]
        params.append(names)
    cells.append(_csv_text("COALESCE(CAST(i.metadata AS TEXT), '{}')"))
    return " || ',' || ".join(cells), tuple(params)


def _lines(sql: str, params: list, batch: int, end: str) -> Iterator[str]:
    """The one-column rows of ``sql`` as text chunks, each row ending in ``end``."""
    for rows in snapshot_rows(sql, params, batch):
        yield end.join([row[0] for row in rows]) + end


def project_export_sql(project: Project, fmt: str, ctx: formats.ExportContext, batch: int) -> Iterator[str]:
    """The export in ``fmt`` as text chunks, written by PostgreSQL (see ``supported``)."""
    if fmt == "csv":
        names = json.dumps({str(pk): formats.csv_text(name) for pk, name in ctx.label_names.items()})
        select, select_params = _csv_select(project.kind, ctx.options, names)
    else:
        names = json.dumps({str(pk): json.encoder.encode_basestring(name) for pk, name in ctx.label_names.items()})
        select, select_params = _json_select(project.kind, ctx.options, names)
    sql, params = export_statement(project, ctx.options, item_range=False, select=select, select_params=select_params)
    if fmt == "csv":
        return _csv(formats.columns(ctx), _lines(sql, params, batch, "\r\n"))
    lines = _lines(sql, params, batch, "\n")
    return lines if fmt == "jsonl" else _json_array(lines)


def _csv(head: list[str], lines: Iterator[str]) -> Iterator[str]:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(head)
    yield buffer.getvalue()
    yield from lines


def _json_array(lines: Iterator[str]) -> Iterator[str]:
    """JSON lines (each chunk ending in a line break) as the JSON array ``formats.write_json`` writes."""
    yield "["
    first = True
    for chunk in lines:
        # A JSON text holds no raw line break: each one ends a row.
        yield ("\n" if first else ",\n") + chunk[:-1].replace("\n", ",\n")
        first = False
    yield "\n]\n"
