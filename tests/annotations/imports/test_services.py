"""Item import: good rows are stored, bad rows are listed, unparseable files store nothing."""
import io
import zipfile
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image

from annotations.models import Annotation, ImportJob, Item
from annotations.imports import runs, services, writers
from labelhub.api import DomainError
from labelhub.celery import app as celery_app
from tests.sent_tasks import send_task_fake

DATA = Path(__file__).parent.parent.parent / "data"

pytestmark = pytest.mark.django_db


def media_files(settings) -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def run(project, user, filename: str, content: bytes | None = None) -> ImportJob:
    data = (DATA / filename).read_bytes() if content is None else content
    (job,) = services.import_jobs_submit(project=project, user=user, uploads=[(filename, io.BytesIO(data))], wait=True)
    return job


def png(size: tuple[int, int] = (32, 32), color: str = "navy", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")
    return buffer.getvalue()


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def assert_nothing_stored(job: ImportJob, settings) -> None:
    assert job.status == ImportJob.Status.FAILED
    assert (job.created_count, job.unchanged_count, job.rejected_count, job.errors) == (0, 0, 0, [])
    assert Item.objects.count() == 0
    assert Annotation.objects.count() == 0
    assert media_files(settings) == []


# Text: CSV, JSON, JSONL


def test_csv_stores_good_rows_with_prelabels_and_lists_unknown_label(text_project, manager, settings):
    job = run(text_project, manager, "unknown_label.csv")

    assert job.status == ImportJob.Status.DONE
    assert (job.rows_total, job.created_count, job.unchanged_count, job.rejected_count) == (4, 3, 0, 1)
    assert job.errors == [{"row": 2, "where": "line 3", "reason": "unknown label 'cat'"}]
    items = {i.external_id: i for i in Item.objects.filter(project=text_project)}
    assert sorted(items) == ["r1", "r3", "r4"]
    assert items["r1"].metadata == {"source": "web"} and items["r3"].metadata == {}
    labels = Annotation.objects.filter(source=Annotation.Source.IMPORT, annotator=manager)
    assert sorted((a.item.external_id, a.label.name) for a in labels) == [("r1", "positive"), ("r3", "negative")]
    assert job.labels_count == 2
    assert (job.features_total, job.features_status) == (3, ImportJob.Status.QUEUED)
    assert media_files(settings) == []  # the upload is removed once imported


def test_reimporting_the_same_file_changes_nothing(text_project, manager):
    run(text_project, manager, "unknown_label.csv")
    again = run(text_project, manager, "unknown_label.csv")

    assert (again.created_count, again.unchanged_count, again.rejected_count) == (0, 3, 1)
    assert Item.objects.count() == 3
    assert Annotation.objects.count() == 2
    assert (again.features_total, again.features_status) == (0, ImportJob.Status.DONE)


def test_rows_without_external_id_get_a_stable_id_from_their_content(text_project, manager):
    content = b"text\nfirst text\nsecond text\nfirst text\n"
    first = run(text_project, manager, "plain.csv", content)
    again = run(text_project, manager, "plain.csv", content)

    assert (first.created_count, first.rejected_count) == (2, 1)
    assert first.errors[0]["reason"] == "same content as row 1 (neither has an external_id)"
    assert (again.created_count, again.unchanged_count) == (0, 2)
    assert all(i.external_id.startswith("sha256-") for i in Item.objects.all())


def test_duplicate_external_id_in_one_file_rejects_the_second(text_project, manager):
    job = run(text_project, manager, "duplicate_ids.csv")

    assert job.created_count == 2
    assert job.errors == [{"row": 3, "where": "line 4", "reason": "duplicate external_id in this file, first at row 1"}]
    assert Item.objects.get(external_id="r1").text == "first"


def test_reimport_with_different_content_is_rejected(text_project, manager):
    run(text_project, manager, "first.csv", b"external_id,text\nr1,the original\n")
    job = run(text_project, manager, "second.csv", b"external_id,text\nr1,an edited text\nr2,new\n")

    assert (job.created_count, job.rejected_count) == (1, 1)
    assert job.errors[0]["reason"] == "external_id 'r1' already exists with different content"
    assert Item.objects.get(external_id="r1").text == "the original"


def test_malformed_csv_stores_nothing(text_project, manager, settings):
    job = run(text_project, manager, "malformed.csv")

    assert job.message.startswith("Line 3: malformed CSV")
    assert_nothing_stored(job, settings)


def test_non_utf8_bytes_store_nothing(text_project, manager, settings):
    job = run(text_project, manager, "non_utf8.csv")

    assert job.message == "The file is not UTF-8 text (line 3, byte 7 of the line); save it as UTF-8."
    assert_nothing_stored(job, settings)


def test_failure_late_in_a_large_file_rolls_back_earlier_chunks(text_project, manager, settings):
    rows = "".join(f"r{i},text number {i}\n" for i in range(5000))
    job = run(text_project, manager, "late.csv", b"external_id,text\n" + rows.encode() + b"r-bad,caf\xe9\n")

    assert job.message.startswith("The file is not UTF-8 text (line 5002, byte 10 of the line)")
    assert_nothing_stored(job, settings)


def test_progress_is_reported_while_importing(text_project, manager, monkeypatch):
    seen = []
    monkeypatch.setattr(writers, "ROW_CHUNK", 10)
    monkeypatch.setattr(runs, "PROGRESS_EVERY_SECONDS", 0)
    monkeypatch.setattr(runs.cache, "set", lambda key, value, timeout: seen.append((key, value)))
    rows = "".join(f"row {i}\n" for i in range(25)).encode()
    job = run(text_project, manager, "rows.csv", b"text\n" + rows)

    assert job.created_count == 25
    assert {key for key, _ in seen} == {f"import-progress:{job.pk}"}
    # The file is read through once to check it whole, then stored chunk by chunk.
    phases = [value["phase"] for _, value in seen]
    assert phases == sorted(phases) and set(phases) == {"checking", "storing"}
    assert [value["rows"] for _, value in seen if value["phase"] == "storing"] == [0, 10, 20, 25]
    assert seen[-1][1]["bytes"] == seen[-1][1]["total"] == 5 + len(rows)


def test_header_without_text_column_fails(text_project, manager, settings):
    job = run(text_project, manager, "wrong.csv", b"id,body\n1,hello\n")

    assert job.message == "The header has no 'text' column (found: id, body)."
    assert_nothing_stored(job, settings)


def test_too_long_text_and_ragged_rows_are_rejected(text_project, manager, settings):
    settings.LABELHUB_TEXT_MAX_CHARS = 20
    job = run(text_project, manager, "mixed.csv", b"external_id,text\nok,short\nlong," + b"x" * 21 + b"\nr3,a,b\n")

    assert job.created_count == 1
    assert job.errors == [
        {"row": 2, "where": "line 3", "reason": "text is 21 characters, above the 20-character limit"},
        {"row": 3, "where": "line 4", "reason": "has 3 fields, the header has 2"},
    ]


def test_json_array_imports_metadata_and_labels(text_project, manager):
    content = b'[{"external_id": 7, "text": "great", "label": "positive", "metadata": {"lang": "en"}},\n' \
              b' {"external_id": "x", "text": "meh", "metadata": "not an object"}, 3]'
    job = run(text_project, manager, "rows.json", content)

    assert job.created_count == 1
    item = Item.objects.get()
    assert (item.external_id, item.metadata, item.annotations.get().label.name) == ("7", {"lang": "en"}, "positive")
    assert [e["reason"] for e in job.errors] == ["metadata is not valid JSON", "expected a JSON object, found int"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ((DATA / "invalid.json").read_bytes(), "Invalid JSON: "),
        (b'{"text": "an object, not an array"}', "A JSON file must hold one top-level array of objects"),
        (b"[" + b'{"text": "ok"},' * 3 + b'{"text": "caf\xe9"}]', "Invalid JSON: lexical error: invalid bytes in UTF8"),
    ],
)
def test_unparseable_json_stores_nothing(text_project, manager, settings, content, message):
    job = run(text_project, manager, "rows.json", content)

    assert job.message.startswith(message)
    assert_nothing_stored(job, settings)


