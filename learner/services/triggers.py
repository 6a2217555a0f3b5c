"""Retrain triggers: label count, schedule, degradation, drift and manual; each records its evidence."""
from __future__ import annotations

import json

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from annotations.models import Annotation, Item, Project, QueueScoring
from annotations.selectors.labels import audit_predictions_latest
from labelhub.celery import TaskName, send_task_on_commit
from learner.ml import drift, evaluation, training
from learner.models import DriftCheck, TrainingRun
from learner.selectors import model_version_live, pool_matrix, project_featurizer
from learner.services.models import model_version_loaded
from learner.services.training import training_run_request

SCHEDULE_TASK = TaskName.RETRAIN_SCHEDULED
DRIFT_SAMPLE = 5000
CONFIDENCE = "the live model's confidence"
DEGRADATION_CONFIDENCE = 0.95
# Below this many audit labels the bound is too wide to act on, whatever it says.
DEGRADATION_MIN_AUDIT = 20


def _last_run(project_id: int) -> TrainingRun | None:
    return TrainingRun.objects.filter(project_id=project_id).order_by("-created_at").first()


# The count trigger's cadence. A turn of the loop is a retrain (snapshot, train, evaluate, gate,
# swap) and the rescoring of the pool by the model it made live. While a turn is cheap (the last
# one took at most CHEAP_CYCLE_SECONDS), the next retrain starts as soon as one new label exists:
# one run at a time per project, and a finished run checks again at once (training_run_execute),
# so retrains follow each other as fast as they finish, and the model that ranks the queue is never
# more than a turn behind the labels. An expensive turn waits for retrain_every_n_labels new labels.
# "Cheap" is settings.LABELHUB_CHEAP_CYCLE_SECONDS (CHEAP_CYCLE_SECONDS, default 10 s; 0 turns this off
# for a deployment whose workers should not retrain so often).


def count_trigger_due(every_n: int, last_cycle_seconds: float | None) -> int:
    """The new labels the count trigger waits for: one while a turn of the loop is cheap, else ``every_n``."""
    cheap = settings.LABELHUB_CHEAP_CYCLE_SECONDS
    if not cheap or (last_cycle_seconds is not None and last_cycle_seconds > cheap):
        return every_n
    return 1


def count_trigger_check(project_id: int) -> TrainingRun | None:
    """Retrain when enough labels arrived since the last run was requested (``count_trigger_due``)."""
    project = Project.objects.get(pk=project_id)
    if not project.retrain_every_n_labels:
        return None
    last = _last_run(project_id)
    labels = Annotation.objects.filter(item__project_id=project_id)
    total = labels.count()
    new = labels.filter(created_at__gt=last.created_at).count() if last is not None else total
    cycle_seconds = _last_cycle_seconds(project_id)
    due = count_trigger_due(project.retrain_every_n_labels, cycle_seconds)
    if new < due:
        return None
    live = model_version_live(project_id)
    if live is None and not _first_model_possible(project):
        return None
    evidence = {"new_labels": new, "labels": total, "due": due, "every_n_labels": project.retrain_every_n_labels,
                "since_run": last.pk if last else None, "live_version": live.number if live else None}
    return training_run_request(project_id=project_id, trigger=TrainingRun.Trigger.COUNT, evidence=evidence)


def _first_model_possible(project: Project) -> bool:
    """Whether a first model could go live now: labels of two classes, and the audit labels its gate needs."""
    labels = Annotation.objects.filter(item__project_id=project.pk)
    if labels.order_by().values("label_id").distinct()[:2].count() < 2:
        return False
    audit_items = labels.filter(is_audit=True).order_by().values("item_id").distinct()
    return audit_items[: project.gate_min_audit_first].count() >= project.gate_min_audit_first


def _last_cycle_seconds(project_id: int) -> float | None:
    """Seconds the last turn of the loop took: the latest finished run, stage by stage, and the latest rescoring.

    None before any run finished. The rescoring is the newest complete one by a model (the queue's
    seeding before any model is not part of a turn).
    """
    timings = (
        TrainingRun.objects.filter(project_id=project_id, finished_at__isnull=False)
        .exclude(status=TrainingRun.Status.FAILED).order_by("-finished_at").values_list("timings", flat=True).first()
    )
    if not timings:
        return None
    seconds = float(sum(value for value in timings.values() if isinstance(value, (int, float))))
    scoring = (
        QueueScoring.objects.filter(project_id=project_id, status=QueueScoring.Status.COMPLETE, model_version__gt=0)
        .order_by("-finished_at").values_list("started_at", "finished_at").first()
    )
    if scoring is not None and scoring[1] is not None:
        seconds += (scoring[1] - scoring[0]).total_seconds()
    return seconds


