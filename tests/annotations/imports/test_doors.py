"""The three doors to item import: the management command, the REST API and the upload page."""
import io
import socket
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.imports import services
from annotations.models import Annotation, ImportJob, Item
from annotations.tasks import import_job_run as import_job_run_task
from labelhub.celery import app as celery_app
from tests.factories import UserFactory

DATA = Path(__file__).parent.parent.parent / "data"
GOOD_CSV = b"external_id,text,label\nr1,I loved it,positive\nr2,Meh,\n"

pytestmark = pytest.mark.django_db


def upload(name: str, content: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, (DATA / name).read_bytes() if content is None else content)


# The task


def test_task_runs_a_queued_job_once(text_project, manager):
    job = services.import_job_create(
        project=text_project, user=manager, filename="good.csv", fileobj=io.BytesIO(GOOD_CSV)
    )

    import_job_run_task(job.pk)
    import_job_run_task(job.pk)  # a redelivered message

    job.refresh_from_db()
    assert (job.status, job.created_count, job.started_at is not None) == (ImportJob.Status.DONE, 2, True)
    assert Item.objects.count() == 2 and Annotation.objects.count() == 1


# The command


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_items", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_command_imports_files_and_prints_counts(text_project, manager, tmp_path):
    (tmp_path / "good.csv").write_bytes(GOOD_CSV)
    out, err = run_command(str(text_project.pk), str(tmp_path / "good.csv"), "--user", "manager")

    assert out == "good.csv: 2 created, 0 unchanged, 0 rejected, 1 pre-labels\n"
    assert err == ""
    assert Annotation.objects.get().annotator == manager


def test_command_prints_one_line_per_rejected_row_and_fails(text_project, manager):
    UserFactory(username="admin", is_superuser=True)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match=r"^1 file\(s\) failed, 1 row\(s\) rejected.$") as failure:
        call_command(
            "import_items", "sentiment", str(DATA / "unknown_label.csv"), str(DATA / "malformed.csv"),
            stdout=out, stderr=err,
        )
    assert out.getvalue() == "unknown_label.csv: 3 created, 0 unchanged, 1 rejected, 2 pre-labels\n"
    assert err.getvalue().splitlines() == [
        "unknown_label.csv: row 2 (line 3): unknown label 'cat'",
        "malformed.csv: failed, nothing imported: Line 3: malformed CSV (',' expected after '\"').",
    ]
    assert failure.value.returncode == 1  # manage.py exits with it
    assert Annotation.objects.get(item__external_id="r1").annotator.username == "admin"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "x.csv"], "No project with slug or id 'nope'."),
        (["sentiment", "x.csv", "--user", "ghost"], "No user 'ghost'."),
        (["sentiment", "x.csv"], "No superuser exists; pass --user USERNAME."),
        (["sentiment", "missing.csv", "--user", "manager"], "Not a file: missing.csv."),
    ],
)
def test_command_refuses_bad_arguments(text_project, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_command(*args)


# The REST API


@pytest.fixture
def api(manager) -> APIClient:
    client = APIClient()
    client.force_authenticate(manager)
    return client


def test_api_imports_files_and_returns_the_jobs(api, text_project):
    url = reverse("api-import-create", args=[text_project.pk])
    response = api.post(url, {"file": [upload("good.csv", GOOD_CSV), upload("unknown_label.csv")]}, format="multipart")

    assert response.status_code == 201
    first, second = response.json()["jobs"]
    assert (first["filename"], first["status"], first["created_count"]) == ("good.csv", "done", 2)
    assert (second["created_count"], second["unchanged_count"], second["rejected_count"]) == (2, 1, 1)
    assert second["errors"] == [{"row": 2, "where": "line 3", "reason": "unknown label 'cat'"}]
    assert (second["features_status"], second["features_total"]) == ("queued", 2)

    detail = api.get(reverse("api-import-detail", args=[second["id"]]))
    assert detail.status_code == 200
    assert detail.json() == second


def test_api_answers_400_for_a_file_that_cannot_be_parsed(api, text_project):
    url = reverse("api-import-create", args=[text_project.pk])
    response = api.post(url, {"file": upload("malformed.csv")}, format="multipart")

    assert response.status_code == 400
    assert response.json()["detail"] == "Line 3: malformed CSV (',' expected after '\"')."
    assert response.json()["jobs"][0]["status"] == "failed"
    assert Item.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ({}, "Invalid input."),
        ({"file": upload("photo.png", b"x")}, "photo.png: Text projects import CSV, JSONL or JSON files."),
    ],
)
def test_api_refuses_bad_uploads(api, text_project, data, detail):
    response = api.post(reverse("api-import-create", args=[text_project.pk]), data, format="multipart")

    assert response.status_code == 400
    assert response.json()["detail"] == detail
    assert ImportJob.objects.count() == 0


