"""The statistics of A/B tests on arrays alone: tests, intervals, power, and the sequential rule under the null."""
import numpy as np
import pytest

from learner.ml import abtest


def test_exact_mcnemar_is_a_one_sided_binomial_on_discordant_pairs():
    assert abtest.mcnemar_exact(0, 0) == 1.0
    assert abtest.mcnemar_exact(10, 0) == pytest.approx(0.5**10)
    assert abtest.mcnemar_exact(5, 5) > 0.5
    assert abtest.mcnemar_exact(0, 10) == 1.0


def test_wilson_interval_stays_inside_zero_one_and_covers_the_estimate():
    low, high = abtest.wilson(0, 10)
    assert low == 0.0 and 0.2 < high < 0.35
    low, high = abtest.wilson(80, 100)
    assert low < 0.8 < high and high - low < 0.17


def test_two_proportions_finds_a_real_gain_and_not_a_loss():
    assert abtest.two_proportions(800, 1000, 880, 1000) < 0.001
    assert abtest.two_proportions(880, 1000, 800, 1000) > 0.99


def test_power_calculation_grows_with_smaller_gains_and_more_looks():
    base = {"test": abtest.PAIRED, "alpha": 0.05, "power": 0.8, "discordance": 0.2}
    assert abtest.sample_size(looks=1, min_gain=0.02, **base)["n"] > abtest.sample_size(looks=1, min_gain=0.05, **base)["n"]
    assert abtest.sample_size(looks=4, min_gain=0.05, **base)["n"] > abtest.sample_size(looks=1, min_gain=0.05, **base)["n"]
    split = abtest.sample_size(test=abtest.TWO_PROPORTIONS, alpha=0.05, looks=1, power=0.8, min_gain=0.05)
    assert 1000 < split["n"] < 3000  # ~1,100 per arm for 0.80 → 0.85


def _paired(rng, n, p_champion, p_challenger, rho=0.5):
    """Correlated paired outcomes: with probability rho both arms share one draw."""
    shared = rng.random(n)
    own_a, own_b = rng.random(n), rng.random(n)
    same = rng.random(n) < rho
    champion = np.where(same, shared, own_a) < p_champion
    challenger = np.where(same, shared, own_b) < p_challenger
    return champion, challenger


def test_false_promotions_under_the_null_stay_within_alpha_over_many_experiments():
    rng = np.random.default_rng(2026)
    alpha, looks, min_gain = 0.05, 4, 0.0
    min_sample = abtest.sample_size(test=abtest.PAIRED, alpha=alpha, looks=looks, power=0.8, min_gain=0.03)["n"]
    promoted = 0
    for _ in range(1000):
        champion, challenger = _paired(rng, min_sample, 0.8, 0.8)
        promoted += abtest.simulate_paired(champion, challenger, alpha=alpha, looks=looks,
                                           min_sample=min_sample, min_gain=min_gain)
    assert promoted / 1000 <= alpha + 0.02


def test_a_truly_better_challenger_is_usually_promoted_within_the_planned_sample():
    rng = np.random.default_rng(7)
    alpha, looks = 0.05, 4
    min_sample = abtest.sample_size(test=abtest.PAIRED, alpha=alpha, looks=looks, power=0.8, min_gain=0.05,
                                    discordance=0.2)["n"]
    promoted = sum(
        abtest.simulate_paired(*_paired(rng, min_sample, 0.75, 0.85), alpha=alpha, looks=looks,
                               min_sample=min_sample, min_gain=0.0)
        for _ in range(200)
    )
    assert promoted / 200 >= 0.8