def manual_trigger(project_id: int, user: AbstractBaseUser, note: str = "") -> TrainingRun | None:
    """A person asked for a retrain."""
    evidence = {"requested_by": user.get_username(), "note": note}
    return training_run_request(project_id=project_id, trigger=TrainingRun.Trigger.MANUAL, evidence=evidence, user=user)


def requested_trigger(project_id: int, user_id: int | None, note: str) -> TrainingRun | None:
    """A person's change to the project's labels asked for a retrain (sent by name from annotations)."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id is not None else None
    if not Project.objects.filter(pk=project_id).exists():
        return None
    evidence = {"requested_by": user.get_username() if user else None, "note": note[:500]}
    return training_run_request(project_id=project_id, trigger=TrainingRun.Trigger.MANUAL, evidence=evidence, user=user)


def schedule_sync(project: Project) -> PeriodicTask | None:
    """Keep the project's beat entry in step with its retrain interval (editable in the admin)."""
    name = f"Retrain project {project.pk} ({project.slug}) on schedule"
    if not project.retrain_interval_minutes:
        PeriodicTask.objects.filter(name=name).delete()
        return None
    current = PeriodicTask.objects.filter(name=name).select_related("interval").first()
    if (
        current is not None and current.enabled and current.task == SCHEDULE_TASK and current.interval is not None
        and (current.interval.every, current.interval.period) == (project.retrain_interval_minutes, IntervalSchedule.MINUTES)
    ):
        return current  # unchanged: writing it would make beat reload its whole schedule
    every, _ = IntervalSchedule.objects.get_or_create(
        every=project.retrain_interval_minutes, period=IntervalSchedule.MINUTES
    )
    task, _ = PeriodicTask.objects.update_or_create(
        name=name, defaults={"task": SCHEDULE_TASK, "interval": every, "args": json.dumps([project.pk]), "enabled": True}
    )
    return task


def schedule_trigger(project_id: int) -> TrainingRun | None:
    """The beat entry fired: retrain if any label arrived since the last run."""
    last = _last_run(project_id)
    new = Annotation.objects.filter(item__project_id=project_id)
    if last is not None:
        new = new.filter(created_at__gt=last.created_at)
    count = new.count()
    if not count:
        return None
    project = Project.objects.get(pk=project_id)
    live = model_version_live(project_id)
    evidence = {"interval_minutes": project.retrain_interval_minutes, "new_labels": count,
                "live_version": live.number if live else None}
    return training_run_request(project_id=project_id, trigger=TrainingRun.Trigger.SCHEDULE, evidence=evidence)


def degradation_check(project_id: int) -> TrainingRun | None:
    """Retrain when the live model's accuracy on its latest audit labels is confidently too low.

    Accuracy is the live model's prediction at labeling time against the expert's label; it is
    called low only when the one-sided upper confidence bound is below the floor, or below the
    accuracy at promotion minus the margin, so a handful of labels never fires it.
    """
    project = Project.objects.get(pk=project_id)
    live = model_version_live(project_id)
    if live is None:
        return None
    pairs = audit_predictions_latest(project_id, live.number, project.degradation_window)
    n = len(pairs)
    if n < DEGRADATION_MIN_AUDIT:
        return None
    correct = sum(1 for label, predicted in pairs if label == predicted)
    upper = evaluation.accuracy_upper_bound(correct, n, DEGRADATION_CONFIDENCE)
    at_promotion = live.metrics.get("accuracy")
    reasons = []
    if project.degradation_floor is not None and upper < project.degradation_floor:
        reasons.append(f"upper bound {upper:.3f} < floor {project.degradation_floor}")
    if at_promotion is not None and upper < at_promotion - project.degradation_margin:
        reasons.append(f"upper bound {upper:.3f} < accuracy at promotion {at_promotion:.3f} − {project.degradation_margin}")
    if not reasons:
        return None
    evidence = {"model_version": live.number, "audit_n": n, "accuracy": correct / n, "upper_bound": upper,
                "confidence": DEGRADATION_CONFIDENCE, "accuracy_at_promotion": at_promotion, "why": reasons}
    summary = f"v{live.number} is {correct}/{n} right on its latest audit labels: " + "; ".join(reasons) + "."
    held = _no_new_labels_since(project_id)
    if held is not None and _records_degradation(held, live.number):
        return None  # retrained for this already, and no label since: the same labels would decide the same
    run, requested = _request_or_record(project_id, trigger=TrainingRun.Trigger.DEGRADATION, summary=summary,
                                        evidence=evidence)
    return run if requested else None


