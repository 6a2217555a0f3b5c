"""Training runs: one active per project; snapshot → train → evaluate → gate → swap, each stage recorded."""
from __future__ import annotations

import time
import traceback
from datetime import timedelta

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotations.models import Project
from annotations.selectors.labels import label_snapshot
from labelhub.celery import send_task_on_commit
from learner.ml import evaluation, training
from learner.models import ModelVersion, SwapHistory, TrainingRun
from learner.selectors import pool_matrix, project_featurizer
from learner.services.models import (
    SCORE_TASK,
    code_version,
    model_version_create,
    model_version_live,
    model_version_loaded,
    model_version_promote,
)

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


# PostgreSQL advisory locks of training runs: a 15-bit namespace above a 48-bit run id.
_RUN_LOCK_NAMESPACE = 0x4C48  # "LH"


def _run_lock_key(run_id: int) -> int:
    return (_RUN_LOCK_NAMESPACE << 48) | (run_id & (2**48 - 1))


def _run_lock_take(run_id: int) -> bool | None:
    """Take the run's lock for this database session: True; False if another session holds it; None without locks.

    A session-level advisory lock lives exactly as long as the executing process's database
    connection: when the process dies (SIGKILL, the OOM killer, a lost machine), PostgreSQL ends
    its session and the lock is free, so a free lock on a running run means nobody executes it.
    """
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_run_lock_key(run_id)])
        return bool(cursor.fetchone()[0])


def _run_lock_release(run_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [_run_lock_key(run_id)])


LOST_ERROR = "The worker was lost during '{stage}'; the live model was not changed."


