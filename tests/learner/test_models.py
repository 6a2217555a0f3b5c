"""Model versions: artifacts under versioned names, loading with a hash check, the live pointer and swaps."""
import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from labelhub.api import DomainError
from learner.ml.training import fit
from learner.models import LiveModel, ModelVersion, SwapHistory
from learner.selectors import model_version_live
from learner.services import models as model_services
from learner.services.models import (
    ArtifactError,
    model_version_create,
    model_version_loaded,
    model_version_promote,
)


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Start each test with no loaded models: a rolled-back test's version ids can come again (SQLite)."""
    model_services._cache.clear()


def pipeline(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3))
    return fit("tabular", X, (X[:, 0] > 0).astype(int))


def create(project, seed: int = 0) -> ModelVersion:
    labels = list(project.labels.order_by("order"))[:2]
    return model_version_create(
        project=project, pipeline=pipeline(seed), classes=[label.pk for label in labels],
        feature_space="tabular-v1:3", algorithm="logistic regression", hyperparameters={},
        label_snapshot_hash="snapshot", labels_used=40,
    )


def test_versions_are_numbered_and_stored_under_their_own_names(tabular_project):
    first, second = create(tabular_project), create(tabular_project, seed=1)

    assert (first.number, second.number) == (1, 2)
    assert first.artifact_name.startswith(f"project-{tabular_project.pk}/v0001-")
    assert second.artifact_name.startswith(f"project-{tabular_project.pk}/v0002-")
    assert first.artifact_sha256[:16] in first.artifact_name
    assert storages["models"].exists(first.artifact_name) and storages["models"].exists(second.artifact_name)


def test_an_existing_file_is_never_overwritten(tabular_project, monkeypatch):
    storage = storages["models"]
    real_create = ModelVersion.objects.create

    def fail(**kwargs):
        raise RuntimeError("database went away")

    # A failed create leaves its file behind and its number unused: the next version gets the same number.
    monkeypatch.setattr(ModelVersion.objects, "create", fail)
    with pytest.raises(RuntimeError):
        create(tabular_project)
    (leftover,) = storage.listdir(f"project-{tabular_project.pk}")[1]
    before = storage.open(f"project-{tabular_project.pk}/{leftover}").read()
    monkeypatch.setattr(ModelVersion.objects, "create", real_create)

    version = create(tabular_project, seed=1)

    assert version.number == 1
    assert version.artifact_name != f"project-{tabular_project.pk}/{leftover}"
    assert storage.open(f"project-{tabular_project.pk}/{leftover}").read() == before
    assert model_version_loaded(version).number == 1


def test_loading_refuses_a_file_whose_hash_does_not_match(tabular_project):
    version = create(tabular_project)
    storage = storages["models"]
    payload = storage.open(version.artifact_name).read()
    storage.delete(version.artifact_name)
    storage.save(version.artifact_name, ContentFile(payload[:-1] + bytes([payload[-1] ^ 1])))

    with pytest.raises(ArtifactError, match="does not match its recorded sha256"):
        model_version_loaded(version)


def test_loading_a_missing_file_is_an_artifact_error(tabular_project):
    version = create(tabular_project)
    storages["models"].delete(version.artifact_name)

    with pytest.raises(ArtifactError, match="missing"):
        model_version_loaded(version)


def test_a_loaded_version_is_kept_by_the_process(tabular_project):
    version = create(tabular_project)
    loaded = model_version_loaded(version)
    storages["models"].delete(version.artifact_name)  # a second load would fail if it read the file

    again = model_version_loaded(version)

    assert again is loaded
    assert again.classes == tuple(version.classes)
    X = np.random.default_rng(2).normal(size=(5, 3))
    assert np.allclose(loaded.pipeline.predict_proba(X), pipeline().predict_proba(X))


def test_the_cache_keeps_only_the_most_recently_used_versions(tabular_project, monkeypatch):
    monkeypatch.setattr(model_services, "_CACHE_SIZE", 2)
    monkeypatch.setattr(model_services, "_cache", type(model_services._cache)())
    first, second, third = (create(tabular_project, seed=s) for s in range(3))

    for version in (first, second, first, third):
        model_version_loaded(version)

    assert [version_id for version_id, _ in model_services._cache] == [first.pk, third.pk]


def test_promotion_moves_the_pointer_writes_history_and_rescores_after_commit(
    tabular_project, manager, sent_tasks, django_capture_on_commit_callbacks
):
    first, second = create(tabular_project), create(tabular_project, seed=1)
    assert model_version_live(tabular_project.pk) is None

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        model_version_promote(first, reason="first model", trigger="manual", actor=manager)
        assert sent_tasks == []  # not before commit
    model_version_promote(second, reason="better on audit")

    assert len(callbacks) == 1 and sent_tasks == [("learner.score_pool", [tabular_project.pk])]
    assert model_version_live(tabular_project.pk) == second
    assert dict(ModelVersion.objects.values_list("number", "status")) == {1: "retired", 2: "live"}
    history = list(SwapHistory.objects.order_by("created_at").values_list("from_version", "to_version", "reason"))
    assert history == [(None, first.pk, "first model"), (first.pk, second.pk, "better on audit")]


def test_a_failed_swap_leaves_the_live_model_and_sends_nothing(
    tabular_project, sent_tasks, monkeypatch, django_capture_on_commit_callbacks
):
    first, second = create(tabular_project), create(tabular_project, seed=1)
    with django_capture_on_commit_callbacks(execute=True):
        model_version_promote(first, reason="first model")
    sent_tasks.clear()

    def fail(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(SwapHistory.objects, "create", fail)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        model_version_promote(second, reason="better")

    assert LiveModel.objects.get(project=tabular_project).version == first
    assert dict(ModelVersion.objects.values_list("number", "status")) == {1: "live", 2: "candidate"}
    assert SwapHistory.objects.count() == 1
    assert sent_tasks == []


def test_promoting_the_live_version_again_is_refused(tabular_project, sent_tasks):
    version = create(tabular_project)
    model_version_promote(version, reason="first")

    with pytest.raises(DomainError, match="already live"):
        model_version_promote(version, reason="again")

    assert SwapHistory.objects.count() == 1