def training_run_finding_record(
    project_id: int, *, kind: str, summary: str, evidence: dict, drift_check_id: int | None = None
) -> TrainingRun | None:
    """Record a drift or degradation finding against the project's active run; None if no run is active.

    The finding goes into the run's ``evidence["findings"]`` under a row lock, so that two checks
    recording at once both land; one of the same kind for the same live version replaces the
    earlier one (a check every minute adds its latest figures, not a line a minute). A drift
    check's row is linked to the run.
    """
    with transaction.atomic():
        run = (
            TrainingRun.objects.select_for_update()
            .filter(project_id=project_id, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING])
            .first()
        )
        if run is None:
            return None
        if run.trigger == kind and run.evidence.get("model_version") == evidence.get("model_version"):
            # The run was asked for by this very finding (a second check of the same version).
            if drift_check_id is not None:
                DriftCheck.objects.filter(pk=drift_check_id).update(training_run=run)
            return run
        finding = {"kind": kind, "at": timezone.now().isoformat(), "summary": summary, "evidence": evidence}
        findings = [
            f for f in run.evidence.get("findings", [])
            if (f.get("kind"), f.get("evidence", {}).get("model_version")) != (kind, evidence.get("model_version"))
        ]
        run.evidence = {**run.evidence, "findings": [*findings, finding]}
        run.save(update_fields=["evidence"])
        if drift_check_id is not None:
            DriftCheck.objects.filter(pk=drift_check_id).update(training_run=run)
    return run


def _request_or_record(
    project_id: int, *, trigger: str, summary: str, evidence: dict, drift_check_id: int | None = None
) -> tuple[TrainingRun | None, bool]:
    """Ask for a retrain; if one is active, record the finding against it. Returns (run, requested)."""
    for _ in range(2):  # the active run may finish between the two: then ask again
        run = training_run_request(project_id=project_id, trigger=trigger, evidence=evidence)
        if run is not None:
            return run, True
        run = training_run_finding_record(project_id, kind=trigger, summary=summary, evidence=evidence,
                                          drift_check_id=drift_check_id)
        if run is not None:
            return run, False
    return None, False


def _no_new_labels_since(project_id: int) -> TrainingRun | None:
    """The last finished run, if no label arrived since it started: retraining would learn nothing new."""
    last = _last_run(project_id)
    if last is None or last.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
        return None
    since = last.started_at or last.created_at
    if Annotation.objects.filter(item__project_id=project_id, created_at__gt=since).exists():
        return None
    return last


def _records_degradation(run: TrainingRun, version: int) -> bool:
    """Whether the run was asked for, or told of, a degradation of this live version."""
    if run.trigger == TrainingRun.Trigger.DEGRADATION and run.evidence.get("model_version") == version:
        return True
    return any(f.get("kind") == TrainingRun.Trigger.DEGRADATION and f.get("evidence", {}).get("model_version") == version
               for f in run.evidence.get("findings", []))


def _feature_names(project: Project, n: int) -> list[str]:
    names = list(project.feature_names or []) if project.kind == Project.Kind.TABULAR else []
    return names if len(names) == n else [f"feature {j}" for j in range(n)]


