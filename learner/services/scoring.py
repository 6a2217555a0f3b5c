"""Pool scoring: plan a scoring of the unlabeled pool, score its chunks with the live model, finish it.

The live model both ranks the queue and suggests. Scores reach annotations' tables only through
``annotations.services``. A scoring by model version 0 is the seeding before any model exists:
diverse items first, random order after them.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.utils import timezone

from annotations import selectors as queue_selectors
from annotations import services as queue_services
from annotations.models import Label, Project, QueueScoring
from annotations.services import ChunkStoredAlready, ScoreColumns, ScoringGone
from labelhub.celery import TaskName, send_task_on_commit
from learner import selectors
from learner.ml.featurize import Featurizer
from learner.ml.strategies import diverse_batch_order, diverse_seed_order, queue_scores, ranked_batch_order
from learner.ml.training import proba_batch
from learner.models import ModelVersion
from learner.services.models import model_version_loaded

logger = logging.getLogger(__name__)

# Items put first (the seeding's diverse seeds, a ranked or diverse batch) get priorities from here
# up, above every uncertainty measure (least confident and margin lie in [0, 1], entropy in
# [0, ln k]), so that the queue serves them first.
PRIORITY_BOOST = 1_000_000.0
# The diversity-aware batch: how many items are ranked, and from how many of the most uncertain.
# The uncertainty strategies' diverse batch is as long as the labels that trigger the next
# retrain (and with it, once it goes live, the next ranking), or BATCH_SIZE without a count trigger.
BATCH_SIZE = 50
SHORTLIST_FACTOR = 10
UNCERTAINTY_STRATEGIES = (Project.Strategy.LEAST_CONFIDENT, Project.Strategy.MARGIN, Project.Strategy.ENTROPY)
# Labeled items (most recent first) that the ranked batch keeps its distance from.
REFERENCE_MAX = 20_000
# Seeding: diverse items served first, chosen by k-means on a uniform sample of the pool.
SEED_COUNT = 50
SEED_SAMPLE = 20_000
# A running scoring older than this is presumed lost (a chunk message went missing) and is
# planned again; younger, it stands in for a new request by the same version.
SCORING_STALE_AFTER = timedelta(minutes=30)
# A running scoring that stored no chunk for this long lost a chunk message (or its worker):
# reconciliation sends its missing chunks again. Longer than a chunk task's time limit.
SCORING_STALLED_AFTER = timedelta(minutes=10)


class ScoringError(RuntimeError):
    """A pool cannot be scored, e.g. the model was trained on another feature space."""


# What a plan hands each chunk to as soon as its range is known: scoring id, chunk number, lowest and highest id.
ChunkSend = Callable[[int, int, int, int], None]


@dataclass(frozen=True)
class ScoringPlan:
    """A planned scoring and the inclusive item id ranges of its chunks."""

    scoring_id: int
    ranges: list[tuple[int, int]]


def score_pool_plan(
    project_id: int, *, newer_than: int | None = None, chunk_items: int | None = None, send: ChunkSend | None = None
) -> ScoringPlan | None:
    """Plan a scoring of the unlabeled pool by the live model (0: seeding); None if one already stands.

    The newest scoring stands for this request if it is by the live version and complete, or
    running and younger than SCORING_STALE_AFTER; with ``newer_than``, only one planned after
    that scoring id does. An empty pool gets a complete scoring with no chunks, so that the
    queue shows it is up to date. Chunks hold ``chunk_items`` items (LABELHUB_SCORING_CHUNK).

    The pool is counted first, so that the scoring starts knowing how many chunks it has; its ids
    are then read a slice at a time, and each chunk is handed to ``send`` (scoring id, chunk
    number, lowest and highest id) as soon as its range is known: other workers score the first
    chunks while the rest is being planned. The ranges are recorded on the scoring at the end.
    """
    chunk_items = chunk_items or settings.LABELHUB_SCORING_CHUNK
    version = selectors.model_version_live(project_id)
    number = version.number if version is not None else 0
    if version is not None and not _features_readable(project_id, version):
        logger.info("Project %s: v%s cannot read the pool's features (a new featurizer's); the last ranking stands",
                    project_id, number)
        return None
    standing = queue_selectors.scoring_newest_standing(
        project_id, running_since=timezone.now() - SCORING_STALE_AFTER, newer_than=newer_than or 0
    )
    if standing is not None and standing.model_version == number:
        logger.info("Project %s: scoring %s by v%s stands (%s); not planning another",
                    project_id, standing.pk, number, standing.status)
        return None
    strategy = Project.objects.values_list("query_strategy", flat=True).get(pk=project_id)
    counted = selectors.pool_scorable_count(project_id)
    chunks = -(-counted // chunk_items)
    scoring = queue_services.scoring_start(
        project_id=project_id, model_version=number, strategy=strategy, chunks_total=chunks, items_total=counted,
    )
    if not chunks:
        queue_services.scoring_complete(scoring.pk)
        logger.info("Project %s: scoring %s by v%s has no items to score", project_id, scoring.pk, number)
        return ScoringPlan(scoring.pk, [])
    ranges, items = [], 0
    for lo, hi, n in _chunk_spans(selectors.pool_scorable_id_slices(project_id, chunk_items), chunks, chunk_items):
        if send is not None:
            send(scoring.pk, len(ranges), lo, hi)
        ranges.append((lo, hi))
        items += n
    queue_services.scoring_chunks_record(scoring.pk, ranges, items_total=items)
    logger.info("Project %s: scoring %s by v%s plans %s items in %s chunks", project_id, scoring.pk, number, items,
                len(ranges))
    return ScoringPlan(scoring.pk, ranges)


def _chunk_spans(slices: Iterator[np.ndarray], chunks: int, chunk_items: int) -> Iterator[tuple[int, int, int]]:
    """(lowest id, highest id, ids) of ``chunks`` consecutive chunks of ``chunk_items`` ids taken from ascending slices.

    The last chunk takes every id left (items added since the pool was counted); chunks that the
    ids do not reach (items removed since) are empty ranges above the last id.
    """
    pending: list[np.ndarray] = []
    held = made = last = 0

    def take(count: int | None) -> tuple[int, int, int]:
        nonlocal pending, held, made, last
        ids = np.concatenate(pending) if pending else np.empty(0, dtype=np.int64)
        chunk, rest = (ids, ids[:0]) if count is None else (ids[:count], ids[count:])
        pending, held, made = [rest], len(rest), made + 1
        if not len(chunk):
            return last + 1, last, 0
        last = int(chunk[-1])
        return int(chunk[0]), last, len(chunk)

    for ids in slices:
        pending.append(ids)
        held += len(ids)
        while made < chunks - 1 and held >= chunk_items:
            yield take(chunk_items)
    while made < chunks:
        yield take(None if made == chunks - 1 else chunk_items)


def score_chunk(project_id: int, scoring_id: int, id_range: tuple[int, int], chunk: int | None = None) -> int:
    """Score the unlabeled items with ids in the range (planned chunk number ``chunk``) and store their scores.

    Returns how many items this call scored and stored: 0 for a chunk stored already by an
    earlier delivery, which stores nothing twice and counts nothing twice. The chunk that
    completes the scoring finishes it. Any error fails the scoring; the queue keeps serving the
    previous one.
    """
    scoring = queue_selectors.scoring_get(scoring_id)
    if scoring is None or scoring.status == QueueScoring.Status.FAILED:
        return 0  # superseded or failed meanwhile: its rows would never be served
    try:
        chunk = _chunk_number(scoring, id_range) if chunk is None else chunk
        if queue_services.scoring_chunk_is_stored(scoring, chunk):
            raise ChunkStoredAlready(f"chunk {chunk} of scoring {scoring_id} is stored already")
        columns = _score(project_id, scoring, id_range, chunk)
        last = queue_services.item_scores_store_chunk(scoring_id, chunk, columns)
    except ChunkStoredAlready:
        # A redelivery: the earlier delivery may have stored the last chunk and then been lost
        # before it finished the scoring, so finishing is checked again (it is safe to repeat).
        if _counted(scoring_id):
            scoring_finish(project_id, scoring_id)
        return 0
    except ScoringGone:
        return 0
    except Exception as exc:
        queue_services.scoring_fail(scoring_id, f"{type(exc).__name__}: {exc}")
        raise
    if last:
        try:
            scoring_finish(project_id, scoring_id)
        except Exception as exc:
            queue_services.scoring_fail(scoring_id, f"{type(exc).__name__}: {exc}")
            raise
    return len(columns)


def scoring_finish(project_id: int, scoring_id: int) -> bool:
    """Index the scoring's rows, put the seeds (seeding) or a diverse batch of the most uncertain first, complete it.

    A large pool is served once its head is indexed; the index over the rest is built by the
    task this sends. Safe to run again: indexes are built once and items already put first are
    left as they are.
    """
    scoring = queue_selectors.scoring_get(scoring_id)
    if scoring is None or scoring.status != QueueScoring.Status.RUNNING:
        return False
    started = time.perf_counter()
    if not queue_services.item_scores_index(scoring_id):
        return False
    indexed = time.perf_counter()
    top = queue_selectors.item_scores_top(scoring_id, 1)
    if top and top[0][1] < PRIORITY_BOOST:
        if scoring.model_version == 0:
            _seed(project_id, scoring_id)
        elif scoring.strategy == Project.Strategy.BATCH:
            _rank_batch(project_id, scoring_id)
        elif scoring.strategy in UNCERTAINTY_STRATEGIES:
            _diverse_batch(project_id, scoring)
    ordered = time.perf_counter()
    completed = queue_services.scoring_complete(scoring_id)
    logger.info("Project %s: scoring %s finished (indexes %.2f s, top of the queue %.2f s, completion %.2f s)",
                project_id, scoring_id, indexed - started, ordered - indexed, time.perf_counter() - ordered)
    if completed and queue_selectors.scoring_get(scoring_id).head_floor is not None:
        send_task_on_commit(TaskName.SCORE_INDEX_REST, [scoring_id])  # served from its head: now the whole pool
    return completed


def item_scores_reprioritise(scoring_id: int, item_ids_in_order: Sequence[int]) -> int:
    """Put these items above every other item of the scoring, the first one highest; return rows changed.

    The new priorities depend only on the order given, so running this again changes nothing.
    """
    n = len(item_ids_in_order)
    priorities = {item_id: PRIORITY_BOOST + n - rank for rank, item_id in enumerate(item_ids_in_order)}
    return queue_services.item_scores_priorities_set(scoring_id, priorities)


def scoring_index_rest(scoring_id: int) -> bool:
    """Index the whole pool of a scoring served from its head; False if there was nothing to do."""
    return queue_services.item_scores_index_rest(scoring_id)


def score_pool_reconcile(stalled_before: datetime | None = None) -> dict[str, int]:
    """Send again the missing chunks of running scorings that stopped progressing; drop scores left over.

    A scoring stalled when no chunk of it was stored since ``stalled_before`` (default: now minus
    SCORING_STALLED_AFTER): a chunk message or its worker was lost. Its chunks without stored
    rows are sent again (redeliveries of chunks that did arrive meanwhile store nothing); one
    whose chunks are all stored but was never finished gets one chunk sent again, which finishes
    it; one whose plan never recorded its chunks is failed and the pool planned again. Then score
    partitions of scorings that are gone or older than their project's served scoring are
    dropped, a served scoring still without an index over its whole pool (its index task was
    lost) gets it built again, and a project whose served scoring lost its rows (an unlogged
    partition emptied by a database crash) is scored again.
    """
    stalled_before = stalled_before or timezone.now() - SCORING_STALLED_AFTER
    resent = rescored = 0
    for scoring in queue_selectors.scorings_stalled(stalled_before):
        ranges = queue_services.scoring_chunk_ranges(scoring)
        if len(ranges) < scoring.chunks_total:
            # Its plan stopped before recording its chunks (the planning worker was lost): plan again.
            if queue_services.scoring_fail(scoring.pk, "Its plan was interrupted before it recorded its chunks."):
                logger.warning("Scoring %s stalled with its plan unfinished: planning the pool again", scoring.pk)
                send_task_on_commit(TaskName.SCORE_POOL, [scoring.project_id, scoring.pk])
                rescored += 1
            continue
        missing = [n for n in range(len(ranges)) if not queue_services.scoring_chunk_is_stored(scoring, n)] or (
            [len(ranges) - 1] if ranges else []
        )
        if not queue_services.scoring_progress_mark(scoring.pk, stalled_before):
            continue  # progressed meanwhile, or another reconciliation got there first
        for n in missing:
            lo, hi = ranges[n]
            send_task_on_commit(TaskName.SCORE_CHUNK, [scoring.project_id, scoring.pk, lo, hi, n])
        logger.warning("Scoring %s stalled: sent %s of its chunks again", scoring.pk, len(missing))
        resent += len(missing)
    reindexed = 0
    for scoring_id in queue_selectors.scorings_served_from_head(stalled_before):
        logger.warning("Scoring %s is still served from its head only: indexing its whole pool again", scoring_id)
        send_task_on_commit(TaskName.SCORE_INDEX_REST, [scoring_id])
        reindexed += 1
    pruned = queue_services.item_scores_prune_stale()
    for project_id, current_id in queue_selectors.scorings_served_without_rows():
        logger.warning("Project %s: served scoring %s lost its rows; scoring the pool again", project_id, current_id)
        send_task_on_commit(TaskName.SCORE_POOL, [project_id, current_id])
        rescored += 1
    return {"chunks_resent": resent, "partitions_dropped": pruned, "rescored": rescored, "reindexed": reindexed}


def score_pool_after_features(project_id: int, job_ids: Sequence[int]) -> bool:
    """Ask for a scoring after these imports' features are stored, unless their items are scored already.

    Sent after commit, with the newest scoring's id, so that only a scoring planned after now
    (which sees every feature row) stands in for it.
    """
    current = queue_selectors.scoring_current(project_id)
    if current is not None and not queue_selectors.import_items_unscored(job_ids, current.pk):
        return False
    send_task_on_commit(TaskName.SCORE_POOL, [project_id, queue_selectors.scoring_latest_id(project_id)])
    return True


def score_pool_request(project_id: int) -> None:
    """A person asked for the pool to be scored again: plan a new scoring after commit, even if one stands."""
    send_task_on_commit(TaskName.SCORE_POOL, [project_id, queue_selectors.scoring_latest_id(project_id)])


def _counted(scoring_id: int) -> bool:
    scoring = queue_selectors.scoring_get(scoring_id)
    return scoring is not None and scoring.chunks_done >= scoring.chunks_total


def _features_readable(project_id: int, version: ModelVersion) -> bool:
    """Whether the pool's stored features are the version's own (not while a new featurizer's replace them)."""
    try:
        return selectors.project_featurizer(project_id).space == version.feature_space
    except ValueError:  # FeaturizeError, PluginError: the project's featurizer cannot be built now
        return False


def _chunk_number(scoring: QueueScoring, id_range: tuple[int, int]) -> int:
    """The planned chunk with this range (a message sent without its number)."""
    for n, (lo, hi) in enumerate(queue_services.scoring_chunk_ranges(scoring)):
        if (lo, hi) == tuple(id_range):
            return n
    raise ValueError(f"scoring {scoring.pk} planned no chunk {id_range}")


# What every chunk of one scoring looks up alike (the project's featurizer, the scoring's model
# version), kept per process for the few scorings under way: statements saved per chunk. Keyed
# with the start time too: SQLite may reuse a rolled-back scoring's id.
_ScoringContext = tuple[Featurizer, ModelVersion | None]
_chunk_context: OrderedDict[tuple[int, datetime], _ScoringContext] = OrderedDict()
_CHUNK_CONTEXT_SIZE = 8


def _context(project_id: int, scoring: QueueScoring) -> _ScoringContext:
    key = (scoring.pk, scoring.started_at)
    context = _chunk_context.get(key)
    if context is None:
        featurizer = selectors.project_featurizer(project_id)
        number = scoring.model_version
        version = selectors.model_version_by_number(project_id, number) if number else None
        if version is not None and version.feature_space != featurizer.space:
            raise ScoringError(f"v{version.number} was trained on features {version.feature_space!r}, "
                               f"the pool has {featurizer.space!r}")
        context = _chunk_context[key] = (featurizer, version)
        while len(_chunk_context) > _CHUNK_CONTEXT_SIZE:
            _chunk_context.popitem(last=False)
    return context


def _chunk_rng(scoring: QueueScoring, chunk: int) -> np.random.Generator:
    """The random numbers of the seeding's (and the random strategy's) chunk: the same again on a copy of the project.

    Seeded by the scoring's place among its project's scorings and the chunk's number in the plan,
    not by database ids, which a scratch copy does not reproduce: two simulations with the same
    seeds draw alike. The draws still differ between chunks and between scorings.
    """
    return np.random.default_rng([queue_selectors.scoring_ordinal(scoring), chunk])


def _score(project_id: int, scoring: QueueScoring, id_range: tuple[int, int], chunk: int) -> ScoreColumns:
    featurizer, version = _context(project_id, scoring)
    ids, X = selectors.pool_matrix_unlabeled(project_id, id_range, featurizer)
    seeding = version is None
    rng = _chunk_rng(scoring, chunk) if seeding or scoring.strategy == Project.Strategy.RANDOM else None
    if seeding:
        return ScoreColumns(ids, rng.random(len(ids)))  # no model yet: nothing to rank by or suggest
    if len(ids) == 0:
        return ScoreColumns(ids, np.empty(0), np.empty(0, dtype=np.int64), np.empty(0))
    loaded = model_version_loaded(version)
    # Only labels the project still has: one merged into another since the model was trained is
    # never suggested (its share goes to the others); the retrain the merge asked for drops it.
    existing = set(Label.objects.filter(project_id=project_id).values_list("pk", flat=True))
    classes = [c for c in loaded.classes if c in existing]
    if len(classes) < 2:  # merges left one of its classes: it ranks nothing, like no model
        return ScoreColumns(ids, _chunk_rng(scoring, chunk).random(len(ids)))
    proba = proba_batch(loaded.pipeline, X, classes)
    priorities, best, confidences = queue_scores(proba, scoring.strategy, rng)
    return ScoreColumns(ids, priorities, np.asarray(classes, dtype=np.int64)[best], confidences)


def _seed(project_id: int, scoring_id: int) -> None:
    # The seeding's random priorities make its top rows a uniform sample of the pool.
    sample = [item_id for item_id, _ in queue_selectors.item_scores_top(scoring_id, SEED_SAMPLE)]
    ids, X = selectors.pool_matrix(project_id, sample)
    seeds = ids[diverse_seed_order(X, SEED_COUNT)] if len(ids) else ids
    item_scores_reprioritise(scoring_id, seeds.tolist())


def _diverse_batch(project_id: int, scoring: QueueScoring) -> None:
    # The items served until the next retrain re-ranks the queue come from one ranking: spread
    # them over the most uncertain, in the live model's own input space (its scaling).
    every = Project.objects.values_list("retrain_every_n_labels", flat=True).get(pk=project_id)
    size = every or BATCH_SIZE
    shortlist = dict(queue_selectors.item_scores_top(scoring.pk, size * SHORTLIST_FACTOR))
    ids, X = selectors.pool_matrix(project_id, list(shortlist))
    if not len(ids):
        return
    _, version = _context(project_id, scoring)
    steps = model_version_loaded(version).pipeline.steps[:-1]
    for _, step in steps:
        X = step.transform(X)
    order = diverse_batch_order(X, np.array([shortlist[i] for i in ids.tolist()]), size)
    item_scores_reprioritise(scoring.pk, ids[order].tolist())


def _rank_batch(project_id: int, scoring_id: int) -> None:
    shortlist = dict(queue_selectors.item_scores_top(scoring_id, BATCH_SIZE * SHORTLIST_FACTOR))
    ids, X = selectors.pool_matrix(project_id, list(shortlist))
    if not len(ids):
        return
    labeled = queue_selectors.labeled_item_ids(project_id, limit=REFERENCE_MAX)
    reference = selectors.pool_matrix(project_id, labeled)[1] if labeled else None
    order = ranked_batch_order(X, np.array([shortlist[i] for i in ids.tolist()]), reference, BATCH_SIZE)
    item_scores_reprioritise(scoring_id, ids[order].tolist())
