"""Training runs: one active per project; snapshot → train → evaluate → gate → swap, each stage recorded."""
from __future__ import annotations

import time
import traceback
from datetime import timedelta

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotations.models import Project
from annotations.selectors.labels import label_agreements, label_snapshot
from labelhub.celery import TaskName, send_task_on_commit
from learner.ml import evaluation, training
from learner.ml import gate as gate_ml
from learner.ml import reliability
from learner.ml.featurize import FeaturizeError
from learner.ml.registry import PluginError, uses_tfidf
from learner.models import FeatureVector, LiveModel, ModelVersion, SwapHistory, TrainingRun
from learner.selectors import (
    featurizer_of_space,
    live_model_stale_reason,
    model_version_live,
    pool_matrix,
    project_featurizer,
    training_run_lineage_next,
)
from learner.services.models import (
    code_version,
    model_version_create,
    model_version_loaded,
    model_version_promote,
)
from learner.services.retention import model_files_prune
from learner.services.sources import items_features


def training_run_request(
    *, project_id: int, trigger: str, evidence: dict, user: AbstractBaseUser | None = None
) -> TrainingRun | None:
    """Queue a retrain unless one is already queued or running; send it after commit."""
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(project_id=project_id, trigger=trigger, evidence=evidence, requested_by=user)
    except IntegrityError:
        return None  # the partial unique constraint: one active run per project
    send_task_on_commit(TaskName.TRAIN_RUN, [run.pk])
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
        model_files_prune(run.project_id)
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
                            "label_snapshot_hash", "label_lineage"])


def _pipeline(run: TrainingRun) -> None:
    project: Project = run.project
    classes = list(project.labels.order_by("order", "name").values_list("pk", flat=True))
    with _Stage(run, "snapshot"):
        left_out, unreliable = _unreliable_labels(project.pk)
        snapshot = label_snapshot(project.pk, leave_out=left_out)
        run.label_snapshot_hash = snapshot.sha256
        run.label_lineage = training_run_lineage_next(project.pk, run.pk, snapshot.annotation_ids)
        label_of = dict(zip(snapshot.item_ids, snapshot.label_ids))
        train_ids = [i for i in snapshot.item_ids if i not in snapshot.audit_item_ids]
        audit_ids = sorted(snapshot.audit_item_ids)
    with _Stage(run, "train"):
        featurizer = project_featurizer(project.pk)
        ids, X = pool_matrix(project.pk, item_ids=train_ids)
        _features_current_check(project.pk, featurizer.space, set(train_ids).difference(ids.tolist()))
        y = np.array([label_of[i] for i in ids])
        pipeline = training.fit(project.kind, X, y, model=project.model_kind, tfidf=uses_tfidf(featurizer))
        candidate = model_version_create(
            project=project, pipeline=pipeline, classes=classes, feature_space=featurizer.space,
            algorithm=" → ".join(type(step).__name__ for _, step in pipeline.steps),
            hyperparameters=training.hyperparameters(pipeline), label_snapshot_hash=snapshot.sha256,
            labels_used=len(ids), training_run_id=run.pk, code_version=code_version(),
            query_strategy=project.query_strategy,
        )
    with _Stage(run, "evaluate"):
        audit_ids_present, X_audit = pool_matrix(project.pk, item_ids=audit_ids)
        _features_current_check(project.pk, featurizer.space, set(audit_ids).difference(audit_ids_present.tolist()))
        y_audit = np.array([label_of[i] for i in audit_ids_present])
        candidate_proba = training.proba_over(pipeline, X_audit, classes) if len(y_audit) else None
        candidate.metrics = evaluation.evaluate(y_audit, candidate_proba, classes) if len(y_audit) else {"n": 0}
        candidate.save(update_fields=["metrics"])
        champion = model_version_live(project.pk)
        champion_metrics, champion_pred = None, None
        if champion is not None and len(y_audit):
            X_champion = _audit_features_of(champion, project, featurizer.space, audit_ids_present, X_audit)
            champion_proba = training.proba_over(model_version_loaded(champion).pipeline, X_champion, classes)
            champion_metrics = evaluation.evaluate(y_audit, champion_proba, classes)
            champion_pred = np.asarray(classes)[champion_proba.argmax(axis=1)]
        elif champion is not None:
            champion_pred = np.empty(0, dtype=np.int64)
    with _Stage(run, "gate"):
        candidate_pred = (np.asarray(classes)[candidate_proba.argmax(axis=1)] if candidate_proba is not None
                          else np.empty(0, dtype=np.int64))
        decision = gate(run, candidate, y_audit, candidate_pred, champion, champion_pred, majority=_majority(y),
                        classes=classes)
        if champion_metrics is not None:
            decision["champion_metrics"] = champion_metrics  # the champion on the same audit items
        if unreliable:
            decision["left_out"] = unreliable
            decision["reason"] += _left_out_sentence(unreliable)
        run.decision = decision
    if decision["promote"]:
        with _Stage(run, "swap"):
            model_version_promote(candidate, reason=decision["reason"], trigger=run.trigger, actor=run.requested_by)
        _finish(run, TrainingRun.Status.PROMOTED)
    else:
        status = ModelVersion.Status.REJECTED if decision["worse"] else ModelVersion.Status.NOT_PROMOTED
        ModelVersion.objects.filter(pk=candidate.pk).update(status=status)
        _finish(run, TrainingRun.Status.KEPT_CHAMPION)
    # Labels that arrived while this run trained may already call for the next one.
    send_task_on_commit(TaskName.LABELS_ADDED, [project.pk])


