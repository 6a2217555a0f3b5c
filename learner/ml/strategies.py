"""Query strategies over probability vectors: modAL's uncertainty measures, ranked batch, cold-start seeds."""
from __future__ import annotations

import numpy as np
from scipy import sparse

# modAL and scikit-learn are imported in the functions that use them: a web process that only
# imports this module (through the services) does not pay their import time and memory.

STRATEGIES = ("least_confident", "margin", "entropy", "random", "batch")


def uncertainty(proba: np.ndarray, strategy: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return one priority per row of ``proba``: higher means ask an expert sooner."""
    from modAL.uncertainty import _proba_entropy, _proba_margin, _proba_uncertainty

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


def queue_scores(
    proba: np.ndarray, strategy: str, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each row's priority under the strategy, the index of its most probable class, and that probability."""
    proba = np.asarray(proba)
    best = proba.argmax(axis=1)
    return uncertainty(proba, strategy, rng), best, proba[np.arange(proba.shape[0]), best]


def ranked_batch_order(
    shortlist: np.ndarray | sparse.spmatrix,
    scores: np.ndarray,
    labeled: np.ndarray | sparse.spmatrix | None,
    n_instances: int,
) -> np.ndarray:
    """Order a shortlist of uncertain rows so that each next row is also far from what is labeled.

    This is modAL's ranked batch (Cardoso et al.; ``modAL.batch.ranked_batch`` with euclidean
    distances) computed incrementally: modAL measures every candidate against the whole growing
    labeled set again for each pick, this keeps each candidate's distance to its nearest labeled
    or picked row and updates it with the one new pick, which gives the same order in O(n·d) per
    pick. It runs on a shortlist of the most uncertain rows, with the labeled rows as reference.
    Without labeled rows it starts, as modAL does, from the row closest on average to the others
    (and, unlike modAL, never picks that row twice).
    """
    from sklearn.metrics.pairwise import euclidean_distances, pairwise_distances, pairwise_distances_argmin_min

    n_rows = shortlist.shape[0]
    n = min(n_instances, n_rows)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    available = np.ones(n_rows, dtype=bool)
    order: list[int] = []
    if labeled is not None and labeled.shape[0] > 0:
        _, nearest = pairwise_distances_argmin_min(shortlist, labeled, metric="euclidean")
        n_reference = labeled.shape[0]
    else:
        first = int(np.argmin(pairwise_distances(shortlist, metric="euclidean").mean(axis=0)))
        nearest = euclidean_distances(shortlist, shortlist[[first]]).ravel()
        available[first] = False
        order.append(first)
        n_reference = 1
    while len(order) < n:
        n_available = int(available.sum())
        # modAL's weight: the share of candidates left among candidates plus reference rows.
        alpha = n_available / (n_available + n_reference)
        value = alpha * (1 - 1 / (1 + nearest)) + (1 - alpha) * scores
        value[~available] = -np.inf
        pick = int(np.argmax(value))
        available[pick] = False
        order.append(pick)
        n_reference += 1
        nearest = np.minimum(nearest, euclidean_distances(shortlist, shortlist[[pick]]).ravel())
    return np.asarray(order, dtype=np.int64)


def diverse_batch_order(
    shortlist: np.ndarray | sparse.spmatrix, scores: np.ndarray, n_instances: int, random_state: int = 0
) -> np.ndarray:
    """Pick rows of a shortlist of the most uncertain rows that spread over it: one per cluster, most uncertain first.

    Zhdanov's diverse mini-batch ("Diverse mini-batch Active Learning", 2019): k-means with k =
    ``n_instances`` over the shortlist, each row weighted by its uncertainty, and of each cluster
    the row closest to its centroid. The top of a ranking is full of near-duplicates (the same
    confusion between two classes, over and over); a batch served before the next ranking then
    asks the same question many times, which this avoids.
    """
    from sklearn.cluster import KMeans

    n_rows = shortlist.shape[0]
    k = min(n_instances, n_rows)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if k == n_rows:
        return np.argsort(-scores, kind="stable").astype(np.int64)
    X = _clusterable(shortlist, random_state)
    # Uncertainties are non-negative; a weight of 0 would drop a fully confident row from k-means altogether.
    weights = np.clip(scores, 1e-6, None)
    kmeans = KMeans(n_clusters=k, n_init=1, random_state=random_state).fit(X, sample_weight=weights)
    distances = kmeans.transform(X)
    taken = np.zeros(n_rows, dtype=bool)
    picks: list[int] = []
    for cluster in range(k):
        # The row closest to this centroid that no other cluster took (duplicate rows share a centroid).
        for row in np.argsort(distances[:, cluster], kind="stable"):
            if not taken[row]:
                taken[row] = True
                picks.append(int(row))
                break
    picks.sort(key=lambda row: (-scores[row], row))
    return np.asarray(picks, dtype=np.int64)


def _clusterable(X: np.ndarray | sparse.spmatrix, random_state: int) -> np.ndarray | sparse.spmatrix:
    """The rows as k-means takes them: wide sparse rows randomly projected to a few hundred dense columns."""
    from sklearn.random_projection import SparseRandomProjection

    if sparse.issparse(X) and X.shape[1] > SEED_PROJECT_ABOVE:
        projection = SparseRandomProjection(n_components=SEED_PROJECT_TO, dense_output=True, random_state=random_state)
        return projection.fit_transform(X)
    return X


# Above this many columns, sparse rows are randomly projected before clustering: k-means
# centroids over 2^18 hashed text columns would take ~100 MB.
SEED_PROJECT_ABOVE = 1024
SEED_PROJECT_TO = 256


def diverse_seed_order(X: np.ndarray | sparse.spmatrix, n_seeds: int, random_state: int = 0) -> np.ndarray:
    """Pick one representative row per k-means cluster, for the queue before any model exists.

    The representatives come in farthest-first order (each next one the farthest from those
    before it, starting from the largest cluster's), so any first few already spread over the data.
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics.pairwise import euclidean_distances

    n_rows = X.shape[0]
    k = min(n_seeds, n_rows)
    if k <= 1:
        return np.arange(n_rows, dtype=np.int64)[:k]
    X = _clusterable(X, random_state)
    kmeans = MiniBatchKMeans(n_clusters=k, random_state=random_state, n_init=3, batch_size=2048)
    distances = kmeans.fit_transform(X)
    sizes = np.bincount(kmeans.labels_, minlength=k)
    representatives: list[int] = []
    taken = np.zeros(n_rows, dtype=bool)
    for cluster in np.argsort(-sizes, kind="stable"):
        # The row closest to this centroid that no earlier cluster took.
        for row in np.argsort(distances[:, cluster]):
            if not taken[row]:
                taken[row] = True
                representatives.append(int(row))
                break
    points = X[representatives]
    nearest = euclidean_distances(points, points[[0]]).ravel()
    nearest[0] = -1.0
    order = [0]
    for _ in range(len(representatives) - 1):
        pick = int(np.argmax(nearest))
        order.append(pick)
        nearest = np.minimum(nearest, euclidean_distances(points, points[[pick]]).ravel())
        nearest[order] = -1.0
    return np.asarray(representatives, dtype=np.int64)[order]
