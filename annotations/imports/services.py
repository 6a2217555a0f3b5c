"""Item import: store uploads as jobs, queue or run them in short transactions, record their features' progress."""
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.files import File
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.db.models.functions import Least
from django.utils import timezone
from django.utils.text import get_valid_filename

from labelhub.api import DomainError
from labelhub.celery import TaskName, send_task_on_commit

from ..models import ImportJob, Item, Project
from .rows import KIND_FORMATS, KIND_FORMATS_TEXT, ImportFileError, file_format
from .runs import DELETE_CHUNK, ImportBusy, Run, Superseded, job_claim, job_finish, job_reader, job_undo, storage_delete
from .selectors import import_progress_key
from .writers import rows_publish

# A synchronous import (command, REST) waits this long for another import of its project.
IMPORT_WAIT_SECONDS = 300
IMPORT_WAIT_POLL_SECONDS = 0.5
BUSY_MESSAGE = (
    "Another import of this project was running for longer than this import could wait; nothing was stored. "
    "Import the file again."
)
IMPORT_NOT_QUEUED = (
    "The import could not be queued (the task broker did not answer), so it never started; nothing was stored. "
    "Import the file again."
)

Upload = tuple[str, IO[bytes]]


def _upload_check(*, project: Project, filename: str, size: int) -> None:
    """Refuse an upload the project cannot import: too large, or a format its kind does not take."""
    limit = settings.LABELHUB_IMPORT_MAX_BYTES
    if size > limit:
        raise DomainError(f"{filename} is {size:,} bytes, above the {limit:,}-byte import limit.")
    takes = f"{project.get_kind_display()} projects import {KIND_FORMATS_TEXT[project.kind]}."
    try:
        fmt = file_format(filename)
    except ImportFileError as exc:
        raise DomainError(f"{filename}: {exc} {takes}") from exc
    if fmt not in KIND_FORMATS[project.kind]:
        raise DomainError(f"{filename}: {takes}")


def import_job_create(
    *, project: Project, user: AbstractBaseUser | None, filename: str, fileobj: IO[bytes]
) -> ImportJob:
    """Store an upload as a queued import job; raise DomainError if it is refused.

    If storing the file or the job fails, neither is left behind.
    """
    # Only printable characters: a NUL (or a surrogate from an undecodable file name) cannot be stored as text.
    filename = "".join(c for c in Path(filename.replace("\\", "/")).name if c.isprintable())[-200:]
    _upload_check(project=project, filename=filename, size=_size(fileobj))
    job = ImportJob(project=project, created_by=user, filename=filename)
    stored_name = f"{uuid.uuid4().hex[:12]}-{get_valid_filename(filename)}"
    if hasattr(fileobj, "seek"):
        fileobj.seek(0)
    try:
        job.upload.save(stored_name, fileobj if isinstance(fileobj, File) else File(fileobj), save=False)
        job.save()
    except BaseException:
        # The storage leaves a partly written file behind when reading the upload fails.
        storage_delete([job.upload.name or job.upload.field.generate_filename(job, stored_name)])
        raise
    return job


def import_jobs_submit(
    *, project: Project, user: AbstractBaseUser | None, uploads: Sequence[Upload], wait: bool = False
) -> list[ImportJob]:
    """Store uploads as import jobs, all or none, then queue each for a worker, or with ``wait`` run them here.

    Every upload is checked before any is stored. Queued jobs come back queued (failed if the broker
    refused them); with ``wait`` they come back finished, run one after the other, each waiting up to
    IMPORT_WAIT_SECONDS for another import of the project.
    """
    for filename, fileobj in uploads:
        _upload_check(project=project, filename=filename, size=_size(fileobj))
    jobs: list[ImportJob] = []
    try:
        with transaction.atomic():
            for filename, fileobj in uploads:
                jobs.append(import_job_create(project=project, user=user, filename=filename, fileobj=fileobj))
            if not wait:
                for job in jobs:
                    # A job the broker refuses is failed (its upload deleted): nothing would ever run it.
                    refused = partial(import_job_fail, job.pk, IMPORT_NOT_QUEUED)
                    send_task_on_commit(TaskName.IMPORT_JOB_RUN, [job.pk], if_refused=refused)
    except BaseException:
        _uploads_delete(jobs)  # the jobs' rows were rolled back: their files go too
        raise
    if wait:
        return [_import_job_run_waiting(job.pk) for job in jobs]
    for job in jobs:
        job.refresh_from_db(fields=["status", "message", "upload"])  # failed if the broker refused it
    return jobs


def _size(fileobj: IO[bytes]) -> int:
    size = getattr(fileobj, "size", None)
    if size is None:
        position = fileobj.tell()
        size = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(position)
    return size


