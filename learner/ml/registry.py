"""Which featurizers a project may use: the built-ins per kind, and plugins registered by dotted path.

A project names its featurizer by key (``Project.featurizer``; empty means its kind's default).
A plugin is a class registered (the caller passes them in) in the setting ``LABELHUB_FEATURIZER_PLUGINS`` (environment
``FEATURIZER_PLUGINS="name=package.module.Class,…"``) and implements ``learner.ml.featurize.Featurizer``
with two more class attributes:

- ``kinds``: the project kinds it serves, e.g. ``("text",)``;
- ``version``: a short string to change whenever its output changes (a new model file, new code).

It is built without arguments, once per process. Its space, ``plugin:<name>:<version>``, goes into
every stored row and every model's lineage: a new version recomputes the features and makes the
next model a change of kind, which must prove itself before it goes live.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from scipy import sparse

from .featurize import (
    EmbeddingFeaturizer,
    Featurizer,
    FeaturizeError,
    HogColourFeaturizer,
    ImageFeaturizer,
    Matrix,
    TabularFeaturizer,
    TextCountFeaturizer,
    TextFeaturizer,
)

SPACE_MAX_CHARS = 120
EMBEDDINGS = "embeddings"
# key → (label, project kinds); DEFAULT names each kind's default.
BUILT_INS = {
    "text-tfidf": ("TF-IDF over word 1–2-grams, weights fitted with each model (default)", ("text",)),
    "text-hashed": ("Hashed word 1–2-grams, L2-normalised", ("text",)),
    "image-grid": ("16 × 16 grey thumbnail and intensity histogram (default)", ("image",)),
    "image-hog": ("Shape and colour: HOG and an RGB histogram", ("image",)),
    "tabular": ("The numeric columns (default)", ("tabular",)),
    EMBEDDINGS: ("Imported embeddings", ("text", "image", "tabular")),
}
# TF-IDF won on the text benchmark with every model (bench/README.md, "Featurizers and models"); text
# projects made before it was the default keep "text-hashed" (migration annotations 0021).
DEFAULT = {"text": "text-tfidf", "image": "image-grid", "tabular": "tabular"}


class PluginError(ValueError):
    """A registered plugin cannot be loaded or does not fit the interface."""


def import_string(path: str) -> type:
    """The attribute a dotted path names, e.g. ``package.module.Class``."""
    module_path, _, name = path.rpartition(".")
    if not module_path:
        raise ImportError(f"{path!r} is not a dotted path")
    return getattr(importlib.import_module(module_path), name)


@lru_cache(maxsize=32)
def _plugin(name: str, path: str) -> Featurizer:
    try:
        featurizer = import_string(path)()
    except Exception as exc:  # a plugin is outside code: whatever it raises is reported, not a crash
        raise PluginError(f"featurizer plugin {name!r} ({path}) does not load: {type(exc).__name__}: {exc}") from exc
    version = str(getattr(featurizer, "version", "")).strip()
    n_features = getattr(featurizer, "n_features", None)
    if not version or not isinstance(n_features, int) or isinstance(n_features, bool) or n_features < 1:
        raise PluginError(f"featurizer plugin {name!r} needs a 'version' and a positive integer 'n_features'")
    if not callable(getattr(featurizer, "transform", None)):
        raise PluginError(f"featurizer plugin {name!r} has no transform(raws) method")
    featurizer.space = f"plugin:{name}:{version}"[:SPACE_MAX_CHARS]
    featurizer.sparse = bool(getattr(featurizer, "sparse", False))
    return featurizer


def plugin(name: str, paths: Mapping[str, str]) -> Featurizer:
    if name not in paths:
        raise PluginError(f"no featurizer plugin named {name!r} is registered")
    return _plugin(name, paths[name])


def choices(kind: str, plugins: Mapping[str, str]) -> list[tuple[str, str]]:
    """The featurizers a project of this kind may choose, as (key, label); plugins after the built-ins."""
    out = [(key, label) for key, (label, kinds) in BUILT_INS.items() if kind in kinds]
    for name, path in sorted(plugins.items()):
        kinds = _declared_kinds(path)
        if kinds is None or kind in kinds:
            out.append((name, f"Plugin: {name} ({path})"))
    return out


def _declared_kinds(path: str) -> tuple[str, ...] | None:
    """The kinds a plugin class declares, read without building it (None if it cannot be read)."""
    try:
        return tuple(getattr(import_string(path), "kinds", ()))
    except Exception:  # noqa: BLE001 - a plugin that does not import is reported when it is used
        return None


def key_of(kind: str, key: str) -> str:
    if kind not in DEFAULT:
        raise ValueError(f"no featurizer for project kind {kind!r}")
    return key or DEFAULT[kind]


def featurizer_for(
    kind: str, key: str = "", *, feature_names: Sequence[str] = (), embedding_dim: int | None = None,
    plugins: Mapping[str, str] | None = None,
) -> Featurizer:
    """Build the featurizer a project of this kind names by key ("" for the kind's default)."""
    key = key_of(kind, key)
    if key == "text-hashed" and kind == "text":
        return TextFeaturizer()
    if key == "text-tfidf" and kind == "text":
        return TextCountFeaturizer()
    if key == "image-grid" and kind == "image":
        return ImageFeaturizer()
    if key == "image-hog" and kind == "image":
        return HogColourFeaturizer()
    if key == "tabular" and kind == "tabular":
        return TabularFeaturizer(feature_names)
    if key == EMBEDDINGS:
        if not embedding_dim:
            raise FeaturizeError("no embeddings imported yet: their dimension is not known")
        return EmbeddingFeaturizer(embedding_dim)
    if key in BUILT_INS:
        raise FeaturizeError(f"featurizer {key!r} does not serve {kind} projects")
    featurizer = plugin(key, plugins or {})
    kinds = tuple(getattr(featurizer, "kinds", ()))
    if kinds and kind not in kinds:
        raise PluginError(f"featurizer plugin {key!r} serves {', '.join(kinds)} projects, not {kind}")
    return featurizer


def uses_tfidf(featurizer: Featurizer) -> bool:
    return bool(getattr(featurizer, "tfidf", False))


def checked_transform(featurizer: Featurizer, raws: Sequence) -> Matrix:
    """``featurizer.transform`` with its output checked: one finite row of n_features per input.

    Whatever a plugin raises, and any output of the wrong shape or type, becomes a FeaturizeError
    that names the featurizer and what was wrong.
    """
    name = featurizer.space
    try:
        matrix = featurizer.transform(list(raws))
    except FeaturizeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's own failure, reported with its message
        raise FeaturizeError(f"featurizer {name} failed: {type(exc).__name__}: {exc}") from exc
    if sparse.issparse(matrix):
        matrix = sparse.csr_matrix(matrix, dtype=np.float32)
        values = matrix.data
    else:
        try:
            matrix = np.asarray(matrix, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise FeaturizeError(f"featurizer {name} returned no numeric matrix: {exc}") from exc
        values = matrix
    expected = (len(raws), featurizer.n_features)
    if matrix.ndim != 2 or tuple(matrix.shape) != expected:
        raise FeaturizeError(
            f"featurizer {name} returned a matrix of shape {tuple(matrix.shape)}; expected {expected}"
        )
    if not np.isfinite(values).all():
        raise FeaturizeError(f"featurizer {name} returned values that are not finite (NaN or infinity)")
    if featurizer.sparse and not sparse.issparse(matrix):
        matrix = sparse.csr_matrix(matrix)
    return matrix
