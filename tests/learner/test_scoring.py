"""Pool scoring: strategies over a live model, seeding before any model, chunks, storage, completion, reconciliation."""
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import psycopg
import pytest
from celery import current_app
from django.db import connection, transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from modAL.batch import ranked_batch
from scipy import sparse
from sklearn.datasets import make_blobs

from annotations import selectors as queue_selectors
from annotations import services as queue_services
from annotations.models import Item, ItemScore, Membership, Project, QueueScoring
from annotations.selectors.scoring import head_condition
from annotations.services import score_partitions
from learner import selectors
from learner.ml.strategies import diverse_batch_order, diverse_seed_order, ranked_batch_order, uncertainty
from learner.ml.training import fit, proba_batch, proba_over
from learner.models import FeatureVector, TrainingRun
from learner.services import models as model_services
from learner.services import scoring
from learner.services.features import features_compute_chunk
from learner.services.models import (
    model_version_create,
    model_version_loaded,
    model_version_promote,
)
from learner.services.training import training_run_execute, training_run_request
from learner.tasks import score_chunk as score_chunk_task
from learner.tasks import score_index_rest as score_index_rest_task
from learner.tasks import score_pool as score_pool_task
from tests.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.learner.conftest import blob_items
from tests.sent_tasks import send_task_fake

CENTRES = [(0.0, 0.0), (12.0, 0.0), (0.0, 12.0)]


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Start each test with no loaded models: a rolled-back test's version ids can come again (SQLite)."""
    model_services._cache.clear()


@pytest.fixture
def xy_project(tabular_project: Project) -> Project:
    tabular_project.feature_names = ["x", "y"]
    tabular_project.save(update_fields=["feature_names"])
    return tabular_project


def add_items(project: Project, points: np.ndarray) -> list[Item]:
    """Create items with these feature rows and store their features, as the feature task does."""
    items = [ItemFactory(project=project, values=[float(v) for v in point]) for point in points]
    features_compute_chunk(project.pk, [item.pk for item in items])
    return items


def label(items: list[Item], labels: list, user) -> None:
    """Label the items once each and take them out of the queue."""
    for item, label in zip(items, labels, strict=True):
        AnnotationFactory(item=item, label=label, annotator=user)
    Item.objects.filter(pk__in=[item.pk for item in items]).update(label_count=1, queue_done=True)


def blobs(n: int = 150, seed: int = 0, spread: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n_samples=n, centers=CENTRES, cluster_std=spread, random_state=seed)


def go_live(project: Project, items: list[Item], classes_of_items: np.ndarray):
    """Fit a model on these items' features and make it the live version."""
    labels = list(project.labels.order_by("order"))
    ids, X = selectors.pool_matrix(project.pk, [item.pk for item in items])
    by_id = {item.pk: classes_of_items[i] for i, item in enumerate(items)}
    y = np.array([labels[by_id[i]].pk for i in ids.tolist()])
    pipeline = fit(project.kind, X, y)
    version = model_version_create(
        project=project, pipeline=pipeline, classes=[label.pk for label in labels],
        feature_space=selectors.project_featurizer(project.pk).space, algorithm="logistic regression",
        hyperparameters={}, label_snapshot_hash="test", labels_used=len(y),
    )
    model_version_promote(version, reason="test")
    return version, pipeline


def scores_of(scoring_id: int) -> dict[int, tuple[float, int | None, float | None]]:
    rows = ItemScore.objects.filter(scoring_id=scoring_id).values_list("item_id", "priority", "predicted_label_id",
                                                                       "confidence")
    return {item_id: (priority, label_id, confidence) for item_id, priority, label_id, confidence in rows}


def ranking(scoring_id: int) -> list[int]:
    return list(ItemScore.objects.filter(scoring_id=scoring_id).order_by("-priority").values_list("item_id", flat=True))


# Seeding, before any model exists


def test_seeding_scores_every_unlabeled_item_and_no_labeled_one(xy_project, manager, eager_celery):
    X, _ = blobs(60)
    items = add_items(xy_project, X)
    label(items[:5], [xy_project.labels.first()] * 5, manager)

    assert score_pool_task.delay(xy_project.pk).get() == 1

    current = queue_selectors.scoring_current(xy_project.pk)
    assert (current.model_version, current.status, current.items_total, current.items_scored) == (0, "complete", 55, 55)
    scores = scores_of(current.pk)
    assert set(scores) == {item.pk for item in items[5:]} == set(queue_selectors.pool_unlabeled_item_ids(xy_project.pk))
    assert {(label_id, confidence) for _, label_id, confidence in scores.values()} == {(None, None)}


def test_the_first_seeds_cover_well_separated_clusters(xy_project, eager_celery):
    X, blob = blobs(300)
    items = add_items(xy_project, X)
    blob_of = {item.pk: blob[i] for i, item in enumerate(items)}

    score_pool_task.delay(xy_project.pk)

    first = ranking(queue_selectors.scoring_current(xy_project.pk).pk)
    assert {blob_of[item_id] for item_id in first[:3]} == {0, 1, 2}
    # Seeds sit above the random order of the rest.
    priorities = sorted(scores_of(queue_selectors.scoring_current(xy_project.pk).pk).values(), reverse=True)
    assert priorities[scoring.SEED_COUNT - 1][0] >= scoring.PRIORITY_BOOST > priorities[scoring.SEED_COUNT][0]


def test_diverse_seeds_on_arrays_spread_before_they_repeat_a_cluster():
    X, blob = make_blobs(n_samples=3000, centers=[(0, 0), (30, 0), (0, 30), (30, 30)], cluster_std=1.0, random_state=2)

    order = diverse_seed_order(X, 40)

    assert len(set(order.tolist())) == 40
    assert set(blob[order[:4]].tolist()) == {0, 1, 2, 3}