def _features_current_check(project_id: int, space: str, missing: set[int]) -> None:
    """Refuse to train while labeled items the pool lacks (``missing``) still have features of another space
    (a new featurizer's are being computed); the run that follows their completion trains on all of them.

    Items without any features (an image that no longer reads) are left out as before.
    """
    if not missing:
        return
    stale = FeatureVector.objects.filter(project_id=project_id, item_id__in=sorted(missing)).exclude(space=space).count()
    if stale:
        raise training.TrainingError(
            f"The features are being recomputed for the project's new featurizer: {stale} labeled item(s) still "
            "have the old ones. A retrain follows when they are done."
        )


def _audit_features_of(champion: ModelVersion, project: Project, space: str, audit_ids: np.ndarray, X_audit):
    """The audit items' features in the champion's own space: the stored ones (of ``space``), or computed from
    the items' sources when the champion was trained on another featurizer's features."""
    if champion.feature_space == space:
        return X_audit
    try:
        featurizer = featurizer_of_space(project, champion.feature_space)
        ids, X = items_features(project, audit_ids.tolist(), featurizer)
    except (FeaturizeError, PluginError) as exc:
        raise training.TrainingError(
            f"v{champion.number} cannot be compared on the audit labels: its features cannot be computed ({exc})."
        ) from None
    if len(ids) != len(audit_ids):
        raise training.TrainingError(f"v{champion.number} cannot be compared: some audit items lack its features.")
    return X


def _unreliable_labels(project_id: int) -> tuple[frozenset[int], list[dict]]:
    """The labels training leaves out and, per expert, how many and why.

    Stretches found at ``reliability.HOLD_BACK_ALPHA`` are left out; those also past ``reliability.ALPHA``
    are marked ``unreliable``, the rest are held back in doubt (``_left_out_sentence`` words both).
    """
    rows = label_agreements(project_id)
    if not rows:
        return frozenset(), []
    ids, annotators, agrees = (np.array(column) for column in zip(*rows))
    windows = reliability.unreliable_windows(annotators, agrees, alpha=reliability.HOLD_BACK_ALPHA)
    if not windows:
        return frozenset(), []
    by_annotator: dict[int, list] = {}
    for window in windows:
        by_annotator.setdefault(window.annotator, []).append(window)
    names = dict(get_user_model().objects.filter(pk__in=list(by_annotator)).values_list("pk", "username"))
    left_out: set[int] = set()
    summary = []
    for annotator, own in sorted(by_annotator.items()):
        positions = np.unique(np.concatenate([w.positions for w in own]))
        left_out.update(int(i) for i in ids[positions])
        summary.append({
            "annotator": annotator, "username": names.get(annotator, f"expert {annotator}"),
            "labels": int(len(positions)), "agreement": float(agrees[positions].mean()),
            "others_agreement": float(np.mean([w.others_agreement for w in own])), "windows": len(own),
            "unreliable": any(w.p_value < reliability.ALPHA for w in own),
        })
    return frozenset(left_out), summary


def _left_out_sentence(left_out: list[dict]) -> str:
    """What training left out, in the words of the decision: unreliable experts first, then those held back in doubt."""
    sentences = []
    for unreliable, heading in ((True, "Left out as unreliable"), (False, "Held back while in doubt")):
        parts = [f"{u['labels']} labels of {u['username']} (agreeing with the live model on {u['agreement']:.0%} "
                 f"of them, the other experts on {u['others_agreement']:.0%})" for u in left_out
                 if u["unreliable"] == unreliable]
        if parts:
            sentences.append(f" {heading}: " + "; ".join(parts) + ".")
    return "".join(sentences)


