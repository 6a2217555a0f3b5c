"""Exact McNemar tests of two classifiers on the same items: one-sided p-values that the candidate is better."""
# The discordant counts go by name, ``candidate_only_right`` (pairs only the candidate, or an A/B test's
# challenger, got right) and ``champion_only_right``, because two callers once passed them with ``b`` meaning
# opposite things. Test "worse" by passing the counts the other way round.
# scipy is imported in the functions: web processes import this module through the services, and most never test.
from __future__ import annotations


def mcnemar_exact(*, candidate_only_right: int, champion_only_right: int) -> float:
    """Return the one-sided exact McNemar p-value that the candidate is better than the champion.

    Under the null each discordant pair is a fair coin: p = P(Binomial(d, 1/2) ≥ candidate_only_right),
    d the number of discordant pairs; 1.0 when there are none.
    """
    from scipy.stats import binom

    discordant = candidate_only_right + champion_only_right
    if discordant == 0:
        return 1.0
    return float(binom.sf(candidate_only_right - 1, discordant, 0.5))


def mcnemar_mid_p(*, candidate_only_right: int, champion_only_right: int) -> float:
    """Return the one-sided mid-p value of McNemar's test that the candidate is better (Fagerland et al. 2013).

    The exact test's p-value counts the observed split whole; the mid-p counts half of it, which
    takes away most of the exact test's conservatism on a handful of discordant items (5 fixed,
    none broken: 1/64 instead of 1/32) while staying close to the nominal level.
    """
    from scipy.stats import binom

    discordant = candidate_only_right + champion_only_right
    if discordant == 0:
        return 1.0
    return float(binom.sf(candidate_only_right, discordant, 0.5)
                 + 0.5 * binom.pmf(candidate_only_right, discordant, 0.5))
