"""Model file retention: old versions lose their files, keep their records, and cannot be made live again."""
from datetime import timedelta

import pytest
from django.core.files.storage import storages
from django.utils import timezone

from labelhub.api import DomainError
from learner.models import ModelVersion, SwapHistory, TrainingRun
from learner.services import models as model_services
from learner.services.models import (
    ArtifactError,
    model_version_force_promote,
    model_version_loaded,
    model_version_promote,
    model_version_rollback,
)
from learner.services.retention import model_files_prune
from learner.services.training import training_run_execute, training_run_request
from tests.learner.test_models import create


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    model_services._cache.clear()


def _versions(project, n: int) -> list[ModelVersion]:
    """n versions, each made live in turn by the gate."""
    versions = []
    for seed in range(n):
        version = create(project, seed=seed)
        model_version_promote(version, reason="Promoted: not worse.", trigger="count")
        versions.append(version)
    for version in versions:
        version.refresh_from_db()
    return versions


def _has_file(version: ModelVersion) -> bool:
    version.refresh_from_db()
    return version.artifact_removed_at is None and storages["models"].exists(version.artifact_name)


def test_old_versions_lose_their_files_but_keep_their_records(
    tabular_project, manager, django_capture_on_commit_callbacks
):
    versions = _versions(tabular_project, 20)  # v20 live
    with django_capture_on_commit_callbacks(execute=True):
        removed = model_files_prune(tabular_project.pk, keep=5)

    # Kept: v20 (live), the newest five (v16–v20), the five live before v20 (v15–v19).
    assert removed == list(range(1, 15))
    assert [v.number for v in versions if _has_file(v)] == list(range(15, 21))
    gone = versions[0]
    assert not storages["models"].exists(gone.artifact_name)
    assert gone.metrics == {} and ModelVersion.objects.filter(pk=gone.pk, labels_used=40).exists()
    assert SwapHistory.objects.filter(to_version=gone).exists()

    # A removed file cannot be loaded, rolled back to, or promoted: the message says why.
    with pytest.raises(ArtifactError, match="removed by retention"):
        model_version_loaded(gone)
    with pytest.raises(DomainError, match="v1's model file was removed by retention"):
        model_version_rollback(version=gone, actor=manager)
    with pytest.raises(DomainError, match="removed by retention"):
        model_version_force_promote(version=versions[2], actor=manager, reason="I liked it")
    # A kept one still can.
    model_version_rollback(version=versions[15], actor=manager)
    assert model_version_loaded(versions[15]).number == 16
    # Nothing more goes on a second pass with nothing new.
    assert model_files_prune(tabular_project.pk, keep=5) == []


def test_what_a_manager_chose_and_each_day_s_last_live_version_are_kept(tabular_project, manager):
    versions = _versions(tabular_project, 6)
    model_version_rollback(version=versions[1], actor=manager, reason="v6 misbehaves")  # v2 by hand
    later = _versions(tabular_project, 12)  # v7–v18
    # v4 was the last live version of a day three days ago, v5 was live after it on another day.
    now = timezone.now()
    swaps = SwapHistory.objects.filter(project=tabular_project, trigger="count")
    swaps.filter(to_version__number__lte=4).update(created_at=now - timedelta(days=3))
    swaps.filter(to_version__number=5).update(created_at=now - timedelta(days=2))
    model_files_prune(tabular_project.pk, keep=3)

    kept = [v.number for v in versions + later if _has_file(v)]
    # v2 (rolled back to by hand), v4 and v5 (each the last of its day), v15–v18 (newest and latest live).
    assert kept == [2, 4, 5, 15, 16, 17, 18]


def test_both_versions_of_a_running_experiment_keep_their_files(tabular_project, manager):
    from learner.services.experiments import experiment_start

    versions = _versions(tabular_project, 3)  # v3 live
    challenger = create(tabular_project, seed=9)  # v4, never live
    experiment_start(project=tabular_project, user=manager, challenger_number=challenger.number, mode="shadow")
    _versions(tabular_project, 8)  # v5–v12, the last one live
    model_files_prune(tabular_project.pk, keep=2)

    assert _has_file(challenger) and _has_file(versions[2])  # v3 was the champion when the experiment started
    assert not _has_file(versions[0])
    with pytest.raises(DomainError, match="Version 1's model file was removed by retention"):
        experiment_start(project=tabular_project, user=manager, challenger_number=1, mode="shadow")


def test_each_training_run_removes_what_is_no_longer_kept(labeled_blobs, settings):
    settings.LABELHUB_MODEL_FILES_KEPT = 2
    for _ in range(5):
        run = training_run_request(project_id=labeled_blobs.pk, trigger=TrainingRun.Trigger.MANUAL, evidence={})
        training_run_execute(run.pk)
    versions = ModelVersion.objects.filter(project=labeled_blobs)
    assert versions.count() == 5
    assert versions.filter(artifact_removed_at__isnull=True).count() <= 3
    live = versions.get(status=ModelVersion.Status.LIVE)
    assert live.artifact_removed_at is None and storages["models"].exists(live.artifact_name)


def test_a_version_without_its_file_says_so_and_offers_no_swap(client, tabular_project, manager):
    from django.urls import reverse

    versions = _versions(tabular_project, 6)
    model_files_prune(tabular_project.pk, keep=2)
    client.force_login(manager)
    page = client.get(reverse("model-version-detail", args=[tabular_project.pk, 1])).content.decode()
    assert "Model file removed by retention" in page and "Roll back to v1" not in page
    kept = client.get(reverse("model-version-detail", args=[tabular_project.pk, 5])).content.decode()
    assert "Roll back to v5" in kept and "removed by retention" not in kept
    api = client.get(reverse("api-model-versions", args=[tabular_project.pk])).json()
    listing = {v["number"]: v for v in api["versions"]}
    assert listing[1]["artifact_removed_at"] is not None and listing[6]["artifact_removed_at"] is None
    # A hand-made request is refused with the reason, and nothing moves.
    response = client.post(reverse("model-version-rollback", args=[tabular_project.pk, 1]), follow=True)
    assert "removed by retention" in response.content.decode()
    versions[5].refresh_from_db()
    assert versions[5].status == ModelVersion.Status.LIVE
