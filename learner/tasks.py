"""Celery tasks of learner: thin, they take ids and call one service or selector."""
from datetime import timedelta

from celery import group, shared_task
from django.utils import timezone

from learner import selectors
from learner.services import features as feature_services
from learner.services import scoring as scoring_services

# Work enqueued less than this long ago is left to the messages already on the way.
RECONCILE_GRACE = timedelta(minutes=10)


@shared_task(name="learner.features_compute", acks_late=True, time_limit=300, soft_time_limit=240)
def features_compute(project_id: int, job_id: int | None = None) -> int:
    """Dispatch one chunk task per LABELHUB_FEATURE_CHUNK items lacking features (of the job, or all)."""
    chunks = feature_services.features_plan_start(project_id, job_id)
    if chunks:
        group(features_compute_chunk.si(project_id, job_id, item_ids) for item_ids in chunks).apply_async()
    return len(chunks)


@shared_task(name="learner.features_compute_chunk", acks_late=True, time_limit=900, soft_time_limit=840)
def features_compute_chunk(project_id: int, job_id: int | None, item_ids: list[int]) -> int:
    """Compute and store the features of these items; progress goes to each item's own import job.

    ``job_id`` names the job the chunk was planned for, so that the worker's log shows it.
    """
    return feature_services.features_compute_chunk(project_id, item_ids)


@shared_task(name="learner.features_reconcile", acks_late=True, time_limit=300, soft_time_limit=240)
def features_reconcile() -> int:
    """Enqueue features_compute for every project and import job still lacking features."""
    targets = selectors.features_reconcile_targets(timezone.now() - RECONCILE_GRACE)
    for project_id, job_id in targets:
        features_compute.delay(project_id, job_id)
    return len(targets)


@shared_task(name="learner.score_pool", acks_late=True, time_limit=300, soft_time_limit=240)
def score_pool(project_id: int, newer_than: int | None = None) -> int:
    """Plan a scoring of the unlabeled pool by the live model and dispatch one chunk task per id range.

    ``newer_than``: only a scoring planned after this scoring id stands in for this request.
    Returns the number of chunks dispatched (0 when another scoring stands in).
    """
    plan = scoring_services.score_pool_plan(project_id, newer_than=newer_than)
    if plan is None or not plan.ranges:
        return 0
    group(score_chunk.si(project_id, plan.scoring_id, lo, hi) for lo, hi in plan.ranges).apply_async()
    return len(plan.ranges)


@shared_task(name="learner.score_chunk", acks_late=True, time_limit=300, soft_time_limit=240)
def score_chunk(project_id: int, scoring_id: int, lo: int, hi: int) -> int:
    """Score the unlabeled items with ids in [lo, hi] under the scoring; the last chunk finishes the scoring."""
    return scoring_services.score_chunk(project_id, scoring_id, (lo, hi))
