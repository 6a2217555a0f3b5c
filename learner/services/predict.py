"""Predictions for downstream services: featurize as training does, answer with the live model or an experiment's arm, log each."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from scipy import sparse

from annotations import services as annotation_services
from annotations.models import Project
from labelhub import rows
from labelhub.api import Conflict, DomainError
from labelhub.text import bad_character
from learner import selectors
from learner.ml.featurize import EmbeddingFeaturizer, Featurizer, FeaturizeError, ImageFeaturizer, TabularFeaturizer
from learner.ml.registry import PluginError, checked_transform
from learner.ml.training import proba_fast
from learner.models import Experiment, ModelVersion, PredictionLog
from learner.services.models import model_version_loaded
from learner.services.sources import items_features

CHAMPION, CHALLENGER = "champion", "challenger"
# The field of an input item that carries raw content, per project kind; a model trained on
# imported embeddings takes the vector in "embedding".
RAW_FIELD = {"text": "text", "tabular": "values", "image": "image"}
EMBEDDING_FIELD = "embedding"
# Built-in featurizers by feature space, built once per process (a hashing vectorizer, say).
_featurizers: dict[tuple[int, str], Featurizer] = {}


def client_arm(experiment: Experiment, client_id: int) -> str:
    """The arm a client is sent to in a split experiment: a hash of (experiment, client), so it sticks.

    The client is the authenticated user, never a value of the request: nobody chooses their arm.
    """
    digest = hashlib.sha256(f"{experiment.pk}:{int(client_id)}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return CHALLENGER if position < experiment.traffic_share else CHAMPION


NOT_FINITE = "values must be finite numbers (no NaN or infinity, within float32)."


def _bad(message: str, index: int | None = None) -> DomainError:
    return DomainError(message if index is None else f"items[{index}]: {message}")


def _model_featurizer(project: Project, version: ModelVersion) -> Featurizer:
    """The featurizer of the model's own feature space (the project's may have changed since it was trained)."""
    key = (project.pk, version.feature_space)  # a tabular space's columns are the project's own
    featurizer = _featurizers.get(key)
    if featurizer is None:
        try:
            featurizer = selectors.featurizer_of_space(project, version.feature_space)
        except (FeaturizeError, PluginError) as exc:
            raise Conflict(f"v{version.number} cannot predict: its features cannot be computed ({exc}).") from None
        if not featurizer.space.startswith("plugin:"):  # plugins are kept by the registry
            _featurizers[key] = featurizer
    return featurizer


def _embedding(raw: Any, featurizer: Featurizer, index: int) -> bytes:
    """An input vector as float32 bytes, checked: a list of finite numbers of the model's dimension."""
    if not isinstance(raw, list):
        raise _bad("embedding must be a list of numbers.", index)
    if len(raw) != featurizer.n_features:
        raise _bad(f"embedding has {len(raw)} numbers; the model takes {featurizer.n_features}.", index)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in raw):
        raise _bad("embedding must be a list of numbers.", index)
    with np.errstate(over="ignore"):
        try:
            vector = np.asarray(raw, dtype=np.float32)
        except OverflowError:
            raise _bad(NOT_FINITE, index) from None
    if not np.isfinite(vector).all():
        raise _bad(NOT_FINITE, index)
    return vector.tobytes()


