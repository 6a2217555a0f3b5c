"""Reads of the review workflow: the review queue, one item's labels, agreement between experts and gold accuracy."""
from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import BigIntegerField, Exists, F, Max, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from labelhub.api import DomainError, NotFound
from stats import agreement
from stats.intervals import wilson_interval

from ..models import Annotation, AnnotationCorrection, Item, Label, Lease, Project
from .labels import majority_label
from .projects import project_get_for_user

REVIEW_FILTERS = {
    "queue": "Needs review",
    "disagreement": "Experts disagree",
    "model": "Model disagrees",
    "resolved": "Resolved",
}


def _experts_disagree() -> Exists:
    """True for items whose annotations carry more than one label."""
    lowest = Annotation.objects.filter(item_id=OuterRef(OuterRef("pk"))).order_by("label_id").values("label_id")[:1]
    return Exists(Annotation.objects.filter(item_id=OuterRef("pk")).exclude(label_id=Subquery(lowest)))


def _model_disagrees(threshold: float) -> Exists:
    """True for items where an expert chose another label than a model that was at least ``threshold`` sure."""
    return Exists(
        Annotation.objects.filter(
            item_id=OuterRef("pk"), predicted_label__isnull=False, predicted_confidence__gte=threshold
        ).exclude(label_id=F("predicted_label_id"))
    )


def review_item_ids(project: Project, *, kind: str) -> QuerySet[Any]:
    """The ids of the project's unresolved items under the review filter ``queue`` or ``disagreement``,
    as ``review_items`` picks them, for use as a subquery.

    Grouped from the project's labels in one pass: the per-item tests of ``review_items`` cost one
    lookup per labeled item, which a filter that must count its matches pays on all of them.
    """
    labels = Annotation.objects.filter(item__project=project, item__resolved_label__isnull=True)
    split = (
        labels.order_by().values("item_id").annotate(lowest=Min("label_id"), highest=Max("label_id"))
        .exclude(lowest=F("highest")).values("item_id")
    )
    if kind == "disagreement":
        return split
    if kind != "queue":
        raise DomainError(f"Unknown review filter {kind!r}; use queue or disagreement.")
    model = labels.filter(
        predicted_label__isnull=False, predicted_confidence__gte=project.review_confidence
    ).exclude(label_id=F("predicted_label_id")).order_by().values("item_id")
    return split.union(model)


def review_items(project: Project, *, kind: str = "queue") -> QuerySet[Item]:
    """The project's items under a review filter, oldest first, with their labels and reasons for review.

    ``queue``: unresolved items where experts disagree or an expert disagrees with a confident
    model; ``disagreement`` and ``model``: unresolved items with that reason; ``resolved``: items a
    reviewer resolved.
    """
    if kind not in REVIEW_FILTERS:
        raise DomainError(f"Unknown review filter {kind!r}; use one of {', '.join(REVIEW_FILTERS)}.")
    # Only labeled items can need review: starting from the project's labels keeps the per-item
    # checks below off the unlabeled pool, which is most of a large project.
    labeled = Annotation.objects.filter(item__project=project).values("item_id")
    items = Item.objects.filter(project=project, pk__in=labeled).annotate(
        experts_disagree=_experts_disagree(), model_disagrees=_model_disagrees(project.review_confidence)
    )
    if kind == "resolved":
        items = items.filter(resolved_label__isnull=False)
    else:
        items = items.filter(resolved_label__isnull=True)
        reason = {
            "queue": Q(experts_disagree=True) | Q(model_disagrees=True),
            "disagreement": Q(experts_disagree=True),
            "model": Q(model_disagrees=True),
        }[kind]
        items = items.filter(reason)
    annotations = Annotation.objects.select_related("annotator", "label", "predicted_label").order_by("id")
    return (
        items.select_related("resolved_label", "resolved_by")
        .prefetch_related(Prefetch("annotations", queryset=annotations), Prefetch("leases", _skips(), to_attr="skips"))
        .order_by("id")
    )


def _skips() -> QuerySet[Lease]:
    # An expert is never served an item they skipped, so an item has at most one skip per expert.
    return Lease.objects.filter(status=Lease.Status.SKIPPED).select_related("user").order_by("created_at")


def review_item_get_for_user(user: AbstractBaseUser, item_id: int, *, min_role: str = "reviewer") -> Item:
    """Return the item, with its labels and their corrections, if the user holds ``min_role`` in its project."""
    if not 0 < int(item_id) < 2**63:
        raise NotFound("Item not found.")
    project_id = Item.objects.filter(pk=item_id).values_list("project_id", flat=True).first()
    if project_id is None:
        raise NotFound("Item not found.")
    try:
        project = project_get_for_user(user, project_id, min_role=min_role)
    except NotFound:
        raise NotFound("Item not found.") from None
    corrections = AnnotationCorrection.objects.select_related("corrected_by", "previous_label", "new_label")
    annotations = Annotation.objects.select_related("annotator", "label", "predicted_label").prefetch_related(
        Prefetch("corrections", queryset=corrections)
    ).order_by("id")
    item = (
        Item.objects.select_related("resolved_label", "resolved_by")
        .prefetch_related(Prefetch("annotations", queryset=annotations))
        .get(pk=item_id)
    )
    item.project = project
    return item


