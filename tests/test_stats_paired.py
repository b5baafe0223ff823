"""Paired / nested statistics for `hicra study` v2: nested bootstrap, sign-flip test, Holm, power."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from scipy import stats as sps

from hicra.stats import (
    bootstrap_ci,
    holm_adjust,
    min_detectable_difference,
    nested_bootstrap_ci,
    paired_signflip_pvalue,
    pairs_needed,
)


@pytest.mark.parametrize("between", [3.0, 0.0])
def test_nested_bootstrap_se_matches_the_two_stage_variance_formula(between):
    """Balanced design, G groups of k: a two-stage resample's mean has variance
    (1/G) * [mean_g (m_g - m)^2 + mean_g s_g^2 / k] (s_g^2 with ddof 0): computed here independently. With no
    spread between groups the within-group term is all of it, so a resample that reused one within-group draw for
    every copy of a group (the bug fixed on 2026-12-06: variance x (2 - 1/G) on that term) fails by ~30%."""
    rng = np.random.default_rng(3)
    G, k = 4, 5
    groups = np.repeat(np.arange(G), k)
    values = rng.normal(0, 1, G * k) + np.repeat(rng.normal(0, between, G), k)
    mean, lo, hi, se = nested_bootstrap_ci(values, groups, n_boot=40_000, seed=1)
    m_g = values.reshape(G, k).mean(axis=1)
    s2_g = values.reshape(G, k).var(axis=1)
    want = np.sqrt((np.mean((m_g - m_g.mean()) ** 2) + np.mean(s2_g) / k) / G)
    assert mean == pytest.approx(values.mean())
    assert se == pytest.approx(want, rel=0.03)
    if between == 0.0:
        return
    assert lo < mean < hi
    # the between-group spread widens the interval far beyond the plain bootstrap's over all 20 values
    _, plo, phi = bootstrap_ci(values, seed=1)
    assert hi - lo > 1.5 * (phi - plo)


def test_nested_bootstrap_with_one_group_is_the_plain_bootstrap():
    x = np.random.default_rng(0).normal(size=12)
    _, lo, hi, _ = nested_bootstrap_ci(x, [7] * 12, n_boot=20_000, seed=2)
    _, plo, phi = bootstrap_ci(x, n_boot=20_000, seed=5)
    assert lo == pytest.approx(plo, abs=0.05) and hi == pytest.approx(phi, abs=0.05)
    with pytest.raises(ValueError, match="group labels"):
        nested_bootstrap_ci(x, [0] * 11)


@pytest.mark.parametrize("n", [5, 9])
def test_signflip_exact_matches_scipy(n):
    d = np.random.default_rng(n).normal(0.3, 1, n)
    ref = sps.permutation_test((d,), np.mean, permutation_type="samples", alternative="two-sided",
                               n_resamples=np.inf)
    assert paired_signflip_pvalue(d) == pytest.approx(ref.pvalue)


def test_signflip_is_exact_for_sixteen_pairs():
    """The main study's 16 pairs get the exact test (all 65,536 sign assignments), as scipy enumerates them."""
    d = np.random.default_rng(7).normal(0.2, 1, 16)
    ref = sps.permutation_test((d,), np.mean, permutation_type="samples", alternative="two-sided",
                               n_resamples=np.inf)
    assert paired_signflip_pvalue(d) == pytest.approx(ref.pvalue, abs=1e-12)
    assert paired_signflip_pvalue(d, seed=1) == paired_signflip_pvalue(d, seed=2)  # no Monte Carlo: seed-free


def test_signflip_monte_carlo_close_to_exact():
    d = np.random.default_rng(4).normal(0.4, 1, 16)  # 65,536 sign assignments: exact with n_perm above that
    exact = paired_signflip_pvalue(d, n_perm=70_000)
    mc = paired_signflip_pvalue(d, n_perm=5_000, seed=3)
    assert mc == pytest.approx(exact, abs=0.02)
    assert paired_signflip_pvalue(np.full(8, 0.5)) == pytest.approx(2 / 256)  # all positive: 2 of 256 as extreme


def _holm_by_closed_testing(p):
    """Holm = closed testing with Bonferroni local tests: adjusted p_i = max over subsets S containing i of
    min(1, |S| * min_{j in S} p_j) (brute force over all subsets)."""
    m = len(p)
    out = []
    for i in range(m):
        worst = 0.0
        for r in range(1, m + 1):
            for s in combinations(range(m), r):
                if i in s:
                    worst = max(worst, min(1.0, r * min(p[j] for j in s)))
        out.append(worst)
    return out


def test_holm_by_hand_and_against_closed_testing():
    # by hand: sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.uniform(0, 0.3, size=rng.integers(1, 7)).tolist()
        assert holm_adjust(p) == pytest.approx(_holm_by_closed_testing(p))
    assert holm_adjust([]) == []
    with pytest.raises(ValueError):
        holm_adjust([0.5, 1.2])


def test_min_detectable_difference_has_80_percent_power():
    sd, n = 6.1, 16
    mdd = min_detectable_difference(sd, n)
    se = sd / np.sqrt(n)
    z = sps.norm.ppf(0.975)
    power = sps.norm.cdf(mdd / se - z) + sps.norm.cdf(-mdd / se - z)  # two-sided z test at the true diff = mdd
    assert power == pytest.approx(0.8, abs=1e-3)
    # the study v1 figure (issue 15): SD 6.1 at 8 seeds per arm, unpaired -> about 9 points
    assert min_detectable_difference(6.1 * np.sqrt(2), 8) == pytest.approx(8.54, abs=0.01)
    need = pairs_needed(sd, 3.0)
    assert min_detectable_difference(sd, need) <= 3.0 < min_detectable_difference(sd, need - 1)
    with pytest.raises(ValueError):
        min_detectable_difference(1.0, 0)