def _raw_checked(project: Project, raw: Any, index: int, embedding_featurizer: Featurizer | None) -> Any:
    """One input item's raw content, checked for the project's kind (an embedding: made float32 bytes)."""
    if embedding_featurizer is not None:
        return _embedding(raw, embedding_featurizer, index)
    if project.kind == "text":
        if not isinstance(raw, str):
            raise _bad("text must be a string.", index)
        if len(raw) > settings.LABELHUB_TEXT_MAX_CHARS:
            raise _bad(f"text is longer than {settings.LABELHUB_TEXT_MAX_CHARS} characters.", index)
        bad = bad_character(raw)
        if bad is not None:
            raise _bad(f"text contains {bad}.", index)
    elif project.kind == "image":
        if not isinstance(raw, (bytes, bytearray)) and not callable(getattr(raw, "read", None)):
            # Never a string: PIL would open it as a path on this server.
            raise _bad("upload images as multipart files named 'image'.", index)
    elif project.kind == "tabular":
        if isinstance(raw, list):
            if len(raw) != len(project.feature_names):
                raise _bad(f"values has {len(raw)} numbers; this project has {len(project.feature_names)} features.",
                           index)
        elif not isinstance(raw, Mapping):
            raise _bad("values must be a list of numbers or an object of named numbers.", index)
        else:
            missing = [name for name in project.feature_names if name not in raw]
            if missing:
                raise _bad(f"values lack {', '.join(missing[:5])}.", index)
    return raw


def _featurize(
    project: Project, items: Sequence[Mapping[str, Any]], featurizer: Featurizer
) -> tuple[np.ndarray | sparse.csr_matrix, list[int | None]]:
    """Turn the input items into one feature matrix of ``featurizer`` in their order; item ids (or None) per row."""
    embeddings = isinstance(featurizer, EmbeddingFeaturizer)
    field = EMBEDDING_FIELD if embeddings else RAW_FIELD[project.kind]
    raws, raw_at, wanted, item_at = [], [], [], []
    item_ids: list[int | None] = []
    for index, entry in enumerate(items):
        # JSON objects arrive as dicts: a plain isinstance is much cheaper than the ABC check, per row.
        if not isinstance(entry, dict) and not isinstance(entry, Mapping):
            raise _bad("each item must be an object.", index)
        if "item_id" in entry:
            item_id = entry["item_id"]
            if isinstance(item_id, bool) or not isinstance(item_id, int) or not 0 < item_id < 2**63:
                raise _bad("item_id must be a positive integer.", index)
            wanted.append(item_id)
            item_at.append(index)
            item_ids.append(item_id)
            continue
        if field not in entry:
            raise _bad(f"give '{field}' or 'item_id' (this is a {project.kind} project).", index)
        raws.append(_raw_checked(project, entry[field], index, featurizer if embeddings else None))
        raw_at.append(index)
        item_ids.append(None)
    parts, order = [], []
    if raws:
        if embeddings or project.kind == "text":
            matrix = checked_transform(featurizer, raws)
        elif project.kind == "image":
            matrix = _image_features(raws, raw_at, featurizer)
        elif not isinstance(featurizer, TabularFeaturizer):
            matrix = checked_transform(
                featurizer, [[raw[name] for name in project.feature_names] if isinstance(raw, Mapping) else raw
                             for raw in raws]
            )
        else:
            try:
                with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values are refused just below
                    matrix = featurizer.transform(raws)
            except OverflowError:
                # An integer beyond any float (JSON has no limit, 10**400 parses): name the first row with one.
                raise _bad(NOT_FINITE, raw_at[_first_overflow(featurizer, raws)]) from None
            if not np.isfinite(matrix).all():
                bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
                raise _bad(NOT_FINITE, raw_at[bad])
        parts.append(matrix)
        order.extend(raw_at)
    if wanted:
        if featurizer.space == selectors.project_featurizer(project.pk).space:
            found, matrix = selectors.pool_matrix(project.pk, wanted)
        else:  # the pool's rows are another featurizer's: compute this model's from the items
            found, matrix = items_features(project, wanted, featurizer)
        missing = sorted(set(wanted) - set(found.tolist()))
        if missing:
            raise DomainError(f"Unknown item id(s) in this project, or items without features yet: {missing[:10]}.")
        position = np.searchsorted(found, np.asarray(wanted, dtype=np.int64))
        parts.append(matrix[position])
        order.extend(item_at)
    if len(parts) == 1 and order == sorted(order):
        return parts[0], item_ids
    stacked = sparse.vstack(parts, format="csr") if sparse.issparse(parts[0]) else np.vstack(parts)
    return stacked[np.argsort(order)], item_ids


def _first_overflow(featurizer: Any, raws: Sequence[Any]) -> int:
    """The index of the first raw row whose numbers do not fit a float (the batch failed with OverflowError)."""
    for index, raw in enumerate(raws):
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                featurizer.transform([raw])
        except OverflowError:
            return index
        except FeaturizeError:
            continue
    return 0


def _image_bytes(raw: bytes | bytearray | Any) -> bytes:
    """The bytes of an image given as bytes or as an uploaded file (read to at most one byte past the limit)."""
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    raw.seek(0)
    return raw.read(settings.LABELHUB_IMAGE_MAX_BYTES + 1)


def _image_features(raws: Sequence[Any], raw_at: Sequence[int], featurizer: Featurizer) -> np.ndarray:
    """Check every image as import does, from its header, before decoding any; then decode and featurize each.

    The request's images together may hold at most LABELHUB_PREDICT_MAX_PIXELS pixels, so that one
    request cannot keep a web process decoding for minutes. One image is decoded at a time.
    """
    budget, total = settings.LABELHUB_PREDICT_MAX_PIXELS, 0
    for raw, index in zip(raws, raw_at):
        try:
            total += annotation_services.image_check(_image_bytes(raw))
        except DomainError as exc:
            raise DomainError(f"image {index + 1}: {exc.message}") from None
        if total > budget:
            raise DomainError(
                f"The images of this request hold more than {budget:,} pixels together; send fewer or smaller images."
            )
    built_in = isinstance(featurizer, ImageFeaturizer)
    # A JPEG then decodes at a reduced scale (straight to luminance for the grey thumbnail): the
    # built-in features need 16 or 32 pixels a side. A plugin gets the image as it is, in RGB.
    mode = "L" if type(featurizer) is ImageFeaturizer else "RGB"
    draft = (mode, (featurizer.grid * 4, featurizer.grid * 4)) if built_in else None
    rows, images = [], []
    for raw, index in zip(raws, raw_at):
        try:
            image = annotation_services.image_decode(_image_bytes(raw), draft=draft)
        except DomainError as exc:
            raise DomainError(f"image {index + 1}: {exc.message}") from None
        with image:
            if built_in:
                rows.append(featurizer.row(image))
            else:
                images.append(image.convert("RGB"))
    return np.stack(rows) if built_in else checked_transform(featurizer, images)


def predict(
    *, project: Project, items: Sequence[Mapping[str, Any]], client_id: int
) -> list[dict[str, Any]]:
    """Predict the items with the version that serves this client (a user id); log and return the answers."""
    if not items:
        raise DomainError("Give at least one item.")
    if len(items) > settings.LABELHUB_PREDICT_MAX_BATCH:
        raise DomainError(f"A batch holds at most {settings.LABELHUB_PREDICT_MAX_BATCH} items.")
    target = selectors.predict_target(project.pk)
    if target.live is None:
        raise Conflict("No model is live in this project yet.")
    experiment, served, shadow, arm = target.experiment, target.live, None, ""
    if experiment is not None:
        if experiment.mode == Experiment.Mode.SHADOW:
            shadow, arm = target.challenger, CHAMPION
        else:
            arm = client_arm(experiment, client_id)
            if arm == CHALLENGER:
                served = target.challenger
    try:
        X, item_ids = _featurize(project, items, _model_featurizer(project, served))
        X_shadow = X
        if shadow is not None and shadow.feature_space != served.feature_space:
            X_shadow = _featurize(project, items, _model_featurizer(project, shadow))[0]
    except FeaturizeError as exc:
        raise DomainError(str(exc)) from None
    loaded = model_version_loaded(served)
    names = target.label_names
    # Only labels the project still has: one merged into another since the model was trained is never answered.
    classes = [c for c in loaded.classes if c in names]
    proba = proba_fast(loaded.pipeline, X, classes)
    best = proba.argmax(axis=1)
    label_ids = np.asarray(classes, dtype=np.int64)[best]
    confidences = proba[np.arange(len(best)), best]
    shadow_ids = None
    if shadow is not None:
        shadow_loaded = model_version_loaded(shadow)
        shadow_classes = [c for c in shadow_loaded.classes if c in names]
        shadow_ids = np.asarray(shadow_classes, dtype=np.int64)[
            proba_fast(shadow_loaded.pipeline, X_shadow, shadow_classes).argmax(axis=1)
        ]
    prediction_ids = predictions_log(
        project_id=project.pk, experiment_id=experiment.pk if experiment else None, version_id=served.pk, arm=arm,
        label_ids=label_ids.tolist(), confidences=confidences.tolist(),
        shadow_version_id=shadow.pk if shadow else None,
        shadow_label_ids=shadow_ids.tolist() if shadow_ids is not None else None,
        item_ids=item_ids, client_id=client_id,
    )
    class_names = [names[c] for c in classes]
    number = served.number
    return [
        {
            "prediction_id": pid, "label": class_names[b], "label_id": classes[b],
            "probabilities": dict(zip(class_names, row)), "model_version": number,
        }
        for pid, b, row in zip(prediction_ids, best.tolist(), np.round(proba, 6).tolist())
    ]


