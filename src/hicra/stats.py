"""Statistics: pass@k, and for multi-seed comparisons bootstrap intervals (plain and nested), permutation and
sign-flip tests, Holm adjustment, power (smallest detectable difference), curve summaries.

Pure numpy, seeded, no hidden state. Used by `hicra eval`, the dynamics metrics, `hicra study` and anything that
pools runs over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 - C(n-c, k) / C(n, k), with n samples of which c are correct
    (Chen et al. 2021, arXiv 2107.03374). Exact binomials; ValueError unless 0 <= c <= n and 1 <= k <= n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _as_1d(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name}: no values")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: non-finite value at index {int(np.flatnonzero(~np.isfinite(arr))[0])}")
    return arr


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, n_boot: int = 10_000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval: resample the n values with replacement `n_boot` times,
    take the mean of each resample, report the (1-level)/2 and (1+level)/2 quantiles.

    Returns (mean, low, high). With one value the interval is degenerate (low = high = mean): one run says
    nothing about spread, and the caller should report n alongside.
    """
    x = _as_1d(values, "bootstrap_ci")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def basic_draws(draws: np.ndarray, point: float, centre: float | None = None) -> np.ndarray:
    """The basic (reverse-percentile) bootstrap's distribution of an estimate: point + centre - draw for each
    finite draw (shape (n_finite,)), i.e. the point minus each draw's error, the error being the draw's
    deviation from `centre`, the bootstrap world's value of the quantity. `centre` defaults to `point`, right
    for a plug-in statistic (the resampled population's value of the quantity is the point estimate); a
    statistic that is unbiased for its target while its resamples are not (the rarefied entropies of
    `hicra.dynamics.phases.problem_bootstrap_trend`, whose resamples repeat problems) takes the mean of the draws.
    Its quantiles are `basic_interval`; a one-sided p-value that agrees with that interval is the share of these
    values on the other side of 0."""
    draws = np.asarray(draws, dtype=np.float64).reshape(-1)
    draws = draws[np.isfinite(draws)]
    return point + (point if centre is None else centre) - draws


def basic_interval(draws: np.ndarray, point: float, *, level: float = 0.95, centre: float | None = None,
                   floor: float | None = None) -> tuple[float | None, float | None]:
    """Basic (reverse-percentile) bootstrap interval at `level`: (2 point - q_hi, 2 point - q_lo) with q the
    draws' (1 -/+ level)/2 quantiles, or with `centre` (`basic_draws`) (point + centre - q_hi, point + centre -
    q_lo). A percentile interval (q_lo, q_hi) assumes the draws are centred on the point; when the statistic is
    biased in a resample (a plug-in entropy: duplicated items concentrate the counts) it sits off the point,
    and the basic interval moves the other way, by the bias the resamples estimate. Non-finite draws are left
    out; (None, None) when none is left. The lower end is cut at `floor` (0 for an entropy) when given."""
    values = basic_draws(draws, point, centre)
    if values.size == 0:
        return None, None
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    lo = lo if floor is None else max(floor, lo)
    return float(lo), float(hi)


