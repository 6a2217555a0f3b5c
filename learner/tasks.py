"""Celery tasks of learner: thin, they take ids and call one service or selector."""
from datetime import timedelta

from celery import group, shared_task
from django.utils import timezone

from annotations.models import Project
from labelhub.celery import TaskName
from learner import selectors
from learner.services import experiments as experiment_services
from learner.services import features as feature_services
from learner.services import scoring as scoring_services
from learner.services import training as training_services
from learner.services import triggers

# Work enqueued less than this long ago is left to the messages already on the way.
RECONCILE_GRACE = timedelta(minutes=10)


@shared_task(name=TaskName.FEATURES_COMPUTE, time_limit=300, soft_time_limit=240)
def features_compute(project_id: int, job_id: int | None = None) -> int:
    """Dispatch one chunk task per LABELHUB_FEATURE_CHUNK items lacking features (of the job, or all)."""
    chunks = feature_services.features_plan_start(project_id, job_id)
    if chunks:
        group(features_compute_chunk.si(project_id, job_id, item_ids) for item_ids in chunks).apply_async()
    return len(chunks)


@shared_task(name=TaskName.FEATURES_COMPUTE_CHUNK)
def features_compute_chunk(project_id: int, job_id: int | None, item_ids: list[int]) -> int:
    """Compute and store the features of these items; progress goes to each item's own import job.

    ``job_id`` names the job the chunk was planned for, so that the worker's log shows it.
    """
    return feature_services.features_compute_chunk(project_id, item_ids)


@shared_task(name=TaskName.FEATURES_REFRESH, time_limit=300, soft_time_limit=240)
def features_refresh(project_id: int, item_ids: list[int] | None = None) -> int:
    """Compute features again: of these items (their embeddings changed), or (None) of every item under a new featurizer."""
    chunks = feature_services.features_refresh(project_id, item_ids)
    if chunks:
        group(features_compute_chunk.si(project_id, None, chunk) for chunk in chunks).apply_async()
    return len(chunks)


@shared_task(name=TaskName.FEATURES_RECONCILE, time_limit=300, soft_time_limit=240)
def features_reconcile() -> int:
    """Enqueue features_compute for every project and import job still lacking features."""
    targets = selectors.features_reconcile_targets(timezone.now() - RECONCILE_GRACE)
    for project_id, job_id in targets:
        features_compute.delay(project_id, job_id)
    return len(targets)


@shared_task(name=TaskName.SCORE_POOL, time_limit=300, soft_time_limit=240)
def score_pool(project_id: int, newer_than: int | None = None) -> int:
    """Plan a scoring of the unlabeled pool by the live model, sending each chunk's task as soon as its range is known.

    ``newer_than``: only a scoring planned after this scoring id stands in for this request.
    Returns the number of chunks dispatched (0 when another scoring stands in).
    """
    def send(scoring_id: int, chunk: int, lo: int, hi: int) -> None:
        score_chunk.apply_async(args=[project_id, scoring_id, lo, hi, chunk])

    plan = scoring_services.score_pool_plan(project_id, newer_than=newer_than, send=send)
    return len(plan.ranges) if plan is not None else 0


@shared_task(name=TaskName.SCORE_CHUNK, time_limit=300, soft_time_limit=240)
def score_chunk(project_id: int, scoring_id: int, lo: int, hi: int, chunk: int | None = None) -> int:
    """Score the unlabeled items with ids in [lo, hi] (planned chunk ``chunk``); the last chunk finishes the scoring.

    A message without ``chunk`` (sent before chunks were numbered) is matched to its chunk by range.
    """
    return scoring_services.score_chunk(project_id, scoring_id, (lo, hi), chunk)


@shared_task(name=TaskName.SCORE_INDEX_REST, time_limit=1800, soft_time_limit=1740)
def score_index_rest(scoring_id: int) -> bool:
    """Index the whole pool of a scoring the queue serves from its head, without blocking the queue."""
    return scoring_services.scoring_index_rest(scoring_id)


