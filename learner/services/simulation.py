"""Labeling simulations: oracle annotators drive the real queue, triggers, gate and swaps on scratch project copies.

Each (strategy, seed) run copies the project's items (less a held-out test split) and their
features into a scratch project with the same labels and settings, lets N scratch annotators
label through ``queue_next`` / ``annotation_submit`` with the oracle's answers, runs the count
trigger after every label and executes what it requests synchronously (train, gate, swap, and
the rescoring that a swap asks for), and records a learning curve on
the test split: a model fitted on every label so far, and the model live at that moment.
Before a model is live a client's /predict gets no answer; the live curve then counts the
accuracy of answering the most frequent label so far, the baseline the first model must beat.
Some annotators may turn noisy part way (``noisy_annotators`` from ``noisy_from``): they answer
uniformly at random over the labels. Every draw follows the seed: runs with the same seeds
record the same curves.

A run is one database transaction, rolled back at its end: no other process ever sees the
scratch project, and the task messages its services queue after commit are never sent, so a
worker cannot race the run and no broker is needed. The price: on SQLite the run holds the
write lock while it lasts, so simulate when nobody is labeling there.
"""
from __future__ import annotations

import csv
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.db import connection, transaction
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from annotations.models import Item, Label, Lease, Membership, Project
from annotations.services import annotation_submit, lease_release, queue_next
from labelhub.api import DomainError
from learner.ml import curves
from learner.ml.featurize import Matrix
from learner.ml.training import proba_over
from learner.models import FeatureVector, ModelVersion, TrainingRun
from learner.selectors import pool_matrix, project_featurizer
from learner.services.models import model_version_live, model_version_loaded
from learner.services.scoring import score_chunk, score_pool_plan
from learner.services.training import training_run_execute
from learner.services.triggers import count_trigger_check

DEFAULT_STEP = 10
DEFAULT_TEST_SHARE = 0.25
BASELINE = Project.Strategy.RANDOM
# Settings a scratch copy must not take over: identity, timestamps, and the schedule, which a
# simulation without wall-clock time cannot honour (and which would retrain a kept copy on beat).
NOT_COPIED = {"id", "name", "slug", "created_at", "updated_at", "query_strategy", "retrain_interval_minutes"}
# The settings that shape a simulation, which ``overrides`` may change for the scratch copies.
ADJUSTABLE = (
    "audit_share", "overlap", "retrain_every_n_labels", "promotion_rule", "gate_margin", "gate_alpha", "gate_min_gain", "gate_min_audit",
    "gate_min_audit_first", "gate_max_recall_drop",
)
ITEM_COPY_BATCH = 2000

Log = Callable[[str], None]


class SimulationError(DomainError):
    """A simulation cannot run as asked; the message says why."""


def settings_overrides(pairs: list[str]) -> dict:
    """Parse NAME=VALUE pairs into validated project settings for the scratch copies."""
    overrides = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or name not in ADJUSTABLE:
            raise SimulationError(f"Cannot set {pair!r}: use NAME=VALUE with NAME one of {', '.join(ADJUSTABLE)}.")
        model_field = Project._meta.get_field(name)
        try:
            value = model_field.to_python(raw.strip())
            model_field.run_validators(value)
        except ValidationError as exc:
            raise SimulationError(f"Cannot set {name} to {raw!r}: {' '.join(exc.messages)}") from None
        overrides[name] = value
    return overrides


@dataclass(frozen=True)
class Oracle:
    """The held-back answers: label name by item external_id, and where they came from."""

    answers: dict[str, str]
    source: str


def oracle_from_metadata(project: Project, field_name: str) -> Oracle:
    """Read each item's answer from ``Item.metadata[field_name]``; items without one are left out."""
    rows = (
        Item.objects.filter(project=project)
        .annotate(answer=KeyTextTransform(field_name, "metadata"))
        .filter(answer__isnull=False)
        .values_list("external_id", "answer")
    )
    answers = {external_id: str(answer).strip() for external_id, answer in rows.iterator(chunk_size=10_000)}
    answers = {key: value for key, value in answers.items() if value}
    if not answers:
        raise SimulationError(f"No item of project '{project.slug}' has an answer in metadata['{field_name}'].")
    return Oracle(answers, f"metadata['{field_name}']")


def oracle_from_csv(path: Path | str) -> Oracle:
    """Read answers from a CSV of external_id,label rows (a header row naming those columns is optional)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SimulationError(f"Cannot read the oracle file {path}: {exc}") from None
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["external_id", "label"]:
        rows = rows[1:]
    answers: dict[str, str] = {}
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise SimulationError(f"{path}: row {number} is not 'external_id,label': {row!r}")
        answers[row[0].strip()] = row[1].strip()
    if not answers:
        raise SimulationError(f"The oracle file {path} holds no answers.")
    return Oracle(answers, str(path))


@dataclass
class _Data:
    """The source project's items that have features and an answer: one matrix row each."""

    kind: str
    item_ids: np.ndarray
    external_ids: list[str]
    X: Matrix
    y: np.ndarray  # index into label_names
    label_names: list[str]
    left_out: dict[str, int]


