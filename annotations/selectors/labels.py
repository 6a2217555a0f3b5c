"""Reads of labels for training and evaluation: snapshots, final labels per item, audit labels."""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

from ..models import Annotation


@dataclass(frozen=True)
class LabelSnapshot:
    """The labels a training run uses: one final label per item, with their ids and a hash for lineage."""

    annotation_ids: list[int]
    item_ids: list[int]
    label_ids: list[int]
    audit_item_ids: frozenset[int]
    sha256: str


def _final_labels(rows) -> tuple[list[int], list[int], list[int], set[int]]:
    """Majority label per item (ties go to the earliest annotation), in item order."""
    by_item: dict[int, list[tuple[int, int, bool]]] = defaultdict(list)
    for annotation_id, item_id, label_id, is_audit in rows:
        by_item[item_id].append((annotation_id, label_id, is_audit))
    annotation_ids, item_ids, label_ids, audit = [], [], [], set()
    for item_id in sorted(by_item):
        votes = by_item[item_id]
        counts = Counter(label for _, label, _ in votes)
        best = max(counts.values())
        annotation_id, label_id, _ = next(v for v in votes if counts[v[1]] == best)
        annotation_ids.extend(a for a, _, _ in votes)
        item_ids.append(item_id)
        label_ids.append(label_id)
        if any(is_audit for _, _, is_audit in votes):
            audit.add(item_id)
    return annotation_ids, item_ids, label_ids, audit


def label_snapshot(project_id: int) -> LabelSnapshot:
    """Snapshot the project's labels now: final label per item and a hash of exactly what was read."""
    rows = list(
        Annotation.objects.filter(item__project_id=project_id)
        .order_by("id")
        .values_list("id", "item_id", "label_id", "is_audit")
    )
    annotation_ids, item_ids, label_ids, audit = _final_labels(rows)
    digest = hashlib.sha256()
    for row in rows:
        digest.update(("%d:%d:%d:%d;" % (row[0], row[1], row[2], row[3])).encode())
    return LabelSnapshot(sorted(annotation_ids), item_ids, label_ids, frozenset(audit), digest.hexdigest())


def labels_since(project_id: int, after_annotation_id: int) -> int:
    """How many labels the project received after the given annotation id."""
    return Annotation.objects.filter(item__project_id=project_id, id__gt=after_annotation_id).count()


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
