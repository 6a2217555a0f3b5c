"""Item import: jobs, the streaming import in one transaction, and feature progress."""
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.db.models.functions import Least
from django.utils import timezone
from django.utils.text import get_valid_filename

from PIL import Image

from labelhub.api import DomainError
from labelhub.celery import send_task_on_commit

from .. import images, importing
from ..models import Annotation, ImportJob, Item, Project, item_image_path
from ..selectors import import_progress_key

IMPORT_TASK = "annotations.import_job_run"
FEATURES_TASK = "learner.features_compute"
ROW_CHUNK = 2000
IMAGE_CHUNK = 64
CHUNK_MAX_BYTES = 64 * 1024 * 1024
PRELOAD_MAX = 50_000
PROGRESS_EVERY_SECONDS = 0.5

Upload = tuple[str, IO[bytes]]


def _enqueue(name: str, args: list[Any]) -> None:
    """Send a task by name, so that this app never imports the app that runs it."""
    current_app.send_task(name, args=args)


def _size(fileobj: IO[bytes]) -> int:
    size = getattr(fileobj, "size", None)
    if size is None:
        position = fileobj.tell()
        size = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(position)
    return size


def image_check(data: bytes) -> int:
    """Check an uploaded image from its header as import does (bytes, format, pixel limit); return its pixel count.

    Raises DomainError naming the problem. Nothing is decoded: a batch can be checked whole first.
    """
    limit = settings.LABELHUB_IMAGE_MAX_BYTES
    if len(data) > limit:
        raise DomainError(f"image is larger than the {limit:,}-byte limit.")
    try:
        width, height = images.image_header(data, max_pixels=settings.LABELHUB_IMAGE_MAX_PIXELS).size
    except images.ImageRefused as exc:
        raise DomainError(f"{exc}.") from None
    return width * height


