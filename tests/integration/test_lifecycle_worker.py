"""The loop through real processes: labels → count trigger → train → gate → swap → rescored pool."""
import time
from collections.abc import Callable

import pytest

from annotations.models import Annotation, QueueScoring
from annotations.services import annotation_submit, queue_next
from labelhub.celery import app as celery_app
from learner.models import LiveModel, TrainingRun
from tests.factories import MembershipFactory, UserFactory
from tests.learner.conftest import blob_items, labeled_blobs  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(condition: Callable[[], bool], *, what: str, worker, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; worker log:\n{worker.log_tail(6000)}")
        time.sleep(0.25)


@pytest.fixture
def expert_on_pool(labeled_blobs):  # noqa: F811
    """An annotator on the blob project, with 40 unlabeled items in its pool."""
    import numpy as np

    blob_items(labeled_blobs, np.random.default_rng(3), 40)
    expert = UserFactory(username="loop-expert")
    MembershipFactory(project=labeled_blobs, user=expert, role="annotator")
    labeled_blobs.retrain_every_n_labels = 5
    labeled_blobs.save()
    return labeled_blobs, expert


def _label(project, expert, n: int) -> None:
    negative, positive = project.labels.order_by("order")[:2]
    for _ in range(n):
        lease = queue_next(project=project, user=expert)
        x0 = lease.item.values[0]
        annotation_submit(lease_id=lease.pk, user=expert, label_id=(positive if x0 > 0 else negative).pk)


def test_labels_trigger_a_retrain_that_swaps_the_live_model_and_rescores_the_pool(
    celery_worker_process, expert_on_pool
):
    project, expert = expert_on_pool
    _label(project, expert, 5)

    def swapped_and_rescored() -> bool:
        live = LiveModel.objects.filter(project=project, version__isnull=False).first()
        return live is not None and QueueScoring.objects.filter(
            project=project, model_version=live.version.number, status="complete"
        ).exists()

    wait_for(swapped_and_rescored, what="retrain, swap and rescoring", worker=celery_worker_process)
    run = TrainingRun.objects.get(project=project)
    assert run.trigger == "count" and run.status == "promoted" and run.evidence["new_labels"] >= 5
    assert LiveModel.objects.get(project=project).version.training_run_id == run.pk


def test_labels_stored_while_the_broker_is_down_trigger_once_it_is_back(
    celery_worker_process, expert_on_pool, monkeypatch
):
    project, expert = expert_on_pool
    # Point the web side at a broker nobody listens on, as if Redis were down.
    for key in ("broker_url", "broker_write_url"):
        monkeypatch.setitem(celery_app.conf, key, "redis://127.0.0.1:1/0")
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    _label(project, expert, 5)
    assert Annotation.objects.filter(annotator=expert).count() == 5  # every label stored
    assert not TrainingRun.objects.filter(project=project).exists()

    monkeypatch.undo()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    celery_app.send_task("learner.triggers_check")  # what beat sends every minute

    def promoted() -> bool:
        return TrainingRun.objects.filter(project=project, trigger="count", status="promoted").exists()

    wait_for(promoted, what="the reconciled count trigger's run", worker=celery_worker_process)
    assert TrainingRun.objects.filter(project=project).count() == 1
