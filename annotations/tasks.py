"""Celery tasks of the annotations app; each fetches by id and calls one service."""
from celery import shared_task
from django.db import InterfaceError, OperationalError

from labelhub.celery import TaskName

from .imports import services
from .imports.runs import ImportBusy

IMPORT_DB_RETRIES = 5
IMPORT_BUSY_COUNTDOWN = 5


@shared_task(
    name=TaskName.IMPORT_JOB_RUN, bind=True, soft_time_limit=3540, time_limit=3600, max_retries=IMPORT_DB_RETRIES
)
def import_job_run(self, job_id: int) -> None:
    """Run one import job; a message for a finished job does nothing, one for a job left running resumes it.

    A lost database connection leaves the chunks stored so far, and the job is run again (with
    growing pauses) to resume after them; when the database stays away the job is undone and
    marked failed. While another import of the project runs, the job waits its turn.
    """
    try:
        services.import_job_run(job_id)
    except ImportBusy:
        # Another import of the project runs: ask again later, without spending a retry.
        import_job_run.apply_async((job_id,), countdown=IMPORT_BUSY_COUNTDOWN)
    except (OperationalError, InterfaceError) as exc:
        if self.request.retries >= self.max_retries:
            services.import_job_fail(
                job_id, "The database connection was lost during the import, which was undone; nothing was "
                "stored. Import the file again.",
            )
            raise
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc
