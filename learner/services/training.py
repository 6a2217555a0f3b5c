"""Training runs: one active per project; snapshot → train → evaluate → gate → swap, each stage recorded."""
from __future__ import annotations

import time
import traceback
from datetime import timedelta

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotations.models import Project
from annotations.selectors.labels import label_snapshot
from labelhub.celery import send_task_on_commit
from learner.ml import evaluation, training
from learner.models import ModelVersion, TrainingRun
from learner.selectors import pool_matrix, project_featurizer
from learner.services.models import model_version_create, model_version_live, model_version_loaded, model_version_promote

TRAIN_TASK = "learner.train_run"


def training_run_request(
    *, project_id: int, trigger: str, evidence: dict, user: AbstractBaseUser | None = None
) -> TrainingRun | None:
    """Queue a retrain unless one is already queued or running; send it after commit."""
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(project_id=project_id, trigger=trigger, evidence=evidence, requested_by=user)
    except IntegrityError:
        return None  # the partial unique constraint: one active run per project
    send_task_on_commit(TRAIN_TASK, [run.pk])
    return run


class _Stage:
    """Times a stage and records it on the run, so a failure says where it happened."""

    def __init__(self, run: TrainingRun, name: str) -> None:
        self.run, self.name = run, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()
        TrainingRun.objects.filter(pk=self.run.pk).update(stage=self.name)
        self.run.stage = self.name

    def __exit__(self, *exc) -> None:
        self.run.timings[self.name] = round(time.perf_counter() - self.started, 4)


