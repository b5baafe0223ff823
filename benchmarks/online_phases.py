"""Online consolidation detector: firing rates on planted and null synthetic sequences, lag, and cost per update.

    python benchmarks/online_phases.py [N_SERIES]

Sequences have 40 steps. Planted: linear fall until step 15 then flat (white noise sd 0.03), and an exponential
decay (the curve of hicra.dynamics.synthetic) whose bend is counted from step 5. Null: flat, a straight fall, and
flat with AR(1) noise (phi 0.5; autocorrelated noise is the detector's known weak spot). Last line: `name: X`.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from hicra.dynamics.online import OnlineConfig, OnlineConsolidationDetector, detection_rates

S = 40


def planted(i):
    r = np.random.default_rng(i)
    s = np.arange(S)
    return s, 1 - 0.02 * np.minimum(s, 15) + r.normal(0, 0.03, S)


def expo(i):
    r = np.random.default_rng(1000 + i)
    s = np.arange(S)
    return s, 0.15 + 0.25 * np.exp(-s / (S / 8)) + r.normal(0, 0.02, S)


def flat(i):
    r = np.random.default_rng(2000 + i)
    return np.arange(S), 1 + r.normal(0, 0.03, S)


def line(i):
    r = np.random.default_rng(3000 + i)
    s = np.arange(S)
    return s, 1 - 0.01 * s + r.normal(0, 0.03, S)


def ar1(i):
    r = np.random.default_rng(4000 + i)
    e = np.zeros(S)
    for t in range(1, S):
        e[t] = 0.5 * e[t - 1] + r.normal(0, 0.03)
    return np.arange(S), 1 + e


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    configs = {"default (confirm 3, alpha 0.05)": OnlineConfig(), "single look (confirm 1)": OnlineConfig(confirm=1),
               "confirm 3, alpha 0.01": OnlineConfig(alpha=0.01)}
    for label, cfg in configs.items():
        print(label)
        for name, make, change in (("planted hinge", planted, 15), ("planted exp", expo, 5), ("null flat", flat, None),
                                   ("null line", line, None), ("null AR(1)", ar1, None)):
            r = detection_rates(make, n, cfg, change_step=change, max_lag=12)
            extra = ""
            if change is not None:
                extra = (f", within 12 steps {r['within_lag_rate']:.2f}, median lag "
                         f"{np.median(r['lags']) if r['lags'] else float('nan'):.1f}")
            print(f"  {name:14s} fire rate {r['fire_rate']:.2f}{extra}")
    # cost: an unreachable confirmation count keeps the detector testing at every update
    per = 0.0
    for n_steps in (200, 100):
        det = OnlineConsolidationDetector(OnlineConfig(min_steps=10, confirm=10**9))
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for s in range(n_steps):
            det.update(s, 1 + rng.normal(0, 0.03))
        last = time.perf_counter()
        det.update(n_steps, 1.0)
        per = (last - t0) / n_steps
        print(f"cost: mean {1000 * (last - t0) / n_steps:.2f} ms per update over {n_steps} steps, "
              f"{1000 * (time.perf_counter() - last):.2f} ms at step {n_steps}")
    print(f"online_update_ms_mean_first_100_steps: {1000 * per:.2f}")


if __name__ == "__main__":
    main()