def review_annotation_get_for_user(user: AbstractBaseUser, annotation_id: int) -> Annotation:
    """Return the annotation if the user reviews its project (reviewer or above); 404 otherwise."""
    if not 0 < int(annotation_id) < 2**63:
        raise NotFound("Annotation not found.")
    annotation = Annotation.objects.select_related("item", "label").filter(pk=annotation_id).first()
    if annotation is None:
        raise NotFound("Annotation not found.")
    try:
        annotation.item.project = project_get_for_user(user, annotation.item.project_id, min_role="reviewer")
    except NotFound:
        raise NotFound("Annotation not found.") from None
    return annotation


def item_review_summary(item: Item) -> dict[str, Any]:
    """What a reviewer sees of an item: each vote, the majority, the model's suggestion, the resolution, the skips."""
    annotations = list(item.annotations.all())
    counts: dict[int, int] = defaultdict(int)
    for annotation in annotations:
        counts[annotation.label_id] += 1
    majority = majority_label([(a.pk, a.label_id) for a in annotations]) if annotations else None
    # The model's suggestion: the newest model version's prediction stored with any label.
    predicted = [a for a in annotations if a.predicted_label_id is not None]
    suggestion = max(predicted, key=lambda a: (a.model_version or 0, a.pk)) if predicted else None
    threshold = item.project.review_confidence
    return {
        "annotations": annotations,
        "votes": dict(counts),
        "majority_label_id": majority,
        "experts_disagree": len(counts) > 1,
        "model_disagrees": any(
            a.predicted_label_id is not None and a.predicted_confidence is not None
            and a.predicted_confidence >= threshold and a.predicted_label_id != a.label_id
            for a in annotations
        ),
        "suggestion": None if suggestion is None else {
            "label": suggestion.predicted_label,
            "confidence": suggestion.predicted_confidence,
            "model_version": suggestion.model_version,
        },
        "final_label_id": item.resolved_label_id or majority,
        "skips": list(_skips().filter(item=item)),
    }


def _expert_labels(filters: Q) -> list[tuple[int, int, int, int]]:
    """(annotation id, item id, annotator id, label id) as the expert gave it, before any reviewer's correction."""
    first_previous = (
        AnnotationCorrection.objects.filter(annotation_id=OuterRef("pk"))
        .order_by("corrected_at", "id")
        .values("previous_label_id")[:1]
    )
    return list(
        Annotation.objects.filter(filters)
        .annotate(original=Coalesce(Subquery(first_previous), F("label_id"), output_field=BigIntegerField()))
        .order_by("id")
        .values_list("id", "item_id", "annotator_id", "original")
    )


def _usernames(user_ids: set[int]) -> dict[int, str]:
    User = get_user_model()
    return dict(User.objects.filter(pk__in=user_ids).values_list("pk", User.USERNAME_FIELD))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _interval(bounds: tuple[float, float] | None) -> list[float] | None:
    return None if bounds is None else [round(bounds[0], 4), round(bounds[1], 4)]


