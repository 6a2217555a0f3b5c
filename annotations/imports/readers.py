"""One reader per file format (CSV, JSONL, JSON, an image, a ZIP of images), each yielding rows; no database."""
import csv
import io
import posixpath
from collections.abc import Iterator
from typing import IO, Any

import ijson

from .archives import SIDE_FILES, ZIP_METHODS, InflateBudget, unsafe_path, zip_labels, zip_open, zip_vectors
from .builders import RowBuilder
from .rows import META_PREFIX, ImportFileError, Limits, Row, RowError, first_line, json_lines
from .vectors import CSV_FIELD_MAX_CHARS

JSON_MAX_DEPTH = 32
_JSON_SCALARS = frozenset({"null", "boolean", "integer", "double", "number", "string"})


class Reader:
    """Iterate the rows of one file.

    Problems with the whole file raise ImportFileError (possibly mid-way, so the caller must
    roll back); problems with one row come back as a Row with ``error`` set.
    """

    def __init__(self, fileobj: IO[bytes], *, filename: str, builder: RowBuilder) -> None:
        self.fileobj, self.filename, self.builder = fileobj, filename, builder
        self.limits = builder.limits

    @property
    def feature_names(self) -> list[str]:
        """The project's feature columns, or those the file's header settled for a project without any."""
        return self.builder.feature_names

    def rows_to_check(self) -> Iterator[Row]:
        """Read the file through for problems of the whole file (raising ImportFileError), storing nothing.

        A file of records yields its rows as it parses them.
        """
        yield from self

    def __iter__(self) -> Iterator[Row]:
        raise NotImplementedError


class CsvReader(Reader):
    """A CSV file with a header: one record per line (or per quoted multi-line record)."""

    def __iter__(self) -> Iterator[Row]:
        # Texts between the limit and twice it are rejected as rows rather than failing the file.
        csv.field_size_limit(max(csv.field_size_limit(), 2 * self.limits.text_max_chars, CSV_FIELD_MAX_CHARS))
        text = io.TextIOWrapper(self.fileobj, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, strict=True)
        record_row = self.builder.record_row
        try:
            header = next(reader, None)
            if header is None:
                raise ImportFileError("The file is empty.")
            columns = [c.strip() for c in header]
            self.builder.check_columns(columns, split_embedding=True)
            meta = [
                (i, c.removeprefix(META_PREFIX)) for i, c in enumerate(columns)
                if c.startswith(META_PREFIX) and not self.builder.holds_embedding(c)
            ]
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
                yield record_row(number, f"line {start}", dict(zip(columns, fields)), extra)
        except csv.Error as exc:
            raise ImportFileError(f"Line {reader.line_num}: malformed CSV ({exc}).") from exc
        except UnicodeDecodeError as exc:
            raise ImportFileError(_not_utf8(self.fileobj)) from exc
        finally:
            text.detach()  # a collected wrapper would close the caller's file


class JsonlReader(Reader):
    """JSON Lines: one JSON object per line."""

    def __iter__(self) -> Iterator[Row]:
        text = io.TextIOWrapper(self.fileobj, encoding="utf-8-sig")
        json_row = self.builder.json_row
        try:
            for number, lineno, record in json_lines(text, "Line"):
                if isinstance(record, RowError):
                    yield Row(number, f"line {lineno}", error=str(record))
                else:
                    yield json_row(number, f"line {lineno}", record)
        except UnicodeDecodeError as exc:
            raise ImportFileError(_not_utf8(self.fileobj)) from exc
        finally:
            text.detach()


