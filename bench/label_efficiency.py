"""Label efficiency: the simulate command on the digits demo project, margin sampling against random sampling.

The digits project is built as `manage.py demo` builds it (load_digits rendered to PNGs in a
ZIP, imported with import_file, the demo's settings) and its features are computed in this
process. Four simulated experts label in parallel through the real queue with the project's
own retrain trigger and gate; answers come from load_digits' targets. n95 / n99 are the labels
the mean curve (over seeds) needs to reach 95% / 99% of the accuracy of a model trained on the
whole pool, null if it does not within the budget; AULC is the mean curve's mean accuracy.
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

STRATEGY = "margin"
ANNOTATORS = 4


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
    parser.add_argument("--quick", action="store_true", help="1 seed and a budget of 150 labels")
    args = parser.parse_args()
    seeds, budget = (1, 150) if args.quick else (3, 400)
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
        call_command(
            "simulate", "--project", "digits", "--oracle-csv", str(oracle), "--strategy", STRATEGY,
            "--annotators", str(ANNOTATORS), "--budget", str(budget), "--seeds", str(seeds),
            "--out", str(out / "simulation"), stdout=sys.stderr,
        )
        result = json.loads((out / "simulation.json").read_text())
    summary, baseline = result["summary"][STRATEGY], result["summary"][result["baseline"]]
    emit(
        "label_efficiency",
        {
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
        },
    )


if __name__ == "__main__":
    main()
