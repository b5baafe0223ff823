"""The text-only exploration test (`hicra.dynamics.phases.problem_bootstrap_trend`) on simulated checkpoint logs.

A public RL log without log-probabilities is read as checkpoints x problems: each checkpoint answers the same
problems, and each response holds some planning phrases. Simulated here: P problems, S checkpoints, K phrases; each
problem has its own phrase preferences (a Dirichlet draw around a shared mix) and each response a Poisson number of
phrase occurrences. Cases:

- `stationary`: nothing changes (a rise detected here is a false positive; the interval is 95% two-sided, so 2.5%
  per side is nominal);
- `longer`: the mean number of phrases per response doubles from the first checkpoint to the last, the mix
  unchanged (responses lengthen, as under RL): the plug-in entropy rises with the sample alone, which is why each
  step's entropy is taken at a common number of occurrences (`rarefied_entropy`);
- `rise`: the shared mix flattens over the checkpoints (a planted rise of diversity; the share detected is the
  power).

    python benchmarks/text_only_exploration.py [N] [N_BOOT] [--plug-in]

prints, per case, the share of N simulated runs whose exploration is detected (one-sided, level 0.95 interval
above 0) and whose interval lies below 0, and the mean slope. `--plug-in` replaces the rarefied entropy by the
plug-in entropy at each step's own sample (the test before session 26), for comparison.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def simulate(case: str, seed: int, n_problems: int = 100, n_steps: int = 19, n_phrases: int = 60) -> dict:
    """step -> (prompt ids, counts (n_problems, n_phrases)) for `problem_bootstrap_trend`."""
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(10_000 + seed).dirichlet(np.full(n_phrases, 0.3))
    uniform = np.full(n_phrases, 1.0 / n_phrases)
    ids = np.array([f"p{i}" for i in range(n_problems)])
    groups = {}
    prefs = None
    for s in range(n_steps):
        frac = s / (n_steps - 1)
        mix = (1 - 0.1 * frac) * shared + 0.1 * frac * uniform if case == "rise" else shared
        if prefs is None or case == "rise":  # each problem's own preferences; redrawn only as the mix moves
            prefs = rng.dirichlet(mix * 50 + 1e-3, size=n_problems)
        rate = 5.0 * (1 + frac) if case == "longer" else 5.0
        n = rng.poisson(rate, n_problems)
        counts = np.stack([rng.multinomial(k, p) for k, p in zip(n, prefs, strict=True)]).astype(float)
        groups[s] = (ids, counts)
    return groups


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=100, help="simulated runs per case (default 100)")
    ap.add_argument("n_boot", type=int, nargs="?", default=199)
    ap.add_argument("--plug-in", action="store_true", help="the plug-in entropy at each step's own sample")
    args = ap.parse_args()

    import hicra.dynamics.phases as phases

    if args.plug_in:  # every step's own sample: the rarefied entropy at the row's own total is the plug-in one
        phases.rarefied_entropy = lambda counts, m: phases.entropy_rows(np.atleast_2d(counts))
    cfg = phases.PhaseConfig(n_boot=args.n_boot)
    t0 = time.perf_counter()
    print(f"{args.n} runs per case, n_boot {args.n_boot}, "
          f"{'plug-in entropy per step' if args.plug_in else 'entropies at a common number of occurrences'}")
    for case in ("stationary", "longer", "rise"):
        res = [phases.problem_bootstrap_trend(simulate(case, seed), cfg) for seed in range(args.n)]
        up = np.mean([r["detected"] for r in res])
        down = np.mean([r["slope_interval"][1] < 0 for r in res])
        print(f"{case:10s}  rise detected {up:6.1%}   interval below 0 {down:6.1%}   "
              f"mean slope {np.mean([r['slope'] for r in res]):+.5f} nats/step")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