def drift_measure(project_id: int) -> dict | None:
    """Compare items imported since the live model was trained with those present when it was.

    Every dense feature column and the live model's confidence (the only column of sparse
    features) are tested (``learner.ml.drift``). The confidence's reference leaves out the items
    the model was trained on, on which it is more confident than on any new item.
    """
    live = model_version_live(project_id)
    if live is None:
        return None
    try:
        if project_featurizer(project_id).space != live.feature_space:
            return None  # a new featurizer's rows are replacing those the live model reads: nothing to compare
    except ValueError:  # FeaturizeError, PluginError: the project's featurizer cannot be built now
        return None
    project = Project.objects.get(pk=project_id)
    items = Item.objects.filter(project_id=project_id, features__isnull=False)
    reference_ids = list(items.filter(created_at__lte=live.created_at).order_by("-pk").values_list("pk", flat=True)[:DRIFT_SAMPLE])
    recent_ids = list(items.filter(created_at__gt=live.created_at).order_by("-pk").values_list("pk", flat=True)[:DRIFT_SAMPLE])
    base = {"model_version": live.number}
    if len(reference_ids) < drift.MIN_REFERENCE or len(recent_ids) < drift.MIN_RECENT:
        return {**base, **drift.too_few(threshold=project.drift_threshold, reference_n=len(reference_ids),
                                        recent_n=len(recent_ids)).as_dict()}
    trained = set(
        Annotation.objects.filter(item_id__in=reference_ids, is_audit=False, created_at__lte=live.created_at)
        .values_list("item_id", flat=True)
    )
    model = model_version_loaded(live).pipeline
    ref_ids, reference = pool_matrix(project_id, item_ids=reference_ids)
    _, recent = pool_matrix(project_id, item_ids=recent_ids)
    columns = []
    untrained = ~np.isin(ref_ids, list(trained))
    if untrained.sum() >= drift.MIN_REFERENCE:
        confidence = [training.proba_over(model, X, list(live.classes)).max(axis=1) for X in (reference[untrained], recent)]
        columns.append(drift.column_drift(CONFIDENCE, *confidence))
    if isinstance(reference, np.ndarray):
        names = _feature_names(project, reference.shape[1])
        columns += [drift.column_drift(names[j], reference[:, j], recent[:, j]) for j in range(reference.shape[1])]
    if not columns:
        result = drift.too_few(threshold=project.drift_threshold, reference_n=int(untrained.sum()),
                               recent_n=len(recent_ids))
        return {**base, **result.as_dict()}
    result = drift.drift_decide(columns, threshold=project.drift_threshold, reference_n=len(ref_ids),
                                recent_n=recent.shape[0], confidence_name=CONFIDENCE)
    return {**base, **result.as_dict()}


def drift_check(project_id: int) -> TrainingRun | None:
    """Record a drift measurement (kept for the dashboard); on drift, retrain or record it against the active run.

    No retrain is asked for when no label arrived since the last run: it would learn from the same
    labels again. The check still says drifted, and why nothing was asked for. Returns the run it
    asked for, if any.
    """
    project = Project.objects.get(pk=project_id)
    if not project.drift_enabled:
        return None
    measured = drift_measure(project_id)
    if not measured:
        return None
    evidence = {**measured, "measured_at": timezone.now().isoformat()}
    drifted = bool(measured["drifted"])
    held = _no_new_labels_since(project_id) if drifted else None
    if held is not None:
        evidence["retrain"] = f"none asked for: no new labels since run {held.pk}"
    # Every measurement is kept, so that the dashboard shows the latest one even when it fired nothing.
    check = DriftCheck.objects.create(project_id=project_id, model_version=measured["model_version"], evidence=evidence,
                                      drifted=drifted)
    if not drifted or held is not None:
        return None
    summary = f"Drift for v{measured['model_version']}: {measured['summary']}."
    run, requested = _request_or_record(project_id, trigger=TrainingRun.Trigger.DRIFT, summary=summary,
                                        evidence=evidence, drift_check_id=check.pk)
    if run is None:
        return None
    if requested:
        DriftCheck.objects.filter(pk=check.pk).update(training_run=run)
        return run
    check.evidence["retrain"] = f"recorded against run {run.pk}, already {run.status}"
    check.save(update_fields=["evidence"])
    return None


def drift_check_after_features(project_id: int) -> bool:
    """An import's features are stored: check drift once they are committed, if a live model would be judged."""
    enabled = Project.objects.filter(pk=project_id, drift_enabled=True).exists()
    if not enabled or model_version_live(project_id) is None:
        return False
    send_task_on_commit(TaskName.DRIFT_CHECK, [project_id])
    return True


def triggers_check_all() -> dict[str, int]:
    """Reconcile: run the count and degradation checks for every project (beat, every minute)."""
    fired = {"count": 0, "degradation": 0}
    for project in Project.objects.all():
        schedule_sync(project)  # also catches interval changes made outside the project admin
        project_id = project.pk
        fired["count"] += count_trigger_check(project_id) is not None
        fired["degradation"] += degradation_check(project_id) is not None
    return fired
