"""Retrain triggers: label count, schedule, degradation, drift and manual; each records its evidence."""
from __future__ import annotations

import json
import math

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from annotations.models import Annotation, Item, Project
from annotations.selectors.labels import audit_predictions_latest
from learner.ml import evaluation, training
from learner.models import DriftCheck, TrainingRun
from learner.selectors import pool_matrix
from learner.services.models import model_version_live, model_version_loaded
from learner.services.training import training_run_request

SCHEDULE_TASK = "learner.retrain_scheduled"
DRIFT_SAMPLE = 5000
DEGRADATION_CONFIDENCE = 0.95
# Below this many audit labels the bound is too wide to act on, whatever it says.
DEGRADATION_MIN_AUDIT = 20


def _last_run(project_id: int) -> TrainingRun | None:
    return TrainingRun.objects.filter(project_id=project_id).order_by("-created_at").first()


# The count trigger's cadence. While a retrain is cheap (the last one took at most this long),
# the next one starts as soon as the labels have grown by CADENCE_GROWTH since the last run (at
# least one new label, at most retrain_every_n_labels): after every label or two early on, when
# each label moves the model most, every few dozen later. An expensive retrain waits for
# retrain_every_n_labels new labels. One run at a time per project, and a finished run checks
# again at once (training_run_execute), so retrains follow each other as fast as they finish.
CHEAP_TRAINING_SECONDS = 10.0
CADENCE_GROWTH = 0.10


def count_trigger_due(labels_total: int, new_labels: int, every_n: int, last_run_seconds: float | None) -> int:
    """The new labels the count trigger waits for: ``every_n``, or fewer while training is cheap (see above)."""
    if last_run_seconds is not None and last_run_seconds > CHEAP_TRAINING_SECONDS:
        return every_n
    return max(1, min(every_n, math.ceil(CADENCE_GROWTH * (labels_total - new_labels))))


def count_trigger_check(project_id: int) -> TrainingRun | None:
    """Retrain when enough labels arrived since the last run was requested (``count_trigger_due``)."""
    project = Project.objects.get(pk=project_id)
    if not project.retrain_every_n_labels:
        return None
    last = _last_run(project_id)
    labels = Annotation.objects.filter(item__project_id=project_id)
    total = labels.count()
    new = labels.filter(created_at__gt=last.created_at).count() if last is not None else total
    last_seconds = _last_training_seconds(project_id)
    due = count_trigger_due(total, new, project.retrain_every_n_labels, last_seconds)
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


def _last_training_seconds(project_id: int) -> float | None:
    """Seconds the project's latest finished run took, stage by stage; None before any."""
    timings = (
        TrainingRun.objects.filter(project_id=project_id, finished_at__isnull=False)
        .exclude(status=TrainingRun.Status.FAILED).order_by("-finished_at").values_list("timings", flat=True).first()
    )
    if not timings:
        return None
    return float(sum(value for value in timings.values() if isinstance(value, (int, float))))


def manual_trigger(project_id: int, user: AbstractBaseUser, note: str = "") -> TrainingRun | None:
    """A person asked for a retrain."""
    evidence = {"requested_by": user.get_username(), "note": note}
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
    return training_run_request(project_id=project_id, trigger=TrainingRun.Trigger.DEGRADATION, evidence=evidence)


def drift_measure(project_id: int) -> dict | None:
    """Compare items imported since the live model was trained with those it was trained beside.

    Measures PSI of the live model's confidence (every kind) and, for dense features, the
    largest per-feature PSI.
    """
    live = model_version_live(project_id)
    if live is None:
        return None
    items = Item.objects.filter(project_id=project_id, features__isnull=False)
    reference_ids = list(items.filter(created_at__lte=live.created_at).order_by("-pk").values_list("pk", flat=True)[:DRIFT_SAMPLE])
    recent_ids = list(items.filter(created_at__gt=live.created_at).order_by("-pk").values_list("pk", flat=True)[:DRIFT_SAMPLE])
    if len(reference_ids) < 50 or len(recent_ids) < 50:
        return {"enough_data": False, "model_version": live.number, "reference_n": len(reference_ids),
                "recent_n": len(recent_ids)}
    model = model_version_loaded(live).pipeline
    _, reference = pool_matrix(project_id, item_ids=sorted(reference_ids))
    _, recent = pool_matrix(project_id, item_ids=sorted(recent_ids))
    confidence = [training.proba_over(model, X, list(live.classes)).max(axis=1, keepdims=True) for X in (reference, recent)]
    out = {"enough_data": True, "model_version": live.number, "reference_n": len(reference_ids),
           "recent_n": len(recent_ids),
           "confidence_psi": float(evaluation.population_stability_index(*confidence)[0])}
    if isinstance(reference, np.ndarray):
        psi = evaluation.population_stability_index(reference, recent)
        worst = int(np.argmax(psi))
        out.update({"max_feature_psi": float(psi[worst]), "max_feature": worst})
    return out


def drift_check(project_id: int) -> TrainingRun | None:
    """Record a drift measurement (kept for the dashboard); retrain when it is beyond the project's PSI threshold."""
    project = Project.objects.get(pk=project_id)
    if not project.drift_enabled:
        return None
    measured = drift_measure(project_id)
    if not measured:
        return None
    evidence = {**measured, "threshold": project.drift_threshold, "measured_at": timezone.now().isoformat()}
    drifted = measured["enough_data"] and max(
        measured["confidence_psi"], measured.get("max_feature_psi", 0.0)) >= project.drift_threshold
    # Every measurement is kept, so that the dashboard shows the latest one even when it fired nothing.
    check = DriftCheck.objects.create(project_id=project_id, model_version=measured["model_version"], evidence=evidence,
                                      drifted=drifted)
    if not drifted:
        return None
    run = training_run_request(project_id=project_id, trigger=TrainingRun.Trigger.DRIFT, evidence=evidence)
    if run is not None:
        DriftCheck.objects.filter(pk=check.pk).update(training_run=run)
    return run


def triggers_check_all() -> dict[str, int]:
    """Reconcile: run the count and degradation checks for every project (beat, every minute)."""
    fired = {"count": 0, "degradation": 0}
    for project in Project.objects.all():
        schedule_sync(project)  # also catches interval changes made outside the project admin
        project_id = project.pk
        fired["count"] += count_trigger_check(project_id) is not None
        fired["degradation"] += degradation_check(project_id) is not None
    return fired
