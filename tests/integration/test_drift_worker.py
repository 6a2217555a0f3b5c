"""Drift through real processes: an import of shifted items → features → drift check at once → labels → a live retrain."""
import io
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from annotations.models import ImportJob
from annotations.imports.services import import_jobs_submit
from annotations.services import annotation_submit, queue_next
from learner.models import DriftCheck, LiveModel, TrainingRun
from learner.services.training import training_run_request
from tests.factories import MembershipFactory, UserFactory
from tests.integration.test_lifecycle_worker import wait_for
from tests.learner.conftest import labeled_blobs  # noqa: F401 (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _shifted_csv(n: int, seed: int) -> bytes:
    """Items of the same two classes moved up by 8.5 in x1: the live model (boundary x0 + x1 ≈ 0) calls
    every negative one positive, while x0 still tells the classes apart."""
    rng = np.random.default_rng(seed)
    rows = ["external_id,x0,x1"]
    for i in range(n):
        x0 = rng.normal(2.5 if i % 2 else -2.5, 1.0)
        rows.append(f"shifted-{i},{x0:.4f},{rng.normal(6.0, 1.0):.4f}")
    return ("\n".join(rows) + "\n").encode()


def test_an_import_of_shifted_items_is_checked_at_once_and_labels_on_them_retrain_a_live_model(
    celery_worker_process, labeled_blobs, manager  # noqa: F811
):
    project = labeled_blobs
    first = training_run_request(project_id=project.pk, trigger="manual", evidence={})
    wait_for(lambda: TrainingRun.objects.filter(pk=first.pk, status="promoted").exists(),
             what="the first model", worker=celery_worker_process)
    live = LiveModel.objects.get(project=project).version

    (job,) = import_jobs_submit(project=project, user=manager,
                                uploads=[("shifted.csv", io.BytesIO(_shifted_csv(120, 11)))], wait=True)
    assert job.created_count == 120

    def features_done() -> bool:
        job.refresh_from_db()
        return job.features_status == ImportJob.Status.DONE

    wait_for(features_done, what="the import's features", worker=celery_worker_process)
    stored_at = timezone.now()
    wait_for(lambda: DriftCheck.objects.filter(project=project).exists(), what="the drift check",
             worker=celery_worker_process)
    check = DriftCheck.objects.get(project=project)
    # Sent when the features were stored, not left to the hourly beat (which this test does not run).
    assert check.created_at <= stored_at + timedelta(minutes=1)
    assert check.drifted and check.model_version == live.number and check.evidence["recent_n"] == 120
    assert check.evidence["worst"]["psi"] >= project.drift_threshold
    # No label arrived since the first run: nothing new to learn from, so no retrain was asked for yet.
    assert check.evidence["retrain"] == f"none asked for: no new labels since run {first.pk}"
    assert TrainingRun.objects.filter(project=project).count() == 1

    # Experts label the shifted items; every 20 labels the count trigger asks for a retrain.
    project.retrain_every_n_labels = 20
    project.save()
    expert = UserFactory(username="drift-expert")
    MembershipFactory(project=project, user=expert, role="annotator")
    negative, positive = project.labels.order_by("order")[:2]
    for _ in range(60):
        lease = queue_next(project=project, user=expert)
        annotation_submit(lease_id=lease.pk, user=expert, label_id=(positive if lease.item.values[0] > 0 else negative).pk)

    def retrained() -> bool:
        runs = TrainingRun.objects.filter(project=project).exclude(pk=first.pk)
        return runs.exists() and not runs.filter(status__in=["queued", "running"]).exists()

    wait_for(retrained, what="the retrains on the new labels", worker=celery_worker_process, timeout=180)
    runs = list(TrainingRun.objects.filter(project=project).exclude(pk=first.pk).order_by("created_at"))
    assert all(run.status in ("promoted", "kept") for run in runs), [(r.status, r.error) for r in runs]
    # A live model known to be stale (drifted on its version) is replaced once labels on the new items exist.
    assert LiveModel.objects.get(project=project).version.number > live.number, [r.decision.get("reason") for r in runs]