def test_api_import_is_for_managers_only(text_project, annotator, manager):
    (job,) = services.import_jobs_submit(
        project=text_project, user=manager, uploads=[("a.csv", io.BytesIO(GOOD_CSV))], wait=True
    )
    client = APIClient()
    url = reverse("api-import-create", args=[text_project.pk])
    assert client.post(url, {"file": upload("good.csv", GOOD_CSV)}, format="multipart").status_code == 401

    client.force_authenticate(annotator)
    assert client.post(url, {"file": upload("good.csv", GOOD_CSV)}, format="multipart").status_code == 404
    assert client.get(reverse("api-import-detail", args=[job.pk])).status_code == 404
    assert ImportJob.objects.count() == 1


# The upload page


def test_import_page_is_for_managers_only(client, text_project, manager, annotator):
    client.force_login(annotator)
    assert client.get(reverse("project-import", args=[text_project.pk])).status_code == 404
    assert b"Import items" not in client.get(reverse("project-detail", args=[text_project.pk])).content

    client.force_login(manager)
    response = client.get(reverse("project-import", args=[text_project.pk]))
    assert response.status_code == 200
    assert b'type="file" name="files" multiple' in response.content
    # The page says what an import with bad rows does (its good rows are stored: see the next test).
    assert b"all-or-nothing" not in response.content
    assert b"its good rows are stored and its bad rows listed with their reasons" in response.content


def test_upload_queues_jobs_and_the_panel_shows_their_outcome(
    client, text_project, manager, sent_tasks, django_capture_on_commit_callbacks
):
    client.force_login(manager)
    url = reverse("project-import", args=[text_project.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"files": [upload("unknown_label.csv"), upload("malformed.csv")]})

    assert response.status_code == 302
    jobs = list(ImportJob.objects.order_by("pk"))
    assert [(j.filename, j.status) for j in jobs] == [("unknown_label.csv", "queued"), ("malformed.csv", "queued")]
    assert sent_tasks == [("annotations.import_job_run", [jobs[0].pk]), ("annotations.import_job_run", [jobs[1].pk])]

    for job in jobs:  # what the worker does with those messages
        services.import_job_run(job.pk)
    good = client.get(reverse("import-job-panel", args=[jobs[0].pk])).content.decode()
    assert "row 2 (line 3): unknown label &#x27;cat&#x27;" in good
    assert "Features · 0 / 3 · Queued" in good
    assert 'hx-trigger="every 1s"' in good  # still waiting for features

    bad = client.get(reverse("import-job-panel", args=[jobs[1].pk])).content.decode()
    assert "Nothing was imported: Line 3: malformed CSV" in bad
    assert "hx-get" not in bad

    services.import_job_features_progress(jobs[0].pk, done=3, status="done")
    done = client.get(reverse("import-job-panel", args=[jobs[0].pk])).content.decode()
    assert '<progress max="3" value="3">' in done
    assert "hx-get" not in done

    page = client.get(url).content.decode()
    assert "unknown label &#x27;cat&#x27;" in page and "Nothing was imported" in page


