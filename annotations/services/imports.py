"""Item import: jobs, the import in short transactions (check the whole file, then publish in chunks), progress."""
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.db.models.functions import Least
from django.utils import timezone
from django.utils.text import get_valid_filename
from PIL import Image

from labelhub.api import DomainError
from labelhub.celery import TaskName, send_task_on_commit

from .. import images, importing
from ..models import Annotation, ImportJob, Item, Project, item_image_path
from ..selectors import import_progress_key

logger = logging.getLogger(__name__)

ROW_CHUNK = 2000
IMAGE_CHUNK = 64
CHUNK_MAX_BYTES = 64 * 1024 * 1024
PRELOAD_MAX = 50_000
PROGRESS_EVERY_SECONDS = 0.5
DELETE_CHUNK = 1000
# A running import tells it is alive this often; one silent for IMPORT_STALE_SECONDS is taken as lost.
HEARTBEAT_SECONDS = 5
IMPORT_STALE_SECONDS = 120
# A synchronous import (command, REST) waits this long for another import of its project.
IMPORT_WAIT_SECONDS = 300
IMPORT_WAIT_POLL_SECONDS = 0.5
BUSY_MESSAGE = (
    "Another import of this project was running for longer than this import could wait; nothing was stored. "
    "Import the file again."
)
ABANDONED_MESSAGE = "The import stopped answering and was undone; nothing was stored. Import the file again."

Upload = tuple[str, IO[bytes]]


IMPORT_NOT_QUEUED = (
    "The import could not be queued (the task broker did not answer), so it never started; nothing was stored. "
    "Import the file again."
)


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
    """Store an upload as a queued import job; raise DomainError if it is refused.

    If storing the file or the job fails, neither is left behind.
    """
    # Only printable characters: a NUL (or a surrogate from an undecodable file name) cannot be stored as text.
    filename = "".join(c for c in Path(filename.replace("\\", "/")).name if c.isprintable())[-200:]
    import_upload_check(project=project, filename=filename, size=_size(fileobj))
    job = ImportJob(project=project, created_by=user, filename=filename)
    stored_name = f"{uuid.uuid4().hex[:12]}-{get_valid_filename(filename)}"
    if hasattr(fileobj, "seek"):
        fileobj.seek(0)
    try:
        job.upload.save(stored_name, fileobj if isinstance(fileobj, File) else File(fileobj), save=False)
        job.save()
    except BaseException:
        # The storage leaves a partly written file behind when reading the upload fails.
        _storage_delete([job.upload.name or job.upload.field.generate_filename(job, stored_name)])
        raise
    return job


def _uploads_delete(jobs: Iterable[ImportJob]) -> None:
    """Delete the uploads of jobs whose rows were rolled back (or never written)."""
    _storage_delete(job.upload.name for job in jobs if job.upload)


def import_jobs_submit(*, project: Project, user: AbstractBaseUser, uploads: Sequence[Upload]) -> list[ImportJob]:
    """Store uploads as import jobs and queue each for a worker once committed."""
    for filename, fileobj in uploads:
        import_upload_check(project=project, filename=filename, size=_size(fileobj))
    jobs: list[ImportJob] = []
    try:
        with transaction.atomic():
            for filename, fileobj in uploads:
                jobs.append(import_job_create(project=project, user=user, filename=filename, fileobj=fileobj))
            for job in jobs:
                # A job the broker refuses is failed (its upload deleted): nothing would ever run it.
                refused = partial(import_job_fail, job.pk, IMPORT_NOT_QUEUED)
                send_task_on_commit(TaskName.IMPORT_JOB_RUN, [job.pk], if_refused=refused)
    except BaseException:
        _uploads_delete(jobs)  # the jobs' rows were rolled back: their files go too
        raise
    for job in jobs:
        job.refresh_from_db(fields=["status", "message", "upload"])  # failed if the broker refused it
    return jobs


