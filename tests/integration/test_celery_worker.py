"""Features computed by a real Celery worker through the real broker, progress reported back."""
import io
import time
from collections.abc import Callable

import numpy as np
import pytest
from django.utils import timezone

from annotations.models import ImportJob, Project
from annotations.services import import_file
from labelhub.celery import app
from learner.models import FeatureVector
from learner.selectors import pool_matrix
from tests.factories import ItemFactory, ProjectFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(condition: Callable[[], bool], *, what: str, worker, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; worker log:\n{worker.log_tail()}")
        time.sleep(0.2)


def test_the_worker_computes_an_import_jobs_features_and_finishes_the_job(celery_worker_process):
    columns = ["alcohol", "malic_acid", "ash", "magnesium"]
    project = ProjectFactory(kind=Project.Kind.TABULAR, feature_names=columns)
    job = ImportJob.objects.create(
        project=project, filename="wine.csv", status=ImportJob.Status.DONE, finished_at=timezone.now(),
        rows_total=25, created_count=25, features_total=25,
    )
    rng = np.random.default_rng(1)
    items = [
        ItemFactory(project=project, import_job=job, values=[float(v) for v in rng.normal(size=len(columns))])
        for _ in range(25)
    ]

    app.send_task("learner.features_compute", args=[project.pk, job.pk])

    def finished() -> bool:
        job.refresh_from_db()
        return job.features_status == ImportJob.Status.DONE

    wait_for(finished, what="the import job's features", worker=celery_worker_process)
    stored = dict(FeatureVector.objects.filter(project=project).values_list("item_id", "values"))
    assert sorted(stored) == [item.pk for item in items]
    assert np.frombuffer(stored[items[0].pk], dtype=np.float32).tolist() == pytest.approx(items[0].values)
    assert job.features_done == 25


def test_an_import_sends_its_feature_job_to_the_worker_after_commit(celery_worker_process, text_project, manager):
    rows = "external_id,text\n" + "".join(f"r{i},review number {i} was {'good' if i % 2 else 'bad'}\n" for i in range(40))
    job = import_file(project=text_project, user=manager, path_or_fileobj=io.BytesIO(rows.encode()), filename="r.csv")
    assert (job.status, job.created_count) == (ImportJob.Status.DONE, 40)

    def finished() -> bool:
        job.refresh_from_db()
        return job.features_status == ImportJob.Status.DONE

    wait_for(finished, what="the features of the imported items", worker=celery_worker_process)
    assert job.features_done == 40
    ids, matrix = pool_matrix(text_project.pk)
    assert list(ids) == list(text_project.items.order_by("pk").values_list("pk", flat=True))
    assert matrix.shape[0] == 40 and matrix.nnz > 0
