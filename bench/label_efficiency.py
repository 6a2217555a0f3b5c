"""Label efficiency: the simulate command on a labeled data set, margin sampling against random sampling.

The data set (``--dataset``, default digits; bench/datasets.py says what each is and why it is a
fair test) is imported as a user's upload would be, through the import service (digits as
`manage.py demo` builds them), and its features are computed in this process with the project's
featurizer (``--featurizer``, default the kind's) for its model (``--model``, default logistic).
Four simulated experts label in parallel through the real queue with the project's own retrain
trigger and gate; answers come from the items' known classes. n95 / n99 are the labels the mean
curve (over seeds) needs to reach 95% / 99% of the accuracy of a model trained on the whole pool,
null if it does not within the budget; AULC is the mean curve's mean accuracy. live_n95 / live_n99
are the same for the model live at each moment (before the first one, the accuracy of answering
the most frequent label so far). A second run, margin sampling alone, has one of the four experts
answer at random from label 150 on (75 with --quick): noisy_live_max_drop is the live model's
largest fall below its best so far there. On digits the goals of issue 16 are printed beside the
figures (stderr) and met or not in goals_met; nothing is tuned to them. Only the default run
(digits, default featurizer, logistic) writes bench/results/label_efficiency.json.

``--grid`` runs margin sampling alone (no random baseline, no noisy expert) for every built-in
featurizer of the data set's kind with every model that takes its features (or those of
``--featurizer`` / ``--model``), and prints one JSON object with a row per combination, also
written to bench/results/label_efficiency/grid-NAME.json (grid-NAME-FEATURIZER-MODEL.json for a part).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, bench_environment, emit  # noqa: E402
from bench.datasets import DATASETS, DIGITS, combinations, dataset_build, features_compute, oracle_write  # noqa: E402
from bench.run_all import GOALS  # noqa: E402

STRATEGY = "margin"
ANNOTATORS = 4
NOISY_ANNOTATORS = 1
NOISY_FROM = 150
DEFAULT_MODEL = "logistic"


def goals(figures: dict) -> dict[str, tuple[str, bool]]:
    """Each goal of issue 16 on digits (as run_all's table states it) and whether the figures meet it.

    A figure never reached (null) does not meet its goal.
    """
    full = figures["full_pool_accuracy"]

    def at_most(name: str, bound: float) -> bool:
        return figures[name] is not None and figures[name] <= bound

    met = {
        "n99": at_most("n99", 220),
        "live_n99": at_most("live_n99", 260),
        "live_final_accuracy": figures["live_final_accuracy"] is not None
        and figures["live_final_accuracy"] >= 0.99 * full,
        "median_first_promotion": at_most("median_first_promotion", 40),
        "noisy_live_max_drop": at_most("noisy_live_max_drop", 0.02),
    }
    return {name: (GOALS["label_efficiency"][name], ok) for name, ok in met.items()}


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line: the featurizer must serve the data set's kind, the model take its features."""
    from learner.ml.registry import DEFAULT as DEFAULT_FEATURIZER
    from learner.ml.training import MODELS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default=DIGITS, help="The labeled set (default digits).")
    parser.add_argument("--featurizer", default="", metavar="KEY",
                        help="A built-in featurizer key of the set's kind (default: the kind's default; with --grid: "
                             "every one).")
    parser.add_argument("--model", choices=MODELS,
                        help=f"The model each retrain fits (default {DEFAULT_MODEL}; with --grid: every one).")
    parser.add_argument("--grid", action="store_true",
                        help="Every built-in featurizer of the set's kind × every model that takes its features "
                             "(or those of --featurizer, --model), margin sampling alone.")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed and a budget of 150 labels; the noisy expert from label 75")
    parser.add_argument("--cheap-cycle-seconds", type=int, metavar="S",
                        help="The deployment's CHEAP_CYCLE_SECONDS (default: its own, 10): a retrain after every "
                             "label while a turn of the loop takes at most S seconds; 0: every "
                             "retrain_every_n_labels labels, whatever the model's speed.")
    parser.add_argument("--seeds", type=int, help="Runs per strategy (default 3, 1 with --quick).")
    parser.add_argument("--budget", type=int, help="Labels per run (default 400, 150 with --quick).")
    args = parser.parse_args(argv)
    kind = DATASETS[args.dataset].kind
    allowed = combinations(kind)
    keys = sorted({key for key, _ in allowed})
    if args.featurizer and args.featurizer not in keys:
        parser.error(f"--featurizer {args.featurizer!r} is no built-in of {kind} sets; choose one of {', '.join(keys)}.")
    model, featurizer = args.model or DEFAULT_MODEL, args.featurizer or DEFAULT_FEATURIZER[kind]
    if args.grid:
        args.combinations = [(key, name) for key, name in allowed
                             if args.featurizer in ("", key) and args.model in (None, name)]
    else:
        args.combinations = [(args.featurizer, model)] if (featurizer, model) in allowed else []
    if not args.combinations:
        parser.error(f"--model {model} does not take the sparse features of {featurizer}.")
    for name in ("seeds", "budget"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1.")
    if args.cheap_cycle_seconds is not None and not 0 <= args.cheap_cycle_seconds <= 3600:
        parser.error("--cheap-cycle-seconds must lie between 0 and 3600.")
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.budget = args.budget or (150 if args.quick else 400)
    return args


def simulate(oracle: Path, out: Path, args: argparse.Namespace, *extra: str) -> dict:
    """Run manage.py simulate on the data set's project with margin sampling; its JSON result."""
    from django.core.management import call_command

    call_command(
        "simulate", "--project", args.dataset, "--oracle-csv", str(oracle), "--strategy", STRATEGY,
        "--annotators", str(ANNOTATORS), "--budget", str(args.budget), "--seeds", str(args.seeds),
        *extra, "--out", str(out), stdout=sys.stderr,
    )
    return json.loads(out.with_name(out.name + ".json").read_text())


def single(args: argparse.Namespace, project_id: int, oracle: Path) -> None:
    """One featurizer and model: margin against random, then the run with a noisy expert; the figures emitted."""
    from django.conf import settings

    from annotations.models import Project

    featurizer, model = args.combinations[0]
    default = args.dataset == DIGITS and not featurizer and model == DEFAULT_MODEL
    out = RESULTS / "label_efficiency"
    if not default:
        out = out / f"{args.dataset}-{featurizer or 'default'}-{model}"
    out.mkdir(parents=True, exist_ok=True)
    noisy_from = NOISY_FROM // 2 if args.quick else NOISY_FROM
    features_compute(project_id, featurizer, model)
    result = simulate(oracle, out / "simulation", args)
    noisy = simulate(oracle, out / "noisy", args, "--no-baseline", "--noisy-annotators", str(NOISY_ANNOTATORS),
                     "--noisy-from", str(noisy_from))
    project = Project.objects.get(pk=project_id)
    summary, baseline = result["summary"][STRATEGY], result["summary"][result["baseline"]]
    noisy_summary = noisy["summary"][STRATEGY]
    figures = {
        "dataset": args.dataset,
        "featurizer": featurizer or "default",
        "model": model,
        "strategy": STRATEGY,
        "annotators": ANNOTATORS,
        "seeds": args.seeds,
        "budget": result["budget"],
        "retrain_every_n_labels": project.retrain_every_n_labels,
        "cheap_cycle_seconds": settings.LABELHUB_CHEAP_CYCLE_SECONDS,
        "gate_min_audit": project.gate_min_audit,
        "gate_min_audit_first": project.gate_min_audit_first,
        "audit_share": project.audit_share,
        "full_pool_accuracy": result["full_pool_accuracy"],
        "n95": summary["n95"],
        "n99": summary["n99"],
        "random_n95": baseline["n95"],
        "random_n99": baseline["n99"],
        "aulc": round(summary["aulc"], 4),
        "random_aulc": round(baseline["aulc"], 4),
        "first_promotion_labels": summary["first_promotion_labels"],
        "promotions": summary["promotions"],
        "seconds": result["seconds"],
        "live_n95": summary["live_n95"],
        "live_n99": summary["live_n99"],
        "live_final_accuracy": rounded(summary["live_final_accuracy"]),
        "median_first_promotion": summary["median_first_promotion"],
        "noisy_annotators": NOISY_ANNOTATORS,
        "noisy_from": noisy_from,
        "noisy_live_max_drop": rounded(noisy_summary["live_max_drop"]),
        "noisy_live_final_accuracy": rounded(noisy_summary["live_final_accuracy"]),
        "noisy_promotions": noisy_summary["promotions"],
        "noisy_seconds": noisy["seconds"],
    }
    if args.dataset != DIGITS:
        emit("label_efficiency", figures, save=default)
        return
    checked = goals(figures)
    print(f"\n{'figure':<24}{'value':>10}  goal", file=sys.stderr)
    for name, (goal, met) in checked.items():
        print(f"{name:<24}{str(figures[name]):>10}  {goal}  {'met' if met else 'NOT met'}", file=sys.stderr)
    emit("label_efficiency", {**figures, "goals_met": {name: met for name, (_, met) in checked.items()}}, save=default)


def grid(args: argparse.Namespace, project_id: int, oracle: Path, tmp: Path) -> None:
    """Margin sampling alone for every combination; one JSON object with a row per combination."""
    from django.conf import settings

    rows = []
    for featurizer, model in args.combinations:
        started = time.perf_counter()
        features_compute(project_id, featurizer, model)
        features_seconds = time.perf_counter() - started
        result = simulate(oracle, tmp / f"{featurizer}-{model}", args, "--no-baseline")
        summary = result["summary"][STRATEGY]
        rows.append({
            "featurizer": featurizer, "model": model,
            "n95": summary["n95"], "n99": summary["n99"], "aulc": round(summary["aulc"], 4),
            "full_pool_accuracy": result["full_pool_accuracy"],
            "final_accuracy": rounded(summary["final_accuracy"]),
            "live_final_accuracy": rounded(summary["live_final_accuracy"]),
            "median_first_promotion": summary["median_first_promotion"],
            "features_seconds": round(features_seconds, 1), "seconds": result["seconds"],
            "mean_curve": {key: summary["mean_curve"][key] for key in ("labels", "mean")},
        })
        print(f"{featurizer} × {model}: " + json.dumps({k: v for k, v in rows[-1].items() if k != "mean_curve"}),
              file=sys.stderr, flush=True)
    figures = {
        "dataset": args.dataset, "kind": DATASETS[args.dataset].kind, "items": result["items"],
        "strategy": STRATEGY, "annotators": ANNOTATORS, "seeds": args.seeds, "budget": result["budget"],
        "settings": result["settings"], "cheap_cycle_seconds": settings.LABELHUB_CHEAP_CYCLE_SECONDS, "rows": rows,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join(["python", "bench/label_efficiency.py", *sys.argv[1:]]),
    }
    part = "".join(f"-{value}" for value in (args.featurizer, args.model) if value)
    path = RESULTS / "label_efficiency" / f"grid-{args.dataset}{part}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures))


def main() -> None:
    args = arguments()
    if args.cheap_cycle_seconds is not None:
        os.environ["CHEAP_CYCLE_SECONDS"] = str(args.cheap_cycle_seconds)  # read by the settings at setup
    with bench_environment("label_efficiency"), tempfile.TemporaryDirectory() as tmp:
        import django

        django.setup()
        project_id, answers = dataset_build(args.dataset)
        oracle = Path(tmp) / "oracle.csv"
        oracle_write(oracle, answers)
        if args.grid:
            grid(args, project_id, oracle, Path(tmp))
        else:
            single(args, project_id, oracle)


if __name__ == "__main__":
    main()
