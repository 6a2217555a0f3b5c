"""Exact McNemar tests and their mid-p (stats.paired) on hand-computed binomial sums."""
import pytest

from stats.paired import mcnemar_exact, mcnemar_mid_p


def test_exact_mcnemar_is_a_one_sided_binomial_on_discordant_pairs():
    assert mcnemar_exact(candidate_only_right=0, champion_only_right=0) == 1.0
    assert mcnemar_exact(candidate_only_right=10, champion_only_right=0) == pytest.approx(0.5**10)
    assert mcnemar_exact(candidate_only_right=5, champion_only_right=5) > 0.5
    assert mcnemar_exact(candidate_only_right=0, champion_only_right=10) == 1.0
    # 8 fixed, 2 broken: P(Binomial(10, 1/2) ≥ 8) = (45 + 10 + 1)/1024.
    assert mcnemar_exact(candidate_only_right=8, champion_only_right=2) == pytest.approx(56 / 1024)


def test_mcnemar_mid_p_counts_half_of_the_observed_split():
    assert mcnemar_mid_p(candidate_only_right=0, champion_only_right=0) == 1.0
    # 5 fixed, none broken: the exact test says 1/32, the mid-p 1/64.
    assert mcnemar_mid_p(candidate_only_right=5, champion_only_right=0) == pytest.approx(1 / 64)
    # 8 fixed, 2 broken: (10 + 1)/1024 beyond the split, half of 45/1024 at it.
    assert mcnemar_mid_p(candidate_only_right=8, champion_only_right=2) == pytest.approx((11 + 22.5) / 1024)
    assert mcnemar_mid_p(candidate_only_right=8, champion_only_right=2) < mcnemar_exact(
        candidate_only_right=8, champion_only_right=2
    )