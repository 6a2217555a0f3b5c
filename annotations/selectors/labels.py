"""Reads of labels for training and evaluation: snapshots, final labels per item, audit labels."""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection

from ..models import Annotation, Item, Label


@dataclass(frozen=True)
class LabelSnapshot:
    """The labels a training run uses: one final label per item, with their ids and a hash for lineage."""

    annotation_ids: list[int]
    item_ids: list[int]
    label_ids: list[int]
    audit_item_ids: frozenset[int]
    sha256: str


def majority_label(votes: list[tuple[int, int]]) -> int:
    """The majority label of (annotation id, label id) votes; ties go to the earliest annotation."""
    counts = Counter(label for _, label in votes)
    if len(counts) == 1:  # unanimous, the usual case: no tie to break (exports call this once per item)
        return votes[0][1]
    best = max(counts.values())
    return min((a, label) for a, label in votes if counts[label] == best)[1]


def _final_labels(
    rows, resolved: dict[int, int] | None = None
) -> tuple[list[int], list[int], list[int], set[int]]:
    """Final label per item, in item order: the reviewer's resolved label, else the majority of its annotations."""
    resolved = resolved or {}
    by_item: dict[int, list[tuple[int, int, bool]]] = defaultdict(list)
    for annotation_id, item_id, label_id, is_audit in rows:
        by_item[item_id].append((annotation_id, label_id, is_audit))
    annotation_ids, item_ids, label_ids, audit = [], [], [], set()
    for item_id in sorted(by_item):
        votes = by_item[item_id]
        label_id = resolved.get(item_id)
        if label_id is None:
            label_id = majority_label([(a, label) for a, label, _ in votes])
        annotation_ids.extend(a for a, _, _ in votes)
        item_ids.append(item_id)
        label_ids.append(label_id)
        if any(is_audit for _, _, is_audit in votes):
            audit.add(item_id)
    return annotation_ids, item_ids, label_ids, audit


def _resolved_labels(project_id: int, item_ids: list[int] | None = None) -> dict[int, int]:
    items = Item.objects.filter(project_id=project_id, resolved_label__isnull=False)
    if item_ids is not None:
        items = items.filter(pk__in=item_ids)
    return dict(items.values_list("id", "resolved_label_id"))


def label_snapshot(project_id: int, leave_out: frozenset[int] = frozenset()) -> LabelSnapshot:
    """Snapshot the project's labels now: final label per item and a hash of exactly what was read.

    ``leave_out``: annotation ids not to use (an unreliable stretch of one expert's labels).
    """
    rows = list(
        Annotation.objects.filter(item__project_id=project_id)
        .order_by("id")
        .values_list("id", "item_id", "label_id", "is_audit")
    )
    if leave_out:
        rows = [row for row in rows if row[0] not in leave_out]
    resolved = _resolved_labels(project_id)
    annotation_ids, item_ids, label_ids, audit = _final_labels(rows, resolved)
    digest = hashlib.sha256()
    for row in rows:
        digest.update(("%d:%d:%d:%d;" % (row[0], row[1], row[2], row[3])).encode())
    # Resolutions are part of what training reads, so changing one changes the hash (projects
    # without any keep the hash they had before resolutions existed).
    for item_id in sorted(resolved):
        digest.update(f"r{item_id}:{resolved[item_id]};".encode())
    return LabelSnapshot(sorted(annotation_ids), item_ids, label_ids, frozenset(audit), digest.hexdigest())


def label_agreements(project_id: int) -> list[tuple[int, int, bool]]:
    """Every label that recorded a live model's prediction, in the order given: (annotation id, expert id, agreed)."""
    rows = (
        Annotation.objects.filter(item__project_id=project_id, predicted_label__isnull=False)
        .order_by("id")
        .values_list("id", "annotator_id", "label_id", "predicted_label_id")
    )
    return [(pk, annotator, label == predicted) for pk, annotator, label, predicted in rows.iterator(chunk_size=10_000)]


def item_final_labels(project_id: int, item_ids: list[int] | None = None) -> dict[int, int]:
    """The final label of each labeled item (resolved label, else majority): {item id: label id}."""
    annotations = Annotation.objects.filter(item__project_id=project_id)
    if item_ids is not None:
        annotations = annotations.filter(item_id__in=item_ids)
    rows = annotations.order_by("id").values_list("id", "item_id", "label_id", "is_audit")
    _, ids, labels, _ = _final_labels(rows, _resolved_labels(project_id, item_ids))
    return dict(zip(ids, labels))