def test_jsonl_invalid_line_fails_the_file(text_project, manager, settings):
    job = run(text_project, manager, "rows.jsonl", b'{"text": "fine"}\n\n{"text": broken}\n')

    assert job.message.startswith("Line 3: invalid JSON")
    assert_nothing_stored(job, settings)


# Tabular


def test_first_tabular_import_fixes_features_and_rejects_non_finite_numbers(tabular_project, manager):
    job = run(tabular_project, manager, "nonfinite.csv")

    tabular_project.refresh_from_db()
    assert tabular_project.feature_names == ["alcohol", "ash"]
    assert job.created_count == 1
    assert Item.objects.get().values == [13.2, 2.4]
    assert [e["reason"] for e in job.errors] == [
        "column 'alcohol': 'nan' is not a finite number",
        "column 'ash': 'inf' is not a finite number",
        "column 'alcohol' is empty",
        "column 'alcohol': 'abc' is not a number",
        "column 'ash': '-Infinity' is not a finite number",
    ]


def test_jsonl_non_finite_numbers_are_rejected(tabular_project, manager):
    job = run(tabular_project, manager, "nonfinite.jsonl")

    assert job.created_count == 1
    assert [e["reason"] for e in job.errors] == [
        "column 'alcohol': nan is not a finite number",
        "column 'alcohol': inf is not a finite number",
    ]


def test_later_tabular_import_needs_the_same_columns_in_any_order(tabular_project, manager, settings):
    tabular_project.feature_names = ["alcohol", "ash"]
    tabular_project.save()

    wrong = run(tabular_project, manager, "wrong.csv", b"alcohol,hue\n1,2\n")
    assert wrong.message.startswith("The feature columns differ from the project's (missing ash; unexpected hue)")
    assert_nothing_stored(wrong, settings)

    reordered = run(tabular_project, manager, "reordered.csv", b"ash,label,alcohol\n2.5,class_1,14\n")
    assert reordered.created_count == 1
    assert Item.objects.get().values == [14.0, 2.5]


def test_json_rows_with_other_columns_are_rejected(tabular_project, manager):
    content = b'[{"a": 1, "b": 2}, {"a": 1}, {"a": 1, "b": 2, "c": 3}, {"a": true, "b": 1}]'
    job = run(tabular_project, manager, "rows.json", content)

    assert job.created_count == 1
    assert [e["reason"] for e in job.errors] == [
        "missing column 'b'", "unexpected column 'c'", "column 'a': True is not a number",
    ]


def test_a_file_whose_rows_all_fail_does_not_fix_the_features(tabular_project, manager):
    job = run(tabular_project, manager, "typo.csv", b"alcohol,labl\n13.1,class_0\n")

    tabular_project.refresh_from_db()
    assert job.rejected_count == 1
    assert tabular_project.feature_names == []


# Images and ZIP


def test_image_is_stored_with_a_thumbnail_under_a_content_name(image_project, manager, settings):
    data = png((600, 300), (255, 0, 0, 0), mode="RGBA")
    job = run(image_project, manager, "red.png", data)
    again = run(image_project, manager, "red.png", data)

    item = Item.objects.get()
    assert (job.created_count, again.unchanged_count, item.external_id) == (1, 1, "red.png")
    assert item.image.name == f"items/{image_project.pk}/{item.content_hash}.png"
    with Image.open(item.image.open("rb")) as stored, Image.open(item.thumbnail.open("rb")) as thumbnail:
        assert (stored.format, stored.size, stored.mode) == ("PNG", (600, 300), "RGB")
        assert stored.getpixel((0, 0)) == (255, 255, 255)  # transparent pixels land on white
        assert thumbnail.size == (256, 128)
    assert media_files(settings) == sorted([item.image.name, item.thumbnail.name])


def test_truncated_png_is_rejected_and_nothing_is_stored(image_project, manager, settings):
    job = run(image_project, manager, "truncated.png")

    assert (job.status, job.created_count, job.rejected_count) == (ImportJob.Status.DONE, 0, 1)
    assert job.errors[0]["reason"].startswith("image is truncated or corrupt")
    assert Item.objects.count() == 0
    assert media_files(settings) == []