def import_files(*, project: Project, user: AbstractBaseUser, uploads: Sequence[Upload]) -> list[ImportJob]:
    """Import uploads now, one after the other, after checking that none is refused."""
    for filename, fileobj in uploads:
        import_upload_check(project=project, filename=filename, size=_size(fileobj))
    jobs: list[ImportJob] = []
    try:
        with transaction.atomic():
            for filename, fileobj in uploads:
                jobs.append(import_job_create(project=project, user=user, filename=filename, fileobj=fileobj))
    except BaseException:
        _uploads_delete(jobs)  # the jobs' rows were rolled back: their files go too
        raise
    return [_import_job_run_waiting(job.pk) for job in jobs]


def import_file(
    *, project: Project, user: AbstractBaseUser | None, path_or_fileobj: str | os.PathLike | IO[bytes], filename: str
) -> ImportJob:
    """Import one file (a path or an open binary file) now and return its finished job."""
    if isinstance(path_or_fileobj, str | os.PathLike):
        with open(path_or_fileobj, "rb") as fileobj:
            job = import_job_create(project=project, user=user, filename=filename, fileobj=fileobj)
    else:
        job = import_job_create(project=project, user=user, filename=filename, fileobj=path_or_fileobj)
    return _import_job_run_waiting(job.pk)


class ImportBusy(Exception):
    """Another import of the same project is running: run this job once it has finished."""


class _Superseded(Exception):
    """Another run took this job over (a redelivered message); this run stops and leaves the job to it."""


def _import_job_run_waiting(job_id: int) -> ImportJob:
    """Run a job now, waiting up to IMPORT_WAIT_SECONDS for another import of its project to finish."""
    deadline = time.monotonic() + IMPORT_WAIT_SECONDS
    while True:
        try:
            return import_job_run(job_id)
        except ImportBusy:
            if time.monotonic() >= deadline:
                import_job_fail(job_id, BUSY_MESSAGE)
                return ImportJob.objects.get(pk=job_id)
            time.sleep(IMPORT_WAIT_POLL_SECONDS)


# How an import keeps the write lock short and a broken file out of the database.
#
# 1. Claim: one short transaction marks the job running under a new ``attempt`` number. One import
#    per project runs at a time (checked under the project's row lock), so external_id checks and
#    a tabular project's first feature columns need no lock held for the whole import.
# 2. Check: the whole file is read once with no transaction open and nothing stored. Every problem
#    of the whole file (malformed CSV or JSON, bad header, unusable ZIP) is found here, so a file
#    that cannot be parsed stores nothing. A ZIP is checked from its central directory and
#    labels.csv; a bad entry is a bad row.
# 3. Publish: the file is read again in chunks. Images are decoded and stored outside any
#    transaction; each chunk's items, pre-labels, counts and the resume point (rows_published)
#    commit together in one short transaction, after checking that this run still owns the job.
#    Other writers (another project's queue, labels) wait at most one chunk's inserts.
# 4. Finish: gold marks on items that were already there, the counts and "done" commit together.
#
# Once checked, an import is decided and rolls forward: a lost database connection or worker
# resumes from rows_published (the task retries; a redelivered message takes the job over). Only
# an import that cannot finish (an unexpected error, its time limit, the database gone for good)
# is undone: its items are deleted chunk by chunk, with their image files, and the job fails with
# "nothing was stored". Gold marks are written only at the finish, so they need no undoing.


@dataclass
class _Run:
    """One run of one job: the attempt it owns, its counts, and the image files it stored."""

    job: ImportJob
    attempt: int
    saved: list[str] = field(default_factory=list)  # image files of committed chunks
    pending: list[str] = field(default_factory=list)  # image files of the chunk being published
    gold: dict[int, list[int]] = field(default_factory=dict)  # gold label id -> items already there to mark
    last_beat: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        """Tell other runs this one is alive (every HEARTBEAT_SECONDS), and stop if the job was taken over."""
        if time.monotonic() - self.last_beat < HEARTBEAT_SECONDS:
            return
        alive = ImportJob.objects.filter(
            pk=self.job.pk, attempt=self.attempt, status=ImportJob.Status.RUNNING
        ).update(heartbeat_at=timezone.now())
        if not alive:
            raise _Superseded()
        self.last_beat = time.monotonic()

    def own(self) -> None:
        """Inside a transaction: lock the job's row and check this run still owns it."""
        owned = ImportJob.objects.select_for_update().filter(
            pk=self.job.pk, attempt=self.attempt, status=ImportJob.Status.RUNNING
        ).exists()
        if not owned:
            raise _Superseded()