def _uploads_delete(jobs: Iterable[ImportJob]) -> None:
    """Delete the uploads of jobs whose rows were rolled back (or never written)."""
    storage_delete(job.upload.name for job in jobs if job.upload)


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
# 3. Publish (writers.py): the file is read again in chunks. Images are decoded and stored outside
#    any transaction; each chunk's items, pre-labels, counts and the resume point (rows_published)
#    commit together in one short transaction, after checking that this run still owns the job.
#    Other writers (another project's queue, labels) wait at most one chunk's inserts. Rows' vectors
#    commit with their chunk too: new items' vectors, and new vectors of items already there (which
#    an undone import leaves replaced); the first vector ever stored fixes the project's dimension.
# 4. Finish: gold marks on items that were already there, the counts and "done" commit together.
#
# Once checked, an import is decided and rolls forward: a lost database connection or worker
# resumes from rows_published (the task retries; a redelivered message takes the job over). Only
# an import that cannot finish (an unexpected error, its time limit, the database gone for good)
# is undone: its items are deleted chunk by chunk, with their image files, and the job fails with
# "nothing was stored". Gold marks are written only at the finish, so they need no undoing.


def import_job_run(job_id: int) -> ImportJob:
    """Run a queued import job in short transactions and record its outcome.

    Bad input never raises: a file that cannot be parsed fails the job with a message and stores
    nothing; bad rows are counted and listed. A job already finished is returned untouched; a job
    left running by a lost run is taken over and resumed. Raises ImportBusy while another import
    of the project runs, and the database's errors, after which running the job again resumes it.
    """
    job, attempt = job_claim(job_id)
    if attempt is None:
        return job
    run = Run(job, attempt)
    try:
        _import(run)
        _finish(run)
    except Superseded:
        storage_delete(run.pending)
        return ImportJob.objects.get(pk=job_id)
    except (OperationalError, InterfaceError):
        # The database went away: committed chunks stay, and running the job again resumes after
        # them. The chunk in flight rolled back, so its image files belong to no item.
        storage_delete(run.pending)
        raise
    except Exception as exc:
        job_undo(job_id, run.saved + run.pending, attempt=attempt, message=_failure_message(exc))
        if not isinstance(exc, ImportFileError | SoftTimeLimitExceeded):
            raise
    finally:
        cache.delete(import_progress_key(job_id))
    return ImportJob.objects.get(pk=job_id)


def import_job_fail(job_id: int, message: str) -> None:
    """Fail a job that could not be run or finished: undo whatever of it was stored and record why."""
    job_undo(job_id, [], attempt=None, message=message)


def _import(run: Run) -> None:
    """Check the job's file whole (unless a lost run of the job did), then publish its new items."""
    run.job = ImportJob.objects.get(pk=run.job.pk)
    project = Project.objects.get(pk=run.job.project_id)
    if run.job.checked_at is None:
        _check_file(run, project)
    rows_publish(run, project)


def _check_file(run: Run, project: Project) -> None:
    """Read the whole file once for problems of the whole file, storing nothing; raise ImportFileError."""
    job = run.job
    with job.upload.open("rb") as fileobj:
        total = job.upload.size
        run.progress(0, total, rows=0, phase="checking")
        reader = job_reader(job, project, fileobj)
        for number, _row in enumerate(reader.rows_to_check(), 1):
            if run.progress_due():
                run.beat()
                run.progress(fileobj.tell(), total, rows=number, phase="checking")
    with transaction.atomic():
        run.own()
        ImportJob.objects.filter(pk=job.pk).update(checked_at=timezone.now(), heartbeat_at=timezone.now())


def _finish(run: Run) -> None:
    """Write the gold marks on items already there, and the job's outcome, in one transaction."""
    with transaction.atomic():
        run.own()
        job = ImportJob.objects.get(pk=run.job.pk)
        for gold_label_id, item_ids in sorted(run.gold.items()):
            for start in range(0, len(item_ids), DELETE_CHUNK):
                Item.objects.filter(pk__in=item_ids[start:start + DELETE_CHUNK]).update(gold_label_id=gold_label_id)
        job_finish(job, ImportJob.Status.DONE)
        if job.created_count:
            # robust: the import is committed either way; learner reconciles missing features.
            send_task_on_commit(TaskName.FEATURES_COMPUTE, [job.project_id, job.pk])


def _failure_message(exc: Exception) -> str:
    if isinstance(exc, ImportFileError):
        return str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        return "The import took longer than its time limit and was rolled back; nothing was stored. Split the file."
    return "The import stopped on an unexpected error and was rolled back; nothing was stored."


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