def training_run_execute(run_id: int) -> TrainingRun:
    """Run a queued training run to its decision; a redelivered message of a lost run fails it visibly."""
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now()
    )
    run = TrainingRun.objects.select_related("project").get(pk=run_id)
    if not claimed:
        if run.status == TrainingRun.Status.RUNNING:
            # Late acks redeliver the message only when the worker running it was lost.
            _finish(run, TrainingRun.Status.FAILED,
                    error=f"The worker was lost during '{run.stage}'; the live model was not changed.")
        return run
    try:
        _pipeline(run)
    except Exception as exc:  # the run records any failure; the live pointer only moves in the swap
        _finish(run, TrainingRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
    return run


def _finish(run: TrainingRun, status: str, *, error: str = "") -> None:
    run.status, run.error, run.finished_at = status, error, timezone.now()
    run.save(update_fields=["status", "error", "finished_at", "timings", "decision", "stage",
                            "label_snapshot_hash", "label_ids"])


def _pipeline(run: TrainingRun) -> None:
    project: Project = run.project
    classes = list(project.labels.order_by("order", "name").values_list("pk", flat=True))
    with _Stage(run, "snapshot"):
        snapshot = label_snapshot(project.pk)
        run.label_snapshot_hash, run.label_ids = snapshot.sha256, snapshot.annotation_ids
        label_of = dict(zip(snapshot.item_ids, snapshot.label_ids))
        train_ids = [i for i in snapshot.item_ids if i not in snapshot.audit_item_ids]
        audit_ids = sorted(snapshot.audit_item_ids)
    with _Stage(run, "train"):
        ids, X = pool_matrix(project.pk, item_ids=train_ids)
        y = np.array([label_of[i] for i in ids])
        pipeline = training.fit(project.kind, X, y)
        candidate = model_version_create(
            project=project, pipeline=pipeline, classes=classes, feature_space=project_featurizer(project.pk).space,
            algorithm=" → ".join(type(step).__name__ for _, step in pipeline.steps),
            hyperparameters=training.hyperparameters(pipeline), label_snapshot_hash=snapshot.sha256,
            labels_used=len(ids), training_run_id=run.pk,
        )
    with _Stage(run, "evaluate"):
        audit_ids_present, X_audit = pool_matrix(project.pk, item_ids=audit_ids)
        y_audit = np.array([label_of[i] for i in audit_ids_present])
        candidate_proba = training.proba_over(pipeline, X_audit, classes) if len(y_audit) else None
        candidate.metrics = evaluation.evaluate(y_audit, candidate_proba, classes) if len(y_audit) else {"n": 0}
        candidate.save(update_fields=["metrics"])
        champion = model_version_live(project.pk)
        champion_metrics, champion_pred = None, None
        if champion is not None and len(y_audit):
            champion_proba = training.proba_over(model_version_loaded(champion).pipeline, X_audit, classes)
            champion_metrics = evaluation.evaluate(y_audit, champion_proba, classes)
            champion_pred = np.asarray(classes)[champion_proba.argmax(axis=1)]
    with _Stage(run, "gate"):
        candidate_pred = np.asarray(classes)[candidate_proba.argmax(axis=1)] if candidate_proba is not None else None
        decision = gate(project, y_audit, candidate_pred, candidate.metrics, champion, champion_pred,
                        champion_metrics, majority=_majority(y))
        run.decision = decision
    if decision["promote"]:
        with _Stage(run, "swap"):
            model_version_promote(candidate, reason=decision["reason"], trigger=run.trigger, actor=run.requested_by)
        _finish(run, TrainingRun.Status.PROMOTED)
    else:
        ModelVersion.objects.filter(pk=candidate.pk).update(status=ModelVersion.Status.REJECTED)
        _finish(run, TrainingRun.Status.KEPT_CHAMPION)


def _majority(y: np.ndarray) -> int:
    values, counts = np.unique(y, return_counts=True)
    return int(values[np.argmax(counts)])


def gate(
    project: Project,
    y_audit: np.ndarray,
    candidate_pred: np.ndarray | None,
    candidate_metrics: dict,
    champion: ModelVersion | None,
    champion_pred: np.ndarray | None,
    champion_metrics: dict | None,
    *,
    majority: int,
) -> dict:
    """Decide promotion on the audit set; the returned dict is stored on the run and says why."""
    n = len(y_audit)
    base = {"audit_n": n, "alpha": project.gate_alpha, "min_gain": project.gate_min_gain,
            "min_audit": project.gate_min_audit, "max_recall_drop": project.gate_max_recall_drop}
    if n < project.gate_min_audit:
        return {**base, "promote": False,
                "reason": f"Audit set too small: {n} audit labels, {project.gate_min_audit} needed; kept the champion."}
    if champion is None:
        baseline = np.full(n, majority)
        test = evaluation.mcnemar_exact(y_audit, baseline, candidate_pred)
        ok = test.p_value < project.gate_alpha and test.gain >= project.gate_min_gain
        verdict = "beats" if ok else "does not beat"
        return {**base, "promote": ok, "test": test.as_dict(), "baseline_label": majority,
                "reason": f"First model {verdict} the majority-class baseline on {n} audit items "
                          f"(gain {test.gain:+.3f}, p = {test.p_value:.4f}, α = {project.gate_alpha})."}
    test = evaluation.mcnemar_exact(y_audit, champion_pred, candidate_pred)
    drops = evaluation.recall_drops(champion_metrics or {}, candidate_metrics)
    worst = max(drops.items(), key=lambda kv: kv[1], default=(None, 0.0))
    figures = {**base, "test": test.as_dict(), "recall_drops": drops, "champion": champion.number}
    if worst[1] > project.gate_max_recall_drop:
        return {**figures, "promote": False,
                "reason": f"Recall of class {worst[0]} drops by {worst[1]:.3f} (> {project.gate_max_recall_drop}); kept v{champion.number}."}
    if test.p_value >= project.gate_alpha or test.gain < project.gate_min_gain:
        return {**figures, "promote": False,
                "reason": f"Not measurably better than v{champion.number}: gain {test.gain:+.3f}, "
                          f"exact McNemar p = {test.p_value:.4f} (α = {project.gate_alpha}); kept the champion."}
    return {**figures, "promote": True,
            "reason": f"Better than v{champion.number}: gain {test.gain:+.3f}, exact McNemar p = {test.p_value:.4f}."}


# A run still "running" this long after it started outlived its task's hard time limit.
RUN_LOST_AFTER_SECONDS = 3600 + 300


def training_runs_reap() -> int:
    """Fail runs whose worker vanished without a redelivery, so the project can train again."""
    cutoff = timezone.now() - timedelta(seconds=RUN_LOST_AFTER_SECONDS)
    lost = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, started_at__lt=cutoff)
    return lost.update(
        status=TrainingRun.Status.FAILED, finished_at=timezone.now(),
        error="The run outlived its time limit (its worker was lost); the live model was not changed.",
    )