def import_job_run(job_id: int) -> ImportJob:
    """Run a queued import job in short transactions and record its outcome.

    Bad input never raises: a file that cannot be parsed fails the job with a message and stores
    nothing; bad rows are counted and listed. A job already finished is returned untouched; a job
    left running by a lost run is taken over and resumed. Raises ImportBusy while another import
    of the project runs, and the database's errors, after which running the job again resumes it.
    """
    job, attempt = _claim(job_id)
    if attempt is None:
        return job
    run = _Run(job, attempt)
    try:
        _import_rows(run)
        _finish(run)
    except _Superseded:
        _storage_delete(run.pending)
        return ImportJob.objects.get(pk=job_id)
    except (OperationalError, InterfaceError):
        # The database went away: committed chunks stay, and running the job again resumes after
        # them. The chunk in flight rolled back, so its image files belong to no item.
        _storage_delete(run.pending)
        raise
    except Exception as exc:
        _job_undo(job_id, run.saved + run.pending, attempt=attempt, message=_failure_message(exc))
        if not isinstance(exc, importing.ImportFileError | SoftTimeLimitExceeded):
            raise
    finally:
        cache.delete(import_progress_key(job_id))
    return ImportJob.objects.get(pk=job_id)


def _claim(job_id: int) -> tuple[ImportJob, int | None]:
    """Claim the job for a new run in one short transaction: (job, attempt), or (job, None) if it is finished."""
    now = timezone.now()
    stale = now - timedelta(seconds=IMPORT_STALE_SECONDS)
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
            return job, None
        # Claims of one project's jobs pass one at a time (SQLite's write lock does this already).
        list(Project.objects.select_for_update().filter(pk=job.project_id).values_list("pk"))
        others = ImportJob.objects.filter(project_id=job.project_id, status=ImportJob.Status.RUNNING).exclude(pk=job_id)
        if others.filter(heartbeat_at__gte=stale).exists():
            raise ImportBusy(f"Another import of project {job.project_id} is running.")
        # Runs silent for longer than IMPORT_STALE_SECONDS are gone: a new attempt number stops
        # any that still wakes up, and their items are undone below.
        abandoned = list(others.values_list("pk", flat=True))
        others.update(attempt=F("attempt") + 1)
        job.status, job.started_at = ImportJob.Status.RUNNING, job.started_at or now
        job.attempt, job.heartbeat_at = job.attempt + 1, now
        job.save(update_fields=["status", "started_at", "attempt", "heartbeat_at"])
    for other in abandoned:
        _job_undo(other, [], attempt=None, message=ABANDONED_MESSAGE)
    return job, job.attempt


def _check_file(run: _Run, project: Project) -> None:
    """Read the whole file once for problems of the whole file, storing nothing; raise ImportFileError."""
    job = run.job
    with job.upload.open("rb") as fileobj:
        total = job.upload.size
        _progress_write(job, 0, total, rows=0, phase="checking")
        reader = _reader(job, project, fileobj)
        last_progress = time.monotonic()
        for number, _row in enumerate(reader.rows_to_check(), 1):
            if time.monotonic() - last_progress >= PROGRESS_EVERY_SECONDS:
                run.beat()
                _progress_write(job, fileobj.tell(), total, rows=number, phase="checking")
                last_progress = time.monotonic()
    with transaction.atomic():
        run.own()
        ImportJob.objects.filter(pk=job.pk).update(checked_at=timezone.now(), heartbeat_at=timezone.now())


def _reader(job: ImportJob, project: Project, fileobj: IO[bytes]) -> importing.RowReader:
    return importing.RowReader(
        fileobj,
        importing.file_format(job.filename),
        filename=job.filename,
        kind=project.kind,
        label_names=frozenset(project.labels.values_list("name", flat=True)),
        feature_names=project.feature_names,
        limits=_limits(),
    )


def import_job_fail(job_id: int, message: str) -> None:
    """Fail a job that could not be run or finished: undo whatever of it was stored and record why."""
    _job_undo(job_id, [], attempt=None, message=message)