def test_huge_png_is_rejected_from_its_header(image_project, manager, settings):
    job = run(image_project, manager, "huge_dimensions.png")

    assert job.errors == [{
        "row": 1, "where": "huge_dimensions.png",
        "reason": "image is 20000×20000 = 400,000,000 pixels, above the 50,000,000-pixel limit",
    }]
    assert media_files(settings) == []


def test_zip_rejects_unsafe_paths_and_applies_labels_csv(image_project, manager, settings, tmp_path):
    job = run(image_project, manager, "traversal.zip")

    assert (job.created_count, job.labels_count) == (1, 1)
    assert [(e["where"], e["reason"].split(":")[0]) for e in job.errors] == [
        ("../evil.png", "unsafe path '../evil.png'"),
        ("digits/../../escape.png", "unsafe path 'digits/../../escape.png'"),
        ("/etc/absolute.png", "unsafe path '/etc/absolute.png'"),
    ]
    item = Item.objects.get()
    assert (item.external_id, item.annotations.get().label.name) == ("digits/ok.png", "7")
    assert media_files(settings) == sorted([item.image.name, item.thumbnail.name])
    assert not [p for p in tmp_path.parent.rglob("*") if p.name in {"evil.png", "escape.png", "absolute.png"}]


def test_zip_entries_above_the_size_limit_are_rejected_unread(image_project, manager, settings):
    settings.LABELHUB_IMAGE_MAX_BYTES = 1000
    job = run(image_project, manager, "bomb.zip", zip_of({"zeros.png": b"\0" * 5_000, "ok.png": png()}))

    assert job.created_count == 1
    assert job.errors[0]["reason"] == "uncompressed size 5,000 bytes is above the 1,000-byte image limit"


def test_bad_image_in_zip_rejects_only_that_entry(image_project, manager):
    job = run(image_project, manager, "mixed.zip", zip_of({
        "a.png": png(color="white"), "notes.txt": b"hello", "b.png": (DATA / "truncated.png").read_bytes(),
        "__MACOSX/._a.png": b"resource fork", "c.png": png(color="black"),
    }))

    assert (job.created_count, job.rejected_count) == (2, 2)
    assert [(e["row"], e["where"]) for e in job.errors] == [(2, "notes.txt"), (3, "b.png")]
    assert job.errors[0]["reason"] == "not a PNG, JPEG, GIF, BMP or WebP image"


@pytest.mark.parametrize(
    ("filename", "entries", "message"),
    [
        ("not_a_zip.zip", None, "Not a valid ZIP archive"),
        ("many.zip", {f"{i}.png": b"x" for i in range(4)}, "The ZIP has 4 entries, above the limit of 3."),
        ("labels.zip", {"a.png": b"x", "labels.csv": b"name,class\na.png,1\n"}, "labels.csv needs the columns"),
    ],
)
def test_unusable_zip_stores_nothing(image_project, manager, settings, filename, entries, message):
    settings.LABELHUB_ZIP_MAX_ENTRIES = 3
    job = run(image_project, manager, filename, None if entries is None else zip_of(entries))

    assert job.message.startswith(message)
    assert_nothing_stored(job, settings)


def test_interrupted_import_deletes_the_images_it_saved(image_project, manager, settings, monkeypatch):
    monkeypatch.setattr(writers, "IMAGE_CHUNK", 1)
    monkeypatch.setattr(runs, "PROGRESS_EVERY_SECONDS", 0)

    def time_limit_hits(run, done, total, *, rows, phase):
        if phase == "storing" and rows >= 2:  # after two images were stored and committed
            assert Item.objects.count() == 2 and len([f for f in media_files(settings) if f.startswith("items/")]) == 4
            raise SoftTimeLimitExceeded()  # what Celery raises inside the task when the soft limit passes

    monkeypatch.setattr(runs.Run, "progress", time_limit_hits)
    job = run(image_project, manager, "three.zip", zip_of({f"{c}.png": png(color=c) for c in ("red", "green", "blue")}))

    assert job.message.startswith("The import took longer than its time limit and was rolled back")
    assert_nothing_stored(job, settings)


