"""Training runs: the gate promotes a better model, keeps the champion otherwise, and one run at a time."""
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection, connections
from django.utils import timezone

from annotations.models import Annotation
from annotations.services import item_resolve
from learner.ml import gate as gate_ml
from learner.ml.evaluation import evaluate
from learner.models import DriftCheck, LiveModel, ModelVersion, SwapHistory, TrainingRun
from learner.services.models import model_version_force_promote
from learner.services.training import (
    RUN_LOST_AFTER_SECONDS,
    _run_lock_key,
    training_run_execute,
    training_run_request,
    training_runs_reap,
)
from tests.factories import AnnotationFactory, LabelFactory, ProjectFactory
from tests.learner.conftest import blob_items
from tests.sent_tasks import send_task_fake

pytestmark = pytest.mark.django_db


def _run(project, trigger="manual") -> TrainingRun:
    run = training_run_request(project_id=project.pk, trigger=trigger, evidence={"by": "test"})
    return training_run_execute(run.pk)


def test_first_model_beats_the_majority_baseline_and_goes_live(labeled_blobs):
    run = _run(labeled_blobs)
    assert run.status == TrainingRun.Status.PROMOTED, run.decision or run.error
    live = LiveModel.objects.get(project=labeled_blobs).version
    assert live.training_run_id == run.pk and live.status == ModelVersion.Status.LIVE
    assert live.metrics["n"] == 80 and live.metrics["accuracy"] > 0.95
    assert live.labels_used == 120  # audit labels are kept for evaluation only
    assert run.decision["reason"].startswith("Promoted: beats the majority-class baseline")
    assert SwapHistory.objects.get(project=labeled_blobs).to_version == live
    assert set(run.timings) >= {"snapshot", "train", "evaluate", "gate", "swap"}


def test_a_candidate_trained_on_shuffled_labels_is_rejected_and_says_why(labeled_blobs):
    champion = _run(labeled_blobs)
    assert champion.status == TrainingRun.Status.PROMOTED
    live_before = LiveModel.objects.get(project=labeled_blobs).version_id
    # Shuffle the training labels (not the audit ones): a model trained on them is worse.
    labels = list(labeled_blobs.labels.order_by("order")[:2])
    rng = np.random.default_rng(0)
    for annotation in Annotation.objects.filter(item__project=labeled_blobs, is_audit=False):
        annotation.label = labels[int(rng.integers(0, 2))]
        annotation.save(update_fields=["label"])

    run = _run(labeled_blobs)

    assert run.status == TrainingRun.Status.KEPT_CHAMPION
    assert run.decision["verdict"] == "rejected" and run.decision["worse"] is True
    assert run.decision["comparison"] == "not_worse" and run.decision["rule"] == "not_worse"
    assert run.decision["reason"].startswith("Rejected: worse than v1 ")
    assert LiveModel.objects.get(project=labeled_blobs).version_id == live_before
    assert run.model_version.status == ModelVersion.Status.REJECTED
    assert SwapHistory.objects.filter(project=labeled_blobs).count() == 1


def test_a_routine_retrain_that_is_not_worse_goes_live_under_the_default_rule(labeled_blobs):
    assert _run(labeled_blobs).status == TrainingRun.Status.PROMOTED
    run = _run(labeled_blobs, trigger="count")  # the same labels: an equal model, not a better one

    assert run.status == TrainingRun.Status.PROMOTED, run.decision
    assert run.decision["reason"].startswith("Promoted: not worse than v1 (accuracy 1.000 against 1.000 on 80 audit")
    assert LiveModel.objects.get(project=labeled_blobs).version.number == 2


def test_a_retrain_that_differs_from_the_live_model_only_in_how_it_is_fitted_is_routine(labeled_blobs):
    """A live model fitted by another solver (text models were fitted by L-BFGS before Newton-CG) is the same
    pipeline: its retrain goes live as a routine one, not as a change of kind that must prove itself better."""
    assert _run(labeled_blobs).status == TrainingRun.Status.PROMOTED
    live = ModelVersion.objects.get(project=labeled_blobs, number=1)
    assert live.hyperparameters["clf"]["solver"] == "lbfgs"  # tabular rows are dense
    live.hyperparameters["clf"].update(solver="newton-cg", n_jobs=2)
    live.save(update_fields=["hyperparameters"])

    run = _run(labeled_blobs, trigger="count")

    assert run.status == TrainingRun.Status.PROMOTED, run.decision
    assert run.decision["comparison"] == "not_worse" and not run.decision.get("change_of_kind")
    assert run.decision["reason"].startswith("Promoted: not worse than v1 ")


def test_under_the_better_rule_an_equal_retrain_is_not_promoted_in_grey_words(labeled_blobs):
    labeled_blobs.promotion_rule = "better"
    labeled_blobs.save()
    assert _run(labeled_blobs).status == TrainingRun.Status.PROMOTED
    run = _run(labeled_blobs)

    assert run.status == TrainingRun.Status.KEPT_CHAMPION
    assert run.decision["verdict"] == "not_promoted" and run.decision["worse"] is False
    assert run.decision["reason"].startswith("Not promoted: not enough evidence yet that it is better than v1 ")
    assert run.model_version.status == ModelVersion.Status.NOT_PROMOTED
    assert run.model_version.get_status_display() == "Not promoted"


def test_a_change_of_kind_needs_the_better_rule(labeled_blobs):
    assert _run(labeled_blobs).status == TrainingRun.Status.PROMOTED
    # The live model came from other hyperparameters than the pipeline trains now: a change of kind.
    ModelVersion.objects.filter(project=labeled_blobs, number=1).update(hyperparameters={"clf": {"C": 0.01}})

    run = _run(labeled_blobs)

    assert run.status == TrainingRun.Status.KEPT_CHAMPION
    assert run.decision["comparison"] == "better" and run.decision["rule"] == "not_worse"
    assert run.decision["change_of_kind"] == "another hyperparameters than v1"
    assert "must prove itself better" in run.decision["reason"]
    assert LiveModel.objects.get(project=labeled_blobs).version.number == 1


def test_a_candidate_of_another_algorithm_goes_live_only_when_it_proves_better(labeled_blobs, manager):
    negative, positive = labeled_blobs.labels.order_by("order")[:2]
    training = Annotation.objects.filter(item__project=labeled_blobs, is_audit=False)
    truth = dict(training.values_list("pk", "label_id"))
    # A poor live model of another algorithm: trained on swapped labels, recorded as a random forest, and
    # made live by a manager.
    training.update(label=negative)
    for pk in list(truth)[::2]:
        Annotation.objects.filter(pk=pk).update(label=positive)
    assert _run(labeled_blobs).decision["verdict"] == "rejected"  # worse than always answering one label
    poor = ModelVersion.objects.get(project=labeled_blobs, number=1)
    model_version_force_promote(version=poor, actor=manager, reason="trying the forest")
    ModelVersion.objects.filter(pk=poor.pk).update(algorithm="RandomForestClassifier")
    for pk, label_id in truth.items():
        Annotation.objects.filter(pk=pk).update(label_id=label_id)

    run = _run(labeled_blobs)

    assert run.decision["comparison"] == "better" and run.decision["change_of_kind"] == "another algorithm than v1"
    assert run.status == TrainingRun.Status.PROMOTED, run.decision["reason"]
    assert run.decision["reason"].startswith("Promoted: better than v1 ")


def test_too_small_an_audit_set_is_not_promoted_and_says_how_many_are_needed(labeled_blobs):
    labeled_blobs.gate_min_audit_first = 500
    labeled_blobs.save()
    run = _run(labeled_blobs)
    assert run.status == TrainingRun.Status.KEPT_CHAMPION
    assert run.decision["reason"] == "Not promoted: not enough evidence yet (80 audit labels, 500 needed)."
    assert run.model_version.status == ModelVersion.Status.NOT_PROMOTED
    assert not LiveModel.objects.filter(project=labeled_blobs, version__isnull=False).exists()

    labeled_blobs.gate_min_audit_first, labeled_blobs.gate_min_audit = 10, 500
    labeled_blobs.promotion_rule = "better"
    labeled_blobs.save()
    assert _run(labeled_blobs).status == TrainingRun.Status.PROMOTED
    run = _run(labeled_blobs)
    assert run.status == TrainingRun.Status.KEPT_CHAMPION
    assert run.decision["reason"] == "Not promoted: not enough evidence yet (80 audit labels, 500 needed)."
    assert run.decision["worse"] is False


def test_a_stale_live_model_is_replaced_without_the_evidence_bar(labeled_blobs):
    labeled_blobs.promotion_rule = "better"
    labeled_blobs.gate_min_audit = 500
    labeled_blobs.save()
    assert _run(labeled_blobs).status == TrainingRun.Status.PROMOTED
    assert _run(labeled_blobs).status == TrainingRun.Status.KEPT_CHAMPION  # healthy: 'better' holds it back

    DriftCheck.objects.create(project=labeled_blobs, model_version=1, drifted=True, evidence={})
    run = _run(labeled_blobs, trigger="count")

    assert run.status == TrainingRun.Status.PROMOTED, run.decision
    assert run.decision["comparison"] == "not_worse" and run.decision["stale"] == "data drift was found"
    assert "the live model is stale (data drift was found)" in run.decision["reason"]


def test_the_first_model_goes_live_on_a_handful_of_audit_labels_when_clearly_better(labeled_blobs):
    audit = Annotation.objects.filter(item__project=labeled_blobs, is_audit=True).order_by("pk")
    handful = list(audit.values_list("pk", flat=True)[:12])
    audit.exclude(pk__in=handful).update(is_audit=False)  # the others become training labels
    Annotation.objects.filter(pk__in=handful[9:]).update(is_audit=False)
    too_few = _run(labeled_blobs)
    assert too_few.status == TrainingRun.Status.KEPT_CHAMPION
    assert too_few.decision["reason"] == "Not promoted: not enough evidence yet (9 audit labels, 10 needed)."

    Annotation.objects.filter(pk__in=handful[9:]).update(is_audit=True)
    run = _run(labeled_blobs)

    # Two balanced classes: the baseline is right on about half, the model on all twelve (mid-p ≈ 1/128).
    assert run.status == TrainingRun.Status.PROMOTED, run.decision
    assert run.decision["audit_n"] == 12 and run.decision["min_audit"] == 10
    assert run.decision["look"] == 1 and run.decision["alpha_look"] == 0.025  # the run with too few took no test
    assert run.decision["p_mid"] < 0.025
    assert LiveModel.objects.get(project=labeled_blobs).version.training_run_id == run.pk


SETTINGS = gate_ml.GateSettings()


def test_the_first_model_needs_a_significant_gain_over_the_majority_baseline():
    # Twelve audit items, half of them of the majority class: the baseline is right on six.
    y = np.array([1] * 6 + [2] * 6)
    clearly = gate_ml.decide_first(y, y, majority=1, settings=SETTINGS, look=1)  # 6 fixed, none broken: mid-p 1/128
    assert clearly.promote and clearly.figures["test"]["only_candidate_right"] == 6
    assert clearly.reason.startswith("Promoted: beats the majority-class baseline (audit accuracy 1.000 against 0.500")
    barely = gate_ml.decide_first(y, np.array([1] * 5 + [2] + [2] * 5 + [1]), majority=1, settings=SETTINGS, look=1)
    assert not barely.promote and barely.verdict == "not_promoted"  # 5 fixed, 1 broken: mid-p 4/64
    assert barely.reason.startswith("Not promoted: not enough evidence yet that it beats the majority-class baseline")
    # The same clear win at the fifth look must pass α / 30: six fixed items (mid-p 1/128) no longer do.
    assert not gate_ml.decide_first(y, y, majority=1, settings=SETTINGS, look=5).promote


def _against(y, champion, candidate, comparison="not_worse", **settings):
    return gate_ml.decide_against_champion(
        np.asarray(y), np.asarray(champion), np.asarray(candidate), champion=4, classes=[1, 2, 3],
        settings=gate_ml.GateSettings(**settings), comparison=comparison, look=1,
    )