def test_running_job_panel_shows_progress_from_the_cache(client, text_project, manager):
    job = ImportJob.objects.create(project=text_project, created_by=manager, filename="big.csv", status="running")
    cache.set(f"import-progress:{job.pk}", {"bytes": 250, "total": 1000, "rows": 7})
    client.force_login(manager)

    body = client.get(reverse("import-job-panel", args=[job.pk])).content.decode()

    assert "7 rows read · 25%" in body
    assert '<progress max="100" value="25">' in body
    assert 'hx-trigger="every 1s"' in body
    cache.delete(f"import-progress:{job.pk}")


def test_refused_upload_shows_the_reason_and_queues_nothing(client, text_project, manager, sent_tasks):
    client.force_login(manager)
    response = client.post(reverse("project-import", args=[text_project.pk]), {"files": [upload("photo.png", b"x")]})

    assert response.status_code == 200
    assert "photo.png: Text projects import CSV, JSONL or JSON files." in response.content.decode()
    assert ImportJob.objects.count() == 0 and sent_tasks == []


def test_job_panel_is_for_managers_of_its_project(client, text_project, tabular_project, annotator, manager):
    job = ImportJob.objects.create(project=text_project, created_by=manager, filename="a.csv")
    client.force_login(annotator)
    assert client.get(reverse("import-job-panel", args=[job.pk])).status_code == 404


def test_running_job_panel_says_when_the_file_is_being_checked(client, text_project, manager):
    job = ImportJob.objects.create(project=text_project, created_by=manager, filename="big.csv", status="running")
    cache.set(f"import-progress:{job.pk}", {"bytes": 500, "total": 1000, "rows": 9, "phase": "checking"})
    client.force_login(manager)

    body = client.get(reverse("import-job-panel", args=[job.pk])).content.decode()

    assert "Checking the whole file before storing anything · 9 rows read · 50%" in body
    cache.delete(f"import-progress:{job.pk}")


# An import that cannot start leaves no file behind


def _stored_uploads(settings) -> list[Path]:
    folder = Path(settings.MEDIA_ROOT) / "imports"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


class ClientGoneAway(io.BytesIO):
    """An upload whose client went away mid-way: the first 64 KiB arrive, then reading fails."""

    def read(self, size: int = -1) -> bytes:
        if self.tell() > 0:
            raise OSError("Connection reset by peer")
        return super().read(size)


def _socket_nobody_listens_on() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker_down(monkeypatch):
    """The task broker is down: its address refuses connections (the broker is outside the project)."""
    url = f"redis://127.0.0.1:{_socket_nobody_listens_on()}/0"
    for key in ("broker_url", "broker_write_url", "broker_read_url"):
        monkeypatch.setitem(celery_app.conf, key, url)
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    yield
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)
def test_an_upload_the_broker_refuses_fails_with_its_reason_and_leaves_no_file(
    client, text_project, manager, broker_down, settings
):
    client.force_login(manager)
    url = reverse("project-import", args=[text_project.pk])
    response = client.post(url, {"files": [upload("good.csv", GOOD_CSV)]}, follow=True)

    assert response.status_code == 200
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.FAILED and not job.upload
    assert job.message == services.IMPORT_NOT_QUEUED
    assert f"good.csv: {services.IMPORT_NOT_QUEUED}" in response.content.decode()
    assert "Queued" not in response.content.decode()
    assert Item.objects.count() == 0 and _stored_uploads(settings) == []


@pytest.mark.parametrize("wait", [False, True], ids=["queued", "waited"])
def test_an_upload_that_cannot_be_stored_takes_the_others_back_with_it(text_project, manager, settings, wait):
    uploads = [("first.csv", io.BytesIO(GOOD_CSV)), ("second.csv", ClientGoneAway(b"text\n" + b"a row\n" * 20_000))]

    with pytest.raises(OSError, match="Connection reset"):
        services.import_jobs_submit(project=text_project, user=manager, uploads=uploads, wait=wait)

    assert ImportJob.objects.count() == 0 and Item.objects.count() == 0
    assert _stored_uploads(settings) == []
