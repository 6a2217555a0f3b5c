"""Unreliable experts: a stretch of labels that agrees with the live model far less than the others' is left out."""
import numpy as np
import pytest

from annotations.models import Annotation
from learner.ml.reliability import unreliable_windows
from learner.models import TrainingRun
from learner.selectors import training_run_label_ids
from learner.services.training import training_run_execute, training_run_request
from tests.factories import AnnotationFactory, UserFactory
from tests.learner.conftest import blob_items


def _stream(rng, n=400, experts=4, agreement=0.7):
    return rng.integers(0, experts, n), rng.random(n) < agreement


def test_an_expert_answering_at_random_from_some_point_is_flagged_from_there():
    rng = np.random.default_rng(0)
    annotators, agrees = _stream(rng)
    noisy = (annotators == 0) & (np.arange(len(annotators)) >= 150)
    agrees[noisy] = rng.random(noisy.sum()) < 0.1
    windows = unreliable_windows(annotators, agrees)
    flagged = np.unique(np.concatenate([w.positions for w in windows]))
    assert {w.annotator for w in windows} == {0}
    assert flagged.min() >= 100  # nothing long before the expert turned careless
    assert np.isin(np.flatnonzero(noisy), flagged).mean() > 0.6  # most of what followed


def test_honest_experts_are_rarely_flagged_over_a_whole_run_even_when_they_differ():
    flagged_runs = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        annotators, agrees = _stream(rng, agreement=0.6)
        # One expert disagrees with the model more than the others (harder items, or right where it is wrong).
        own = annotators == 1
        agrees[own] = rng.random(own.sum()) < 0.45
        # Retrains look again every 20 labels: a flag at any of them counts against the run.
        flagged_runs += any(unreliable_windows(annotators[:t], agrees[:t]) for t in range(100, 401, 20))
    assert flagged_runs <= 6  # 3 measured


def test_a_sole_expert_is_never_flagged():
    rng = np.random.default_rng(1)
    assert unreliable_windows(np.zeros(300, dtype=int), rng.random(300) < 0.05) == []


@pytest.mark.django_db
def test_training_leaves_out_a_careless_experts_labels_and_says_so(labeled_blobs, manager):
    train = TrainingRun.objects
    first = training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)
    assert first.status == TrainingRun.Status.PROMOTED
    negative, positive = labeled_blobs.labels.order_by("order")[:2]
    careful, careless = UserFactory(username="careful"), UserFactory(username="careless")
    rng = np.random.default_rng(3)
    items = blob_items(labeled_blobs, rng, 120)
    for i, item in enumerate(items):
        truth = positive if i % 2 else negative
        expert = careful if i % 2 == 0 or i % 4 == 1 else careless
        label = truth if expert == careful else (negative, positive)[int(rng.integers(0, 2))]
        # Both were served with the live model's (right) prediction; the careless one ignores the items.
        AnnotationFactory(item=item, annotator=expert, label=label, predicted_label=truth, model_version=1)

    run = training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)

    left_out = run.decision["left_out"]
    assert [u["username"] for u in left_out] == ["careless"]
    assert left_out[0]["labels"] >= 25 and left_out[0]["agreement"] < 0.7 and left_out[0]["others_agreement"] == 1.0
    assert left_out[0]["unreliable"] is True
    assert "Left out as unreliable: " in run.decision["reason"] and "labels of careless" in run.decision["reason"]
    careless_ids = set(Annotation.objects.filter(annotator=careless).values_list("pk", flat=True))
    assert len(careless_ids & set(training_run_label_ids(run))) == len(careless_ids) - left_out[0]["labels"]
    assert train.filter(project=labeled_blobs).count() == 2


@pytest.mark.django_db
def test_training_holds_back_an_expert_in_doubt_without_calling_them_unreliable(labeled_blobs, manager):
    first = training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)
    assert first.status == TrainingRun.Status.PROMOTED
    negative, positive = labeled_blobs.labels.order_by("order")[:2]
    careful, doubtful = UserFactory(username="careful"), UserFactory(username="doubtful")
    items = blob_items(labeled_blobs, np.random.default_rng(4), 100)
    wrong = {1, 5, 9, 13, 17, 21, 25}  # 7 of doubtful's 25 labels: 72 % agreement against the others' 100 %
    for i, item in enumerate(items):
        truth = positive if i % 2 else negative
        expert = doubtful if i % 4 == 1 else careful
        label = (positive if truth == negative else negative) if i in wrong else truth
        AnnotationFactory(item=item, annotator=expert, label=label, predicted_label=truth, model_version=1)

    run = training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)

    # Fisher's exact p = C(25, 7) / C(100, 7) = 3.0e-5: past the hold-back level (1e-3), short of unreliable (1e-5).
    [held] = run.decision["left_out"]
    assert held["username"] == "doubtful" and held["labels"] == 25 and held["unreliable"] is False
    assert "Held back while in doubt: 25 labels of doubtful" in run.decision["reason"]
    assert "unreliable" not in run.decision["reason"]
    doubtful_ids = set(Annotation.objects.filter(annotator=doubtful).values_list("pk", flat=True))
    assert not doubtful_ids & set(training_run_label_ids(run))