def test_a_class_with_few_audit_items_losing_one_does_not_veto():
    # 48 items of class 1, the champion wrong on 8 of them; 10 of class 2; 2 of class 3.
    y = np.array([1] * 48 + [2] * 10 + [3] * 2)
    champion = y.copy()
    champion[:8] = 2
    candidate = y.copy()
    candidate[-1] = 1  # one of the two class-3 items is lost: a point drop of 50 %
    decision = _against(y, champion, candidate, comparison="better")

    assert decision.promote, decision.reason
    drop = decision.figures["recall_drops"]["3"]
    assert drop["support"] == 2 and drop["drop"] == 0.5
    assert decision.figures["classes_judged"] == 2  # classes 1 and 2 have the 10 audit items a verdict needs
    assert decision.figures["test"]["only_candidate_right"] == 8 and decision.figures["test"]["only_champion_right"] == 1


def test_a_clear_recall_drop_on_a_well_supported_class_vetoes():
    # The candidate fixes 25 items of class 1 (significant overall) but loses 12 of 40 of class 2.
    y = np.array([1] * 60 + [2] * 40)
    champion = y.copy()
    champion[:25] = 3
    candidate = y.copy()
    candidate[60:72] = 1
    decision = _against(y, champion, candidate, comparison="better")

    assert decision.figures["test"]["p_value"] < 0.05
    assert decision.verdict == "rejected"
    assert decision.reason.startswith("Rejected: worse than v4 on class 2 (recall down 0.300 on 40 audit items, lower 95% bound 0.1")


def test_not_worse_keeps_out_a_candidate_shown_worse_beyond_the_margin_and_lets_an_equal_one_through():
    y = np.array([1] * 30 + [2] * 30 + [3] * 40)
    champion, equal = y.copy(), y.copy()
    for lo, hi in ((0, 3), (30, 33), (60, 64)):
        champion[lo:hi] = y[lo:hi] % 3 + 1  # 90 % right, the errors spread over the classes
    for lo, hi in ((3, 6), (33, 36), (64, 68)):
        equal[lo:hi] = y[lo:hi] % 3 + 1  # 90 % right too, on other items
    assert _against(y, champion, equal).promote
    # 87 %: 3 points below on the point estimate, but not shown worse (p well above α): it goes live.
    slightly_worse = equal.copy()
    for i in (6, 36, 68):
        slightly_worse[i] = y[i] % 3 + 1
    slightly = _against(y, champion, slightly_worse)
    assert slightly.promote and slightly.figures["p_worse"] > 0.05
    # 80 %: 10 points below and shown worse: kept out, and the reason says by how much and how sure.
    worse = slightly_worse.copy()
    for i in (7, 8, 37, 38, 69, 70, 71):
        worse[i] = y[i] % 3 + 1
    decision = _against(y, champion, worse)
    assert decision.verdict == "rejected" and decision.figures["p_worse"] < 0.05
    assert decision.reason.startswith("Rejected: worse than v4 (accuracy 0.800 against 0.900 on 100 audit items, "
                                      "-0.100 beyond the margin of 0.02; exact McNemar p = ")
    # A margin wider than the drop tolerates it.
    assert _against(y, champion, worse, margin=0.15).promote


def test_repeated_looks_keep_the_false_promotion_of_equal_candidates_within_alpha():
    spent = gate_ml.simulate_looks(comparison="better", looks=15, runs=400, seed=1)
    unspent = gate_ml.simulate_looks(comparison="better", looks=15, runs=400, seed=1, spend=False)
    assert spent["promoted_any"] <= 0.05
    assert unspent["promoted_any"] > 0.05  # the simulation can see the problem the spending solves
    first = gate_ml.simulate_looks(comparison="first_model", accuracy=0.3, looks=15, runs=400, seed=2)
    assert first["promoted_any"] <= 0.05


