"""Celery tasks of the annotations app; each fetches by id and calls one service."""
from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import services

IMPORT_DB_RETRIES = 5


@shared_task(
    name="annotations.import_job_run", bind=True, acks_late=True, soft_time_limit=3540, time_limit=3600,
    max_retries=IMPORT_DB_RETRIES,
)
def import_job_run(self, job_id: int) -> None:
    """Run one queued import job; a redelivered message finds it claimed and does nothing.

    A lost database connection rolls the whole import back, so it is run again from the start
    (with growing pauses); when the database stays away the job is marked failed.
    """
    try:
        services.import_job_run(job_id)
    except (OperationalError, InterfaceError) as exc:
        if self.request.retries >= self.max_retries:
            services.import_job_fail(
                job_id, "The database connection was lost during the import, which was rolled back; nothing was "
                "stored. Import the file again.",
            )
            raise
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc
