"""Drift of a recent sample from a reference one: PSI per column as the effect, a corrected two-sample test as the evidence."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

# scipy.stats is imported where a p-value is computed: a web process imports this module
# through the services without ever testing a column.

ALPHA = 0.05
BINS = 10
# Added to every bin's count before PSI: an empty bin stays finite without the 1e-4 floor that
# added ~0.69 to a small sample's PSI on its own.
SMOOTHING = 0.5
MIN_RECENT = 50
MIN_REFERENCE = 50
TEST = "two-sample Kolmogorov–Smirnov per column, Holm-corrected over the columns"


@dataclass(frozen=True)
class ColumnDrift:
    """One column's shift: PSI over the reference's bins (``bins`` of them), the test's p-value before and after correction."""

    name: str
    psi: float
    p_value: float
    reference_n: int
    recent_n: int
    bins: int
    p_adjusted: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DriftResult:
    """The verdict over every column, with the evidence a manager reads."""

    drifted: bool
    enough_data: bool
    threshold: float
    alpha: float
    reference_n: int
    recent_n: int
    columns_tested: int
    worst: ColumnDrift | None
    drifted_columns: list[str] = field(default_factory=list)
    confidence: ColumnDrift | None = None
    test: str = TEST
    summary: str = ""

    def as_dict(self) -> dict:
        out = asdict(self)
        out["worst"] = self.worst.as_dict() if self.worst else None
        out["confidence"] = self.confidence.as_dict() if self.confidence else None
        return out


def _cuts(reference: np.ndarray, bins: int) -> np.ndarray:
    """Cut points from the sorted reference: its deciles, or for a column of few values one bin per value.

    Bins are then ``searchsorted(cuts, x, side="right")``. A discrete column (digits' pixels are
    0–16, many always 0) gets one bin per value seen, one below the smallest and one above the
    largest, so that a value the reference never had lands in a bin of its own.
    """
    distinct = reference[np.concatenate([[True], reference[1:] != reference[:-1]])]
    if len(distinct) <= bins:
        return np.append(distinct, np.nextafter(distinct[-1], np.inf))
    # np.quantile's default (linear) on an array sorted already, without sorting it again.
    position = np.linspace(0, 1, bins + 1)[1:-1] * (len(reference) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(reference) - 1)
    quantiles = reference[low] + (position - low) * (reference[high] - reference[low])
    return np.unique(quantiles)


def ks_p_value(statistic: float, reference_n: int, recent_n: int) -> float:
    """Two-sided p-value of a two-sample Kolmogorov–Smirnov statistic (scipy's asymptotic method)."""
    return _ks_sf(round(float(statistic), 12), round(reference_n * recent_n / (reference_n + recent_n)))


@lru_cache(maxsize=65536)
def _ks_sf(statistic: float, effective_n: int) -> float:
    # The statistic takes few distinct values for given sample sizes, and the survival
    # function costs most of a column's test: a cache makes a 273-column check several times faster.
    from scipy.stats import kstwo

    return float(kstwo.sf(statistic, max(effective_n, 1)))


def column_drift(name: str, reference: np.ndarray, recent: np.ndarray, bins: int = BINS) -> ColumnDrift:
    """PSI (smoothed counts over the reference's bins) and the Kolmogorov–Smirnov p-value of one column.

    The test compares the two empirical distributions with both sample sizes; ties (discrete
    columns) only make it conservative, so a column of pixels that are nearly always 0 never
    raises an alarm on its own.
    """
    reference = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    recent = np.sort(np.asarray(recent, dtype=np.float64).ravel())
    cuts = _cuts(reference, bins)
    k = len(cuts) + 1
    ref_counts = np.bincount(np.searchsorted(cuts, reference, side="right"), minlength=k)
    cur_counts = np.bincount(np.searchsorted(cuts, recent, side="right"), minlength=k)
    ref_p = (ref_counts + SMOOTHING) / (len(reference) + SMOOTHING * k)
    cur_p = (cur_counts + SMOOTHING) / (len(recent) + SMOOTHING * k)
    psi = float(np.sum((cur_p - ref_p) * np.log(cur_p / ref_p)))
    points = np.concatenate([reference, recent])
    statistic = float(np.abs(np.searchsorted(reference, points, side="right") / len(reference)
                             - np.searchsorted(recent, points, side="right") / len(recent)).max())
    p_value = ks_p_value(statistic, len(reference), len(recent))
    return ColumnDrift(name, psi, p_value, len(reference), len(recent), k)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: reject where below α, with the family-wise error held at α."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if not m:
        return p
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out


