import numpy as np
import pytest
from scipy import stats as sps

from hicra.stats import (
    area_under_curve,
    bootstrap_ci,
    bootstrap_diff_ci,
    cluster_bootstrap_ci,
    permutation_pvalue,
    steps_to_threshold,
)


def test_bootstrap_ci_matches_scipy_percentile():
    x = np.random.default_rng(3).normal(0.4, 0.1, size=12)
    mean, lo, hi = bootstrap_ci(x, n_boot=20_000, seed=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=20_000, method="percentile",
                        random_state=np.random.default_rng(2)).confidence_interval
    assert mean == pytest.approx(x.mean())
    assert lo == pytest.approx(ref.low, abs=0.004)
    assert hi == pytest.approx(ref.high, abs=0.004)


def test_bootstrap_ci_coverage_near_nominal():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(300):
        _, lo, hi = bootstrap_ci(rng.normal(1.0, 1.0, size=30), n_boot=2000, seed=rep)
        hits += lo <= 1.0 <= hi
    assert 0.89 <= hits / 300 <= 0.99


def test_bootstrap_diff_ci_contains_true_difference_and_sign():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.6, 0.05, 10), rng.normal(0.4, 0.05, 10)
    d, lo, hi = bootstrap_diff_ci(a, b, seed=0)
    assert d == pytest.approx(a.mean() - b.mean())
    assert 0.0 < lo < 0.2 < hi


def test_permutation_pvalue_exact_matches_scipy():
    a, b = [0.31, 0.42, 0.35, 0.50], [0.22, 0.28, 0.30, 0.33, 0.25]
    p = permutation_pvalue(a, b, n_perm=10_000)
    # two-sided as |mean difference| >= observed (scipy's own "two-sided" doubles the smaller tail instead)
    ref = sps.permutation_test((a, b), lambda x, y: abs(np.mean(x) - np.mean(y)), permutation_type="independent",
                               alternative="greater", n_resamples=np.inf).pvalue
    assert p == pytest.approx(ref, abs=1e-12)


def test_permutation_pvalue_monte_carlo_close_to_scipy():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.1, 1, 15), rng.normal(0.0, 1, 15)
    p = permutation_pvalue(a, b, n_perm=20_000, seed=0)
    ref = sps.permutation_test((a, b), lambda x, y: abs(np.mean(x) - np.mean(y)), permutation_type="independent",
                               alternative="greater", n_resamples=20_000, random_state=1).pvalue
    assert p == pytest.approx(ref, abs=0.02)


def test_identical_groups_are_not_significant():
    assert permutation_pvalue([0.5] * 4, [0.5] * 4) == 1.0


def test_area_under_curve_is_average_height():
    assert area_under_curve([0, 1, 2], [0.0, 1.0, 1.0]) == pytest.approx(0.75)
    assert area_under_curve([0, 10, 20], [0.2, 0.2, 0.2]) == pytest.approx(0.2)
    assert area_under_curve([5], [0.3]) == 0.3


def test_steps_to_threshold_with_window_and_never():
    steps, acc = [0, 1, 2, 3, 4], [0.1, 0.6, 0.2, 0.6, 0.7]
    assert steps_to_threshold(steps, acc, 0.5) == 1
    assert steps_to_threshold(steps, acc, 0.5, window=2) == 4  # trailing means 0.35, 0.4, 0.4, 0.65
    assert steps_to_threshold(steps, acc, 0.9) is None


def test_nonfinite_values_rejected():
    with pytest.raises(ValueError, match="index 1"):
        bootstrap_ci([0.1, float("nan")])


def test_sign_test_matches_scipy_binomtest():
    from hicra.stats import sign_test_pvalue

    for plus, minus in [(0, 0), (5, 0), (0, 7), (6, 2), (10, 10), (13, 4), (1, 30)]:
        expected = 1.0 if plus + minus == 0 else sps.binomtest(plus, plus + minus, 0.5).pvalue
        assert sign_test_pvalue(plus, minus) == pytest.approx(expected, rel=1e-12), (plus, minus)
    with pytest.raises(ValueError):
        sign_test_pvalue(-1, 3)


def test_half_fall_step_finds_the_middle_of_a_fall_and_ignores_flat_curves():
    from hicra.stats import half_fall_step

    x = np.arange(100, dtype=float)
    # a step-free linear fall from 0.6 at step 20 to 0.2 at step 60, flat around it: half-way (0.4) at step 40
    y = np.interp(x, [0, 20, 60, 99], [0.6, 0.6, 0.2, 0.2])
    out = half_fall_step(x, y)
    assert out["start"] == pytest.approx(0.6) and out["end"] == pytest.approx(0.2)
    assert out["half_step"] == pytest.approx(40, abs=1)
    # the same fall 25 steps later is found 25 steps later; a flat noisy curve has no fall
    late = half_fall_step(x, np.interp(x, [0, 45, 85, 99], [0.6, 0.6, 0.2, 0.2]))
    assert late["half_step"] - out["half_step"] == pytest.approx(25, abs=1)
    rng = np.random.default_rng(0)
    flat = half_fall_step(x, 0.3 + rng.normal(0, 0.01, 100))
    assert flat["half_step"] is None and abs(flat["drop"]) < 0.02
    # a rise is not a fall; unsorted steps are sorted first
    assert half_fall_step(x, 1 - y)["half_step"] is None
    perm = rng.permutation(100)
    assert half_fall_step(x[perm], y[perm])["half_step"] == out["half_step"]
    with pytest.raises(ValueError):
        half_fall_step(x[:5], y[:5])


