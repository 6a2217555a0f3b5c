"""Unreliable stretches of an expert's labels: agreement with the live model far below the other experts' (arrays only).

Every label records what the live model predicted for its item at that moment. Experts who label
the same stream of items (the queue hands every expert the same kind of item) agree with that
model about equally often; an expert who answers at random, or against the task, agrees far less
than the others over the same stretch of time. Each expert's labels are cut, in the order they
were given, into consecutive windows of each length in ``WINDOWS`` (the last one ending at their
latest label); a window is unreliable when, against the other experts' labels given over the same
stretch (widened until it holds ``OTHERS_FACTOR`` times as many of theirs),

- its agreement is at least ``gap`` below theirs (a random answer among two labels agrees half
  as often as a good model; among ten, a tenth), and
- a one-sided Fisher exact test (both counts are samples) that it agrees as often as they do
  rejects at ``alpha``, a fixed level per window: every retrain tests the windows again as labels
  arrive, so a correction for the windows one retrain tests would not hold over a project's life.
  Simulated over 400-label runs checked every 20 labels (four experts, one honest but agreeing 15
  points less than the others), an honest expert was flagged at some point in 3 % of runs on a
  ten-label task and 5 % on a two-label one (a Bonferroni level of 0.001 over each retrain's
  windows: 6 % and 14 %); an expert answering at random from label 150 on was caught by label
  240 (ten labels) or 285 (two labels), in the median run.

Training leaves labels out at two levels (``HOLD_BACK_ALPHA`` and ``ALPHA``). Leaving an honest
expert's window out of one retrain costs that retrain 25 labels. Training on a careless expert's
window costs every model trained on it, and the live model serves those models. So training holds a
window back at the looser level, ``HOLD_BACK_ALPHA``, and says the expert's labels are "in doubt".
Only the strict level calls them unreliable. Each retrain tests again, so a window held back in
doubt returns to training as soon as the expert's later labels clear it. This was simulated over
400-label runs (four experts, a retrain at every 10 % growth, 60 seeds) with an expert answering at
random among ten labels from label 150 on. The most random labels any retrain trained on were 24 at
``ALPHA`` and 15 at ``HOLD_BACK_ALPHA`` (median run). With four honest experts, 3 % of runs held
back an honest window at some point. The honest expert who agrees 15 points less than the others
(above, with a retrain every 20 labels) was held back in 18 % of runs.

A sole expert, or one whose labels carry no prediction (before any model), is never flagged.
Whether an expert is right where the model is wrong does not flag them: an honest expert who
corrects the model on hard items still agrees with it on most items, far above a random answer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Window lengths tested (each adds tests to the Bonferroni count). Shorter windows catch a careless
# expert a few labels sooner on many-label tasks but flag honest experts who differ on two-label
# ones: 15 and 30 together flagged 7 % of such runs, 25 alone 4 % (and none on ten labels).
WINDOWS = (25,)
ALPHA = 1e-5
HOLD_BACK_ALPHA = 1e-3
GAP = 0.25
OTHERS_FACTOR = 3


@dataclass(frozen=True)
class Window:
    """One unreliable stretch: whose, which labels (positions in the input), and the figures that flagged it."""

    annotator: int
    positions: np.ndarray
    agreement: float
    others_agreement: float
    p_value: float

    def as_dict(self) -> dict:
        return {"annotator": self.annotator, "labels": int(len(self.positions)),
                "agreement": round(self.agreement, 3), "others_agreement": round(self.others_agreement, 3),
                "p_value": self.p_value}


def unreliable_windows(
    annotators: np.ndarray, agrees: np.ndarray, *, windows: tuple[int, ...] = WINDOWS, alpha: float = ALPHA,
    gap: float = GAP,
) -> list[Window]:
    """The unreliable windows among labels given in this order by ``annotators`` (agreeing with the model or not)."""
    from scipy.stats import fisher_exact

    annotators, agrees = np.asarray(annotators), np.asarray(agrees, dtype=bool)
    if len(np.unique(annotators)) < 2:
        return []
    candidates = []
    for window in windows:
        for annotator in np.unique(annotators):
            own = np.flatnonzero(annotators == annotator)
            starts = list(range(0, len(own) - window + 1, window))
            if starts and starts[-1] + window < len(own):
                starts.append(len(own) - window)  # the latest labels, overlapping the window before them
            for start in starts:
                positions = own[start:start + window]
                lo, hi = positions[0], positions[-1]
                wanted = OTHERS_FACTOR * window
                others = np.flatnonzero(annotators[lo:hi + 1] != annotator) + lo
                pad = window
                # Widen the stretch evenly until the others have labeled enough (or nothing is left).
                while len(others) < wanted and (lo - pad >= 0 or hi + pad < len(annotators)):
                    span = slice(max(lo - pad, 0), min(hi + pad + 1, len(annotators)))
                    others = np.flatnonzero(annotators[span] != annotator) + span.start
                    pad *= 2
                if len(others) < window:
                    continue
                candidates.append((int(annotator), positions, int(agrees[positions].sum()), int(agrees[others].sum()),
                                   len(others)))
    if not candidates:
        return []
    flagged = []
    for annotator, positions, agreed, others_agreed, others_n in candidates:
        agreement, others_agreement = agreed / len(positions), others_agreed / others_n
        if agreement > others_agreement - gap:
            continue
        table = [[agreed, len(positions) - agreed], [others_agreed, others_n - others_agreed]]
        p_value = float(fisher_exact(table, alternative="less").pvalue)
        if p_value < alpha:
            flagged.append(Window(annotator, positions, agreement, others_agreement, p_value))
    return flagged