# Refused uploads


def test_upload_above_the_size_limit_is_refused(text_project, manager, settings):
    settings.LABELHUB_IMPORT_MAX_BYTES = 10
    with pytest.raises(DomainError, match=r"big.csv is 24 bytes, above the 10-byte import limit"):
        run(text_project, manager, "big.csv", b"text\nsomewhat long text\n")
    assert ImportJob.objects.count() == 0
    assert media_files(settings) == []


@pytest.mark.parametrize(
    ("fixture", "filename", "message"),
    [
        ("image_project", "rows.csv", "rows.csv: Image projects import images (PNG, JPEG, GIF, BMP, WebP) or a ZIP"),
        ("text_project", "photo.png", "photo.png: Text projects import CSV, JSONL or JSON files."),
        ("text_project", "sheet.xlsx", "sheet.xlsx: LabelHub does not import .xlsx files. Text projects import CSV"),
    ],
)
def test_format_the_project_cannot_take_is_refused(request, manager, fixture, filename, message):
    project = request.getfixturevalue(fixture)
    with pytest.raises(DomainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(project, manager, filename, b"data")
    assert ImportJob.objects.count() == 0


# After the import: features


def test_features_are_enqueued_by_name_after_commit(
    text_project, manager, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    # The broker is outside the project: record what would be sent to it.
    monkeypatch.setattr(celery_app, "send_task", send_task_fake(sent))
    with django_capture_on_commit_callbacks(execute=True):
        job = run(text_project, manager, "rows.csv", b"text\none\ntwo\n")
    with django_capture_on_commit_callbacks(execute=True):
        run(text_project, manager, "rows.csv", b"text\none\ntwo\n")  # nothing new, nothing to compute

    assert sent == [("learner.features_compute", [text_project.pk, job.pk])]


def test_features_progress_is_counted_atomically_and_capped(text_project, manager):
    job = run(text_project, manager, "rows.csv", b"text\none\ntwo\nthree\n")

    services.import_job_features_progress(job.pk, status="running")
    services.import_job_features_progress(job.pk, done=2)
    services.import_job_features_progress(job.pk, done=2, status="done")

    job.refresh_from_db()
    assert (job.features_done, job.features_total, job.features_status) == (3, 3, "done")
    with pytest.raises(ValueError):
        services.import_job_features_progress(job.pk, status="finished")


def test_large_projects_are_checked_chunk_by_chunk(text_project, manager, monkeypatch):
    monkeypatch.setattr(writers, "PRELOAD_MAX", -1)
    monkeypatch.setattr(writers, "ROW_CHUNK", 2)
    run(text_project, manager, "first.csv", b"external_id,text\nr1,one\nr2,two\nr3,three\n")
    job = run(text_project, manager, "second.csv", b"external_id,text\nr1,one\nr4,four\nr2,TWO\nr4,four\nr5,five\n")

    assert (job.created_count, job.unchanged_count, job.rejected_count) == (2, 1, 2)
    assert [e["reason"] for e in job.errors] == [
        "external_id 'r2' already exists with different content",
        "duplicate external_id in this file, first at row 2",
    ]


def test_a_job_the_database_kept_from_running_is_failed_once_with_its_reason(text_project, manager, settings):
    job = services.import_job_create(
        project=text_project, user=manager, filename="rows.csv", fileobj=io.BytesIO(b"external_id,text\nr1,hello\n")
    )
    services.import_job_fail(job.pk, "The database connection was lost during the import; nothing was stored.")
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert job.message.startswith("The database connection was lost")
    assert Item.objects.count() == 0 and not job.upload

    services.import_job_fail(job.pk, "a later message")  # a finished job keeps its outcome
    job.refresh_from_db()
    assert job.message.startswith("The database connection was lost")


# Short transactions: resume, take over, one import per project


def _job(project, user, name: str, data: bytes) -> ImportJob:
    return services.import_job_create(project=project, user=user, filename=name, fileobj=io.BytesIO(data))


def test_an_import_whose_database_fails_midway_resumes_after_the_stored_chunks(text_project, manager, monkeypatch):
    from django.db import OperationalError

    monkeypatch.setattr(writers, "ROW_CHUNK", 2)
    data = b"external_id,text,label\n" + b"".join(f"r{i},text {i},positive\n".encode() for i in range(7))
    job = _job(text_project, manager, "rows.csv", data)
    real_bulk_create = writers.Item.objects.bulk_create
    calls = []

    def failing_third_chunk(items, *args, **kwargs):
        calls.append(len(items))
        if len(calls) == 3:
            raise OperationalError("server closed the connection unexpectedly")
        return real_bulk_create(items, *args, **kwargs)

    monkeypatch.setattr(writers.Item.objects, "bulk_create", failing_third_chunk)
    with pytest.raises(OperationalError):
        services.import_job_run(job.pk)
    job.refresh_from_db()
    assert (job.status, job.rows_published, job.created_count, Item.objects.count()) == ("running", 4, 4, 4)

    job = services.import_job_run(job.pk)  # what the task's retry does

    assert (job.status, job.created_count, job.labels_count, job.rows_total) == ("done", 7, 7, 7)
    assert sorted(Item.objects.values_list("external_id", flat=True)) == [f"r{i}" for i in range(7)]
    assert Annotation.objects.count() == 7


def test_a_job_left_running_is_taken_over_and_its_old_run_stops(text_project, manager):
    job = _job(text_project, manager, "rows.csv", b"text\none\ntwo\n")
    old, old_attempt = runs.job_claim(job.pk)

    job = services.import_job_run(job.pk)  # a redelivered message

    assert (job.status, job.created_count, job.attempt) == ("done", 2, old_attempt + 1)
    with pytest.raises(runs.Superseded):
        runs.Run(old, old_attempt).own()


def test_one_import_per_project_runs_at_a_time(text_project, tabular_project, manager, monkeypatch):
    first = _job(text_project, manager, "a.csv", b"text\none\n")
    runs.job_claim(first.pk)
    second = _job(text_project, manager, "b.csv", b"text\ntwo\n")
    elsewhere = _job(tabular_project, manager, "c.csv", b"x\n1\n")

    with pytest.raises(runs.ImportBusy):
        services.import_job_run(second.pk)
    assert services.import_job_run(elsewhere.pk).status == "done"  # another project is not held up

    monkeypatch.setattr(services, "IMPORT_WAIT_SECONDS", 0)
    uploads = [("d.csv", io.BytesIO(b"text\nd\n"))]
    (job,) = services.import_jobs_submit(project=text_project, user=manager, uploads=uploads, wait=True)
    assert (job.status, job.message) == ("failed", services.BUSY_MESSAGE)
    second.refresh_from_db()
    assert second.status == "queued" and Item.objects.filter(project=text_project).count() == 0


def test_an_abandoned_import_is_undone_when_the_next_one_starts(text_project, manager, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    monkeypatch.setattr(writers, "ROW_CHUNK", 1)
    lost = _job(text_project, manager, "lost.csv", b"external_id,text\nl1,one\nl2,two\n")
    services.import_job_run(lost.pk)
    # As if its run had died after one chunk: running, silent for longer than the stale limit.
    Item.objects.filter(external_id="l2").delete()
    ImportJob.objects.filter(pk=lost.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(seconds=runs.IMPORT_STALE_SECONDS + 1)
    )

    job = run(text_project, manager, "n.csv", b"external_id,text\nn1,new\n")

    assert job.status == "done"
    lost.refresh_from_db()
    assert (lost.status, lost.message) == ("failed", runs.ABANDONED_MESSAGE)
    assert list(Item.objects.values_list("external_id", flat=True)) == ["n1"]


def test_gold_marks_on_items_already_there_are_written_only_at_the_finish(text_project, manager, monkeypatch):
    run(text_project, manager, "first.csv", b"external_id,text\nr1,one\nr2,two\n")

    def time_limit_hits(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "_finish", time_limit_hits)
    job = run(text_project, manager, "gold.csv", b"external_id,text,gold_label\nr1,one,positive\nr3,three,negative\n")

    assert job.status == "failed"
    assert sorted(Item.objects.values_list("external_id", "gold_label")) == [("r1", None), ("r2", None)]
