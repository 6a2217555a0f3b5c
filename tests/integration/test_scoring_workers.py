"""Pool scoring by real Celery workers: two worker processes share the chunks of one scoring."""
import io
import re
import time
from collections.abc import Callable

import numpy as np
import pytest
from celery import current_app

from annotations import selectors as queue_selectors
from annotations.models import ImportJob, ItemScore, Project
from annotations.imports.services import import_jobs_submit
from labelhub.celery import app
from learner.ml.training import fit
from learner.selectors import pool_matrix
from learner.services.features import features_compute_chunk
from learner.services.models import model_version_create, model_version_promote
from learner.services.scoring import score_pool_plan
from tests.factories import ItemFactory
from tests.sent_tasks import send_task_fake

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

COLUMNS = ["alcohol", "malic_acid", "ash", "magnesium"]
CHUNK_DONE = re.compile(r"Task learner\.score_chunk\[[0-9a-f-]+\] succeeded")


def wait_for(condition: Callable[[], bool], *, what: str, workers, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(worker.log_tail() for worker in workers)
            pytest.fail(f"timed out waiting for {what}; worker logs:\n{logs}")
        time.sleep(0.2)


def test_two_workers_share_the_chunks_of_one_scoring(
    celery_worker_process, second_celery_worker, tabular_project, monkeypatch
):
    workers = [celery_worker_process, second_celery_worker]
    Project.objects.filter(pk=tabular_project.pk).update(feature_names=COLUMNS, query_strategy="entropy")
    rng = np.random.default_rng(5)
    items = [ItemFactory(project=tabular_project, values=rng.normal(size=len(COLUMNS)).tolist()) for _ in range(400)]
    features_compute_chunk(tabular_project.pk, [item.pk for item in items])
    _, X = pool_matrix(tabular_project.pk)
    labels = list(tabular_project.labels.order_by("order"))
    y = np.array([labels[int(v)].pk for v in np.digitize(X[:, 0], [-0.5, 0.5])])
    version = model_version_create(
        project=tabular_project, pipeline=fit("tabular", X, y), classes=[label.pk for label in labels],
        feature_space=f"tabular-v1:{len(COLUMNS)}", algorithm="logistic regression", hyperparameters={},
        label_snapshot_hash="test", labels_used=len(y),
    )
    # The swap's own request would score the pool in one chunk; this test plans small chunks itself.
    with monkeypatch.context() as patched:
        patched.setattr(current_app, "send_task", send_task_fake())
        model_version_promote(version, reason="test")
    logged_before = [len(CHUNK_DONE.findall(worker.log_path.read_text(errors="replace"))) for worker in workers]
    plan = score_pool_plan(tabular_project.pk, chunk_items=25)
    assert len(plan.ranges) == 16

    for lo, hi in plan.ranges:
        app.send_task("learner.score_chunk", args=[tabular_project.pk, plan.scoring_id, lo, hi])

    def complete() -> bool:
        current = queue_selectors.scoring_current(tabular_project.pk)
        return current is not None and current.pk == plan.scoring_id

    wait_for(complete, what="the scoring to complete", workers=workers)
    scoring = queue_selectors.scoring_current(tabular_project.pk)
    assert (scoring.model_version, scoring.chunks_done, scoring.items_scored) == (version.number, 16, 400)
    assert ItemScore.objects.filter(scoring=scoring).count() == 400
    chunks_by_worker = [
        len(CHUNK_DONE.findall(worker.log_path.read_text(errors="replace"))) - before
        for worker, before in zip(workers, logged_before, strict=True)
    ]
    assert sum(chunks_by_worker) == 16
    assert all(count > 0 for count in chunks_by_worker), f"chunks per worker: {chunks_by_worker}"


def test_an_import_is_seeded_once_its_features_are_stored(celery_worker_process, second_celery_worker, manager):
    project = Project.objects.create(name="Fresh", slug="fresh", kind=Project.Kind.TABULAR)
    rows = "external_id,a,b\n" + "".join(f"r{i},{(i % 7) * 1.5},{(i % 3) - 1}\n" for i in range(120))

    (job,) = import_jobs_submit(project=project, user=manager, uploads=[("r.csv", io.BytesIO(rows.encode()))],
                                wait=True)
    assert (job.status, job.created_count) == (ImportJob.Status.DONE, 120)

    wait_for(lambda: queue_selectors.scoring_current(project.pk) is not None, what="the seeding scoring",
             workers=[celery_worker_process, second_celery_worker])
    seeding = queue_selectors.scoring_current(project.pk)
    assert (seeding.model_version, seeding.items_scored) == (0, 120)
    assert ItemScore.objects.filter(scoring=seeding, priority__gte=1_000_000).count() == 50
