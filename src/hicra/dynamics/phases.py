"""The phase verdict (v2 shape, v3 rules): did execution consolidate BEFORE planning, and did strategies diversify after?

The paper (arXiv 2509.03646) marks its two phases by eye. On-policy RL without a KL term sharpens every token
class, so "a perplexity curve falls and then flattens" says nothing by itself: the claim is about ORDER (execution
settles before planning) and about a shift of the frontier. This module turns that into tests on the per-step
metrics (`metrics.parquet`), each seeded and deterministic.

1. **End of the fall, per token class.** For each of `rel_ppl_execution`, `rel_ppl_planning` and
   `rel_ppl_reference` (random non-planning response tokens, as many per step as there are planning tokens:
   `hicra.dynamics.metrics.reference_token_sample`) fit a continuous one-breakpoint hinge

       y = b0 + b1 * x + b2 * max(x - tau, 0)

   by least squares, tau searched over the observed steps (at least `min_segment` points per side). An end of fall
   within the burn-in (the first `burn_in_share` of the steps, `burn_in`: a dip under the first updates) is not
   claimed. A class
   *consolidates* when the hinge beats a straight line (F = (SSE_line - SSE_hinge) / SSE_hinge, null simulated
   under the fitted line with the whole tau search redone, p < alpha), the curve falls before tau (b1 < 0) and
   flattens after it (b2 > 0). A p within two Monte Carlo standard errors of its level (999 draws: about 0.015-0.035
   at a level of 0.025) is recomputed from `n_boot_refine` null draws, the first ones kept (sequential Monte
   Carlo, since v3: such a p was decided by which draws came up as much as by the data). The simulated noise is an AR(1) sieve bootstrap (innovations resampled with
   replacement) of the residuals of a bent-cable fit (a line with one bend, sharp or gradual), with phi the
   mean-unbiased estimate for residuals of that fit (found by simulation, clipped to [0, 0.95]): per-step
   training metrics drift, and an independent-noise null called 34% of flat AR(1) phi = 0.8 series a
   consolidation (`benchmarks/phase_noise.py`). `_noise_model` is this noise model, for the consolidation
   null, the tau draws and the exploration trend test's replicates (`trend_test`). The three class curves of a
   run share ONE phi (`_shared_lag1`: the mean of their residuals' lag-1 autocorrelations, mapped as for one
   curve), each keeping its own residuals: the drift comes from the policy's step-to-step change, which every
   class measured on the same rollouts sees. One curve's phi over 60 steps is too noisy for the test (AR(1)
   phi = 0.6: 0.32-0.83, 5-95%, and up to 0.95, where a null drifting that much covered a fall of 0.3 at sd
   0.02, so classes settling together were called execution-first); the run's is spread 0.52-0.81. It reads
   about 0.07 high when two of the curves are exponential falls (the bent cable leaves a little of their shape
   in the residuals), which errs towards wider intervals and weaker consolidation tests.

2. **Order.** tau_exec, tau_plan, tau_ref get intervals from ONE joint AR(1) sieve bootstrap around the three
   bent-cable fits (`joint_curve_draws`; the same resampling draws for every class, so noise shared by the
   classes stays shared and the differences tau_plan - tau_exec and tau_plan - tau_ref get paired intervals).
   Each draw of each class is decided by the class test's own rule (`consolidation_draws`: F against that
   class's null at the same level, fall-then-flatten shape, burn-in): a draw in which a class does not consolidate
   gives it tau = +inf, so a class whose own test fails near its threshold still enters the differences through
   the draws in which it does consolidate (until 2026-12-02 such a class's draws were discarded and both differences
   read "later" with no interval). A class that never consolidates counts as consolidating after any class that
   does (tau = +inf; two +inf draws are a tie). Then

       execution-first  tau_plan - tau_exec > 0 and tau_plan - tau_ref > 0, both intervals excluding 0
       planning-first   both differences < 0, both intervals excluding 0
       simultaneous     otherwise, when execution or planning consolidates ("no order can be claimed")
       none             neither execution nor planning consolidates
       untestable       a class curve is missing (no log-probabilities) or has fewer than `min_steps` points

   The reference class makes "planning consolidates later" mean later than any class of that size, not "fewer
   tokens, noisier curve"; the same requirement is applied to planning-first for symmetry.

3. **Exploration** after tau_exec (all steps when execution does not consolidate): the rise of the entropy of the
   rollouts' strategy labels (`strategy_entropy`, measure "strategy") when the rollouts carry a `strategy` column,
   else of planning-phrase semantic entropy without format phrases (`semantic_entropy_excl_format`, measure
   "planning-phrases"; see `hicra.dynamics.metrics` for the exclusion rule; metrics from before v2 fall back to
   `semantic_entropy`). OLS slope against step with an AR(1) sieve bootstrap-t interval (`trend_test`: replicates
   from `_noise_model`, each studentised like the data by `_slope_se`), or, when per-problem counts are given
   (`problem_groups`, the text-only path), resampling over problems (`problem_bootstrap_trend`): on the
   problems every step shares (unless fewer than `PAIR_MIN_PROBLEMS`), a two-way interval (since session 29): a
   delete-one-problem jackknife (each problem left out of every step in turn; the bootstrap's resamples repeat
   problems and under-state the slope's spread by 6-9%) plus the checkpoint-wide variance of the steps' values
   beyond problem sampling (shifts every problem shares at a checkpoint, which no resampling of problems sees),
   Welch-Satterthwaite t; when the problems change between steps,
   a bootstrap within each step (a basic interval centred on the draws' mean). Each step's entropy is taken at the
   smallest step's number of occurrences (`rarefied_entropy`), because the plug-in entropy grows with the sample.
   Detected when the
   interval is above 0. Accuracy and mean length trends over the same window are
   reported beside it, on the same unit as the exploration test: over problems on the text-only path
   (`problem_bootstrap_mean_trend`, the step-based interval kept beside it), else over steps (`trend_test`). The exploration test runs and is reported even when the verdict is `inconclusive`.

4. **Exploration onset** (only when exploration is detected): the hinge-vs-line test on the whole exploration
   curve, for a slope that turns up into a rise; None when that test fails (the rising window's first step would
   only repeat tau_exec).

Verdict (`summary.json["phases"]["verdict"]`):

    order \\ exploration     detected            not detected
    execution-first         two-phase           consolidation-only
    planning-first          reversed            reversed
    simultaneous            no-order            no-order
    none                    exploration-only    none
    untestable / too few    inconclusive        inconclusive

When the order is execution-first or none and the exploration test could not run (too few steps after tau_exec,
no exploration metric), only that test could choose between the row's two verdicts: the verdict is `inconclusive`
(the order is still reported), not the "not detected" column.

`consolidation_end_step` = tau_exec (an observed step) when execution consolidates, else None. `confidence` is a
heuristic in [0, 1]: the smallest support among the tests the verdict rests on (1 - p for a detected test, p for an
undetected one; for an order also each class test and each difference: the share of its draws on the claimed
side, or, when unresolved, twice the smaller one-sided share; `_order_support`).

Several runs (seeds) are pooled by `detect_phases_pooled`: point estimates and the per-class consolidation tests on
the mean curves over the steps all runs share; the draws of the order come from resampling RUNS with replacement
(not steps): each draw is the mean curve of a resample of the runs, decided by the same class rule against the
mean curve's null, so whether a class consolidates, when, and the order all carry the run-to-run spread (with
fewer than `MIN_RUNS_TO_RESAMPLE` runs the order's draws are the mean curves' step-noise draws, as for one run:
two runs give three distinct resamples). The exploration trend takes the run as the unit (`runs_trend_test`: a
Student t interval over the runs' slopes). Each run's own verdict is reported with the agreement share.

Known limit of the order's convention (the issue's): a class that does not consolidate counts as later, so a
small fall that ends early but is too small for its test reads as "never" (e.g. a planning fall of the size of
its noise that ends long before execution's, which a fresh review found read `execution-first`); the reference class does not guard against it, being execution tokens (v3; mostly so before). `confidence` is then about the
failed test's p.

Rules versions (`PhaseConfig.version`, `PHASE_VERSIONS`; a verdict's `version` names them). v3 (2026-12-04): the
reference class is drawn from non-planning tokens (until v2 from all response tokens, so it held planning tokens in
their share of the response, 0.1-0.2 in the lab, and inherited that share of planning's fall at planning's step: a
pooled planting of planning-first read `simultaneous`, and a lab pilot's planted execution-first too;
docs/dynamics.md), and a p near its level is refined. `PhaseConfig(version=2)` reads v2 summaries' curves as they
were read; `config_for_phases` picks it from summaries.

Version 1 summaries (verdict "single-phase", no `order`) still load through `upgrade_phases`: v1 never tested the
order, so their verdict becomes `inconclusive` (order `untestable`) with the old value kept in `verdict_v1`.

Known limits: the noise model is AR(1) (or short blocks), with one phi for the three token classes of a run (a
run whose classes drift with different memory gets their mean); longer-memory drift can still pass for a bend; a curve
that bends everywhere has its strongest bend reported as tau; with few runs the run-resampling intervals are crude.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np


@dataclass(frozen=True)
class PhaseConfig:
    min_steps: int = 8        # fewer usable steps than this: inconclusive
    min_segment: int = 3      # points on each side of the breakpoint
    burn_in_share: float = 0.05  # an end of fall within this first share of the steps is not claimed (`burn_in`)
    min_after: int = 5        # points after the breakpoint needed for the exploration trend test
    # the consolidation tests run each class at alpha / 2, the order's difference intervals at level 1 - 2 alpha;
    # exploration is detected when its `level` interval lies above 0 (one-sided (1 - level) / 2)
    alpha: float = 0.05
    level: float = 0.95       # bootstrap interval level
    n_boot: int = 999
    seed: int = 0
    # the verdict's rules (`PHASE_VERSIONS`): 3 (default since 2026-12-04) refines a class test's p near its level
    # (and its runs' reference class holds no planning tokens); 2 never refines, and reproduces every v2 summary
    # (e.g. the study's frozen controls) from its curves
    version: int = 3
    # the null's total size when a class test's p lies within two Monte Carlo standard errors of its level (v3)
    n_boot_refine: int = 9999

    def __post_init__(self):
        if self.version not in PHASE_VERSIONS:
            raise ValueError(f"PhaseConfig.version must be one of {sorted(PHASE_VERSIONS)}, got {self.version!r}")


# what each version of the verdict's rules changes (`PhaseConfig.version`); a summary's `phases["version"]` names
# the rules it was made with, and pooling its runs again uses the same (`config_for_phases`)
PHASE_VERSIONS = {
    2: "reference class: any response tokens (as many as planning); Monte Carlo p-values from n_boot null "
       "simulations. The rules alone reproduce v2 verdicts from v2 summaries' curves; metrics computed today carry "
       "v3's draw, so `hicra analyze` refuses version 2",
    3: "reference class: non-planning response tokens (as many as planning), so it never holds the planning tokens "
       "whose timing it guards; a hinge test (a class's consolidation, the exploration onset) whose p lies within "
       "two Monte Carlo standard errors of its level, 2 sqrt(alpha (1 - alpha) / n_boot), is redone with "
       "n_boot_refine null simulations (sequential Monte Carlo)",
}


def phases_version(phases: Mapping | None) -> int:
    """The rules version a `summary.json["phases"]` was made by: its `version`, 2 for v1 summaries (none older
    exists among the rules) and for one without the field."""
    return max(2, int((phases or {}).get("version") or 2))


def config_for_phases(phases: Sequence[Mapping], config: PhaseConfig = PhaseConfig()) -> PhaseConfig:
    """`config` with the rules version of the given `summary.json["phases"]` (`phases_version`), so that
    pooling runs again reads them by the rules that made them. ValueError when they differ."""
    versions = sorted({phases_version(p) for p in phases})
    if len(versions) > 1:
        raise ValueError(f"the runs' phase verdicts were made by different rules (versions {versions}): re-run "
                         "hicra analyze on the older ones")
    return replace(config, version=versions[0]) if versions else config


def burn_in(config: PhaseConfig, n_steps: int) -> int:
    """How many of the first steps form the burn-in: ceil(`burn_in_share` x n_steps), so 1 of 19, 3 of 60, 4 of 80,
    16 of 320. A class whose end of fall (tau) lies on one of them is not claimed to consolidate (`order_test`).
    Why: the first updates of a run (Adam's first steps are full-size whatever the gradient's scale) move every
    token class at once; a 320-step run's reference class dipped over its first three steps and was then flat, the
    hinge test called that a consolidation ending at step 2, and the run's order verdict rested on it. Leaving the
    first steps out of the fit instead cost power where a real fall starts at once (the planted execution-first
    cases at the high noise level: 88% -> 76% correct), and raising the minimum segment only moved the breakpoint to
    the first one allowed."""
    return int(np.ceil(config.burn_in_share * n_steps - 1e-9))


def within_burn_in(tau, x: np.ndarray, skip: int):
    """True where an end of fall `tau` (a step, or an array of them) lies on one of the first `skip` steps of `x`
    (strictly before x[skip]); False everywhere when skip is 0."""
    start = x[min(skip, x.size - 1)] if skip else -np.inf
    return np.asarray(tau) < start


# ---------------------------------------------------------------- least-squares pieces

_BASES_CACHE: dict = {}


def _hinge_bases(x: np.ndarray, min_segment: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate breakpoints and, for each, an orthonormal basis Q (n x 3) of the hinge design [1, x, (x-tau)+].

    With Q, the residual sum of squares of any y is ||y||^2 - ||Q^T y||^2, so the whole tau search for many
    bootstrap samples at once is one einsum. Cached for the last few step grids (the tests of one verdict, and
    an online detector's consecutive updates, share them).
    """
    return _hinge_setup(x, min_segment)[:2]


