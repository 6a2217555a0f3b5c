"""The learner pages' plots: page data turned into plain numbers for learner.ml.plots, each SVG cached by its data.

Drawing a plot takes tens of milliseconds; the same figures give the same SVG, so it is drawn
once per distinct data and kept in the cache.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date

from django.core.cache import cache

from learner.ml import plots
from learner.models import ModelVersion

CACHE_SECONDS = 24 * 3600


def _cached(kind: str, data: object, draw: Callable[[], str]) -> str:
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]
    key = f"plot:{plots.STYLE_VERSION}:{kind}:{digest}"
    svg = cache.get(key)
    if svg is None:
        svg = draw()
        cache.set(key, svg, CACHE_SECONDS)
    return svg


def learning_curve(versions: Sequence[ModelVersion], live_id: int | None) -> str:
    """Audit accuracy against labels used, one point per evaluated version."""
    points = [
        plots.CurvePoint(v.number, v.labels_used, v.metrics["accuracy"], *v.metrics["accuracy_ci"], live=v.pk == live_id)
        for v in versions
        if v.metrics.get("accuracy") is not None and v.metrics.get("accuracy_ci")
    ]
    data = [[p.version, p.labels, p.accuracy, p.low, p.high, p.live] for p in points]
    return _cached("curve", data, lambda: plots.learning_curve_svg(points, title="Audit accuracy by version"))


def confusion_matrix(version: ModelVersion, label_names: Mapping[int, str]) -> str | None:
    """The version's confusion matrix on its audit labels, or None if it was not evaluated."""
    matrix, classes = version.metrics.get("confusion_matrix"), version.metrics.get("classes")
    if not matrix or not classes:
        return None
    names = [label_names.get(c, f"label {c}") for c in classes]
    title = f"v{version.number} on {version.metrics.get('n', 0)} audit labels"
    return _cached("confusion", [matrix, names, title],
                   lambda: plots.confusion_matrix_svg(matrix, names, title=title))


def labels_per_day(days: Sequence[date], per_expert: Mapping[str, Sequence[int]]) -> str:
    """Stacked labels per day per expert."""
    data = [[d.isoformat() for d in days], {name: list(counts) for name, counts in per_expert.items()}]
    return _cached("per-day", data, lambda: plots.labels_per_day_svg(days, per_expert, title="Labels per day by expert"))


def label_distribution(labels: Sequence[Mapping]) -> str:
    """Items per final label, in each label's colour."""
    names, counts, colours = [lb["name"] for lb in labels], [lb["final"] for lb in labels], [lb["color"] for lb in labels]
    return _cached("distribution", [names, counts, colours],
                   lambda: plots.label_distribution_svg(names, counts, colours))