def test_text_pools_are_seeded_through_a_random_projection(text_project, eager_celery):
    words = ["wine", "beer", "rugby", "chess", "opera", "python"]
    items = [ItemFactory(project=text_project, text=f"{w} {w}s and more {w} {i}") for i, w in enumerate(words * 10)]
    features_compute_chunk(text_project.pk, [item.pk for item in items])

    score_pool_task.delay(text_project.pk)

    current = queue_selectors.scoring_current(text_project.pk)
    assert current.items_scored == 60
    assert sum(priority >= scoring.PRIORITY_BOOST for priority, _, _ in scores_of(current.pk).values()) == 50


# Scoring with a live model


@pytest.mark.parametrize("strategy", ["least_confident", "margin", "entropy"])
def test_priorities_are_the_strategys_uncertainty_of_the_live_model(xy_project, manager, eager_celery, strategy):
    Project.objects.filter(pk=xy_project.pk).update(query_strategy=strategy)
    X, blob = blobs(200, spread=4.0)
    items = add_items(xy_project, X)
    version, pipeline = go_live(xy_project, items[:40], blob[:40])
    labels = list(xy_project.labels.order_by("order"))
    label(items[:40], [labels[b] for b in blob[:40]], manager)

    score_pool_task.delay(xy_project.pk)

    current = queue_selectors.scoring_current(xy_project.pk)
    assert (current.model_version, current.strategy) == (version.number, strategy)
    ids, pool = selectors.pool_matrix(xy_project.pk, [item.pk for item in items[40:]])
    proba = proba_over(pipeline, pool, version.classes)
    stored = scores_of(current.pk)
    assert sorted(stored) == ids.tolist()
    # Scoring computes in float64 with the scaler folded into the model; scikit-learn scales
    # float32 rows in float32, hence the absolute tolerance.
    expected = dict(zip(ids.tolist(), uncertainty(proba, strategy).tolist()))
    batch = [i for i in ids.tolist() if stored[i][0] >= scoring.PRIORITY_BOOST]
    rest = [i for i in ids.tolist() if stored[i][0] < scoring.PRIORITY_BOOST]
    assert [stored[i][0] for i in rest] == pytest.approx([expected[i] for i in rest], abs=1e-6)
    assert [stored[i][1] for i in ids.tolist()] == [version.classes[j] for j in proba.argmax(axis=1)]
    assert [stored[i][2] for i in ids.tolist()] == pytest.approx(proba.max(axis=1).tolist(), abs=1e-6)
    # A diverse batch as long as the labels to the next retrain comes first, its most uncertain item first.
    assert len(batch) == xy_project.retrain_every_n_labels
    assert ranking(current.pk)[: len(batch)] == sorted(batch, key=lambda i: -expected[i])


def test_random_strategy_keeps_the_models_suggestions(xy_project, eager_celery):
    Project.objects.filter(pk=xy_project.pk).update(query_strategy="random")
    X, blob = blobs(90, spread=3.0)
    items = add_items(xy_project, X)
    version, _ = go_live(xy_project, items, blob)

    score_pool_task.delay(xy_project.pk)

    stored = scores_of(queue_selectors.scoring_current(xy_project.pk).pk)
    priorities = np.array([p for p, _, _ in stored.values()])
    assert len(stored) == 90 and ((0 <= priorities) & (priorities < 1)).all()
    assert {label_id for _, label_id, _ in stored.values()} <= set(version.classes)


def test_the_batch_strategy_ranks_a_diverse_shortlist_first(xy_project, manager, eager_celery, monkeypatch):
    monkeypatch.setattr(scoring, "BATCH_SIZE", 6)
    monkeypatch.setattr(scoring, "SHORTLIST_FACTOR", 5)
    Project.objects.filter(pk=xy_project.pk).update(query_strategy="batch")
    X, blob = blobs(400, spread=3.5, seed=4)
    items = add_items(xy_project, X)
    labels = list(xy_project.labels.order_by("order"))
    version, pipeline = go_live(xy_project, items[:30], blob[:30])
    label(items[:30], [labels[b] for b in blob[:30]], manager)

    score_pool_task.delay(xy_project.pk)

    current = queue_selectors.scoring_current(xy_project.pk)
    ids, pool = selectors.pool_matrix(xy_project.pk, [item.pk for item in items[30:]])
    least_confident = uncertainty(proba_over(pipeline, pool, version.classes), "least_confident")
    shortlist = np.argsort(-least_confident, kind="stable")[:30]
    _, reference = selectors.pool_matrix(xy_project.pk, [item.pk for item in items[:30]])
    expected = ids[shortlist][ranked_batch_order(pool[shortlist], least_confident[shortlist], reference, 6)]
    served = ranking(current.pk)
    assert served[:6] == expected.tolist()
    assert served[:6] != ids[shortlist[:6]].tolist()  # diversity changed the plain uncertainty order
    stored = scores_of(current.pk)
    assert min(stored[i][0] for i in served[:6]) > max(stored[i][0] for i in served[6:])
    # Past the batch, the uncertainty order holds.
    rest = [least_confident[ids.tolist().index(i)] for i in served[6:]]
    assert rest == sorted(rest, reverse=True)


