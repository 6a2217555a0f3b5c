"""Faults with real processes: Redis restarted mid-session, a database connection dropped mid-import,
a swap racing predictions. Each ends with no lost label, no half-imported file and one live model."""
import io
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from django.db import connection, connections

from annotations.models import Annotation, ImportJob, Item
from annotations.imports.services import import_jobs_submit
from annotations.services import annotation_submit, queue_next
from labelhub.celery import app as celery_app
from learner.ml.training import fit
from learner.models import LiveModel, TrainingRun
from learner.services.models import model_version_create, model_version_promote
from learner.services.predict import predict
from tests.factories import MembershipFactory, UserFactory
from tests.integration.conftest import _stop, _worker_start
from tests.learner.conftest import blob_items, labeled_blobs  # noqa: F401 (fixtures)
from tests.sent_tasks import send_task_fake

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(condition: Callable[[], bool], *, what: str, worker=None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}" + (f"; worker log:\n{worker.log_tail(6000)}" if worker else ""))
        time.sleep(0.2)


# Redis stopped and restarted while an expert labels


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server on a port of its own, that a test may stop and start again."""

    def __init__(self, port: int) -> None:
        self.port, self.process = port, None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)


@pytest.fixture
def private_broker(settings, monkeypatch) -> Iterator[tuple[RedisServer, str]]:
    """Point this process and the workers it starts at a Redis server of the test's own."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(_free_port())
    server.start()
    url = f"redis://127.0.0.1:{server.port}/0"
    settings.CELERY_BROKER_URL = url
    for key in ("broker_url", "broker_write_url", "broker_read_url"):
        monkeypatch.setitem(celery_app.conf, key, url)
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    try:
        yield server, url
    finally:
        server.stop()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None


@pytest.fixture
def expert_on_pool(labeled_blobs):  # noqa: F811
    """An annotator on the blob project (200 labels, no model yet), whose sixth label trips the count trigger."""
    blob_items(labeled_blobs, np.random.default_rng(3), 40)
    expert = UserFactory(username="fault-expert")
    MembershipFactory(project=labeled_blobs, user=expert, role="annotator")
    labeled_blobs.retrain_every_n_labels = Annotation.objects.filter(item__project=labeled_blobs).count() + 6
    labeled_blobs.save()
    return labeled_blobs, expert


def _label(project, expert, n: int) -> list[int]:
    negative, positive = project.labels.order_by("order")[:2]
    stored = []
    for _ in range(n):
        lease = queue_next(project=project, user=expert)
        x0 = lease.item.values[0]
        stored.append(annotation_submit(lease_id=lease.pk, user=expert, label_id=(positive if x0 > 0 else negative).pk).pk)
    return stored


def test_labels_survive_a_redis_restart_and_the_worker_picks_up_again(
    private_broker, expert_on_pool, integration_storage, tmp_path
):
    server, _url = private_broker
    project, expert = expert_on_pool
    worker = _worker_start("fault-redis", integration_storage, tmp_path / "worker.log")  # on the private broker
    try:
        before = _label(project, expert, 3)
        server.stop()  # Redis goes down mid-session
        during = _label(project, expert, 3)  # the sixth label would trip the count trigger
        assert Annotation.objects.filter(pk__in=before + during).count() == 6
        assert not TrainingRun.objects.filter(project=project).exists()
        server.start()  # back, empty: whatever was queued in it is gone
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        # The reconciliation beat task finds the labels that no message announced.
        wait_for(lambda: _send_quietly("learner.triggers_check") and TrainingRun.objects.filter(
            project=project, trigger="count", status="promoted").exists(),
            what="the count trigger after the broker came back", worker=worker, timeout=180)
        assert worker.process.poll() is None, "the worker must survive the broker restart"
        assert TrainingRun.objects.filter(project=project).count() == 1
        assert Annotation.objects.filter(annotator=expert).count() == 6
        live = LiveModel.objects.select_related("version").get(project=project)
        assert live.version.training_run.trigger == "count"
    finally:
        _stop(worker.process)


def _send_quietly(name: str) -> bool:
    """Send a task as beat would; a broker that is still reconnecting just means another try later."""
    try:
        celery_app.send_task(name)
    except Exception:  # noqa: BLE001 - any connection error: try again on the next poll
        time.sleep(1)
        return False
    time.sleep(1)
    return True


# The database connection dropped during an import


