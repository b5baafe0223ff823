"""The text-only exploration test (`hicra.dynamics.phases.problem_bootstrap_trend`) on simulated checkpoint logs.

A public RL log without log-probabilities is read as checkpoints x problems: each checkpoint answers the same
problems, and each response holds some planning phrases (or carries one strategy label). Simulated here, for the
phrase cases: P = 100 problems, S = 19 checkpoints, K = 60 phrases; each problem has its own phrase preferences (a
Dirichlet draw, concentration 50, around a shared mix drawn once per run) and each response a Poisson number of
phrase occurrences (mean 5). Cases, all with no change of diversity unless said:

- `stationary`: nothing changes; each problem keeps its preferences at every checkpoint;
- `churn`: each problem's preferences are redrawn at every checkpoint around the same shared mix (a policy whose
  per-problem choices move between checkpoints while the overall mix holds);
- `shock`: the shared mix itself moves at random at every checkpoint (a Dirichlet draw of concentration 300
  around the run's mix, no trend), preferences redrawn around it: checkpoint-to-checkpoint variation that a
  bootstrap over problems cannot see;
- `persist`: the same random checkpoint shocks to every problem's preferences (log-normal, sd 0.5 per phrase),
  and each problem keeps its previous checkpoint's answer with probability 0.8 (answers persist, so neighbouring
  checkpoints share their problem-sampling noise); 30 unrecorded checkpoints first, so the recorded ones start
  stationary (a sixth review's case);
- `longer`: the mean number of phrases per response doubles from the first checkpoint to the last, the mix
  unchanged (responses lengthen, as under RL): the plug-in entropy rises with the sample alone, which is why each
  step's entropy is taken at a common number of occurrences (`rarefied_entropy`);
- `rise`: the shared mix flattens over the checkpoints (10% of the way to uniform; a planted rise of diversity:
  the share detected is the power);
- `strategy-flat` / `strategy-rise` (the strategy-label path): 60 checkpoints, 16 problems x 4 responses, one
  label per response from 6 strategies; flat: each problem's own preferences around a shared mix, fixed; rise:
  labels uniform over 1 strategy until checkpoint 20, then over up to 6 (a review's planted case). For
  strategy-rise the true slope (of the expected entropy of 64 labels) is known, and the share of intervals
  holding it is printed.

A rise in any case but `rise` and `strategy-rise` is a false positive (the interval is 95% two-sided: 2.5% per side
is nominal).

    python benchmarks/text_only_exploration.py [N] [N_BOOT] [--cases a,b]
                                               [--interval two-way|two-way-residuals|jackknife|centred|...] [--plug-in]
                                               [--seed-offset K] [--spread]

prints, per case, the share of N simulated runs whose exploration is detected (one-sided, level 0.95 interval
above 0) and whose interval lies below 0, the mean slope, and the share of intervals that hold their own point
estimate. `--interval` chooses the interval of `problem_bootstrap_trend` (default: the analyzer's, two-way since
session 29; centred before); `--spread` adds, per case, the sd of the slopes over the runs, the mean standard error
the intervals imply and the sd of the z-scores (a check that an interval is as wide as the spread it estimates);
`--plug-in` replaces the rarefied entropy by the plug-in entropy at each step's own sample (the test before
session 26), for comparison.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

PHRASE_CASES = ("stationary", "churn", "shock", "persist", "longer", "rise")
PERSIST_BURN = 30  # persist: unrecorded checkpoints first, so the recorded ones start stationary
STRATEGY_CASES = ("strategy-flat", "strategy-rise")


def simulate(case: str, seed: int, n_problems: int = 100, n_steps: int = 19, n_phrases: int = 60) -> dict:
    """step -> (prompt ids, counts (n_problems, n_phrases)) for `problem_bootstrap_trend` (a phrase case)."""
    if case not in PHRASE_CASES:
        raise ValueError(f"unknown phrase case {case!r}")
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(10_000 + seed).dirichlet(np.full(n_phrases, 0.3))
    uniform = np.full(n_phrases, 1.0 / n_phrases)
    ids = np.array([f"p{i}" for i in range(n_problems)])
    groups = {}
    prefs = None
    if case == "persist":  # a sixth review's case: answers carried over between checkpoints, the mix shocked
        prefs = rng.dirichlet(shared * 50 + 1e-3, size=n_problems)
        prev = None
        for s in range(n_steps + PERSIST_BURN):
            w = np.exp(rng.normal(0, 0.5, n_phrases))  # this checkpoint's multiplicative shock to every problem
            ps = prefs * w
            ps /= ps.sum(axis=1, keepdims=True)
            new = np.stack([rng.multinomial(k, p) for k, p in zip(rng.poisson(5.0, n_problems), ps,
                                                                  strict=True)]).astype(float)
            if prev is not None:
                same = rng.random(n_problems) < 0.8  # most problems answer as at the previous checkpoint
                new[same] = prev[same]
            if s >= PERSIST_BURN:
                groups[s - PERSIST_BURN] = (ids, new)
            prev = new
        return groups
    for s in range(n_steps):
        frac = s / (n_steps - 1)
        if case == "rise":
            mix = (1 - 0.1 * frac) * shared + 0.1 * frac * uniform
        elif case == "shock":  # this checkpoint's mix: a random move around the run's, no trend
            mix = rng.dirichlet(shared * 300 + 1e-3)
        else:
            mix = shared
        if prefs is None or case in ("rise", "churn", "shock"):  # each problem's own preferences
            prefs = rng.dirichlet(mix * 50 + 1e-3, size=n_problems)
        rate = 5.0 * (1 + frac) if case == "longer" else 5.0
        n = rng.poisson(rate, n_problems)
        counts = np.stack([rng.multinomial(k, p) for k, p in zip(n, prefs, strict=True)]).astype(float)
        groups[s] = (ids, counts)
    return groups


def strategies_per_step(step: int) -> int:
    """strategy-rise: the number of strategies drawn from at a checkpoint (1 until 20, then up to 6 at 59)."""
    return 1 + int(5 * max(0, step - 20) / 39)


def simulate_strategies(case: str, seed: int, n_steps: int = 60, n_problems: int = 16, group: int = 4,
                        n_labels: int = 6) -> dict:
    """step -> (prompt ids, one-hot label counts (n_problems * group, n_labels)) (a strategy case)."""
    if case not in STRATEGY_CASES:
        raise ValueError(f"unknown strategy case {case!r}")
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"p{i}" for i in range(n_problems)], group)
    n = n_problems * group
    if case == "strategy-flat":
        shared = np.random.default_rng(10_000 + seed).dirichlet(np.full(n_labels, 1.0))
        prefs = np.repeat(rng.dirichlet(shared * 20 + 1e-3, size=n_problems), group, axis=0)
    groups = {}
    for s in range(n_steps):
        if case == "strategy-flat":
            labels = (prefs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
        else:
            labels = rng.integers(0, strategies_per_step(s), n)
        counts = np.zeros((n, n_labels))
        counts[np.arange(n), labels] = 1
        groups[s] = (ids, counts)
    return groups


def true_strategy_slope(n_steps: int = 60, m: int = 64) -> float:
    """strategy-rise's true slope: OLS slope of the expected plug-in entropy of m labels drawn uniformly from each
    checkpoint's strategies (the quantity the rarefied entropy at m estimates without bias)."""
    from scipy.stats import binom

    j = np.arange(1, m + 1)
    values = []
    for s in range(n_steps):
        k = strategies_per_step(s)
        values.append(-k * float((binom.pmf(j, m, 1 / k) * j / m * np.log(j / m)).sum()))
    return float(np.polyfit(np.arange(n_steps), values, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=100, help="simulated runs per case (default 100)")
    ap.add_argument("n_boot", type=int, nargs="?", default=199)
    ap.add_argument("--cases", default=",".join(PHRASE_CASES + STRATEGY_CASES),
                    help="comma-separated cases (default: all)")
    ap.add_argument("--interval", default="two-way",
                    choices=["two-way", "two-way-residuals", "jackknife", "centred", "basic", "percentile"])
    ap.add_argument("--seed-offset", type=int, default=0, help="first run's seed (default 0)")
    ap.add_argument("--plug-in", action="store_true", help="the plug-in entropy at each step's own sample")
    ap.add_argument("--spread", action="store_true", help="also print, per case, the sd of the slopes over the runs "
                    "against the mean standard error the intervals imply (width / 3.92) and the sd of the z-scores")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(PHRASE_CASES + STRATEGY_CASES))
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}")

    import hicra.dynamics.phases as phases

    if args.plug_in:  # every step's own sample: the rarefied entropy at the row's own total is the plug-in one
        phases.rarefied_entropy = lambda counts, m: phases.entropy_rows(np.atleast_2d(counts))
    cfg = phases.PhaseConfig(n_boot=args.n_boot)
    t0 = time.perf_counter()
    print(f"{args.n} runs per case, n_boot {args.n_boot}, {args.interval} interval, "
          f"{'plug-in entropy per step' if args.plug_in else 'entropies at a common number of occurrences'}")
    truth = true_strategy_slope() if "strategy-rise" in cases else None
    for case in cases:
        make = simulate if case in PHRASE_CASES else simulate_strategies
        res = [phases.problem_bootstrap_trend(make(case, seed), cfg, interval=args.interval)
               for seed in range(args.seed_offset, args.seed_offset + args.n)]
        up = np.mean([r["detected"] for r in res])
        down = np.mean([r["slope_interval"][1] < 0 for r in res])
        holds = np.mean([r["slope_interval"][0] <= r["slope"] <= r["slope_interval"][1] for r in res])
        line = (f"{case:13s}  rise detected {up:6.1%}   interval below 0 {down:6.1%}   "
                f"mean slope {np.mean([r['slope'] for r in res]):+.5f} nats/step   holds its point {holds:6.1%}")
        if case == "strategy-rise":
            covers = np.mean([r["slope_interval"][0] <= truth <= r["slope_interval"][1] for r in res])
            line += f"   holds the true slope ({truth:.5f}) {covers:6.1%}"
        print(line, flush=True)
        if args.spread:  # does the interval's width match the spread of the slopes it estimates?
            slopes = np.array([r["slope"] for r in res])
            se = np.array([(r["slope_interval"][1] - r["slope_interval"][0]) / 3.92 for r in res])
            print(f"{'':13s}  spread: sd of the slopes {slopes.std(ddof=1):.5f}, mean SE (width / 3.92) "
                  f"{se.mean():.5f}, sd of slope / SE {np.std(slopes / se, ddof=1):.3f}", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
