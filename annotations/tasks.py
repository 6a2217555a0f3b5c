"""Celery tasks of the annotations app; each fetches by id and calls one service."""
from celery import shared_task

from . import services


@shared_task(name="annotations.import_job_run", acks_late=True, soft_time_limit=3540, time_limit=3600)
def import_job_run(job_id: int) -> None:
    """Run one queued import job; a redelivered message finds it claimed and does nothing."""
    services.import_job_run(job_id)
