"""Model versions: artifacts through the storage API, loading with a hash check, the live pointer and swaps."""
from __future__ import annotations

import functools
import hashlib
import logging
import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Max

from annotations.models import Project
from labelhub.api import DomainError
from labelhub.celery import TaskName, send_task_on_commit
from learner.models import LiveModel, ModelVersion, SwapHistory

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

_CACHE_SIZE = 8
MANAGER_PROMOTED = "Promoted by a manager"  # how a promotion by hand begins (SwapHistory.promoter reads it)


class ArtifactError(RuntimeError):
    """A stored model file is missing, altered, or holds types that are not trusted."""


@dataclass(frozen=True)
class LoadedModel:
    """A fitted pipeline with the version it belongs to; one request uses one of these throughout."""

    version_id: int
    number: int
    classes: tuple[int, ...]
    pipeline: Pipeline


def _storage():
    return storages["models"]


def model_version_create(
    *,
    project: Project,
    pipeline: Pipeline,
    classes: list[int],
    feature_space: str,
    algorithm: str,
    hyperparameters: dict,
    label_snapshot_hash: str,
    labels_used: int,
    metrics: dict | None = None,
    training_run_id: int | None = None,
    code_version: str = "",
    query_strategy: str = "",
) -> ModelVersion:
    """Store a fitted pipeline under a new, never-overwritten name and record it as a candidate."""
    import skops.io as sio  # with scikit-learn: only where a model is written or read

    payload = sio.dumps(pipeline)
    sha = hashlib.sha256(payload).hexdigest()
    with transaction.atomic():
        # The project row lock serialises version numbers.
        Project.objects.select_for_update().only("pk").get(pk=project.pk)
        number = (project.model_versions.aggregate(n=Max("number"))["n"] or 0) + 1
        name = _storage().save(f"project-{project.pk}/v{number:04d}-{sha[:16]}.skops", ContentFile(payload))
        return ModelVersion.objects.create(
            project=project, number=number, algorithm=algorithm, hyperparameters=hyperparameters,
            feature_space=feature_space, classes=classes, artifact_name=name, artifact_sha256=sha,
            label_snapshot_hash=label_snapshot_hash, labels_used=labels_used, metrics=metrics or {},
            training_run_id=training_run_id, code_version=code_version,
            query_strategy=query_strategy,
        )


