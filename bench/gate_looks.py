"""Repeated looks at the promotion gate: how often equal-quality candidates go live over a run of retrains.

The gate decides after every retrain, on an audit set that grows by a few items between looks
and overlaps with every earlier one. This simulates runs of looks with learner.ml.gate's own
decision functions (arrays only: no database, no worker) and prints, per comparison:

- ``better`` and ``first_model``: the share of runs in which an equal-quality candidate was
  promoted at some look, with the gate's α spending (goal ≤ α) and, for contrast, with every look
  tested at the full α;
- ``not_worse``: the share of single looks at which a candidate goes live when it is equal to
  the champion (promptness) and when it is 5 or 10 points worse (what the margin, the test and
  the class vetoes let through on a small audit set).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit  # noqa: E402
from learner.ml.gate import simulate_looks  # noqa: E402

ALPHA = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 runs per figure instead of 2,000")
    args = parser.parse_args()
    runs = 200 if args.quick else 2000
    common = {"alpha": ALPHA, "looks": 20, "audit_start": 10, "audit_per_look": 3, "runs": runs}
    figures: dict = {"alpha": ALPHA, "looks": common["looks"], "runs": runs,
                     "audit_items": f"{common['audit_start']} growing by {common['audit_per_look']} per look"}
    for comparison, accuracy in (("better", 0.85), ("first_model", 0.3)):
        spent = simulate_looks(comparison=comparison, accuracy=accuracy, seed=1, **common)
        unspent = simulate_looks(comparison=comparison, accuracy=accuracy, seed=1, spend=False, **common)
        figures[f"{comparison}_false_promotion"] = spent["promoted_any"]
        figures[f"{comparison}_false_promotion_without_spending"] = unspent["promoted_any"]
    for name, candidate in (("equal", 0.85), ("5pt_worse", 0.80), ("10pt_worse", 0.75)):
        result = simulate_looks(comparison="not_worse", accuracy=0.85, candidate_accuracy=candidate, seed=2, **common)
        figures[f"not_worse_promoted_per_look_{name}"] = round(result["promoted_per_look"], 4)
    emit("gate_looks", figures)


if __name__ == "__main__":
    main()