_LOG_COLUMNS = ("project_id", "experiment_id", "version_id", "arm", "label_id", "confidence", "shadow_version_id",
                "shadow_label_id", "item_id", "client_id", "outcome_source", "created_at")


def predictions_log(
    *, project_id: int, experiment_id: int | None, version_id: int, arm: str, label_ids: list[int],
    confidences: list[float], shadow_version_id: int | None, shadow_label_ids: list[int] | None,
    item_ids: list[int | None], client_id: int,
) -> list[int]:
    """Insert one PredictionLog row per prediction in one statement; return their ids in order."""
    n = len(label_ids)
    shadow_label_ids = shadow_label_ids if shadow_label_ids is not None else [None] * n
    if connection.vendor != "postgresql":
        created = PredictionLog.objects.bulk_create([
            PredictionLog(project_id=project_id, experiment_id=experiment_id, version_id=version_id, arm=arm,
                          label_id=label, confidence=confidence, shadow_version_id=shadow_version_id,
                          shadow_label_id=shadow_label, item_id=item_id, client_id=client_id)
            for label, confidence, shadow_label, item_id in zip(label_ids, confidences, shadow_label_ids, item_ids)
        ])
        return [row.pk for row in created]
    table = rows.qn(PredictionLog._meta.db_table)
    # One plain INSERT … SELECT over the arrays: the function scan yields rows in array order and
    # each row draws its id from the sequence as it is inserted, so this statement's ids rise in
    # input order and sorting the returned ids restores it (other sessions may only take ids in
    # between). The statement commits without waiting for the WAL flush (the InitPlan sets
    # synchronous_commit for this transaction only): a crash of PostgreSQL may lose the last
    # fraction of a second of prediction logs, never other data, and a request saves the disk's
    # sync time, which was most of a single prediction's latency.
    sql = (
        f"INSERT INTO {table} ({', '.join(_LOG_COLUMNS)})"
        " SELECT %s::bigint, %s::bigint, %s::bigint, %s::varchar, u.label_id, u.confidence, %s::bigint,"
        " u.shadow_label_id, u.item_id, %s::bigint, '', now()"
        " FROM unnest(%s::bigint[], %s::float8[], %s::bigint[], %s::bigint[])"
        " AS u(label_id, confidence, shadow_label_id, item_id)"
        " WHERE (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [project_id, experiment_id, version_id, arm, shadow_version_id, client_id,
                             _array(label_ids), _array(confidences), _array(shadow_label_ids), _array(item_ids)])
        return sorted(row[0] for row in cursor.fetchall())


def _array(values: Sequence[int | float | None]) -> str:
    """A PostgreSQL array literal of numbers: several times faster to build than the driver's list adaptation."""
    return "{" + ",".join("NULL" if v is None else repr(v) for v in values) + "}"