def _import_backend_pid(db_name: str) -> int | None:
    """The worker's session once it has stored items (its last statement an insert of items, running or not).

    The import writes in short transactions, each well under 300 ms on a fast machine, so the
    session is taken between or during them, whatever their age.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND query LIKE 'INSERT INTO \"annotations_item\"%%'",
            [db_name],
        )
        row = cursor.fetchone()
    return row[0] if row else None


@pytest.mark.postgres  # the import's session found in pg_stat_activity and cut with pg_terminate_backend
def test_an_import_whose_database_connection_drops_is_rerun_whole(celery_worker_process, text_project, manager):
    rows = 40_000
    content = "external_id,text\n" + "".join(f"r{i},item number {i} of the dropped import\n" for i in range(rows))
    (job,) = import_jobs_submit(project=text_project, user=manager, uploads=[("big.csv", io.BytesIO(content.encode()))])
    db_name = connection.settings_dict["NAME"]

    pid = None
    deadline = time.monotonic() + 120
    while pid is None and time.monotonic() < deadline:
        pid = _import_backend_pid(db_name)
        time.sleep(0.02)
    assert pid is not None, f"the import never reached its inserts:\n{celery_worker_process.log_tail()}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    def finished() -> bool:
        job.refresh_from_db()
        return job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED)

    wait_for(finished, what="the import to be run again", worker=celery_worker_process, timeout=240)
    assert "database connection" not in job.message
    assert job.status == ImportJob.Status.DONE, job.message
    assert job.created_count == rows
    # Nothing half-stored and nothing twice: exactly the file's rows, each once.
    assert Item.objects.filter(project=text_project).count() == rows
    assert Item.objects.filter(project=text_project, external_id="r39999").exists()
    assert "retry" in celery_worker_process.log_tail(200_000).lower()


# A swap racing predictions


def _version(project, X, y):
    labels = [label.pk for label in project.labels.order_by("order")[:2]]
    return model_version_create(
        project=project, pipeline=fit("tabular", X, np.asarray(labels)[y]), classes=labels,
        feature_space="tabular-v1:2", algorithm="logistic regression", hyperparameters={},
        label_snapshot_hash="race", labels_used=len(y),
    )


def test_predictions_during_swaps_each_come_whole_from_one_version(tabular_project):
    """Flip between two opposite models while threads predict: every answer is wholly one version's."""
    project = tabular_project
    project.feature_names = ["x0", "x1"]
    project.save()
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 2)) * 2.5
    truth = (X[:, 0] > 0).astype(int)
    upright, upside_down = _version(project, X, truth), _version(project, X, 1 - truth)
    rows = [{"values": [float(a), float(b)]} for a, b in X[:20]]
    expected = {}
    for version in (upright, upside_down):
        model_version_promote(version, reason="race: learn its answers")
        expected[version.number] = [p["label"] for p in predict(project=project, items=rows, client_id=1)]
    assert expected[upright.number] != expected[upside_down.number]
    answers: list[tuple[set[int], list[str]]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def client(n: int) -> None:
        try:
            while not stop.is_set():
                result = predict(project=project, items=rows, client_id=n + 1)
                answers.append(({p["model_version"] for p in result}, [p["label"] for p in result]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for version in [upright, upside_down] * 6:
        model_version_promote(version, reason="race")
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert len(answers) > 12
    # One request never mixes versions: one version per batch, and exactly that version's labels.
    assert all(len(numbers) == 1 and labels == expected[next(iter(numbers))] for numbers, labels in answers)
    assert {next(iter(numbers)) for numbers, _ in answers} == set(expected)
    assert LiveModel.objects.get(project=project).version_id == upside_down.pk


# A worker process SIGKILLed in the middle of a scoring chunk


@pytest.mark.postgres  # the chunk held mid-transaction by a row lock, seen waiting in pg_stat_activity
def test_a_pool_process_killed_mid_chunk_leaves_a_complete_scoring_with_each_item_once(
    celery_worker_process, second_celery_worker, tabular_project, monkeypatch
):
    from celery import current_app

    from annotations import selectors as queue_selectors
    from annotations.models import ItemScore, Project, QueueScoring
    from learner.selectors import pool_matrix
    from learner.services.features import features_compute_chunk
    from learner.services.scoring import score_pool_plan
    from tests.factories import ItemFactory
    from tests.integration.test_training_worker_lost import pool_children

    workers = [celery_worker_process, second_celery_worker]
    columns = ["a", "b", "c"]
    Project.objects.filter(pk=tabular_project.pk).update(feature_names=columns, query_strategy="margin")
    rng = np.random.default_rng(9)
    items = [ItemFactory(project=tabular_project, values=rng.normal(size=3).tolist()) for _ in range(1200)]
    features_compute_chunk(tabular_project.pk, [item.pk for item in items])
    _, X = pool_matrix(tabular_project.pk)
    labels = list(tabular_project.labels.order_by("order"))
    version = model_version_create(
        project=tabular_project, pipeline=fit("tabular", X, np.array([labels[int(v)].pk for v in
                                                                        np.digitize(X[:, 0], [-0.5, 0.5])])),
        classes=[label.pk for label in labels], feature_space="tabular-v1:3", algorithm="logistic regression",
        hyperparameters={}, label_snapshot_hash="kill", labels_used=len(X),
    )
    with monkeypatch.context() as patched:  # this test plans the chunks itself
        patched.setattr(current_app, "send_task", send_task_fake())
        model_version_promote(version, reason="test")
    plan = score_pool_plan(tabular_project.pk, chunk_items=300)
    assert len(plan.ranges) == 4

    # Hold the scoring's row: a chunk that has computed and copied its scores waits here, mid-transaction.
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {QueueScoring._meta.db_table} WHERE id = %s FOR UPDATE", [plan.scoring_id])
    try:
        for n, (lo, hi) in enumerate(plan.ranges):
            celery_app.send_task("learner.score_chunk", args=[tabular_project.pk, plan.scoring_id, lo, hi, n])

        def chunk_waiting() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query ILIKE %s", [f"%{QueueScoring._meta.db_table}%"],
                )
                return cursor.fetchone()[0] > 0

        wait_for(chunk_waiting, what="a chunk to reach its count", worker=celery_worker_process, timeout=90)
        for worker in workers:  # as the OOM killer would, whichever pool process holds the chunk
            for child in pool_children(worker.process.pid):
                os.kill(child, signal.SIGKILL)
    finally:
        blocker.rollback()
        blocker.close()

    def complete() -> bool:
        current = queue_selectors.scoring_current(tabular_project.pk)
        return current is not None and current.pk == plan.scoring_id

    wait_for(complete, what="the scoring to complete after the kill", worker=celery_worker_process, timeout=120)
    scoring = queue_selectors.scoring_current(tabular_project.pk)
    assert (scoring.chunks_done, scoring.items_scored) == (4, 1200)
    assert ItemScore.objects.filter(scoring=scoring).count() == 1200
    assert ItemScore.objects.filter(scoring=scoring).values("item").distinct().count() == 1200
    assert all(worker.process.poll() is None for worker in workers), "the workers outlive their pool processes"
