"""Learning curves of labeling simulations: held-out splits, curve points, summaries (n95, n99, AULC, drop), plot."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.model_selection import StratifiedShuffleSplit

from learner.ml.training import TrainingError, fit

Curve = Sequence[tuple[int, float]]  # (labels, test accuracy), label counts ascending


def holdout_split(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (pool, test), the test rows a seeded stratified share of the rows.

    Falls back to a plain seeded shuffle when some class has a single row, which stratifying cannot place.
    """
    y = np.asarray(y)
    n_test = max(1, round(len(y) * share))
    if len(y) - n_test < 1:
        raise ValueError(f"{len(y)} rows cannot be split into a pool and a test share of {share}.")
    _, counts = np.unique(y, return_counts=True)
    if counts.min() >= 2 and n_test >= len(counts) and len(y) - n_test >= len(counts):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_test, random_state=seed)
        pool, test = next(splitter.split(np.zeros(len(y)), y))
    else:
        order = np.random.default_rng(seed).permutation(len(y))
        pool, test = order[n_test:], order[:n_test]
    return np.sort(pool), np.sort(test)


def fit_accuracy(
    kind: str, X: np.ndarray | sparse.spmatrix, y: np.ndarray, X_test: np.ndarray | sparse.spmatrix, y_test: np.ndarray,
    *, model: str = "logistic", tfidf: bool = False,
) -> float:
    """Test accuracy of the project's pipeline (kind, model choice, TF-IDF or not) fitted on (X, y).

    With a single class seen, or labels the model cannot be fitted on yet (a calibrated SVM with
    one label of some class), the answer is the most frequent label so far: its share of the test set.
    """
    y, y_test = np.asarray(y), np.asarray(y_test)
    if len(y) == 0:
        return 0.0
    values, counts = np.unique(y, return_counts=True)
    if len(values) < 2:
        return float(np.mean(y_test == y[0]))
    try:
        pipeline = fit(kind, X, y, model=model, tfidf=tfidf)
    except TrainingError:
        return float(np.mean(y_test == values[counts.argmax()]))
    return float(np.mean(pipeline.predict(X_test) == y_test))


@dataclass(frozen=True)
class MeanCurve:
    """A curve averaged over runs at the label counts every run recorded."""

    labels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    runs: int

    def as_dict(self) -> dict:
        return {"labels": self.labels.tolist(), "mean": self.mean.tolist(), "std": self.std.tolist(), "runs": self.runs}


def mean_curve(curves: Sequence[Curve]) -> MeanCurve:
    """Average curves point by point over the label counts that all of them share."""
    if not curves:
        return MeanCurve(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0), 0)
    common = set.intersection(*({labels for labels, _ in curve} for curve in curves))
    labels = np.array(sorted(common), dtype=np.int64)
    table = np.array([[dict(curve)[x] for x in labels] for curve in curves], dtype=np.float64).reshape(
        len(curves), len(labels)
    )
    return MeanCurve(labels, table.mean(axis=0), table.std(axis=0), len(curves))


def labels_to_reach(labels: np.ndarray, accuracy: np.ndarray, target: float) -> int | None:
    """The first label count at which the curve reaches the target accuracy; None if it never does."""
    reached = np.flatnonzero(np.asarray(accuracy) >= target - 1e-12)
    return int(np.asarray(labels)[reached[0]]) if len(reached) else None


def area_under_curve(labels: np.ndarray, accuracy: np.ndarray, budget: int) -> float | None:
    """Area under the curve from its first point to the budget, divided by that span: in [0, 1].

    It is the curve's mean accuracy over the budget, so strategies compare on one number; the last
    value is held flat to the budget if the curve stops short of it. None for an empty curve.
    """
    labels, accuracy = np.asarray(labels, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    if len(labels) == 0:
        return None
    if labels[-1] < budget:
        labels, accuracy = np.append(labels, budget), np.append(accuracy, accuracy[-1])
    keep = labels <= budget
    labels, accuracy = labels[keep], accuracy[keep]
    span = labels[-1] - labels[0]
    if span <= 0:
        return float(accuracy[0])
    return float(np.sum((accuracy[1:] + accuracy[:-1]) / 2 * np.diff(labels)) / span)


def max_drop(accuracy: np.ndarray) -> float | None:
    """The largest fall of the curve below its best value so far (0 for a curve that never falls); None if empty."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if len(accuracy) == 0:
        return None
    return float(np.max(np.maximum.accumulate(accuracy) - accuracy))


def median_or_never(values: Sequence[int | None]) -> float | None:
    """The median of label counts where None means "never" (later than any count); None if the median is never."""
    ordered = sorted(values, key=lambda v: (v is None, v or 0))
    if not ordered:
        return None
    middle = ordered[(len(ordered) - 1) // 2: len(ordered) // 2 + 1]
    if any(v is None for v in middle):
        return None
    return float(np.mean(middle))


def summarise(curves: Sequence[Curve], full_pool_accuracy: float, budget: int) -> dict:
    """The mean curve of a strategy's runs with n95, n99 (labels to 95% / 99% of full-pool accuracy), AULC, max drop."""
    mean = mean_curve(curves)
    return {
        "n95": labels_to_reach(mean.labels, mean.mean, 0.95 * full_pool_accuracy),
        "n99": labels_to_reach(mean.labels, mean.mean, 0.99 * full_pool_accuracy),
        "aulc": area_under_curve(mean.labels, mean.mean, budget),
        "final_accuracy": float(mean.mean[-1]) if len(mean.labels) else None,
        "max_drop": max_drop(mean.mean),
        "mean_curve": mean.as_dict(),
    }


def plot_curves(
    path: Path | str,
    curves: Mapping[str, MeanCurve],
    *,
    full_pool_accuracy: float,
    title: str,
    live: Mapping[str, MeanCurve] | None = None,
) -> None:
    """Write a PNG of mean curves with ±1 standard deviation bands, and the full-pool accuracy for reference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # The object API with the Agg canvas needs no display and leaves pyplot's global state alone.
    figure = Figure(figsize=(8, 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = ["#4c78a8", "#e45756", "#54a24b", "#b279a2", "#f58518"]
    for colour, (name, curve) in zip(colours, curves.items()):
        axes.plot(curve.labels, curve.mean, color=colour, linewidth=2, label=f"{name} (mean of {curve.runs})")
        axes.fill_between(curve.labels, curve.mean - curve.std, curve.mean + curve.std, color=colour, alpha=0.18)
        if live and name in live and len(live[name].labels):
            axes.plot(live[name].labels, live[name].mean, color=colour, linewidth=1, linestyle=":",
                      label=f"{name}: live model")
    axes.axhline(full_pool_accuracy, color="#555555", linewidth=1, linestyle="--",
                 label=f"full pool ({full_pool_accuracy:.3f})")
    axes.axhline(0.99 * full_pool_accuracy, color="#999999", linewidth=1, linestyle=":", label="99% of full pool")
    axes.set_xlabel("labels")
    axes.set_ylabel("test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(str(path), format="png")