def drift_decide(
    columns: list[ColumnDrift], *, threshold: float, alpha: float = ALPHA, reference_n: int, recent_n: int,
    confidence_name: str | None = None,
) -> DriftResult:
    """Drift: some column whose PSI reaches the threshold and whose Holm-corrected test rejects at α."""
    adjusted = holm([c.p_value for c in columns])
    columns = [ColumnDrift(**{**c.as_dict(), "p_adjusted": float(a)}) for c, a in zip(columns, adjusted)]
    shifted = [c for c in columns if c.psi >= threshold and c.p_adjusted < alpha]
    worst = max(shifted or columns, key=lambda c: c.psi) if columns else None
    confidence = next((c for c in columns if c.name == confidence_name), None)
    result = DriftResult(
        drifted=bool(shifted), enough_data=True, threshold=threshold, alpha=alpha, reference_n=reference_n,
        recent_n=recent_n, columns_tested=len(columns), worst=worst,
        drifted_columns=[c.name for c in sorted(shifted, key=lambda c: -c.psi)], confidence=confidence,
    )
    result.summary = drift_summary(result)
    return result


def drift_test(
    reference: np.ndarray, recent: np.ndarray, *, threshold: float, names: Sequence[str] | None = None,
    alpha: float = ALPHA, min_recent: int = MIN_RECENT, min_reference: int = MIN_REFERENCE,
) -> DriftResult:
    """Test every column of two dense samples (rows: items) for drift; too few items is no verdict."""
    reference, recent = np.asarray(reference), np.asarray(recent)
    n_ref, n_cur = len(reference), len(recent)
    if n_ref < min_reference or n_cur < min_recent:
        return too_few(threshold=threshold, alpha=alpha, reference_n=n_ref, recent_n=n_cur,
                       min_reference=min_reference, min_recent=min_recent)
    names = list(names) if names is not None else [f"feature {j}" for j in range(reference.shape[1])]
    columns = [column_drift(names[j], reference[:, j], recent[:, j]) for j in range(reference.shape[1])]
    return drift_decide(columns, threshold=threshold, alpha=alpha, reference_n=n_ref, recent_n=n_cur)


def too_few(
    *, threshold: float, alpha: float = ALPHA, reference_n: int, recent_n: int, min_reference: int = MIN_REFERENCE,
    min_recent: int = MIN_RECENT,
) -> DriftResult:
    """The verdict when either sample is too small to test."""
    result = DriftResult(drifted=False, enough_data=False, threshold=threshold, alpha=alpha, reference_n=reference_n,
                         recent_n=recent_n, columns_tested=0, worst=None)
    result.summary = (f"too few items to tell: {recent_n} new items and {reference_n} from training time "
                      f"({min_recent} and {min_reference} needed)")
    return result


def drift_summary(result: DriftResult) -> str:
    """The verdict in one clause, e.g. "stable, largest PSI 0.04 on feature 12 (p = 0.61)"."""
    worst = result.worst
    if not result.enough_data or worst is None:
        return result.summary or "too few items to tell"
    figures = f"PSI {worst.psi:.2f} on {worst.name} (p {_p(worst.p_adjusted)})"
    if result.drifted:
        others = len(result.drifted_columns) - 1
        more = f" and {others} other column{'s' if others != 1 else ''}" if others > 0 else ""
        return f"drifted, {figures}{more}"
    return f"stable, largest {figures}"


def _p(p: float) -> str:
    return f"= {p:.2g}" if p >= 0.001 else "< 0.001"