def training_run_execute(run_id: int) -> TrainingRun:
    """Run a queued training run to its decision; a redelivered message of a lost run fails it visibly.

    The executing process holds the run's lock (PostgreSQL) from before it claims the run until it
    has recorded the outcome, so a second message for a run that another process is executing
    does nothing, and one for a run whose process died finds the lock free and fails the run.
    """
    locked = _run_lock_take(run_id)
    if locked is False:
        return TrainingRun.objects.select_related("project").get(pk=run_id)  # executing elsewhere right now
    try:
        claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.RUNNING, started_at=timezone.now()
        )
        run = TrainingRun.objects.select_related("project").get(pk=run_id)
        if not claimed:
            if run.status == TrainingRun.Status.RUNNING:
                # Claimed earlier, yet nobody holds its lock: the process running it is gone (late
                # acks redeliver the message when a pool process dies). Without advisory locks
                # (SQLite: one embedded worker) a redelivery means the same.
                _finish_lost(run)
            return run
        try:
            _pipeline(run)
        except Exception as exc:  # the run records any failure; the live pointer only moves in the swap
            _finish(run, TrainingRun.Status.FAILED,
                    error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        return run
    finally:
        if locked:
            _run_lock_release(run_id)


def _finish_lost(run: TrainingRun) -> None:
    """Record the end of a run whose process died: failed, unless its swap had already committed."""
    swap = SwapHistory.objects.filter(to_version__training_run=run).order_by("created_at").first()
    if swap is None:
        _finish(run, TrainingRun.Status.FAILED, error=LOST_ERROR.format(stage=run.stage))
    else:
        run.decision = {"promote": True, "reason": swap.reason, "note": "The worker was lost after the swap."}
        _finish(run, TrainingRun.Status.PROMOTED)


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
            labels_used=len(ids), training_run_id=run.pk, code_version=code_version(),
            query_strategy=project.query_strategy,
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
        decision = gate(project, y_audit, candidate_pred, champion, champion_pred, majority=_majority(y),
                        classes=classes)
        if champion_metrics is not None:
            decision["champion_metrics"] = champion_metrics  # the champion on the same audit items
        run.decision = decision
    if decision["promote"]:
        with _Stage(run, "swap"):
            model_version_promote(candidate, reason=decision["reason"], trigger=run.trigger, actor=run.requested_by)
        _finish(run, TrainingRun.Status.PROMOTED)
    else:
        ModelVersion.objects.filter(pk=candidate.pk).update(status=ModelVersion.Status.REJECTED)
        _finish(run, TrainingRun.Status.KEPT_CHAMPION)
        if not decision["worse"]:
            # Not shown worse: it ranks the queue from now on (model_version_ranking), the live model still suggests.
            send_task_on_commit(SCORE_TASK, [project.pk])


def _majority(y: np.ndarray) -> int:
    values, counts = np.unique(y, return_counts=True)
    return int(values[np.argmax(counts)])


def gate(
    project: Project,
    y_audit: np.ndarray,
    candidate_pred: np.ndarray | None,
    champion: ModelVersion | None,
    champion_pred: np.ndarray | None,
    *,
    majority: int,
    classes: list[int],
) -> dict:
    """Decide promotion on the audit set; the returned dict is stored on the run and says why.

    The first model must beat the majority-class baseline, a later one the champion, each by a
    one-sided exact McNemar test at ``gate_alpha``. Against the champion, a class vetoes when
    even the lower (1 − α) confidence bound of its recall drop exceeds ``gate_max_recall_drop``.
    The first model needs ``gate_min_audit_first`` audit labels, a challenger ``gate_min_audit``.
    ``worse`` says whether the same tests, the other way round, found the candidate worse than
    what it was compared with (or a class vetoed it); a candidate that is not may rank the queue.
    """
    n = len(y_audit)
    alpha = project.gate_alpha
    first = champion is None
    min_audit = project.gate_min_audit_first if first else project.gate_min_audit
    base = {"audit_n": n, "alpha": alpha, "min_gain": project.gate_min_gain, "min_audit": min_audit,
            "max_recall_drop": project.gate_max_recall_drop}
    if n < min_audit or n == 0:
        what = "the first model" if first else "a challenger"
        return {**base, "promote": False, "worse": False,
                "reason": f"Audit set too small: {n} audit labels, {min_audit} needed for {what}; kept the champion."}
    if first:
        baseline = np.full(n, majority)
        test = evaluation.mcnemar_exact(y_audit, baseline, candidate_pred)
        ok = test.p_value < alpha and test.gain >= project.gate_min_gain
        worse = evaluation.mcnemar_exact(y_audit, candidate_pred, baseline).p_value < alpha
        verdict = "beats" if ok else "does not beat"
        return {**base, "promote": ok, "worse": worse, "test": test.as_dict(), "baseline_label": majority,
                "reason": f"First model {verdict} the majority-class baseline on {n} audit items "
                          f"(gain {test.gain:+.3f}, exact McNemar p = {test.p_value:.4f}, α = {alpha})."}
    test = evaluation.mcnemar_exact(y_audit, champion_pred, candidate_pred)
    drops = evaluation.recall_drops(y_audit, champion_pred, candidate_pred, classes, confidence=1 - alpha)
    figures = {**base, "test": test.as_dict(), "champion": champion.number,
               "recall_drops": {label: drop.as_dict() for label, drop in drops.items()}}
    vetoes = {label: drop for label, drop in drops.items() if drop.lower_bound > project.gate_max_recall_drop}
    figures["worse"] = bool(vetoes) or evaluation.mcnemar_exact(y_audit, candidate_pred, champion_pred).p_value < alpha
    if vetoes:
        label, worst = max(vetoes.items(), key=lambda kv: kv[1].lower_bound)
        return {**figures, "promote": False,
                "reason": f"Recall of class {label} drops by {worst.drop:.3f} on {worst.support} audit items "
                          f"(lower {1 - alpha:.0%} bound {worst.lower_bound:.3f} > {project.gate_max_recall_drop}); "
                          f"kept v{champion.number}."}
    if test.p_value >= alpha or test.gain < project.gate_min_gain:
        return {**figures, "promote": False,
                "reason": f"Not measurably better than v{champion.number}: gain {test.gain:+.3f}, "
                          f"exact McNemar p = {test.p_value:.4f} (α = {alpha}); kept the champion."}
    return {**figures, "promote": True,
            "reason": f"Better than v{champion.number}: gain {test.gain:+.3f}, exact McNemar p = {test.p_value:.4f}."}


# Without advisory locks (SQLite), a run still "running" this long after it started outlived its
# task's hard time limit.
RUN_LOST_AFTER_SECONDS = 3600 + 300
# A run still queued this long after it was requested lost its message (the broker was down when
# it was sent); it is sent again, which is harmless if the first one is merely late.
RUN_QUEUED_RESEND_AFTER = timedelta(minutes=10)


def training_runs_reap() -> dict[str, int]:
    """Finish running runs whose process is gone and send queued runs' lost messages again (beat).

    On PostgreSQL a running run is lost as soon as nobody holds its lock; elsewhere, once it has
    outlived the training task's hard time limit.
    """
    now = timezone.now()
    locks = connection.vendor == "postgresql"
    running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING)
    if not locks:
        running = running.filter(started_at__lt=now - timedelta(seconds=RUN_LOST_AFTER_SECONDS))
    lost = 0
    for run_id in running.values_list("pk", flat=True):
        if locks and not _run_lock_take(run_id):
            continue  # its process is alive and holds the lock
        try:
            run = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).first()
            if run is not None:
                _finish_lost(run)
                lost += 1
        finally:
            if locks:
                _run_lock_release(run_id)
    stuck = TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED, created_at__lt=now - RUN_QUEUED_RESEND_AFTER)
    resent = 0
    for run_id in stuck.values_list("pk", flat=True):
        send_task_on_commit(TRAIN_TASK, [run_id])
        resent += 1
    return {"lost": lost, "resent": resent}