def _hinge_setup(x: np.ndarray, min_segment: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(taus, Q bases (T, n, 3), R^-1 (T, 3, 3)) of the hinge designs, cached by (x, min_segment)."""
    key = (x.tobytes(), int(min_segment))
    hit = _BASES_CACHE.get(key)
    if hit is not None:
        return hit
    n = x.size
    idx = np.arange(min_segment - 1, n - min_segment)
    taus = x[idx]
    bases, r_invs = [], []
    for tau in taus:
        design = np.column_stack([np.ones(n), x, np.maximum(x - tau, 0.0)])
        q, r = np.linalg.qr(design)
        bases.append(q)
        r_invs.append(np.linalg.inv(r))
    out = (taus, np.stack(bases) if bases else np.zeros((0, n, 3)),
           np.stack(r_invs) if r_invs else np.zeros((0, 3, 3)))
    if len(_BASES_CACHE) >= 8:
        _BASES_CACHE.pop(next(iter(_BASES_CACHE)))
    _BASES_CACHE[key] = out
    return out


def _sse_line(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Residual sum of squares of straight-line fits, one per column of ys (n x B)."""
    q, _ = np.linalg.qr(np.column_stack([np.ones(x.size), x]))
    proj = q.T @ ys
    return (ys * ys).sum(axis=0) - (proj * proj).sum(axis=0)


def _project(bases: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Q^T y for every basis and column: bases (T, n, k), ys (n, B) -> (T, k, B). One matrix product (BLAS): about
    ten times faster than the equivalent einsum at the lab's 320 steps and thousands of columns."""
    t, n, k = bases.shape
    return (bases.transpose(0, 2, 1).reshape(t * k, n) @ ys).reshape(t, k, ys.shape[1])


def _sse_hinge(bases: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Residual sum of squares for every (breakpoint, column): shape (T, B)."""
    proj = _project(bases, ys)
    return (ys * ys).sum(axis=0)[None, :] - (proj * proj).sum(axis=1)


def fit_hinge(x: Sequence[float], y: Sequence[float], tau: float) -> dict:
    """Least-squares hinge fit at a fixed breakpoint: coefficients b0, b1, b2, fitted values, residuals."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    design = np.column_stack([np.ones(x.size), x, np.maximum(x - tau, 0.0)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = design @ coef
    return {"b0": float(coef[0]), "b1": float(coef[1]), "b2": float(coef[2]), "fitted": fitted,
            "residuals": y - fitted}


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    design = np.column_stack([np.ones(x.size), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(coef[0]), float(coef[1]), design @ coef


def _slopes(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """OLS slopes of each column of ys (n x B) against x."""
    xc = x - x.mean()
    return (xc @ (ys - ys.mean(axis=0))) / (xc @ xc)


def _lag1(r: np.ndarray) -> np.ndarray:
    """Sample lag-1 autocorrelation of each column of r (n, B) (of a vector when r is 1-d), after centring."""
    r = r - r.mean(axis=0)
    return (r[1:] * r[:-1]).sum(axis=0) / np.maximum((r * r).sum(axis=0), 1e-300)


_PHI_GRID = np.linspace(0.0, 0.95, 20)
_PHI_BIAS_CACHE: dict = {}


def _phi_mean_curve(x: np.ndarray, min_segment: int | None) -> np.ndarray:
    """E[lag-1 autocorrelation of the fit's residuals] for Gaussian AR(1) noise at each phi of `_PHI_GRID`, by
    simulation (100 series per phi, the same draws for every phi, seeded): the residuals are those of the best
    bent cable (`bent_cable_fit`, breakpoint and bend searched, `min_segment` points per side; at most 60
    breakpoints per bend width, evenly spaced, in the search) or, for min_segment None, of a straight line.
    Cached per (x, min_segment)."""
    key = (x.tobytes(), min_segment)
    hit = _PHI_BIAS_CACHE.get(key)
    if hit is not None:
        return hit
    n, n_sim = x.size, 100
    z = np.random.default_rng(12345).standard_normal((n, n_sim))
    e = np.empty((n, _PHI_GRID.size, n_sim))
    e[0] = z[0]
    scale = np.sqrt(1 - _PHI_GRID * _PHI_GRID)[:, None]
    for t in range(1, n):
        e[t] = _PHI_GRID[:, None] * e[t - 1] + scale * z[t]
    e = e.reshape(n, -1)
    if min_segment is None:
        xc = x - x.mean()
        resid = e - e.mean(axis=0) - np.outer(xc, xc @ e / (xc @ xc))
    else:  # at most 60 breakpoints per bend width in the search (the bias is O(1/n) for long series)
        bases = _cable_bases(x, min_segment)
        n_tau = bases.shape[0] // len(_CABLE_HALF_WIDTHS)
        bases = bases.reshape(len(_CABLE_HALF_WIDTHS), n_tau, n, 3)[:, ::-(-n_tau // 60)].reshape(-1, n, 3)
        proj = _project(bases, e)
        best = np.argmax((proj * proj).sum(axis=1), axis=0)  # the smallest SSE
        cols = np.arange(e.shape[1])
        resid = e - np.einsum("bnk,bk->nb", bases[best], proj[best, :, cols])
    out = np.maximum.accumulate(_lag1(resid).reshape(_PHI_GRID.size, n_sim).mean(axis=1))
    if len(_PHI_BIAS_CACHE) >= 8:
        _PHI_BIAS_CACHE.pop(next(iter(_PHI_BIAS_CACHE)))
    _PHI_BIAS_CACHE[key] = out
    return out


def _ar1_innovations(residuals: np.ndarray, x: np.ndarray | None = None, min_segment: int | None = None,
                     raw: float | None = None) -> tuple[float, np.ndarray]:
    """AR(1) coefficient phi of a residual series and the centred innovations e_t = r_t - phi * r_(t-1).

    The sample lag-1 autocorrelation of fit residuals is biased towards 0 in short series, the more so after a
    hinge fit whose breakpoint search absorbs part of a drift (AR(1) phi = 0.6, 60 steps: 0.48 on average after
    Kendall's (1 + 3 phi) / n correction). With the steps `x`, phi is the mean-unbiased estimate: the phi whose
    simulated mean autocorrelation after the same fit (`_phi_mean_curve`: hinge with `min_segment`, or a line for
    None) equals the observed one, interpolated on a grid of 20 values. Without `x`, Kendall's correction.
    Clipped to [0, 0.95]: negative or near-unit values are not a drift worth modelling. `raw` replaces the
    residuals' own lag-1 autocorrelation (a run-level value, `_shared_lag1`)."""
    r = residuals - residuals.mean()
    if raw is None:
        raw = float(_lag1(r)) if np.sum(r * r) > 0 else 0.0
    if x is None:
        phi = float(np.clip(raw + (1 + 3 * raw) / r.size, 0.0, 0.95)) if raw > 0 else 0.0
    else:
        means = _phi_mean_curve(np.asarray(x, float), min_segment)
        phi = float(np.clip(np.interp(raw, means, _PHI_GRID), 0.0, 0.95)) if raw > means[0] else 0.0
    e = r[1:] - phi * r[:-1]
    return phi, e - e.mean()


def _noise_model(x: np.ndarray, y: np.ndarray, min_segment: int,
                 raw_lag1: float | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """The per-step noise of a metric curve: residuals of its bent-cable fit (`bent_cable_fit`: a line with one
    bend, sharp or gradual; a line when the series is too short), scaled by sqrt(n / (n - 4)) for the fitted
    parameters, with their mean-unbiased AR(1) phi and centred innovations (`_ar1_innovations`). Fitting the bend
    keeps a curve's shape out of the noise estimate: residuals of a sharp hinge around an exponential fall are
    smooth and read as strong drift, which with an unbiased phi cost the consolidation test its power."""
    taus, _ = _hinge_bases(x, min_segment)
    if taus.size == 0:
        r = (y - _line_fit(x, y)[2]) * np.sqrt(x.size / max(x.size - 2, 1))
        return (r, *_ar1_innovations(r, x, None, raw_lag1))
    r = (y - bent_cable_fit(x, y, min_segment)) * np.sqrt(x.size / (x.size - 4))
    return (r, *_ar1_innovations(r, x, min_segment, raw_lag1))


def _shared_lag1(residuals: Iterable[np.ndarray]) -> float:
    """The mean of several curves' lag-1 residual autocorrelations (each curve's `_noise_model` residuals): one
    AR(1) phi for several metric curves of the same run, mean-unbiased when mapped by `_ar1_innovations` (the mean
    of the curves' autocorrelations has the same expectation as each one's when they share phi)."""
    raws = []
    for r in residuals:
        r = r - r.mean()
        raws.append(float(_lag1(r)) if np.sum(r * r) > 0 else 0.0)
    return float(np.mean(raws))


def _ar1_resample(residuals: np.ndarray, phi: float, innovations: np.ndarray, n_boot: int,
                  rng: np.random.Generator) -> np.ndarray:
    """AR(1) sieve bootstrap: (n, n_boot) series r*_0 = a resampled residual, r*_t = phi r*_(t-1) + e*_t with
    e*_t drawn with replacement from the innovations. With phi = 0 this is the plain residual bootstrap."""
    n = residuals.size
    if phi == 0.0:
        return residuals[rng.integers(0, n, size=(n, n_boot))]
    draws = innovations[rng.integers(0, innovations.size, size=(n, n_boot))]
    out = np.empty((n, n_boot))
    out[0] = residuals[rng.integers(0, n, size=n_boot)]
    for t in range(1, n):
        out[t] = phi * out[t - 1] + draws[t]
    return out


# ---------------------------------------------------------------- the two tests

def _hinge_vs_line(x: np.ndarray, y: np.ndarray, config: PhaseConfig, rng: np.random.Generator,
                   raw_lag1: float | None = None) -> dict | None:
    """The one-breakpoint hinge against a straight line (module docstring, test 1), without a shape condition:
    `f_statistic` = (SSE_line - SSE_hinge) / SSE_hinge (the classical F without its degrees of freedom; its p-value
    comes from its own simulated null), the bootstrap p-value, the best breakpoint with its bootstrap interval, and
    the hinge fit. None when the series is too short for two segments of `min_segment` points."""
    taus, bases = _hinge_bases(x, config.min_segment)
    if taus.size == 0:
        return None
    col = y[:, None]
    sse_h = _sse_hinge(bases, col)[:, 0]
    best = int(np.argmin(sse_h))
    tau = float(taus[best])
    sse_l = float(_sse_line(x, col)[0])
    scale = max(sse_l, 1e-300)
    f_obs = (sse_l - sse_h[best]) / max(sse_h[best], 1e-12 * scale)
    fit = fit_hinge(x, y, tau)
    # the noise model: AR(1) fitted to the hinge residuals (what is left once the curve's shape is removed);
    # consecutive training steps are correlated, and an independent-noise null would call that drift a bend
    residuals, phi, innovations = _noise_model(x, y, config.min_segment, raw_lag1)
    # null: straight line + AR(1) noise rebuilt from resampled innovations; the tau search is redone on each
    a, b, fitted_line = _line_fit(x, y)

    def null_f(size: int) -> np.ndarray:  # F of `size` null series
        ys = fitted_line[:, None] + _ar1_resample(residuals, phi, innovations, size, rng)
        sse_h_null = _sse_hinge(bases, ys).min(axis=0)
        sse_l_null = _sse_line(x, ys)
        return (sse_l_null - sse_h_null) / np.maximum(sse_h_null, 1e-12 * scale)

    f_null = np.sort(null_f(config.n_boot))
    p_value = _p_values(f_null, np.array([f_obs]))[0]
    # interval for tau: the same noise model around the hinge fit
    ys_h = fit["fitted"][:, None] + _ar1_resample(residuals, phi, innovations, config.n_boot, rng)
    tau_boot = taus[np.argmin(_sse_hinge(bases, ys_h), axis=0)]
    lo, hi = np.quantile(tau_boot, [(1 - config.level) / 2, (1 + config.level) / 2])
    out = {"p_value": float(p_value), "f_statistic": float(f_obs), "breakpoint_step": tau,
           "breakpoint_interval": [float(lo), float(hi)], "fit": fit, "line_slope": b, "noise_ar1": phi,
           "f_null": f_null, "n_null": int(f_null.size)}
    # sequential Monte Carlo (v3): a p within two Monte Carlo standard errors of the level is decided by simulation
    # noise as much as by the data (999 draws: SE 0.005 at p = 0.025), so the null grows to n_boot_refine draws
    # (SE 0.0016). Drawn after the tau interval's, so a p away from the level keeps every v2 figure.
    refine = config.n_boot_refine - f_null.size
    if config.version >= 3 and refine > 0 and abs(p_value - config.alpha) <= 2 * np.sqrt(
            config.alpha * (1 - config.alpha) / f_null.size):
        # in chunks: (taus x draws) memory
        extra = [null_f(int(size)) for size in np.diff(np.r_[np.arange(0, refine, 2000), refine])]
        f_null = np.sort(np.concatenate([f_null, *extra]))
        out.update(f_null=f_null, n_null=int(f_null.size), p_value_first=float(p_value),
                   p_value=float(_p_values(f_null, np.array([f_obs]))[0]))
    return out


def _p_values(f_null_sorted: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Bootstrap p-values (1 + #{F* >= F}) / (1 + B) of statistics f against sorted null draws F* (B,)."""
    ge = f_null_sorted.size - np.searchsorted(f_null_sorted, f - 1e-12 * np.abs(f), side="left")
    return (1 + ge) / (1 + f_null_sorted.size)


def consolidation_test(x: Sequence[float], y: Sequence[float], config: PhaseConfig = PhaseConfig(), *,
                       raw_lag1: float | None = None, keep_null: bool = False) -> dict:
    """Hinge-vs-line test for a fall that flattens (see module docstring). Returns the evidence dict.
    raw_lag1: a lag-1 residual autocorrelation to build the AR(1) noise from instead of the curve's own
    (`_shared_lag1`; `order_test` passes the run's). keep_null: also return the sorted null F draws under
    "f_null" (an array; `order_test` uses them to decide each bootstrap draw, `consolidation_draws`)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    res = _hinge_vs_line(x, y, config, np.random.default_rng(config.seed), raw_lag1)
    if res is None:
        return {"tested": False, "detected": False, "reason": f"need at least {2 * config.min_segment} steps"}
    fit, tau = res.pop("fit"), res["breakpoint_step"]
    if not keep_null:
        res.pop("f_null")
    slope_before, slope_after = fit["b1"], fit["b1"] + fit["b2"]
    drop = float(fit["fitted"][0] - (fit["b0"] + fit["b1"] * tau))
    detected = bool(res["p_value"] < config.alpha and slope_before < 0 and fit["b2"] > 0)
    return {"tested": True, "detected": detected, **res, "slope_before": slope_before, "slope_after": slope_after,
            "drop": drop, "n_steps": int(x.size)}


def onset_test(x: Sequence[float], y: Sequence[float], config: PhaseConfig = PhaseConfig()) -> dict:
    """Where a rise starts: the same hinge-vs-line test, detected when the hinge fits significantly better and the
    slope turns up at the breakpoint (b2 > 0) into a rise (b1 + b2 > 0). The breakpoint and its bootstrap interval
    are the onset estimate. Used on the exploration metric over the whole run, so the onset may come before,
    at or after the consolidation end (the paper's phases overlap)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    res = _hinge_vs_line(x, y, config, np.random.default_rng(config.seed + 3))
    if res is None:
        return {"tested": False, "detected": False, "reason": f"need at least {2 * config.min_segment} steps"}
    fit = res.pop("fit")
    res.pop("f_null")
    slope_before, slope_after = fit["b1"], fit["b1"] + fit["b2"]
    detected = bool(res["p_value"] < config.alpha and fit["b2"] > 0 and slope_after > 0)
    return {"tested": True, "detected": detected, **res, "slope_before": slope_before, "slope_after": slope_after,
            "n_steps": int(x.size)}


def _phi_columns(r: np.ndarray) -> np.ndarray:
    """Kendall-corrected lag-1 phi (`_ar1_innovations` without steps: clipped to [0, 0.95], 0 for a non-positive
    autocorrelation) of each column of a residual matrix (n, B)."""
    r = r - r.mean(axis=0)
    denom = np.maximum((r * r).sum(axis=0), 1e-300)
    raw = (r[1:] * r[:-1]).sum(axis=0) / denom
    return np.where(raw > 0, np.clip(raw + (1 + 3 * raw) / r.shape[0], 0.0, 0.95), 0.0)


def _slope_se(x: np.ndarray, ys: np.ndarray, min_segment: int) -> tuple[np.ndarray, np.ndarray]:
    """OLS slopes of the columns of ys (n, B) against x and their standard errors under AR(1) noise,
    sqrt(s^2 / Sxx * (1 + phi) / (1 - phi)): s^2 and phi (Kendall's correction, `_phi_columns`) from the residuals
    of each column's best one-breakpoint hinge (`min_segment` points per side; of the line when n <= 6 or no
    breakpoint fits), scaled by sqrt(n / (n - k)) for the k fitted parameters, s^2 = SSE / (n - 2). The trend
    test's studentisation: one function for the data and for every bootstrap replicate."""
    n = x.size
    xc = x - x.mean()
    sxx = float(xc @ xc)
    centred = ys - ys.mean(axis=0)
    slopes = (xc @ centred) / sxx
    taus, bases = _hinge_bases(x, min_segment)
    if taus.size and n > 6:
        proj = _project(bases, ys)
        best = np.argmax((proj * proj).sum(axis=1), axis=0)  # the smallest SSE
        cols = np.arange(ys.shape[1])
        resid, k = ys - np.einsum("bnk,bk->nb", bases[best], proj[best, :, cols]), 3
    else:
        resid, k = centred - np.outer(xc, slopes), 2
    phi = _phi_columns(resid)
    s2 = (resid * resid).sum(axis=0) / (n - k) * n / (n - 2)
    return slopes, np.sqrt(np.maximum(s2, 1e-300) / sxx * (1 + phi) / (1 - phi))


def trend_test(x: Sequence[float], y: Sequence[float], config: PhaseConfig = PhaseConfig()) -> dict:
    """OLS slope with an AR(1) sieve bootstrap-t interval; detected when the interval is above 0.

    Replicates: the fitted line plus an AR(1) sieve resample of the consolidation test's noise model
    (`_noise_model`: bent-cable residuals, mean-unbiased phi), so the bootstrap world drifts as much as the data
    do. Studentisation (`_slope_se`): the same function on the data and on each replicate, an AR(1)-adjusted
    standard error from the best hinge's residuals with Kendall's phi, so the interval carries the uncertainty
    of phi and of the noise level, which a percentile interval does not. Both halves matter under drift (AR(1)
    phi = 0.6, 51-60 steps, one-sided nominal 2.5%): replicates with Kendall's phi (biased low, 0.48 for 0.6)
    and studentised from the line's residuals while the data were studentised from the hinge's called 6% of
    flat series a rise (12% over 19 steps); with both fixed 2.8% (5% over 19 steps); `benchmarks/phase_verdicts.py`.
    Interval [b - t*_hi se, b - t*_lo se]; one-sided p = (1 + #{t* >= b / se}) / (1 + n_boot)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.size
    if n < 4:
        return {"tested": False, "detected": False, "reason": "fewer than 4 steps"}
    rng = np.random.default_rng(config.seed + 1)
    _, _, fitted = _line_fit(x, y)
    b, s = _slope_se(x, y[:, None], config.min_segment)
    slope, se = float(b[0]), float(s[0])
    residuals, phi, innovations = _noise_model(x, y, config.min_segment)
    ys = fitted[:, None] + _ar1_series(residuals, phi, innovations, rng.random((n, config.n_boot)))
    b_star, se_star = _slope_se(x, ys, config.min_segment)
    t_star = (b_star - slope) / se_star
    t_lo, t_hi = np.quantile(t_star, [(1 - config.level) / 2, (1 + config.level) / 2])
    lo, hi = float(slope - t_hi * se), float(slope - t_lo * se)
    p_value = float((1 + np.sum(t_star >= slope / se)) / (1 + config.n_boot))
    return {"tested": True, "detected": bool(lo > 0), "slope": slope, "slope_interval": [lo, hi],
            "slope_se": se, "p_value": p_value, "n_steps": int(n), "first_step": float(x[0]),
            "last_step": float(x[-1]), "noise_ar1": phi}


# ---------------------------------------------------------------- order of consolidation

CLASS_COLUMNS = {"execution": "rel_ppl_execution", "planning": "rel_ppl_planning", "reference": "rel_ppl_reference"}
ORDERS = ("execution-first", "planning-first", "simultaneous", "none", "untestable")
VERDICTS = ("two-phase", "consolidation-only", "reversed", "no-order", "exploration-only", "none", "inconclusive")
# exploration columns in order of preference, with the measure each stands for
EXPLORATION_COLUMNS = (("strategy_entropy", "strategy"), ("semantic_entropy_excl_format", "planning-phrases"),
                       ("semantic_entropy", "planning-phrases"))
_VERDICT_TABLE = {("execution-first", True): "two-phase", ("execution-first", False): "consolidation-only",
                  ("planning-first", True): "reversed", ("planning-first", False): "reversed",
                  ("simultaneous", True): "no-order", ("simultaneous", False): "no-order",
                  ("none", True): "exploration-only", ("none", False): "none",
                  ("untestable", True): "inconclusive", ("untestable", False): "inconclusive"}


# orders whose verdict the exploration test decides (a row of the table with two different verdicts):
# order -> (verdict if detected, verdict if not)
EXPLORATION_DECIDES = {o: (_VERDICT_TABLE[(o, True)], _VERDICT_TABLE[(o, False)]) for o in ORDERS
                       if _VERDICT_TABLE[(o, True)] != _VERDICT_TABLE[(o, False)]}


def _ar1_series(residuals: np.ndarray, phi: float, innovations: np.ndarray, u: np.ndarray) -> np.ndarray:
    """AR(1) sieve series (n, B) driven by uniform draws u (n, B): the same u for several classes gives paired
    resamples. r*_0 = residual[u_0], r*_t = phi r*_(t-1) + innovation[u_t]; phi = 0 is the residual bootstrap."""
    n = residuals.size
    if phi == 0.0:
        return residuals[np.minimum((u * n).astype(int), n - 1)]
    draws = innovations[np.minimum((u * innovations.size).astype(int), innovations.size - 1)]
    out = np.empty(u.shape)
    out[0] = residuals[np.minimum((u[0] * n).astype(int), n - 1)]
    for t in range(1, n):
        out[t] = phi * out[t - 1] + draws[t]
    return out


_CABLE_HALF_WIDTHS = (0.0, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3)  # bend half-widths, share of the step span
_CABLE_CACHE: dict = {}


def _cable_bases(x: np.ndarray, min_segment: int) -> np.ndarray:
    """Orthonormal bases (G*T, n, 3) of the bent-cable designs [1, x, q(x; tau, g)] for every candidate breakpoint
    tau (as in `_hinge_bases`) and half-width g in `_CABLE_HALF_WIDTHS` times the step span, where q is the hinge
    (x - tau)+ with its corner replaced by the parabola (x - tau + g)^2 / (4 g) on [tau - g, tau + g]
    (Chiu, Lockhart and Routledge 2006, the bent cable). Cached by (x, min_segment)."""
    key = (x.tobytes(), int(min_segment))
    hit = _CABLE_CACHE.get(key)
    if hit is not None:
        return hit
    taus, bases = _hinge_bases(x, min_segment)
    span = float(x[-1] - x[0]) if x.size else 0.0
    out = [bases]
    for frac in _CABLE_HALF_WIDTHS[1:]:
        g = frac * span
        for tau in taus:
            q = np.where(x < tau - g, 0.0, np.where(x > tau + g, x - tau, (x - tau + g) ** 2 / (4 * g)))
            out.append(np.linalg.qr(np.column_stack([np.ones(x.size), x, q]))[0][None])
    stacked = np.concatenate(out) if taus.size else np.zeros((0, x.size, 3))
    if len(_CABLE_CACHE) >= 8:
        _CABLE_CACHE.pop(next(iter(_CABLE_CACHE)))
    _CABLE_CACHE[key] = stacked
    return stacked


def bent_cable_fit(x: np.ndarray, y: np.ndarray, min_segment: int) -> np.ndarray:
    """Least-squares bent-cable fit (`_cable_bases`: breakpoint and bend half-width searched on their grids;
    half-width 0 is the hinge): the fitted values, shape (n,). A curve that bends gradually (an exponential fall)
    gets a rounded bend of about its width, a sharp bend stays sharp."""
    bases = _cable_bases(x, min_segment)
    if bases.shape[0] == 0:
        return _line_fit(x, y)[2]
    proj = np.einsum("gnk,n->gk", bases, y)
    best = int(np.argmax((proj * proj).sum(axis=1)))
    return bases[best] @ proj[best]


def _hinge_fits(x: np.ndarray, ys: np.ndarray, min_segment: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hinge fits of every column of ys (n, B) at every candidate breakpoint: (taus (T,), residual sums of squares
    (T, B), coefficients b0, b1, b2 (T, 3, B))."""
    taus, bases, r_inv = _hinge_setup(x, min_segment)
    proj = _project(bases, ys)
    coef = np.einsum("tkj,tjb->tkb", r_inv, proj)
    return taus, (ys * ys).sum(axis=0)[None, :] - (proj * proj).sum(axis=1), coef


def fall_end_taus(x: np.ndarray, ys: np.ndarray, min_segment: int) -> np.ndarray:
    """For each column of ys (n, B): the least-squares hinge breakpoint among those whose fit falls before it and
    flattens after it (b1 < 0, b2 > 0: the end of a fall, the shape `consolidation_test` requires); +inf for a
    column where no breakpoint gives that shape (it does not consolidate)."""
    taus, sse, coef = _hinge_fits(x, ys, min_segment)
    if taus.size == 0:
        return np.full(ys.shape[1], np.inf)
    sse = np.where((coef[:, 1] < 0) & (coef[:, 2] > 0), sse, np.inf)
    best = np.argmin(sse, axis=0)
    return np.where(np.isfinite(sse[best, np.arange(ys.shape[1])]), taus[best], np.inf)


def consolidation_draws(x: np.ndarray, ys: np.ndarray, f_null: np.ndarray | None, alpha: float,
                        min_segment: int) -> np.ndarray:
    """Each bootstrap draw of a class curve (the columns of ys, (n, B)) decided by the class test's own rule
    (`consolidation_test`): it consolidates when its hinge beats a line (F against the class's null F draws
    `f_null`, sorted, p < alpha), falls before its best breakpoint and flattens after (b1 < 0, b2 > 0). Returns
    (B,) breakpoints, +inf where a draw does not consolidate (all +inf without a null: the test could not run).
    So the uncertainty of WHETHER a class consolidates reaches the order's differences, not only that of when."""
    if f_null is None or f_null.size == 0:
        return np.full(ys.shape[1], np.inf)
    taus, sse_h, coef = _hinge_fits(x, ys, min_segment)
    if taus.size == 0:
        return np.full(ys.shape[1], np.inf)
    best = np.argmin(sse_h, axis=0)
    cols = np.arange(ys.shape[1])
    sse_l = _sse_line(x, ys)
    scale = np.maximum(sse_l, 1e-300)
    f = (sse_l - sse_h[best, cols]) / np.maximum(sse_h[best, cols], 1e-12 * scale)
    b1, b2 = coef[best, 1, cols], coef[best, 2, cols]
    ok = (_p_values(f_null, f) < alpha) & (b1 < 0) & (b2 > 0)
    return np.where(ok, taus[best], np.inf)


def joint_curve_draws(x: np.ndarray, curves: Mapping[str, np.ndarray], config: PhaseConfig, *,
                      raw_lag1: float | None = None, bent: Mapping[str, bool] | None = None) -> dict[str, np.ndarray]:
    """Paired bootstrap draws of each class curve for the order's intervals (module docstring, 2): every curve's
    AR(1) sieve resample uses the same random draws. Returns name -> (n, n_boot) curves; `consolidation_draws`
    decides each (or `fall_end_taus` gives each draw's end of fall whatever its significance).
    bent: name -> whether the class consolidates; one that does not is resampled around its straight-line fit
    (the model its test chose), not around a bend fitted to its noise: around that bend the draws "consolidated"
    far more often than the test's level (a straight planning fall under noise sd 0.02 left a quarter of the
    online detector's planted sequences without an order for 5-20 steps). Default: every class bent.

    Centre of the resamples: the bent-cable fit (`bent_cable_fit`), not the hinge: resampling around a hinge's
    sharp corner gives breakpoints that stay at that corner, so for a smooth true curve (an exponential fall) the
    interval came out at about half the breakpoint's sampling spread. Nor a smoothing spline (the choice until
    v2.1): it blurred a sharp bend over the whole curve at high noise, so resamples found ends of fall anywhere
    (a linear fall ending at step 40, sd 0.04: intervals from step 3 to 51) and ordered runs got `no-order`; and
    under drift it followed the drift, leaving residuals with a third less spread and phi 0.2 instead of 0.6.
    Noise: the residuals of the best hinge with their mean-unbiased AR(1) phi (`_ar1_innovations`), the noise
    model of the consolidation test (tests/test_dynamics_phases.py::test_tau_interval_covers_the_sampling_spread).
    """
    u = np.random.default_rng(config.seed + 5).random((x.size, config.n_boot))
    out = {}
    for name, y in curves.items():
        residuals, phi, innovations = _noise_model(x, y, config.min_segment, raw_lag1)
        centre = bent_cable_fit(x, y, config.min_segment) if (bent or {}).get(name, True) else _line_fit(x, y)[2]
        out[name] = centre[:, None] + _ar1_series(residuals, phi, innovations, u)
    return out


def _quantiles(draws: np.ndarray, level: float) -> list[float]:
    qs = [(1 - level) / 2, (1 + level) / 2]
    with np.errstate(invalid="ignore"):  # draws may hold +inf (a resample that does not consolidate)
        bounds = np.quantile(draws, qs)
        # interpolating into the +inf draws gives NaN: that bound is then the draw itself (+inf: "may never")
        exact = np.quantile(draws, qs, method="inverted_cdf")
    return [float(e if np.isnan(b) else b) for b, e in zip(bounds, exact, strict=True)]


def _difference(a: float, b: float, da: np.ndarray, db: np.ndarray, level: float,
                names: tuple[str, str] = ("first", "second")) -> dict:
    """tau_a - tau_b with its interval from paired draws; +inf = never consolidates (later than any finite tau; two
    +inf count as a tie); NaN = unknown (an end of fall within the burn-in): a tie with anything. The point value
    is None when either class does not consolidate, but the direction
    always comes from the draws: a class whose own test fails near its threshold consolidates in some draws, and
    those draws say where. direction: "later" (interval above 0), "earlier" (below 0) or "unresolved"."""
    with np.errstate(invalid="ignore"):
        d = da - db
    d = np.where(np.isnan(d), 0.0, d)
    lo, hi = _quantiles(d, level)
    direction = "later" if lo > 0 else "earlier" if hi < 0 else "unresolved"
    out = {"value": float(a - b) if np.isfinite(a) and np.isfinite(b) else None, "interval": [lo, hi],
           "direction": direction}
    if np.isnan(a) or np.isnan(b):
        out["note"] = "a class's end of fall lies within the burn-in: unknown, a tie in the draws"
    elif not (np.isfinite(a) and np.isfinite(b)):
        out["note"] = (f"neither {names[0]} nor {names[1]} consolidates in its own test" if np.isinf(a) and np.isinf(b)
                       else f"only {names[1] if np.isinf(a) else names[0]} consolidates in its own test; "
                            f"{names[0] if np.isinf(a) else names[1]} counts as later (+inf, written as null)")
    return out


# noise ratios past which an execution-first order carries a caution (`benchmarks/phase_verdicts.py --noise
# noisy-planning --reference-noise F`: classes settling together read execution-first in 10-18% of curve sets when
# planning is 8 times as noisy as execution, 0-4% at 2 times, the validation's and the lab's)
QUIET_REFERENCE = 0.7  # reference / planning
NOISY_PLANNING = 4.0  # planning / execution


def order_test(x: Sequence[float], curves: Mapping[str, Sequence[float]], config: PhaseConfig = PhaseConfig(), *,
               curve_draws: Mapping[str, np.ndarray] | None = None, interval_method: str | None = None) -> dict:
    """Order of consolidation of the execution, planning and reference classes (module docstring, 1-2).

    `curves` maps "execution", "planning", "reference" to relative-perplexity curves over the steps `x` (all
    finite); a class whose end of fall lies within the burn-in (`burn_in`) does not count as consolidating (its
    test is marked `within_burn_in`). `curve_draws` (name -> (n, B) curves over `x`) replaces the joint AR(1)
    sieve draws (`joint_curve_draws`; e.g. run-resampling draws of the mean curves when pooling seeds). Every
    draw of every class is decided by the class test's rule against that class's null (`consolidation_draws`)
    and the burn-in; the taus' and differences' intervals come from those decisions.
    Returns {"order", "consolidates", "consolidates_in_draws", "tau_exec", "tau_plan", "tau_ref", "intervals",
    "difference", "direction", "tests", "interval_method", "noise_sd" (each class curve's residual sd, in
    relative-perplexity units), "reference_to_planning_noise", "caution" (only for an execution-first order whose
    reference class is quieter than planning, ratio < `QUIET_REFERENCE`, or whose planning curve is more than
    `NOISY_PLANNING` times as noisy as execution's), ...}.
    """
    x = np.asarray(x, float)
    ys = {k: np.asarray(curves[k], float) for k in CLASS_COLUMNS}
    skip = burn_in(config, x.size)
    # each class at alpha / 2: the verdict states whether execution and whether planning consolidate, so the
    # chance that either is a false detection stays at alpha
    class_config = replace(config, alpha=config.alpha / 2)
    # each class curve's noise residuals, once: the shared phi and the noise report below both read them
    residuals = {k: _noise_model(x, y, config.min_segment)[0] for k, y in ys.items()}
    raw = _shared_lag1(residuals.values())
    tests = {k: consolidation_test(x, y, class_config, raw_lag1=raw, keep_null=True) for k, y in ys.items()}
    nulls = {k: t.pop("f_null", None) for k, t in tests.items()}
    for t in tests.values():  # an end of fall on a burn-in step: a start-up transient, not claimed
        if t["detected"] and within_burn_in(t["breakpoint_step"], x, skip):
            t.update(detected=False, within_burn_in=True)
    cons = {k: bool(t["detected"]) for k, t in tests.items()}
    if curve_draws is None:
        # resampled around its bend: a class that consolidates, or one whose end of fall the burn-in set aside
        bent = {k: cons[k] or bool(tests[k].get("within_burn_in")) for k in ys}
        curve_draws = joint_curve_draws(x, ys, config, raw_lag1=raw, bent=bent)
        interval_method = interval_method or ("joint AR(1) sieve bootstrap around each class's fit: bent cable "
                                              "where it consolidates, straight line where not")
    tau = {k: float(tests[k]["breakpoint_step"]) if cons[k] else np.inf for k in ys}
    # the same rules on every draw: the class test against its own null; an end of fall within the burn-in is
    # UNKNOWN (NaN: a tie with anything in the differences), not "never": a fall that ended that early cannot be
    # told from a start-up transient, and reading it as never would make it "later" than every other class
    draws = {}
    for k in ys:
        d = consolidation_draws(x, np.asarray(curve_draws[k], float), nulls[k], class_config.alpha,
                                config.min_segment)
        draws[k] = np.where(within_burn_in(d, x, skip), np.nan, d)
    # the point estimate likewise: a class set aside by the burn-in is unknown in the differences
    tau_cmp = {k: np.nan if tests[k].get("within_burn_in") else tau[k] for k in ys}
    # an order needs BOTH differences on the same side of 0: an intersection-union test, which holds level alpha
    # when each difference is tested one-sided at alpha, i.e. with a two-sided 1 - 2 alpha interval
    d_level = 1 - 2 * config.alpha
    d_pe = _difference(tau_cmp["planning"], tau_cmp["execution"], draws["planning"], draws["execution"], d_level,
                       ("planning", "execution"))
    d_pr = _difference(tau_cmp["planning"], tau_cmp["reference"], draws["planning"], draws["reference"], d_level,
                       ("planning", "the reference class"))
    if not (cons["execution"] or cons["planning"]):
        order = "none"
    # an order names a class that consolidates first: its own test must say so (the draws alone cannot)
    elif d_pe["direction"] == d_pr["direction"] == "later" and cons["execution"]:
        order = "execution-first"
    elif d_pe["direction"] == d_pr["direction"] == "earlier" and cons["planning"]:
        order = "planning-first"
    else:
        order = "simultaneous"
    short = {"execution": "tau_exec", "planning": "tau_plan", "reference": "tau_ref"}
    out: dict = {"order": order, "consolidates": cons,
                 "consolidates_in_draws": {k: float(np.mean(np.isfinite(d))) for k, d in draws.items()},
                 "burn_in_draws": {k: float(np.mean(np.isnan(d))) for k, d in draws.items()}}
    intervals: dict = {}
    for k, name in short.items():
        out[name] = float(tau[k]) if cons[k] else None
        known = draws[k][~np.isnan(draws[k])]  # draws ending within the burn-in are unknown: not in the interval
        intervals[name] = _quantiles(known, config.level) if cons[k] and known.size else None
    intervals["plan_minus_exec"], intervals["plan_minus_ref"] = d_pe.pop("interval"), d_pr.pop("interval")
    out["intervals"] = intervals
    out["levels"] = {"tau": config.level, "differences": d_level}
    out["difference"] = {"plan_minus_exec": d_pe.pop("value"), "plan_minus_ref": d_pr.pop("value")}
    out["direction"] = {"plan_minus_exec": d_pe, "plan_minus_ref": d_pr}
    # each class curve's noise (sd of its bent-cable residuals, `_noise_model`): the reference class guards
    # "planning consolidates later" only when it is about as noisy as planning (docs/dynamics.md, "Known limits")
    noise = {k: float(np.std(r)) for k, r in residuals.items()}
    out["noise_sd"] = noise
    ratio = noise["reference"] / noise["planning"] if noise["planning"] > 0 else None
    out["reference_to_planning_noise"] = ratio
    cautions = []
    if order == "execution-first" and ratio is not None and ratio < QUIET_REFERENCE:
        cautions.append(f"the reference class is quieter than planning (noise ratio {ratio:.2f})")
    if order == "execution-first" and noise["execution"] > 0 and noise["planning"] / noise["execution"] > NOISY_PLANNING:
        cautions.append(f"planning's curve is {noise['planning'] / noise['execution']:.1f} times as noisy as "
                        "execution's")
    if cautions:
        out["caution"] = ("; ".join(cautions) + ": a noisier curve's end of fall is estimated later, so this order "
                          "may come from planning's noise alone (docs/dynamics.md, Known limits)")
    out["tests"] = tests
    out["interval_method"] = interval_method or "given draws"
    out["burn_in_steps"] = int(skip)
    out["support"] = _order_support(order, tests, {"plan_minus_exec": (d_pe, draws["planning"], draws["execution"]),
                                                   "plan_minus_ref": (d_pr, draws["planning"], draws["reference"])})
    return out


# ---------------------------------------------------------------- exploration

def runs_trend_test(x: np.ndarray, ys: np.ndarray, window: np.ndarray, config: PhaseConfig = PhaseConfig()) -> dict:
    """Trend of a metric over several runs (seeds) with the run as the unit: each run's OLS slope against step over
    the `window` steps (its finite values there, at least 3), then a Student t interval over the runs' slopes,
    mean +- t(level, n - 1) sd / sqrt(n), detected when it lies above 0; one-sided p = P(T_(n-1) >= mean / se).
    x: (n_steps,) the shared steps; ys: (n_runs, n_steps). Why not resampling runs: with 3 runs the percentile
    bootstrap of the slopes is far too narrow (planted flat entropy called rising in 10-14% of 3-run pools at the
    one-sided 2.5% level; `python benchmarks/phase_verdicts.py 50 199 --pool 3`), as a bootstrap from 3 units must be.
    Returns trend_test's keys (tested, detected, slope, slope_interval, p_value, n_steps, ...) and n_runs."""
    from scipy import stats

    sel = np.isin(x, window)
    slopes = []
    for y in ys[:, sel]:
        ok = np.isfinite(y)
        if ok.sum() >= 3:
            slopes.append(_line_fit(x[sel][ok], y[ok])[1])
    n = len(slopes)
    base = {"n_steps": int(sel.sum()), "first_step": float(x[sel][0]), "last_step": float(x[sel][-1]),
            "n_runs": n, "interval_method": "Student t over the runs' slopes (the run as the unit)"}
    if n < 2:
        return {"tested": False, "detected": False, "slope": None, "slope_interval": None, "p_value": None,
                "reason": f"{n} runs with 3 or more values in the window, need 2", **base}
    m, sd = float(np.mean(slopes)), float(np.std(slopes, ddof=1))
    se = sd / np.sqrt(n)
    q = float(stats.t.ppf((1 + config.level) / 2, n - 1))
    p = float(stats.t.sf(m / se, n - 1)) if se > 0 else (0.0 if m > 0 else 1.0)
    lo, hi = m - q * se, m + q * se
    return {"tested": True, "detected": bool(lo > 0), "slope": m, "slope_interval": [lo, hi], "p_value": p,
            "run_slopes": slopes, **base}


def entropy_rows(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a non-negative count matrix (B, K); 0 for an all-zero row."""
    total = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, total, out=np.zeros_like(counts, dtype=float), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1) + 0.0


def integer_counts(counts: np.ndarray) -> np.ndarray:
    """Counts as whole occurrences: rows of fractional counts (a multi-part response's label parts at 1/k each,
    `hicra.dynamics.metrics.strategy_counts`) are scaled by the smallest k <= 12 that makes every count whole;
    otherwise rounded. Scaling leaves the plug-in entropy unchanged."""
    counts = np.asarray(counts, float)
    for k in range(1, 13):
        scaled = counts * k
        if np.allclose(scaled, np.round(scaled), atol=1e-6):
            return np.round(scaled)
    return np.round(counts)


# ln of the tail probability a rarefied entropy leaves out per category (`rarefied_entropy`): e^-40 = 4e-18
_TAIL_LOG_BOUND = 40.0


def rarefied_entropy(counts: np.ndarray, m) -> np.ndarray:
    """Expected plug-in entropy (nats) of m occurrences drawn without replacement from each row of a whole-number
    count matrix (B, K), m a scalar or (B,) and at most each row's total: E[H] = -sum_k sum_j P(X_k = j) (j/m)
    log(j/m), X_k hypergeometric (row total, count k, m). The plug-in entropy of n occurrences is biased low by
    about (K - 1) / 2n, so when the number of occurrences changes between steps (longer responses, more
    phrases) the plug-in value moves with it; every step's entropy at a common m (rarefaction: Sanders 1968,
    Hurlbert 1971, here for entropy) compares like with like.

    Only the j within t of the mean m c / n enter, t = L/3 + sqrt(L^2/9 + 2 L sigma^2) with sigma^2 = m p (1 - p),
    p = c / n and L = `_TAIL_LOG_BOUND` (40): by Bernstein's inequality, which holds for draws without
    replacement (Hoeffding 1963, Theorem 4), the j left out carry a probability below 2 e^-40 = 8.5e-18 for each
    category, so the value moves by less than 1e-17 per category (the log-gamma sums' own rounding, about 1e-12
    relative at 2,000 occurrences, is far larger), and a row costs O(K + sum_k sqrt(m c_k / n)) instead of
    O(sum_k min(c_k, m)); at m = n only j = c is left."""
    from scipy.special import gammaln

    counts = np.atleast_2d(np.asarray(counts, float))
    m = np.broadcast_to(np.floor(np.asarray(m, float)), (counts.shape[0],))
    totals = counts.sum(axis=1)
    if np.any(m > totals + 1e-9) or np.any(m < 1):
        raise ValueError("rarefied_entropy: need 1 <= m <= the row's total")
    out = np.empty(counts.shape[0])
    bound = _TAIL_LOG_BOUND
    for r, (row, n, mm) in enumerate(zip(counts, totals, m, strict=True)):
        c = row[row > 0]
        share = c / n
        mean = mm * share
        t = bound / 3 + np.sqrt(bound ** 2 / 9 + 2 * bound * mm * share * (1 - share))
        # j runs over the support, max(1, m - (n - c))..min(c, m) (j = 0 adds nothing), within t of the mean
        low = np.maximum(np.maximum(1.0, mm - (n - c)), np.ceil(mean - t))
        top = np.minimum(np.minimum(c, mm), np.floor(mean + t))
        width = np.maximum(top - low + 1, 0).astype(int)
        k = np.repeat(np.arange(c.size), width)
        j = np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width) + np.repeat(low, width)
        ck = c[k]
        log_p = (gammaln(ck + 1) - gammaln(j + 1) - gammaln(ck - j + 1)
                 + gammaln(n - ck + 1) - gammaln(mm - j + 1) - gammaln(n - ck - mm + j + 1)
                 - (gammaln(n + 1) - gammaln(mm + 1) - gammaln(n - mm + 1)))
        ok = mm - j <= n - ck  # otherwise P(X = j) = 0
        q = j / mm
        out[r] = -float(np.sum(np.where(ok, np.exp(np.where(ok, log_p, 0.0)) * q * np.log(q), 0.0)))
    return out + 0.0


def _multiplicities(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) counts of each of n items in n draws with replacement."""
    flat = rng.integers(0, n, (n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)


PAIR_MIN_PROBLEMS = 10  # fewer problems shared by every step (or fewer than half of all): each step draws its own


def _problem_design(groups: Mapping[float, tuple[Sequence[str], np.ndarray]]):
    """The bootstrap-over-problems design shared by `problem_bootstrap_trend` and `problem_bootstrap_mean_trend`.

    groups: step -> (prompt_ids (n_s,), per-response rows (n_s, K)). Returns (steps (S,), per_step, problems,
    paired): per_step[i] = (problem ids (P_i,), per-problem row sums (P_i, K)), restricted to the problems every
    step shares, in one order, when the test pairs (module docstring, 3; `PAIR_MIN_PROBLEMS`)."""
    steps = np.array(sorted(groups), float)
    per_step = []
    for s in steps:
        ids, rows = groups[s]
        uniq, inv = np.unique(np.asarray(ids, dtype=str), return_inverse=True)
        rows = np.asarray(rows, float).reshape(len(inv), -1)
        g = np.zeros((uniq.size, rows.shape[1]))
        np.add.at(g, inv, rows)
        per_step.append((uniq, g))
    every = set(per_step[0][0].tolist()).intersection(*(u.tolist() for u, _ in per_step[1:])) if per_step else set()
    seen = set().union(*(u.tolist() for u, _ in per_step)) if per_step else set()
    paired = len(every) >= PAIR_MIN_PROBLEMS and 2 * len(every) >= len(seen)
    problems = {"paired": paired, "shared": len(every), "left_out": len(seen) - len(every) if paired else 0,
                "all": len(seen)}
    if paired:  # the shared problems only, in one order at every step
        shared = np.array(sorted(every))
        per_step = [(shared, g[np.searchsorted(u, shared)]) for u, g in per_step]
    return steps, per_step, problems, paired


def _problem_replicates(per_step, paired: bool, rng: np.random.Generator, n_boot: int) -> list[np.ndarray]:
    """Each step's (n_boot, K) resampled row sums: one problem draw for all steps when `paired`, else one per step."""
    drawn = []
    if paired:
        w = _multiplicities(rng, per_step[0][0].size, n_boot)
    for uniq, g in per_step:
        if not paired:
            w = _multiplicities(rng, uniq.size, n_boot)
        drawn.append(w @ g)
    return drawn


def _problem_slope_interval(slope: float, draws: np.ndarray, config: PhaseConfig,
                            interval: str) -> tuple[float, float, float]:
    """(lo, hi, one-sided p) of a slope from its bootstrap draws (`problem_bootstrap_trend`)."""
    from hicra.stats import basic_draws

    if interval == "percentile":
        dist = draws[np.isfinite(draws)]
    else:
        dist = basic_draws(draws, slope, centre=float(np.mean(draws)) if interval == "centred" else None)
    lo, hi = (float(v) for v in np.quantile(dist, [(1 - config.level) / 2, (1 + config.level) / 2]))
    return lo, hi, float((1 + np.sum(dist <= 0)) / (1 + dist.size))


# intervals that leave one problem out of every step: they need a paired design, else the centred bootstrap
_LEAVE_ONE_OUT = ("jackknife", "two-way", "two-way-residuals")
_INTERVAL_NAMES = {"centred": "basic interval centred on the draws' mean", "basic": "basic interval",
                   "percentile": "percentile interval",
                   "jackknife": "delete-one-problem jackknife standard error, Student t interval",
                   "two-way": "delete-one-problem jackknife standard error plus the checkpoint-wide variance of the "
                              "steps' values beyond problem sampling, Welch-Satterthwaite t interval",
                   "two-way-residuals": "delete-one-problem jackknife standard error plus the checkpoint-wide "
                                        "variance of the steps' residuals beyond problem sampling, "
                                        "Welch-Satterthwaite t interval"}


def _jackknife_interval(steps: np.ndarray, slope: float, loo: np.ndarray, config: PhaseConfig,
                        values: np.ndarray | None = None,
                        residual_split: bool = False) -> tuple[float, float, float, int]:
    """(lo, hi, one-sided p, n used) of a slope from its leave-one-problem-out values `loo` (S, P): each column is
    every step's value without one problem (non-finite columns are left out). se^2 = (n - 1)/n sum (s_i - mean)^2
    over the n columns' slopes s_i (Quenouille-Tukey delete-1 jackknife); interval slope +- t(level, df) se;
    p = P(T_df >= slope / se), df = n - 1.

    With `values` (S,), each step's value on all problems (interval "two-way"), the checkpoint-wide part of the
    noise is added: the variance of `values` around their OLS line, RSS / (S - 2), minus what problem sampling
    explains at each step (the mean over steps of the per-step jackknife variance of `loo`'s rows), floored at 0,
    over Sxx; se^2 = se_jack^2 + that, with Welch-Satterthwaite df. `residual_split=True` ("two-way-residuals")
    subtracts instead the jackknife variance of each step's residual (each column's residuals around its own
    line), meant for answers that persist between steps; it did not lower the false rises of that case (6.7% either
    way, docs/dynamics.md), whose checkpoint shocks persist too, and is kept as an option."""
    from scipy import stats

    ok = np.isfinite(loo).all(axis=0)
    s_i = _slopes(steps, loo[:, ok])
    n = int(s_i.size)
    if n < 2:
        return float("nan"), float("nan"), 1.0, n
    a = float((n - 1) / n * np.sum((s_i - s_i.mean()) ** 2))
    b, df = 0.0, float(n - 1)
    if values is not None and steps.size > 2:
        xc = steps - steps.mean()
        resid = values - _line_fit(steps, values)[2]
        rows = loo[:, ok]
        if residual_split:  # each column's residuals around its own line
            rows = rows - (rows.mean(axis=0) + np.outer(xc, _slopes(steps, rows)))
        v_steps = (n - 1) / n * np.sum((rows - rows.mean(axis=1, keepdims=True)) ** 2, axis=1)  # (S,)
        explained = float(v_steps.sum()) if residual_split else float(v_steps.mean()) * (steps.size - 2)
        b = max(0.0, float(resid @ resid) - explained) / (steps.size - 2) / float(xc @ xc)
        if a + b > 0:
            df = (a + b) ** 2 / (a**2 / (n - 1) + b**2 / (steps.size - 2))
    se = float(np.sqrt(a + b))
    q = float(stats.t.ppf((1 + config.level) / 2, df))
    p = float(stats.t.sf(slope / se, df)) if se > 0 else (0.0 if slope > 0 else 1.0)
    return slope - q * se, slope + q * se, p, n


def _pairing_text(problems: dict, jackknife: bool = False) -> str:
    if jackknife:
        return (f"each problem left out of every step in turn, on the {problems['shared']} problems every step has"
                + (f" ({problems['left_out']} of {problems['all']} left out)" if problems["left_out"] else ""))
    if problems["paired"]:
        return (f"the same draw at every step, on the {problems['shared']} problems every step has"
                + (f" ({problems['left_out']} of {problems['all']} left out)" if problems["left_out"] else ""))
    return f"drawn within each step: {problems['shared']} of {problems['all']} problems at every step"


def problem_bootstrap_trend(groups: Mapping[float, tuple[Sequence[str], np.ndarray]],
                            config: PhaseConfig = PhaseConfig(), *, interval: str = "two-way") -> dict:
    """Trend of an entropy over steps with resampling over problems: a jackknife (default) or a bootstrap.

    groups: step -> (prompt_ids (n_s,), counts (n_s, K)): one row per response, K categories (phrases or
    strategy labels) shared by all steps. Each step's value is the entropy of its summed counts at a common
    number of occurrences m, the smallest step's (`rarefied_entropy`), so a step with more occurrences (longer
    responses) does not read as more diverse; the statistic is the OLS slope of these values against step.

    Pairing: when at least `PAIR_MIN_PROBLEMS` problems, and at least half of all problems, appear at every step
    (checkpoints evaluated on fixed problems), the test reads only those shared problems and a replicate leaves
    out, or draws, them for all steps at once (paired); the problems missing at some step are left out, and
    their number reported ("problems"). Otherwise every step keeps all its problems and draws its own.
    Each replicate recomputes every step's entropy at that replicate's smallest step total (replicates with a
    step of < 2 occurrences are left out and counted).

    Interval (`interval`, level `config.level`): "two-way" (the default since session 29; paired designs): the
    jackknife below plus the checkpoint-wide variance of the steps' values beyond problem sampling
    (`_jackknife_interval`): on 300 fresh runs per case it read no-change runs as rises in 1.3-2.7% and
    checkpoint-wide random shifts in 2.7% (the jackknife alone 9.0%), power 99.7-100% (`python
    benchmarks/text_only_exploration.py 300 199 --seed-offset 2000 --interval two-way|jackknife`).
    "jackknife": the delete-one-problem jackknife, se^2 = (P - 1)/P sum (s_i - mean s)^2 over the slopes s_i without problem i,
    interval slope +- t(level, P - 1) se, p = P(T_(P-1) >= slope / se). Over 300 simulated stationary runs the
    bootstrap's standard error was 6-9% below the slopes' actual spread (a resample repeats problems, which
    concentrates the counts), the jackknife's was not; on 300 fresh runs per case it read no-change runs as rises
    in 1.0-2.7% (the centred bootstrap 1.3-4.7%) and checkpoint-wide shifts in 12% (14%), with the same power
    (`python benchmarks/text_only_exploration.py 300 199 --seed-offset 1000 --interval jackknife|centred`). An
    unpaired design has no problem to leave out of every step and gets "centred" for "two-way" and "jackknife"
    alike, said in "interval_method".
    "centred": the basic bootstrap interval
    (`hicra.stats.basic_interval`) with the bootstrap world's slope taken as the mean of the draws: slope -
    (draw - mean draw) at the quantiles. The rarefied entropy is unbiased for the expected entropy of m
    occurrences, but a resample that repeats problems concentrates the counts, so the draws' slopes sit off the
    point by an amount that is an artefact of resampling, not an estimate of the point's bias: the percentile
    interval then can exclude its own point (a planted strategy-label rise: slope 0.0347, interval [0.0335,
    0.0344], true slope 0.0348), and the plain basic interval (`"basic"`, centre = the point) moves the same
    distance the other way ([0.0349, 0.0359]); percentile and basic held the true slope in 5 of 100 such runs,
    the centred interval in 100 of 100 (`python benchmarks/text_only_exploration.py 100 199 --cases
    strategy-rise --interval ...`; "basic" and "percentile" are kept for that comparison; docs/dynamics.md has
    every case). One-sided p = (1 + #{r <= 0}) / (1 + B), r the interval's distribution (`hicra.stats.basic_draws`: slope - (draw - mean draw); the draws themselves for
    "percentile"), B the replicates used: detected (interval above 0) and p < (1 - level) / 2 agree up to the
    quantile's interpolation (for the bootstrap intervals).

    Returns trend_test's keys plus "interval_method", "values" (each step's entropy), "occurrences" (m),
    "replicates_left_out" and "problems" ({"paired", "shared", "left_out", "all"}: problems at every step,
    problems left out of a paired test, problems seen at any step). ValueError for an unknown `interval`.
    """
    if interval not in _INTERVAL_NAMES:
        raise ValueError(f"interval must be one of {sorted(_INTERVAL_NAMES)}, got {interval!r}")
    if len(groups) < 3:
        return {"tested": False, "detected": False, "reason": "fewer than 3 steps"}
    rng = np.random.default_rng(config.seed + 4)
    steps, per_step, problems, paired = _problem_design(
        {s: (ids, integer_counts(counts)) for s, (ids, counts) in groups.items()})
    totals = np.array([g.sum() for _, g in per_step])
    if totals.min() < 2:
        return {"tested": False, "detected": False, "problems": problems,
                "reason": f"{int(totals.min())} occurrences at step {steps[int(np.argmin(totals))]:g}, need 2"}
    m = float(np.floor(totals.min()))
    values = np.array([rarefied_entropy(g.sum(axis=0, keepdims=True), m)[0] for _, g in per_step])
    if interval in _LEAVE_ONE_OUT and paired:
        slope = _line_fit(steps, values)[1]
        # every step without problem i, each column at its own smallest step total (as a bootstrap replicate)
        loo = np.stack([g.sum(axis=0)[None, :] - g for _, g in per_step])  # (S, P, K)
        m_loo = loo.sum(axis=2).min(axis=0)  # (P,)
        use = m_loo >= 2
        vals = np.full((steps.size, use.size), np.nan)
        for i in range(steps.size):
            vals[i, use] = rarefied_entropy(loo[i][use], m_loo[use])
        lo, hi, p, n_used = _jackknife_interval(steps, slope, vals, config,
                                                None if interval == "jackknife" else values,
                                                residual_split=interval == "two-way-residuals")
        return {"tested": True, "detected": bool(lo > 0), "slope": slope, "slope_interval": [lo, hi],
                "p_value": p, "n_steps": int(steps.size), "first_step": float(steps[0]),
                "last_step": float(steps[-1]), "values": values.tolist(), "occurrences": m,
                "replicates_left_out": int(use.size - n_used), "problems": problems,
                "interval_method": f"jackknife over problems ({_pairing_text(problems, True)}), entropies at a "
                                   f"common number of occurrences, {_INTERVAL_NAMES[interval]}"}
    fallback = interval in _LEAVE_ONE_OUT  # unpaired: no problem to leave out of every step
    if fallback:
        interval = "centred"
    drawn = _problem_replicates(per_step, paired, rng, config.n_boot)
    m_boot = np.min([d.sum(axis=1) for d in drawn], axis=0)  # each replicate at its own smallest step total
    usable = m_boot >= 2  # a replicate with a step of < 2 occurrences has no entropy to compare: left out
    boot = np.stack([rarefied_entropy(d[usable], m_boot[usable]) for d in drawn])
    slope = _line_fit(steps, values)[1]
    draws = _slopes(steps, boot)
    lo, hi, p = _problem_slope_interval(slope, draws, config, interval)
    return {"tested": True, "detected": bool(lo > 0), "slope": slope, "slope_interval": [lo, hi],
            "p_value": p, "n_steps": int(steps.size),
            "first_step": float(steps[0]), "last_step": float(steps[-1]), "values": values.tolist(),
            "occurrences": m, "replicates_left_out": int((~usable).sum()), "problems": problems,
            "interval_method": f"bootstrap over problems ({_pairing_text(problems)}), entropies at a common "
                               f"number of occurrences, {_INTERVAL_NAMES[interval]}"
                               + ("; not the jackknife, which needs problems shared by every step" if fallback else "")}


def problem_bootstrap_mean_trend(groups: Mapping[float, tuple[Sequence[str], Sequence[float]]],
                                 config: PhaseConfig = PhaseConfig(), *, interval: str = "two-way") -> dict:
    """Trend of a per-response mean (accuracy, length) over steps with the resampling over problems of
    `problem_bootstrap_trend`: the same pairing rule (the problems every step shares, one draw for all steps), the
    same interval (default: two-way; a centred bootstrap when unpaired) and one-sided p, so the accuracy and length reported
    beside a text-only exploration test rest on the same unit as that test (the problem), not on the steps.

    groups: step -> (prompt_ids (n_s,), values (n_s,)): one value per response (1/0 for correct, tokens for length).
    Each step's value is the mean over its responses (of the shared problems when paired); the statistic is the
    OLS slope of those means against step, in the values' unit per step.
    Returns {"tested", "detected" (interval above 0), "slope", "slope_interval", "p_value", "n_steps",
    "problems", "interval_method"}. ValueError for an unknown `interval` or a value that is not finite."""
    if interval not in _INTERVAL_NAMES:
        raise ValueError(f"interval must be one of {sorted(_INTERVAL_NAMES)}, got {interval!r}")
    if len(groups) < 3:
        return {"tested": False, "detected": False, "reason": "fewer than 3 steps"}
    for s, (_, v) in groups.items():
        if not np.all(np.isfinite(np.asarray(v, float))):
            raise ValueError(f"problem_bootstrap_mean_trend: step {s} holds a value that is not a finite number")
    rng = np.random.default_rng(config.seed + 6)
    steps, per_step, problems, paired = _problem_design(
        {s: (ids, np.column_stack([np.asarray(v, float), np.ones(len(v))])) for s, (ids, v) in groups.items()})
    values = np.array([g[:, 0].sum() / g[:, 1].sum() for _, g in per_step])
    every = np.concatenate([np.asarray(v, float) for _, v in groups.values()])
    if every.size and np.all(every == every[0]):  # e.g. every response cut at the same length: the slope is 0,
        # where a fit returns float noise (5e-16) that every draw repeats, i.e. a "significant" rise
        return {"tested": True, "detected": False, "slope": 0.0, "slope_interval": [0.0, 0.0], "p_value": 1.0,
                "n_steps": int(steps.size), "problems": problems,
                "interval_method": f"none: every response has the same value ({every[0]:g}), so there is no trend"}
    if interval in _LEAVE_ONE_OUT and paired:
        slope = _line_fit(steps, values)[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            loo = np.stack([(g[:, 0].sum() - g[:, 0]) / (g[:, 1].sum() - g[:, 1]) for _, g in per_step])
        lo, hi, p, _ = _jackknife_interval(steps, slope, loo, config, None if interval == "jackknife" else values,
                                           residual_split=interval == "two-way-residuals")
        return {"tested": True, "detected": bool(lo > 0), "slope": slope, "slope_interval": [lo, hi], "p_value": p,
                "n_steps": int(steps.size), "problems": problems,
                "interval_method": f"jackknife over problems ({_pairing_text(problems, True)}), "
                                   f"{_INTERVAL_NAMES[interval]}"}
    fallback = interval in _LEAVE_ONE_OUT
    if fallback:
        interval = "centred"
    drawn = _problem_replicates(per_step, paired, rng, config.n_boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.stack([d[:, 0] / d[:, 1] for d in drawn])  # (S, n_boot)
    slope = _line_fit(steps, values)[1]
    draws = _slopes(steps, boot)
    lo, hi, p = _problem_slope_interval(slope, draws[np.isfinite(draws)], config, interval)
    return {"tested": True, "detected": bool(lo > 0), "slope": slope, "slope_interval": [lo, hi], "p_value": p,
            "n_steps": int(steps.size), "problems": problems,
            "interval_method": f"bootstrap over problems ({_pairing_text(problems)}), {_INTERVAL_NAMES[interval]}"
                               + ("; not the jackknife, which needs problems shared by every step" if fallback else "")}


# ---------------------------------------------------------------- verdict

def _column(metrics, name: str) -> np.ndarray | None:
    if isinstance(metrics, Mapping):
        values = metrics.get(name)
    else:  # pandas DataFrame or pyarrow Table
        values = metrics[name] if name in _columns_of(metrics) else None
    if values is None:
        return None
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    arr = np.asarray(values, dtype=object)
    return np.array([np.nan if v is None else float(v) for v in arr], dtype=float)


def _columns_of(metrics) -> list[str]:
    if isinstance(metrics, Mapping):
        return list(metrics)
    return list(getattr(metrics, "column_names", None) or getattr(metrics, "columns", []))


def _valid(x: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if y is None:
        return x[:0], x[:0]
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _slope_or_none(x: np.ndarray, y: np.ndarray | None) -> float | None:
    xs, ys = _valid(x, y)
    if xs.size < 3:
        return None
    return _line_fit(xs, ys)[1]


_SIDE_METRICS = ("accuracy", "mean_length", "errors_planning_share", "errors_execution_share", "planning_ratio")


def _side_trends(x: np.ndarray, metrics, tau: float | None) -> dict:
    """Slopes of accuracy, length, error shares and planning ratio before/after tau_exec (evidence only)."""
    out = {}
    for name in _SIDE_METRICS:
        y = metrics.get(name)
        if y is None or not np.isfinite(y).any():
            continue
        if tau is None:
            out[name] = {"slope": _slope_or_none(x, y)}
        else:
            before, after = x <= tau, x > tau
            out[name] = {"slope_before": _slope_or_none(x[before], y[before]),
                         "slope_after": _slope_or_none(x[after], y[after])}
    return out


def _nearest_step(steps: np.ndarray, value: float) -> int:
    return int(steps[int(np.argmin(np.abs(steps - value)))])


def exploration_column(metrics, min_steps: int = 1) -> tuple[str | None, str | None]:
    """The exploration metric a run supports: (column, measure), strategy labels first (module docstring, 3); a
    phrase-entropy column only counts the steps that hold a strategic gram (its 0 elsewhere is a convention)."""
    names = set(_columns_of(metrics))
    for column, measure in EXPLORATION_COLUMNS:
        if column in names and np.isfinite(exploration_values(metrics, column)).sum() >= min_steps:
            return column, measure
    return None, None


def exploration_values(metrics, column: str) -> np.ndarray | None:
    """An exploration column's values, NaN where they measure nothing: a phrase entropy (`semantic_entropy*`) at a
    step without strategic grams (`n_strategic_grams` 0) is 0 by convention, not a diversity. None when the column
    is absent."""
    values = _column(metrics, column)
    if values is None or not column.startswith("semantic_entropy"):
        return values
    grams = _column(metrics, "n_strategic_grams")
    return values if grams is None else np.where(np.nan_to_num(grams) > 0, values, np.nan)


def _support(detected: bool, p: float | None) -> float:
    p = 1.0 if p is None else float(p)
    return 1 - p if detected else p


def _class_support(test: Mapping) -> float:
    """Support of one class test's outcome: 1 - p when it consolidates; when it does not, p if its best hinge has
    the shape of a consolidation (falls, then flattens) and only significance is missing, else 1 (a significant
    bend of another shape, e.g. a rise, is evidence against a consolidation, not for it). An end of fall within the
    burn-in counts with its p: the verdict then rests on the burn-in rule, and the confidence says so."""
    p = 1.0 if test.get("p_value") is None else float(test["p_value"])
    if test.get("detected"):
        return 1 - p
    if test.get("within_burn_in"):  # a significant fall set aside by rule (`burn_in`): the verdict rests on the rule
        return p
    shaped = test.get("slope_before", 0.0) < 0 and test.get("slope_after", 0.0) > test.get("slope_before", 0.0)
    return p if shaped else 1.0


def _order_support(order: str, tests: Mapping[str, dict], differences: Mapping[str, tuple]) -> float:
    """Support of an order (heuristic in [0, 1], the smallest among the tests it rests on): `none` rests on neither
    execution nor planning consolidating; every other order on all three class tests (`_class_support`) and on
    every difference of ends of fall (a draw where a class does not consolidate counts as 0 difference):
    the share of its draws on the claimed side when it is resolved, twice the smaller one-sided share (a two-sided
    bootstrap p) when it is not."""
    support_of = {k: _class_support(t) for k, t in tests.items()}
    if order == "none":
        return min(support_of["execution"], support_of["planning"])
    support = list(support_of.values())
    for d, da, db in differences.values():
        with np.errstate(invalid="ignore"):
            diff = np.where(np.isnan(da - db), 0.0, da - db)
        above, below = float(np.mean(diff > 0)), float(np.mean(diff < 0))
        if d["direction"] == "later":
            support.append(above)
        elif d["direction"] == "earlier":
            support.append(below)
        else:
            support.append(min(1.0, 2 * min(1 - above, 1 - below)))
    return min(support)


def _missing_cause(missing: Sequence[str], col) -> str:
    """Why token-class perplexities are missing, from what the metrics do hold."""
    all_tokens = col("ppl_all")
    has_logprobs = all_tokens is not None and bool(np.isfinite(all_tokens).any())
    if not has_logprobs:
        return "no log-probabilities in the rollouts"
    if "rel_ppl_execution" in missing:
        return ("log-probabilities present, planning masks absent: records without `planning_mask` need a "
                "tokenizer to recompute them (hicra analyze --tokenizer DIR)")
    if "rel_ppl_planning" in missing:
        return "no token tagged as planning at any step: the lexicon matches nothing in these responses"
    return "metrics from before the reference class: re-run hicra analyze"


_SUMMARIES = {
    "two-phase": "execution consolidates before planning, and planning also after a random class of its size; "
                 "{m} rises after execution consolidates",
    "consolidation-only": "execution consolidates before planning; no significant rise of {m} after it",
    "reversed": "planning consolidates before execution: the reverse of the paper's order",
    "no-order": "execution or planning consolidates, but no order can be claimed (a difference's interval "
                "includes 0, or planning is not separated from a random class of its size)",
    "exploration-only": "no token class consolidates; {m} rises",
    "none": "no token class consolidates and {m} does not rise",
}


def _response_weighted_check(x: np.ndarray, col, ok: np.ndarray, config: PhaseConfig) -> dict:
    """A diagnostic beside a detected execution consolidation, not part of the verdict: the same class test
    (`consolidation_test`, at the class level alpha / 2) on `rel_ppl_execution_rw`, execution's perplexity with
    each response counted once. The verdict's pooled perplexity weighs responses by their length, so a shift in
    the mix of response lengths alone can make it fall and flatten (a reviewer's simulation: two kinds of response,
    each as likely as before, and the longer kind growing); a fall that this test does not see may be that. Gives
    {"tested", "consolidates", "p_value", "breakpoint_step", "mean_length": [first, last]} or {"tested": False,
    "reason"}."""
    y = col("rel_ppl_execution_rw")
    if y is None or not np.isfinite(y[ok]).all():
        return {"tested": False, "reason": "rel_ppl_execution_rw unavailable (metrics from before session 55?)"}
    test = consolidation_test(x, y[ok], replace(config, alpha=config.alpha / 2))
    length = col("mean_length")
    out = {"tested": bool(test["tested"]), "consolidates": bool(test["detected"]), "p_value": test.get("p_value"),
           "breakpoint_step": test.get("breakpoint_step")}
    if length is not None and np.isfinite(length[ok]).all():
        out["mean_length"] = [float(length[ok][0]), float(length[ok][-1])]
    return out


def detect_phases(metrics, config: PhaseConfig = PhaseConfig(), *, exploration_metric: str | None = None,
                  problem_groups: Mapping | None = None, problem_outcomes: Mapping | None = None,
                  _run_draws: dict | None = None) -> dict:
    """The v2 verdict for one run's metrics (DataFrame, pyarrow Table or mapping of columns with a `step` column).

    exploration_metric: a column of `EXPLORATION_COLUMNS` to use instead of the automatic choice
    (`exploration_column`); any other name raises ValueError.
    problem_groups: step -> (prompt_ids, counts) of the exploration measure's categories per response: the
    exploration interval then comes from resampling problems (`problem_bootstrap_trend`).
    problem_outcomes: {"accuracy" | "mean_length": step -> (prompt_ids, per-response values)}
    (`hicra.dynamics.metrics.outcome_groups`): those side trends then use the same resampling over problems
    (`problem_bootstrap_mean_trend`), with the step-based interval kept beside it as "interval_over_steps".
    ValueError for metrics without a `step` column or with a step in two rows.
    Returns DESIGN.md's `summary.json["phases"]` (v2): verdict, order, exploration, consolidation_end_step,
    exploration_onset_step, confidence, evidence.
    """
    steps = _column(metrics, "step")
    if steps is None:
        raise ValueError("metrics need a 'step' column")
    values, times = np.unique(steps[np.isfinite(steps)], return_counts=True)
    if (times > 1).any():  # two rows of one step would enter every fit twice, as if measured twice
        twice = ", ".join(f"{v:g}" for v in values[times > 1][:5])
        raise ValueError(f"metrics have duplicate steps ({twice}{', ...' if (times > 1).sum() > 5 else ''}): one row "
                         "per step")
    idx = np.argsort(steps, kind="stable")
    steps = steps[idx]

    def col(name):
        c = _column(metrics, name)
        return None if c is None else c[idx]

    if exploration_metric is None:
        exploration_metric, measure = exploration_column(metrics, config.min_steps)
    elif exploration_metric in dict(EXPLORATION_COLUMNS):
        measure = dict(EXPLORATION_COLUMNS)[exploration_metric]
    else:
        raise ValueError(f"exploration_metric must be one of {[c for c, _ in EXPLORATION_COLUMNS]}, "
                         f"got {exploration_metric!r}")
    evidence: dict = {"method": "per-class hinge-vs-line AR(1)-sieve F tests on " + ", ".join(CLASS_COLUMNS.values())
                      + "; order from tau intervals; trend test on " + (exploration_metric or "no exploration measure"),
                      "config": asdict(config)}
    reasons = []

    # ---- order of consolidation
    cls = {k: col(c) for k, c in CLASS_COLUMNS.items()}
    missing = [CLASS_COLUMNS[k] for k, v in cls.items() if v is None or not np.isfinite(v).any()]
    ok = np.isfinite(steps)
    for v in cls.values():
        ok &= np.isfinite(v) if v is not None else False
    if missing:
        reasons.append(f"{', '.join(missing)} unavailable: consolidation untestable ({_missing_cause(missing, col)})")
    elif ok.sum() < config.min_steps:
        reasons.append(f"token-class perplexities available at {int(ok.sum())} steps, need {config.min_steps}")
    if reasons:
        order = {"order": "untestable", "reason": reasons[0]}
    else:
        rd = (_run_draws or {}).get("curves")
        order = order_test(steps[ok], {k: v[ok] for k, v in cls.items()}, config,
                           curve_draws=None if rd is None else rd(ok),
                           interval_method=None if rd is None else _run_draws["method"])
    evidence["order"] = {k: v for k, v in order.items() if k != "tests"}
    if "tests" in order:
        evidence["consolidation"] = order["tests"]
        if order["tests"]["execution"]["detected"] and _run_draws is None:
            evidence["execution_response_weighted"] = _response_weighted_check(steps[ok], col, ok, config)
    tau_exec = order.get("tau_exec")

    # ---- exploration after tau_exec
    explored = exploration_values(metrics, exploration_metric) if exploration_metric else None
    xe_all, ye_all = _valid(steps, None if explored is None else explored[idx])
    window = xe_all > tau_exec if tau_exec is not None else np.ones(xe_all.size, bool)
    expl: dict = {"tested": False, "detected": False, "measure": measure, "metric": exploration_metric,
                  "slope": None, "interval": None, "p_value": None}
    if exploration_metric is None:
        present = [(c, int(np.isfinite(v).sum())) for c, _ in EXPLORATION_COLUMNS
                   if (v := col(c)) is not None and np.isfinite(v).any()]
        measured = [(c, int(np.isfinite(exploration_values(metrics, c)).sum())) for c, _ in present]
        expl["reason"] = (
            f"{measured[0][0]} available at {measured[0][1]} steps, need {config.min_steps}"
            + (" (a phrase entropy measures only steps that hold a strategic gram)" if measured[0][1] < present[0][1]
               else "") if present
            else "no exploration metric (strategy_entropy / semantic_entropy) in the metrics")
    elif xe_all.size < config.min_steps:
        expl["reason"] = f"{exploration_metric} available at {xe_all.size} steps, need {config.min_steps}"
    elif window.sum() < config.min_after:
        expl["reason"] = f"{int(window.sum())} steps after the consolidation end, need {config.min_after}"
    else:
        xw, yw = xe_all[window], ye_all[window]
        if problem_groups is not None:
            test = problem_bootstrap_trend({s: problem_groups[s] for s in xw if s in problem_groups}, config)
        elif _run_draws is not None and "exploration" in _run_draws:
            test = _run_draws["exploration"](xw)
        else:
            test = trend_test(xw, yw, config)
            test["interval_method"] = "AR(1) sieve bootstrap-t over steps"
        expl.update(tested=test["tested"], detected=test["detected"], slope=test.get("slope"),
                    interval=test.get("slope_interval"), p_value=test.get("p_value"),
                    window=[float(xw[0]), float(xw[-1])], n_steps=int(xw.size),
                    interval_method=test.get("interval_method"))
        if "problems" in test:  # the text-only test: which problems it paired on, how many it left out, and
            expl["problems"] = test["problems"]  # each step's entropy at the common number of occurrences
            expl["values"], expl["occurrences"] = test.get("values"), test.get("occurrences")
        if not test["tested"] and test.get("reason"):
            expl["reason"] = test["reason"]
        # the paper pairs the rise with accuracy and length: their trends over the same window
        # (on the problem bootstrap when the exploration test is: the same unit for all three)
        for name in ("accuracy", "mean_length"):
            xs, ys = _valid(steps, col(name))
            sel = (xs >= xw[0]) & (xs <= xw[-1])
            if sel.sum() >= 3:
                t = trend_test(xs[sel], ys[sel], config)
                expl[name] = {"slope": t.get("slope"), "interval": t.get("slope_interval"), "p_value": t.get("p_value"),
                              "interval_method": "AR(1) sieve bootstrap-t over steps"}
                by_problem = (problem_outcomes or {}).get(name)
                if by_problem is not None and problem_groups is not None:
                    pt = problem_bootstrap_mean_trend({x: by_problem[x] for x in xs[sel] if x in by_problem},
                                                      config)
                    if pt["tested"]:
                        expl[name] = {"slope": pt["slope"], "interval": pt["slope_interval"],
                                      "p_value": pt["p_value"], "interval_method": pt["interval_method"],
                                      "interval_over_steps": t.get("slope_interval")}
    evidence["exploration"] = expl

    onset = None
    cons_end = None
    if tau_exec is not None:
        cons_end = _nearest_step(steps, tau_exec)
    if expl["detected"]:
        rise = onset_test(xe_all, ye_all, config)
        evidence["exploration_onset"] = rise
        if rise["detected"]:
            onset, rise["method"] = _nearest_step(xe_all, rise["breakpoint_step"]), "hinge breakpoint"
        else:  # a rise without a significant bend has no onset to report (the window's start is tau_exec's)
            rise["method"] = "no significant bend: onset not estimated"
        if cons_end is not None and onset is not None:
            evidence["onset_minus_consolidation_end"] = onset - cons_end
    evidence["side_trends"] = _side_trends(steps, {n: col(n) for n in _SIDE_METRICS}, tau_exec)

    verdict = _VERDICT_TABLE[(order["order"], bool(expl["detected"]))]
    m = {"strategy": "strategy-label entropy"}.get(measure, "planning-phrase diversity")
    if order["order"] in EXPLORATION_DECIDES and not expl["tested"]:
        # the order leaves two verdicts open and only the exploration test can choose: too few steps to choose
        verdict = "inconclusive"
        evidence["reason"] = (f"order {order['order']}, but exploration not tested "
                              f"({expl.get('reason', 'no test')}): {' or '.join(EXPLORATION_DECIDES[order['order']])}")
    if verdict == "inconclusive":
        confidence = 0.0
        evidence.setdefault("reason", order.get("reason", ""))
        evidence["summary"] = ((f"order {order['order']}" if order["order"] != "untestable" else
                                f"order untestable ({order.get('reason', '')})") + "; exploration "
                               + ("detected" if expl["detected"] else "not detected" if expl["tested"] else
                                  "not tested") + f" ({m})")
    else:
        confidence = order["support"]
        if order["order"] in ("execution-first", "none"):
            confidence = min(confidence, _support(expl["detected"], expl["p_value"]))
        evidence["summary"] = _SUMMARIES[verdict].format(m=m)
    return {"version": config.version, "verdict": verdict, "order": order["order"],
            "exploration": {k: expl[k] for k in ("tested", "detected", "measure", "slope", "interval", "p_value")},
            "consolidation_end_step": cons_end, "exploration_onset_step": onset,
            "confidence": float(np.clip(confidence, 0.0, 1.0)), "evidence": evidence}


MIN_RUNS_TO_RESAMPLE = 3  # fewer runs: the pooled order's draws come from the mean curves' noise model


def detect_phases_pooled(runs: Sequence, config: PhaseConfig = PhaseConfig(), *,
                         exploration_metric: str | None = None) -> dict:
    """Pool several runs (seeds): point estimates and per-class tests on the mean curves over the shared steps;
    the order's draws from resampling runs with replacement (each resample's mean curves decided by the class rule,
    `order_test`; with fewer than `MIN_RUNS_TO_RESAMPLE` runs the mean curves' step-noise draws), the exploration
    trend with the run as the unit (`runs_trend_test`); per-run verdicts (module docstring)."""
    if not runs:
        raise ValueError("no runs to pool")
    asked_metric = exploration_metric
    if exploration_metric is None:  # the measure every run supports
        choices = [exploration_column(m, config.min_steps)[0] for m in runs]
        exploration_metric = next((c for c, _ in EXPLORATION_COLUMNS if all(
            c in _columns_of(m) and np.isfinite(exploration_values(m, c)).sum() >= config.min_steps for m in runs)),
            None)
        if exploration_metric is None and choices[0] is not None:
            exploration_metric = choices[0]
    names = ["step", *CLASS_COLUMNS.values(), "ppl_all", "accuracy", "mean_length", *_SIDE_METRICS]
    if exploration_metric:
        names.append(exploration_metric)
    names = list(dict.fromkeys(names))
    tables = [{n: v for n in names if (v := exploration_values(m, n) if n == exploration_metric else _column(m, n))
               is not None} for m in runs]
    shared = sorted(set.intersection(*(set(t["step"].tolist()) for t in tables)))
    if not shared:
        raise ValueError("the runs share no steps")
    stacked = {}
    for n in names:
        if all(n in t for t in tables):
            rows = []
            for t in tables:
                pos = {s: i for i, s in enumerate(t["step"].tolist())}
                rows.append(t[n][[pos[s] for s in shared]])
            stacked[n] = np.stack(rows)  # (runs, steps)
    # a class curve some runs lack (text-only runs: no log-probabilities) is left out for all: else the pooled order
    # would be one run's order, with a run-resampling interval over copies of it
    lacking = [n for n in CLASS_COLUMNS.values() if n in stacked and not np.isfinite(stacked[n]).any(axis=1).all()]
    partial = [n for n in lacking if np.isfinite(stacked[n]).any()]
    for n in lacking:
        del stacked[n]
    with warnings.catch_warnings():  # a step where every run lacks a value: NaN, left out by detect_phases
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = {n: np.nanmean(v, axis=0) if n != "step" else v[0] for n, v in stacked.items()}
    x = np.asarray(shared, float)
    run_draws = None
    n_res = min(config.n_boot, 499)
    if len(runs) > 1:
        rng = np.random.default_rng(config.seed + 2)
        picks = rng.integers(0, len(runs), size=(n_res, len(runs)))
        # a resample's mean deviates from the mean by (n - 1) / n of the mean's variance: rescaled by
        # sqrt(n / (n - 1)) (with 3 runs the plain resamples called planted together-settling classes ordered)
        shrink = np.sqrt(len(runs) / (len(runs) - 1))
        method = (f"resampling the {len(runs)} runs with replacement ({n_res} resamples, deviations from the mean "
                  f"rescaled by sqrt(n / (n - 1)) = {shrink:.3f})")

        def resampled(name):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                draws = np.nanmean(stacked[name][picks], axis=1).T  # (steps, n_res)
            return mean[name][:, None] + shrink * (draws - mean[name][:, None])

        def curve_draws(ok):  # each resample's mean curves; `order_test` decides each as for one run
            out = {}
            for k, c in CLASS_COLUMNS.items():
                ys = resampled(c)[ok]
                out[k] = np.where(np.isfinite(ys), ys, mean[c][ok][:, None])
            return out

        run_draws = {"method": method}
        # two runs give three distinct resamples: too coarse for a 90% interval (planted classes settling together
        # read ordered in 6-8% of two-run pools); then the order's draws are the mean curves' step-noise draws
        if len(runs) >= MIN_RUNS_TO_RESAMPLE and all(c in stacked for c in CLASS_COLUMNS.values()):
            run_draws["curves"] = curve_draws
        if exploration_metric in stacked:
            run_draws["exploration"] = lambda xw: runs_trend_test(x, stacked[exploration_metric], xw, config)
    pooled = detect_phases(mean, config, exploration_metric=exploration_metric, _run_draws=run_draws)
    # each run as its own analysis reads it (its own exploration measure), except that a text-only run's
    # exploration interval here is step-based: the per-problem counts are not part of the metrics
    per_run = [detect_phases(m, config, exploration_metric=asked_metric) for m in runs]
    ev = pooled["evidence"]
    ev["n_runs"] = len(runs)
    ev["shared_steps"] = {"n": len(shared), "first": float(shared[0]), "last": float(shared[-1]),
                          "per_run": [int(t["step"].size) for t in tables]}
    if len(runs) < MIN_RUNS_TO_RESAMPLE and "interval_method" in ev["order"]:
        ev["order"]["interval_method"] += (f" of the mean curves ({len(runs)} runs: fewer than "
                                           f"{MIN_RUNS_TO_RESAMPLE} to resample for the order)")
    if partial:
        # the columns left out made the mean curves' order untestable, for a reason this one states better
        reason = (f"{', '.join(partial)} missing in some of the runs (text-only runs pooled with runs that have "
                  "them): the pooled order is untestable")
        first = ev["order"]["reason"]
        ev["order"]["reason"] = reason
        if ev.get("reason") == first:
            ev["reason"] = reason
        ev["summary"] = ev["summary"].replace(first, reason)
    ev["per_run"] = [{"verdict": r["verdict"], "order": r["order"], "consolidation_end_step":
                      r["consolidation_end_step"], "confidence": r["confidence"],
                      "exploration_measure": r["exploration"]["measure"]} for r in per_run]
    ev["agreement"] = float(np.mean([r["verdict"] == pooled["verdict"] for r in per_run]))
    if len(runs) > 1:
        iv = ev["order"].get("intervals") or {}
        # the key names are historical: with fewer than MIN_RUNS_TO_RESAMPLE runs the tau interval comes from the
        # mean curves' step noise, and the *_interval_source keys say so
        ev["consolidation_end_interval_over_runs"] = iv.get("tau_exec")
        ev["consolidation_end_interval_source"] = (
            f"resampling the {len(runs)} runs" if len(runs) >= MIN_RUNS_TO_RESAMPLE and "curves" in run_draws else
            f"the mean curves' step noise ({len(runs)} runs: fewer than {MIN_RUNS_TO_RESAMPLE} to resample)"
            if len(runs) < MIN_RUNS_TO_RESAMPLE else "the mean curves' step noise")
        ev["exploration_slope_interval_over_runs"] = pooled["exploration"]["interval"]
        ev["exploration_slope_interval_source"] = pooled["evidence"]["exploration"].get("interval_method")
    return pooled


# ---------------------------------------------------------------- old summaries

def upgrade_phases(phases: Mapping) -> dict:
    """A `summary.json["phases"]` of either version in the v2 shape. v1 (no `order`; verdicts "two-phase",
    "single-phase", "inconclusive") never tested the order of consolidation, so it becomes `inconclusive` with
    order `untestable`; the old verdict and confidence are kept in `verdict_v1`, `confidence_v1`; its exploration
    test (semantic entropy after the v1 consolidation end) fills `exploration`."""
    phases = dict(phases)
    if "order" in phases:
        phases.setdefault("version", 2)
        return phases
    ev = dict(phases.get("evidence") or {})
    e = ev.get("exploration") or {}
    return {"version": 1, "verdict": "inconclusive", "order": "untestable",
            "exploration": {"tested": bool(e.get("tested", False)), "detected": bool(e.get("detected", False)),
                            "measure": "planning-phrases", "slope": e.get("slope"),
                            "interval": e.get("slope_interval"), "p_value": e.get("p_value")},
            "consolidation_end_step": None, "exploration_onset_step": phases.get("exploration_onset_step"),
            "confidence": 0.0, "verdict_v1": phases.get("verdict"), "confidence_v1": phases.get("confidence"),
            "consolidation_end_step_v1": phases.get("consolidation_end_step"),
            "evidence": ev | {"reason": "a v1 summary: the order of consolidation was not tested (re-run hicra "
                                        "analyze for a v2 verdict)"}}
