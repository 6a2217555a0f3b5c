"""Featurizers per project kind, and the byte format that loads a whole pool as one matrix."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import BinaryIO, Protocol

import numpy as np
from PIL import Image
from scipy import sparse

Matrix = np.ndarray | sparse.csr_matrix
PackedRow = tuple[bytes, bytes | None]


class FeaturizeError(ValueError):
    """An input that cannot be turned into features, such as an image that does not decode."""


class Featurizer(Protocol):
    """What turns items into feature rows: the interface a plugin implements (see learner.ml.registry).

    ``space`` names the featurizer and its version; it is stored with every row and in each model's
    lineage, so a model is only ever fed rows of the space it was trained on. ``transform`` takes the
    items' raw content (text: ``str``; image: a decoded ``PIL.Image.Image``; tabular: a list of
    numbers in the project's column order; embeddings: float32 bytes) and returns one row per item,
    ``n_features`` wide: a dense array, or a CSR matrix when ``sparse``.
    """

    space: str
    n_features: int
    sparse: bool

    def transform(self, raws: Sequence) -> Matrix: ...


class TextFeaturizer:
    """Hashed word 1–2-grams, L2-normalised: sparse, with no vocabulary to fit or store."""

    # Character n-grams were measured at under 10k texts/s with 7x the stored bytes; words
    # alone run about 50k/s, which keeps features well ahead of import.
    n_features = 2**18
    space = "text-word12-hash-v1:2^18"
    sparse = True

    def __init__(self) -> None:
        # Imported here: a web process imports this module but builds a text featurizer only to predict.
        from sklearn.feature_extraction.text import HashingVectorizer

        self._vectorizer = HashingVectorizer(
            analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
            n_features=self.n_features, alternate_sign=False, norm="l2", dtype=np.float32,
        )

    def transform(self, raws: Sequence[str]) -> sparse.csr_matrix:
        return self._vectorizer.transform(raws)


class TextCountFeaturizer(TextFeaturizer):
    """Hashed word 1–2-gram counts, not normalised: the models of this featurizer weight them by TF-IDF.

    The idf weights are fitted with each model (learner.ml.training) on its training rows, and so
    are stored and versioned with it; the rows stay independent of any model.
    """

    space = "text-word12-count-v1:2^18"
    tfidf = True

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self._vectorizer = HashingVectorizer(
            analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
            n_features=self.n_features, alternate_sign=False, norm=None, dtype=np.float32,
        )


class ImageFeaturizer:
    """A 16×16 grayscale thumbnail in [0, 1] and a normalised 16-bin intensity histogram."""

    grid = 16
    bins = 16
    n_features = grid * grid + bins
    space = "image-grid16-hist16-v1"
    sparse = False

    def row(self, raw: bytes | BinaryIO | Image.Image) -> np.ndarray:
        """Return one image's features; raise FeaturizeError if it does not decode.

        Bytes and files are those import stored (PNG); an image from elsewhere comes already checked
        and decoded (annotations' image_decode), never as bytes for every Pillow plugin to try.
        """
        gray = self.decoded(raw, "L")
        thumb = np.asarray(gray.resize((self.grid, self.grid), Image.Resampling.BOX), dtype=np.float32) / 255.0
        hist = np.asarray(gray.histogram(), dtype=np.float32).reshape(self.bins, -1).sum(axis=1)
        return np.concatenate([thumb.ravel(), hist / max(hist.sum(), 1.0)])

    def decoded(self, raw: bytes | BinaryIO | Image.Image, mode: str) -> Image.Image:
        """The image in ``mode`` ("L" or "RGB"); raise FeaturizeError if it does not decode.

        A JPEG decodes at a reduced scale (straight to luminance for "L"), much faster for photos.
        """
        if isinstance(raw, Image.Image):
            return raw.convert(mode)
        try:
            with Image.open(io.BytesIO(raw) if isinstance(raw, bytes | bytearray) else raw) as image:
                image.draft(mode, (self.grid * 4, self.grid * 4))
                return image.convert(mode)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise FeaturizeError(f"image does not decode: {exc}") from exc

    def transform(self, raws: Sequence[bytes | BinaryIO | Image.Image]) -> np.ndarray:
        return np.stack([self.row(raw) for raw in raws]) if raws else np.empty((0, self.n_features), np.float32)


class HogColourFeaturizer(ImageFeaturizer):
    """Shape and colour: a histogram of oriented gradients of a 32×32 grey copy (scikit-image) and a
    joint RGB histogram of 4 × 4 × 4 bins."""

    grid = 32
    n_features = 9 * 3 * 3 * 2 * 2 + 64  # HOG: 9 orientations, 3×3 blocks of 2×2 cells of 8 px
    space = "image-hog32-rgb64-v1"

    def row(self, raw: bytes | BinaryIO | Image.Image) -> np.ndarray:
        from skimage.feature import hog

        small = self.decoded(raw, "RGB").resize((self.grid, self.grid), Image.Resampling.BOX)
        grey = np.asarray(small.convert("L"), dtype=np.float32) / 255.0
        shape = hog(grey, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), feature_vector=True)
        quantised = np.asarray(small, dtype=np.uint8) // 64  # 4 levels per channel
        codes = (quantised[..., 0].astype(np.int32) * 16 + quantised[..., 1] * 4 + quantised[..., 2]).ravel()
        colour = np.bincount(codes, minlength=64).astype(np.float32) / codes.size
        return np.concatenate([shape.astype(np.float32), colour])


class EmbeddingFeaturizer:
    """Vectors imported with the items (float32 bytes), used as they are."""

    sparse = False

    def __init__(self, dimensions: int) -> None:
        self.n_features = int(dimensions)
        self.space = f"embeddings-v1:{self.n_features}"

    def transform(self, raws: Sequence[bytes]) -> np.ndarray:
        width = 4 * self.n_features
        for raw in raws:
            if raw is None or len(raw) != width:
                got = "none" if raw is None else f"{len(raw) // 4} numbers"
                raise FeaturizeError(f"an embedding has {got}; this project's have {self.n_features}")
        if not raws:
            return np.empty((0, self.n_features), np.float32)
        return np.frombuffer(b"".join(bytes(raw) for raw in raws), dtype=np.float32).reshape(len(raws), -1).copy()


class TabularFeaturizer:
    """The numeric columns as float32, in the project's feature_names order."""

    sparse = False

    def __init__(self, feature_names: Sequence[str]) -> None:
        self.feature_names = list(feature_names)
        self.n_features = len(self.feature_names)
        self.space = f"tabular-v1:{self.n_features}"

    def transform(self, raws: Sequence[Sequence[float] | Mapping[str, float]]) -> np.ndarray:
        if not raws:
            return np.empty((0, self.n_features), np.float32)
        rows = [[raw[name] for name in self.feature_names] if isinstance(raw, Mapping) else raw for raw in raws]
        try:
            matrix = np.array(rows, dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise FeaturizeError(f"tabular rows are not numeric: {exc}") from exc
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise FeaturizeError(f"rows of shape {matrix.shape[1:]} do not fit {self.n_features} columns")
        return matrix


def pack(matrix: Matrix) -> list[PackedRow]:
    """Split a matrix into per-row bytes: float32 values, plus int32 column indices for sparse rows."""
    if sparse.issparse(matrix):
        csr = sparse.csr_matrix(matrix, dtype=np.float32)
        csr.sum_duplicates()  # canonical rows: sorted, unique column indices
        values, indices = csr.data.tobytes(), csr.indices.astype(np.int32, copy=False).tobytes()
        bounds = (csr.indptr * 4).tolist()
        return [(values[a:b], indices[a:b]) for a, b in zip(bounds, bounds[1:])]
    dense = np.ascontiguousarray(matrix, dtype=np.float32)
    if dense.ndim != 2 or dense.shape[1] == 0:
        raise FeaturizeError(f"cannot pack a matrix of shape {dense.shape}")
    buffer, step = dense.tobytes(), dense.shape[1] * 4
    return [(buffer[start:start + step], None) for start in range(0, len(buffer), step)]


def unpack(values: Sequence[bytes], indices: Sequence[bytes] | None, n_features: int) -> Matrix:
    """Assemble packed rows into one matrix: dense when indices is None, CSR otherwise."""
    # bytearray.join makes one writable buffer, so the matrix needs no further copy.
    data = np.frombuffer(bytearray().join(values), dtype=np.float32)
    if indices is None:
        return data.reshape(len(values), n_features)
    columns = np.frombuffer(bytearray().join(indices), dtype=np.int32)
    indptr = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values)) // 4, out=indptr[1:])
    if indptr[-1] < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)  # matches the int32 indices, so scipy keeps both without copying
    return sparse.csr_matrix((data, columns, indptr), shape=(len(values), n_features))
