"""Each retrain trigger fires on data made to trip it and stays quiet on data made not to."""
import json
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from annotations.models import ImportJob, QueueScoring
from learner.models import DriftCheck, LiveModel, TrainingRun
from learner.services import triggers
from learner.services.features import features_compute_chunk
from learner.services.training import training_run_execute, training_run_request
from learner.tasks import drift_check as drift_check_task
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


def test_while_a_turn_of_the_loop_is_cheap_one_new_label_is_enough(live_blobs):
    live_blobs.retrain_every_n_labels = 10
    live_blobs.save()
    assert triggers.count_trigger_check(live_blobs.pk) is None  # nothing new since the live model's run
    _label(live_blobs, 1)
    run = triggers.count_trigger_check(live_blobs.pk)
    assert run.trigger == "count" and run.evidence["new_labels"] == 1 and run.evidence["due"] == 1
    assert run.trigger_sentence.startswith("1 new label")


def test_a_deployment_can_turn_the_cheap_cadence_off(live_blobs, settings):
    settings.LABELHUB_CHEAP_CYCLE_SECONDS = 0
    live_blobs.retrain_every_n_labels = 3
    live_blobs.save()
    _label(live_blobs, 2)
    assert triggers.count_trigger_check(live_blobs.pk) is None
    _label(live_blobs, 1)
    assert triggers.count_trigger_check(live_blobs.pk).evidence["due"] == 3


def test_an_expensive_turn_waits_for_n_new_labels(live_blobs):
    live_blobs.retrain_every_n_labels = 10
    live_blobs.save()
    # The last run trained for 4 s, and the rescoring by its model took 7 s more: 11 s a turn.
    TrainingRun.objects.filter(project=live_blobs).update(timings={"train": 4.0})
    done = timezone.now()
    scoring = QueueScoring.objects.create(project=live_blobs, model_version=1, strategy="margin", status="complete")
    QueueScoring.objects.filter(pk=scoring.pk).update(started_at=done, finished_at=done + timedelta(seconds=7))
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
    assert quiet["enough_data"] and not quiet["drifted"] and quiet["summary"].startswith("stable, largest PSI")
    assert triggers.drift_check(live_blobs.pk) is None

    blob_items(live_blobs, np.random.default_rng(2), 400, shift=6.0)
    _label(live_blobs, 1)  # something new to learn from
    run = triggers.drift_check(live_blobs.pk)
    worst = run.evidence["worst"]
    assert run.trigger == "drift" and run.evidence["drifted"] and run.evidence["model_version"] == live.number
    assert worst["psi"] >= live_blobs.drift_threshold and worst["p_adjusted"] < 0.05
    assert worst["name"] in ("x0", "x1", "the live model's confidence") and run.evidence["recent_n"] == 600
    assert run.evidence["summary"].startswith(f"drifted, PSI {worst['psi']:.2f} on {worst['name']}")
    assert DriftCheck.objects.get(project=live_blobs, drifted=True).training_run == run
    assert live.pk == LiveModel.objects.get(project=live_blobs).version_id


def test_a_small_same_distribution_import_is_no_drift(live_blobs):
    """The measured false alarm: 60 items like the training items read PSI 0.97 with the old check."""
    blob_items(live_blobs, np.random.default_rng(5), 60)
    _label(live_blobs, 1)
    assert triggers.drift_check(live_blobs.pk) is None
    check = DriftCheck.objects.get(project=live_blobs)
    assert not check.drifted and check.evidence["enough_data"] and check.evidence["recent_n"] == 60


def test_drift_without_new_labels_is_recorded_but_asks_for_no_retrain(live_blobs):
    last = TrainingRun.objects.get(project=live_blobs)
    blob_items(live_blobs, np.random.default_rng(2), 300, shift=6.0)
    for _ in range(2):  # the hourly check finds the same drift again: still nothing to learn from
        assert triggers.drift_check(live_blobs.pk) is None
    checks = DriftCheck.objects.filter(project=live_blobs)
    assert checks.count() == 2 and all(c.drifted and c.training_run is None for c in checks)
    assert checks[0].evidence["retrain"] == f"none asked for: no new labels since run {last.pk}"
    assert TrainingRun.objects.filter(project=live_blobs).count() == 1

    _label(live_blobs, 3)  # experts labeled some of the new items
    run = triggers.drift_check(live_blobs.pk)
    assert run.trigger == "drift" and "retrain" not in run.evidence


def test_a_drift_finding_that_meets_an_active_run_is_recorded_against_it(live_blobs, manager):
    blob_items(live_blobs, np.random.default_rng(2), 300, shift=6.0)
    _label(live_blobs, 2)
    active = triggers.manual_trigger(live_blobs.pk, manager)
    assert triggers.drift_check(live_blobs.pk) is None  # no second run
    active.refresh_from_db()
    (finding,) = active.evidence["findings"]
    version = LiveModel.objects.get(project=live_blobs).version.number
    assert finding["kind"] == "drift" and finding["evidence"]["model_version"] == version
    assert finding["summary"].startswith(f"Drift for v{version}: drifted, PSI")
    assert finding["evidence"]["drifted"] and finding["at"]
    check = DriftCheck.objects.get(project=live_blobs)
    assert check.drifted and check.training_run == active and check.model_version == version
    assert check.evidence["retrain"] == f"recorded against run {active.pk}, already queued"
    assert TrainingRun.objects.filter(project=live_blobs).count() == 2