def cluster_bootstrap_ci(values: Sequence[float], clusters: Sequence, *, level: float = 0.95, n_boot: int = 10_000,
                         seed: int = 0) -> tuple[float, float, float]:
    """Mean of `values` and a percentile-bootstrap interval that resamples whole clusters (e.g. problems, when
    several responses share one) with replacement; each resample's mean is its values' total over their count.

    Returns (mean, low, high); with one cluster the interval is degenerate (low = high = mean). ValueError when
    the lengths differ or there is no value."""
    x = _as_1d(values, "cluster_bootstrap_ci")
    if len(clusters) != x.size:
        raise ValueError(f"cluster_bootstrap_ci: {x.size} values but {len(clusters)} cluster labels")
    labels = {c: k for k, c in enumerate(dict.fromkeys(clusters))}
    ids = np.array([labels[c] for c in clusters])
    sums, counts = np.bincount(ids, weights=x), np.bincount(ids).astype(np.float64)
    idx = np.random.default_rng(seed).integers(0, len(labels), size=(n_boot, len(labels)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def bootstrap_diff_ci(a: Sequence[float], b: Sequence[float], *, level: float = 0.95, n_boot: int = 10_000,
                      seed: int = 0) -> tuple[float, float, float]:
    """Difference of means mean(a) - mean(b) with a percentile-bootstrap interval, resampling each group
    independently (the groups are independent seeds of two arms, not paired)."""
    xa, xb = _as_1d(a, "a"), _as_1d(b, "b")
    rng = np.random.default_rng(seed)
    ma = xa[rng.integers(0, xa.size, size=(n_boot, xa.size))].mean(axis=1)
    mb = xb[rng.integers(0, xb.size, size=(n_boot, xb.size))].mean(axis=1)
    lo, hi = np.quantile(ma - mb, [(1 - level) / 2, (1 + level) / 2])
    return float(xa.mean() - xb.mean()), float(lo), float(hi)


def permutation_pvalue(a: Sequence[float], b: Sequence[float], *, n_perm: int = 10_000, seed: int = 0) -> float:
    """Two-sided permutation test of equal means: p = (1 + #{|mean diff of a relabelling| >= |observed|}) /
    (1 + n_perm). When every relabelling can be enumerated cheaply (C(n_a+n_b, n_a) <= n_perm) the test is exact:
    p = #{|diff| >= |observed|} / C(n_a+n_b, n_a)."""
    from itertools import combinations
    from math import comb

    xa, xb = _as_1d(a, "a"), _as_1d(b, "b")
    pooled = np.concatenate([xa, xb])
    n, na = pooled.size, xa.size
    observed = abs(xa.mean() - xb.mean())
    # a tolerance so that relabellings equal to the observed split count as "as extreme" despite rounding
    tol = 1e-12 * max(1.0, float(np.abs(pooled).max()))
    total = pooled.sum()
    if comb(n, na) <= n_perm:
        sums = np.array([pooled[list(c)].sum() for c in combinations(range(n), na)])
        diffs = np.abs(sums / na - (total - sums) / (n - na))
        return float(np.mean(diffs >= observed - tol))
    rng = np.random.default_rng(seed)
    perm = np.argsort(rng.random((n_perm, n)), axis=1)[:, :na]
    sums = pooled[perm].sum(axis=1)
    diffs = np.abs(sums / na - (total - sums) / (n - na))
    return float((1 + np.sum(diffs >= observed - tol)) / (1 + n_perm))


def area_under_curve(steps: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area under values(step), divided by the step span: the curve's average height, so runs of
    different lengths stay comparable. A single point returns its value."""
    s, v = _as_1d(steps, "steps"), _as_1d(values, "values")
    if s.size != v.size:
        raise ValueError(f"area_under_curve: {s.size} steps but {v.size} values")
    if s.size == 1:
        return float(v[0])
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    span = s[-1] - s[0]
    return float(np.sum((v[1:] + v[:-1]) * np.diff(s)) / 2.0 / span) if span > 0 else float(v.mean())


def steps_to_threshold(steps: Sequence[float], values: Sequence[float], threshold: float,
                       window: int = 1) -> float | None:
    """First step at which the trailing `window`-point moving average of values reaches `threshold`; None when
    it never does (a run that never gets there must not be scored as if it did). At the first `window - 1` steps
    the average is over the points so far (1, 2, ... of them), so a first value at or above the threshold gives
    the first step, whatever follows (the study's registered rule; docs/study.md)."""
    s, v = _as_1d(steps, "steps"), _as_1d(values, "values")
    if s.size != v.size:
        raise ValueError(f"steps_to_threshold: {s.size} steps but {v.size} values")
    if window < 1:
        raise ValueError("steps_to_threshold: window must be >= 1")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    c = np.concatenate([[0.0], np.cumsum(v)])
    for i in range(v.size):
        lo = max(0, i + 1 - window)
        if (c[i + 1] - c[lo]) / (i + 1 - lo) >= threshold:
            return float(s[i])
    return None


def sign_test_pvalue(n_plus: int, n_minus: int) -> float:
    """Exact two-sided sign test: under H0 each non-tied pair is + or - with probability 1/2, so
    p = P(|K - n/2| >= |k - n/2|) for K ~ Binomial(n, 1/2), n = n_plus + n_minus (ties are dropped before).
    With n = 0 there is no evidence either way: p = 1."""
    from math import comb

    if n_plus < 0 or n_minus < 0:
        raise ValueError("sign_test_pvalue: counts must be >= 0")
    n = n_plus + n_minus
    if n == 0:
        return 1.0
    dev = abs(n_plus - n / 2)
    hits = sum(comb(n, k) for k in range(n + 1) if abs(k - n / 2) >= dev - 1e-9)
    return min(1.0, hits / 2**n)


def half_fall_step(steps: Sequence[float], values: Sequence[float], *, edge: float = 0.1,
                   min_drop: float = 0.02) -> dict:
    """When a falling curve (e.g. the share of one error type per step) has done half of its fall.

    start / end = mean of the first / last `edge` share of the points (at least 3 each); drop = start - end.
    If drop >= min_drop, the half-fall step is the first step where a centred moving average (window = that
    edge count) is at or below start - drop / 2; otherwise the curve did not fall and the step is None.
    Returns {"start", "end", "drop", "half_step"}. Comparing two curves' half-fall steps says which fell first;
    the centred average keeps both on the same clock."""
    s, v = _as_1d(steps, "steps"), _as_1d(values, "values")
    if s.size != v.size:
        raise ValueError(f"half_fall_step: {s.size} steps but {v.size} values")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    k = max(3, int(round(edge * s.size)))
    if 2 * k > s.size:
        raise ValueError(f"half_fall_step: {s.size} points are too few for two edges of {k}")
    start, end = float(v[:k].mean()), float(v[-k:].mean())
    drop = start - end
    out = {"start": start, "end": end, "drop": drop, "half_step": None}
    if drop < min_drop:
        return out
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(s.size)
    lo, hi = np.maximum(0, i - k // 2), np.minimum(s.size, i - k // 2 + k)
    smooth = (c[hi] - c[lo]) / (hi - lo)
    below = np.flatnonzero(smooth <= start - drop / 2)
    out["half_step"] = float(s[below[0]]) if below.size else None
    return out


# ---------------------------------------------------------------- paired, nested designs (hicra study v2)

def nested_bootstrap_ci(values: Sequence[float], groups: Sequence, *, level: float = 0.95, n_boot: int = 10_000,
                        seed: int = 0) -> tuple[float, float, float, float]:
    """Mean of values with a two-stage (nested, cluster) percentile-bootstrap interval: each resample draws the
    groups (e.g. warm-start seeds) with replacement, then, within each drawn group, its values (e.g. the RL seeds
    run from that warm start) with replacement, and takes the mean of everything drawn. The interval therefore
    includes the between-group variance. One group reduces it to `bootstrap_ci`'s resampling of the values.

    values: shape (n,); groups: n hashable labels. Returns (mean, low, high, se), se = the standard deviation of
    the resampled means (the bootstrap standard error of the mean). ValueError on no or non-finite values."""
    x = _as_1d(values, "nested_bootstrap_ci")
    labels = list(groups)
    if len(labels) != x.size:
        raise ValueError(f"nested_bootstrap_ci: {x.size} values but {len(labels)} group labels")
    members = [np.flatnonzero([g == u for g in labels]) for u in dict.fromkeys(labels)]
    rng = np.random.default_rng(seed)
    n_groups = len(members)
    picks = rng.integers(0, n_groups, size=(n_boot, n_groups))
    sums = np.zeros(n_boot)
    counts = np.zeros(n_boot)
    for g, idx in enumerate(members):
        # every copy of the group drawn at the first stage gets its own resample of the group's values (before
        # 2026-12-06 the copies in one resample shared one, which inflated the within-group variance by up to
        # 2 - 1/G: intervals too wide)
        replicate = np.nonzero(picks == g)[0]  # the resample each drawn copy belongs to
        draws = x[idx][rng.integers(0, idx.size, size=(replicate.size, idx.size))].sum(axis=1)
        np.add.at(sums, replicate, draws)
        np.add.at(counts, replicate, idx.size)
    means = sums / counts
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi), float(means.std(ddof=1)) if n_boot > 1 else 0.0


def paired_signflip_pvalue(diffs: Sequence[float], *, n_perm: int = 65_536, seed: int = 0) -> float:
    """Two-sided paired permutation (sign-flip) test of a zero mean difference: under H0 each pair's difference
    is as likely positive as negative, so p = share of the 2^n sign assignments whose |mean| >= the observed one.
    Exact when 2^n <= n_perm (by default up to n = 16 pairs, a study's 4 x 4 design); else Monte Carlo with
    p = (1 + hits) / (1 + n_perm). Zero differences count either way (they do not change the mean)."""
    d = _as_1d(diffs, "paired_signflip_pvalue")
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if 2 ** d.size <= n_perm:
        signs = 1 - 2 * ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1)
        return float(np.mean(np.abs(signs @ d) / d.size >= observed - tol))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, d.size))
    return float((1 + np.sum(np.abs(signs @ d) / d.size >= observed - tol)) / (1 + n_perm))


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979) for m tests of one family: sort p ascending, adjusted
    p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)), returned in the input order. Rejecting where the adjusted
    p <= alpha controls the family-wise error rate at alpha. ValueError on a p outside [0, 1]."""
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    if p.size == 0:
        return []
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("holm_adjust: p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted.tolist()


def min_detectable_difference(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided test at level `alpha` detects with probability `power`, from
    the standard deviation `sd` of n paired differences: (z_{1-alpha/2} + z_{power}) * sd / sqrt(n).

    Normal approximation (a z-test with the SD taken as known): it ignores the t distribution's heavier tails
    at small n and any clustering (for a nested design pass the SD that makes sd / sqrt(n) the standard error of
    the mean, e.g. the nested bootstrap's se * sqrt(n)). Same units as sd. ValueError unless n >= 1, sd >= 0."""
    from statistics import NormalDist

    if n < 1 or not sd >= 0 or not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"need n >= 1, sd >= 0, 0 < alpha, power < 1 (got n={n}, sd={sd})")
    z = NormalDist().inv_cdf
    return float((z(1 - alpha / 2) + z(power)) * sd / math.sqrt(n))