def test_figures_follow_the_models_class_order_not_the_label_ids():
    # Label 7 is shown first, label 3 second: the model's columns are [7, 3], not sorted.
    y = np.array([7, 7, 3, 3, 3])
    proba = np.array([[0.99, 0.01], [0.98, 0.02], [0.01, 0.99], [0.02, 0.98], [0.03, 0.97]])
    metrics = evaluate(y, proba, [7, 3])
    assert metrics["accuracy"] == 1.0
    assert metrics["log_loss"] == pytest.approx(-np.log([0.99, 0.98, 0.99, 0.98, 0.97]).mean())
    assert metrics["per_class"] == {"7": {"precision": 1.0, "recall": 1.0, "support": 2},
                                    "3": {"precision": 1.0, "recall": 1.0, "support": 3}}
    assert metrics["confusion_matrix"] == [[2, 0], [0, 3]] and metrics["classes"] == [7, 3]
    # Confidently wrong is a large log-loss whichever way the columns run.
    assert evaluate(y, proba[:, ::-1], [7, 3])["log_loss"] > 3.0


def test_macro_f1_is_over_the_classes_with_audit_items():
    y = np.array([1, 1, 2, 2])
    proba = np.array([[0.9, 0.1, 0, 0, 0], [0.8, 0.2, 0, 0, 0], [0.1, 0.9, 0, 0, 0], [0.3, 0.7, 0, 0, 0]])
    metrics = evaluate(y, proba, [1, 2, 3, 4, 5])
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert metrics["macro_f1_classes"] == 2 and metrics["classes_total"] == 5
    assert metrics["per_class"]["4"]["support"] == 0
    # A class predicted but never labeled in the audit set still costs the classes that are.
    wrong = evaluate(y, np.array([[0.9, 0.1, 0, 0, 0], [0.1, 0, 0.9, 0, 0], [0.1, 0.9, 0, 0, 0], [0, 1, 0, 0, 0]]),
                     [1, 2, 3, 4, 5])
    assert wrong["macro_f1_classes"] == 2 and wrong["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_a_trained_model_on_labels_shown_out_of_id_order_reads_right(manager):
    project = ProjectFactory(kind="tabular", feature_names=["x0", "x1"], gate_min_audit=30)
    # Created "b" then "a", shown "a" then "b"; three more labels nobody has used yet.
    b = LabelFactory(project=project, name="b", order=1)
    a = LabelFactory(project=project, name="a", order=0)
    for order, name in enumerate("cde", start=2):
        LabelFactory(project=project, name=name, order=order)
    assert a.pk > b.pk
    for i, item in enumerate(blob_items(project, np.random.default_rng(7), 200)):
        AnnotationFactory(item=item, annotator=manager, label=b if i % 2 else a, is_audit=i >= 120)

    run = _run(project)

    assert run.status == TrainingRun.Status.PROMOTED, run.decision or run.error
    metrics = run.model_version.metrics
    assert metrics["classes"][:2] == [a.pk, b.pk] and metrics["accuracy"] == 1.0
    assert metrics["log_loss"] < 0.1
    assert metrics["macro_f1"] == 1.0 and metrics["macro_f1_classes"] == 2 and metrics["classes_total"] == 5


def test_two_requests_make_one_run(labeled_blobs):
    first = training_run_request(project_id=labeled_blobs.pk, trigger="count", evidence={})
    second = training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={})
    assert first is not None and second is None
    assert TrainingRun.objects.filter(project=labeled_blobs).count() == 1
    training_run_execute(first.pk)
    again = training_run_execute(first.pk)  # a redelivered message changes nothing
    assert again.status == TrainingRun.Status.PROMOTED
    assert ModelVersion.objects.filter(project=labeled_blobs).count() == 1


def test_a_failed_run_records_its_error_and_leaves_the_live_model(labeled_blobs):
    assert _run(labeled_blobs).status == TrainingRun.Status.PROMOTED
    live_before = LiveModel.objects.get(project=labeled_blobs).version_id
    only = labeled_blobs.labels.order_by("order").first()
    Annotation.objects.filter(item__project=labeled_blobs).update(label=only)  # one class cannot train

    run = _run(labeled_blobs)

    assert run.status == TrainingRun.Status.FAILED
    assert "at least two classes" in run.error and run.stage == "train"
    assert LiveModel.objects.get(project=labeled_blobs).version_id == live_before