def _load(project: Project, oracle: Oracle) -> _Data:
    label_names = list(project.labels.order_by("order", "name").values_list("name", flat=True))
    index = {name: i for i, name in enumerate(label_names)}
    unknown: dict[str, int] = {}
    for answer in oracle.answers.values():
        if answer not in index:
            unknown[answer] = unknown.get(answer, 0) + 1
    if unknown:
        shown = ", ".join(f"'{name}' ({count} items)" for name, count in sorted(unknown.items())[:5])
        raise SimulationError(
            f"The oracle ({oracle.source}) answers with names that are not labels of project '{project.slug}': "
            f"{shown}{' …' if len(unknown) > 5 else ''}. Its labels are: {', '.join(label_names) or 'none'}."
        )
    rows = Item.objects.filter(project=project).values_list("pk", "external_id")
    external_of = {pk: external_id for pk, external_id in rows.iterator(chunk_size=10_000)}
    answered = sorted(pk for pk, external_id in external_of.items() if external_id in oracle.answers)
    if not answered:
        raise SimulationError(f"No item of project '{project.slug}' has an answer in {oracle.source}.")
    ids, X = pool_matrix(project.pk, item_ids=answered)
    if len(ids) == 0:
        raise SimulationError(f"No answered item of project '{project.slug}' has features yet; compute them first.")
    external_ids = [external_of[int(pk)] for pk in ids]
    y = np.array([index[oracle.answers[external_id]] for external_id in external_ids], dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise SimulationError("The oracle's answers name a single label; a simulation needs at least two.")
    left_out = {"without_answer": len(external_of) - len(answered), "without_features": len(answered) - len(ids)}
    return _Data(project.kind, ids, external_ids, X, y, label_names, left_out)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the module-level random numbers (the queue's audit draws) for one run; restore them after."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _scratch_annotators(token: str, count: int) -> list[AbstractBaseUser]:
    """Create the simulated experts: inactive users without a usable password, so nobody can log in as them."""
    User = get_user_model()
    users = []
    for number in range(1, count + 1):
        user = User(username=f"sim-{token}-{number}", is_active=False)
        user.set_unusable_password()
        user.save()
        users.append(user)
    return users


def _scratch_project(
    source: Project, data: _Data, rows: np.ndarray, *, strategy: str, seed: int, token: str,
    annotators: list[AbstractBaseUser], overrides: dict,
) -> Project:
    """Copy the project's labels, settings, the given items and their features into a new scratch project."""
    copied = {f.attname: getattr(source, f.attname) for f in Project._meta.concrete_fields if f.name not in NOT_COPIED}
    copied.update(overrides)
    with transaction.atomic():
        scratch = Project.objects.create(
            **copied, name=f"{source.name} · simulation {strategy} seed {seed}"[:200],
            slug=f"sim-{token}-{strategy}-{seed}"[:100], query_strategy=strategy, retrain_interval_minutes=None,
        )
        Label.objects.bulk_create([
            Label(project=scratch, name=label.name, shortcut=label.shortcut, color=label.color, order=label.order)
            for label in source.labels.all()
        ])
        Membership.objects.bulk_create(
            [Membership(project=scratch, user=user, role=Membership.Role.ANNOTATOR) for user in annotators]
        )
        wanted = set(data.item_ids[rows].tolist())
        # A fresh seeded random key per copy, so that audit draws and random order differ by seed.
        keys = iter(np.random.default_rng([seed, 7]).random(len(wanted)).tolist())
        columns = ("pk", "external_id", "text", "image", "thumbnail", "values", "metadata", "content_hash")
        batch: list[Item] = []
        rows_of_source = Item.objects.filter(project=source).order_by("pk").values_list(*columns)
        for pk, external_id, text, image, thumbnail, values, metadata, content_hash in rows_of_source.iterator(
            chunk_size=ITEM_COPY_BATCH
        ):
            if pk not in wanted:
                continue
            # Image items keep the stored file names: the copy reads the same files and never deletes them.
            batch.append(Item(
                project=scratch, external_id=external_id, text=text, image=image, thumbnail=thumbnail, values=values,
                metadata=metadata, content_hash=content_hash, random_key=next(keys),
            ))
            if len(batch) >= ITEM_COPY_BATCH:
                Item.objects.bulk_create(batch)
                batch = []
        Item.objects.bulk_create(batch)
        _copy_features(source.pk, scratch.pk)
    return scratch


def _copy_features(source_id: int, scratch_id: int) -> int:
    """Copy the feature rows of the source's items to the scratch items of the same external_id, in one statement."""
    space = project_featurizer(source_id).space
    feature, item = FeatureVector._meta, Item._meta
    column = {name: f'"{feature.get_field(name).column}"' for name in ("item", "project", "space", "values", "indices")}
    item_project, item_external = (f'"{item.get_field(name).column}"' for name in ("project", "external_id"))
    sql = (
        f'INSERT INTO "{feature.db_table}" ({column["item"]}, {column["project"]}, {column["space"]},'
        f' {column["values"]}, {column["indices"]})'
        f' SELECT dst."id", %s, f.{column["space"]}, f.{column["values"]}, f.{column["indices"]}'
        f' FROM "{feature.db_table}" f'
        f' INNER JOIN "{item.db_table}" src ON src."id" = f.{column["item"]}'
        f' INNER JOIN "{item.db_table}" dst ON dst.{item_project} = %s AND dst.{item_external} = src.{item_external}'
        f' WHERE f.{column["project"]} = %s AND f.{column["space"]} = %s'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [scratch_id, scratch_id, source_id, space])
        return cursor.rowcount


def _artifacts_delete(names: list[str]) -> None:
    """Delete model files of a rolled-back run: the storage is outside the transaction."""
    storage = storages["models"]
    for name in names:
        storage.delete(name)


def _score_pool_now(project_id: int) -> None:
    """Score the pool in this process, as the scoring tasks would, so the queue serves the new ranking at once."""
    plan = score_pool_plan(project_id)
    if plan is not None:
        for id_range in plan.ranges:
            score_chunk(project_id, plan.scoring_id, id_range)


@dataclass
class _Run:
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


class _Driver:
    """Runs one scratch project: leases, oracle answers, triggers and curve points."""

    def __init__(
        self, scratch: Project, data: _Data, pool: np.ndarray, test: np.ndarray, run: _Run, noise: Noise = Noise()
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
        _score_pool_now(self.scratch.pk)  # the seeding the feature job asks for after an import
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
            _score_pool_now(self.scratch.pk)  # the rescoring a swap asks for
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
        accuracy = curves.fit_accuracy(self.data.kind, self.data.X[rows], given, self.X_test, self.y_test)
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


def simulation_run(
    *,
    project: Project,
    oracle: Oracle,
    strategy: str,
    annotators: int = 4,
    budget: int = 400,
    seeds: int = 3,
    step: int = DEFAULT_STEP,
    test_share: float = DEFAULT_TEST_SHARE,
    overrides: dict | None = None,
    keep: bool = False,
    noisy_annotators: int = 0,
    noisy_from: int = 0,
    baseline: bool = True,
    log: Log | None = None,
) -> dict:
    """Simulate labeling with the strategy and with random sampling; return every curve, the summaries and settings.

    The project itself is only read: each run works on a scratch copy in a transaction that is
    rolled back at its end, or committed with ``keep``. ``overrides`` (from ``settings_overrides``)
    change the copies' settings. ``noisy_annotators`` of the annotators answer at random once a
    run has ``noisy_from`` labels; without ``baseline`` the strategy runs alone.
    """
    log = log or (lambda message: None)
    overrides = overrides or {}
    effective = {name: overrides.get(name, getattr(project, name)) for name in ADJUSTABLE}
    if strategy not in Project.Strategy.values:
        raise SimulationError(f"Unknown strategy '{strategy}'; choose one of {', '.join(Project.Strategy.values)}.")
    if annotators < 1 or budget < 1 or seeds < 1 or step < 1:
        raise SimulationError("annotators, budget, seeds and step must each be at least 1.")
    if not 0.0 < test_share < 1.0:
        raise SimulationError("The test share must lie strictly between 0 and 1.")
    if not 0 <= noisy_annotators <= annotators:
        raise SimulationError(
            f"The noisy annotators must number from 0 to the {annotators} annotators (got {noisy_annotators})."
        )
    if noisy_from < 0:
        raise SimulationError(f"Noisy answers start after a number of labels, 0 or more (got {noisy_from}).")
    if noisy_from and not noisy_annotators:
        raise SimulationError("A start for noisy answers needs noisy annotators: say how many.")
    noise = Noise(noisy_annotators, noisy_from)
    started_at, started = timezone.now(), time.perf_counter()
    data = _load(project, oracle)
    splits = [curves.holdout_split(data.y, test_share, seed) for seed in range(seeds)]
    pool_size = min(len(pool) for pool, _ in splits)
    asked = budget
    budget = min(budget, pool_size * effective["overlap"])
    if budget < asked:
        log(f"The pool holds {pool_size} items with answers (after the test split): budget lowered to {budget} labels.")
    full = [
        curves.fit_accuracy(data.kind, data.X[pool], data.y[pool], data.X[test], data.y[test]) for pool, test in splits
    ]
    strategies = [strategy] if strategy == BASELINE or not baseline else [strategy, BASELINE]
    token = uuid.uuid4().hex[:8]
    runs: list[_Run] = []
    kept: list[str] = []
    for seed, (pool, test) in enumerate(splits):
        for name in strategies:
            run = _Run(name, seed)
            run_started = time.perf_counter()
            committed = False
            try:
                with transaction.atomic():
                    users = _scratch_annotators(f"{token}-{name}-{seed}", annotators)
                    scratch = _scratch_project(
                        project, data, pool, strategy=name, seed=seed, token=token, annotators=users,
                        overrides=overrides,
                    )
                    with _seeded(seed):
                        _Driver(scratch, data, pool, test, run, noise).drive(users, budget, step)
                    if keep:
                        kept.append(scratch.slug)
                        committed = True
                    else:
                        transaction.set_rollback(True)
            finally:
                if not committed:
                    _artifacts_delete(run.artifacts)
            run.seconds["total"] = time.perf_counter() - run_started
            runs.append(run)
            promoted = sum(r["status"] == TrainingRun.Status.PROMOTED for r in run.retrains)
            last = run.curve[-1] if run.curve else {"labels": 0, "accuracy": float("nan")}
            log(f"{name} seed {seed}: {last['labels']} labels, {len(run.retrains)} retrains ({promoted} promoted), "
                f"accuracy {last['accuracy']:.3f} (full pool {full[seed]:.3f}), {run.seconds['total']:.0f} s")
    full_pool_accuracy = float(np.mean(full))
    summary = {}
    for name in strategies:
        own = [r for r in runs if r.strategy == name]

        def points(run: _Run, key: str) -> list[tuple[int, float]]:
            return [(p["labels"], p[key]) for p in run.curve if p["labels"] % step == 0 or p["labels"] == budget]

        summary[name] = curves.summarise([points(r, "accuracy") for r in own], full_pool_accuracy, budget)
        live = curves.summarise([points(r, "live_accuracy") for r in own], full_pool_accuracy, budget)
        summary[name].update({
            "live_n95": live["n95"], "live_n99": live["n99"], "live_aulc": live["aulc"],
            "live_final_accuracy": live["final_accuracy"], "live_max_drop": live["max_drop"],
            "live_mean_curve": live["mean_curve"],
        })
        promoted_at = [[x["labels"] for x in r.retrains if x["status"] == TrainingRun.Status.PROMOTED] for r in own]
        summary[name]["first_promotion_labels"] = [labels[0] if labels else None for labels in promoted_at]
        summary[name]["median_first_promotion"] = curves.median_or_never(summary[name]["first_promotion_labels"])
        summary[name]["retrains"] = [len(r.retrains) for r in own]
        summary[name]["promotions"] = [sum(x["status"] == TrainingRun.Status.PROMOTED for x in r.retrains) for r in own]
    return {
        "project": project.slug,
        "dataset": project.name,
        "strategy": strategy,
        "baseline": BASELINE,
        "annotators": annotators,
        "budget": budget,
        "budget_asked": asked,
        "seeds": list(range(seeds)),
        "step": step,
        "test_share": test_share,
        "oracle": oracle.source,
        "items": {"used": len(data.y), "pool": pool_size, "test": len(splits[0][1]), **data.left_out},
        "kind": project.kind,
        "settings": effective,
        "overrides": overrides,
        "triggers": ["count"],
        "noise": {"annotators": noisy_annotators, "after_labels": noisy_from},
        "live_before_first_model": "majority label so far",
        "full_pool_accuracy": round(full_pool_accuracy, 5),
        "full_pool_accuracy_per_seed": [round(a, 5) for a in full],
        "summary": summary,
        "runs": [run.as_dict() for run in runs],
        "kept_projects": kept,
        "started_at": started_at.isoformat(),
        "seconds": round(time.perf_counter() - started, 1),
    }


def simulation_plot(result: dict, path: Path | str) -> None:
    """Draw a simulation's mean curves (strategy and random, ±1 sd) and live-model curves as a PNG."""
    def as_curve(d: dict) -> curves.MeanCurve:
        return curves.MeanCurve(np.array(d["labels"]), np.array(d["mean"]), np.array(d["std"]), d["runs"])

    summary, settings = result["summary"], result["settings"]
    curves.plot_curves(
        path,
        {name: as_curve(s["mean_curve"]) for name, s in summary.items()},
        live={name: as_curve(s["live_mean_curve"]) for name, s in summary.items()},
        full_pool_accuracy=result["full_pool_accuracy"],
        title=f"{result['dataset']}: {result['annotators']} annotators, {len(result['seeds'])} seeds, retrain every "
              f"{settings['retrain_every_n_labels']} labels, gate ≥ {settings['gate_min_audit_first']} / "
              f"{settings['gate_min_audit']} audit",
    )
