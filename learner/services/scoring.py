"""Pool scoring: plan a scoring of the unlabeled pool, score its chunks with the live model, finish it.

Scores reach annotations' tables only through ``annotations.services``. A scoring by model
version 0 is the seeding before any model exists: diverse items first, random order after them.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from celery import current_app
from django.db import transaction
from django.utils import timezone

from annotations import selectors as queue_selectors
from annotations import services as queue_services
from annotations.models import Project, QueueScoring
from annotations.services import PRIORITY_BOOST, ScoreColumns
from learner import selectors
from learner.ml.strategies import diverse_seed_order, queue_scores, ranked_batch_order
from learner.ml.training import proba_over
from learner.services.models import SCORE_TASK, model_version_live, model_version_loaded

logger = logging.getLogger(__name__)

# Items per chunk task: big enough that per-task overhead is small, small enough that several
# workers share a pool and a chunk's rows commit in well under a second.
CHUNK_ITEMS = 20_000
# The diversity-aware batch: how many items are ranked, and from how many of the most uncertain.
BATCH_SIZE = 50
SHORTLIST_FACTOR = 10
# Labeled items (most recent first) that the ranked batch keeps its distance from.
REFERENCE_MAX = 20_000
# Seeding: diverse items served first, chosen by k-means on a uniform sample of the pool.
SEED_COUNT = 50
SEED_SAMPLE = 20_000
# A running scoring older than this is presumed lost (a chunk message went missing) and is
# planned again; younger, it stands in for a new request by the same version.
SCORING_STALE_AFTER = timedelta(minutes=30)


class ScoringError(RuntimeError):
    """A pool cannot be scored, e.g. the model was trained on another feature space."""


@dataclass(frozen=True)
class ScoringPlan:
    """A planned scoring and the inclusive item id ranges of its chunks."""

    scoring_id: int
    ranges: list[tuple[int, int]]


def score_pool_plan(
    project_id: int, *, newer_than: int | None = None, chunk_items: int = CHUNK_ITEMS
) -> ScoringPlan | None:
    """Plan a scoring of the unlabeled pool by the live model (0: seeding); None if one already stands.

    The newest scoring stands for this request if it is by the live version and complete, or
    running and younger than SCORING_STALE_AFTER; with ``newer_than``, only one planned after
    that scoring id does. An empty pool gets a complete scoring with no chunks, so that the
    queue shows it is up to date.
    """
    version = model_version_live(project_id)
    number = version.number if version is not None else 0
    standing = queue_selectors.scoring_newest_standing(
        project_id, running_since=timezone.now() - SCORING_STALE_AFTER, newer_than=newer_than or 0
    )
    if standing is not None and standing.model_version == number:
        logger.info("Project %s: scoring %s by v%s stands (%s); not planning another",
                    project_id, standing.pk, number, standing.status)
        return None
    strategy = Project.objects.values_list("query_strategy", flat=True).get(pk=project_id)
    ids = selectors.pool_scorable_item_ids(project_id)
    ranges = [
        (int(ids[start]), int(ids[min(start + chunk_items, len(ids)) - 1])) for start in range(0, len(ids), chunk_items)
    ]
    scoring = queue_services.scoring_start(
        project_id=project_id, model_version=number, strategy=strategy, chunks_total=len(ranges), items_total=len(ids)
    )
    if not ranges:
        queue_services.scoring_complete(scoring.pk)
    logger.info("Project %s: scoring %s by v%s plans %s items in %s chunks", project_id, scoring.pk, number,
                len(ids), len(ranges))
    return ScoringPlan(scoring.pk, ranges)


def score_chunk(project_id: int, scoring_id: int, id_range: tuple[int, int]) -> int:
    """Score the unlabeled items with ids in the range and store their scores; return how many were scored.

    The chunk's earlier rows are deleted in the same transaction, so a redelivered chunk stores
    each row once and is counted once. The chunk that completes the scoring finishes it. Any
    error fails the scoring; the queue keeps serving the previous one.
    """
    scoring = queue_selectors.scoring_get(scoring_id)
    if scoring is None or scoring.status == QueueScoring.Status.FAILED:
        return 0  # superseded or failed meanwhile: its rows would never be served
    try:
        columns = _score(project_id, scoring, id_range)
        with transaction.atomic():
            redelivered = queue_services.item_scores_clear(scoring_id, item_range=id_range) > 0
            queue_services.item_scores_store(scoring_id, columns)
            # A chunk that finds no items leaves no rows, so a redelivery of it (after commit,
            # before the ack) counts it again: the scoring then completes one chunk early and the
            # last chunk's rows arrive just after.
            last = not redelivered and queue_services.scoring_chunk_done(scoring_id, len(columns))
        if last or (redelivered and _counted(scoring_id)):
            scoring_finish(project_id, scoring_id)
    except Exception as exc:
        queue_services.scoring_fail(scoring_id, f"{type(exc).__name__}: {exc}")
        raise
    return len(columns)


def scoring_finish(project_id: int, scoring_id: int) -> bool:
    """Put the seeds (seeding) or the ranked batch (batch strategy) first, then complete the scoring.

    Safe to run again: items already put first are left as they are.
    """
    scoring = queue_selectors.scoring_get(scoring_id)
    if scoring is None or scoring.status != QueueScoring.Status.RUNNING:
        return False
    top = queue_selectors.item_scores_top(scoring_id, 1)
    if top and top[0][1] < PRIORITY_BOOST:
        if scoring.model_version == 0:
            _seed(project_id, scoring_id)
        elif scoring.strategy == Project.Strategy.BATCH:
            _rank_batch(project_id, scoring_id)
    return queue_services.scoring_complete(scoring_id)


def score_pool_after_features(project_id: int, job_ids: Sequence[int]) -> bool:
    """Ask for a scoring after these imports' features are stored, unless their items are scored already.

    Sent after commit, with the newest scoring's id, so that only a scoring planned after now
    (which sees every feature row) stands in for it.
    """
    current = queue_selectors.scoring_current(project_id)
    if current is not None and not queue_selectors.import_items_unscored(job_ids, current.pk):
        return False
    newer_than = queue_selectors.scoring_latest_id(project_id)

    # A named function, not a functools.partial: Django logs a failed robust callback by its
    # __qualname__, which a partial lacks.
    def score_pool_send() -> None:
        current_app.send_task(SCORE_TASK, args=[project_id, newer_than])

    transaction.on_commit(score_pool_send, robust=True)
    return True


def score_pool_request(project_id: int) -> None:
    """A person asked for the pool to be scored again: plan a new scoring after commit, even if one stands."""
    newer_than = queue_selectors.scoring_latest_id(project_id)

    def score_pool_send() -> None:
        current_app.send_task(SCORE_TASK, args=[project_id, newer_than])

    transaction.on_commit(score_pool_send, robust=True)


def _counted(scoring_id: int) -> bool:
    scoring = queue_selectors.scoring_get(scoring_id)
    return scoring is not None and scoring.chunks_done >= scoring.chunks_total


def _score(project_id: int, scoring: QueueScoring, id_range: tuple[int, int]) -> ScoreColumns:
    featurizer = selectors.project_featurizer(project_id)
    ids, X = selectors.pool_matrix_unlabeled(project_id, id_range, featurizer)
    # Seeded by scoring and chunk, so a redelivered chunk stores the same random draws.
    rng = np.random.default_rng([scoring.pk, id_range[0]])
    if scoring.model_version == 0:
        return ScoreColumns(ids, rng.random(len(ids)))
    version = selectors.model_version_by_number(project_id, scoring.model_version)
    if version.feature_space != featurizer.space:
        raise ScoringError(
            f"v{version.number} was trained on features {version.feature_space!r}, the pool has {featurizer.space!r}"
        )
    if len(ids) == 0:
        return ScoreColumns(ids, np.empty(0), np.empty(0, dtype=np.int64), np.empty(0))
    loaded = model_version_loaded(version)
    proba = proba_over(loaded.pipeline, X, list(loaded.classes))
    priorities, best, confidences = queue_scores(proba, scoring.strategy, rng)
    return ScoreColumns(ids, priorities, np.asarray(loaded.classes, dtype=np.int64)[best], confidences)


def _seed(project_id: int, scoring_id: int) -> None:
    # The seeding's random priorities make its top rows a uniform sample of the pool.
    sample = [item_id for item_id, _ in queue_selectors.item_scores_top(scoring_id, SEED_SAMPLE)]
    ids, X = selectors.pool_matrix(project_id, sample)
    seeds = ids[diverse_seed_order(X, SEED_COUNT)] if len(ids) else ids
    queue_services.item_scores_reprioritise(scoring_id, seeds.tolist())


def _rank_batch(project_id: int, scoring_id: int) -> None:
    shortlist = dict(queue_selectors.item_scores_top(scoring_id, BATCH_SIZE * SHORTLIST_FACTOR))
    ids, X = selectors.pool_matrix(project_id, list(shortlist))
    if not len(ids):
        return
    labeled = queue_selectors.labeled_item_ids(project_id, limit=REFERENCE_MAX)
    reference = selectors.pool_matrix(project_id, labeled)[1] if labeled else None
    order = ranked_batch_order(X, np.array([shortlist[i] for i in ids.tolist()]), reference, BATCH_SIZE)
    queue_services.item_scores_reprioritise(scoring_id, ids[order].tolist())
