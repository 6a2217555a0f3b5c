"""Imported embeddings without the database: one vector checked and packed as float32 bytes, and files of them."""
import csv
import io
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..models.projects import EMBEDDING_MAX_DIMENSIONS
from .rows import ImportFileError, RowError, external_id_of, json_int, json_lines, shown

FLOAT32_MAX = float(np.finfo(np.float32).max)
# A CSV field may hold a whole vector as JSON text: room for the longest vector written out in full.
CSV_FIELD_MAX_CHARS = 32 * EMBEDDING_MAX_DIMENSIONS
VECTOR_FILE_FORMATS = ("jsonl", "csv")
_NUMBER_TYPES = frozenset({int, float})
_KINDS = {dict: "an object", bool: "true or false", int: "a number", float: "a number", type(None): "null"}


@dataclass(slots=True)
class VectorRow:
    """One row of a file of embeddings: an item's external_id and its vector (float32 bytes), or why it is rejected."""

    number: int
    where: str = ""
    external_id: str = ""
    vector: bytes | None = None
    error: str | None = None


def vector_bytes(raw: Any) -> bytes:
    """Check one embedding, a list of numbers (or the JSON text of one); return its float32 bytes or raise RowError."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw, parse_int=json_int)
        except (ValueError, RecursionError):
            raise RowError("the embedding is not a JSON list of numbers") from None
    if not isinstance(raw, list):
        raise RowError(f"the embedding must be a list of numbers, not {_KINDS.get(type(raw), type(raw).__name__)}")
    if not _NUMBER_TYPES.issuperset(map(type, raw)):  # by type, so not bool
        index, value = next((i, value) for i, value in enumerate(raw) if type(value) not in _NUMBER_TYPES)
        raise RowError(f"the embedding's value at index {index} is {shown(value)}, not a number")
    return _packed(raw)


def vector_from_columns(record: Mapping[str, str], columns: Sequence[str]) -> bytes | None:
    """The embedding of a CSV record held in ``columns`` (<field>_0, <field>_1, …), None if they are all empty."""
    texts = [record[column] for column in columns]
    if not any(texts):
        return None
    try:
        values = list(map(float, texts))
    except ValueError:
        if not any(text.strip() for text in texts):
            return None
        column, text = next((c, text) for c, text in zip(columns, texts) if not _is_float(text))
        reason = "is empty" if not text.strip() else f"holds {shown(text)}, not a number"
        raise RowError(f"the embedding's column {column!r} {reason}") from None
    return _packed(values)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def vector_of_record(record: Mapping[str, Any], field: str, columns: Sequence[str] = ()) -> bytes | None:
    """The embedding of a record: in its CSV ``columns`` if the file has them, else in its ``field``; None if absent."""
    if columns:
        return vector_from_columns(record, columns)
    raw = record.get(field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return vector_bytes(raw)


def dimension_error(vector: bytes, dim: int) -> str | None:
    """Why a vector does not fit a project whose embeddings have ``dim`` numbers, or None."""
    count = len(vector) // 4
    if count == dim:
        return None
    return f"the embedding has {count:,} numbers; this project's have {dim:,}"


def embedding_columns(columns: Sequence[str], field: str) -> list[str]:
    """The columns <field>_0, <field>_1, … of a CSV header, in order ([] if it has none); raise ImportFileError.

    They must run from 0 without a gap, and a header cannot hold the embedding both so and in one column ``field``.
    """
    pattern = re.compile(re.escape(field) + r"_(0|[1-9][0-9]*)")
    split = {int(found.group(1)): column for column in columns if (found := pattern.fullmatch(column))}
    if not split:
        return []
    if field in columns:
        raise ImportFileError(
            f"The header holds the embedding both in {field!r} and in {field}_0, {field}_1, …; keep one of them."
        )
    if len(split) > EMBEDDING_MAX_DIMENSIONS:
        raise ImportFileError(
            f"The header has {len(split):,} embedding columns, above the limit of {EMBEDDING_MAX_DIMENSIONS:,}."
        )
    gap = next((index for index in range(len(split)) if index not in split), None)
    if gap is not None:
        raise ImportFileError(
            f"The embedding columns {field}_0, {field}_1, … must follow on without a gap; {field}_{gap} is missing."
        )
    return [split[index] for index in range(len(split))]


def vector_record_row(number: int, where: str, record: Any, field: str) -> VectorRow:
    """Build a row of a file of embeddings from one JSON object holding external_id and ``field``."""
    row = VectorRow(number, where)
    if not isinstance(record, dict):
        row.error = f"expected a JSON object, found {type(record).__name__}"
        return row
    try:
        row.external_id = external_id_of(record.get("external_id"))
        row.vector = vector_of_record(record, field)
    except RowError as exc:
        row.error = str(exc)
    if row.error is None and not row.external_id:
        row.error = "external_id is missing"
    return row


def vector_rows(fileobj: IO[bytes], fmt: str, *, field: str, name: str) -> Iterator[VectorRow]:
    """Read a JSONL or CSV file of embeddings (external_id and the embedding) row by row.

    A problem of the whole file (not UTF-8, malformed CSV or JSON, no such columns) raises ImportFileError,
    possibly mid-way; read the file through once before storing anything from it.
    """
    text = io.TextIOWrapper(fileobj, encoding="utf-8-sig", newline="" if fmt == "csv" else None)
    try:
        yield from (_csv_rows if fmt == "csv" else _jsonl_rows)(text, field, name)
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{name} is not UTF-8 text; save it as UTF-8.") from exc
    finally:
        text.detach()  # a collected wrapper would close the caller's file


def _jsonl_rows(text: IO[str], field: str, name: str) -> Iterator[VectorRow]:
    for number, lineno, record in json_lines(text, f"{name} line"):
        if isinstance(record, RowError):
            yield VectorRow(number, f"line {lineno}", error=str(record))
        else:
            yield vector_record_row(number, f"line {lineno}", record, field)


def _csv_rows(text: IO[str], field: str, name: str) -> Iterator[VectorRow]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_MAX_CHARS))
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise ImportFileError(f"{name} is empty.")
        columns = [column.strip() for column in header]
        twice = next((column for i, column in enumerate(columns) if column in columns[:i]), None)
        if twice is not None:
            raise ImportFileError(f"{name}: column {twice!r} appears twice in the header.")
        try:
            split = embedding_columns(columns, field)
        except ImportFileError as exc:
            raise ImportFileError(f"{name}: {exc}") from None
        if "external_id" not in columns or not (split or field in columns):
            raise ImportFileError(
                f"{name} needs the columns external_id and {field} (a JSON list), or external_id and "
                f"{field}_0, {field}_1, … (a number each)."
            )
        number, line = 0, reader.line_num
        for fields in reader:
            start, line = line + 1, reader.line_num
            if not fields:
                continue
            number += 1
            row = VectorRow(number, f"line {start}")
            if len(fields) != len(columns):
                row.error = f"has {len(fields)} fields, the header has {len(columns)}"
                yield row
                continue
            record = dict(zip(columns, fields))
            try:
                row.external_id = external_id_of(record["external_id"])
                row.vector = vector_of_record(record, field, split)
            except RowError as exc:
                row.error = str(exc)
            if row.error is None and not row.external_id:
                row.error = "external_id is missing"
            yield row
    except csv.Error as exc:
        raise ImportFileError(f"{name} line {reader.line_num}: malformed CSV ({exc}).") from exc


def _packed(values: list) -> bytes:
    """Numbers as float32 bytes, each finite and within float32's range; raise RowError."""
    count = len(values)
    if not count:
        raise RowError("the embedding is empty")
    if count > EMBEDDING_MAX_DIMENSIONS:
        raise RowError(f"the embedding has {count:,} numbers, above the limit of {EMBEDDING_MAX_DIMENSIONS:,}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer no float holds
        index = next(i for i, value in enumerate(values) if isinstance(value, int) and abs(value) > FLOAT32_MAX)
        raise RowError(f"the embedding's value at index {index} is beyond the range of float32 (±3.4e38)") from None
    outside = ~(np.abs(array) <= FLOAT32_MAX)  # NaN compares false
    if outside.any():
        index = int(outside.argmax())
        value = float(array[index])
        if math.isnan(value):
            what = "NaN, not a finite number"
        elif math.isinf(value):
            what = "infinite, not a finite number"
        else:
            what = f"{value:.4g}, beyond the range of float32 (±3.4e38)"
        raise RowError(f"the embedding's value at index {index} is {what}")
    return array.astype(np.float32).tobytes()
