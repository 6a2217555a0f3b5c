"""Candidate models per project kind: scikit-learn pipelines, fitting, and probability vectors."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# scikit-learn is imported where a model is built or inspected: a web process that never trains
# or predicts does not pay its import time and memory.


class TrainingError(ValueError):
    """The labels cannot train a model (e.g. a single class)."""


# Project.model_kind → what each retrain fits; scikit-learn's own estimators, each with probabilities
# for the uncertainty strategies.
MODELS = ("logistic", "linear_svm", "hist_gb", "random_forest")
# Histogram gradient boosting bins dense columns; it takes no sparse rows (text's hashed n-grams).
DENSE_ONLY = ("hist_gb",)
# The calibrated SVM fits its sigmoid on held-out folds: at most this many, never more than the
# rarest class has labels.
SVM_CALIBRATION_FOLDS = 3


def make_pipeline(
    kind: str, model: str = "logistic", *, sparse_rows: bool | None = None, tfidf: bool = False,
    y: np.ndarray | None = None,
) -> Pipeline:
    """Return an unfitted pipeline for the project kind and model choice.

    ``sparse_rows``: the features are sparse (default: text's are). ``tfidf``: they are term
    counts, weighted by TF-IDF fitted with the model. ``y``: the labels it will be fitted on,
    which set the calibrated SVM's folds.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if model not in MODELS:
        raise TrainingError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    sparse_rows = kind == "text" if sparse_rows is None else sparse_rows
    if model in DENSE_ONLY and sparse_rows:
        raise TrainingError("Histogram gradient boosting needs dense features; these (text's n-grams) are sparse.")
    steps: list = []
    if tfidf:
        steps.append(("tfidf", TfidfTransformer(sublinear_tf=True)))  # its rows come out L2-normalised
    elif not sparse_rows and model in ("logistic", "linear_svm"):
        steps.append(("scale", StandardScaler()))
    # Sparse n-grams (L2-normalised, or by TF-IDF) are not scaled; trees need no scaling.
    if model == "logistic":
        # On sparse n-grams (2^18 columns) Newton-CG reaches the same optimum as the default L-BFGS in a few
        # steps: 0.3-0.9 s against 3-7 s on 100-5,000 docstrings, which keeps a text project's retrains cheap.
        solver = "newton-cg" if sparse_rows else "lbfgs"
        steps.append(("clf", LogisticRegression(C=10.0 if sparse_rows else 1.0, max_iter=2000, solver=solver)))
    elif model == "linear_svm":
        steps.append(("clf", _calibrated_svm(y)))
    elif model == "hist_gb":
        steps.append(("clf", HistGradientBoostingClassifier(random_state=0)))
    else:
        steps.append(("clf", RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1)))
    return Pipeline(steps)


def _calibrated_svm(y: np.ndarray | None):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    rarest = int(np.unique(y, return_counts=True)[1].min()) if y is not None and len(y) else SVM_CALIBRATION_FOLDS
    if rarest < 2:
        raise TrainingError("A calibrated linear SVM needs at least two labels of every class.")
    svm = LinearSVC(C=1.0, random_state=0)  # its dual solver shuffles: seeded, so a retrain is reproducible
    return CalibratedClassifierCV(svm, method="sigmoid", cv=min(SVM_CALIBRATION_FOLDS, rarest))


# Parameters that choose how a model is fitted, not what: L2 logistic regression has one optimum
# whichever of these solvers finds it. Versions that differ only in these come from the same pipeline.
FITTING_ONLY = ("solver", "n_jobs", "verbose")


def same_pipeline(a: dict, b: dict) -> bool:
    """Whether two versions' ``hyperparameters`` describe the same pipeline, ``FITTING_ONLY`` aside."""
    def what(params: dict) -> dict:
        return {step: {k: v for k, v in values.items() if k not in FITTING_ONLY} if isinstance(values, dict) else values
                for step, values in params.items()}
    return what(a) == what(b)


def hyperparameters(pipeline: Pipeline) -> dict:
    """The pipeline's steps and the parameters that differ from scikit-learn's defaults."""
    out = {}
    for name, step in pipeline.steps:
        params = {k: v for k, v in step.get_params(deep=False).items() if isinstance(v, (int, float, str, bool, type(None)))}
        if type(step).__name__ == "CalibratedClassifierCV":
            params.pop("cv", None)  # set by the rarest class's labels at each fit, not a choice of the project
        out[name] = {"class": type(step).__name__, **params}
    return out


