"""ZIP archives checked before anything is inflated: entry count, declared sizes, overlaps, paths, labels.csv."""
import csv
import io
import posixpath
import re
import struct
import zipfile
from typing import IO

from .rows import ImportFileError, Limits, first_line
from .vectors import VectorRow, vector_rows

ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
LABELS_MAX_BYTES = 64 * 1024 * 1024
# The side file of embeddings is held in memory as vectors while the images are read: larger sets of
# vectors are imported after the images, by external_id (import_embeddings, the embeddings API).
VECTORS_MAX_BYTES = 256 * 1024 * 1024
VECTOR_SIDE_FILES = {"embeddings.jsonl": "jsonl", "embeddings.csv": "csv"}
SIDE_FILES = frozenset({"labels.csv", *VECTOR_SIDE_FILES})


def zip_open(fileobj: IO[bytes], limits: Limits) -> zipfile.ZipFile:
    """Open the archive and check it from its central directory alone, before anything is inflated.

    The entry count is read from the end record before the directory is parsed (a million
    entries would cost gigabytes as ZipInfo objects). Then the bytes the entries declare are
    bounded in total and as a multiple of the archive's size, entries that overlap one another
    (one compressed block shared by many entries) and names used twice are refused.
    """
    size = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(0)
    try:
        end = zipfile._EndRecData(fileobj)  # the stdlib's own reader of the end record
    except (OSError, EOFError, ValueError, struct.error) as exc:
        raise ImportFileError(f"Not a valid ZIP archive ({first_line(exc)}).") from exc
    if end and end[zipfile._ECD_ENTRIES_TOTAL] > limits.zip_max_entries:
        count = end[zipfile._ECD_ENTRIES_TOTAL]
        raise ImportFileError(f"The ZIP has {count:,} entries, above the limit of {limits.zip_max_entries:,}.")
    fileobj.seek(0)
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ImportFileError(f"Not a valid ZIP archive ({first_line(exc)}).") from exc
    try:
        _zip_directory_check(archive.infolist(), size, limits)
    except ImportFileError:
        archive.close()
        raise
    return archive


def zip_labels(archive: zipfile.ZipFile, budget: "InflateBudget", limits: Limits) -> dict[str, str]:
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
            if len(labels) >= limits.zip_max_entries:
                raise ImportFileError("labels.csv has more rows than the ZIP may have entries.")
            external_id, label = (record["external_id"] or "").strip(), (record["label"] or "").strip()
            if external_id and label:
                labels[external_id] = label
    except (csv.Error, UnicodeDecodeError, zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
        raise ImportFileError(f"labels.csv cannot be read ({first_line(exc)}).") from exc
    return labels


def zip_vectors(
    archive: zipfile.ZipFile, budget: "InflateBudget", limits: Limits, field: str
) -> dict[str, VectorRow]:
    """Read the optional embeddings.jsonl or embeddings.csv at the archive's root: the rows naming its entries, by name.

    Rows naming no entry of the archive are left out, as in labels.csv; a second row for one entry
    makes that entry's row a rejected one.
    """
    entries = set(archive.namelist())
    found = [name for name in VECTOR_SIDE_FILES if name in entries]
    if not found:
        return {}
    if len(found) > 1:
        raise ImportFileError("The ZIP holds both embeddings.jsonl and embeddings.csv; keep one of them.")
    info = archive.getinfo(found[0])
    if info.compress_type not in ZIP_METHODS:
        raise ImportFileError(f"{info.filename} is compressed with a method other than deflate; store or deflate it.")
    if info.file_size > VECTORS_MAX_BYTES:
        raise ImportFileError(
            f"{info.filename} is {info.file_size:,} bytes, above the {VECTORS_MAX_BYTES:,}-byte limit; import the "
            "images first, then their embeddings by external_id (import_embeddings or the embeddings API)."
        )
    budget.charge(info.file_size)  # an entry never reads past its declared size
    vectors: dict[str, VectorRow] = {}
    try:
        with archive.open(info) as member:
            for row in vector_rows(member, VECTOR_SIDE_FILES[info.filename], field=field, name=info.filename):
                if row.number > limits.zip_max_entries:
                    raise ImportFileError(f"{info.filename} has more rows than the ZIP may have entries.")
                if row.external_id not in entries:
                    continue
                row.where = f"{info.filename} {row.where}"
                first = vectors.setdefault(row.external_id, row)
                if first is not row:
                    first.vector, first.error = None, f"its embedding is given twice, also at {row.where}"
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
        raise ImportFileError(f"{info.filename} cannot be read ({first_line(exc)}).") from exc
    return vectors


def unsafe_path(name: str) -> bool:
    """Say whether an entry's path would leave the archive (absolute, a drive, or '..')."""
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or ".." in path.split("/"):
        return True
    return posixpath.normpath(path).startswith("..")


class InflateBudget:
    """The bytes a ZIP's entries may still inflate to, charged as they are read (their headers may lie)."""

    def __init__(self, total: int) -> None:
        self.left = total

    def charge(self, size: int) -> None:
        """Charge the bytes an entry declares, before it is read as a stream (no more than that can come out)."""
        self.left -= size
        if self.left < 0:
            raise ImportFileError("The ZIP's entries inflate to more than their headers declare; it is refused.")

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
        """Read one entry, at most ``limit`` + 1 bytes and never more than the budget left; charge what was read."""
        with archive.open(info) as member:
            data = member.read(min(limit, self.left) + 1)
        self.left -= len(data)
        if self.left < 0:
            raise ImportFileError("The ZIP's entries inflate to more than their headers declare; it is refused.")
        return data


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