def test_a_diverse_batch_spreads_over_the_uncertain_clusters_before_taking_a_second_from_one():
    # Four clusters of uncertain rows; the most uncertain ten all sit in the first one.
    X, blob = make_blobs(n_samples=200, centers=[(0, 0), (20, 0), (0, 20), (20, 20)], cluster_std=1.0, random_state=5)
    scores = np.where(blob == 0, 0.9, 0.5) + np.random.default_rng(5).random(200) * 0.05

    order = diverse_batch_order(X, scores, 4)

    assert set(blob[np.argsort(-scores)[:10]].tolist()) == {0}
    assert set(blob[order].tolist()) == {0, 1, 2, 3}
    assert scores[order].tolist() == sorted(scores[order].tolist(), reverse=True)  # most uncertain first
    assert len(set(diverse_batch_order(X, scores, 40).tolist())) == 40


def _train(project) -> TrainingRun:
    run = training_run_request(project_id=project.pk, trigger="manual", evidence={"by": "test"})
    return training_run_execute(run.pk)


def test_the_live_model_ranks_the_queue_and_suggests_and_a_retrain_kept_out_changes_neither(
    labeled_blobs, manager, eager_celery
):
    assert _train(labeled_blobs).status == "promoted"
    live = selectors.model_version_live(labeled_blobs.pk)
    rng = np.random.default_rng(11)
    pool = blob_items(labeled_blobs, rng, 60)

    score_pool_task.delay(labeled_blobs.pk)  # what the swap sends after commit

    current = queue_selectors.scoring_current(labeled_blobs.pk)
    assert current.model_version == live.number
    ids, X = selectors.pool_matrix(labeled_blobs.pk, [item.pk for item in pool])
    stored = scores_of(current.pk)
    proba = proba_over(model_version_loaded(live).pipeline, X, live.classes)
    # The live model's prediction is the suggestion (and what a label records as predicted)...
    assert [stored[i][1] for i in ids.tolist()] == [live.classes[j] for j in proba.argmax(axis=1)]
    assert [stored[i][2] for i in ids.tolist()] == pytest.approx(proba.max(axis=1).tolist(), abs=1e-6)
    # ...and its uncertainty orders the queue below the diverse batch.
    rest = [k for k, i in enumerate(ids.tolist()) if stored[i][0] < scoring.PRIORITY_BOOST]
    assert rest
    assert [stored[ids[k]][0] for k in rest] == pytest.approx(uncertainty(proba, "margin")[rest].tolist(), abs=1e-6)

    # A retrain the gate keeps out (too few audit labels for any model now) ranks nothing.
    labeled_blobs.gate_min_audit = labeled_blobs.gate_min_audit_first = 500
    labeled_blobs.save()
    negative, positive = labeled_blobs.labels.order_by("order")[:2]
    for i, item in enumerate(blob_items(labeled_blobs, rng, 40, shift=1.0)):  # more labels, so a different model
        AnnotationFactory(item=item, annotator=manager, label=positive if i % 2 else negative)
        Item.objects.filter(pk=item.pk).update(label_count=1, queue_done=True)
    kept = _train(labeled_blobs)
    assert kept.status != "promoted" and kept.model_version is not None

    assert score_pool_task.delay(labeled_blobs.pk).get() == 0  # the live model's scoring stands
    assert queue_selectors.scoring_current(labeled_blobs.pk) == current
    expert = UserFactory()
    Membership.objects.create(project=labeled_blobs, user=expert, role=Membership.Role.ANNOTATOR)
    lease = queue_services.queue_next(project=labeled_blobs, user=expert)
    assert lease.model_version == live.number


def test_ranked_batch_order_is_modals_ranked_batch():
    rng = np.random.default_rng(3)
    shortlist, labeled, scores = rng.normal(size=(60, 5)), rng.normal(size=(25, 5)), rng.random(60)
    learner = SimpleNamespace(on_transformed=False, X_training=labeled)

    expected, _ = ranked_batch(learner, unlabeled=shortlist, uncertainty_scores=scores, n_instances=12,
                               metric="euclidean", n_jobs=1)

    assert ranked_batch_order(shortlist, scores, labeled, 12).tolist() == expected.tolist()
    cold = ranked_batch_order(shortlist, scores, None, 60)
    assert sorted(cold.tolist()) == list(range(60))


@pytest.fixture
def seeded_then_live(xy_project, eager_celery):
    """A pool seeded by the scoring of no model, then a live version: (the seeding, the version)."""
    X, blob = blobs(60)
    items = add_items(xy_project, X)
    score_pool_task.delay(xy_project.pk)
    seeding = queue_selectors.scoring_current(xy_project.pk)
    version, _ = go_live(xy_project, items, blob)
    return seeding, version


def test_a_model_of_another_feature_space_plans_no_scoring_and_the_queue_keeps_the_last(xy_project, seeded_then_live):
    seeding, version = seeded_then_live
    type(version).objects.filter(pk=version.pk).update(feature_space="tabular-v1:7")

    assert score_pool_task.delay(xy_project.pk).get() == 0  # its features are not the pool's (a new featurizer's)

    assert not QueueScoring.objects.filter(project=xy_project, model_version=version.number).exists()
    assert queue_selectors.scoring_current(xy_project.pk) == seeding
    assert ItemScore.objects.filter(scoring=seeding).count() == 60


def test_a_scoring_under_way_when_the_featurizer_changes_fails_and_the_queue_keeps_the_last(
    xy_project, seeded_then_live
):
    seeding, version = seeded_then_live
    plan = scoring.score_pool_plan(xy_project.pk)
    type(version).objects.filter(pk=version.pk).update(feature_space="tabular-v1:7")  # as if the pool changed meanwhile

    for id_range in plan.ranges:
        with pytest.raises(scoring.ScoringError):
            scoring.score_chunk(xy_project.pk, plan.scoring_id, id_range)

    failed = QueueScoring.objects.get(pk=plan.scoring_id)
    assert failed.status == "failed" and "tabular-v1:7" in failed.error
    assert queue_selectors.scoring_current(xy_project.pk) == seeding


