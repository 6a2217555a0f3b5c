"""Evaluation, the promotion gate's statistics, degradation bounds and drift measures (arrays only)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from stats.intervals import wilson_interval
from stats.paired import mcnemar_exact

# scipy.stats and scikit-learn's metrics are imported in the functions that use them: a web
# process imports this module through the services without ever evaluating a model here.


def evaluate(y_true: np.ndarray, proba: np.ndarray, classes: list[int]) -> dict:
    """Accuracy (with its Wilson interval), macro-F1, per-class precision/recall, confusion matrix, log-loss.

    ``proba``'s columns follow ``classes``, the model's own order (the labels' display order, not
    their ids), and so does every per-class figure. Macro-F1 averages over the classes that have
    audit items (``macro_f1_classes`` of ``classes_total``): a class nobody has labeled yet has no
    F1 to count, not an F1 of 0.
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true)
    n = len(y_true)
    if n == 0:
        return {"n": 0}
    classes = [int(c) for c in classes]
    proba = np.asarray(proba, dtype=np.float64)
    y_pred = np.asarray(classes)[np.argmax(proba, axis=1)]
    correct = int((y_pred == y_true).sum())
    low, high = wilson_interval(correct, n)
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    present = [c for c, s in zip(classes, support) if s]
    macro_f1 = f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0) if present else 0.0
    return {
        "n": n,
        "accuracy": correct / n,
        "accuracy_ci": [low, high],
        "macro_f1": float(macro_f1),
        "macro_f1_classes": len(present),
        "classes_total": len(classes),
        "log_loss": log_loss(y_true, proba, classes),
        "per_class": {
            str(c): {"precision": float(p), "recall": float(r), "support": int(s)}
            for c, p, r, s in zip(classes, precision, recall, support)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "classes": classes,
    }


def log_loss(y_true: np.ndarray, proba: np.ndarray, classes: list[int], eps: float = 1e-15) -> float:
    """Mean negative log-probability of the true class, ``proba``'s columns in the order of ``classes``.

    Not scikit-learn's ``log_loss(labels=...)``: it sorts the labels, and so reads the wrong
    column whenever the model's class order is not ascending. A true class outside ``classes``
    counts as probability ``eps``.
    """
    proba = np.clip(np.asarray(proba, dtype=np.float64), eps, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    column = {c: j for j, c in enumerate(classes)}
    rows = [(i, column[int(y)]) for i, y in enumerate(np.asarray(y_true)) if int(y) in column]
    p_true = np.full(len(y_true), eps)
    if rows:
        index = np.array(rows)
        p_true[index[:, 0]] = proba[index[:, 0], index[:, 1]]
    return float(-np.mean(np.log(p_true)))


@dataclass
class McNemar:
    """Exact McNemar test on paired predictions: does the candidate fix more than it breaks?"""

    n: int
    both_right: int
    only_champion_right: int
    only_candidate_right: int
    p_value: float
    gain: float

    def as_dict(self) -> dict:
        return asdict(self)


def mcnemar_on_predictions(y_true: np.ndarray, champion_pred: np.ndarray, candidate_pred: np.ndarray) -> McNemar:
    """Count the paired outcomes of two models and test (one-sided, exact McNemar) that the candidate is better."""
    champion_ok = np.asarray(champion_pred) == np.asarray(y_true)
    candidate_ok = np.asarray(candidate_pred) == np.asarray(y_true)
    champion_only = int((champion_ok & ~candidate_ok).sum())
    candidate_only = int((~champion_ok & candidate_ok).sum())
    p = mcnemar_exact(candidate_only_right=candidate_only, champion_only_right=champion_only)
    n = len(champion_ok)
    gain = (candidate_only - champion_only) / n if n else 0.0
    return McNemar(n, int((champion_ok & candidate_ok).sum()), champion_only, candidate_only, p, gain)


@dataclass
class RecallDrop:
    """How much one class's recall falls from champion to candidate on the paired audit items of that class."""

    support: int
    only_champion_right: int
    only_candidate_right: int
    drop: float
    lower_bound: float

    def as_dict(self) -> dict:
        return asdict(self)


def recall_drops(
    y_true: np.ndarray, champion_pred: np.ndarray, candidate_pred: np.ndarray, classes: list[int], confidence: float
) -> dict[str, RecallDrop]:
    """Per class with audit items: the recall drop (positive = worse) and its one-sided lower confidence bound.

    On a class's n items, b are right only by the champion and c only by the candidate, so the
    drop is (b − c) / n. Given the d = b + c discordant items, b is binomial(d, π) and the drop is
    d (2π − 1) / n; the bound puts the exact (Clopper–Pearson) lower bound of π in that. It is
    above 0 exactly when a one-sided exact McNemar test on the class finds the candidate worse at
    1 − confidence, and it stays below any useful bound when a class has a handful of items, so a
    single miss among two items (a point drop of 50 %) is not taken for evidence.
    """
    from scipy.stats import beta

    y_true, champion_pred, candidate_pred = (np.asarray(a) for a in (y_true, champion_pred, candidate_pred))
    out = {}
    for label in classes:
        mask = y_true == label
        n = int(mask.sum())
        if not n:
            continue
        champion_ok = champion_pred[mask] == label
        candidate_ok = candidate_pred[mask] == label
        b = int((champion_ok & ~candidate_ok).sum())
        c = int((~champion_ok & candidate_ok).sum())
        d = b + c
        pi_low = float(beta.ppf(1 - confidence, b, d - b + 1)) if b else 0.0
        out[str(label)] = RecallDrop(n, b, c, (b - c) / n, d * (2 * pi_low - 1) / n if d else 0.0)
    return out


def accuracy_upper_bound(correct: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound on accuracy: degradation is called only when even this is low."""
    return wilson_interval(correct, n, confidence=2 * confidence - 1)[1]


def population_stability_index(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> np.ndarray:
    """PSI per column, binned on the reference's quantiles (0.1 = watch, 0.2 = shifted, by convention).

    The drift check's former measure, kept for ``bench/drift_false_alarms.py``'s comparison; the
    check itself uses ``learner.ml.drift``.
    """
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    out = np.zeros(reference.shape[1])
    for j in range(reference.shape[1]):
        edges = np.unique(np.quantile(reference[:, j], np.linspace(0, 1, bins + 1)))
        if len(edges) < 2:
            out[j] = 0.0 if np.allclose(current[:, j], edges[0]) else np.inf
            continue
        edges[0], edges[-1] = -np.inf, np.inf
        ref = np.histogram(reference[:, j], edges)[0] / len(reference) + 1e-4
        cur = np.histogram(current[:, j], edges)[0] / len(current) + 1e-4
        out[j] = float(np.sum((cur - ref) * np.log(cur / ref)))
    return out
