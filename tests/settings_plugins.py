"""Featurizer plugins of the model-settings tests: a tiny dense one for text, one that does not load, a sparse one."""
from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix


class SettingsTinyText:
    """Eight dense numbers per text: its length and the counts of a few letters."""

    kinds = ("text",)
    version = "1"
    n_features = 8

    def transform(self, raws: Sequence[str]) -> np.ndarray:
        return np.array([[len(text), *(text.count(c) for c in "aeiouxy")] for text in raws], dtype=np.float32)


class SettingsBrokenText:
    """A plugin whose model file is missing: building it raises."""

    kinds = ("text",)
    version = "1"
    n_features = 8

    def __init__(self) -> None:
        raise FileNotFoundError("tiny-model.bin is missing")


class SettingsSparseText(SettingsTinyText):
    """The tiny features as a sparse matrix."""

    sparse = True

    def transform(self, raws: Sequence[str]) -> csr_matrix:
        return csr_matrix(super().transform(raws))