# Chunks, redelivery, completion


def test_the_plan_covers_the_unlabeled_items_that_have_features(xy_project, manager):
    X, _ = blobs(12)
    items = add_items(xy_project, X)
    label(items[:2], [xy_project.labels.first()] * 2, manager)
    waiting = ItemFactory(project=xy_project, values=[0.0, 0.0])  # its features are not computed yet

    sent = []
    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=4, send=lambda *chunk: sent.append(chunk))

    expected = [item.pk for item in items[2:]]
    slices = list(selectors.pool_scorable_id_slices(xy_project.pk, 5))
    assert [ids.tolist() for ids in slices] == [expected[:3], expected[3:8], expected[8:]]
    assert selectors.pool_scorable_count(xy_project.pk) == 10
    assert waiting.pk in queue_selectors.pool_unlabeled_item_ids(xy_project.pk)
    assert plan.ranges == [(expected[0], expected[3]), (expected[4], expected[7]), (expected[8], expected[9])]
    # Each chunk was handed on with its number as the plan went; the scoring records them all.
    assert sent == [(plan.scoring_id, n, lo, hi) for n, (lo, hi) in enumerate(plan.ranges)]
    recorded = QueueScoring.objects.get(pk=plan.scoring_id)
    assert queue_services.scoring_chunk_ranges(recorded) == plan.ranges
    assert (recorded.items_total, recorded.chunks_total) == (10, 3)


def test_items_added_while_the_pool_is_planned_are_scored_in_its_last_chunk(xy_project, eager_celery):
    X, _ = blobs(25)
    add_items(xy_project, X[:20])
    late = []

    def send(scoring_id: int, chunk: int, lo: int, hi: int) -> None:
        if chunk == 0:  # an import lands after the pool was counted, while its chunks are being sent
            late.extend(add_items(xy_project, X[20:]))
        score_chunk_task(xy_project.pk, scoring_id, lo, hi, chunk)

    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=10, send=send)

    assert len(plan.ranges) == 2 and plan.ranges[-1][1] == late[-1].pk
    done = QueueScoring.objects.get(pk=plan.scoring_id)
    assert (done.status, done.chunks_done, done.items_scored, done.items_total) == ("complete", 2, 25, 25)


def test_chunks_that_items_removed_while_the_pool_is_planned_leave_empty_score_nothing(xy_project, eager_celery):
    X, _ = blobs(30)
    items = add_items(xy_project, X)

    def send(scoring_id: int, chunk: int, lo: int, hi: int) -> None:
        if chunk == 0:
            Item.objects.filter(pk__in=[item.pk for item in items[10:]]).delete()
        score_chunk_task(xy_project.pk, scoring_id, lo, hi, chunk)

    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=10, send=send)

    assert len(plan.ranges) == 3 and all(lo > hi for lo, hi in plan.ranges[1:])
    done = QueueScoring.objects.get(pk=plan.scoring_id)
    assert (done.status, done.chunks_done, done.items_scored, done.items_total) == ("complete", 3, 10, 10)


def test_chunks_count_once_and_a_redelivered_chunk_stores_nothing_twice(xy_project):
    X, _ = blobs(25)
    add_items(xy_project, X)
    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=10)
    assert len(plan.ranges) == 3

    first = score_chunk_task(xy_project.pk, plan.scoring_id, *plan.ranges[0])
    again = score_chunk_task(xy_project.pk, plan.scoring_id, *plan.ranges[0])

    assert (first, again) == (10, 0)  # the redelivery scores and stores nothing
    assert ItemScore.objects.filter(scoring_id=plan.scoring_id).count() == 10
    assert QueueScoring.objects.get(pk=plan.scoring_id).chunks_done == 1
    for lo, hi in plan.ranges[1:]:
        score_chunk_task(xy_project.pk, plan.scoring_id, lo, hi)
    done = QueueScoring.objects.get(pk=plan.scoring_id)
    assert (done.status, done.chunks_done, done.items_scored, done.items_total) == ("complete", 3, 25, 25)
    assert ItemScore.objects.filter(scoring=done).count() == 25


def test_exactly_one_chunk_completes_the_scoring(xy_project):
    scoring_row = queue_services.scoring_start(
        project_id=xy_project.pk, model_version=0, strategy="margin", chunks_total=4, items_total=40
    )

    results = [queue_services.scoring_chunk_done(scoring_row.pk, 10) for _ in range(4)]

    assert results == [False, False, False, True]
    scoring_row.refresh_from_db()
    assert (scoring_row.chunks_done, scoring_row.items_scored) == (4, 40)


def test_older_scorings_are_served_until_a_newer_completes_and_then_deleted(xy_project, eager_celery):
    X, blob = blobs(60)
    items = add_items(xy_project, X)
    score_pool_task.delay(xy_project.pk)
    seeding = queue_selectors.scoring_current(xy_project.pk)
    go_live(xy_project, items, blob)

    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=25)
    score_chunk_task(xy_project.pk, plan.scoring_id, *plan.ranges[0])
    # Half scored: the queue still serves the seeding, whose rows are all there.
    assert queue_selectors.scoring_current(xy_project.pk) == seeding
    assert ItemScore.objects.filter(scoring=seeding).count() == 60

    for lo, hi in plan.ranges[1:]:
        score_chunk_task(xy_project.pk, plan.scoring_id, lo, hi)

    assert queue_selectors.scoring_current(xy_project.pk).pk == plan.scoring_id
    assert not ItemScore.objects.filter(scoring=seeding).exists()
    assert ItemScore.objects.filter(scoring_id=plan.scoring_id).count() == 60


