"""Training runs: the gate promotes a better model, keeps the champion otherwise, and one run at a time."""
import numpy as np
import pytest

from annotations.models import Annotation
from learner.models import LiveModel, ModelVersion, SwapHistory, TrainingRun
from learner.services.training import training_run_execute, training_run_request

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
    assert "majority-class baseline" in run.decision["reason"]
    assert SwapHistory.objects.get(project=labeled_blobs).to_version == live
    assert set(run.timings) >= {"snapshot", "train", "evaluate", "gate", "swap"}


def test_a_worse_candidate_is_rejected_and_the_champion_stays(labeled_blobs):
    champion = _run(labeled_blobs)
    assert champion.status == TrainingRun.Status.PROMOTED
    live_before = LiveModel.objects.get(project=labeled_blobs).version_id
    # Corrupt the training labels (not the audit ones): a model trained on them is worse.
    labels = list(labeled_blobs.labels.order_by("order")[:2])
    rng = np.random.default_rng(0)
    for annotation in Annotation.objects.filter(item__project=labeled_blobs, is_audit=False):
        annotation.label = labels[int(rng.integers(0, 2))]
        annotation.save(update_fields=["label"])

    run = _run(labeled_blobs)

    assert run.status == TrainingRun.Status.KEPT_CHAMPION
    assert "kept" in run.decision["reason"].lower()
    assert LiveModel.objects.get(project=labeled_blobs).version_id == live_before
    assert run.model_version.status == ModelVersion.Status.REJECTED
    assert SwapHistory.objects.filter(project=labeled_blobs).count() == 1


def test_too_small_an_audit_set_keeps_the_champion_and_says_so(labeled_blobs):
    labeled_blobs.gate_min_audit = 500
    labeled_blobs.save()
    run = _run(labeled_blobs)
    assert run.status == TrainingRun.Status.KEPT_CHAMPION
    assert "Audit set too small: 80 audit labels, 500 needed" in run.decision["reason"]
    assert not LiveModel.objects.filter(project=labeled_blobs, version__isnull=False).exists()


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
