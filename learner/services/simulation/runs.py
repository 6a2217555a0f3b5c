"""Simulations: every (strategy, seed) run on a scratch copy, their summaries (n95, n99, live curves) and plot."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone

from annotations.models import Project
from learner.ml import curves
from learner.models import TrainingRun

from .driver import Driver, Noise, RunRecord
from .oracles import ADJUSTABLE, Oracle, SimulationError
from .scratch import SimulationData, artifacts_delete, data_load, scratch_annotators, scratch_project, seeded

DEFAULT_STEP = 10
DEFAULT_TEST_SHARE = 0.25
BASELINE = Project.Strategy.RANDOM

Log = Callable[[str], None]


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
    _arguments_check(strategy, annotators, budget, seeds, step, test_share, noisy_annotators, noisy_from)
    noise = Noise(noisy_annotators, noisy_from)
    started_at, started = timezone.now(), time.perf_counter()
    data = data_load(project, oracle)
    splits = [curves.holdout_split(data.y, test_share, seed) for seed in range(seeds)]
    pool_size = min(len(pool) for pool, _ in splits)
    asked = budget
    budget = min(budget, pool_size * effective["overlap"])
    if budget < asked:
        log(f"The pool holds {pool_size} items with answers (after the test split): budget lowered to {budget} labels.")
    full = _full_pool_accuracies(data, splits)
    strategies = [strategy] if strategy == BASELINE or not baseline else [strategy, BASELINE]
    token = uuid.uuid4().hex[:8]
    runs: list[RunRecord] = []
    kept: list[str] = []
    for seed, (pool, test) in enumerate(splits):
        for name in strategies:
            run = _one_run(project, data, pool, test, name, seed, token, annotators, budget, step, overrides, noise, keep,
                           kept)
            runs.append(run)
            log(_run_line(run, full[seed]))
    full_pool_accuracy = float(np.mean(full))
    summary = {name: _summary([r for r in runs if r.strategy == name], full_pool_accuracy, budget, step)
               for name in strategies}
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
        "featurizer": project.featurizer or "default", "model_kind": project.model_kind,
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


def _full_pool_accuracies(data: SimulationData, splits: list) -> list[float]:
    """Per seed, the test accuracy of the project's pipeline fitted on the whole pool: the curves' ceiling."""
    return [
        curves.fit_accuracy(
            data.kind, data.X[pool], data.y[pool], data.X[test], data.y[test], model=data.model, tfidf=data.tfidf
        )
        for pool, test in splits
    ]


def _arguments_check(
    strategy: str, annotators: int, budget: int, seeds: int, step: int, test_share: float, noisy_annotators: int,
    noisy_from: int,
) -> None:
    """Refuse arguments a simulation cannot run with, saying why."""
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


def _one_run(
    project: Project, data: SimulationData, pool: np.ndarray, test: np.ndarray, name: str, seed: int, token: str,
    annotators: int, budget: int, step: int, overrides: dict, noise: Noise, keep: bool, kept: list[str],
) -> RunRecord:
    """Run one (strategy, seed) on a scratch copy in a transaction: rolled back, or committed with ``keep``."""
    run = RunRecord(name, seed)
    run_started = time.perf_counter()
    committed = False
    try:
        with transaction.atomic():
            users = scratch_annotators(f"{token}-{name}-{seed}", annotators)
            scratch = scratch_project(
                project, data, pool, strategy=name, seed=seed, token=token, annotators=users,
                overrides=overrides,
            )
            with seeded(seed):
                Driver(scratch, data, pool, test, run, noise).drive(users, budget, step)
            if keep:
                kept.append(scratch.slug)
                committed = True
            else:
                transaction.set_rollback(True)
    finally:
        if not committed:
            artifacts_delete(run.artifacts)
    run.seconds["total"] = time.perf_counter() - run_started
    return run


def _run_line(run: RunRecord, full_pool_accuracy: float) -> str:
    """One line on a finished run for the log: labels, retrains, promotions, final accuracy, time."""
    promoted = sum(r["status"] == TrainingRun.Status.PROMOTED for r in run.retrains)
    last = run.curve[-1] if run.curve else {"labels": 0, "accuracy": float("nan")}
    return (f"{run.strategy} seed {run.seed}: {last['labels']} labels, {len(run.retrains)} retrains ({promoted} "
            f"promoted), accuracy {last['accuracy']:.3f} (full pool {full_pool_accuracy:.3f}), "
            f"{run.seconds['total']:.0f} s")


def _summary(own: list[RunRecord], full_pool_accuracy: float, budget: int, step: int) -> dict:
    """One strategy's figures over its runs: the mean and live curves' summaries, promotions and retrains."""
    def points(run: RunRecord, key: str) -> list[tuple[int, float]]:
        return [(p["labels"], p[key]) for p in run.curve if p["labels"] % step == 0 or p["labels"] == budget]

    summary = curves.summarise([points(r, "accuracy") for r in own], full_pool_accuracy, budget)
    live = curves.summarise([points(r, "live_accuracy") for r in own], full_pool_accuracy, budget)
    summary.update({
        "live_n95": live["n95"], "live_n99": live["n99"], "live_aulc": live["aulc"],
        "live_final_accuracy": live["final_accuracy"], "live_max_drop": live["max_drop"],
        "live_mean_curve": live["mean_curve"],
    })
    promoted_at = [[x["labels"] for x in r.retrains if x["status"] == TrainingRun.Status.PROMOTED] for r in own]
    summary["first_promotion_labels"] = [labels[0] if labels else None for labels in promoted_at]
    summary["median_first_promotion"] = curves.median_or_never(summary["first_promotion_labels"])
    summary["retrains"] = [len(r.retrains) for r in own]
    summary["promotions"] = [sum(x["status"] == TrainingRun.Status.PROMOTED for x in r.retrains) for r in own]
    return summary


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
