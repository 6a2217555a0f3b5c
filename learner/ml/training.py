"""Candidate models per project kind: scikit-learn pipelines, fitting, and probability vectors."""
from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


class TrainingError(ValueError):
    """The labels cannot train a model (e.g. a single class)."""


def make_pipeline(kind: str) -> Pipeline:
    """Return an unfitted pipeline suited to the project kind."""
    if kind == "text":
        # Hashed n-grams are already L2-normalised and sparse: no scaling, a linear model.
        return Pipeline([("clf", LogisticRegression(C=10.0, max_iter=2000))])
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=1.0, max_iter=2000))])


def hyperparameters(pipeline: Pipeline) -> dict:
    """The pipeline's steps and the parameters that differ from scikit-learn's defaults."""
    out = {}
    for name, step in pipeline.steps:
        params = {k: v for k, v in step.get_params(deep=False).items() if isinstance(v, (int, float, str, bool, type(None)))}
        out[name] = {"class": type(step).__name__, **params}
    return out


def fit(kind: str, X: np.ndarray | sparse.spmatrix, y: np.ndarray) -> Pipeline:
    """Fit a fresh pipeline on the labeled rows."""
    if len(np.unique(y)) < 2:
        raise TrainingError("Training needs labels of at least two classes.")
    return make_pipeline(kind).fit(X, y)


def proba_over(model: Pipeline, X: np.ndarray | sparse.spmatrix, classes: list[int]) -> np.ndarray:
    """Return probabilities in the order of ``classes``; classes the model never saw get 0."""
    proba = model.predict_proba(X)
    if list(model.classes_) == list(classes):
        return proba
    out = np.zeros((proba.shape[0], len(classes)), dtype=proba.dtype)
    position = {c: i for i, c in enumerate(classes)}
    for j, c in enumerate(model.classes_):
        out[:, position[int(c)]] = proba[:, j]
    return out
