"""Parse and check import files (CSV, JSONL, JSON, images, ZIP) into rows, without the database."""
import csv
import hashlib
import io
import json
import math
import posixpath
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import ijson
from PIL import Image, ImageOps

from . import images
from .images import ImageRefused, image_open

RESERVED_COLUMNS = frozenset({"external_id", "label", "gold_label", "metadata"})
META_PREFIX = "meta_"
EXTERNAL_ID_MAX = 255
THUMBNAIL_SIZE = 256
EXTENSIONS = {
    ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".zip": "zip",
    **{extension: "image" for extension in images.EXTENSIONS},
}
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
    text_max_chars: int
    image_max_bytes: int
    image_max_pixels: int
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
    error: str | None = None

    @property
    def nbytes(self) -> int:
        return len(self.image_data or b"") + len(self.text)


def file_format(filename: str) -> str:
    """Return 'csv', 'jsonl', 'json', 'zip' or 'image' from the file name, or raise ImportFileError."""
    ext = posixpath.splitext(filename.lower())[1]
    if ext not in EXTENSIONS:
        raise ImportFileError(f"LabelHub does not import {ext} files." if ext else "The file name has no extension.")
    return EXTENSIONS[ext]


def error_line(error: dict[str, Any]) -> str:
    """Render one rejected row as 'row 12 (line 13): reason'."""
    where = f" ({error['where']})" if error.get("where") else ""
    return f"row {error['row']}{where}: {error['reason']}"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def values_hash(values: list[float]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(values)}d", *values)).hexdigest()


def _first_line(exc: Exception) -> str:
    message = exc.args[0] if exc.args else str(exc)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return str(message).strip().splitlines()[0] if str(message).strip() else type(exc).__name__