def _job_undo(job_id: int, files: Iterable[str], *, attempt: int | None, message: str) -> None:
    """Delete a job's items (chunk by chunk) and the image files only they used, then mark it failed.

    ``attempt``: the run undoing its own job, which it must still own; None: whoever runs it now is
    stopped first (a new attempt number). A job already finished keeps its outcome.
    """
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
            return
        if attempt is not None and job.attempt != attempt:
            return  # taken over: the new run decides
        if attempt is None:
            job.attempt += 1
            job.save(update_fields=["attempt"])
        attempt = job.attempt
    names = set(files)
    while True:
        rows = list(Item.objects.filter(import_job_id=job_id).values_list("pk", "image", "thumbnail")[:DELETE_CHUNK])
        if not rows:
            break
        with transaction.atomic():
            if not ImportJob.objects.select_for_update().filter(pk=job_id, attempt=attempt).exists():
                return
            Item.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
        names.update(name for _, *images in rows for name in images if name)
    _storage_delete_unused(job.project_id, names)
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.attempt != attempt or job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
            return
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


def _storage_delete_unused(project_id: int, names: set[str]) -> None:
    """Delete image files no item of the project shows (names are content-addressed, so items may share one)."""
    names = sorted(names)
    for start in range(0, len(names), DELETE_CHUNK):
        chunk = names[start:start + DELETE_CHUNK]
        used = set()
        for image, thumbnail in Item.objects.filter(project_id=project_id).filter(
            Q(image__in=chunk) | Q(thumbnail__in=chunk)
        ).values_list("image", "thumbnail"):
            used.update((image, thumbnail))
        _storage_delete(name for name in chunk if name not in used)


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


def _progress_write(job: ImportJob, done_bytes: int, total_bytes: int, *, rows: int, phase: str) -> None:
    cache.set(
        import_progress_key(job.pk),
        {"bytes": done_bytes, "total": total_bytes, "rows": rows, "phase": phase},
        timeout=3600,
    )


# One existing item as the import sees it: content hash, primary key, and the job that created it.
Existing = tuple[str, int, int | None]


