"""The phase verdict: did a run go through procedural consolidation and then strategic exploration?

The paper marks its two phases by eye. This module replaces the eye with two tests on the per-step metrics
(`metrics.parquet`), each seeded and deterministic:

1. **Consolidation** (on `rel_ppl_execution`, the execution tokens' perplexity relative to step 0). Fit a continuous
   one-breakpoint piecewise-linear ("hinge") model

       y = b0 + b1 * x + b2 * max(x - tau, 0)

   by least squares, with tau searched over the observed steps (each segment keeps at least `min_segment`
   points). Consolidation is detected when (a) the hinge fits significantly better than a straight line, (b) the
   curve falls before the breakpoint (b1 < 0) and (c) it flattens after it (b2 > 0, so the slope b1 + b2 is less
   steep). The test statistic is F = (SSE_line - SSE_hinge) / SSE_hinge; because tau is searched, the textbook F
   distribution does not apply, so its null distribution is simulated: the fitted straight line plus noise
   (`n_boot` series, the whole tau search redone for each), and p = (1 + #{F* >= F}) / (1 + n_boot). The noise is
   an AR(1) sieve bootstrap of the hinge fit's residuals (lag-1 autocorrelation phi estimated from them, clipped
   to [0, 0.95]; innovations resampled with replacement), because per-step training metrics drift: with
   independent resampling, autocorrelated noise alone was called a consolidation in 34% of flat AR(1) phi = 0.8
   series of 300 steps (`benchmarks/phase_noise.py`, docs/dynamics.md). The end of consolidation is tau; its
   interval comes from the same noise model around the hinge fit (tau re-estimated on each series, percentile
   interval).

2. **Exploration** (on `semantic_entropy` of planning phrases), on the steps after the consolidation end (all
   steps when no consolidation was detected): ordinary least-squares slope against step, with a moving-block
   bootstrap of the residuals (block length ~ n^(1/3), tolerating mild autocorrelation between steps) for a
   percentile interval. Exploration is detected when the interval's lower end is above 0. One-sided
   p = (1 + #{slope* <= 0}) / (1 + n_boot).

3. **Exploration onset** (only when exploration is detected), on the whole `semantic_entropy` curve: the same
   hinge-vs-line test as 1, now for a slope that turns up at the breakpoint into a rise (b2 > 0, b1 + b2 > 0).
   When that bend is significant, the onset is its breakpoint (with a bootstrap interval); otherwise (a rise
   without a clear start) it is the first step of the window the trend test found rising. The onset is estimated
   on its own, so it can come before the consolidation end (the paper's phases overlap);
   `evidence["onset_minus_consolidation_end"]` says by how many steps.

Verdict: both detected -> "two-phase"; exactly one -> "single-phase" (evidence says which: a run stuck in
consolidation, or exploration without a detectable consolidation, as the paper reports for strong models); neither,
or too few steps / missing metrics -> "inconclusive". The onset does not change the verdict: "two-phase" means
diversity rises after the consolidation end, wherever the rise began. `confidence` is a heuristic in [0, 1]: the
smallest support among the tests the verdict rests on, where a detected test supports it with 1 - p and an
undetected one with p. Accuracy, length and error-type trends before/after the breakpoint are reported as evidence,
not used in the verdict.

Several runs (seeds) are pooled by `detect_phases_pooled`: the verdict is taken on the mean curve over the steps all
runs share, each run's own verdict is reported, and intervals for the consolidation end and the exploration slope
come from resampling runs with replacement.

Known limits: the noise model is AR(1) (consolidation, onset) or short blocks (exploration): longer-memory drift can
still pass for a shape; a curve that keeps falling with curvature everywhere (e.g. a slow exponential over the whole
run) will have its bend detected as a consolidation end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PhaseConfig:
    min_steps: int = 8        # fewer usable steps than this: inconclusive
    min_segment: int = 3      # points on each side of the breakpoint
    min_after: int = 5        # points after the breakpoint needed for the exploration trend test
    alpha: float = 0.05       # significance level of both tests (one-sided for exploration)
    level: float = 0.95       # bootstrap interval level
    n_boot: int = 999
    seed: int = 0


# ---------------------------------------------------------------- least-squares pieces

def _hinge_bases(x: np.ndarray, min_segment: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate breakpoints and, for each, an orthonormal basis Q (n x 3) of the hinge design [1, x, (x-tau)+].

    With Q, the residual sum of squares of any y is ||y||^2 - ||Q^T y||^2, so the whole tau search for many
    bootstrap samples at once is one einsum.
    """
    n = x.size
    idx = np.arange(min_segment - 1, n - min_segment)
    taus = x[idx]
    bases = []
    for tau in taus:
        design = np.column_stack([np.ones(n), x, np.maximum(x - tau, 0.0)])
        q, _ = np.linalg.qr(design)
        bases.append(q)
    return taus, np.stack(bases) if bases else np.zeros((0, n, 3))


