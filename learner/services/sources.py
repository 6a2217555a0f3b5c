"""Features computed from the items' stored sources (text, image files, values, embeddings) by a given featurizer."""
import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import sparse

from annotations.models import Item, ItemEmbedding, Project
from learner.ml.featurize import (
    EmbeddingFeaturizer,
    Featurizer,
    FeaturizeError,
    ImageFeaturizer,
    Matrix,
    TabularFeaturizer,
)
from learner.ml.registry import checked_transform

logger = logging.getLogger(__name__)

# Images handed to a plugin at a time: each is decoded at full size.
PLUGIN_IMAGE_BATCH = 32
# The Item field each project kind's featurizers read (embeddings: the item's ItemEmbedding).
SOURCE_FIELD = {"text": "text", "image": "image", "tabular": "values"}


def items_features(project: Project, item_ids: Sequence[int], featurizer: Featurizer) -> tuple[np.ndarray, Matrix]:
    """Compute (not store) the features of these items by ``featurizer``: the ids that got a row, in id order, and the rows.

    For a model of another feature space than the pool's (the featurizer changed since it was
    trained): its audit comparison and its predictions of stored items.
    """
    pending = list(
        Item.objects.filter(project=project, pk__in=list(item_ids))
        .order_by("pk")
        .values_list("pk", SOURCE_FIELD[project.kind])
    )
    if not pending:
        return np.empty(0, dtype=np.int64), checked_transform(featurizer, [])
    ids, matrix = source_features(featurizer, project.kind, pending, project.feature_names)
    return np.asarray(ids, dtype=np.int64), matrix


def source_features(
    featurizer: Featurizer, kind: str, pending: Sequence[tuple[int, object]], feature_names: Sequence[str] = ()
) -> tuple[list[int], object]:
    """Features of (item id, stored source) pairs: the ids that got a row, and the matrix of those rows.

    Built-in image featurizers skip an image that no longer reads (logged); a plugin gets decoded
    images and must answer for each. Embedding featurizers read the items' vectors (items without
    one get no row). Raises FeaturizeError when the featurizer fails or answers with a wrong shape.
    """
    if isinstance(featurizer, EmbeddingFeaturizer):
        vectors = dict(ItemEmbedding.objects.filter(item_id__in=[pk for pk, _ in pending]).values_list("item_id", "vector"))
        ids = [pk for pk, _ in pending if pk in vectors]
        return ids, checked_transform(featurizer, [bytes(vectors[pk]) for pk in ids])
    if kind == "image" and isinstance(featurizer, ImageFeaturizer):
        return _image_rows(featurizer, pending)
    if kind == "image":
        return _plugin_image_rows(featurizer, pending)
    if kind == "tabular" and not isinstance(featurizer, TabularFeaturizer):
        # A plugin gets each row's numbers in the project's column order.
        raws = [[raw[name] for name in feature_names] if isinstance(raw, dict) else raw for _, raw in pending]
        return [pk for pk, _ in pending], checked_transform(featurizer, raws)
    return [pk for pk, _ in pending], checked_transform(featurizer, [raw for _, raw in pending])


def _plugin_image_rows(featurizer: Featurizer, pending: Sequence[tuple[int, str]]) -> tuple[list[int], Matrix]:
    """A plugin's features of stored images, given as decoded RGB images, PLUGIN_IMAGE_BATCH at a time (a chunk
    of full-size photos decoded at once would not fit in memory); unreadable files are skipped (logged)."""
    storage = Item._meta.get_field("image").storage
    stored_ids, parts = [], []
    for start in range(0, len(pending), PLUGIN_IMAGE_BATCH):
        images = []
        for pk, name in pending[start:start + PLUGIN_IMAGE_BATCH]:
            try:
                with storage.open(name, "rb") as file, Image.open(file) as image:
                    images.append(image.convert("RGB"))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                logger.warning("Item %s gets no features: image %r cannot be read (%s)", pk, name, exc)
                continue
            stored_ids.append(pk)
        parts.append(checked_transform(featurizer, images))
    if not parts:
        return stored_ids, checked_transform(featurizer, [])
    return stored_ids, sparse.vstack(parts, format="csr") if featurizer.sparse else np.vstack(parts)


def _image_rows(featurizer: ImageFeaturizer, pending: Sequence[tuple[int, str]]) -> tuple[list[int], np.ndarray]:
    storage = Item._meta.get_field("image").storage
    stored_ids, rows = [], []
    for pk, name in pending:
        try:
            with storage.open(name, "rb") as file:
                rows.append(featurizer.row(file))
        except (OSError, FeaturizeError) as exc:
            # Import validated every image, so this one was lost or damaged since; one bad file
            # must not cost the other items of the chunk their features.
            logger.warning("Item %s gets no features: image %r cannot be read (%s)", pk, name, exc)
            continue
        stored_ids.append(pk)
    return stored_ids, np.array(rows, dtype=np.float32).reshape(len(rows), featurizer.n_features)

