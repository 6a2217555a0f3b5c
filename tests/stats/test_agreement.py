"""Agreement statistics (stats.agreement) on hand-computed examples and arrays alone: kappa, alpha, bootstrap."""
import numpy as np
import pytest

from stats import agreement


def _table(both_yes: int, a_only: int, b_only: int, both_no: int) -> tuple[list[int], list[int]]:
    a = [1] * both_yes + [1] * a_only + [0] * b_only + [0] * both_no
    b = [1] * both_yes + [0] * a_only + [1] * b_only + [0] * both_no
    return a, b


def test_cohen_kappa_of_a_two_by_two_table():
    # 50 items: 20 both yes, 10 only A yes, 5 only B yes, 15 both no.
    # p_o = 35/50 = 0.7; A says yes 0.6, B 0.5 → p_e = 0.6·0.5 + 0.4·0.5 = 0.5; κ = 0.2/0.5 = 0.4.
    a, b = _table(20, 10, 5, 15)
    assert agreement.cohen_kappa(a, b) == pytest.approx(0.4)


def test_cohen_kappa_with_label_ids_and_three_classes():
    # Labels are database ids, not 0..k-1. 9 items, 7 agree: p_o = 7/9.
    # A: 11×3, 12×3, 13×3; B: 11×3, 12×5, 13×1 → p_e = (9 + 15 + 3)/81 = 1/3; κ = (7/9 − 1/3)/(2/3) = 2/3.
    a = [11, 11, 11, 12, 12, 12, 13, 13, 13]
    b = [11, 11, 11, 12, 12, 12, 12, 12, 13]
    assert agreement.cohen_kappa(a, b) == pytest.approx(2 / 3)


def test_cohen_kappa_is_one_for_perfect_agreement_and_undefined_for_a_single_label():
    assert agreement.cohen_kappa([1, 2, 1, 3], [1, 2, 1, 3]) == pytest.approx(1.0)
    assert agreement.cohen_kappa([5, 5, 5], [5, 5, 5]) is None
    assert agreement.cohen_kappa([], []) is None


def test_krippendorff_alpha_by_hand_and_on_krippendorffs_example():
    # Two raters, items (1,1), (1,2), (2,2), (2,2): coincidences o11 = 2, o12 = o21 = 1, o22 = 4;
    # n1 = 3, n2 = 5, n = 8 → D_o = 2/8, D_e = 2·3·5/(8·7) → α = 1 − (1/4)/(30/56) = 8/15.
    data = np.array([[1, 1, 2, 2], [1, 2, 2, 2]], dtype=float)
    assert agreement.krippendorff_alpha(data) == pytest.approx(8 / 15)
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: α = 0.743.
    nan = np.nan
    example = np.array([
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ])
    assert agreement.krippendorff_alpha(example) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_is_undefined_without_pairs_or_variation():
    assert agreement.krippendorff_alpha(np.array([[1, np.nan], [np.nan, 2]])) is None
    assert agreement.krippendorff_alpha(np.array([[3, 3], [3, 3]], dtype=float)) is None


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    a, b = _table(20, 10, 5, 15)
    low, high = agreement.cohen_kappa_interval(a, b)
    assert low < 0.4 < high
    assert (low, high) == agreement.cohen_kappa_interval(a, b)
    assert agreement.cohen_kappa_interval([1], [1]) is None


def test_the_bootstrap_alpha_from_item_statistics_equals_krippendorffs_on_a_resample():
    rng = np.random.default_rng(5)
    data = rng.integers(1, 4, size=(4, 60)).astype(float)
    data[rng.random(data.shape) < 0.3] = np.nan
    data = data[:, np.sum(~np.isnan(data), axis=0) >= 2]
    statistics = agreement._alpha_statistics(data)
    assert agreement._alpha_from_sums(statistics.sum(axis=0)[None])[0] == pytest.approx(
        agreement.krippendorff_alpha(data)
    )
    draw = rng.integers(0, data.shape[1], size=data.shape[1])
    weights = np.bincount(draw, minlength=data.shape[1])
    assert agreement._alpha_from_sums((weights @ statistics)[None])[0] == pytest.approx(
        agreement.krippendorff_alpha(data[:, draw])
    )
    low, high = agreement.krippendorff_alpha_interval(data)
    assert low <= agreement.krippendorff_alpha(data) <= high
