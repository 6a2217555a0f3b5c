"""What reading a file yields: rows, their limits and errors, and the formats each project kind takes."""
import json
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import images

RESERVED_COLUMNS = frozenset({"external_id", "label", "gold_label", "metadata"})
META_PREFIX = "meta_"
EXTERNAL_ID_MAX = 255
# An integer of more digits is no finite float (values) and no 255-character id: refused by the
# JSON reader before Python converts it (above 4,300 digits that conversion raises).
JSON_MAX_INT_DIGITS = 309
EXTENSIONS = {
    ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".zip": "zip",
    **{extension: "image" for extension in images.EXTENSIONS},
}
# Half of a UTF-16 surrogate pair: JSON can escape one (\ud800), but it is no text a database stores.
SURROGATE = re.compile("[\ud800-\udfff]")
KIND_FORMATS = {"text": ("csv", "jsonl", "json"), "tabular": ("csv", "jsonl", "json"), "image": ("zip", "image")}
KIND_FORMATS_TEXT = {
    "text": "CSV, JSONL or JSON files",
    "tabular": "CSV, JSONL or JSON files",
    "image": "images (PNG, JPEG, GIF, BMP, WebP) or a ZIP of them",
}


class ImportFileError(Exception):
    """The whole file cannot be imported; the message says why."""


class RowError(Exception):
    """One row cannot be imported; the message says why."""


@dataclass(frozen=True)
class Limits:
    """The bounds a file is read within (the settings' import limits)."""

    text_max_chars: int
    image_max_bytes: int
    max_features: int
    zip_max_entries: int
    # Bytes all entries of a ZIP may inflate to together, and how many times the archive's size that may be.
    zip_max_bytes: int = 2 * 1024**3
    zip_max_ratio: int = 100


@dataclass(slots=True)
class Row:
    """One data row (or image) of a file: its content, or why it is rejected."""

    number: int
    where: str = ""
    external_id: str = ""
    text: str = ""
    values: list[float] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    gold_label: str | None = None
    image_data: bytes | None = None
    content_hash: str = ""
    derived_id: bool = False
    embedding: bytes | None = None  # float32 bytes (vectors.vector_bytes)
    error: str | None = None

    @property
    def nbytes(self) -> int:
        return len(self.image_data or b"") + len(self.text) + len(self.embedding or b"")


def file_format(filename: str) -> str:
    """Return 'csv', 'jsonl', 'json', 'zip' or 'image' from the file name, or raise ImportFileError."""
    ext = posixpath.splitext(filename.lower())[1]
    if ext not in EXTENSIONS:
        raise ImportFileError(f"LabelHub does not import {ext} files." if ext else "The file name has no extension.")
    return EXTENSIONS[ext]


def external_id_of(raw: Any) -> str:
    """Return a field's external_id, stripped ("" if it is absent); raise RowError for a value that cannot be one."""
    if raw is None:
        return ""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise RowError("external_id must be a string or an integer")
    value = str(raw).strip()
    if len(value) > EXTERNAL_ID_MAX:
        raise RowError(f"external_id is {len(value):,} characters, above the {EXTERNAL_ID_MAX}-character limit")
    if "\x00" in value:
        raise RowError("external_id contains a NUL character")
    if SURROGATE.search(value):
        raise RowError("external_id contains a lone surrogate, which is not text")
    return value


def json_int(digits: str) -> int:
    """parse_int of the JSON Lines readers: a row with an integer of over JSON_MAX_INT_DIGITS digits is rejected."""
    count = len(digits.lstrip("-"))
    if count > JSON_MAX_INT_DIGITS:
        raise RowError(f"a number has {count:,} digits, above the {JSON_MAX_INT_DIGITS}-digit limit")
    return int(digits)


def error_line(error: dict[str, Any]) -> str:
    """Render one rejected row as 'row 12 (line 13): reason'."""
    where = f" ({error['where']})" if error.get("where") else ""
    return f"row {error['row']}{where}: {error['reason']}"


def first_line(exc: Exception) -> str:
    """Return the first line of an exception's message, or its type's name if it has none."""
    message = exc.args[0] if exc.args else str(exc)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return str(message).strip().splitlines()[0] if str(message).strip() else type(exc).__name__


def shown(raw: Any) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:37]}..."


def json_lines(lines: Iterable[str], where: str) -> Iterator[tuple[int, int, Any]]:
    """The records of JSON Lines: (row number, line number, the parsed value, or the RowError of a bad number).

    Blank lines are skipped. A line that is not JSON fails the whole file: ImportFileError
    "<where> <line>: invalid JSON (…)", ``where`` naming the file ("Line", "vectors.jsonl line").
    """
    number = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        number += 1
        try:
            yield number, lineno, json.loads(line, parse_int=json_int)
        except RowError as exc:
            yield number, lineno, exc
        except json.JSONDecodeError as exc:
            raise ImportFileError(f"{where} {lineno}: invalid JSON ({exc.msg} at column {exc.colno}).") from exc
        except RecursionError as exc:
            raise ImportFileError(f"{where} {lineno}: JSON nested too deeply.") from exc