def image_decode(data: bytes, *, draft: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
    """Check an uploaded image as import does (bytes, format, pixel limit, integrity) and return it decoded.

    Raises DomainError naming the problem; ``draft`` lets a JPEG decode at a reduced scale.
    """
    image_check(data)
    try:
        return images.image_open(data, max_pixels=settings.LABELHUB_IMAGE_MAX_PIXELS, draft=draft)
    except images.ImageRefused as exc:
        raise DomainError(f"{exc}.") from None


def import_upload_check(*, project: Project, filename: str, size: int) -> None:
    """Refuse an upload the project cannot import: too large, or a format its kind does not take."""
    limit = settings.LABELHUB_IMPORT_MAX_BYTES
    if size > limit:
        raise DomainError(f"{filename} is {size:,} bytes, above the {limit:,}-byte import limit.")
    takes = f"{project.get_kind_display()} projects import {importing.KIND_FORMATS_TEXT[project.kind]}."
    try:
        fmt = importing.file_format(filename)
    except importing.ImportFileError as exc:
        raise DomainError(f"{filename}: {exc} {takes}") from exc
    if fmt not in importing.KIND_FORMATS[project.kind]:
        raise DomainError(f"{filename}: {takes}")


def import_job_create(
    *, project: Project, user: AbstractBaseUser | None, filename: str, fileobj: IO[bytes]
) -> ImportJob:
    """Store an upload as a queued import job; raise DomainError if it is refused."""
    filename = Path(filename.replace("\\", "/")).name[-200:]
    import_upload_check(project=project, filename=filename, size=_size(fileobj))
    job = ImportJob(project=project, created_by=user, filename=filename)
    stored_name = f"{uuid.uuid4().hex[:12]}-{get_valid_filename(filename)}"
    if hasattr(fileobj, "seek"):
        fileobj.seek(0)
    job.upload.save(stored_name, fileobj if isinstance(fileobj, File) else File(fileobj), save=False)
    job.save()
    return job


def import_jobs_submit(*, project: Project, user: AbstractBaseUser, uploads: Sequence[Upload]) -> list[ImportJob]:
    """Store uploads as import jobs and queue each for a worker once committed."""
    for filename, fileobj in uploads:
        import_upload_check(project=project, filename=filename, size=_size(fileobj))
    with transaction.atomic():
        jobs = [import_job_create(project=project, user=user, filename=f, fileobj=fo) for f, fo in uploads]
        for job in jobs:
            transaction.on_commit(partial(_enqueue, IMPORT_TASK, [job.pk]))
    return jobs


def import_files(*, project: Project, user: AbstractBaseUser, uploads: Sequence[Upload]) -> list[ImportJob]:
    """Import uploads now, one transaction per file, after checking that none is refused."""
    for filename, fileobj in uploads:
        import_upload_check(project=project, filename=filename, size=_size(fileobj))
    jobs = [import_job_create(project=project, user=user, filename=f, fileobj=fo) for f, fo in uploads]
    return [import_job_run(job.pk) for job in jobs]


def import_file(
    *, project: Project, user: AbstractBaseUser | None, path_or_fileobj: str | os.PathLike | IO[bytes], filename: str
) -> ImportJob:
    """Import one file (a path or an open binary file) now and return its finished job."""
    if isinstance(path_or_fileobj, str | os.PathLike):
        with open(path_or_fileobj, "rb") as fileobj:
            job = import_job_create(project=project, user=user, filename=filename, fileobj=fileobj)
    else:
        job = import_job_create(project=project, user=user, filename=filename, fileobj=path_or_fileobj)
    return import_job_run(job.pk)


def import_job_run(job_id: int) -> ImportJob:
    """Run a queued import job in one transaction and record its outcome.

    Bad input never raises: a file that cannot be parsed fails the job with a message and
    stores nothing; bad rows are counted and listed. A job that is not queued (a redelivered
    task, or one already run) is returned untouched.
    """
    saved: list[str] = []
    try:
        with transaction.atomic():
            # Claimed inside the import's own transaction: a worker killed mid-import rolls the
            # claim back with the rows, so the redelivered message runs the job again; a duplicate
            # message waits on the row lock and then finds the job finished.
            job = ImportJob.objects.select_for_update().get(pk=job_id)
            if job.status != ImportJob.Status.QUEUED:
                return job
            job.status, job.started_at = ImportJob.Status.RUNNING, timezone.now()
            _import_rows(job, saved)
            _job_finish(job, ImportJob.Status.DONE)
            if job.created_count:
                # robust: the import is committed either way; learner reconciles missing features.
                send_task_on_commit(FEATURES_TASK, [job.project_id, job.pk])
    except (OperationalError, InterfaceError):
        # The database went away mid-import: the claim rolled back with the rows, so the job is
        # still queued and whoever called this (the task) can run it again from the start.
        _storage_delete(saved)
        raise
    except Exception as exc:
        _storage_delete(saved)  # the rollback took the rows; take the image files too
        job = ImportJob.objects.get(pk=job_id)
        job.started_at = job.started_at or timezone.now()
        _job_finish(job, ImportJob.Status.FAILED, message=_failure_message(exc))
        if not isinstance(exc, importing.ImportFileError | SoftTimeLimitExceeded):
            raise
    finally:
        cache.delete(import_progress_key(job_id))
    return job


def import_job_fail(job_id: int, message: str) -> None:
    """Mark a job that could not be run as failed; nothing of it was stored."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
            job.started_at = job.started_at or timezone.now()
            _job_finish(job, ImportJob.Status.FAILED, message=message)


def _failure_message(exc: Exception) -> str:
    if isinstance(exc, importing.ImportFileError):
        return str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        return "The import took longer than its time limit and was rolled back; nothing was stored. Split the file."
    return "The import stopped on an unexpected error and was rolled back; nothing was stored."


def _job_finish(job: ImportJob, status: str, *, message: str = "") -> None:
    job.status, job.message, job.finished_at = status, message, timezone.now()
    if status == ImportJob.Status.FAILED:
        job.rows_total = job.created_count = job.unchanged_count = job.rejected_count = job.labels_count = 0
        job.errors = []
    job.features_total = job.created_count
    job.features_status = ImportJob.Status.QUEUED if job.created_count else ImportJob.Status.DONE
    # The upload only carried the file to the worker; the items hold its data now.
    if job.upload:
        job.upload.delete(save=False)
    job.save()


def _storage_delete(names: Iterable[str]) -> None:
    for name in names:
        default_storage.delete(name)


def _limits() -> importing.Limits:
    return importing.Limits(
        text_max_chars=settings.LABELHUB_TEXT_MAX_CHARS,
        image_max_bytes=settings.LABELHUB_IMAGE_MAX_BYTES,
        image_max_pixels=settings.LABELHUB_IMAGE_MAX_PIXELS,
        max_features=settings.LABELHUB_MAX_FEATURES,
        zip_max_entries=settings.LABELHUB_ZIP_MAX_ENTRIES,
        zip_max_bytes=settings.LABELHUB_ZIP_MAX_BYTES,
        zip_max_ratio=settings.LABELHUB_ZIP_MAX_RATIO,
    )


def _chunks(rows: Iterable[importing.Row], size: int) -> Iterator[list[importing.Row]]:
    chunk: list[importing.Row] = []
    used = 0
    for row in rows:
        chunk.append(row)
        used += row.nbytes
        if len(chunk) >= size or used >= CHUNK_MAX_BYTES:
            yield chunk
            chunk, used = [], 0
    if chunk:
        yield chunk


def _progress_write(job: ImportJob, done_bytes: int, total_bytes: int) -> None:
    cache.set(
        import_progress_key(job.pk),
        {"bytes": done_bytes, "total": total_bytes, "rows": job.rows_total},
        timeout=3600,
    )


def _import_rows(job: ImportJob, saved: list[str]) -> None:
    """Read the job's file and store its new items in chunks; record counts and rejected rows on the job."""
    # Locked for the whole import: one import per project at a time keeps external_id checks
    # and the first import's feature columns free of races.
    project = Project.objects.select_for_update().get(pk=job.project_id)
    label_ids = dict(project.labels.values_list("name", "pk"))
    user_id = job.created_by_id
    # Only items from before this import need looking up (``seen`` catches this file's own).
    # A small project's are read once: per-chunk lookups would be planned for the small
    # project the statistics describe and rescan every row this import adds, chunk after chunk.
    before = Item.objects.filter(project=project)
    preloaded = dict(before.values_list("external_id", "content_hash")) if before.count() <= PRELOAD_MAX else None
    seen: dict[str, int] = {}
    job.errors = []
    errors_kept = settings.LABELHUB_IMPORT_ERRORS_KEPT
    chunk_size = IMAGE_CHUNK if project.kind == Project.Kind.IMAGE else ROW_CHUNK
    last_progress = time.monotonic()

    def reject(row: importing.Row) -> None:
        job.rejected_count += 1
        if len(job.errors) < errors_kept:
            job.errors.append({"row": row.number, "where": row.where, "reason": row.error})

    with job.upload.open("rb") as fileobj:
        total_bytes = job.upload.size
        _progress_write(job, 0, total_bytes)
        reader = importing.RowReader(
            fileobj,
            importing.file_format(job.filename),
            filename=job.filename,
            kind=project.kind,
            label_names=frozenset(label_ids),
            feature_names=project.feature_names,
            limits=_limits(),
        )
        for chunk in _chunks(reader, chunk_size):
            existing = preloaded if preloaded is not None else dict(
                before.filter(external_id__in=[r.external_id for r in chunk if r.error is None]).values_list(
                    "external_id", "content_hash"
                )
            )
            items: list[Item] = []
            labeled: list[tuple[Item, int]] = []
            gold_existing: dict[int, list[str]] = {}
            for row in chunk:
                job.rows_total += 1
                if row.error is None:
                    row.error = _conflict(row, seen, existing, user_id)
                if row.error is None and row.external_id in existing:
                    job.unchanged_count += 1
                    if row.gold_label:
                        # Importing the same rows again with a gold_label column marks the items already there.
                        gold_existing.setdefault(label_ids[row.gold_label], []).append(row.external_id)
                    continue
                media = ("", "")
                if row.error is None and row.image_data is not None:
                    try:
                        media = _image_store(project.pk, row, saved)
                    except importing.RowError as exc:
                        row.error = str(exc)
                if row.error is not None:
                    reject(row)
                    continue
                item = Item(
                    project_id=project.pk, import_job_id=job.pk, external_id=row.external_id, text=row.text,
                    values=row.values, metadata=row.metadata, content_hash=row.content_hash,
                    image=media[0], thumbnail=media[1],
                    gold_label_id=label_ids[row.gold_label] if row.gold_label else None,
                )
                items.append(item)
                if row.label:
                    labeled.append((item, label_ids[row.label]))
                    # A pre-labeled item counts towards the overlap like a label from the queue.
                    item.label_count, item.queue_done = 1, project.overlap <= 1
            Item.objects.bulk_create(items)
            for gold_label_id, external_ids in gold_existing.items():
                Item.objects.filter(project_id=project.pk, external_id__in=external_ids).update(gold_label_id=gold_label_id)
            Annotation.objects.bulk_create(
                Annotation(item=item, label_id=label_id, annotator_id=user_id, source=Annotation.Source.IMPORT)
                for item, label_id in labeled
            )
            job.created_count += len(items)
            job.labels_count += len(labeled)
            if time.monotonic() - last_progress >= PROGRESS_EVERY_SECONDS:
                _progress_write(job, fileobj.tell(), total_bytes)
                last_progress = time.monotonic()

    if project.kind == Project.Kind.TABULAR and not project.feature_names and job.created_count:
        # Only a file that yielded items fixes the columns, so a botched first file does not.
        Project.objects.filter(pk=project.pk).update(feature_names=reader.feature_names)


def _conflict(row: importing.Row, seen: dict[str, int], existing: dict[str, str], user_id: int | None) -> str | None:
    """Why a parsed row clashes with an earlier row of the file or an existing item, or None."""
    first = seen.setdefault(row.external_id, row.number)
    if first != row.number:
        if row.derived_id:
            return f"same content as row {first} (neither has an external_id)"
        return f"duplicate external_id in this file, first at row {first}"
    if existing.get(row.external_id, row.content_hash) != row.content_hash:
        return f"external_id {row.external_id!r} already exists with different content"
    if row.label and user_id is None and row.external_id not in existing:
        return "pre-labeled rows need an importing user"
    return None


def _image_store(project_id: int, row: importing.Row, saved: list[str]) -> tuple[str, str]:
    """Store an image and its thumbnail under content-addressed names; return both names."""
    names = [item_image_path(Item(project_id=project_id), f"{row.content_hash}{s}.png") for s in ("", "-thumb")]
    if all(default_storage.exists(name) for name in names):
        return names[0], names[1]  # stored only after passing the checks below
    image, thumbnail = importing.image_prepare(row.image_data, max_pixels=settings.LABELHUB_IMAGE_MAX_PIXELS)
    for i, content in enumerate((image, thumbnail)):
        if not default_storage.exists(names[i]):
            names[i] = default_storage.save(names[i], ContentFile(content))
            saved.append(names[i])
    return names[0], names[1]


def import_job_features_progress(job_id: int, *, done: int = 0, status: str | None = None) -> None:
    """Record feature computation progress of an import job: add ``done`` items, set ``status``."""
    updates: dict[str, Any] = {}
    if done:
        # Capped, so that a redelivered feature task cannot push the bar past 100 %.
        updates["features_done"] = Least(F("features_done") + done, F("features_total"))
    if status is not None:
        if status not in ImportJob.Status.values:
            raise ValueError(f"unknown features status {status!r}")
        updates["features_status"] = status
    if updates:
        ImportJob.objects.filter(pk=job_id).update(**updates)
