"""Features computed by a real Celery worker through the real broker, progress reported back."""
import io
import time
from collections.abc import Callable

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from annotations import selectors as queue_selectors
from annotations.models import ImportJob, Project
from annotations.imports.services import import_jobs_submit
from labelhub.celery import app
from learner.models import FeatureVector
from learner.selectors import pool_matrix
from learner.services.features import features_compute_chunk
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
    (job,) = import_jobs_submit(project=text_project, user=manager, uploads=[("r.csv", io.BytesIO(rows.encode()))],
                                wait=True)
    assert (job.status, job.created_count) == (ImportJob.Status.DONE, 40)

    def finished() -> bool:
        job.refresh_from_db()
        return job.features_status == ImportJob.Status.DONE

    wait_for(finished, what="the features of the imported items", worker=celery_worker_process)
    assert job.features_done == 40
    ids, matrix = pool_matrix(text_project.pk)
    assert list(ids) == list(text_project.items.order_by("pk").values_list("pk", flat=True))
    assert matrix.shape[0] == 40 and matrix.nnz > 0


@pytest.mark.postgres  # sessions seen in pg_stat_activity and cut with pg_terminate_backend
def test_the_worker_keeps_its_database_session_between_tasks_and_replaces_one_that_was_cut(
    celery_worker_process, tabular_project
):
    Project.objects.filter(pk=tabular_project.pk).update(feature_names=["x", "y"])
    rng = np.random.default_rng(3)
    items = [ItemFactory(project=tabular_project, values=rng.normal(size=2).tolist()) for _ in range(30)]
    features_compute_chunk(tabular_project.pk, [item.pk for item in items])

    def scored_again() -> int:
        """Ask the worker for a new scoring of the pool and wait until it is served; return its id."""
        latest = queue_selectors.scoring_latest_id(tabular_project.pk)
        start = len(celery_worker_process.log_path.read_text(errors="replace"))
        app.send_task("learner.score_pool", args=[tabular_project.pk, latest])

        def served() -> bool:
            current = queue_selectors.scoring_current(tabular_project.pk)
            return current is not None and current.pk > latest

        def idle() -> bool:
            """Every task received since the request has ended: a scoring is served before its last task returns."""
            log = celery_worker_process.log_path.read_text(errors="replace")[start:]
            ended = log.count("] succeeded in ") + log.count("] raised ") + log.count("] retry: ")
            return log.count("] received") == ended

        wait_for(served, what="the pool to be scored", worker=celery_worker_process)
        # Cutting the sessions while a task still ran would fail that task, not test the one after the cut.
        wait_for(idle, what="the worker to finish the scoring's tasks", worker=celery_worker_process)
        return queue_selectors.scoring_current(tabular_project.pk).pk

    def worker_sessions() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'",
                [connection.settings_dict["NAME"]],
            )
            return {row[0] for row in cursor.fetchall()}

    scored_again()
    sessions = worker_sessions()
    assert sessions, "the worker holds no database session between tasks"
    scored_again()
    assert worker_sessions() == sessions  # the same session served the next task

    with connection.cursor() as cursor:
        for pid in sessions:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    scored_again()  # a task after the cut gets a new session, and its work done
    assert worker_sessions().isdisjoint(sessions)
    assert "OperationalError" not in celery_worker_process.log_tail(200_000)
