"""The embedded default of `make run`: a worker on kombu's filesystem broker imports a file and puts a model live."""
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.models import ImportJob, Membership, Project, QueueScoring
from annotations.imports.services import import_jobs_submit
from labelhub.celery import app as celery_app
from learner.models import LiveModel, TrainingRun
from tests.factories import LabelFactory, MembershipFactory, ProjectFactory, UserFactory
from tests.integration.conftest import CeleryWorker, _stop, _worker_idle, _worker_start

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(condition: Callable[[], bool], *, what: str, worker: CeleryWorker, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; worker log:\n{worker.log_tail(6000)}")
        time.sleep(0.25)


def _broker_options(var_dir: Path) -> dict:
    """The filesystem broker's folders under ``var_dir``, laid out as labelhub/settings.py lays them under VAR_DIR."""
    broker = var_dir / "broker"
    for sub in ("queue", "processed", "control"):
        (broker / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(broker / "queue"), "data_folder_out": str(broker / "queue"),
        "processed_folder": str(broker / "processed"), "control_folder": str(broker / "control"),
        "store_processed": False,
    }


@pytest.fixture
def filesystem_worker(transactional_db, integration_storage, tmp_path, monkeypatch) -> Iterator[CeleryWorker]:
    """A worker on a filesystem broker of this test's own folder, as `make run` starts one; this process sends to it.

    Whatever broker the rest of the run uses, the messages of this test go through files alone. The
    worker's VAR_DIR is that folder (tests/settings.py takes it from LABELHUB_TEST_VAR_DIR); the database
    is the run's test database, an SQLite file on the SQLite pass.
    """
    var_dir = tmp_path / "var"
    options = _broker_options(var_dir)
    for key in ("broker_url", "broker_write_url", "broker_read_url"):
        monkeypatch.setitem(celery_app.conf, key, "filesystem://")
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", options)
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    worker = _worker_start(
        "pytest-filesystem", integration_storage, tmp_path / "worker.log",
        extra_env={"CELERY_BROKER_URL": "filesystem://", "LABELHUB_TEST_VAR_DIR": str(var_dir)},
    )
    try:
        yield worker
        # Follow-up tasks (the rescoring after a swap) finish before the test's rows are flushed.
        deadline = time.monotonic() + 120
        while not _worker_idle():
            if time.monotonic() > deadline:
                pytest.fail(f"the worker was still busy two minutes after the test:\n{worker.log_tail()}")
            time.sleep(0.2)
    finally:
        _stop(worker.process)
        celery_app._pool = None
        celery_app.amqp._producer_pool = None


def test_an_uploaded_file_is_imported_by_the_worker_and_an_experts_labels_put_a_first_model_live(
    filesystem_worker, manager
):
    project = ProjectFactory(name="Blobs", slug="blobs", kind=Project.Kind.TABULAR, retrain_every_n_labels=10)
    negative, positive = (LabelFactory(project=project, name=name, order=i) for i, name in enumerate(["no", "yes"]))
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    expert = UserFactory(username="newcomer")
    MembershipFactory(project=project, user=expert, role=Membership.Role.ANNOTATOR)
    rng = np.random.default_rng(17)
    rows = "".join(f"row-{i},{x0:.3f},{x1:.3f}\n" for i, (x0, x1) in enumerate(
        rng.normal(0.0, 1.0, size=(120, 2)) + np.where(np.arange(120) % 2, 2.5, -2.5)[:, None]
    ))

    # The upload is stored at once; the worker reads it, computes the features and seeds the queue.
    (job,) = import_jobs_submit(project=project, user=manager,
                                uploads=[("blobs.csv", io.BytesIO(("external_id,x0,x1\n" + rows).encode()))])

    def imported() -> bool:
        job.refresh_from_db()
        return job.status == ImportJob.Status.FAILED or (
            job.features_status == ImportJob.Status.DONE and QueueScoring.objects.filter(
                project=project, status=QueueScoring.Status.COMPLETE).exists())

    wait_for(imported, what="the import, its features and the seeded queue", worker=filesystem_worker)
    assert (job.status, job.created_count, job.features_done) == (ImportJob.Status.DONE, 120, 120), job.message

    # The expert labels through the API until the count trigger's retrain has put a first model live.
    client = APIClient()
    client.force_authenticate(expert)
    labeled = 0
    deadline = time.monotonic() + 180
    while not LiveModel.objects.filter(project=project, version__isnull=False).exists():
        if time.monotonic() > deadline or labeled == 120:
            pytest.fail(f"no model went live after {labeled} labels; worker log:\n{filesystem_worker.log_tail(6000)}")
        response = client.post(reverse("api-queue-next", args=[project.pk]), format="json")
        assert response.status_code == 200, response.content
        body = response.json()
        label = positive if body["item"]["values"][0] > 0 else negative
        submitted = client.post(reverse("api-lease-submit", args=[body["lease"]["id"]]), {"label": label.name},
                                format="json")
        assert submitted.status_code == 201, submitted.content
        labeled += 1
        time.sleep(0.1)  # an expert's pace, at which the retrain catches up

    live = LiveModel.objects.select_related("version").get(project=project).version
    run = TrainingRun.objects.get(pk=live.training_run_id)
    assert (run.trigger, run.status) == (TrainingRun.Trigger.COUNT, TrainingRun.Status.PROMOTED)
    wait_for(lambda: QueueScoring.objects.filter(project=project, model_version=live.number,
                                                 status=QueueScoring.Status.COMPLETE).exists(),
             what="the pool rescored by the live model", worker=filesystem_worker)
    # Every message went through the filesystem broker's folders.
    assert "transport:   filesystem://" in filesystem_worker.log_tail(200_000)