def _majority(y: np.ndarray) -> int:
    values, counts = np.unique(y, return_counts=True)
    return int(values[np.argmax(counts)])


def _same_kind(candidate: ModelVersion, champion: ModelVersion) -> bool:
    """Whether the candidate comes from the champion's pipeline: algorithm, hyperparameters (how it is
    fitted aside) and feature space."""
    return (candidate.algorithm, candidate.feature_space) == (champion.algorithm, champion.feature_space) and (
        training.same_pipeline(candidate.hyperparameters, champion.hyperparameters)
    )


def _routine(run: TrainingRun, candidate: ModelVersion, champion: ModelVersion) -> str:
    """Why the candidate is not a routine retrain of the champion, or "" if it is one.

    Routine: the champion's pipeline, retrained on the labels as they stand after the champion's
    own snapshot (every label it saw that still exists, and those added since).
    """
    if not _same_kind(candidate, champion):
        changed = [name for name, differs in (
            ("algorithm", candidate.algorithm != champion.algorithm),
            ("hyperparameters", not training.same_pipeline(candidate.hyperparameters, champion.hyperparameters)),
            ("featurizer", candidate.feature_space != champion.feature_space),
        ) if differs]
        return f"another {' and '.join(changed)} than v{champion.number}"
    champion_run = champion.training_run
    if champion_run is None or champion_run.created_at > run.created_at:
        return f"not trained on the labels v{champion.number} was trained on"
    return ""


def _looks_before(project_id: int, comparison: str, since=None) -> int:
    """How many earlier runs of the project took a test of this comparison (since the champion went live)."""
    runs = TrainingRun.objects.filter(project_id=project_id, decision__comparison=comparison,
                                      decision__has_key="alpha_look")
    if since is not None:
        runs = runs.filter(created_at__gt=since)
    return runs.count()


def gate(
    run: TrainingRun,
    candidate: ModelVersion,
    y_audit: np.ndarray,
    candidate_pred: np.ndarray,
    champion: ModelVersion | None,
    champion_pred: np.ndarray | None,
    *,
    majority: int,
    classes: list[int],
) -> dict:
    """Decide promotion on the audit set by the project's rule; the returned dict is stored on the run and says why.

    The first model must beat the majority-class baseline. A routine retrain (the live model's
    pipeline on its labels and more) is judged by the project's rule: ``not_worse`` (default) or
    ``better``; any other candidate by ``better``. A live model known to be stale (drift,
    degradation) is replaced by a routine retrain unless the audit labels show that worse, under
    either rule and without the minimum of audit labels. See ``learner.ml.gate``.
    """
    project = run.project
    settings = gate_ml.GateSettings(
        rule=project.promotion_rule, alpha=project.gate_alpha, margin=project.gate_margin,
        min_gain=project.gate_min_gain, min_audit=project.gate_min_audit,
        min_audit_first=project.gate_min_audit_first, max_recall_drop=project.gate_max_recall_drop,
    )
    base = {"rule": project.promotion_rule}
    if champion is None:
        look = _looks_before(project.pk, "first_model") + 1
        decision = gate_ml.decide_first(y_audit, candidate_pred, majority=majority, settings=settings, look=look)
        return {**base, **decision.as_dict()}
    not_routine = _routine(run, candidate, champion)
    stale = "" if not_routine else live_model_stale_reason(project.pk, champion.number, run)
    if not not_routine and (project.promotion_rule == Project.PromotionRule.NOT_WORSE or stale):
        comparison = "not_worse"
    else:
        comparison = "better"
    live_since = LiveModel.objects.filter(project_id=project.pk).values_list("changed_at", flat=True).first()
    look = _looks_before(project.pk, "better", since=live_since) + 1 if comparison == "better" else 0
    decision = gate_ml.decide_against_champion(
        y_audit, champion_pred, candidate_pred, champion=champion.number, classes=classes, settings=settings,
        comparison=comparison, look=look, stale=stale,
    )
    out = {**base, **decision.as_dict()}
    if not_routine:
        out["change_of_kind"] = not_routine
        out["reason"] += f" A change of kind ({not_routine}) must prove itself better."
    return out


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
        send_task_on_commit(TaskName.TRAIN_RUN, [run_id])
        resent += 1
    return {"lost": lost, "resent": resent}