@functools.cache
def code_version() -> str:
    """The code that trains models, for lineage: the setting, else `git describe` of the checkout, else the package version.

    Read once per process: a worker keeps running the code it started with, whatever happens
    to the checkout afterwards.
    """
    if settings.LABELHUB_CODE_VERSION:
        return settings.LABELHUB_CODE_VERSION[:64]
    try:
        described = subprocess.run(
            ["git", "describe", "--tags", "--always", "--dirty"], cwd=settings.BASE_DIR,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        described = ""  # no git or no checkout (a container image): the package version says enough
    if described:
        return f"git {described}"[:64]
    from labelhub import __version__

    return f"labelhub {__version__}"


def storage_delete(names: list[str]) -> None:
    """Delete these model files; one that cannot be deleted is logged and left (its version is marked anyway)."""
    storage = _storage()
    for name in names:
        try:
            storage.delete(name)
        except OSError:
            logger.warning("Could not delete model file %s", name, exc_info=True)


def _removed_message(version: ModelVersion) -> str:
    return (f"v{version.number}'s model file was removed by retention on {version.artifact_removed_at:%Y-%m-%d %H:%M}; "
            "its record stays, but a model must be retrained to serve again.")


def _load(version: ModelVersion) -> Pipeline:
    if version.artifact_removed_at is not None:
        raise ArtifactError(_removed_message(version))
    try:
        with _storage().open(version.artifact_name, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError as exc:
        raise ArtifactError(f"model file {version.artifact_name} is missing") from exc
    if hashlib.sha256(payload).hexdigest() != version.artifact_sha256:
        raise ArtifactError(f"model file {version.artifact_name} does not match its recorded sha256")
    import skops.io as sio

    found = sio.get_untrusted_types(data=payload)
    untrusted = [name for name in found if name not in SKLEARN_PARTS]
    if untrusted:
        # skops trusts scikit-learn's and numpy's public types, and we the parts listed; anything
        # else was not written by us.
        raise ArtifactError(f"model file {version.artifact_name} holds untrusted types: {', '.join(untrusted)}")
    return sio.loads(payload, trusted=[name for name in found if name in SKLEARN_PARTS])


# The private scikit-learn types inside the models that learner.ml.training builds (the calibrated
# SVM's per-class calibrators, the trees of gradient boosting and random forests), which skops
# does not trust by default. skops warns that a crafted tree's node indices can crash predict; a
# file is loaded only if its sha256 is the one recorded when this process's code wrote it, so an
# altered file never reaches them.
SKLEARN_PARTS = frozenset({
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.tree._tree.Tree",
})


# Keyed by id and hash: SQLite may reuse a deleted version's id, a hash cannot lie.
_cache: OrderedDict[tuple[int, str], LoadedModel] = OrderedDict()
_cache_lock = threading.Lock()


def model_version_loaded(version: ModelVersion) -> LoadedModel:
    """Return the version's pipeline, loaded once per process and kept in a small LRU cache."""
    key = (version.pk, version.artifact_sha256)
    with _cache_lock:
        loaded = _cache.get(key)
        if loaded is not None:
            _cache.move_to_end(key)
            return loaded
    loaded = LoadedModel(version.pk, version.number, tuple(version.classes), _load(version))
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def model_version_promote(
    version: ModelVersion, *, reason: str, trigger: str = "", actor: AbstractBaseUser | None = None
) -> SwapHistory:
    """Make the version live: move the pointer and append history in one transaction, then rescore."""
    with transaction.atomic():
        live, _ = LiveModel.objects.select_for_update().get_or_create(project_id=version.project_id)
        if live.version_id == version.pk:
            raise DomainError(f"Version {version.number} is already live.")
        if ModelVersion.objects.filter(pk=version.pk, artifact_removed_at__isnull=False).exists():
            # Checked under the live pointer's lock, which retention takes too.
            raise DomainError(_removed_message(ModelVersion.objects.get(pk=version.pk)))
        previous = live.version
        live.version = version
        live.save(update_fields=["version", "changed_at"])
        if previous is not None:
            ModelVersion.objects.filter(pk=previous.pk).update(status=ModelVersion.Status.RETIRED)
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.LIVE)
        history = SwapHistory.objects.create(
            project_id=version.project_id, from_version=previous, to_version=version,
            reason=reason, trigger=trigger, actor=actor,
        )
        send_task_on_commit(TaskName.SCORE_POOL, [version.project_id])
    return history


def model_version_rollback(*, version: ModelVersion, actor: AbstractBaseUser, reason: str = "") -> SwapHistory:
    """Make an earlier live version live again; recorded like any swap."""
    if version.status == ModelVersion.Status.LIVE:
        raise DomainError(f"Version {version.number} is already live.")
    if version.status != ModelVersion.Status.RETIRED:
        raise DomainError(
            f"Version {version.number} was never live, so there is nothing to roll back to; "
            "a manager can promote it with a reason instead."
        )
    return model_version_promote(
        version, reason=reason or f"Rolled back to v{version.number}.", trigger="rollback", actor=actor
    )


def model_version_force_promote(*, version: ModelVersion, actor: AbstractBaseUser, reason: str) -> SwapHistory:
    """A manager promotes a version the gate did not, and says why."""
    if not reason.strip():
        raise DomainError("Say why you promote a version the gate did not promote: a reason is required.")
    return model_version_promote(version, reason=f"{MANAGER_PROMOTED}: {reason.strip()}", trigger="manual", actor=actor)