def _import_rows(run: _Run) -> None:
    """Check the job's file whole, then store its new items chunk by chunk, each chunk in a short transaction."""
    job = ImportJob.objects.get(pk=run.job.pk)
    run.job = job
    project = Project.objects.get(pk=job.project_id)
    if job.checked_at is None:
        _check_file(run, project)
    label_ids = dict(project.labels.values_list("name", "pk"))
    user_id = job.created_by_id
    # Only items from before this import need looking up (``seen`` catches this file's own).
    # A small project's are read once: per-chunk lookups would be planned for the small
    # project the statistics describe and rescan every row this import adds, chunk after chunk.
    before = Item.objects.filter(project=project)
    columns = ("external_id", "content_hash", "pk", "import_job_id")
    preloaded: dict[str, Existing] | None = None
    if before.count() <= PRELOAD_MAX:
        preloaded = {external_id: rest for external_id, *rest in before.values_list(*columns)}
    seen: dict[str, int] = {}
    # Gold marks for items already there are written at the finish, so that an undone import needs no undoing of them.
    run.gold = {}
    errors_kept = settings.LABELHUB_IMPORT_ERRORS_KEPT
    chunk_size = IMAGE_CHUNK if project.kind == Project.Kind.IMAGE else ROW_CHUNK
    resume_after = job.rows_published  # rows of the file a lost run of this job already stored
    features_fixed = bool(project.feature_names)
    last_progress = time.monotonic()

    with job.upload.open("rb") as fileobj:
        total_bytes = job.upload.size
        _progress_write(job, 0, total_bytes, rows=job.rows_published, phase="storing")
        reader = _reader(job, project, fileobj)
        rows_done = 0
        for chunk in _chunks(reader, chunk_size):
            run.beat()
            rows_done += len(chunk)
            if preloaded is not None:
                existing = preloaded
            else:
                wanted = [r.external_id for r in chunk if r.error is None]
                existing = {e: rest for e, *rest in before.filter(external_id__in=wanted).values_list(*columns)}
            resumed = rows_done <= resume_after
            items: list[Item] = []
            labeled: list[tuple[Item, int]] = []
            counts = {"rows_total": 0, "unchanged_count": 0, "rejected_count": 0}
            new_errors: list[dict[str, Any]] = []
            for row in chunk:
                counts["rows_total"] += 1
                if row.error is None:
                    row.error = _conflict(row, seen, existing, user_id, job.pk)
                mine = row.error is None and existing.get(row.external_id, ("", 0, None))[2] == job.pk
                if row.error is None and row.external_id in existing and not mine:
                    counts["unchanged_count"] += 1
                    if row.gold_label:
                        # Importing the same rows again with a gold_label column marks the items already there.
                        run.gold.setdefault(label_ids[row.gold_label], []).append(existing[row.external_id][1])
                    continue
                if resumed:
                    continue  # stored, counted and listed by the run that published this chunk
                media = ("", "")
                if row.error is None and row.image_data is not None:
                    try:
                        media = _image_store(project.pk, row, run.pending)
                    except importing.RowError as exc:
                        row.error = str(exc)
                    run.beat()
                if row.error is not None:
                    counts["rejected_count"] += 1
                    new_errors.append({"row": row.number, "where": row.where, "reason": row.error})
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
            if resumed:
                continue
            with transaction.atomic():
                run.own()
                if items and not features_fixed and project.kind == Project.Kind.TABULAR:
                    # Only a file that yields items fixes the columns, so a botched first file does not.
                    Project.objects.filter(pk=project.pk).update(feature_names=reader.feature_names)
                    features_fixed = True
                Item.objects.bulk_create(items)
                Annotation.objects.bulk_create(
                    Annotation(item=item, label_id=label_id, annotator_id=user_id, source=Annotation.Source.IMPORT)
                    for item, label_id in labeled
                )
                job.rows_total += counts["rows_total"]
                job.unchanged_count += counts["unchanged_count"]
                job.rejected_count += counts["rejected_count"]
                job.created_count += len(items)
                job.labels_count += len(labeled)
                job.errors = job.errors + new_errors[:max(0, errors_kept - len(job.errors))]
                job.rows_published = rows_done
                job.heartbeat_at = timezone.now()
                job.save(update_fields=[
                    "rows_total", "unchanged_count", "rejected_count", "created_count", "labels_count", "errors",
                    "rows_published", "heartbeat_at",
                ])
            run.saved += run.pending
            run.pending = []
            if time.monotonic() - last_progress >= PROGRESS_EVERY_SECONDS:
                _progress_write(job, fileobj.tell(), total_bytes, rows=job.rows_total, phase="storing")
                last_progress = time.monotonic()


def _finish(run: _Run) -> None:
    """Write the gold marks on items already there, and the job's outcome, in one transaction."""
    with transaction.atomic():
        run.own()
        job = ImportJob.objects.get(pk=run.job.pk)
        for gold_label_id, item_ids in sorted(run.gold.items()):
            for start in range(0, len(item_ids), DELETE_CHUNK):
                Item.objects.filter(pk__in=item_ids[start:start + DELETE_CHUNK]).update(gold_label_id=gold_label_id)
        _job_finish(job, ImportJob.Status.DONE)
        if job.created_count:
            # robust: the import is committed either way; learner reconciles missing features.
            send_task_on_commit(TaskName.FEATURES_COMPUTE, [job.project_id, job.pk])


def _conflict(
    row: importing.Row, seen: dict[str, int], existing: dict[str, Existing], user_id: int | None, job_id: int
) -> str | None:
    """Why a parsed row clashes with an earlier row of the file or an existing item, or None."""
    first = seen.setdefault(row.external_id, row.number)
    if first != row.number:
        if row.derived_id:
            return f"same content as row {first} (neither has an external_id)"
        return f"duplicate external_id in this file, first at row {first}"
    found = existing.get(row.external_id)
    if found is not None and found[0] != row.content_hash:
        return f"external_id {row.external_id!r} already exists with different content"
    if row.label and user_id is None and (found is None or found[2] == job_id):
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
