"""The statistics of A/B tests on arrays alone: the two-proportion test, power, the sequential rule under the null."""
import numpy as np

from learner.ml import abtest, evaluation


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


def test_the_experiment_and_the_gate_read_the_discordant_pairs_the_same_way():
    # 6 pairs only the challenger (candidate) got right, 1 only the champion: both call that evidence for it.
    y = np.zeros(20, dtype=int)
    champion = np.array([1] * 6 + [0] * 14)
    candidate = np.array([0] * 19 + [1])
    gate_test = evaluation.mcnemar_on_predictions(y, champion, candidate)
    look = abtest.paired_look(6, 1, 20, alpha_look=0.05, min_gain=0.0)
    assert (gate_test.only_candidate_right, gate_test.only_champion_right) == (6, 1)
    assert gate_test.p_value == look.p_value < 0.07 and gate_test.gain == look.gain == 0.25