def test_a_redelivered_message_of_a_lost_run_fails_it_visibly(labeled_blobs):
    run = training_run_request(project_id=labeled_blobs.pk, trigger="count", evidence={})
    # What a worker killed during training leaves behind: the run claimed, mid-stage.
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING, stage="train")

    again = training_run_execute(run.pk)

    assert again.status == TrainingRun.Status.FAILED
    assert again.error == "The worker was lost during 'train'; the live model was not changed."
    assert not LiveModel.objects.filter(project=labeled_blobs).exists()
    assert training_run_request(project_id=labeled_blobs.pk, trigger="count", evidence={}) is not None


@contextmanager
def another_process_executing(run_id: int):
    """Hold the run's lock from a second database session, as the worker executing the run does."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_run_lock_key(run_id)])
        yield
    finally:
        other.close()  # ending the session frees the lock, as a killed process's does


@pytest.mark.postgres  # run locks are PostgreSQL advisory locks
def test_a_duplicate_message_of_a_run_executing_elsewhere_does_nothing(labeled_blobs):
    run = training_run_request(project_id=labeled_blobs.pk, trigger="count", evidence={})
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING, stage="train")

    with another_process_executing(run.pk):
        again = training_run_execute(run.pk)
        assert again.status == TrainingRun.Status.RUNNING and again.error == ""
        assert training_runs_reap() == {"lost": 0, "resent": 0}
    assert training_run_request(project_id=labeled_blobs.pk, trigger="count", evidence={}) is None  # still one run

    # Once that process is gone, the run is lost: the reaper fails it without waiting for a time limit.
    assert training_runs_reap() == {"lost": 1, "resent": 0}
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error == "The worker was lost during 'train'; the live model was not changed."


def test_the_reaper_fails_a_running_run_that_outlived_the_training_time_limit(labeled_blobs):
    """A run claimed longer ago than the training task's hard time limit is executed by nobody: the reaper fails it.
    Without run locks (SQLite) its age is the only sign; PostgreSQL sees at once that nobody holds the run's lock."""
    run = training_run_request(project_id=labeled_blobs.pk, trigger="count", evidence={})
    claimed = TrainingRun.objects.filter(pk=run.pk)
    claimed.update(status=TrainingRun.Status.RUNNING, stage="train", started_at=timezone.now() - timedelta(minutes=5))
    if connection.vendor != "postgresql":
        assert training_runs_reap() == {"lost": 0, "resent": 0}  # it may still be running
        claimed.update(started_at=timezone.now() - timedelta(seconds=RUN_LOST_AFTER_SECONDS + 60))

    assert training_runs_reap() == {"lost": 1, "resent": 0}
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.finished_at is not None
    assert run.error == "The worker was lost during 'train'; the live model was not changed."
    assert training_runs_reap() == {"lost": 0, "resent": 0}


def test_the_reaper_sends_a_run_queued_too_long_again(labeled_blobs, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("labelhub.celery.app.send_task", send_task_fake(sent))
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_request(project_id=labeled_blobs.pk, trigger="count", evidence={})
    assert sent == [("learner.train_run", [run.pk])]
    with django_capture_on_commit_callbacks(execute=True):
        assert training_runs_reap() == {"lost": 0, "resent": 0}  # a fresh request's message is on its way

    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    with django_capture_on_commit_callbacks(execute=True):
        assert training_runs_reap() == {"lost": 0, "resent": 1}
    assert sent[-1] == ("learner.train_run", [run.pk])
    assert training_run_execute(run.pk).status == TrainingRun.Status.PROMOTED


def test_a_run_lost_after_its_swap_committed_is_recorded_as_promoted(labeled_blobs):
    run = _run(labeled_blobs)
    # The process died between the swap's commit and recording the run's outcome.
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING, stage="swap", decision={})

    again = training_run_execute(run.pk)

    assert again.status == TrainingRun.Status.PROMOTED and again.error == ""
    assert again.decision["note"] == "The worker was lost after the swap."
    assert again.decision["reason"].startswith("Promoted: beats the majority-class baseline")
    assert LiveModel.objects.get(project=labeled_blobs).version.training_run_id == run.pk


