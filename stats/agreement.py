"""Agreement between raters (Cohen's kappa, Krippendorff's nominal alpha) and their bootstrap intervals."""
# Every statistic here is None where undefined (no items, or a single label value throughout), never an error.
from __future__ import annotations

from collections.abc import Iterator, Sequence

import krippendorff
import numpy as np

# Bootstrap resamples of items for an interval: enough for a stable 95 % percentile interval on a page.
BOOTSTRAP_REPS = 200


def _codes(*columns: Sequence[int]) -> tuple[list[np.ndarray], int]:
    """Map label ids of several columns to one shared range 0..k-1."""
    values = np.unique(np.concatenate([np.asarray(c, dtype=np.int64) for c in columns]))
    return [np.searchsorted(values, np.asarray(c, dtype=np.int64)) for c in columns], len(values)


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Return Cohen's kappa of two raters' labels on the same items; None when undefined (no items, or chance is 1)."""
    if len(a) != len(b):
        raise ValueError("both raters need a label for every item")
    if len(a) == 0:
        return None
    (x, y), k = _codes(a, b)
    n = len(x)
    observed = float(np.mean(x == y))
    expected = float(np.dot(np.bincount(x, minlength=k), np.bincount(y, minlength=k))) / (n * n)
    if expected >= 1.0:
        # Both raters used one and the same label throughout: agreement beyond chance is undefined.
        return None
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha(data: np.ndarray) -> float | None:
    """Return Krippendorff's nominal alpha of a raters × items matrix of label ids, NaN where a rater did not label.

    Items with fewer than two labels carry no information on agreement and are ignored; None when
    no item has two labels or only one label value occurs.
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.size == 0:
        return None
    paired = np.sum(~np.isnan(data), axis=0) >= 2
    data = data[:, paired]
    if data.shape[1] == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return None
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def _percentile_interval(values: np.ndarray, reps: int, level: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    # Resamples where the statistic is undefined (a single label value drawn) are left out; with
    # most of them undefined the interval would describe a different population, so give none.
    if len(values) < reps // 2:
        return None
    tail = (1.0 - level) / 2
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _resamples(n_items: int, reps: int, seed: int) -> Iterator[np.ndarray]:
    """For each bootstrap resample, how often each item is drawn (with replacement); one at a time to stay small."""
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        yield np.bincount(rng.integers(0, n_items, size=n_items), minlength=n_items)


def cohen_kappa_interval(
    a: Sequence[int], b: Sequence[int], *, reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Return a percentile bootstrap interval (95 % by default) of Cohen's kappa, resampling the shared items."""
    if len(a) != len(b):
        raise ValueError("both raters need a label for every item")
    if len(a) < 2:
        return None
    (x, y), k = _codes(a, b)
    # Each resample is a weighting of the items; kappa only needs the weighted confusion matrix.
    cell = x * k + y
    confusion = np.stack([
        np.bincount(cell, weights=weights, minlength=k * k) for weights in _resamples(len(x), reps, seed)
    ]).reshape(reps, k, k)
    n = confusion.sum(axis=(1, 2))
    observed = np.trace(confusion, axis1=1, axis2=2) / n
    expected = np.einsum("ri,ri->r", confusion.sum(axis=2), confusion.sum(axis=1)) / (n * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappas = np.where(expected < 1.0, (observed - expected) / (1.0 - expected), np.nan)
    return _percentile_interval(kappas, reps, level)


def _alpha_statistics(data: np.ndarray) -> np.ndarray:
    """Per item (rows): its number of labels m, its coincidences within values, and its label count per value.

    Nominal alpha is 1 − (n − 1)(n − Σ o_cc)/(n² − Σ n_c²) over sums of these, so a resample of
    items is a weighted sum (Krippendorff 2011, "Computing Krippendorff's alpha-reliability").
    """
    values = np.unique(data[~np.isnan(data)])
    counts = np.stack([np.sum(data == v, axis=0) for v in values], axis=1).astype(float)  # items × values
    m = counts.sum(axis=1)
    within = np.sum(counts * (counts - 1), axis=1) / (m - 1)
    return np.column_stack([m, within, counts])


def _alpha_from_sums(sums: np.ndarray) -> np.ndarray:
    n, within, per_value = sums[:, 0], sums[:, 1], sums[:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (n - 1) * (n - within) / (n * n - np.sum(per_value * per_value, axis=1))


def krippendorff_alpha_interval(
    data: np.ndarray, *, reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Return a percentile bootstrap interval (95 % by default) of Krippendorff's nominal alpha, resampling items."""
    data = np.asarray(data, dtype=float)
    if data.ndim != 2:
        return None
    data = data[:, np.sum(~np.isnan(data), axis=0) >= 2]
    if data.shape[1] < 2:
        return None
    statistics = _alpha_statistics(data)
    alphas = _alpha_from_sums(np.stack([weights @ statistics for weights in _resamples(data.shape[1], reps, seed)]))
    return _percentile_interval(alphas, reps, level)
