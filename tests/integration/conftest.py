"""Real Celery worker subprocesses on the pytest database, broker and media folders."""
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from amqp.exceptions import ChannelError
from django.conf import settings as django_settings

from labelhub.celery import app

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ("default", "scoring", "training")
READY_TIMEOUT = 60


@dataclass
class CeleryWorker:
    """A running worker process and the file it logs to."""

    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@pytest.fixture(scope="session")
def integration_storage(tmp_path_factory) -> dict[str, Path]:
    """Media and model folders shared by the test process and the worker."""
    base = tmp_path_factory.mktemp("integration")
    return {"MEDIA_ROOT": base / "media", "MODEL_STORE_ROOT": base / "models"}


@pytest.fixture(autouse=True)
def _isolated_storage(settings, integration_storage):
    """Store files where the worker looks (overrides the per-test folders of tests/conftest.py)."""
    settings.MEDIA_ROOT = integration_storage["MEDIA_ROOT"]
    settings.MODEL_STORE_ROOT = integration_storage["MODEL_STORE_ROOT"]
    settings.STORAGES = {
        **settings.STORAGES,
        "models": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(integration_storage["MODEL_STORE_ROOT"])},
        },
    }


def _test_database_url() -> str:
    """The test database's URL for the worker (django_db_setup has pointed the connection at it)."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the worker shares the test database, which needs PostgreSQL or an SQLite file")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    user = quote(db.get("USER") or "", safe="")
    return f"postgres://{user}{password}@{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _purge_queues() -> None:
    # Messages left by an earlier, interrupted run would otherwise reach this worker.
    with app.connection_for_write() as connection:
        for queue in QUEUES:
            connection.default_channel.queue_purge(queue)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # warm shutdown: the running task finishes
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: this reaches the pool children too
        process.wait()


def _worker_start(
    name: str, integration_storage: dict[str, Path], log_path: Path, extra_env: dict[str, str] | None = None
) -> CeleryWorker:
    """Start a worker process named ``name`` on the test database and wait until it is ready."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _test_database_url(),  # django_db_setup has pointed the connection at the test database
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(integration_storage["MEDIA_ROOT"]),
        "MODEL_STORE_ROOT": str(integration_storage["MODEL_STORE_ROOT"]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **(extra_env or {}),
    }
    celery = Path(sys.executable).with_name("celery")
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(celery), "-A", "labelhub", "worker", "-Q", ",".join(QUEUES), "-c", "1", "--pool", "prefork",
             "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "info"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    worker = CeleryWorker(process, log_path)
    deadline = time.monotonic() + READY_TIMEOUT
    while " ready." not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"Celery worker {name} did not become ready:\n{worker.log_tail()}")
        time.sleep(0.2)
    return worker


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, integration_storage, tmp_path_factory) -> Iterator[CeleryWorker]:
    """Start one real Celery worker for the session and wait until it is ready; stop it at the end.

    Tests that use it need ``@pytest.mark.django_db(transaction=True)`` so that their rows are
    committed and visible to the worker.
    """
    _test_database_url()  # skips before purging when the worker cannot share the database
    _purge_queues()
    worker = _worker_start(f"pytest-{os.getpid()}", integration_storage, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        yield worker
    finally:
        _stop(worker.process)


@pytest.fixture(autouse=True)
def _worker_idle_before_teardown(request) -> Iterator[None]:
    """A test with the session's worker ends once the worker has nothing left to do, before its rows are
    flushed: follow-up tasks (a rescoring a retrain asked for) would otherwise race the flush."""
    if "celery_worker_process" not in request.fixturenames:
        yield
        return
    # Set up the database before this fixture completes, so that it is torn down (flushed) after it.
    request.getfixturevalue("_django_db_helper")
    worker = request.getfixturevalue("celery_worker_process")
    yield
    deadline = time.monotonic() + 120
    while not _worker_idle():
        if time.monotonic() > deadline:
            pytest.fail(f"the Celery worker was still busy two minutes after the test:\n{worker.log_tail()}")
        time.sleep(0.2)


def _worker_idle() -> bool:
    """No message waits in a queue, and the workers hold none (running, prefetched or scheduled)."""
    with app.connection_for_write() as connection:
        for queue in QUEUES:
            try:
                if connection.default_channel.queue_declare(queue, passive=True).message_count:
                    return False
            except ChannelError:  # Redis keeps no empty queue: nothing waits in it
                continue
    inspect = app.control.inspect(timeout=1.0)
    for held in (inspect.active(), inspect.reserved(), inspect.scheduled()):
        if held is None or any(held.values()):
            return False
    return True


@pytest.fixture(scope="session")
def second_celery_worker(celery_worker_process, integration_storage, tmp_path_factory) -> Iterator[CeleryWorker]:
    """A second worker process beside ``celery_worker_process``, consuming the same queues."""
    worker = _worker_start(
        f"pytest-{os.getpid()}-2", integration_storage, tmp_path_factory.mktemp("worker2") / "worker.log"
    )
    try:
        yield worker
    finally:
        _stop(worker.process)
