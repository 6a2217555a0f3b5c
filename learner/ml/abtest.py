"""Statistics of A/B tests: power, the two-proportion test and the look schedule (McNemar and Wilson: stats/)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stats.paired import mcnemar_exact

# scipy.stats is imported in the functions that use it: web processes import this module through
# the services, and most never compute a test.

PAIRED = "mcnemar"
TWO_PROPORTIONS = "two_proportions"


def two_proportions(correct_a: int, n_a: int, correct_b: int, n_b: int) -> float:
    """One-sided pooled z-test p-value that arm b (challenger) is more accurate than arm a (champion)."""
    from scipy import stats

    if n_a == 0 or n_b == 0:
        return 1.0
    pooled = (correct_a + correct_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 1.0
    return float(stats.norm.sf((correct_b / n_b - correct_a / n_a) / se))


def look_alpha(alpha: float, looks: int) -> float:
    """The α each planned look spends (Bonferroni): K looks at α/K never exceed α in total."""
    return alpha / looks


def look_schedule(min_sample: int, looks: int) -> list[int]:
    """The sample sizes at which the K planned looks happen; the last is the minimum sample."""
    return [math.ceil(min_sample * k / looks) for k in range(1, looks + 1)]


def sample_size(
    *, test: str, alpha: float, looks: int, power: float, min_gain: float,
    baseline_accuracy: float = 0.8, discordance: float = 0.2, share: float = 0.5,
) -> dict:
    """Outcomes needed to detect ``min_gain`` with ``power`` at the per-look α, one-sided.

    Paired (McNemar, normal approximation of Connor 1987): n = (z_a·√ψ + z_b·√(ψ − δ²))² / δ², ψ the
    discordant share. Split: Fleiss' two-proportion size per arm, scaled to the total over both arms.
    """
    from scipy import stats

    delta = max(min_gain, 1e-3)
    z_a = stats.norm.isf(look_alpha(alpha, looks))
    z_b = stats.norm.ppf(power)
    if test == PAIRED:
        psi = max(discordance, delta + 1e-6)
        n = (z_a * math.sqrt(psi) + z_b * math.sqrt(psi - delta * delta)) ** 2 / (delta * delta)
        total = math.ceil(n)
        detail = {"discordance": psi}
    else:
        p1 = min(max(baseline_accuracy, 0.01), 0.99 - delta)
        p2 = p1 + delta
        q = min(max(share, 0.01), 0.99)
        # Unequal arms: n_b = q·N, n_a = (1 − q)·N.
        pbar = (1 - q) * p1 + q * p2
        num = z_a * math.sqrt(pbar * (1 - pbar) * (1 / q + 1 / (1 - q))) + z_b * math.sqrt(
            p1 * (1 - p1) / (1 - q) + p2 * (1 - p2) / q
        )
        total = math.ceil(num * num / (delta * delta))
        detail = {"baseline_accuracy": p1, "share": q}
    return {"n": total, "alpha_per_look": look_alpha(alpha, looks), "power": power, "min_gain": min_gain, **detail}


@dataclass(frozen=True)
class Look:
    """What one look at the data found."""

    n: int
    gain: float
    p_value: float
    alpha: float
    promote: bool


def paired_look(b: int, c: int, n: int, *, alpha_look: float, min_gain: float) -> Look:
    """Look at paired outcomes: promote if McNemar rejects at this look's α and the gain reaches min_gain.

    ``b``: pairs only the challenger got right; ``c``: pairs only the champion got right (the
    experiment's stored figures keep these names).
    """
    gain = (b - c) / n if n else 0.0
    p = mcnemar_exact(candidate_only_right=b, champion_only_right=c)
    return Look(n, gain, p, alpha_look, p <= alpha_look and gain >= min_gain)


def split_look(correct_a: int, n_a: int, correct_b: int, n_b: int, *, alpha_look: float, min_gain: float) -> Look:
    """Look at split outcomes: promote if the two-proportion test rejects and the gain reaches min_gain."""
    gain = (correct_b / n_b if n_b else 0.0) - (correct_a / n_a if n_a else 0.0)
    p = two_proportions(correct_a, n_a, correct_b, n_b)
    return Look(n_a + n_b, gain, p, alpha_look, p <= alpha_look and gain >= min_gain)


def simulate_paired(
    champion_correct: np.ndarray, challenger_correct: np.ndarray, *, alpha: float, looks: int,
    min_sample: int, min_gain: float,
) -> bool:
    """Run the sequential rule over one stream of paired outcomes; True if it would promote."""
    alpha_look = look_alpha(alpha, looks)
    b_cum = np.cumsum(challenger_correct & ~champion_correct)
    c_cum = np.cumsum(champion_correct & ~challenger_correct)
    for n in look_schedule(min_sample, looks):
        if paired_look(int(b_cum[n - 1]), int(c_cum[n - 1]), n, alpha_look=alpha_look, min_gain=min_gain).promote:
            return True
    return False