@shared_task(name=TaskName.SCORE_POOL_RECONCILE, time_limit=300, soft_time_limit=240)
def score_pool_reconcile() -> dict[str, int]:
    """Send again the chunks of scorings that stopped progressing (lost worker); drop stale score partitions (beat)."""
    return scoring_services.score_pool_reconcile()


# The model lifecycle: triggers, the training run, and reconciliation on beat.


@shared_task(name=TaskName.LABELS_ADDED, time_limit=60, soft_time_limit=50)
def labels_added(project_id: int) -> bool:
    """A label was committed: evaluate running experiments (outcomes), retrain if the count trigger is due."""
    for experiment_id in selectors.experiments_running(project_id):
        experiment_evaluate.delay(experiment_id)
    return triggers.count_trigger_check(project_id) is not None


@shared_task(name=TaskName.EXPERIMENT_EVALUATE, time_limit=300, soft_time_limit=240)
def experiment_evaluate(experiment_id: int) -> str | None:
    """Match outcomes and take the experiment's looks now due; promote or keep the champion on a decision."""
    experiment = experiment_services.experiment_evaluate(experiment_id)
    return experiment.status if experiment else None


@shared_task(name=TaskName.EXPERIMENTS_EVALUATE)
def experiments_evaluate() -> int:
    """Evaluate every running experiment (beat)."""
    return experiment_services.experiments_evaluate_all()


@shared_task(name=TaskName.RETRAIN_SCHEDULED, time_limit=60, soft_time_limit=50)
def retrain_scheduled(project_id: int) -> bool:
    """The project's beat entry fired."""
    return triggers.schedule_trigger(project_id) is not None


@shared_task(name=TaskName.RETRAIN_REQUESTED, time_limit=60, soft_time_limit=50)
def retrain_requested(project_id: int, user_id: int | None, note: str) -> bool:
    """A person's change to the labels (a merge) asks for a retrain; False if one is already queued or running."""
    return triggers.requested_trigger(project_id, user_id, note) is not None


@shared_task(name=TaskName.TRIGGERS_CHECK, time_limit=120, soft_time_limit=100)
def triggers_check() -> dict[str, int]:
    """Reconcile count and degradation triggers, e.g. for labels stored while the broker was down."""
    return triggers.triggers_check_all()


@shared_task(name=TaskName.DRIFT_CHECK, time_limit=600, soft_time_limit=540)
def drift_check(project_id: int) -> bool:
    """Measure drift for one project now (its import's features were just stored); True if a retrain was asked for."""
    return triggers.drift_check(project_id) is not None


@shared_task(name=TaskName.DRIFT_CHECK_ALL, time_limit=1800, soft_time_limit=1700)
def drift_check_all() -> int:
    """Measure drift for every project with a live model."""
    return sum(triggers.drift_check(project_id) is not None for project_id in selectors.projects_with_live_model())


@shared_task(name=TaskName.TRAIN_RUN, time_limit=3600, soft_time_limit=3500)
def train_run(run_id: int) -> str:
    """Snapshot, train, evaluate, gate and swap for one queued training run."""
    return training_services.training_run_execute(run_id).status


@shared_task(name=TaskName.TRAINING_RUNS_REAP, time_limit=60, soft_time_limit=50)
def training_runs_reap() -> dict[str, int]:
    """Fail runs whose worker was lost; send again the messages of runs queued too long."""
    return training_services.training_runs_reap()


@shared_task(name=TaskName.SCHEDULE_SYNC, time_limit=60, soft_time_limit=50)
def schedule_sync(project_id: int) -> bool:
    """Bring the project's retrain beat entry in step with its interval, after the project changed over the API."""
    project = Project.objects.filter(pk=project_id).first()
    return project is not None and triggers.schedule_sync(project) is not None