def fit(
    kind: str, X: np.ndarray | sparse.spmatrix, y: np.ndarray, *, model: str = "logistic", tfidf: bool = False
) -> Pipeline:
    """Fit a fresh pipeline on the labeled rows."""
    if len(np.unique(y)) < 2:
        raise TrainingError("Training needs labels of at least two classes.")
    pipeline = make_pipeline(kind, model, sparse_rows=sparse.issparse(X), tfidf=tfidf, y=y)
    return pipeline.fit(X, y)


def proba_over(model: Pipeline, X: np.ndarray | sparse.spmatrix, classes: list[int]) -> np.ndarray:
    """Return probabilities in the order of ``classes``; classes the model never saw get 0.

    A class of the model that is not in ``classes`` (a label merged into another since it was
    trained) is dropped, and each row's remaining probabilities are scaled back to sum to 1.
    """
    proba = model.predict_proba(X)
    if list(model.classes_) == list(classes):
        return proba
    return _reordered(proba, model.classes_, classes)


def proba_fast(model: Pipeline, X: np.ndarray | sparse.spmatrix, classes: list[int]) -> np.ndarray:
    """``proba_over`` for a request of a few rows: our own pipelines computed directly, without
    scikit-learn's per-call validation (about 1 ms, most of a single prediction's model time).

    Covers [StandardScaler] + LogisticRegression, the pipelines ``make_pipeline`` builds; anything
    else, or classes in another order, goes through ``proba_over``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    steps = [step for _, step in model.steps]
    clf = steps[-1]
    if (
        not isinstance(clf, LogisticRegression)
        or any(not isinstance(step, StandardScaler) for step in steps[:-1])
        or list(clf.classes_) != list(classes)
    ):
        return proba_over(model, X, classes)
    Z = X
    for scaler in steps[:-1]:
        if sparse.issparse(Z):
            return proba_over(model, X, classes)
        Z = Z.astype(np.float64, copy=True)
        if scaler.with_mean:
            Z -= scaler.mean_
        if scaler.with_std:
            Z /= scaler.scale_
    scores = Z @ clf.coef_.T + clf.intercept_
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[1] == 1:  # binary: the positive class's logistic, as scikit-learn does
        positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.column_stack([1.0 - positive, positive])
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


def proba_batch(model: Pipeline, X: np.ndarray | sparse.spmatrix, classes: list[int]) -> np.ndarray:
    """``proba_over`` for scoring many rows at once: the scalers folded into the linear model.

    For [StandardScaler] + LogisticRegression pipelines, ((X − mean) / scale) · Wᵀ + b equals
    X · (W / scale)ᵀ + (b − (mean / scale) · Wᵀ): one product over the rows instead of a scaled
    float64 copy of the whole matrix, and it works on sparse rows as they are. Anything else
    goes through ``proba_over``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    steps = [step for _, step in model.steps]
    clf = steps[-1]
    if not isinstance(clf, LogisticRegression) or any(not isinstance(step, StandardScaler) for step in steps[:-1]):
        return proba_over(model, X, classes)
    weights = np.asarray(clf.coef_, dtype=np.float64)
    intercept = np.asarray(clf.intercept_, dtype=np.float64)
    for scaler in reversed(steps[:-1]):
        scale = scaler.scale_ if scaler.with_std and scaler.scale_ is not None else np.ones(weights.shape[1])
        mean = scaler.mean_ if scaler.with_mean and scaler.mean_ is not None else np.zeros(weights.shape[1])
        weights = weights / scale
        intercept = intercept - weights @ mean
    scores = np.asarray(X @ weights.T, dtype=np.float64) + intercept
    if scores.shape[1] == 1:  # binary: the positive class's logistic, as scikit-learn does
        positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        proba = np.column_stack([1.0 - positive, positive])
    else:
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        proba = scores
    if list(clf.classes_) == list(classes):
        return proba
    return _reordered(proba, clf.classes_, classes)


def _reordered(proba: np.ndarray, model_classes, classes: list[int]) -> np.ndarray:
    """Columns of ``proba`` (in ``model_classes`` order) in the order of ``classes``; classes the model never saw
    get 0, and a model class not in ``classes`` (a label merged into another) is dropped, each row scaled back to 1."""
    out = np.zeros((proba.shape[0], len(classes)), dtype=proba.dtype)
    position = {c: i for i, c in enumerate(classes)}
    for j, c in enumerate(model_classes):
        if int(c) in position:
            out[:, position[int(c)]] = proba[:, j]
    if not {int(c) for c in model_classes} <= set(position):
        total = out.sum(axis=1, keepdims=True)
        np.divide(out, total, out=out, where=total > 0)
    return out
