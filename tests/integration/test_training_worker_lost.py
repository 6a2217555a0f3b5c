"""A worker process killed mid-training (as the OOM killer would) leaves the live model and its history alone."""
import hashlib
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from annotations.models import Annotation, Item, Project, QueueScoring
from learner.models import LiveModel, ModelVersion, SwapHistory, TrainingRun
from learner.services.features import features_compute_chunk
from learner.services.training import training_run_request
from tests.factories import LabelFactory, MembershipFactory, ProjectFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A tabular project of realistic size: fitting its 12,000 labeled rows takes the worker seconds.
N_FEATURES, N_CLASSES, N_ITEMS, FIRST_LABELS = 48, 10, 12_000, 1_000
FEATURE_CHUNK = 4_000


def wait_for(condition: Callable[[], bool], *, what: str, worker, timeout: float = 30.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; worker log:\n{worker.log_tail(6000)}")
        time.sleep(every)


def pool_children(pid: int) -> set[int]:
    """The worker's child processes (its prefork pool), from /proc."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children.update(int(child) for child in (task / "children").read_text().split())
    return children


def run_decided(run: TrainingRun) -> Callable[[], bool]:
    def decided() -> bool:
        run.refresh_from_db()
        return run.status not in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)

    return decided


@pytest.fixture
def large_project(celery_worker_process, manager):
    """A tabular project with a live v1 (trained by the worker on its first labels) and 12,000 labeled items in all."""
    project = ProjectFactory(
        kind=Project.Kind.TABULAR, feature_names=[f"x{j}" for j in range(N_FEATURES)], retrain_every_n_labels=0,
    )
    labels = [LabelFactory(project=project, name=f"class_{k}", order=k) for k in range(N_CLASSES)]
    MembershipFactory(project=project, user=manager, role="manager")
    rng = np.random.default_rng(11)
    # Overlapping classes, so that the solver needs many iterations, as on real data.
    centres = rng.normal(0.0, 1.0, size=(N_CLASSES, N_FEATURES))
    y = rng.integers(0, N_CLASSES, size=N_ITEMS)
    X = centres[y] + rng.normal(0.0, 2.0, size=(N_ITEMS, N_FEATURES))
    items = Item.objects.bulk_create(
        Item(project=project, external_id=f"row-{i}", values=[round(float(v), 3) for v in row], text="",
             content_hash=hashlib.sha256(f"row-{i}".encode()).hexdigest())
        for i, row in enumerate(X)
    )
    ids = [item.pk for item in items]
    for start in range(0, N_ITEMS, FEATURE_CHUNK):
        features_compute_chunk(project.pk, ids[start:start + FEATURE_CHUNK])

    def label(rows: range) -> None:
        Annotation.objects.bulk_create(
            Annotation(item_id=ids[i], annotator=manager, label=labels[y[i]], is_audit=i % 10 == 0) for i in rows
        )

    label(range(FIRST_LABELS))
    first = training_run_request(project_id=project.pk, trigger="manual", evidence={})
    wait_for(run_decided(first), what="the first model", worker=celery_worker_process, every=0.2)
    assert first.status == TrainingRun.Status.PROMOTED, first.decision or first.error
    label(range(FIRST_LABELS, N_ITEMS))  # the project grew: the next retrain fits twelve times the rows
    return project


def trains_received(worker) -> int:
    """How many training messages the worker's main process has logged receiving."""
    return len(re.findall(r"Task learner\.train_run\[[^\]]+\] received", worker.log_path.read_text(errors="replace")))


def test_a_pool_process_killed_mid_training_fails_the_run_and_keeps_the_live_model(
    celery_worker_process, second_celery_worker, large_project
):
    project, workers = large_project, (celery_worker_process, second_celery_worker)
    live_before = LiveModel.objects.get(project=project).version_id
    history_before = list(SwapHistory.objects.filter(project=project).values_list("pk", flat=True))
    log_before = [trains_received(worker) for worker in workers]

    run = training_run_request(project_id=project.pk, trigger="manual", evidence={"by": "test"})

    def training() -> bool:
        run.refresh_from_db()
        return run.status == TrainingRun.Status.RUNNING and run.stage == "train"

    wait_for(training, what="the run to start training", worker=workers[0])
    # The worker whose log shows the task arriving runs it in its one pool process.
    worker = next(w for w, before in zip(workers, log_before, strict=True) if trains_received(w) > before)
    children = pool_children(worker.process.pid)
    assert len(children) == 1, f"a worker started with -c 1 has one pool process, found {children}"
    os.kill(children.pop(), signal.SIGKILL)  # what the OOM killer does to the process that grew

    wait_for(run_decided(run), what="the killed run to be recovered", worker=worker, every=0.2)
    assert run.status == TrainingRun.Status.FAILED, run.error
    assert run.error == "The worker was lost during 'train'; the live model was not changed."
    assert run.finished_at is not None
    assert not ModelVersion.objects.filter(training_run=run).exists()  # killed before it stored a candidate
    assert LiveModel.objects.get(project=project).version_id == live_before
    assert list(SwapHistory.objects.filter(project=project).values_list("pk", flat=True)) == history_before
    assert worker.process.poll() is None, "the worker itself outlives its pool process"

    # The project is free to train again.
    again = training_run_request(project_id=project.pk, trigger="manual", evidence={"after": run.pk})
    assert again is not None
    wait_for(run_decided(again), what="the next run's decision", worker=worker, every=0.2)
    assert again.status in (TrainingRun.Status.PROMOTED, TrainingRun.Status.KEPT_CHAMPION), again.error
    if again.status == TrainingRun.Status.PROMOTED:
        # Let the worker finish rescoring the pool before the test's tables are flushed under it.
        live = LiveModel.objects.get(project=project).version.number
        wait_for(
            lambda: QueueScoring.objects.filter(project=project, model_version=live, status="complete").exists(),
            what="the pool rescored by the new model", worker=worker, every=0.2,
        )