def project_agreement(project: Project, *, reps: int = agreement.BOOTSTRAP_REPS) -> dict[str, Any]:
    """Agreement between the project's experts on items that two or more labeled.

    Project: Krippendorff's nominal alpha (any number of experts, missing labels allowed), with a
    bootstrap interval over items. Per expert: Cohen's kappa of their labels against the majority
    of the other experts' labels on the same items. Pairs: Cohen's kappa on the items both
    labeled. Labels are the experts' own, before reviewers' corrections.
    """
    rows = _expert_labels(Q(item__project=project))
    by_item: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for annotation_id, item_id, user_id, label_id in rows:
        by_item[item_id].append((annotation_id, user_id, label_id))
    shared = {item_id: votes for item_id, votes in by_item.items() if len(votes) >= 2}
    experts = sorted({user_id for votes in shared.values() for _, user_id, _ in votes})
    names = _usernames(set(experts))
    experts.sort(key=lambda user_id: names.get(user_id, ""))
    index = {user_id: i for i, user_id in enumerate(experts)}
    item_ids = sorted(shared)
    matrix = np.full((len(experts), len(item_ids)), np.nan)
    for column, item_id in enumerate(item_ids):
        for _, user_id, label_id in shared[item_id]:
            matrix[index[user_id], column] = label_id
    pairs_agreeing = sum(
        sum(a[2] == b[2] for a, b in combinations(votes, 2)) for votes in shared.values()
    )
    pairs_total = sum(len(votes) * (len(votes) - 1) // 2 for votes in shared.values())

    per_expert = []
    for user_id in experts:
        mine, others = [], []
        for item_id in item_ids:
            votes = shared[item_id]
            own = [label for _, u, label in votes if u == user_id]
            rest = [(a, label) for a, u, label in votes if u != user_id]
            if own and rest:
                mine.append(own[0])
                others.append(majority_label(rest))
        kappa = agreement.cohen_kappa(mine, others)
        per_expert.append({
            "user_id": user_id,
            "username": names.get(user_id, ""),
            "items": len(mine),
            "agreement": _rounded(float(np.mean(np.equal(mine, others)))) if mine else None,
            "kappa": _rounded(kappa),
            "kappa_interval": _interval(
                agreement.cohen_kappa_interval(mine, others, reps=reps) if kappa is not None else None
            ),
        })

    pairwise = []
    for a, b in combinations(range(len(experts)), 2):
        both = ~np.isnan(matrix[a]) & ~np.isnan(matrix[b])
        x, y = matrix[a, both].astype(np.int64), matrix[b, both].astype(np.int64)
        kappa = agreement.cohen_kappa(x, y)
        pairwise.append({
            "experts": [experts[a], experts[b]],
            "usernames": [names.get(experts[a], ""), names.get(experts[b], "")],
            "items": int(both.sum()),
            "agreement": _rounded(float(np.mean(x == y))) if len(x) else None,
            "kappa": _rounded(kappa),
            "kappa_interval": _interval(
                agreement.cohen_kappa_interval(x, y, reps=reps) if kappa is not None else None
            ),
        })

    alpha = agreement.krippendorff_alpha(matrix) if item_ids else None
    return {
        "items": len(item_ids),
        "experts": [{"user_id": u, "username": names.get(u, "")} for u in experts],
        "percent_agreement": _rounded(pairs_agreeing / pairs_total) if pairs_total else None,
        "alpha": _rounded(alpha),
        "alpha_interval": _interval(
            agreement.krippendorff_alpha_interval(matrix, reps=reps) if alpha is not None else None
        ),
        "per_expert": per_expert,
        "pairwise": pairwise,
    }


def agreement_matrix(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The pairwise kappas of ``project_agreement`` as rows of a square table (None on the diagonal)."""
    experts = result["experts"]
    cell = {}
    for pair in result["pairwise"]:
        a, b = pair["experts"]
        cell[a, b] = cell[b, a] = pair
    return [
        {"expert": row, "cells": [None if row is col else cell.get((row["user_id"], col["user_id"])) for col in experts]}
        for row in experts
    ]


def gold_accuracy(project: Project) -> list[dict[str, Any]]:
    """Each expert's accuracy on the project's gold items (their own labels), with a 95 % Wilson interval."""
    gold = dict(
        Item.objects.filter(project=project, gold_label__isnull=False).values_list("id", "gold_label_id")
    )
    if not gold:
        return []
    rows = _expert_labels(Q(item__project=project, item__gold_label__isnull=False))
    tally: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for _, item_id, user_id, label_id in rows:
        tally[user_id][0] += int(label_id == gold[item_id])
        tally[user_id][1] += 1
    names = _usernames(set(tally))
    result = []
    for user_id, (correct, n) in sorted(tally.items(), key=lambda kv: names.get(kv[0], "")):
        result.append({
            "user_id": user_id,
            "username": names.get(user_id, ""),
            "gold_items": n,
            "correct": correct,
            "accuracy": round(correct / n, 4),
            "interval": _interval(wilson_interval(correct, n)),
        })
    return result


def project_gold_count(project: Project) -> int:
    """How many of the project's items are gold."""
    return Item.objects.filter(project=project, gold_label__isnull=False).count()


def project_label_get(project: Project, *, label_id: int | None = None, name: str | None = None) -> Label:
    """The project's label by id or name; a DomainError (400) naming what was sent otherwise."""
    if label_id is None and not name:
        raise DomainError("Choose a label: send label_id or label (its name).")
    if label_id is not None and not 0 < label_id < 2**63:
        raise DomainError(f"{label_id!r} is not a label of this project.")
    labels = Label.objects.filter(project=project)
    if label_id is not None:
        labels = labels.filter(pk=label_id)
    if name:
        labels = labels.filter(name=name)
    label = labels.first()
    if label is None:
        given = " / ".join(repr(v) for v in (label_id, name) if v not in (None, ""))
        raise DomainError(f"{given} is not a label of this project.")
    return label