def test_a_degradation_finding_that_meets_an_active_run_is_recorded_once_against_it(live_blobs, manager):
    version = LiveModel.objects.get(project=live_blobs).version.number
    active = triggers.manual_trigger(live_blobs.pk, manager)
    _label(live_blobs, 40, audit=True, correct=False, version=version)
    assert triggers.degradation_check(live_blobs.pk) is None
    _label(live_blobs, 20, audit=True, correct=False, version=version)
    assert triggers.degradation_check(live_blobs.pk) is None  # the next minute's check: the latest figures
    active.refresh_from_db()
    (finding,) = active.evidence["findings"]
    assert finding["kind"] == "degradation" and finding["evidence"]["model_version"] == version
    assert finding["evidence"]["audit_n"] == 60 and finding["summary"].startswith(f"v{version} is 0/60 right")
    assert active.evidence["requested_by"] == "manager"  # the run's own evidence is kept


def test_degradation_does_not_retrain_again_without_new_labels(live_blobs):
    version = LiveModel.objects.get(project=live_blobs).version.number
    _label(live_blobs, 60, audit=True, correct=False, version=version)
    run = triggers.degradation_check(live_blobs.pk)
    TrainingRun.objects.filter(pk=run.pk).update(status="kept", started_at=timezone.now(), finished_at=timezone.now())
    assert triggers.degradation_check(live_blobs.pk) is None
    assert TrainingRun.objects.filter(project=live_blobs).count() == 2


def test_an_imports_features_send_the_drift_check_after_commit(
    live_blobs, sent_tasks, django_capture_on_commit_callbacks
):
    job = ImportJob.objects.create(project=live_blobs, filename="more.csv", status="done", features_status="running",
                                   features_total=60, created_count=60)
    items = [ItemFactory(project=live_blobs, import_job=job, values=[6.0, 6.0], text="") for _ in range(60)]
    with django_capture_on_commit_callbacks(execute=True):
        features_compute_chunk(live_blobs.pk, [item.pk for item in items[:30]])
    assert ("learner.drift_check", [live_blobs.pk]) not in sent_tasks  # the import is not complete yet
    with django_capture_on_commit_callbacks(execute=True):
        features_compute_chunk(live_blobs.pk, [item.pk for item in items[30:]])
    assert ("learner.drift_check", [live_blobs.pk]) in sent_tasks
    # The task the message names measures the import at once.
    assert drift_check_task(live_blobs.pk) is False  # drifted, but no label since the last run
    check = DriftCheck.objects.get(project=live_blobs)
    assert check.drifted and check.evidence["recent_n"] == 60


def test_no_drift_check_is_sent_without_a_live_model(labeled_blobs, sent_tasks, django_capture_on_commit_callbacks):
    job = ImportJob.objects.create(project=labeled_blobs, filename="more.csv", status="done",
                                   features_status="running", features_total=5, created_count=5)
    items = [ItemFactory(project=labeled_blobs, import_job=job, values=[0.0, 0.0], text="") for _ in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        features_compute_chunk(labeled_blobs.pk, [item.pk for item in items])
    assert not [name for name, _ in sent_tasks if name == "learner.drift_check"]


def test_manual_trigger_records_who(live_blobs, manager):
    run = triggers.manual_trigger(live_blobs.pk, manager, note="new guidelines")
    assert run.trigger == "manual" and run.requested_by == manager
    assert run.evidence == {"requested_by": "manager", "note": "new guidelines"}
    assert triggers.manual_trigger(live_blobs.pk, manager) is None  # one active run at a time


def test_the_dashboard_says_when_drift_was_last_checked_and_what_it_found(client, live_blobs, manager):
    from html import unescape

    from django.urls import reverse

    from tests.learner.test_versions_pages import text_of

    blob_items(live_blobs, np.random.default_rng(2), 300, shift=6.0)
    triggers.drift_check(live_blobs.pk)
    check = DriftCheck.objects.get(project=live_blobs)
    worst = check.evidence["worst"]
    client.force_login(manager)
    text = unescape(text_of(client.get(reverse("project-dashboard", args=[live_blobs.pk]))))
    version = check.model_version
    assert (f"Drift Drift last checked 0 minutes ago for v{version}: drifted, PSI {worst['psi']:.2f} "
            f"on {worst['name']} (p < 0.001)") in text
    assert "300 since" in text and "Holm-corrected" in text
    assert f"Retrain: none asked for: no new labels since run {check.evidence['retrain'].rsplit(' ', 1)[1]}." in text
