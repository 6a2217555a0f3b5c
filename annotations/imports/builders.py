"""Build rows from parsed records: the header's columns and each field checked, whatever the file's format."""
import hashlib
import json
import math
import struct
from typing import Any

from .rows import (
    EXTERNAL_ID_MAX,
    META_PREFIX,
    RESERVED_COLUMNS,
    SURROGATE,
    ImportFileError,
    Limits,
    Row,
    RowError,
    external_id_of,
    shown,
)
from .vectors import embedding_columns, vector_of_record


class RowBuilder:
    """Turn one file's records (a CSV line, a JSON object, an image) into rows of a project.

    ``feature_names`` starts as the project's; for a project without features it is filled in
    from the file's header (or first JSON object). A record's embedding is in its field
    ``embedding_field`` or, in a CSV file, in columns <embedding_field>_0, _1, …; neither is a feature.
    """

    def __init__(
        self, *, kind: str, label_names: frozenset[str], feature_names: list[str], limits: Limits,
        embedding_field: str = "embedding",
    ) -> None:
        self.kind, self.label_names, self.limits = kind, label_names, limits
        self.feature_names = list(feature_names)
        self._features_fixed = bool(feature_names)
        self._features_seen = False
        self.embedding_field = embedding_field
        self._embedding_columns: list[str] = []  # a CSV header's <embedding_field>_0, _1, …
        self._not_features = frozenset({embedding_field})

    def check_columns(self, columns: list[str], *, split_embedding: bool = False) -> None:
        """Check a header (or the first JSON object's keys) and settle the feature and embedding columns.

        ``split_embedding``: a CSV header, whose columns <embedding_field>_0, _1, … hold an embedding.
        """
        seen: set[str] = set()
        for column in columns:
            if not column:
                raise ImportFileError("The header has an empty column name.")
            if column in seen:
                raise ImportFileError(f"Column {column!r} appears twice in the header.")
            if "\x00" in column:
                raise ImportFileError(f"Column {column!r} contains a NUL character.")
            seen.add(column)
        if self.kind == "text" and "text" not in seen:
            raise ImportFileError(f"The header has no 'text' column (found: {', '.join(columns)}).")
        if split_embedding:
            self._embedding_columns = embedding_columns(columns, self.embedding_field)
            self._not_features = frozenset({self.embedding_field, *self._embedding_columns})
        if self.kind != "tabular":
            return
        found = [c for c in columns if _is_feature(c) and not self.holds_embedding(c)]
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

    def holds_embedding(self, column: str) -> bool:
        """Say whether a column of this file holds (part of) the embedding, and so is no feature and no metadata."""
        return column in self._not_features

    def json_row(self, number: int, where: str, record: Any) -> Row:
        """Build a row from one parsed JSON value, which must be an object with this file's columns."""
        if not isinstance(record, dict):
            return Row(number, where, error=f"expected a JSON object, found {type(record).__name__}")
        surrogate = _lone_surrogate(record, skip=self.embedding_field)
        if surrogate is not None:
            # Not text: no database stores it (and hashing the text would fail).
            reason = f"the row contains a lone surrogate (\\u{ord(surrogate):04x}), which is not text"
            return Row(number, where, error=reason)
        if self.kind == "tabular":
            if not self._features_seen:
                self.check_columns(list(record))
            # A CSV header holds for every row; each JSON object brings its own columns.
            found = [c for c in record if _is_feature(c) and c != self.embedding_field]
            if len(found) != len(self.feature_names) or any(c not in record for c in self.feature_names):
                missing = [c for c in self.feature_names if c not in record]
                extra = [c for c in found if c not in self.feature_names]
                reason = f"missing column {missing[0]!r}" if missing else f"unexpected column {extra[0]!r}"
                return Row(number, where, error=reason)
        return self.record_row(number, where, record, {})

    def record_row(self, number: int, where: str, record: dict[str, Any], extra_metadata: dict[str, str]) -> Row:
        """Build a row from one record of named fields; a bad field makes a rejected row."""
        row = Row(number, where)
        try:
            row.external_id = external_id_of(record.get("external_id"))
            row.label = self.label(record.get("label"))
            row.gold_label = self.label(record.get("gold_label"), column="gold_label")
            row.metadata = _metadata(record.get("metadata"), extra_metadata)
            if self._embedding_columns or self.embedding_field in record:  # most files have none: no call
                row.embedding = vector_of_record(record, self.embedding_field, self._embedding_columns)
            if self.kind == "text":
                row.text = self._text(record.get("text"))
                row.content_hash = text_hash(row.text)
            else:
                row.values = [_number(name, record[name]) for name in self.feature_names]
                row.content_hash = values_hash(row.values)
        except RowError as exc:
            row.error = str(exc)
            return row
        if not row.external_id:
            # Deterministic, so that importing the same file again finds the same items.
            row.external_id, row.derived_id = f"sha256-{row.content_hash[:32]}", True
        return row

    def image_row(self, number: int, name: str, data: bytes, label: str | None) -> Row:
        """Build a row from one image file (its path is its external_id); its pixels are checked when stored."""
        row = Row(number, name, external_id=name)
        try:
            if len(name) > EXTERNAL_ID_MAX:
                raise RowError(f"the path is longer than {EXTERNAL_ID_MAX} characters")
            row.label = self.label(label)
            if len(data) > self.limits.image_max_bytes:
                raise RowError(f"image is larger than the {self.limits.image_max_bytes:,}-byte limit")
        except RowError as exc:
            row.error = str(exc)
            return row
        row.image_data, row.content_hash = data, hashlib.sha256(data).hexdigest()
        return row

    def label(self, raw: Any, column: str = "label") -> str | None:
        """Return a label name of the project from a field, None if empty; raise RowError for another value."""
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise RowError(f"{column} must be a string, not {raw!r}")
        label = raw.strip()
        if label and label not in self.label_names:
            raise RowError(f"unknown {column} {label!r}")
        return label or None

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


def text_hash(text: str) -> str:
    """Return the content hash of a text item."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def values_hash(values: list[float]) -> str:
    """Return the content hash of a tabular item's row."""
    return hashlib.sha256(struct.pack(f"<{len(values)}d", *values)).hexdigest()


def _is_feature(column: str) -> bool:
    return column not in RESERVED_COLUMNS and not column.startswith(META_PREFIX)


def _metadata(raw: Any, extra: dict[str, str]) -> dict[str, Any]:
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


def _number(column: str, raw: Any) -> float:
    try:
        value = float(raw)  # a str (CSV) or a JSON number; the common case, so tried first
    except (TypeError, ValueError):
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise RowError(f"column {column!r} is empty") from None
        raise RowError(f"column {column!r}: {shown(raw)} is not a number") from None
    except OverflowError:
        value = math.inf
    if raw is True or raw is False:
        raise RowError(f"column {column!r}: {shown(raw)} is not a number")
    if not math.isfinite(value):
        raise RowError(f"column {column!r}: {shown(raw)} is not a finite number")
    return value


def _lone_surrogate(record: dict[str, Any], *, skip: str) -> str | None:
    """The first lone UTF-16 surrogate in a record's keys or strings (at any depth), or None.

    The value of field ``skip`` (the embedding: hundreds of numbers, never stored as text) is not walked.
    """
    stack: list[Any] = [*record, *(value for key, value in record.items() if key != skip)]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            found = SURROGATE.search(value)
            if found is not None:
                return found.group()
    return None
