"""Featurizer plugins registered by tests (LABELHUB_FEATURIZER_PLUGINS), as a team would register their own."""
import numpy as np

WORDS = ("good", "great", "love", "fine", "bad", "awful", "hate", "poor")


class WordCounts:
    """A text featurizer: how often each of eight sentiment words occurs, plus the text's length in words."""

    kinds = ("text",)
    version = "2"
    n_features = len(WORDS) + 1
    sparse = False

    def transform(self, texts):
        rows = []
        for text in texts:
            words = text.lower().split()
            rows.append([words.count(word) for word in WORDS] + [len(words) / 10])
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.n_features)


class Broken:
    """A plugin whose model cannot run: every call raises."""

    kinds = ("text",)
    version = "1"
    n_features = 4

    def transform(self, texts):
        raise RuntimeError("the encoder's weights are missing")


class WrongShape:
    """A plugin that answers three numbers per text although it declares four."""

    kinds = ("text",)
    version = "1"
    n_features = 4

    def transform(self, texts):
        return np.zeros((len(texts), 3), dtype=np.float32)


class MeanColour:
    """An image featurizer: each image's mean red, green and blue, and its aspect ratio."""

    kinds = ("image",)
    version = "1"
    n_features = 4
    calls: list[int] = []  # how many images each call got

    def transform(self, images):
        MeanColour.calls.append(len(images))
        rows = [[*np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(axis=0) / 255, image.width / image.height]
                for image in images]
        return np.asarray(rows, dtype=np.float32).reshape(len(images), self.n_features)
