"""One run of an import job: its claim on the job, heartbeat and progress, its reader, and undoing what it stored."""
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..models import ImportJob, Item, Project
from .readers import Reader, reader_for
from .rows import Limits, file_format
from .selectors import import_progress_key

PROGRESS_EVERY_SECONDS = 0.5
DELETE_CHUNK = 1000
# A running import tells it is alive this often; one silent for IMPORT_STALE_SECONDS is taken as lost.
HEARTBEAT_SECONDS = 5
IMPORT_STALE_SECONDS = 120
ABANDONED_MESSAGE = "The import stopped answering and was undone; nothing was stored. Import the file again."


class ImportBusy(Exception):
    """Another import of the same project is running: run this job once it has finished."""


class Superseded(Exception):
    """Another run took this job over (a redelivered message); this run stops and leaves the job to it."""


@dataclass
class Run:
    """One run of one job: the attempt it owns, its counts, and the image files it stored."""

    job: ImportJob
    attempt: int
    saved: list[str] = field(default_factory=list)  # image files of committed chunks
    pending: list[str] = field(default_factory=list)  # image files of the chunk being published
    gold: dict[int, list[int]] = field(default_factory=dict)  # gold label id -> items already there to mark
    last_beat: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        """Tell other runs this one is alive (every HEARTBEAT_SECONDS), and stop if the job was taken over."""
        if time.monotonic() - self.last_beat < HEARTBEAT_SECONDS:
            return
        alive = ImportJob.objects.filter(
            pk=self.job.pk, attempt=self.attempt, status=ImportJob.Status.RUNNING
        ).update(heartbeat_at=timezone.now())
        if not alive:
            raise Superseded()
        self.last_beat = time.monotonic()

    def own(self) -> None:
        """Inside a transaction: lock the job's row and check this run still owns it."""
        owned = ImportJob.objects.select_for_update().filter(
            pk=self.job.pk, attempt=self.attempt, status=ImportJob.Status.RUNNING
        ).exists()
        if not owned:
            raise Superseded()

    def progress(self, done_bytes: int, total_bytes: int, *, rows: int, phase: str) -> None:
        """Show how far the run is, in the cache (the database shows only committed chunks)."""
        cache.set(
            import_progress_key(self.job.pk),
            {"bytes": done_bytes, "total": total_bytes, "rows": rows, "phase": phase},
            timeout=3600,
        )
        self.last_progress = time.monotonic()

    def progress_due(self) -> bool:
        """Say whether PROGRESS_EVERY_SECONDS have passed since the progress was last shown."""
        return time.monotonic() - self.last_progress >= PROGRESS_EVERY_SECONDS


def job_claim(job_id: int) -> tuple[ImportJob, int | None]:
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
        job_undo(other, [], attempt=None, message=ABANDONED_MESSAGE)
    return job, job.attempt


def job_reader(job: ImportJob, project: Project, fileobj: IO[bytes]) -> Reader:
    """Return the reader of a job's upload, with the project's labels and features and the configured limits."""
    limits = Limits(
        text_max_chars=settings.LABELHUB_TEXT_MAX_CHARS,
        image_max_bytes=settings.LABELHUB_IMAGE_MAX_BYTES,
        max_features=settings.LABELHUB_MAX_FEATURES,
        zip_max_entries=settings.LABELHUB_ZIP_MAX_ENTRIES,
        zip_max_bytes=settings.LABELHUB_ZIP_MAX_BYTES,
        zip_max_ratio=settings.LABELHUB_ZIP_MAX_RATIO,
    )
    return reader_for(
        fileobj,
        file_format(job.filename),
        filename=job.filename,
        kind=project.kind,
        label_names=frozenset(project.labels.values_list("name", flat=True)),
        feature_names=project.feature_names,
        limits=limits,
        embedding_field=project.embedding_field,
    )


def job_undo(job_id: int, files: Iterable[str], *, attempt: int | None, message: str) -> None:
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
        job_finish(job, ImportJob.Status.FAILED, message=message)


def job_finish(job: ImportJob, status: str, *, message: str = "") -> None:
    """Record a job's outcome (a failed job counts nothing) and delete its upload."""
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


def storage_delete(names: Iterable[str]) -> None:
    """Delete stored files by name."""
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
        storage_delete(name for name in chunk if name not in used)
