"""Each retrain trigger fires on data made to trip it and stays quiet on data made not to."""
import json

import numpy as np
import pytest
from django_celery_beat.models import PeriodicTask

from learner.models import LiveModel, TrainingRun
from learner.services import triggers
from learner.services.training import training_run_execute, training_run_request
from tests.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.learner.conftest import blob_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_blobs(labeled_blobs):
    """The blob project with its first model live and no run active."""
    run = training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={})
    assert training_run_execute(run.pk).status == TrainingRun.Status.PROMOTED
    return labeled_blobs


def _label(project, n, *, user=None, audit=False, correct=True, version=None):
    """n new labels; with ``version``, the live model's prediction at labeling time is stored too."""
    negative, positive = project.labels.order_by("order")[:2]
    user = user or UserFactory()
    for i in range(n):
        item = ItemFactory(project=project, values=[0.0, 0.0], text="")
        truth = positive if i % 2 else negative
        predicted = truth if correct else (negative if truth == positive else positive)
        AnnotationFactory(item=item, annotator=user, label=truth, is_audit=audit,
                          model_version=version, predicted_label=predicted if version else None)


def test_count_trigger_fires_at_n_new_labels_only(live_blobs):
    live_blobs.retrain_every_n_labels = 10
    live_blobs.save()
    _label(live_blobs, 9)
    assert triggers.count_trigger_check(live_blobs.pk) is None
    _label(live_blobs, 1)
    run = triggers.count_trigger_check(live_blobs.pk)
    assert run.trigger == "count" and run.evidence["new_labels"] == 10 and run.evidence["every_n_labels"] == 10


def test_count_trigger_off_when_zero(live_blobs):
    live_blobs.retrain_every_n_labels = 0
    live_blobs.save()
    _label(live_blobs, 50)
    assert triggers.count_trigger_check(live_blobs.pk) is None


def test_schedule_is_a_beat_entry_and_fires_only_with_new_labels(live_blobs):
    live_blobs.retrain_interval_minutes = 30
    live_blobs.save()
    task = triggers.schedule_sync(live_blobs)
    assert task.task == "learner.retrain_scheduled" and json.loads(task.args) == [live_blobs.pk]
    assert task.interval.every == 30
    assert triggers.schedule_trigger(live_blobs.pk) is None
    _label(live_blobs, 3)
    run = triggers.schedule_trigger(live_blobs.pk)
    assert run.trigger == "schedule" and run.evidence == {"interval_minutes": 30, "new_labels": 3, "live_version": 1}
    live_blobs.retrain_interval_minutes = None
    triggers.schedule_sync(live_blobs)
    assert not PeriodicTask.objects.filter(task="learner.retrain_scheduled").exists()


def test_degradation_fires_when_the_audit_accuracy_is_confidently_low(live_blobs):
    version = LiveModel.objects.get(project=live_blobs).version.number
    _label(live_blobs, 60, audit=True, correct=False, version=version)
    run = triggers.degradation_check(live_blobs.pk)
    assert run.trigger == "degradation"
    assert run.evidence["audit_n"] == 60 and run.evidence["accuracy"] == 0.0 and run.evidence["upper_bound"] < 0.1


def test_degradation_ignores_a_handful_of_misses(live_blobs):
    version = LiveModel.objects.get(project=live_blobs).version.number
    _label(live_blobs, 2, audit=True, correct=False, version=version)
    assert triggers.degradation_check(live_blobs.pk) is None


def test_degradation_quiet_while_the_model_holds_up(live_blobs):
    version = LiveModel.objects.get(project=live_blobs).version.number
    _label(live_blobs, 100, audit=True, correct=True, version=version)
    assert triggers.degradation_check(live_blobs.pk) is None


def test_drift_fires_on_shifted_items_and_not_on_similar_ones(live_blobs):
    live = LiveModel.objects.get(project=live_blobs).version
    # Reference: the items present when the model was trained. Same-distribution items first.
    blob_items(live_blobs, np.random.default_rng(1), 200)
    quiet = triggers.drift_measure(live_blobs.pk)
    assert quiet["enough_data"] and quiet["max_feature_psi"] < live_blobs.drift_threshold
    assert triggers.drift_check(live_blobs.pk) is None

    blob_items(live_blobs, np.random.default_rng(2), 400, shift=6.0)
    run = triggers.drift_check(live_blobs.pk)
    assert run.trigger == "drift" and run.evidence["max_feature_psi"] > live_blobs.drift_threshold
    assert live.pk == LiveModel.objects.get(project=live_blobs).version_id


def test_manual_trigger_records_who(live_blobs, manager):
    run = triggers.manual_trigger(live_blobs.pk, manager, note="new guidelines")
    assert run.trigger == "manual" and run.requested_by == manager
    assert run.evidence == {"requested_by": "manager", "note": "new guidelines"}
    assert triggers.manual_trigger(live_blobs.pk, manager) is None  # one active run at a time