class JsonReader(Reader):
    """A JSON file holding one top-level array of objects, read one object at a time."""

    def __iter__(self) -> Iterator[Row]:
        head = self.fileobj.read(4096)
        start = 3 if head.startswith(b"\xef\xbb\xbf") else 0
        stripped = head[start:].lstrip()
        if not stripped:
            raise ImportFileError("The file is empty.")
        if not stripped.startswith(b"["):
            raise ImportFileError("A JSON file must hold one top-level array of objects, [{...}, {...}].")
        self.fileobj.seek(start)
        json_row = self.builder.json_row
        try:
            for number, record in enumerate(_json_array_items(self.fileobj), 1):
                yield json_row(number, "", record)
        except ijson.JSONError as exc:
            raise ImportFileError(f"Invalid JSON: {_json_error(exc)}.") from exc


class ImageReader(Reader):
    """One image file: one row, whose problems are the row's, never the file's."""

    def rows_to_check(self) -> Iterator[Row]:
        """Check nothing: an image's problems are its row's."""
        yield from ()

    def __iter__(self) -> Iterator[Row]:
        data = self.fileobj.read(self.limits.image_max_bytes + 1)
        name = posixpath.basename(self.filename.replace("\\", "/"))
        yield self.builder.image_row(1, name, data, None)


class ZipReader(Reader):
    """A ZIP of images, with an optional labels.csv and embeddings.jsonl or .csv at its root; each entry is a row."""

    def rows_to_check(self) -> Iterator[Row]:
        """Check the archive from its central directory and its side files; its entries' problems are rows' problems."""
        with zip_open(self.fileobj, self.limits) as archive:
            budget = InflateBudget(self.limits.zip_max_bytes)
            zip_labels(archive, budget, self.limits)
            zip_vectors(archive, budget, self.limits, self.builder.embedding_field)
        yield from ()

    def __iter__(self) -> Iterator[Row]:
        with zip_open(self.fileobj, self.limits) as archive:
            budget = InflateBudget(self.limits.zip_max_bytes)
            labels = zip_labels(archive, budget, self.limits)
            vectors = zip_vectors(archive, budget, self.limits, self.builder.embedding_field)
            number = 0
            for info in archive.infolist():
                name = info.filename
                unsafe = unsafe_path(name)
                if info.is_dir() or name in SIDE_FILES:
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
                    yield Row(number, name, error=f"cannot read this entry ({first_line(exc)})")
                    continue
                row = self.builder.image_row(number, name, data, labels.get(name))
                side = vectors.get(name)
                if side is not None and row.error is None:
                    row.embedding = side.vector
                    if side.error is not None:
                        row.error = f"{side.where}: {side.error}"
                yield row


READERS: dict[str, type[Reader]] = {
    "csv": CsvReader, "jsonl": JsonlReader, "json": JsonReader, "image": ImageReader, "zip": ZipReader,
}


def reader_for(
    fileobj: IO[bytes],
    fmt: str,
    *,
    filename: str,
    kind: str,
    label_names: frozenset[str],
    feature_names: list[str],
    limits: Limits,
    embedding_field: str = "embedding",
) -> Reader:
    """Return the reader of a file of format ``fmt`` (see rows.file_format) for a project of ``kind``."""
    builder = RowBuilder(
        kind=kind, label_names=label_names, feature_names=feature_names, limits=limits, embedding_field=embedding_field
    )
    return READERS[fmt](fileobj, filename=filename, builder=builder)


def _not_utf8(fileobj: IO[bytes]) -> str:
    """Say where a file stops being UTF-8 (decoding reads ahead in blocks, so look again line by line)."""
    fileobj.seek(0)
    for lineno, line in enumerate(fileobj, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"The file is not UTF-8 text (line {lineno}, byte {exc.start + 1} of the line); save it as UTF-8."
    return "The file is not UTF-8 text; save it as UTF-8."


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


def _json_error(exc: Exception) -> str:
    """The parser's message and, when it shows one (yajl's second line), the text around the error."""
    lines = [line.strip() for line in (str(exc.args[0]) if exc.args else "").splitlines() if line.strip()]
    message = first_line(exc)
    if len(lines) > 1 and "(right here)" not in lines[1]:
        message += f" near {lines[1][-40:]!r}"
    return message
