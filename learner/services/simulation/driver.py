"""One simulated run: experts take leases and answer from the oracle, the count trigger retrains, curves are recorded."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth.models import AbstractBaseUser

from annotations.models import Item, Label, Lease, Project
from annotations.services import annotation_submit, lease_release, queue_next
from learner.ml import curves
from learner.ml.training import proba_over
from learner.models import ModelVersion, TrainingRun
from learner.selectors import model_version_live
from learner.services.models import model_version_loaded
from learner.services.training import training_run_execute
from learner.services.triggers import count_trigger_check

from .scratch import SimulationData, pool_score_now

@dataclass
class RunRecord:
    """One (strategy, seed) run's record."""

    strategy: str
    seed: int
    curve: list[dict] = field(default_factory=list)
    retrains: list[dict] = field(default_factory=list)
    audit_labels: int = 0
    noisy_labels: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"queue": 0.0, "retrain": 0.0, "curve": 0.0})
    artifacts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"strategy": self.strategy, "seed": self.seed, "audit_labels": self.audit_labels,
                "noisy_labels": self.noisy_labels, "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
                "retrains": self.retrains, "curve": self.curve}


@dataclass(frozen=True)
class Noise:
    """The first ``annotators`` simulated experts answer at random (uniform over the labels) after ``after`` labels."""

    annotators: int = 0
    after: int = 0


class Driver:
    """Runs one scratch project: leases, oracle answers, triggers and curve points."""

    def __init__(
        self, scratch: Project, data: SimulationData, pool: np.ndarray, test: np.ndarray, run: RunRecord, noise: Noise = Noise()
    ) -> None:
        self.scratch, self.data, self.run, self.noise = scratch, data, run, noise
        # Its own stream, so that noise leaves the queue's audit draws (module ``random``) as they were.
        self.noise_rng = np.random.default_rng([run.seed, 11])
        self.X_test, self.y_test = data.X[test], data.y[test]
        row_of_external = {data.external_ids[row]: int(row) for row in pool}
        items = Item.objects.filter(project=scratch).values_list("pk", "external_id")
        self.row_of = {pk: row_of_external[external_id] for pk, external_id in items}
        label_pks = dict(Label.objects.filter(project=scratch).values_list("name", "pk"))
        self.index_of_label = {label_pks[name]: i for i, name in enumerate(data.label_names)}
        self.labeled_rows: list[int] = []
        self.given: dict[int, int] = {}  # row → the label index last given for it (the oracle's, or noise)
        self.label_counts = np.zeros(len(data.label_names), dtype=np.int64)  # every label given, by label index
        self.live_accuracy: dict[int, float] = {}

    def drive(self, annotators: list[AbstractBaseUser], budget: int, step: int) -> None:
        pool_score_now(self.scratch.pk)  # the seeding the feature job asks for after an import
        noisy = {user.pk for user in annotators[:self.noise.annotators]}
        held = {user.pk: self._next(user) for user in annotators}
        labels, seen = 0, set()
        while labels < budget:
            progressed = False
            for user in annotators:
                if labels >= budget:
                    break
                lease = held[user.pk] or self._next(user)
                if lease is None:
                    continue
                row = self.row_of[lease.item_id]
                answer = int(self.data.y[row])
                if user.pk in noisy and labels >= self.noise.after:
                    answer = int(self.noise_rng.integers(len(self.data.label_names)))
                    self.run.noisy_labels += 1
                started = time.perf_counter()
                annotation_submit(lease_id=lease.pk, user=user, label_name=self.data.label_names[answer])
                self.run.seconds["queue"] += time.perf_counter() - started
                labels += 1
                progressed = True
                self.run.audit_labels += lease.is_audit
                if row not in seen:
                    seen.add(row)
                    self.labeled_rows.append(row)
                self.given[row] = answer
                self.label_counts[answer] += 1
                retrained = self._triggers(labels)
                if labels % step == 0 or retrained or labels == budget:
                    self._point(labels)
                # Like an expert, each asks for the next item once they answered, while the others still hold theirs.
                held[user.pk] = self._next(user) if labels < budget else None
            if not progressed:
                break  # every annotator found the queue empty
        for user in annotators:
            if held[user.pk] is not None:
                lease_release(lease_id=held[user.pk].pk, user=user)

    def _next(self, user: AbstractBaseUser) -> Lease | None:
        started = time.perf_counter()
        lease = queue_next(project=self.scratch, user=user)
        self.run.seconds["queue"] += time.perf_counter() - started
        return lease

    def _triggers(self, labels: int) -> bool:
        """Run the count trigger, as a label's labels_added task does, and the run it requests; True if one ran.

        The beat-driven triggers (schedule, degradation, drift) are left out: they pace themselves
        by wall-clock minutes, which a simulation does not have.
        """
        requested = count_trigger_check(self.scratch.pk)
        if requested is None:
            return False
        started = time.perf_counter()
        run = training_run_execute(requested.pk)
        if run.status == TrainingRun.Status.PROMOTED:
            pool_score_now(self.scratch.pk)  # the rescoring a swap asks for
        version = ModelVersion.objects.filter(training_run=run).values_list("number", "artifact_name").first()
        if version is not None:
            self.run.artifacts.append(version[1])
        reason = run.decision.get("reason") or (run.error.splitlines()[0] if run.error else "")
        self.run.retrains.append({
            "labels": labels, "trigger": run.trigger, "status": run.status, "version": version and version[0],
            "audit_n": run.decision.get("audit_n"), "verdict": run.decision.get("verdict"), "reason": reason,
            "seconds": round(sum(run.timings.values()), 3),
        })
        self.run.seconds["retrain"] += time.perf_counter() - started
        return True

    def _point(self, labels: int) -> None:
        started = time.perf_counter()
        rows = self.labeled_rows
        given = np.array([self.given[row] for row in rows], dtype=np.int64)
        accuracy = curves.fit_accuracy(
            self.data.kind, self.data.X[rows], given, self.X_test, self.y_test, model=self.data.model, tfidf=self.data.tfidf
        )
        live = model_version_live(self.scratch.pk)
        point = {"labels": labels, "items": len(rows), "accuracy": round(accuracy, 5),
                 "live_version": live.number if live else None, "live_accuracy": None}
        if live is None:
            # No prediction yet: count the most frequent label given so far (ties to the label shown first).
            majority = int(self.label_counts.argmax())
            point["live_accuracy"] = round(float(np.mean(self.y_test == majority)), 5)
        else:
            if live.pk not in self.live_accuracy:
                loaded = model_version_loaded(live)
                proba = proba_over(loaded.pipeline, self.X_test, list(loaded.classes))
                predicted = np.array([self.index_of_label[int(loaded.classes[i])] for i in proba.argmax(axis=1)])
                self.live_accuracy[live.pk] = float(np.mean(predicted == self.y_test))
            point["live_accuracy"] = round(self.live_accuracy[live.pk], 5)
        self.run.curve.append(point)
        self.run.seconds["curve"] += time.perf_counter() - started
