"""A long import does not lock others out, and a database lock timeout answers 503 with Retry-After, never 500."""
import io
import sqlite3
import threading
import time

import numpy as np
import psycopg
import pytest
from django.db import OperationalError, connection, connections
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from annotations.models import ImportJob, Item
from annotations.imports import services as import_services
from tests.factories import AnnotationFactory, ItemFactory

sqlite_only = pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLite's database-wide write lock")
postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's lock_timeout")


def _operational(message: str, cause: BaseException | None = None) -> OperationalError:
    error = OperationalError(message)
    error.__cause__ = cause
    return error


def test_lock_timeouts_are_recognised_and_nothing_else():
    from labelhub.api import database_busy

    assert database_busy(_operational("database is locked"))
    assert database_busy(_operational("database table is locked: annotations_item"))
    lock = psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
    assert database_busy(_operational(str(lock), lock))
    statement = psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    assert database_busy(_operational(str(statement), statement))
    assert not database_busy(_operational("server closed the connection unexpectedly"))
    assert not database_busy(_operational("no such table: annotations_item"))
    assert not database_busy(ValueError("database is locked"))


@pytest.mark.parametrize("path", ["/api/projects", "/projects/"])
def test_a_lock_timeout_outside_a_view_answers_503_too(rf, path):
    from labelhub.middleware import server_error

    try:
        raise _operational("database is locked")  # as a session saved by a middleware would raise it
    except OperationalError:
        response = server_error(rf.get(path))
    assert (response.status_code, response["Retry-After"]) == (503, "5")
    try:
        raise _operational("no such table: annotations_item")
    except OperationalError:
        assert server_error(rf.get(path)).status_code == 500


def _sqlite_file() -> str:
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        pytest.skip("needs a file-based SQLite test database (two connections to one file)")
    return connection.settings_dict["NAME"]


@pytest.fixture
def short_sqlite_timeout():
    """New SQLite connections give up waiting for the write lock after 2 s instead of 30 s."""
    options = connections.settings["default"].setdefault("OPTIONS", {})
    before = options.get("timeout")
    options["timeout"] = 2
    connection.close()  # the next query reconnects with the short timeout
    yield
    options["timeout"] = before
    connection.close()


@pytest.fixture
def queue_client(text_project, annotator) -> tuple[APIClient, str]:
    for i in range(5):
        ItemFactory(project=text_project, external_id=f"q{i}", text=f"item {i}")
    client = APIClient()
    client.force_authenticate(annotator)
    return client, reverse("api-queue-next", args=[text_project.pk])


def _noise_zip(count: int, side: int) -> bytes:
    """Images of noise: each takes a good part of a second to decode, check and store as PNG."""
    import zipfile

    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            image = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(image, "PNG", compress_level=1)
            archive.writestr(f"noise/{i}.png", image.getvalue())
    return buffer.getvalue()


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_another_projects_queue_answers_promptly_while_an_import_runs(
    short_sqlite_timeout, queue_client, image_project, manager
):
    _sqlite_file()
    client, url = queue_client
    data = _noise_zip(count=8, side=1600)
    outcome: dict[str, object] = {}

    def run_import() -> None:
        try:
            (outcome["job"],) = import_services.import_jobs_submit(
                project=image_project, user=manager, uploads=[("noise.zip", io.BytesIO(data))], wait=True
            )
        except BaseException as exc:  # reported by the test below
            outcome["error"] = exc
        finally:
            connections.close_all()

    worker = threading.Thread(target=run_import)
    worker.start()
    answers: list[tuple[int, float, bool]] = []
    try:
        while worker.is_alive():
            start = time.monotonic()
            response = client.post(url, {}, format="json")
            elapsed = time.monotonic() - start
            running = ImportJob.objects.filter(project=image_project, status=ImportJob.Status.RUNNING).exists()
            answers.append((response.status_code, elapsed, running))
            time.sleep(0.05)
    finally:
        worker.join()

    assert "error" not in outcome, outcome.get("error")
    assert outcome["job"].created_count == 8
    during = [(status, elapsed) for status, elapsed, running in answers if running]
    assert len(during) >= 3, answers  # the import really was in progress while the queue was asked
    assert {status for status, _ in during} == {200}
    assert max(elapsed for _, elapsed in during) < 1.5, during


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_a_lock_timeout_answers_503_in_the_api_and_a_page(short_sqlite_timeout, queue_client, text_project, annotator):
    database = _sqlite_file()
    client, url = queue_client
    page = APIClient()
    page.force_login(annotator)
    holder = sqlite3.connect(database, timeout=0, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock for long
    try:
        response = client.post(url, {}, format="json")
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert response.json()["detail"].startswith("The database is busy with other writes")

        response = page.post(reverse("label-next", args=[text_project.pk]))
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert "LabelHub is busy for a moment" in response.content.decode()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert client.post(url, {}, format="json").status_code == 200


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_lock_timeout_answers_503_on_postgresql(text_project, manager, annotator):
    item = ItemFactory(project=text_project, external_id="locked", text="held by another session")
    AnnotationFactory(item=item, annotator=annotator, label=text_project.labels.first())
    settings = connection.settings_dict
    holder = psycopg.connect(
        host=settings["HOST"] or None, port=settings["PORT"] or None, user=settings["USER"], dbname=settings["NAME"],
        password=settings["PASSWORD"] or None, autocommit=False,
    )
    try:
        holder.execute("SELECT id FROM annotations_item WHERE id = %s FOR UPDATE", [item.pk])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")  # as a deployment may configure
        client = APIClient()
        client.force_authenticate(manager)
        response = client.post(reverse("api-item-resolve", args=[item.pk]), {"label": "positive"}, format="json")
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert response.json()["detail"].startswith("The database is busy")
    finally:
        holder.rollback()
        holder.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert Item.objects.get(pk=item.pk).resolved_label is None
