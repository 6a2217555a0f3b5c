"""Drift check: how often same-distribution imports trip it (false alarms), and how often a real shift does.

Arrays only, no database: each dataset scikit-learn ships is featurized as a project would
featurize it (digits rendered to PNGs as `manage.py demo` renders them, through the image
featurizer; wine and breast_cancer as tabular rows), split into the items a model is trained on
(30 %) and a pool. Each draw takes a reference sample (the items present when the live model was
trained) and a recent sample (an import of 50, 100 or 500 items), both with replacement from the
pool, and runs the check on every feature column plus the model's confidence, exactly as
`drift_check` does. A shift is: one feature moved by half (or one) standard deviation, every
feature moved by half, digits of other classes, or half the import of other classes. The old
check (max PSI with 1e-4-floored bins ≥ 0.2) is measured on the same draws for comparison.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit  # noqa: E402
from learner.ml import drift, evaluation, training  # noqa: E402

THRESHOLD = 0.2  # the project's default drift_threshold
SIZES = (50, 100, 500)
REFERENCE_SIZES = (300, 2000)
CONFIDENCE = "the live model's confidence"


@dataclass
class Dataset:
    """A featurized dataset: a fitted model, and the pool the samples are drawn from."""

    name: str
    kind: str
    pool: np.ndarray
    pool_y: np.ndarray
    model: object
    classes: list[int]

    def confidence(self, X: np.ndarray) -> np.ndarray:
        return training.proba_over(self.model, X, self.classes).max(axis=1)


def _digit_png(pixels: np.ndarray) -> bytes:
    """A digit as the demo stores it: dark ink on white, 8×8 scaled to 32×32."""
    from PIL import Image

    grey = (255 - pixels * 255 / 16).clip(0, 255).astype("uint8")
    image = Image.fromarray(grey, mode="L").resize((32, 32), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def datasets(rng: np.random.Generator, names: tuple[str, ...] = ("digits", "wine", "breast_cancer")) -> list[Dataset]:
    """Featurize each dataset and train the project's pipeline on 30 % of it."""
    from sklearn import datasets as sk

    from learner.ml.featurize import ImageFeaturizer

    out = []
    for name in names:
        if name == "digits":
            digits = sk.load_digits()
            featurizer = ImageFeaturizer()
            X = np.stack([featurizer.row(_digit_png(pixels)) for pixels in digits.images]).astype(np.float32)
            y, kind = digits.target, "image"
        else:
            loaded = getattr(sk, f"load_{name}")()
            X, y, kind = loaded.data.astype(np.float32), loaded.target, "tabular"
        order = rng.permutation(len(X))
        cut = int(0.3 * len(X))
        train, pool = order[:cut], order[cut:]
        model = training.fit(kind, X[train], y[train])
        out.append(Dataset(name, kind, X[pool], y[pool], model, sorted(int(c) for c in np.unique(y))))
    return out


def check(ds: Dataset, reference: np.ndarray, recent: np.ndarray, *, confidence_only: bool = False) -> tuple[bool, bool]:
    """The new check and the old one on these two samples: (new drifted, old drifted)."""
    conf_ref, conf_cur = ds.confidence(reference), ds.confidence(recent)
    columns = [drift.column_drift(CONFIDENCE, conf_ref, conf_cur)]
    if not confidence_only:
        columns += [drift.column_drift(f"feature {j}", reference[:, j], recent[:, j]) for j in range(reference.shape[1])]
    new = drift.drift_decide(columns, threshold=THRESHOLD, reference_n=len(reference), recent_n=len(recent),
                             confidence_name=CONFIDENCE).drifted
    old_psi = evaluation.population_stability_index(conf_ref[:, None], conf_cur[:, None])[0]
    if not confidence_only:
        old_psi = max(old_psi, float(evaluation.population_stability_index(reference, recent).max()))
    return new, bool(old_psi >= THRESHOLD)


Shift = Callable[[Dataset, np.random.Generator, int], np.ndarray]


def _same(ds: Dataset, rng: np.random.Generator, n: int) -> np.ndarray:
    return ds.pool[rng.integers(0, len(ds.pool), n)]


def _moved(columns: str, sds: float) -> Shift:
    def shift(ds: Dataset, rng: np.random.Generator, n: int) -> np.ndarray:
        X = _same(ds, rng, n).copy()
        sd = ds.pool.std(axis=0)
        which = slice(None) if columns == "all" else slice(int(np.argmax(sd > 0)), int(np.argmax(sd > 0)) + 1)
        X[:, which] += sds * sd[which]
        return X
    return shift