def pairs_needed(sd: float, difference: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Number of pairs for `min_detectable_difference` to reach `difference` (same normal approximation):
    ceil(((z_{1-alpha/2} + z_{power}) * sd / difference)^2), at least 1."""
    from statistics import NormalDist

    if not difference > 0 or not sd >= 0:
        raise ValueError(f"need difference > 0 and sd >= 0 (got {difference}, {sd})")
    z = NormalDist().inv_cdf
    return max(1, math.ceil(((z(1 - alpha / 2) + z(power)) * sd / difference) ** 2))


def describe_changes(changes: Sequence[float]) -> str:
    """"mean +M, SD S, up in K of N" for per-run changes (SD nan for one run): how benchmarks print a change over
    runs. ValueError on an empty sequence."""
    values = _as_1d(changes, "changes")
    sd = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    return f"mean {values.mean():+.4f}, SD {sd:.4f}, up in {int((values > 0).sum())} of {values.size}"


def interval_reading(interval: Sequence[float]) -> str:
    """The sign an interval (lo, hi) of a change establishes: "rise" when it lies above 0 (lo > 0), "fall" when it
    lies below (hi < 0), "-" when it contains 0 (an end at exactly 0 counts as containing it)."""
    lo, hi = interval
    return "rise" if lo > 0 else "fall" if hi < 0 else "-"


def block_means(values: Sequence[float | None], blocks: int) -> np.ndarray:
    """Means of a curve over `blocks` equal consecutive blocks of its points (`numpy.array_split`: the first
    len % blocks blocks get one point more), None and NaN ignored; NaN for a block without a value. Shape
    (blocks,). How the benchmarks summarise a per-step curve's shape (tenths, quarters). ValueError when blocks < 1."""
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    y = np.array([np.nan if v is None else v for v in values], dtype=float)
    return np.array([np.nanmean(b) if np.isfinite(b).any() else np.nan for b in np.array_split(y, blocks)])