def test_a_stale_scoring_finishing_after_a_newer_one_is_superseded(xy_project):
    X, _ = blobs(20)
    add_items(xy_project, X)
    stale = scoring.score_pool_plan(xy_project.pk)
    newer = scoring.score_pool_plan(xy_project.pk, newer_than=stale.scoring_id)
    score_chunk_task(xy_project.pk, newer.scoring_id, *newer.ranges[0])

    assert score_chunk_task(xy_project.pk, stale.scoring_id, *stale.ranges[0]) == 0

    assert QueueScoring.objects.get(pk=stale.scoring_id).status == "failed"
    assert queue_selectors.scoring_current(xy_project.pk).pk == newer.scoring_id
    assert set(ItemScore.objects.values_list("scoring_id", flat=True)) == {newer.scoring_id}


def test_a_second_request_for_the_same_version_changes_nothing(xy_project, eager_celery):
    X, _ = blobs(30)
    add_items(xy_project, X)

    assert score_pool_task.delay(xy_project.pk).get() == 1
    assert score_pool_task.delay(xy_project.pk).get() == 0

    assert QueueScoring.objects.filter(project=xy_project).count() == 1
    # A request made after newer items arrived is not answered by the older scoring.
    latest = queue_selectors.scoring_latest_id(xy_project.pk)
    assert score_pool_task.delay(xy_project.pk, latest).get() == 1
    current = queue_selectors.scoring_current(xy_project.pk)
    assert current.pk > latest
    assert set(ItemScore.objects.values_list("scoring_id", flat=True)) == {current.pk}


def test_a_running_scoring_stands_for_a_request_until_it_is_presumed_lost(xy_project):
    X, _ = blobs(30)
    add_items(xy_project, X)
    running = scoring.score_pool_plan(xy_project.pk)

    assert scoring.score_pool_plan(xy_project.pk) is None

    lost = timezone.now() - scoring.SCORING_STALE_AFTER - timedelta(seconds=1)
    QueueScoring.objects.filter(pk=running.scoring_id).update(started_at=lost)
    assert scoring.score_pool_plan(xy_project.pk) is not None


def test_an_empty_pool_gets_a_complete_scoring_at_once(xy_project, eager_celery):
    assert score_pool_task.delay(xy_project.pk).get() == 0

    current = queue_selectors.scoring_current(xy_project.pk)
    assert (current.items_total, current.chunks_total, current.status) == (0, 0, "complete")


# Stored rows


def test_rows_with_and_without_suggestions_store_together(xy_project):
    X, _ = blobs(4)
    items = add_items(xy_project, X)
    label_id = xy_project.labels.first().pk
    scoring_row = queue_services.scoring_start(
        project_id=xy_project.pk, model_version=1, strategy="margin", chunks_total=1, items_total=4
    )
    rows = [(items[0].pk, 0.9, label_id, 0.55), (items[1].pk, 0.1, None, None), (items[2].pk, 0.5, label_id, None),
            (items[3].pk, 0.3, None, 0.7)]

    assert queue_services.item_scores_store(scoring_row.pk, rows) == 4

    assert scores_of(scoring_row.pk) == {item_id: (p, lab, conf) for item_id, p, lab, conf in rows}


def test_reprioritising_puts_the_items_first_in_order_and_again_changes_nothing(xy_project):
    X, _ = blobs(6)
    items = add_items(xy_project, X)
    scoring_row = queue_services.scoring_start(
        project_id=xy_project.pk, model_version=1, strategy="batch", chunks_total=1, items_total=6
    )
    queue_services.item_scores_store(
        scoring_row.pk, [(item.pk, 0.1 * i, None, None) for i, item in enumerate(items)]
    )
    wanted = [items[1].pk, items[0].pk, items[3].pk]

    scoring.item_scores_reprioritise(scoring_row.pk, wanted)
    once = scores_of(scoring_row.pk)
    scoring.item_scores_reprioritise(scoring_row.pk, wanted)

    assert ranking(scoring_row.pk) == [*wanted, items[5].pk, items[4].pk, items[2].pk]
    assert scores_of(scoring_row.pk) == once


# Asking for a scoring when an import's features are stored


