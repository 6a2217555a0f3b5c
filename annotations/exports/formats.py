"""Write exported items as JSONL, CSV, JSON or Label Studio tasks, chunk by chunk, without the database."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..selectors.labels import majority_label
from . import rows as rows_
from .rows import ExportAnnotation, ExportItem, ExportOptions

FORMATS = ("jsonl", "csv", "json", "labelstudio")
CONTENT_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "labelstudio": "application/json",
}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "json": "json", "labelstudio": "json"}
# Spreadsheets run a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Label Studio's labeling config these tasks fit: <Choices name="label" toName="{text|image|table}">.
LS_FROM_NAME = "label"
LS_TO_NAME = {"text": "text", "image": "image", "tabular": "table"}

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# JSON string literal of a str, in C (what _dumps writes for a str).
_string = json.encoder.encode_basestring


@dataclass(frozen=True)
class ExportContext:
    """What the writers need besides the rows: the project's kind, label names and item links."""

    kind: str
    label_names: dict[int, str]
    feature_names: list[str]
    image_url: Callable[[int], str]
    options: ExportOptions


def neutralise(cell: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character is escaped with a quote."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def final_vote(item: ExportItem) -> tuple[ExportAnnotation | None, int | None, str]:
    """Decide the item's final label: the reviewer's, else ``majority_label`` of its annotations.

    Returns the deciding annotation (None for a review without annotations), the label id and where
    it came from ("review" or "majority").
    """
    votes = item.annotations
    if item.resolved_label_id is not None:
        return (votes[0] if votes else None), item.resolved_label_id, "review"
    if len(votes) == 1:
        return votes[0], votes[0].label_id, "majority"
    label_id = majority_label([(vote.id, vote.label_id) for vote in votes])
    # Votes come in annotation order: the first with the winning label is the one the tie rule chose.
    return next(vote for vote in votes if vote.label_id == label_id), label_id, "majority"


def _data(item: ExportItem, ctx: ExportContext) -> dict:
    if ctx.kind == "image":
        return {"image_url": ctx.image_url(item.id) if item.image else None}
    if ctx.kind == "tabular":
        return {"values": json.loads(item.values) if item.values else None}
    return {"text": item.text}


def _prediction(vote: ExportAnnotation | None, ctx: ExportContext) -> dict:
    if vote is None or vote.predicted_label_id is None:
        return {"model_version": vote.model_version if vote else None, "predicted_label": None, "confidence": None}
    return {
        "model_version": vote.model_version,
        "predicted_label": ctx.label_names.get(vote.predicted_label_id),
        "confidence": vote.predicted_confidence,
    }


def records(items: Iterable[ExportItem], ctx: ExportContext) -> Iterator[dict]:
    """Flat records: one per item (mode final) or one per annotation (mode all)."""
    options, names = ctx.options, ctx.label_names
    for item in items:
        data = _data(item, ctx)
        metadata = json.loads(item.metadata)
        if options.mode == "final":
            vote, label_id, source = final_vote(item)
            record = {
                "item_id": item.id, "external_id": item.external_id, **data, "label": names.get(label_id),
                "label_source": source, "annotations": len(item.annotations),
                "updated_at": max((v.updated_at for v in item.annotations), default=None),
            }
            if options.include_audit:
                record["is_audit"] = any(v.is_audit for v in item.annotations)
            if options.include_prediction:
                # What the live model predicted when the item was first labeled.
                record.update(_prediction(item.annotations[0] if item.annotations else None, ctx))
            record["metadata"] = metadata
            yield record
            continue
        for vote in item.annotations:
            record = {
                "annotation_id": vote.id, "item_id": item.id, "external_id": item.external_id, **data,
                "label": names.get(vote.label_id), "annotator": vote.annotator, "source": vote.source,
                "created_at": vote.created_at, "updated_at": vote.updated_at, "time_spent_ms": vote.time_spent_ms,
            }
            if options.include_audit:
                record["is_audit"] = vote.is_audit
            if options.include_prediction:
                record.update(_prediction(vote, ctx))
            record["metadata"] = metadata
            yield record


def columns(ctx: ExportContext) -> list[str]:
    """The CSV header: the keys ``records`` writes, in order."""
    data = {"image": ["image_url"], "tabular": ["values"], "text": ["text"]}[ctx.kind]
    if ctx.options.mode == "final":
        head = ["item_id", "external_id", *data, "label", "label_source", "annotations", "updated_at"]
    else:
        head = ["annotation_id", "item_id", "external_id", *data, "label", "annotator", "source", "created_at",
                "updated_at", "time_spent_ms"]
    if ctx.options.include_audit:
        head.append("is_audit")
    if ctx.options.include_prediction:
        head += ["model_version", "predicted_label", "confidence"]
    return [*head, "metadata"]


def csv_cell(value) -> object:
    """A value of ``records`` as the CSV cell ``write_csv`` writes: neutralised text, lowercase booleans, JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return neutralise(_dumps(value))
    return value


def annotation_json(ctx: ExportContext) -> Callable[[tuple], str]:
    """Make mode all's writer of one export row straight to its JSON line, in ``records``' key order.

    A dict and dumps cost several times more, and a million rows must stream at 100,000 a second.
    """
    names, options, kind = ctx.label_names, ctx.options, ctx.kind
    name = {label_id: _string(label) for label_id, label in names.items()}
    R = rows_

    def num(value) -> str:
        return "null" if value is None else repr(value)

    def line(row: tuple) -> str:
        if kind == "text":
            data = '"text":' + _string(row[R.I_TEXT])
        elif kind == "tabular":
            data = '"values":' + (row[R.I_VALUES] or "null")
        else:
            data = '"image_url":' + (_string(ctx.image_url(row[R.I_ID])) if row[R.I_IMAGE] else "null")
        annotator = row[R.A_ANNOTATOR]
        parts = [(
            f'{{"annotation_id":{row[R.A_ID]},"item_id":{row[R.I_ID]},"external_id":{_string(row[R.I_EXTERNAL_ID])},'
            f'{data},"label":{name.get(row[R.A_LABEL], "null")},'
            f'"annotator":{"null" if annotator is None else _string(annotator)},"source":{_string(row[R.A_SOURCE])},'
            f'"created_at":"{row[R.A_CREATED]}","updated_at":"{row[R.A_UPDATED]}",'
            f'"time_spent_ms":{num(row[R.A_TIME_SPENT])}'
        )]
        if options.include_audit:
            parts.append(',"is_audit":' + ("true" if row[R.A_AUDIT] else "false"))
        if options.include_prediction:
            predicted = row[R.A_PREDICTED]
            parts.append(
                f',"model_version":{num(row[R.A_MODEL_VERSION])},'
                f'"predicted_label":{"null" if predicted is None else name.get(predicted, "null")},'
                f'"confidence":{num(row[R.A_CONFIDENCE])}'
            )
        parts.append(f',"metadata":{row[R.I_METADATA] or "{}"}}}')
        return "".join(parts)

    return line


def annotation_cells(ctx: ExportContext) -> Callable[[tuple], list]:
    """Make mode all's writer of one export row to its CSV cells, in ``columns`` order."""
    names, options, kind = ctx.label_names, ctx.options, ctx.kind
    name = {label_id: neutralise(label) for label_id, label in names.items()}
    R = rows_

    def cells(row: tuple) -> list:
        if kind == "text":
            data = neutralise(row[R.I_TEXT])
        elif kind == "tabular":
            data = row[R.I_VALUES] or ""
        else:
            data = ctx.image_url(row[R.I_ID]) if row[R.I_IMAGE] else ""
        annotator = row[R.A_ANNOTATOR]
        out = [row[R.A_ID], row[R.I_ID], neutralise(row[R.I_EXTERNAL_ID]), data, name.get(row[R.A_LABEL], ""),
               "" if annotator is None else neutralise(annotator), row[R.A_SOURCE], row[R.A_CREATED],
               row[R.A_UPDATED], row[R.A_TIME_SPENT]]
        if options.include_audit:
            out.append("true" if row[R.A_AUDIT] else "false")
        if options.include_prediction:
            predicted = row[R.A_PREDICTED]
            out += [row[R.A_MODEL_VERSION], "" if predicted is None else name.get(predicted, ""), row[R.A_CONFIDENCE]]
        out.append(neutralise(row[R.I_METADATA] or "{}"))
        return out

    return cells


def csv_text(text: str) -> str:
    """Write a text cell neutralised and quoted as csv.writer (excel dialect, minimal quoting) would."""
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    if '"' in text:
        return '"' + text.replace('"', '""') + '"'
    if "," in text or "\n" in text or "\r" in text:
        return '"' + text + '"'
    return text


def annotation_csv(ctx: ExportContext) -> Callable[[tuple], str]:
    """Make mode all's writer of one export row to its CSV line: ``annotation_cells`` as csv.writer writes them.

    Only the texts people typed are checked for quoting and formulas; csv.writer took 8 µs a row,
    most of the export's time.
    """
    names, options, kind = ctx.label_names, ctx.options, ctx.kind
    name = {label_id: csv_text(label) for label_id, label in names.items()}
    R = rows_

    def text(value) -> str:
        return "" if value is None else csv_text(value)

    def num(value) -> str:
        return "" if value is None else str(value)

    def line(row: tuple) -> str:
        if kind == "text":
            data = csv_text(row[R.I_TEXT])
        elif kind == "tabular":
            data = text(row[R.I_VALUES])
        else:
            data = text(ctx.image_url(row[R.I_ID])) if row[R.I_IMAGE] else ""
        out = (
            f"{row[R.A_ID]},{row[R.I_ID]},{csv_text(row[R.I_EXTERNAL_ID])},{data},{name.get(row[R.A_LABEL], '')},"
            f"{text(row[R.A_ANNOTATOR])},{row[R.A_SOURCE]},{row[R.A_CREATED]},{row[R.A_UPDATED]},"
            f"{num(row[R.A_TIME_SPENT])}"
        )
        if options.include_audit:
            out += ",true" if row[R.A_AUDIT] else ",false"
        if options.include_prediction:
            predicted = row[R.A_PREDICTED]
            out += (f",{num(row[R.A_MODEL_VERSION])},{'' if predicted is None else name.get(predicted, '')},"
                    f"{num(row[R.A_CONFIDENCE])}")
        return f"{out},{csv_text(row[R.I_METADATA] or '{}')}\r\n"

    return line


def _json_lines(row_batches: Iterable[list[tuple]], ctx: ExportContext) -> Iterator[list[str]]:
    """Each batch as JSON texts of its records."""
    if ctx.options.mode == "all":
        line = annotation_json(ctx)
        for rows in row_batches:
            yield [line(row) for row in rows]
        return
    for items in rows_.group_items(row_batches):
        yield [_dumps(record) for record in records(items, ctx)]


def write_jsonl(row_batches: Iterable[list[tuple]], ctx: ExportContext) -> Iterator[str]:
    """Write one JSON object a line, a chunk per batch."""
    for lines in _json_lines(row_batches, ctx):
        if lines:
            yield "\n".join(lines) + "\n"


def _json_array(texts: Iterable[list[str]]) -> Iterator[str]:
    yield "["
    first = True
    for batch in texts:
        if batch:
            yield ("\n" if first else ",\n") + ",\n".join(batch)
            first = False
    yield "\n]\n"


def write_json(row_batches: Iterable[list[tuple]], ctx: ExportContext) -> Iterator[str]:
    """Write one JSON array of the records, one record a line."""
    return _json_array(_json_lines(row_batches, ctx))


def write_csv(row_batches: Iterable[list[tuple]], ctx: ExportContext) -> Iterator[str]:
    """Write the header row, then one row a record, neutralised against formulas."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    head = columns(ctx)
    writer.writerow(head)
    yield buffer.getvalue()
    if ctx.options.mode == "all":
        line = annotation_csv(ctx)
        for rows in row_batches:
            yield "".join([line(row) for row in rows])
        return
    batches = (
        [[csv_cell(record.get(key)) for key in head] for record in records(items, ctx)]
        for items in rows_.group_items(row_batches)
    )
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(batch)
        yield buffer.getvalue()


def _ls_result(label: str | None, to_name: str) -> list[dict]:
    return [{"from_name": LS_FROM_NAME, "to_name": to_name, "type": "choices", "value": {"choices": [label]}}]


def tasks(items: Iterable[ExportItem], ctx: ExportContext) -> Iterator[dict]:
    """Label Studio tasks: ``data``, ``annotations[].result[]`` choices, and the model's ``predictions``."""
    to_name, names, options = LS_TO_NAME[ctx.kind], ctx.label_names, ctx.options
    for item in items:
        if ctx.kind == "image":
            data = {"image": ctx.image_url(item.id) if item.image else None}
        elif ctx.kind == "tabular":
            values = json.loads(item.values) if item.values else []
            data = dict(zip(ctx.feature_names, values, strict=False)) if ctx.feature_names else {"values": values}
        else:
            data = {"text": item.text}
        if options.mode == "final":
            vote, label_id, source = final_vote(item)
            chosen = [(vote, label_id, source == "review")]
        else:
            chosen = [(vote, vote.label_id, False) for vote in item.annotations]
        annotations = []
        for vote, label_id, ground_truth in chosen:
            annotation = {
                "id": vote.id if vote else None,
                "result": _ls_result(names.get(label_id), to_name),
                "ground_truth": ground_truth,
                "created_username": vote.annotator if vote else None,
                "created_at": vote.created_at if vote else None,
                "updated_at": vote.updated_at if vote else None,
                "lead_time": vote.time_spent_ms / 1000 if vote and vote.time_spent_ms is not None else None,
            }
            if options.include_audit:
                annotation["is_audit"] = bool(vote and vote.is_audit)
            annotations.append(annotation)
        task = {"id": item.id, "data": data, "annotations": annotations,
                "meta": {"external_id": item.external_id, **json.loads(item.metadata)}}
        if options.include_prediction:
            first = item.annotations[0] if item.annotations else None
            predicted = names.get(first.predicted_label_id) if first and first.predicted_label_id else None
            task["predictions"] = [] if predicted is None else [{
                "model_version": "" if first.model_version is None else str(first.model_version), "score": first.predicted_confidence,
                "result": _ls_result(predicted, to_name),
            }]
        yield task


def write_labelstudio(row_batches: Iterable[list[tuple]], ctx: ExportContext) -> Iterator[str]:
    """Write one JSON array of Label Studio tasks."""
    return _json_array([_dumps(task) for task in tasks(items, ctx)] for items in rows_.group_items(row_batches))


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "json": write_json, "labelstudio": write_labelstudio}


def write(fmt: str, row_batches: Iterable[list[tuple]], ctx: ExportContext) -> Iterator[str]:
    """Write the export (batches of ``rows.export_rows``) as text chunks in the given format."""
    return WRITERS[fmt](row_batches, ctx)