def _other_classes(share: float) -> Shift:
    def shift(ds: Dataset, rng: np.random.Generator, n: int) -> np.ndarray:
        other = np.flatnonzero(ds.pool_y >= 5)
        same = np.flatnonzero(ds.pool_y < 5)
        k = int(round(share * n))
        return ds.pool[np.concatenate([rng.choice(other, k), rng.choice(same, n - k)])]
    return shift


def _reference(ds: Dataset, rng: np.random.Generator, size: int, *, low_classes: bool) -> np.ndarray:
    rows = np.flatnonzero(ds.pool_y < 5) if low_classes else np.arange(len(ds.pool))
    return ds.pool[rng.choice(rows, size)]


def rates(ds: Dataset, shift: Shift | None, *, draws: int, seed: int, reference_size: int,
          sizes: tuple[int, ...] = SIZES, confidence_only: bool = False, low_classes: bool = False) -> dict:
    """Share of draws the new and old checks call drift, per import size."""
    rng = np.random.default_rng(seed)
    hits = {n: [0, 0] for n in sizes}
    for _ in range(draws):
        reference = _reference(ds, rng, reference_size, low_classes=low_classes)
        for n in sizes:
            if shift is None:
                rows = np.flatnonzero(ds.pool_y < 5) if low_classes else np.arange(len(ds.pool))
                recent = ds.pool[rng.choice(rows, n)]
            else:
                recent = shift(ds, rng, n)
            new, old = check(ds, reference, recent, confidence_only=confidence_only)
            hits[n][0] += new
            hits[n][1] += old
    return {n: {"new": h[0] / draws, "old": h[1] / draws} for n, h in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="60 draws per case and one reference size")
    args = parser.parse_args()
    draws, detect_draws = (60, 30) if args.quick else (400, 100)
    reference_sizes = (1000,) if args.quick else REFERENCE_SIZES
    started = time.perf_counter()
    data = datasets(np.random.default_rng(0))
    false_alarms: dict[str, dict] = {}
    for ds in data:
        for reference_size in reference_sizes:
            key = f"{ds.name}_ref{reference_size}"
            false_alarms[key] = rates(ds, None, draws=draws, seed=1, reference_size=reference_size)
        if ds.kind == "image":
            # What a text project gets: the confidence column alone.
            false_alarms[f"{ds.name}_confidence_only_ref1000"] = rates(
                ds, None, draws=draws, seed=2, reference_size=1000, confidence_only=True)
            # A reference of some classes only, the import of the same classes: still no drift.
            false_alarms[f"{ds.name}_classes0-4_ref1000"] = rates(
                ds, None, draws=draws, seed=3, reference_size=1000, low_classes=True)
    detections: dict[str, dict] = {}
    for ds in data:
        if ds.kind == "image":
            cases = {"other_classes": _other_classes(1.0), "half_other_classes": _other_classes(0.5)}
            for case, shift in cases.items():
                detections[f"{ds.name}_{case}"] = rates(ds, shift, draws=detect_draws, seed=4, reference_size=1000,
                                                        low_classes=True)
            detections[f"{ds.name}_other_classes_confidence_only"] = rates(
                ds, _other_classes(1.0), draws=detect_draws, seed=5, reference_size=1000, low_classes=True,
                confidence_only=True)
        else:
            cases = {"one_feature_0.5sd": _moved("one", 0.5), "one_feature_1sd": _moved("one", 1.0),
                     "all_features_0.5sd": _moved("all", 0.5)}
            for case, shift in cases.items():
                detections[f"{ds.name}_{case}"] = rates(ds, shift, draws=detect_draws, seed=6, reference_size=1000)
    figures: dict = {}
    for n in SIZES:
        figures[f"false_alarm_{n}"] = max(r[n]["new"] for r in false_alarms.values())
        figures[f"old_false_alarm_{n}"] = max(r[n]["old"] for r in false_alarms.values())
    for n in SIZES:
        figures[f"detection_{n}_other_classes"] = detections["digits_other_classes"][n]["new"]
        figures[f"detection_{n}_one_feature_1sd"] = min(
            r[n]["new"] for k, r in detections.items() if k.endswith("one_feature_1sd"))
    figures.update({
        "threshold": THRESHOLD, "alpha": drift.ALPHA, "draws": draws, "detection_draws": detect_draws,
        "reference_sizes": list(reference_sizes), "test": drift.TEST,
        "false_alarms": {k: {str(n): v for n, v in r.items()} for k, r in false_alarms.items()},
        "detections": {k: {str(n): v for n, v in r.items()} for k, r in detections.items()},
        "seconds": round(time.perf_counter() - started, 1),
    })
    emit("drift_false_alarms", figures, save=True)


if __name__ == "__main__":
    main()