def audit_predictions_latest(project_id: int, model_version: int, limit: int) -> list[tuple[int, int | None]]:
    """The latest audit labels judged by this model version at labeling time: (label, predicted label)."""
    return list(
        Annotation.objects.filter(item__project_id=project_id, is_audit=True, model_version=model_version)
        .order_by("-id")
        .values_list("label_id", "predicted_label_id")[:limit]
    )


def item_labels_first(project_id: int, item_ids: list[int]) -> dict[int, int]:
    """The earliest expert label of each of these items that has one: {item id: label id}."""
    labels: dict[int, int] = {}
    rows = (
        Annotation.objects.filter(item__project_id=project_id, item_id__in=item_ids)
        .order_by("id")
        .values_list("item_id", "label_id")
    )
    for item_id, label_id in rows:
        labels.setdefault(item_id, label_id)
    return labels


def audit_labels_since(project_id: int, since) -> list[tuple[int, int]]:
    """Audit labels stored at or after ``since``, one per item (the earliest): (item id, label id)."""
    labels: dict[int, int] = {}
    rows = (
        Annotation.objects.filter(item__project_id=project_id, is_audit=True, created_at__gte=since)
        .order_by("id")
        .values_list("item_id", "label_id")
    )
    for item_id, label_id in rows:
        labels.setdefault(item_id, label_id)
    return sorted(labels.items())


# How many experts the label distribution names; the others are counted together.
DISTRIBUTION_EXPERTS_MAX = 6


def _distribution_sql() -> str:
    q = connection.ops.quote_name
    annotation, item = q(Annotation._meta.db_table), q(Item._meta.db_table)
    label, user = q(Label._meta.db_table), q(get_user_model()._meta.db_table)
    # Final label as the export's mode final and training decide it: the reviewer's, else the most frequent,
    # a tie to the label given first (majority_label). Per expert: every label they gave.
    return f"""
        WITH votes AS (
            SELECT a.item_id, a.label_id, COUNT(*) AS n, MIN(a.id) AS first_id
            FROM {annotation} a JOIN {item} i ON i.id = a.item_id
            WHERE i.project_id = %s AND i.resolved_label_id IS NULL GROUP BY a.item_id, a.label_id
        ), ranked AS (
            SELECT label_id, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY n DESC, first_id) AS r FROM votes
        ), finals AS (
            SELECT label_id FROM ranked WHERE r = 1
            UNION ALL
            SELECT resolved_label_id FROM {item} WHERE project_id = %s AND resolved_label_id IS NOT NULL
        ), counts AS (
            SELECT label_id, CAST(NULL AS VARCHAR(150)) AS username, COUNT(*) AS n FROM finals GROUP BY label_id
            UNION ALL
            SELECT a.label_id, u.{q('username')}, COUNT(*) FROM {annotation} a JOIN {item} i ON i.id = a.item_id
            JOIN {user} u ON u.id = a.annotator_id WHERE i.project_id = %s GROUP BY a.label_id, u.{q('username')}
        )
        SELECT l.id, l.name, l.color, c.username, c.n FROM {label} l LEFT JOIN counts c ON c.label_id = l.id
        WHERE l.project_id = %s ORDER BY l.{q('order')}, l.name, l.id"""


def label_distribution(project_id: int) -> dict:
    """How many items carry each final label, and how many labels each expert gave of each, in one statement.

    Returns ``labels`` in the project's label order (id, name, color, final, experts: counts by
    expert name, others), ``experts``: the ``DISTRIBUTION_EXPERTS_MAX`` busiest by name, and
    ``others``: whether more experts than those labeled.
    """
    with connection.cursor() as cursor:
        cursor.execute(_distribution_sql(), [project_id] * 4)
        rows = cursor.fetchall()
    labels: dict[int, dict] = {}
    totals: Counter[str] = Counter()
    for label_id, name, color, username, n in rows:
        entry = labels.setdefault(label_id, {"id": label_id, "name": name, "color": color, "final": 0, "by": {}})
        if n is None:
            continue
        if username is None:
            entry["final"] = n
        else:
            entry["by"][username] = n
            totals[username] += n
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    shown = ranked[:DISTRIBUTION_EXPERTS_MAX]
    for entry in labels.values():
        by = entry.pop("by")
        entry["experts"] = [by.get(name, 0) for name in shown]
        entry["others"] = sum(n for name, n in by.items() if name not in shown)
    return {"labels": list(labels.values()), "experts": shown, "others": len(ranked) > len(shown),
            "items": sum(entry["final"] for entry in labels.values())}