def test_an_imports_finished_features_ask_for_a_scoring_unless_its_items_are_scored(
    xy_project, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    from annotations.models import ImportJob

    sent = []
    monkeypatch.setattr(current_app, "send_task", send_task_fake(sent))
    X, _ = blobs(10)
    job = ImportJob.objects.create(project=xy_project, filename="a.csv", status="done", features_total=10)
    items = [ItemFactory(project=xy_project, import_job=job, values=[float(v) for v in p]) for p in X]

    with django_capture_on_commit_callbacks(execute=True):
        features_compute_chunk(xy_project.pk, [item.pk for item in items])

    assert sent == [("learner.score_pool", [xy_project.pk, 0])]
    score_pool_task.delay(xy_project.pk, 0)
    # Its items are scored now: finishing the same job's features again asks for nothing.
    assert scoring.score_pool_after_features(xy_project.pk, [job.pk]) is False


# Storage: a partition per scoring (PostgreSQL), chunk dedup, reconciliation


def score_all(project: Project, plan) -> None:
    for n, (lo, hi) in enumerate(plan.ranges):
        score_chunk_task(project.pk, plan.scoring_id, lo, hi, n)


@pytest.mark.postgres  # partitions are PostgreSQL's
def test_each_scoring_has_a_partition_indexed_at_completion_and_dropped_when_a_newer_completes(xy_project):
    X, _ = blobs(30)
    add_items(xy_project, X)
    first = scoring.score_pool_plan(xy_project.pk, chunk_items=10)
    assert first.scoring_id in queue_selectors.item_score_partitions()
    partition = queue_selectors.scoring_partition(first.scoring_id)

    score_all(xy_project, first)

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", [partition])
        assert [row[0] for row in cursor.fetchall()] == [f"{partition}_item", f"{partition}_queue"]
        cursor.execute(f'SELECT COUNT(*) FROM "{partition}"')
        assert cursor.fetchone()[0] == 30
    second = scoring.score_pool_plan(xy_project.pk, newer_than=first.scoring_id, chunk_items=10)
    assert {first.scoring_id, second.scoring_id} <= set(queue_selectors.item_score_partitions())

    score_all(xy_project, second)

    assert queue_selectors.scoring_current(xy_project.pk).pk == second.scoring_id
    partitions = queue_selectors.item_score_partitions()
    assert second.scoring_id in partitions and first.scoring_id not in partitions
    assert ItemScore.objects.filter(scoring_id=second.scoring_id).count() == 30


def partition_analyzed(scoring_id: int) -> bool:
    """Whether the planner has statistics of the partition's columns (the items browser's filters are planned on them)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM pg_stats WHERE tablename = %s", [queue_selectors.scoring_partition(scoring_id)])
        return cursor.fetchone()[0] > 0


def partition_indexes(scoring_id: int) -> list[str]:
    partition = queue_selectors.scoring_partition(scoring_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", [partition])
        return [row[0][len(partition) + 1:] for row in cursor.fetchall()]


@pytest.mark.postgres  # partitions are PostgreSQL's
@pytest.mark.django_db(transaction=True)
def test_a_pool_larger_than_the_head_is_served_from_its_head_first_then_whole_once_indexed(
    xy_project, manager, settings, monkeypatch
):
    settings.LABELHUB_SCORING_HEAD = 10
    Project.objects.filter(pk=xy_project.pk).update(audit_share=0.0, retrain_every_n_labels=3)
    xy_project.refresh_from_db()
    X, blob = blobs(60)
    items = add_items(xy_project, X)
    sent = []
    monkeypatch.setattr(current_app, "send_task", send_task_fake(sent))
    go_live(xy_project, items, blob)
    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=25)

    score_all(xy_project, plan)  # outside a transaction: the finish's two connections

    served = queue_selectors.scoring_current(xy_project.pk)
    assert served.pk == plan.scoring_id and served.head_floor is not None
    assert ("learner.score_index_rest", [served.pk]) in sent  # the whole pool is indexed next
    assert partition_indexes(served.pk) == ["head", "item"]
    assert not partition_analyzed(served.pk)
    in_head = ItemScore.objects.filter(scoring=served, priority__gte=served.head_floor).count()
    assert 10 <= in_head <= 13  # the head, and the diverse batch of 3 put first
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            f'EXPLAIN SELECT s.item_id FROM "{ItemScore._meta.db_table}" s WHERE {head_condition(served, "s")}'
            f" AND s.scoring_id = %s ORDER BY s.priority DESC LIMIT 1", [served.pk],
        )
        assert "_head" in "\n".join(row[0] for row in cursor.fetchall())  # the head's condition is the index's

    # The queue walks the head, then on past it, highest priority first; skips keep the items unlabeled.
    order, walked = ranking(served.pk), []
    for _ in range(in_head + 3):
        lease = queue_services.queue_next(project=xy_project, user=manager)
        walked.append(lease.item_id)
        queue_services.lease_skip(lease_id=lease.pk, user=manager)
    assert walked == order[:in_head + 3]

    # The index task was lost: after a while reconciliation sends it again, and it indexes the whole pool.
    sent.clear()
    assert scoring.score_pool_reconcile()["reindexed"] == 0
    QueueScoring.objects.filter(pk=served.pk).update(finished_at=timezone.now() - timedelta(hours=1))
    assert scoring.score_pool_reconcile()["reindexed"] == 1
    assert sent == [("learner.score_index_rest", [served.pk])]
    assert score_index_rest_task(*sent[0][1]) is True
    assert score_index_rest_task(served.pk) is False  # done already

    assert queue_selectors.scoring_current(xy_project.pk).head_floor is None
    assert partition_indexes(served.pk) == ["confidence", "head", "item", "queue"]
    assert partition_analyzed(served.pk)
    lease = queue_services.queue_next(project=xy_project, user=manager)
    assert lease.item_id == order[in_head + 3]


def test_a_pool_larger_than_the_head_is_served_highest_priority_first_on_either_database(
    xy_project, manager, settings, monkeypatch
):
    """PostgreSQL indexes a large pool's head first and the whole pool afterwards; SQLite, without partial
    indexes, serves the whole pool at once. Either way the queue walks it highest priority first, past the head."""
    settings.LABELHUB_SCORING_HEAD = 10
    Project.objects.filter(pk=xy_project.pk).update(audit_share=0.0)
    xy_project.refresh_from_db()
    X, blob = blobs(60)
    items = add_items(xy_project, X)
    monkeypatch.setattr(current_app, "send_task", send_task_fake())
    go_live(xy_project, items, blob)
    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=25)
    score_all(xy_project, plan)

    served = queue_selectors.scoring_current(xy_project.pk)
    assert served.pk == plan.scoring_id
    order, walked = ranking(served.pk), []
    for _ in range(15):
        lease = queue_services.queue_next(project=xy_project, user=manager)
        walked.append(lease.item_id)
        queue_services.lease_skip(lease_id=lease.pk, user=manager)
    assert walked == order[:15]

    # Indexing the rest is PostgreSQL's work alone; afterwards neither database has a head.
    assert score_index_rest_task(served.pk) is (connection.vendor == "postgresql")
    assert score_index_rest_task(served.pk) is False
    assert queue_selectors.scoring_current(xy_project.pk).head_floor is None
    assert queue_services.queue_next(project=xy_project, user=manager).item_id == order[15]


@pytest.mark.postgres  # partitions are PostgreSQL's
@pytest.mark.django_db(transaction=True)
def test_a_long_reader_of_the_scores_delays_neither_completion_nor_the_queue_reads_behind_the_drop(xy_project):
    """Dropping the older partition waits only moments for the table; while a long transaction holds
    it, the partition is left for reconciliation instead of queueing every reader behind the drop."""
    X, _ = blobs(20)
    add_items(xy_project, X)
    first = scoring.score_pool_plan(xy_project.pk, chunk_items=10)
    score_all(xy_project, first)
    second = scoring.score_pool_plan(xy_project.pk, newer_than=first.scoring_id, chunk_items=10)
    conninfo = connection.get_connection_params()
    conninfo.pop("cursor_factory", None)
    waits, done = [], threading.Event()

    def read_scores(conn) -> None:  # the queue's reads, one after another, until the scoring is done
        while not done.is_set():
            started = time.monotonic()
            conn.execute("SELECT COUNT(*) FROM annotations_itemscore").fetchone()
            waits.append(time.monotonic() - started)

    with psycopg.connect(**conninfo) as long_reader, psycopg.connect(**conninfo, autocommit=True) as queue:
        long_reader.execute("SELECT COUNT(*) FROM annotations_itemscore").fetchone()  # its transaction stays open
        reader = threading.Thread(target=read_scores, args=(queue,))
        started = time.monotonic()
        reader.start()
        score_all(xy_project, second)
        finished = time.monotonic() - started
        done.set()
        reader.join(timeout=30)

    assert queue_selectors.scoring_current(xy_project.pk).pk == second.scoring_id
    assert first.scoring_id in queue_selectors.item_score_partitions()  # left for reconciliation
    assert finished < score_partitions.PRUNE_WAIT_S + 2
    assert len(waits) > 10 and max(waits) < 0.5


def test_a_chunk_delivered_twice_at_once_is_stored_and_counted_once(xy_project, monkeypatch):
    X, _ = blobs(20)
    add_items(xy_project, X)
    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=10)
    lo, hi = plan.ranges[0]
    assert score_chunk_task(xy_project.pk, plan.scoring_id, lo, hi, 0) == 10
    # The second delivery read the scoring before the first one stored the chunk: it scores the
    # chunk again, and its store finds the chunk's bit set.
    monkeypatch.setattr(queue_services, "scoring_chunk_is_stored", lambda scoring_row, chunk: False)

    assert score_chunk_task(xy_project.pk, plan.scoring_id, lo, hi, 0) == 0

    with pytest.raises(queue_services.ChunkStoredAlready):
        queue_services.item_scores_store_chunk(plan.scoring_id, 0, [(int(lo), 0.5, None, None)])
    row = QueueScoring.objects.get(pk=plan.scoring_id)
    assert (row.chunks_done, row.items_scored, row.status) == (1, 10, "running")
    assert ItemScore.objects.filter(scoring_id=plan.scoring_id).count() == 10


def stalled() -> None:
    """Make every running scoring look as if its last chunk was stored long ago."""
    long_ago = timezone.now() - scoring.SCORING_STALLED_AFTER - timedelta(minutes=1)
    QueueScoring.objects.filter(status="running").update(progressed_at=long_ago, started_at=long_ago)


def test_reconciliation_sends_the_lost_chunk_of_a_stalled_scoring_again(
    xy_project, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(current_app, "send_task", send_task_fake(sent))
    X, _ = blobs(30)
    add_items(xy_project, X)
    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=10)
    for n in (0, 2):  # chunk 1's message (or its worker) is lost
        score_chunk_task(xy_project.pk, plan.scoring_id, *plan.ranges[n], n)

    with django_capture_on_commit_callbacks(execute=True):
        assert scoring.score_pool_reconcile()["chunks_resent"] == 0  # still progressing: nothing sent
    assert sent == []
    stalled()
    with django_capture_on_commit_callbacks(execute=True):
        assert scoring.score_pool_reconcile()["chunks_resent"] == 1
    with django_capture_on_commit_callbacks(execute=True):  # once sent, it is not sent again at once
        assert scoring.score_pool_reconcile()["chunks_resent"] == 0

    lo, hi = plan.ranges[1]
    assert sent == [("learner.score_chunk", [xy_project.pk, plan.scoring_id, lo, hi, 1])]
    assert PeriodicTask.objects.filter(task="learner.score_pool_reconcile", enabled=True).exists()
    score_chunk_task(*sent[0][1])
    done = QueueScoring.objects.get(pk=plan.scoring_id)
    assert (done.status, done.chunks_done, done.items_scored) == ("complete", 3, 30)
    assert ItemScore.objects.filter(scoring=done).count() == 30


def test_reconciliation_finishes_a_scoring_whose_chunks_are_stored_but_whose_finisher_was_lost(
    xy_project, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(current_app, "send_task", send_task_fake(sent))
    X, _ = blobs(20)
    add_items(xy_project, X)
    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=10)
    with monkeypatch.context() as lost:
        lost.setattr(scoring, "scoring_finish", lambda project_id, scoring_id: False)
        score_all(xy_project, plan)
    assert QueueScoring.objects.get(pk=plan.scoring_id).status == "running"

    stalled()
    with django_capture_on_commit_callbacks(execute=True):
        scoring.score_pool_reconcile()
    assert [name for name, _ in sent] == ["learner.score_chunk"]
    score_chunk_task(*sent[0][1])

    assert queue_selectors.scoring_current(xy_project.pk).pk == plan.scoring_id


def test_reconciliation_plans_again_a_scoring_whose_plan_was_interrupted(
    xy_project, monkeypatch, django_capture_on_commit_callbacks
):
    X, _ = blobs(30)
    add_items(xy_project, X)

    def lost(scoring_id: int, chunk: int, lo: int, hi: int) -> None:
        if chunk == 1:
            raise SystemExit("the planning worker is killed")

    with pytest.raises(SystemExit):
        scoring.score_pool_plan(xy_project.pk, chunk_items=10, send=lost)
    interrupted = QueueScoring.objects.get(project=xy_project)
    assert (interrupted.status, interrupted.chunks_total, queue_services.scoring_chunk_ranges(interrupted)) == (
        "running", 3, [],
    )
    sent = []
    monkeypatch.setattr(current_app, "send_task", send_task_fake(sent))
    stalled()

    with django_capture_on_commit_callbacks(execute=True):
        assert scoring.score_pool_reconcile()["rescored"] == 1

    assert sent == [("learner.score_pool", [xy_project.pk, interrupted.pk])]
    interrupted.refresh_from_db()
    assert interrupted.status == "failed" and "interrupted" in interrupted.error
    assert scoring.score_pool_plan(xy_project.pk, newer_than=interrupted.pk) is not None


@pytest.mark.postgres  # partitions are PostgreSQL's
def test_reconciliation_rescores_a_pool_whose_served_rows_were_lost(
    xy_project, eager_celery, monkeypatch, django_capture_on_commit_callbacks
):
    X, _ = blobs(20)
    add_items(xy_project, X)
    score_pool_task.delay(xy_project.pk)
    served = queue_selectors.scoring_current(xy_project.pk)
    sent = []
    monkeypatch.setattr(current_app, "send_task", send_task_fake(sent))
    # What recovery from a crash does to an unlogged partition.
    with connection.cursor() as cursor:
        cursor.execute(f'TRUNCATE "{queue_selectors.scoring_partition(served.pk)}"')

    with django_capture_on_commit_callbacks(execute=True):
        assert scoring.score_pool_reconcile()["rescored"] == 1

    assert sent == [("learner.score_pool", [xy_project.pk, served.pk])]


def test_the_queue_serves_the_newest_complete_scoring_while_a_newer_one_is_stored(
    xy_project, manager, eager_celery, monkeypatch
):
    Project.objects.filter(pk=xy_project.pk).update(audit_share=0.0)
    xy_project.refresh_from_db()
    X, blob = blobs(40)
    items = add_items(xy_project, X)
    score_pool_task.delay(xy_project.pk)
    seeding = queue_selectors.scoring_current(xy_project.pk)
    with monkeypatch.context() as quiet:  # the swap's own rescore is planned below, in chunks
        quiet.setattr(current_app, "send_task", send_task_fake())
        version, _ = go_live(xy_project, items, blob)
    plan = scoring.score_pool_plan(xy_project.pk, chunk_items=15)
    score_chunk_task(xy_project.pk, plan.scoring_id, *plan.ranges[0], 0)

    first = queue_services.queue_next(project=xy_project, user=manager)
    while first.is_audit:  # before a model ranks the queue, half the draws are audit: a random item
        queue_services.lease_release(lease_id=first.pk, user=manager)
        first = queue_services.queue_next(project=xy_project, user=manager)

    assert first.model_version == 0
    assert first.item_id == ranking(seeding.pk)[0]
    for n in range(1, len(plan.ranges)):
        score_chunk_task(xy_project.pk, plan.scoring_id, *plan.ranges[n], n)
    queue_services.lease_release(lease_id=first.pk, user=manager)
    served = queue_services.queue_next(project=xy_project, user=manager)
    assert served.model_version == version.number
    assert served.item_id == ranking(plan.scoring_id)[0]


def test_batch_probabilities_match_scikit_learns():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    pool = rng.normal(size=(500, 6)).astype(np.float32)
    three = fit("tabular", X, rng.integers(0, 3, 200))
    two = fit("tabular", X, rng.integers(0, 2, 200))
    text = fit("text", sparse.random(200, 30, density=0.2, format="csr", random_state=1), rng.integers(0, 3, 200))
    text_pool = sparse.random(500, 30, density=0.2, format="csr", random_state=2)

    for model, rows, classes in [
        (three, pool, [0, 1, 2]), (two, pool, [0, 1]), (two, pool, [1, 5, 0]), (text, text_pool, [0, 1, 2]),
    ]:
        assert proba_batch(model, rows, classes) == pytest.approx(proba_over(model, rows, classes), abs=1e-6)


def test_a_chunk_reads_the_dense_features_of_its_unlabeled_items_and_refuses_rows_of_another_width(xy_project, manager):
    X, _ = blobs(12)
    items = add_items(xy_project, X)
    label(items[:2], [xy_project.labels.first()] * 2, manager)

    ids, matrix = selectors.pool_matrix_unlabeled(xy_project.pk, (items[0].pk, items[9].pk))

    by_id = dict(zip(ids.tolist(), matrix.tolist(), strict=True))
    assert sorted(by_id) == [item.pk for item in items[2:10]]
    assert np.allclose([by_id[item.pk] for item in items[2:10]], X[2:10].astype(np.float32))
    FeatureVector.objects.filter(item_id=items[5].pk).update(values=np.zeros(3, dtype=np.float32).tobytes())
    with pytest.raises(ValueError, match="do not have 2 values each"):
        selectors.pool_matrix_unlabeled(xy_project.pk, (items[0].pk, items[9].pk))
