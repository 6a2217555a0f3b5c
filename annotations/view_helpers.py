"""Helpers shared by the page views: the project behind an address, form errors, an item's buttons and features."""
import json
import math
from typing import Any

from django import forms
from django.http import Http404, HttpRequest

from labelhub.api import NotFound

from . import selectors
from .models import Item, Label, Project

# Tabular rows longer than this are laid out in side-by-side tables so they fit the stage.
FEATURE_ROWS_PER_TABLE = 12
FEATURE_TABLES_MAX = 3
# Keys that skip or undo unless a label claims them (as KeyboardEvent.key values).
SKIP_KEYS = ("s", " ")
UNDO_KEYS = ("z", "Backspace")
KEY_NAMES = {" ": "Space", "Backspace": "⌫"}
# Label buttons: the width of their row on a desktop and a tablet, and a button's width bounds (rem).
ROW_REM = {"desktop": 53.5, "tablet": 49.0}
BUTTON_GAP_REM = 0.5
BUTTON_MIN_REM, BUTTON_TOUCH_REM, BUTTON_MAX_REM = 4.8, 5.75, 16.0
# Metadata values longer than this show shortened, the whole value one click away (itself cut at the second bound).
METADATA_SHORT_CHARS = 120
METADATA_FULL_CHARS = 10_000


def project_or_404(request: HttpRequest, project_id: int, min_role: str = "annotator") -> Project:
    """Return the project if the user holds at least ``min_role`` in it; a 404 page otherwise."""
    try:
        return selectors.project_get_for_user(request.user, project_id, min_role=min_role)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def item_of_project_or_404(request: HttpRequest, project: Project, item_id: int) -> Item:
    """The item with its labels, if the user may review it and it belongs to the project in the address."""
    try:
        item = selectors.review_item_get_for_user(request.user, item_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    if item.project_id != project.pk:
        raise Http404("Item not found.")
    return item


def form_error_text(form: forms.Form) -> str:
    """Return every error of the bound form as one sentence for a fragment."""
    return " ".join(str(m) for errors in form.errors.values() for m in errors)


def _key_name(key: str) -> str:
    return KEY_NAMES.get(key, key.upper() if len(key) == 1 else key)


def _columns(count: int, width_rem: float, min_rem: float) -> int:
    """How many label buttons go in a row: as many as fit, then evened out across the rows."""
    if count == 0:
        return 1
    fit = max(1, int((width_rem + BUTTON_GAP_REM) // (min_rem + BUTTON_GAP_REM)))
    rows = math.ceil(count / min(count, fit))
    return math.ceil(count / rows)


def label_controls(labels: list[Label]) -> dict[str, Any]:
    """Return the label buttons with their keys and layout, and the skip and undo keys that no label claims."""
    taken = {label.shortcut.lower() for label in labels if label.shortcut}
    skip = [k for k in SKIP_KEYS if k.lower() not in taken]
    undo = [k for k in UNDO_KEYS if k.lower() not in taken]
    longest = max((len(label.name) for label in labels), default=1)
    min_rem = round(min(BUTTON_MAX_REM, max(BUTTON_MIN_REM, 4.2 + 0.6 * longest)), 2)
    return {
        "button_min_rem": min_rem,
        "button_columns": _columns(len(labels), ROW_REM["desktop"], min_rem),
        "button_columns_narrow": _columns(len(labels), ROW_REM["tablet"], max(min_rem, BUTTON_TOUCH_REM)),
        "labels": [
            {"id": label.pk, "name": label.name, "color": label.color, "shortcut": label.shortcut,
             "key_name": _key_name(label.shortcut) if label.shortcut else ""}
            for label in labels
        ],
        "skip_keys": skip,
        "skip_key_names": [_key_name(k) for k in skip],
        "undo_keys": undo,
        "undo_key_names": [_key_name(k) for k in undo] + ["Ctrl+Z"],
    }


def item_feature_tables(project: Project, item: Item) -> list[list[tuple[str, str]]]:
    """Return a tabular item's row as (feature, value) pairs, split into at most three tables of similar length."""
    if project.kind != Project.Kind.TABULAR:
        return []
    values = list(item.values or [])
    names = list(project.feature_names) or [f"feature {i + 1}" for i in range(len(values))]
    rows = []
    for i, name in enumerate(names):
        value = values[i] if i < len(values) else None
        rows.append((name, "—" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))))
    if not rows:
        return []
    tables = min(FEATURE_TABLES_MAX, math.ceil(len(rows) / FEATURE_ROWS_PER_TABLE))
    per_table = math.ceil(len(rows) / tables)
    return [rows[i:i + per_table] for i in range(0, len(rows), per_table)]


def _metadata_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def item_metadata_rows(project: Project, item: Item) -> list[dict[str, str]]:
    """Return the project's chosen metadata fields of the item, in the chosen order, as text; nothing else of it.

    A field the item lacks is left out. A long value has a shortened form; the template escapes both.
    """
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    rows = []
    for name in project.shown_metadata_fields or []:
        if not isinstance(name, str) or name not in metadata:
            continue
        text = _metadata_text(metadata[name])
        if len(text) > METADATA_FULL_CHARS:
            text = text[:METADATA_FULL_CHARS] + "…"
        short = text[:METADATA_SHORT_CHARS].rstrip() + "…" if len(text) > METADATA_SHORT_CHARS else ""
        rows.append({"name": name, "value": text, "short": short})
    return rows
