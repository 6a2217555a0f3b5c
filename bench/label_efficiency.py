"""Label efficiency: the simulate command on the digits demo project, margin sampling against random sampling.

The digits project is built as `manage.py demo` builds it (load_digits rendered to PNGs in a
ZIP, imported with import_jobs_submit, the demo's settings) and its features are computed in this
process. Four simulated experts label in parallel through the real queue with the project's
own retrain trigger and gate; answers come from load_digits' targets. n95 / n99 are the labels
the mean curve (over seeds) needs to reach 95% / 99% of the accuracy of a model trained on the
whole pool, null if it does not within the budget; AULC is the mean curve's mean accuracy.
live_n95 / live_n99 are the same for the model live at each moment (before the first one, the
accuracy of answering the most frequent label so far). A second run, margin sampling alone,
has one of the four experts answer at random from label 150 on (75 with --quick):
noisy_live_max_drop is the live model's largest fall below its best so far there. The goals
are printed beside the figures (stderr) and met or not in goals_met; nothing is tuned to them.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, bench_environment, emit  # noqa: E402
from bench.run_all import GOALS  # noqa: E402

STRATEGY = "margin"
ANNOTATORS = 4
NOISY_ANNOTATORS = 1
NOISY_FROM = 150


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


def build_digits() -> None:
    """Create the demo projects and compute the digits' features synchronously, as the feature tasks would."""
    from django.core.management import call_command

    from annotations.models import ImportJob
    from learner.services.features import features_compute_chunk, features_plan_start

    call_command("demo", stdout=io.StringIO())
    for job in ImportJob.objects.filter(project__slug="digits"):
        for chunk in features_plan_start(job.project_id, job.pk):
            features_compute_chunk(job.project_id, chunk)


def write_oracle(path: Path) -> None:
    """The held-back answers: each digit's true class, keyed as the demo names its image in the ZIP."""
    from sklearn.datasets import load_digits

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "label"])
        for index, target in enumerate(load_digits().target):
            writer.writerow([f"digits/digit-{index:04d}.png", str(target)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="1 seed and a budget of 150 labels; the noisy expert from label 75")
    args = parser.parse_args()
    seeds, budget = (1, 150) if args.quick else (3, 400)
    noisy_from = NOISY_FROM // 2 if args.quick else NOISY_FROM
    out = RESULTS / "label_efficiency"
    out.mkdir(parents=True, exist_ok=True)

    with bench_environment("label_efficiency"), tempfile.TemporaryDirectory() as tmp:
        import django

        django.setup()
        from django.core.management import call_command

        from annotations.models import Project

        build_digits()
        oracle = Path(tmp) / "digits-oracle.csv"
        write_oracle(oracle)
        project = Project.objects.get(slug="digits")
        common = [
            "simulate", "--project", "digits", "--oracle-csv", str(oracle), "--strategy", STRATEGY,
            "--annotators", str(ANNOTATORS), "--budget", str(budget), "--seeds", str(seeds),
        ]
        call_command(*common, "--out", str(out / "simulation"), stdout=sys.stderr)
        result = json.loads((out / "simulation.json").read_text())
        call_command(
            *common, "--no-baseline", "--noisy-annotators", str(NOISY_ANNOTATORS), "--noisy-from", str(noisy_from),
            "--out", str(out / "noisy"), stdout=sys.stderr,
        )
        noisy = json.loads((out / "noisy.json").read_text())
    summary, baseline = result["summary"][STRATEGY], result["summary"][result["baseline"]]
    noisy_summary = noisy["summary"][STRATEGY]
    figures = {
        "dataset": "digits",
        "strategy": STRATEGY,
        "annotators": ANNOTATORS,
        "seeds": seeds,
        "budget": result["budget"],
        "retrain_every_n_labels": project.retrain_every_n_labels,
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
    checked = goals(figures)
    print(f"\n{'figure':<24}{'value':>10}  goal", file=sys.stderr)
    for name, (goal, met) in checked.items():
        print(f"{name:<24}{str(figures[name]):>10}  {goal}  {'met' if met else 'NOT met'}", file=sys.stderr)
    emit("label_efficiency", {**figures, "goals_met": {name: met for name, (_, met) in checked.items()}})


if __name__ == "__main__":
    main()
