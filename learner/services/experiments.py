"""A/B experiments: start with a fixed rule, match outcomes, look at the data on schedule, promote or keep."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotations.models import Label, Project
from annotations.selectors.labels import audit_labels_since, item_labels_first
from labelhub.api import Conflict, DomainError, NotFound
from labelhub.celery import TaskName, send_task_on_commit
from learner import selectors
from learner.ml import abtest
from learner.ml.featurize import FeaturizeError
from learner.ml.registry import PluginError
from learner.ml.training import proba_over
from learner.models import Experiment, ModelVersion, PredictionCorrection, PredictionLog
from learner.selectors import featurizer_of_space, model_version_live
from learner.services.models import model_version_loaded, model_version_promote
from learner.services.sources import items_features
from stats.intervals import wilson_interval


def experiment_start(
    *, project: Project, user: AbstractBaseUser, challenger_number: int, mode: str, traffic_share: float = 0.1,
    alpha: float | None = None, min_gain: float | None = None, power: float = 0.8, looks: int | None = None,
    min_sample: int | None = None, discordance: float = 0.2,
) -> Experiment:
    """Start an experiment of a version against the live one; the decision rule is computed and fixed now."""
    live = model_version_live(project.pk)
    if live is None:
        raise DomainError("No model is live: there is no champion to test against.")
    challenger = ModelVersion.objects.filter(project=project, number=challenger_number).first()
    if challenger is None:
        raise NotFound(f"Version {challenger_number} not found.")
    if challenger.pk == live.pk:
        raise DomainError("The challenger is the live version.")
    if challenger.artifact_removed_at is not None:
        raise DomainError(f"Version {challenger.number}'s model file was removed by retention: retrain to test it.")
    if challenger.feature_space != live.feature_space:
        try:  # each arm featurizes the requests its own way: both featurizers must still be at hand
            featurizer_of_space(project, challenger.feature_space)
            featurizer_of_space(project, live.feature_space)
        except (FeaturizeError, PluginError) as exc:
            raise DomainError(f"The two versions were trained on different features, and {exc}.") from None
    if mode == Experiment.Mode.SPLIT and not 0 < traffic_share < 1:
        raise DomainError("A split experiment sends a share between 0 and 1 (exclusive) to the challenger.")
    alpha = settings.LABELHUB_EXPERIMENT_ALPHA if alpha is None else alpha
    min_gain = settings.LABELHUB_EXPERIMENT_MIN_GAIN if min_gain is None else min_gain
    looks = settings.LABELHUB_EXPERIMENT_LOOKS if looks is None else looks
    test = abtest.PAIRED if mode == Experiment.Mode.SHADOW else abtest.TWO_PROPORTIONS
    baseline = live.metrics.get("accuracy") or 0.8
    power_calc = abtest.sample_size(
        test=test, alpha=alpha, looks=looks, power=power, min_gain=min_gain, baseline_accuracy=baseline,
        discordance=discordance, share=traffic_share,
    )
    planned = max(min_sample or 0, power_calc["n"])
    rule = {
        "test": test, "alpha": alpha, "min_gain": min_gain, "looks": looks,
        "alpha_per_look": abtest.look_alpha(alpha, looks), "min_sample": planned,
        "look_at": abtest.look_schedule(planned, looks), "power": power_calc,
        "spending": "Bonferroni: each of the K planned looks tests at α/K, so repeated looks never exceed α.",
    }
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(
                project=project, champion=live, challenger=challenger, mode=mode,
                traffic_share=traffic_share if mode == Experiment.Mode.SPLIT else 0.0, rule=rule, created_by=user,
            )
    except IntegrityError:
        raise Conflict("An experiment is already running in this project; stop it first.") from None
    return experiment


def experiment_stop(*, experiment: Experiment, user: AbstractBaseUser, reason: str = "") -> Experiment:
    """A manager stops a running experiment early; the champion stays live."""
    updated = Experiment.objects.filter(pk=experiment.pk, status=Experiment.Status.RUNNING).update(
        status=Experiment.Status.STOPPED, stopped_by=user, decided_at=timezone.now(),
        decision={"outcome": "stopped", "reason": f"Stopped by {user.get_username()}." + (f" {reason}" if reason else "")},
    )
    if not updated:
        raise Conflict("This experiment is not running.")
    experiment.refresh_from_db()
    return experiment


# Roles that may give feedback on any prediction of their project, not only on their own.
FEEDBACK_OVERRIDE_ROLES = ("manager", "admin")


@dataclass(frozen=True)
class Feedback:
    """What a feedback request did: the prediction as it now stands, and whether it corrected an earlier outcome."""

    log: PredictionLog
    corrected: bool


def prediction_feedback(
    *, project: Project, user: AbstractBaseUser, role: str, prediction_id: int, label_id: int | None,
    label_name: str | None, correction: bool = False, note: str = "",
) -> Feedback:
    """Record the true label of a prediction; its experiment is evaluated after commit.

    Only the client that asked (``log.client_id``), or a manager or staff, may give it. The first
    outcome is given once; the same label again changes nothing; another label is refused unless
    ``correction`` is set, and then it replaces the outcome and is kept as a PredictionCorrection.
    Either way the prediction counts once in its experiment.
    """
    if not 0 < prediction_id < 2**63:
        raise NotFound("Prediction not found.")
    log = PredictionLog.objects.filter(pk=prediction_id, project_id=project.pk).first()
    if log is None or (log.client_id != user.pk and role not in FEEDBACK_OVERRIDE_ROLES):
        # Another client's prediction is not theirs to see, let alone to judge.
        raise NotFound("Prediction not found.")
    labels = Label.objects.filter(project=project)
    label = labels.filter(pk=label_id).first() if label_id is not None else labels.filter(name=label_name).first()
    if label is None:
        raise DomainError("Unknown label for this project.")
    now = timezone.now()
    outcome = {"true_label_id": label.pk, "outcome_source": "feedback", "outcome_by_id": user.pk, "outcome_at": now}
    corrected = False
    with transaction.atomic():
        # Conditional updates, not read-then-write: of two concurrent first answers one wins and
        # the other meets it below, on every database.
        if not PredictionLog.objects.filter(pk=log.pk, true_label_id__isnull=True).update(**outcome):
            log.refresh_from_db()
            if log.true_label_id == label.pk:
                return Feedback(log, False)  # a retry of the same answer
            given = labels.filter(pk=log.true_label_id).values_list("name", flat=True).first()
            if log.outcome_source == "expert" and role not in FEEDBACK_OVERRIDE_ROLES:
                raise Conflict(f"This prediction's outcome is its item's expert label ({given!r}); "
                               "only a manager may correct it.")
            if not correction:
                raise Conflict(
                    f"This prediction's outcome is already given ({given!r}); send \"correction\": true to "
                    "correct it (the change is recorded)."
                )
            before, source = log.true_label_id, log.outcome_source
            if not PredictionLog.objects.filter(pk=log.pk, true_label_id=before).update(**outcome):
                raise Conflict("The outcome changed meanwhile; read it again and retry.")
            PredictionCorrection.objects.create(
                prediction_id=log.pk, project_id=project.pk, experiment_id=log.experiment_id, label_before_id=before,
                source_before=source, label_after_id=label.pk, corrected_by=user, note=note,
            )
            corrected = True
        if log.experiment_id:
            send_task_on_commit(TaskName.EXPERIMENT_EVALUATE, [log.experiment_id])
    log.true_label_id, log.outcome_source, log.outcome_by_id, log.outcome_at = label.pk, "feedback", user.pk, now
    return Feedback(log, corrected)


def experiment_outcomes_match(project_id: int) -> list[int]:
    """Give logged predictions of running experiments the expert label of their item; return those experiments."""
    running = selectors.experiments_running(project_id)
    for experiment_id in running:
        pending = list(
            PredictionLog.objects.filter(experiment_id=experiment_id, item_id__isnull=False, true_label_id__isnull=True)
            .values_list("item_id", flat=True).distinct()
        )
        labels = item_labels_first(project_id, pending) if pending else {}
        if labels and connection.vendor != "postgresql":
            for item_id, label_id in labels.items():
                PredictionLog.objects.filter(experiment_id=experiment_id, item_id=item_id, true_label_id__isnull=True).update(
                    true_label_id=label_id, outcome_source="expert")
        elif labels:
            items, label_ids = list(labels), list(labels.values())
            table = connection.ops.quote_name(PredictionLog._meta.db_table)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} p SET true_label_id = u.label_id, outcome_source = 'expert'"
                    " FROM unnest(%s::bigint[], %s::bigint[]) AS u(item_id, label_id)"
                    " WHERE p.experiment_id = %s AND p.item_id = u.item_id AND p.true_label_id IS NULL",
                    [items, label_ids, experiment_id],
                )
    return running


def _audit_pairs(experiment: Experiment) -> dict:
    """Score both arms on the audit labels stored since the experiment started: paired outcomes."""
    labeled = audit_labels_since(experiment.project_id, experiment.created_at)
    if not labeled:
        return {"n": 0, "b": 0, "c": 0, "champion_correct": 0, "challenger_correct": 0}
    truth = dict(labeled)
    base = selectors.pool_matrix(experiment.project_id, list(truth))
    ids = base[0]
    space = selectors.project_featurizer(experiment.project_id).space
    own = {}
    for version in (experiment.champion, experiment.challenger):
        if version.feature_space != space:  # trained on another featurizer: its features from the items
            project = experiment.project
            own[version.pk] = items_features(project, list(truth), featurizer_of_space(project, version.feature_space))
    for other_ids, _ in own.values():
        ids = np.intersect1d(ids, other_ids)  # the items every arm has features for
    y = [truth[i] for i in ids.tolist()]
    right = []
    for version in (experiment.champion, experiment.challenger):
        loaded = model_version_loaded(version)
        classes = list(loaded.classes)
        version_ids, version_X = own.get(version.pk, base)
        rows = version_X[np.searchsorted(version_ids, ids)] if len(ids) else version_X[:0]
        predicted = [classes[j] for j in proba_over(loaded.pipeline, rows, classes).argmax(axis=1)] if len(y) else []
        right.append([p == t for p, t in zip(predicted, y)])
    champ, chall = right
    return {
        "n": len(y), "champion_correct": sum(champ), "challenger_correct": sum(chall),
        "b": sum(x and not a for a, x in zip(champ, chall)), "c": sum(a and not x for a, x in zip(champ, chall)),
    }


def experiment_figures(experiment: Experiment) -> dict:
    """Count the outcomes of both arms so far: logged predictions with a true label, and audit pairs."""
    table = connection.ops.quote_name(PredictionLog._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT arm, count(*), count(*) FILTER (WHERE label_id = true_label_id),"
            " count(*) FILTER (WHERE shadow_label_id = true_label_id),"
            " count(*) FILTER (WHERE shadow_label_id = true_label_id AND label_id <> true_label_id),"
            " count(*) FILTER (WHERE label_id = true_label_id AND shadow_label_id <> true_label_id),"
            " count(DISTINCT client_id)"
            f" FROM {table} WHERE experiment_id = %s AND true_label_id IS NOT NULL GROUP BY arm",
            [experiment.pk],
        )
        found = cursor.fetchall()
    by_arm = {row[0]: row[1:6] for row in found}
    # How many clients each arm's outcomes come from: one client on an arm is thin evidence.
    clients = {row[0]: row[6] for row in found}
    audit = _audit_pairs(experiment)
    if experiment.mode == Experiment.Mode.SHADOW:
        n, champ_ok, chall_ok, b, c = by_arm.get("champion", (0, 0, 0, 0, 0))
        # Every logged prediction and every new audit label is one pair of outcomes.
        n, b, c = n + audit["n"], b + audit["b"], c + audit["c"]
        champ_ok, chall_ok = champ_ok + audit["champion_correct"], chall_ok + audit["challenger_correct"]
        arms = {"champion": (champ_ok, n), "challenger": (chall_ok, n)}
        clients["challenger"] = clients.get("champion", 0)  # every prediction is a pair: the same clients
        figures = {"n": n, "b": b, "c": c}
    else:
        champ = by_arm.get("champion", (0, 0))
        chall = by_arm.get("challenger", (0, 0))
        arms = {"champion": (champ[1], champ[0]), "challenger": (chall[1], chall[0])}
        figures = {"n": champ[0] + chall[0]}
    figures["arms"] = {
        name: {"n": n, "correct": ok, "accuracy": ok / n if n else None, "interval": list(wilson_interval(ok, n)),
               "clients": clients.get(name, 0)}
        for name, (ok, n) in arms.items()
    }
    figures["audit_pairs"] = audit
    # A corrected prediction counts once, with its latest outcome; this says how many were corrected.
    figures["corrected"] = (
        PredictionCorrection.objects.filter(experiment_id=experiment.pk).values("prediction_id").distinct().count()
    )
    return figures


def experiment_evaluate(experiment_id: int) -> Experiment | None:
    """Match outcomes, then take every planned look now due; promote, keep the champion, or wait."""
    experiment = Experiment.objects.select_related("champion", "challenger").filter(pk=experiment_id).first()
    if experiment is None or experiment.status != Experiment.Status.RUNNING:
        return experiment
    experiment_outcomes_match(experiment.project_id)
    figures = experiment_figures(experiment)
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().select_related("champion", "challenger").get(pk=experiment_id)
        if experiment.status != Experiment.Status.RUNNING:
            return experiment
        now = timezone.now()
        live = model_version_live(experiment.project_id)
        if live is None or live.pk != experiment.champion_id:
            experiment.status, experiment.decided_at = Experiment.Status.STOPPED, now
            experiment.decision = {"outcome": "stopped", "reason": "The champion is no longer live (another swap)."}
            experiment.results = figures
            experiment.save(update_fields=["status", "decided_at", "decision", "results"])
            return experiment
        rule = experiment.rule
        due = sum(1 for at in rule["look_at"] if figures["n"] >= at)
        look = None
        if due > experiment.looks_done:
            arms = figures["arms"]
            if rule["test"] == abtest.PAIRED:
                look = abtest.paired_look(figures["b"], figures["c"], figures["n"],
                                          alpha_look=rule["alpha_per_look"], min_gain=rule["min_gain"])
            else:
                look = abtest.split_look(arms["champion"]["correct"], arms["champion"]["n"],
                                         arms["challenger"]["correct"], arms["challenger"]["n"],
                                         alpha_look=rule["alpha_per_look"], min_gain=rule["min_gain"])
            # Several looks due at once are taken as one, and all of their α is counted spent (conservative).
            experiment.looks_done = due
            figures["last_look"] = {"look": due, "n": look.n, "gain": look.gain, "p_value": look.p_value,
                                    "alpha": look.alpha, "at": now.isoformat()}
        else:
            figures["last_look"] = experiment.results.get("last_look")
        experiment.results = figures
        fields = ["results", "looks_done"]
        if look is not None and look.promote:
            experiment.status, experiment.decided_at = Experiment.Status.PROMOTED, now
            experiment.decision = {
                "outcome": "promoted", "look": due, "p_value": look.p_value, "gain": look.gain,
                "reason": f"Challenger v{experiment.challenger.number} better by {look.gain:+.3f} "
                          f"(p = {look.p_value:.4g} ≤ {look.alpha:.4g}) at look {due} of {rule['looks']}, n = {look.n}.",
            }
            fields += ["status", "decided_at", "decision"]
            experiment.save(update_fields=fields)
            model_version_promote(experiment.challenger, reason=f"A/B experiment {experiment.pk}: "
                                  f"{experiment.decision['reason']}", trigger="ab-test")
        elif look is not None and due >= rule["looks"]:
            experiment.status, experiment.decided_at = Experiment.Status.KEPT, now
            experiment.decision = {
                "outcome": "kept", "look": due, "p_value": look.p_value, "gain": look.gain,
                "reason": f"No significant gain of at least {rule['min_gain']} after the planned sample "
                          f"(gain {look.gain:+.3f}, p = {look.p_value:.4g} > {look.alpha:.4g}, n = {look.n}); "
                          "the champion stays.",
            }
            fields += ["status", "decided_at", "decision"]
            experiment.save(update_fields=fields)
        else:
            experiment.save(update_fields=fields)
    return experiment


def experiments_evaluate_all() -> int:
    """Evaluate every running experiment (beat)."""
    ids = list(Experiment.objects.filter(status=Experiment.Status.RUNNING).values_list("pk", flat=True))
    for experiment_id in ids:
        experiment_evaluate(experiment_id)
    return len(ids)