def _sse_line(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Residual sum of squares of straight-line fits, one per column of ys (n x B)."""
    q, _ = np.linalg.qr(np.column_stack([np.ones(x.size), x]))
    proj = q.T @ ys
    return (ys * ys).sum(axis=0) - (proj * proj).sum(axis=0)


def _sse_hinge(bases: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Residual sum of squares for every (breakpoint, column): shape (T, B)."""
    proj = np.einsum("tnk,nb->tkb", bases, ys)
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


def _ar1_innovations(residuals: np.ndarray) -> tuple[float, np.ndarray]:
    """Lag-1 autocorrelation phi of a residual series (clipped to [0, 0.95]: negative or near-unit values are
    not a drift worth modelling) and the centred innovations e_t = r_t - phi * r_(t-1)."""
    r = residuals - residuals.mean()
    denom = float(np.sum(r * r))
    phi = float(np.clip(np.sum(r[1:] * r[:-1]) / denom, 0.0, 0.95)) if denom > 0 else 0.0
    e = r[1:] - phi * r[:-1]
    return phi, e - e.mean()


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


def _block_resample(residuals: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap of a residual series: (n, n_boot) resampled residuals."""
    n = residuals.size
    block = max(1, int(round(n ** (1 / 3))))
    n_blocks = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)[:, :n]
    return residuals[idx].T


# ---------------------------------------------------------------- the two tests

def _hinge_vs_line(x: np.ndarray, y: np.ndarray, config: PhaseConfig, rng: np.random.Generator) -> dict | None:
    """The one-breakpoint hinge against a straight line (module docstring, test 1), without a shape condition:
    F statistic, bootstrap p-value, best breakpoint with its bootstrap interval, and the hinge fit. None when the
    series is too short for two segments of `min_segment` points."""
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
    phi, innovations = _ar1_innovations(fit["residuals"])
    # null: straight line + AR(1) noise rebuilt from resampled innovations; the tau search is redone on each
    a, b, fitted_line = _line_fit(x, y)
    ys = fitted_line[:, None] + _ar1_resample(fit["residuals"], phi, innovations, config.n_boot, rng)
    sse_h_null = _sse_hinge(bases, ys).min(axis=0)
    sse_l_null = _sse_line(x, ys)
    f_null = (sse_l_null - sse_h_null) / np.maximum(sse_h_null, 1e-12 * scale)
    p_value = float((1 + np.sum(f_null >= f_obs - 1e-12 * abs(f_obs))) / (1 + config.n_boot))
    # interval for tau: the same noise model around the hinge fit
    ys_h = fit["fitted"][:, None] + _ar1_resample(fit["residuals"], phi, innovations, config.n_boot, rng)
    tau_boot = taus[np.argmin(_sse_hinge(bases, ys_h), axis=0)]
    lo, hi = np.quantile(tau_boot, [(1 - config.level) / 2, (1 + config.level) / 2])
    return {"p_value": p_value, "f_statistic": float(f_obs), "breakpoint_step": tau,
            "breakpoint_interval": [float(lo), float(hi)], "fit": fit, "line_slope": b, "noise_ar1": phi}


def consolidation_test(x: Sequence[float], y: Sequence[float], config: PhaseConfig = PhaseConfig()) -> dict:
    """Hinge-vs-line test for a fall that flattens (see module docstring). Returns the evidence dict."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    res = _hinge_vs_line(x, y, config, np.random.default_rng(config.seed))
    if res is None:
        return {"tested": False, "detected": False, "reason": f"need at least {2 * config.min_segment} steps"}
    fit, tau = res.pop("fit"), res["breakpoint_step"]
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
    slope_before, slope_after = fit["b1"], fit["b1"] + fit["b2"]
    detected = bool(res["p_value"] < config.alpha and fit["b2"] > 0 and slope_after > 0)
    return {"tested": True, "detected": detected, **res, "slope_before": slope_before, "slope_after": slope_after,
            "n_steps": int(x.size)}


def trend_test(x: Sequence[float], y: Sequence[float], config: PhaseConfig = PhaseConfig()) -> dict:
    """OLS slope with a moving-block bootstrap percentile interval; detected when the interval is above 0."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.size
    if n < 3:
        return {"tested": False, "detected": False, "reason": "fewer than 3 steps"}
    rng = np.random.default_rng(config.seed + 1)
    _, slope, fitted = _line_fit(x, y)
    boots = _slopes(x, fitted[:, None] + _block_resample(y - fitted, config.n_boot, rng))
    lo, hi = np.quantile(boots, [(1 - config.level) / 2, (1 + config.level) / 2])
    p_value = float((1 + np.sum(boots <= 0)) / (1 + config.n_boot))
    return {"tested": True, "detected": bool(lo > 0), "slope": slope, "slope_interval": [float(lo), float(hi)],
            "p_value": p_value, "n_steps": int(n), "first_step": float(x[0]), "last_step": float(x[-1])}


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


_SIDE_METRICS = ("accuracy", "mean_length", "errors_planning", "errors_execution", "planning_ratio")


def _side_trends(x: np.ndarray, metrics, tau: float | None) -> dict:
    """Slopes of accuracy, length and error counts before/after the breakpoint (evidence only)."""
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


def detect_phases(metrics, config: PhaseConfig = PhaseConfig(), *, consolidation_metric: str = "rel_ppl_execution",
                  exploration_metric: str = "semantic_entropy") -> dict:
    """The verdict for one run's metrics (DataFrame, pyarrow Table or mapping of columns with a `step` column).

    Returns DESIGN.md's `summary.json["phases"]`: verdict, consolidation_end_step, exploration_onset_step,
    confidence, evidence.
    """
    steps = _column(metrics, "step")
    if steps is None:
        raise ValueError("metrics need a 'step' column")
    order = np.argsort(steps, kind="stable")
    steps = steps[order]

    def col(name):
        c = _column(metrics, name)
        return None if c is None else c[order]

    evidence: dict = {"method": "hinge-vs-line residual-bootstrap F test on " + consolidation_metric
                      + "; block-bootstrap OLS trend on " + exploration_metric, "config": asdict(config)}
    xc, yc = _valid(steps, col(consolidation_metric))
    xe_all, ye_all = _valid(steps, col(exploration_metric))
    if xc.size < config.min_steps:
        evidence["reason"] = (f"{consolidation_metric} available at {xc.size} steps, need {config.min_steps}"
                              + (" (no log-probabilities in the rollouts?)" if xc.size == 0 else ""))
    if xe_all.size < config.min_steps:
        evidence.setdefault("reason", "")
        evidence["reason"] = (evidence["reason"] + "; " if evidence["reason"] else "") + \
            f"{exploration_metric} available at {xe_all.size} steps, need {config.min_steps}"
    if "reason" in evidence:
        return {"verdict": "inconclusive", "consolidation_end_step": None, "exploration_onset_step": None,
                "confidence": 0.0, "evidence": evidence}

    cons = consolidation_test(xc, yc, config)
    evidence["consolidation"] = cons
    tau = cons["breakpoint_step"] if cons["detected"] else None
    after = xe_all > tau if tau is not None else np.ones(xe_all.size, bool)
    if after.sum() >= config.min_after:
        expl = trend_test(xe_all[after], ye_all[after], config)
    else:
        expl = {"tested": False, "detected": False,
                "reason": f"{int(after.sum())} steps after the consolidation end, need {config.min_after}"}
    evidence["exploration"] = expl
    evidence["side_trends"] = _side_trends(steps, {name: col(name) for name in _SIDE_METRICS}, tau)

    c_ok, e_ok = cons["detected"], expl["detected"]
    p_c = cons.get("p_value", 1.0)
    p_e = expl.get("p_value", 1.0)
    cons_end = _nearest_step(xc, tau) if tau is not None else None
    onset = None
    if e_ok:
        # where the rise starts: a hinge on the whole exploration curve when its bend is significant, else the
        # first step of the window the trend test found rising
        rise = onset_test(xe_all, ye_all, config)
        evidence["exploration_onset"] = rise
        if rise["detected"]:
            onset, rise["method"] = _nearest_step(xe_all, rise["breakpoint_step"]), "hinge breakpoint"
        else:
            onset, rise["method"] = int(xe_all[after][0]), "first step of the rising window (no significant bend)"
        if cons_end is not None:
            evidence["onset_minus_consolidation_end"] = onset - cons_end
    if c_ok and e_ok:
        verdict, confidence = "two-phase", min(1 - p_c, 1 - p_e)
        evidence["summary"] = "execution perplexity falls then flattens; planning-phrase diversity rises after"
    elif c_ok:
        verdict, confidence = "single-phase", min(1 - p_c, p_e)
        evidence["summary"] = ("consolidation only: execution perplexity falls then flattens, no significant rise "
                               "of planning-phrase diversity after it")
    elif e_ok:
        verdict, confidence = "single-phase", min(1 - p_e, p_c)
        evidence["summary"] = "exploration only: planning-phrase diversity rises, no detectable consolidation"
    else:
        verdict, confidence = "inconclusive", min(p_c, p_e)
        evidence["summary"] = "no significant consolidation and no significant rise of planning-phrase diversity"
    return {"verdict": verdict, "consolidation_end_step": cons_end, "exploration_onset_step": onset,
            "confidence": float(np.clip(confidence, 0.0, 1.0)), "evidence": evidence}


def detect_phases_pooled(runs: Sequence, config: PhaseConfig = PhaseConfig(),
                         consolidation_metric: str = "rel_ppl_execution",
                         exploration_metric: str = "semantic_entropy") -> dict:
    """Pool several runs (seeds): verdict on the mean curves over shared steps, per-run verdicts, and intervals
    for the consolidation end and exploration slope from resampling runs with replacement."""
    if not runs:
        raise ValueError("no runs to pool")
    names = ("step", consolidation_metric, exploration_metric, "accuracy", "mean_length",
             "errors_planning", "errors_execution", "planning_ratio")
    tables = []
    for m in runs:
        cols = {n: _column(m, n) for n in names}
        tables.append({n: v for n, v in cols.items() if v is not None})
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
    mean = {n: np.nanmean(v, axis=0) if n != "step" else v[0] for n, v in stacked.items()}
    pooled = detect_phases(mean, config, consolidation_metric=consolidation_metric,
                           exploration_metric=exploration_metric)
    per_run = [detect_phases(m, config, consolidation_metric=consolidation_metric,
                             exploration_metric=exploration_metric) for m in runs]
    ev = pooled["evidence"]
    ev["n_runs"] = len(runs)
    ev["per_run"] = [{"verdict": r["verdict"], "consolidation_end_step": r["consolidation_end_step"],
                      "confidence": r["confidence"]} for r in per_run]
    ev["agreement"] = float(np.mean([r["verdict"] == pooled["verdict"] for r in per_run]))
    # run-resampling intervals (only meaningful with several runs)
    if len(runs) > 1 and consolidation_metric in stacked and exploration_metric in stacked:
        rng = np.random.default_rng(config.seed + 2)
        x = np.asarray(shared, float)
        n_res = min(config.n_boot, 200)
        picks = rng.integers(0, len(runs), size=(n_res, len(runs)))
        yc = np.nanmean(stacked[consolidation_metric][picks], axis=1).T  # (steps, n_res)
        ok = np.isfinite(yc).all(axis=1)
        taus, bases = _hinge_bases(x[ok], config.min_segment)
        if taus.size:
            tau_b = taus[np.argmin(_sse_hinge(bases, yc[ok]), axis=0)]
            lo, hi = np.quantile(tau_b, [(1 - config.level) / 2, (1 + config.level) / 2])
            ev["consolidation_end_interval_over_runs"] = [float(lo), float(hi)]
            ye = np.nanmean(stacked[exploration_metric][picks], axis=1).T
            tau = pooled["consolidation_end_step"]
            sel = (x > tau) if tau is not None else np.ones(x.size, bool)
            sel &= np.isfinite(ye).all(axis=1)
            if sel.sum() >= 3:
                sl = _slopes(x[sel], ye[sel])
                lo, hi = np.quantile(sl, [(1 - config.level) / 2, (1 + config.level) / 2])
                ev["exploration_slope_interval_over_runs"] = [float(lo), float(hi)]
    return pooled