def _not_utf8(fileobj: IO[bytes]) -> str:
    """Say where a file stops being UTF-8 (decoding reads ahead in blocks, so look again line by line)."""
    fileobj.seek(0)
    for lineno, line in enumerate(fileobj, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"The file is not UTF-8 text (line {lineno}, byte {exc.start + 1} of the line); save it as UTF-8."
    return "The file is not UTF-8 text; save it as UTF-8."


def _is_feature(column: str) -> bool:
    return column not in RESERVED_COLUMNS and not column.startswith(META_PREFIX)


def _unsafe_path(name: str) -> bool:
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or ".." in path.split("/"):
        return True
    return posixpath.normpath(path).startswith("..")


JSON_MAX_DEPTH = 32
_JSON_SCALARS = frozenset({"null", "boolean", "integer", "double", "number", "string"})


def _json_array_items(fileobj: IO[bytes]) -> Iterator[Any]:
    """Yield the items of a top-level JSON array one at a time, refusing nesting deeper than JSON_MAX_DEPTH.

    ijson.items() keeps a dotted path per level, so a few hundred kilobytes of brackets would cost
    memory quadratic in the depth; its basic events with our own depth count cost nothing of the kind.
    """
    events = ijson.basic_parse(fileobj, use_float=True)
    first = next(events, None)
    if first is None or first[0] != "start_array":
        raise ImportFileError("A JSON file must hold one top-level array of objects, [{...}, {...}].")
    depth, builder = 1, None
    for event, value in events:
        if event in ("start_map", "start_array"):
            depth += 1
            if depth > JSON_MAX_DEPTH:
                raise ImportFileError(f"JSON nested deeper than {JSON_MAX_DEPTH} levels; rows must be flat objects.")
            builder = builder or ijson.common.ObjectBuilder()
            builder.event(event, value)
        elif event in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                break
            builder.event(event, value)
            if depth == 1:
                yield builder.value
                builder = None
        elif builder is not None:
            builder.event(event, value)
        elif event in _JSON_SCALARS:
            yield value
    for _event in events:  # anything after the array is an error the parser reports
        pass


class RowReader:
    """Iterate the rows of one file.

    Problems with the whole file raise ImportFileError (possibly mid-way, so the caller must
    roll back); problems with one row come back as a Row with ``error`` set.
    ``feature_names`` starts as the project's; for a project without features it is filled
    in from the file's header (or first JSON object).
    """

    def __init__(
        self,
        fileobj: IO[bytes],
        fmt: str,
        *,
        filename: str,
        kind: str,
        label_names: frozenset[str],
        feature_names: list[str],
        limits: Limits,
    ) -> None:
        self.fileobj, self.fmt, self.filename, self.kind = fileobj, fmt, filename, kind
        self.label_names, self.limits = label_names, limits
        self.feature_names = list(feature_names)
        self._features_fixed = bool(feature_names)
        self._features_seen = False

    def rows_to_check(self) -> Iterator[Row]:
        """Read the file through for problems of the whole file (raising ImportFileError), storing nothing.

        Yields the rows of record files as it parses them. A ZIP is checked from its central
        directory and labels.csv, an image not at all: their entries' problems are rows' problems.
        """
        if self.fmt == "zip":
            with self._zip_open() as archive:
                self._zip_labels(archive, _InflateBudget(self.limits.zip_max_bytes))
        elif self.fmt != "image":
            yield from self

    def __iter__(self) -> Iterator[Row]:
        readers = {"csv": self._csv, "jsonl": self._jsonl, "json": self._json, "zip": self._zip, "image": self._image}
        return readers[self.fmt]()

    # Files of records (text and tabular projects)

    def _csv(self) -> Iterator[Row]:
        # Texts between the limit and twice it are rejected as rows rather than failing the file.
        csv.field_size_limit(max(csv.field_size_limit(), 2 * self.limits.text_max_chars))
        text = io.TextIOWrapper(self.fileobj, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise ImportFileError("The file is empty.")
            columns = [c.strip() for c in header]
            self._check_columns(columns)
            meta = [(i, c.removeprefix(META_PREFIX)) for i, c in enumerate(columns) if c.startswith(META_PREFIX)]
            number, line = 0, reader.line_num
            for fields in reader:
                start, line = line + 1, reader.line_num
                if not fields:
                    continue
                number += 1
                if len(fields) != len(columns):
                    yield Row(number, f"line {start}", error=f"has {len(fields)} fields, the header has {len(columns)}")
                    continue
                extra = {name: fields[i] for i, name in meta if fields[i] != ""}
                yield self._record_row(number, f"line {start}", dict(zip(columns, fields)), extra)
        except csv.Error as exc:
            raise ImportFileError(f"Line {reader.line_num}: malformed CSV ({exc}).") from exc
        except UnicodeDecodeError as exc:
            raise ImportFileError(_not_utf8(self.fileobj)) from exc
        finally:
            text.detach()  # a collected wrapper would close the caller's file

    def _jsonl(self) -> Iterator[Row]:
        number = 0
        text = io.TextIOWrapper(self.fileobj, encoding="utf-8-sig")
        try:
            for lineno, line in enumerate(text, 1):
                if not line.strip():
                    continue
                number += 1
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ImportFileError(f"Line {lineno}: invalid JSON ({exc.msg} at column {exc.colno}).") from exc
                except RecursionError as exc:
                    raise ImportFileError(f"Line {lineno}: JSON nested too deeply.") from exc
                yield self._json_row(number, f"line {lineno}", record)
        except UnicodeDecodeError as exc:
            raise ImportFileError(_not_utf8(self.fileobj)) from exc
        finally:
            text.detach()

    def _json(self) -> Iterator[Row]:
        head = self.fileobj.read(4096)
        start = 3 if head.startswith(b"\xef\xbb\xbf") else 0
        stripped = head[start:].lstrip()
        if not stripped:
            raise ImportFileError("The file is empty.")
        if not stripped.startswith(b"["):
            raise ImportFileError("A JSON file must hold one top-level array of objects, [{...}, {...}].")
        self.fileobj.seek(start)
        try:
            for number, record in enumerate(_json_array_items(self.fileobj), 1):
                yield self._json_row(number, "", record)
        except ijson.JSONError as exc:
            raise ImportFileError(f"Invalid JSON: {_first_line(exc)}.") from exc

    def _json_row(self, number: int, where: str, record: Any) -> Row:
        if not isinstance(record, dict):
            return Row(number, where, error=f"expected a JSON object, found {type(record).__name__}")
        if self.kind == "tabular":
            if not self._features_seen:
                self._check_columns(list(record))
            # A CSV header holds for every row; each JSON object brings its own columns.
            found = [c for c in record if _is_feature(c)]
            if len(found) != len(self.feature_names) or any(c not in record for c in self.feature_names):
                missing = [c for c in self.feature_names if c not in record]
                extra = [c for c in found if c not in self.feature_names]
                reason = f"missing column {missing[0]!r}" if missing else f"unexpected column {extra[0]!r}"
                return Row(number, where, error=reason)
        return self._record_row(number, where, record, {})

    def _check_columns(self, columns: list[str]) -> None:
        """Check a header (or the first JSON object's keys) and settle the feature columns."""
        seen: set[str] = set()
        for column in columns:
            if not column:
                raise ImportFileError("The header has an empty column name.")
            if column in seen:
                raise ImportFileError(f"Column {column!r} appears twice in the header.")
            seen.add(column)
        if self.kind == "text" and "text" not in seen:
            raise ImportFileError(f"The header has no 'text' column (found: {', '.join(columns)}).")
        if self.kind != "tabular":
            return
        found = [c for c in columns if _is_feature(c)]
        if not found:
            raise ImportFileError(
                "No feature columns: a tabular file needs numeric columns besides external_id and label."
            )
        if len(found) > self.limits.max_features:
            raise ImportFileError(f"{len(found):,} feature columns, above the limit of {self.limits.max_features:,}.")
        if self._features_fixed and set(found) != set(self.feature_names):
            missing = [c for c in self.feature_names if c not in seen]
            extra = [c for c in found if c not in self.feature_names]
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unexpected {', '.join(extra)}"] if extra else []
            )
            raise ImportFileError(
                f"The feature columns differ from the project's ({'; '.join(parts)}); "
                "every import of a tabular project needs the same columns."
            )
        if not self._features_fixed:
            self.feature_names = found
        self._features_seen = True

    def _record_row(self, number: int, where: str, record: dict[str, Any], extra_metadata: dict[str, str]) -> Row:
        row = Row(number, where)
        try:
            row.external_id = self._external_id(record.get("external_id"))
            row.label = self._label(record.get("label"))
            row.gold_label = self._label(record.get("gold_label"), column="gold_label")
            row.metadata = self._metadata(record.get("metadata"), extra_metadata)
            if self.kind == "text":
                row.text = self._text(record.get("text"))
                row.content_hash = text_hash(row.text)
            else:
                row.values = self._values(record)
                row.content_hash = values_hash(row.values)
        except RowError as exc:
            row.error = str(exc)
            return row
        if not row.external_id:
            # Deterministic, so that importing the same file again finds the same items.
            row.external_id, row.derived_id = f"sha256-{row.content_hash[:32]}", True
        return row

    def _external_id(self, raw: Any) -> str:
        if raw is None:
            return ""
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise RowError("external_id must be a string or an integer")
        value = str(raw).strip()
        if len(value) > EXTERNAL_ID_MAX:
            raise RowError(f"external_id is {len(value):,} characters, above the {EXTERNAL_ID_MAX}-character limit")
        if "\x00" in value:
            raise RowError("external_id contains a NUL character")
        return value

    def _label(self, raw: Any, column: str = "label") -> str | None:
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise RowError(f"{column} must be a string, not {raw!r}")
        label = raw.strip()
        if label and label not in self.label_names:
            raise RowError(f"unknown {column} {label!r}")
        return label or None

    def _metadata(self, raw: Any, extra: dict[str, str]) -> dict[str, Any]:
        if raw is None or raw == "":
            metadata: Any = {}
        elif isinstance(raw, str):
            try:
                metadata = json.loads(raw)
            except (json.JSONDecodeError, RecursionError):
                raise RowError("metadata is not valid JSON") from None
        else:
            metadata = raw
        if not isinstance(metadata, dict):
            raise RowError("metadata must be a JSON object")
        if not metadata and not extra:
            return {}
        metadata = {**metadata, **extra}
        try:
            encoded = json.dumps(metadata, allow_nan=False)
        except ValueError:
            raise RowError("metadata contains NaN or infinity, which JSON cannot store") from None
        if "\\u0000" in encoded:
            raise RowError("metadata contains a NUL character")
        return metadata

    def _text(self, raw: Any) -> str:
        if not isinstance(raw, str):
            raise RowError("text is missing" if raw is None else "text must be a string")
        if not raw.strip():
            raise RowError("text is empty")
        if len(raw) > self.limits.text_max_chars:
            raise RowError(f"text is {len(raw):,} characters, above the {self.limits.text_max_chars:,}-character limit")
        if "\x00" in raw:
            raise RowError("text contains a NUL character")
        return raw

    def _values(self, record: dict[str, Any]) -> list[float]:
        return [_number(name, record[name]) for name in self.feature_names]

    # Images (image projects)

    def _image(self) -> Iterator[Row]:
        data = self.fileobj.read(self.limits.image_max_bytes + 1)
        name = posixpath.basename(self.filename.replace("\\", "/"))
        yield self._image_row(1, name, data, None)

    def _zip(self) -> Iterator[Row]:
        archive = self._zip_open()
        with archive:
            budget = _InflateBudget(self.limits.zip_max_bytes)
            labels = self._zip_labels(archive, budget)
            number = 0
            for info in archive.infolist():
                name = info.filename
                unsafe = _unsafe_path(name)
                if info.is_dir() or name == "labels.csv":
                    continue
                if not unsafe and (name.startswith("__MACOSX/") or posixpath.basename(name).startswith(".")):
                    continue  # Finder's resource forks and hidden files are not items.
                number += 1
                if unsafe:
                    yield Row(number, name, error=f"unsafe path {name!r}: entries must stay inside the archive")
                    continue
                limit = self.limits.image_max_bytes
                if info.file_size > limit:
                    reason = f"uncompressed size {info.file_size:,} bytes is above the {limit:,}-byte image limit"
                    yield Row(number, name, error=reason)
                    continue
                if info.compress_type not in ZIP_METHODS:
                    # bzip2 and LZMA inflate a whole block per call, however little of it is asked for.
                    yield Row(number, name, error="compressed with a method other than deflate; store or deflate it")
                    continue
                try:
                    data = budget.read(archive, info, limit)
                except ImportFileError:
                    raise
                except Exception as exc:  # zipfile raises many types for broken or encrypted entries
                    yield Row(number, name, error=f"cannot read this entry ({_first_line(exc)})")
                    continue
                yield self._image_row(number, name, data, labels.get(name))

    def _zip_open(self) -> zipfile.ZipFile:
        """Open the archive and check it from its central directory alone, before anything is inflated.

        The entry count is read from the end record before the directory is parsed (a million
        entries would cost gigabytes as ZipInfo objects). Then the bytes the entries declare are
        bounded in total and as a multiple of the archive's size, entries that overlap one another
        (one compressed block shared by many entries) and names used twice are refused.
        """
        size = self.fileobj.seek(0, io.SEEK_END)
        self.fileobj.seek(0)
        try:
            end = zipfile._EndRecData(self.fileobj)  # the stdlib's own reader of the end record
        except (OSError, EOFError, ValueError, struct.error) as exc:
            raise ImportFileError(f"Not a valid ZIP archive ({_first_line(exc)}).") from exc
        if end and end[zipfile._ECD_ENTRIES_TOTAL] > self.limits.zip_max_entries:
            count = end[zipfile._ECD_ENTRIES_TOTAL]
            raise ImportFileError(f"The ZIP has {count:,} entries, above the limit of {self.limits.zip_max_entries:,}.")
        self.fileobj.seek(0)
        try:
            archive = zipfile.ZipFile(self.fileobj)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ImportFileError(f"Not a valid ZIP archive ({_first_line(exc)}).") from exc
        try:
            _zip_directory_check(archive.infolist(), size, self.limits)
        except ImportFileError:
            archive.close()
            raise
        return archive

    def _zip_labels(self, archive: zipfile.ZipFile, budget: "_InflateBudget") -> dict[str, str]:
        """Read the optional labels.csv (external_id,label) at the archive's root."""
        try:
            info = archive.getinfo("labels.csv")
        except KeyError:
            return {}
        if info.compress_type not in ZIP_METHODS:
            raise ImportFileError("labels.csv is compressed with a method other than deflate; store or deflate it.")
        if info.file_size > LABELS_MAX_BYTES:
            raise ImportFileError(f"labels.csv is {info.file_size:,} bytes, above the {LABELS_MAX_BYTES:,}-byte limit.")
        labels: dict[str, str] = {}
        try:
            data = budget.read(archive, info, info.file_size)
            reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""), strict=True)
            if not {"external_id", "label"} <= set(reader.fieldnames or []):
                raise ImportFileError("labels.csv needs the columns external_id and label.")
            for record in reader:
                if len(labels) >= self.limits.zip_max_entries:
                    raise ImportFileError("labels.csv has more rows than the ZIP may have entries.")
                external_id, label = (record["external_id"] or "").strip(), (record["label"] or "").strip()
                if external_id and label:
                    labels[external_id] = label
        except (csv.Error, UnicodeDecodeError, zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise ImportFileError(f"labels.csv cannot be read ({_first_line(exc)}).") from exc
        return labels

    def _image_row(self, number: int, name: str, data: bytes, label: str | None) -> Row:
        row = Row(number, name, external_id=name)
        try:
            if len(name) > EXTERNAL_ID_MAX:
                raise RowError(f"the path is longer than {EXTERNAL_ID_MAX} characters")
            row.label = self._label(label)
            if len(data) > self.limits.image_max_bytes:
                raise RowError(f"image is larger than the {self.limits.image_max_bytes:,}-byte limit")
        except RowError as exc:
            row.error = str(exc)
            return row
        row.image_data, row.content_hash = data, hashlib.sha256(data).hexdigest()
        return row


ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
LABELS_MAX_BYTES = 64 * 1024 * 1024


def _zip_directory_check(entries: list[zipfile.ZipInfo], archive_size: int, limits: Limits) -> None:
    """Refuse, from the central directory alone, a ZIP whose entries would take more work than it is worth."""
    declared = sum(info.file_size for info in entries)
    if declared > limits.zip_max_bytes:
        raise ImportFileError(
            f"The ZIP's entries inflate to {declared:,} bytes together, above the limit of {limits.zip_max_bytes:,}."
        )
    if declared > limits.zip_max_ratio * max(archive_size, 1):
        raise ImportFileError(
            f"The ZIP's entries inflate to {declared:,} bytes, over {limits.zip_max_ratio} times the archive's "
            f"{archive_size:,} bytes; LabelHub does not import archives compressed that far."
        )
    names: dict[str, str] = {}
    for info in entries:
        if info.is_dir():
            continue
        key = posixpath.normpath(info.filename.replace("\\", "/"))
        if key in names:
            first = names[key]
            twice = repr(first) if first == info.filename else f"{first!r} and {info.filename!r}, one path"
            raise ImportFileError(f"The ZIP holds {twice} twice; each entry needs a name of its own.")
        names[key] = info.filename
    # Each entry's local header (30 bytes and its name) and compressed data must end before the next
    # entry starts: entries that share compressed data are how a 71 kB archive inflates to gigabytes.
    spans = sorted(
        (info.header_offset, info.header_offset + 30 + _name_bytes(info)
         + info.compress_size, info.filename)
        for info in entries
    )
    for (_, end, name), (start, _, following) in zip(spans, spans[1:]):
        if end > start:
            raise ImportFileError(
                f"The ZIP's entries {name!r} and {following!r} overlap; LabelHub does not import overlapping entries."
            )
    if spans and spans[-1][1] > archive_size:
        raise ImportFileError(f"The ZIP's entry {spans[-1][2]!r} runs past the end of the archive.")


def _name_bytes(info: zipfile.ZipInfo) -> int:
    """The length of an entry's name as its header stores it."""
    try:
        return len(info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"))
    except UnicodeEncodeError:
        return len(info.orig_filename.encode("utf-8"))


class _InflateBudget:
    """The bytes a ZIP's entries may still inflate to, charged as they are read (their headers may lie)."""

    def __init__(self, total: int) -> None:
        self.left = total

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
        """Read one entry, at most ``limit`` + 1 bytes and never more than the budget left; charge what was read."""
        with archive.open(info) as member:
            data = member.read(min(limit, self.left) + 1)
        self.left -= len(data)
        if self.left < 0:
            raise ImportFileError("The ZIP's entries inflate to more than their headers declare; it is refused.")
        return data


def _number(column: str, raw: Any) -> float:
    try:
        value = float(raw)  # a str (CSV) or a JSON number; the common case, so tried first
    except (TypeError, ValueError):
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise RowError(f"column {column!r} is empty") from None
        raise RowError(f"column {column!r}: {raw!r} is not a number") from None
    except OverflowError:
        value = math.inf
    if raw is True or raw is False:
        raise RowError(f"column {column!r}: {raw!r} is not a number")
    if not math.isfinite(value):
        raise RowError(f"column {column!r}: {raw!r} is not a finite number")
    return value


def _flatten(image: Image.Image) -> Image.Image:
    """Return the image as L (grey) or RGB, transparent parts on white."""
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("L") if image.mode in ("1", "L", "I", "I;16", "F") else image.convert("RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def image_prepare(data: bytes, *, max_pixels: int) -> tuple[bytes, bytes]:
    """Check and decode an image; return it and its thumbnail (≤256 px) as PNG, or raise RowError."""
    try:
        with image_open(data, max_pixels=max_pixels) as opened:
            image = _flatten(ImageOps.exif_transpose(opened))
    except ImageRefused as exc:
        raise RowError(str(exc)) from exc
    except Exception as exc:  # EXIF and mode conversion of hostile input raise OSError, ValueError, ...
        raise RowError(f"image is truncated or corrupt ({_first_line(exc)})") from exc
    thumbnail = image.copy()
    thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return _png(image), _png(thumbnail)
