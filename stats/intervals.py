"""Wilson score intervals of a proportion; no trials gives the whole range ``(0.0, 1.0)``, never None or an error."""
from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Return the two-sided Wilson score interval of ``successes`` in ``n`` trials; ``(0.0, 1.0)`` without trials."""
    # No trials is no information: the whole range is the limit of the interval as n → 0.
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n the interval reaches the bound exactly (the formula leaves a rounding error there).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high