def test_cluster_bootstrap_resamples_clusters_not_values():
    # two clusters of equal size: the same draws as bootstrapping the two cluster means
    vals, clusters = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], ["a", "a", "a", "b", "b", "b"]
    assert cluster_bootstrap_ci(vals, clusters, n_boot=4000, seed=5) == pytest.approx(
        bootstrap_ci([1.0, 0.0], n_boot=4000, seed=5))
    # treating the six values as independent gives a narrower interval than the two clusters allow
    _, lo, hi = bootstrap_ci(vals, n_boot=4000, seed=5)
    _, clo, chi = cluster_bootstrap_ci(vals, clusters, n_boot=4000, seed=5)
    assert chi - clo > hi - lo
    # unequal clusters: each resample's mean is total over count (a ratio), not a mean of cluster means
    mean, lo, hi = cluster_bootstrap_ci([2.0, 0.0, 0.0], ["x", "y", "y"], n_boot=2000, seed=0)
    assert mean == pytest.approx(2 / 3) and lo == 0.0 and hi == 2.0
    with pytest.raises(ValueError, match="cluster labels"):
        cluster_bootstrap_ci([1.0, 2.0], ["a"])


def test_describe_changes_prints_mean_sd_and_rises():
    from hicra.stats import describe_changes

    assert describe_changes([0.1, -0.2, 0.4]) == "mean +0.1000, SD 0.3000, up in 2 of 3"
    assert describe_changes([0.5]) == "mean +0.5000, SD nan, up in 1 of 1"
    with pytest.raises(ValueError, match="no values"):
        describe_changes([])


def test_basic_interval_reflects_the_draws_about_the_point_or_a_centre():
    from hicra.stats import basic_draws, basic_interval

    draws = np.array([0.0, 1.0, 2.0, 3.0, 4.0, np.nan, np.inf])  # non-finite draws left out
    q_lo, q_hi = np.quantile(draws[:5], [0.025, 0.975])
    assert basic_interval(draws, 5.0) == pytest.approx((10 - q_hi, 10 - q_lo))
    # draws biased low by 3 against the point: the plain basic interval moves up by 3, the centred one not at all
    assert basic_interval(draws, 5.0, centre=2.0) == pytest.approx((7 - q_hi, 7 - q_lo))
    lo, hi = basic_interval(draws, 5.0, centre=float(np.mean(draws[:5])))
    assert lo < 5.0 < hi and (lo + hi) / 2 == pytest.approx(5.0)
    assert basic_interval(draws, 0.5, floor=0.0)[0] == 0.0  # an entropy's interval cut at 0
    assert basic_interval(np.array([np.nan]), 1.0) == (None, None)
    assert basic_draws(draws, 5.0, centre=2.0) == pytest.approx(7 - draws[:5])


def test_interval_reading_needs_the_whole_interval_on_one_side_of_zero():
    from hicra.stats import interval_reading

    assert interval_reading([0.01, 0.2]) == "rise" and interval_reading((-0.3, -0.1)) == "fall"
    assert interval_reading([-0.1, 0.1]) == "-"
    assert interval_reading([0.0, 0.2]) == "-" and interval_reading([-0.2, 0.0]) == "-"  # an end at 0 is not past it


def test_block_means_splits_like_numpy_ignores_missing_values_and_rejects_no_blocks():
    """block_means: equal consecutive blocks with numpy's split of a remainder (the first blocks one point longer),
    None and NaN left out of a block's mean, NaN for a block with no value, ValueError for blocks < 1."""
    from hicra.stats import block_means

    rise = [1.0 + 0.2 * min(t, 10) / 10 for t in range(100)]
    assert block_means(rise, 10) == pytest.approx([np.mean(rise[i:i + 10]) for i in range(0, 100, 10)])
    assert block_means([None] * 5 + rise[5:], 10)[0] == pytest.approx(np.mean(rise[5:10]))
    assert block_means([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 3) == pytest.approx([2.0, 4.5, 6.5])
    got = block_means([None, float("nan"), 3.0, 5.0], 2)
    assert np.isnan(got[0]) and got[1] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="blocks"):
        block_means([1.0], 0)