def test_training_learns_the_reviewers_resolved_labels_over_the_experts(labeled_blobs, manager):
    negative, positive = labeled_blobs.labels.order_by("order")[:2]
    flipped = {negative.pk: positive, positive.pk: negative}
    truth = {}
    # The experts swapped the two labels on every training item; the audit labels stay right.
    for annotation in Annotation.objects.filter(item__project=labeled_blobs, is_audit=False).select_related("item"):
        truth[annotation.item_id] = annotation.label
        annotation.label = flipped[annotation.label_id]
        annotation.save(update_fields=["label"])
    wrong = _run(labeled_blobs)
    assert wrong.status != TrainingRun.Status.PROMOTED

    for annotation in Annotation.objects.filter(item__project=labeled_blobs, is_audit=False).select_related("item"):
        item_resolve(item=annotation.item, label=truth[annotation.item_id], user=manager)
    run = _run(labeled_blobs)
    assert run.status == TrainingRun.Status.PROMOTED, run.decision or run.error
    assert run.label_snapshot_hash != wrong.label_snapshot_hash
    assert LiveModel.objects.get(project=labeled_blobs).version.metrics["accuracy"] > 0.95


def test_a_retrain_after_a_label_merge_judges_the_old_model_without_the_merged_label(labeled_blobs, manager):
    """The live model still has the merged label among its classes; the next retrain must not fail on it."""
    from annotations.services import label_merge
    from tests.factories import LabelFactory

    negative, positive = labeled_blobs.labels.order_by("order")[:2]
    # A third label, "maybe", given to a sixth of the positive training items.
    maybe = LabelFactory(project=labeled_blobs, name="maybe", order=5)
    Annotation.objects.filter(item__project=labeled_blobs, label=positive, is_audit=False, item_id__in=[
        a.item_id for a in Annotation.objects.filter(item__project=labeled_blobs, label=positive, is_audit=False)[:10]
    ]).update(label=maybe)
    first = training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)
    assert first.status == TrainingRun.Status.PROMOTED
    assert maybe.pk in first.model_version.classes

    label_merge(label=maybe, into=positive)
    second = training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)
    assert second.status != TrainingRun.Status.FAILED, second.error
    assert second.decision["champion_metrics"]["n"] == second.decision["audit_n"]
    assert maybe.pk not in second.model_version.classes


def test_between_a_label_merge_and_its_retrain_the_old_model_names_only_existing_labels(labeled_blobs, manager):
    """Its scoring and its predictions leave the merged label out (a row naming it would break its foreign key)."""
    from annotations.models import ItemScore
    from annotations.services import label_merge
    from learner.services.predict import predict
    from learner.services.simulation.scratch import pool_score_now
    from tests.factories import LabelFactory

    negative, positive = labeled_blobs.labels.order_by("order")[:2]
    maybe = LabelFactory(project=labeled_blobs, name="maybe", order=5)
    # "maybe" is the answer for a third of the positive training items, near the other class.
    near = [a.item_id for a in Annotation.objects.filter(item__project=labeled_blobs, label=positive, is_audit=False)
            .select_related("item") if a.item.values[0] + a.item.values[1] < 4]
    Annotation.objects.filter(item_id__in=near).update(label=maybe)
    first = _run(labeled_blobs)
    if first.status != TrainingRun.Status.PROMOTED:
        model_version_force_promote(version=first.model_version, reason="test", actor=manager)
    assert maybe.pk in LiveModel.objects.get(project=labeled_blobs).version.classes
    blob_items(labeled_blobs, np.random.default_rng(11), 40)  # unlabeled: the queue scores them

    label_merge(label=maybe, into=positive)
    pool_score_now(labeled_blobs.pk)
    answers = predict(project=labeled_blobs, items=[{"values": [2.5, 2.5]}, {"values": [-2.5, -2.5]}],
                            client_id=manager.pk)

    scored = set(ItemScore.objects.filter(scoring__project=labeled_blobs).values_list("predicted_label_id", flat=True))
    assert scored <= {negative.pk, positive.pk} and len(scored) == 2
    assert [a["label"] for a in answers] == [positive.name, negative.name]
    assert set(answers[0]["probabilities"]) == {negative.name, positive.name, "class_2"}
