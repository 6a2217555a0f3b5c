"""Wilson intervals (stats.intervals) by hand, at the bounds, and against scipy."""
import math

import pytest

from stats.intervals import wilson_interval


def test_wilson_interval_by_hand():
    # 8 of 10: centre (0.8 + 1.96²/20)/(1 + 1.96²/10), half-width 1.96·√(0.016 + 1.96²/400)/(1 + 1.96²/10).
    low, high = wilson_interval(8, 10)
    z = 1.959963984540054
    denominator = 1 + z * z / 10
    centre = (0.8 + z * z / 20) / denominator
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / denominator
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_wilson_interval_without_trials_is_the_whole_range_and_reaches_the_bounds_exactly():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0.2 < high < 0.35
    low, high = wilson_interval(5, 5)
    assert high == 1.0 and 0.5 < low < 0.6
    low, high = wilson_interval(80, 100)
    assert low < 0.8 < high and high - low < 0.17


def test_wilson_interval_matches_scipy_at_other_confidences():
    from scipy.stats import binomtest

    for successes, n, confidence in [(3, 7, 0.9), (17, 40, 0.8), (99, 100, 0.99), (1, 500, 0.95)]:
        expected = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
        assert wilson_interval(successes, n, confidence=confidence) == pytest.approx(
            (expected.low, expected.high), abs=1e-12
        )