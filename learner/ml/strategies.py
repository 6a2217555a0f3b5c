"""Query strategies over probability vectors: modAL's uncertainty measures, ranked batch, cold-start seeds."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from modAL.batch import ranked_batch
from modAL.uncertainty import _proba_entropy, _proba_margin, _proba_uncertainty
from scipy import sparse

STRATEGIES = ("least_confident", "margin", "entropy", "random", "batch")


def uncertainty(proba: np.ndarray, strategy: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return one priority per row of ``proba``: higher means ask an expert sooner."""
    proba = np.asarray(proba, dtype=np.float64)
    if strategy in ("least_confident", "batch"):
        return _proba_uncertainty(proba)
    if strategy == "margin":
        # modAL's margin is "smaller is more uncertain"; flip it so every strategy sorts the same way.
        return 1.0 - _proba_margin(proba)
    if strategy == "entropy":
        return _proba_entropy(np.clip(proba, 1e-12, 1.0))
    if strategy == "random":
        return (rng or np.random.default_rng()).random(proba.shape[0])
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


def ranked_batch_order(
    shortlist: np.ndarray | sparse.spmatrix,
    scores: np.ndarray,
    labeled: np.ndarray | sparse.spmatrix | None,
    n_instances: int,
) -> np.ndarray:
    """Order a shortlist of uncertain rows so that each next row is also far from what is labeled.

    modAL's ranked batch (Cardoso et al.) loops in Python over the pool, so it is applied to a
    shortlist of the most uncertain rows only, with the labeled rows as its reference set.
    """
    n = min(n_instances, shortlist.shape[0])
    if n == 0:
        return np.empty(0, dtype=np.int64)
    has_labeled = labeled is not None and labeled.shape[0] > 0
    learner = SimpleNamespace(on_transformed=False, X_training=labeled if has_labeled else None)
    order, _ = ranked_batch(learner, unlabeled=shortlist, uncertainty_scores=np.asarray(scores),
                            n_instances=n, metric="euclidean", n_jobs=1)
    return np.asarray(order, dtype=np.int64)


def diverse_seed_order(X: np.ndarray | sparse.spmatrix, n_seeds: int, random_state: int = 0) -> np.ndarray:
    """Pick one representative row per k-means cluster, for the queue before any model exists."""
    from sklearn.cluster import MiniBatchKMeans

    n_rows = X.shape[0]
    k = min(n_seeds, n_rows)
    if k <= 1:
        return np.arange(n_rows, dtype=np.int64)[:k]
    kmeans = MiniBatchKMeans(n_clusters=k, random_state=random_state, n_init=3, batch_size=2048)
    distances = kmeans.fit_transform(X)
    chosen: list[int] = []
    taken = np.zeros(n_rows, dtype=bool)
    for cluster in range(k):
        # The row closest to this centroid that no earlier cluster took.
        for row in np.argsort(distances[:, cluster]):
            if not taken[row]:
                taken[row] = True
                chosen.append(int(row))
                break
    return np.asarray(chosen, dtype=np.int64)
