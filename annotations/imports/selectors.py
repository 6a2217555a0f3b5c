"""Reads of import jobs: a project's active and recent imports, a running import's progress, one job for its manager."""
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Q, QuerySet

from labelhub.api import NotFound

from ..models import ImportJob, Project
from ..selectors import project_get_for_user


def import_jobs_active(project_id: int) -> QuerySet[ImportJob]:
    """The project's imports still reading rows or computing features, oldest first."""
    pending = [ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
    return (
        ImportJob.objects.filter(project_id=project_id)
        .filter(Q(status__in=pending) | Q(features_status__in=pending))
        .select_related("created_by")
        .order_by("created_at")
    )


def import_jobs_recent(project: Project, limit: int = 10) -> QuerySet[ImportJob]:
    """The project's latest import jobs."""
    return ImportJob.objects.filter(project=project).select_related("created_by")[:limit]


def import_progress_key(job_id: int) -> str:
    """Cache key of a running import's progress (the import's own transaction hides it from the database)."""
    return f"import-progress:{job_id}"


def import_job_progress(job: ImportJob) -> dict[str, int] | None:
    """Bytes read, file size and rows so far of a running import job, or None."""
    # A running import is still "queued" in the database: its claim commits with its rows.
    if job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
        return None
    return cache.get(import_progress_key(job.pk))


def import_job_get_for_user(user: AbstractBaseUser, job_id: int) -> ImportJob:
    """Return the import job if the user manages its project; 404 otherwise."""
    job = ImportJob.objects.select_related("project", "created_by").filter(pk=job_id).first()
    if job is None:
        raise NotFound("Import not found.")
    try:
        project_get_for_user(user, job.project_id, min_role="manager")
    except NotFound:
        raise NotFound("Import not found.") from None
    return job
