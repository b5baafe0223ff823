"""Online detector (differential rule): firing rates on planted and no-order synthetic sequences, lag, cost.

    python benchmarks/online_phases.py [N_SERIES]

Sequences have 40 steps; each step feeds execution, planning and reference-class perplexities (reference = 0.9
execution + 0.1 planning; planning and reference noise twice execution's, white, sd 0.01). Planted: execution falls
linearly until step 15 then flat, planning keeps falling slowly (execution first). No order: both classes fall
until 15 together; flat; a straight fall of both; flat with AR(1) noise (phi 0.5). Last line:
`online_update_ms_mean_first_100_steps: X`.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from hicra.dynamics.online import OnlineConfig, OnlineConsolidationDetector, detection_rates
from hicra.dynamics.synthetic import ar1_noise

S = 40
_s = np.arange(S)


def _classes(seed, execution, planning, phi=0.0, sd=0.01):
    r = np.random.default_rng(seed)
    ref = 0.9 * execution + 0.1 * planning
    return (_s, execution + ar1_noise(r, S, phi, sd), planning + ar1_noise(r, S, phi, 2 * sd),
            ref + ar1_noise(r, S, phi, 2 * sd))


def planted(i):
    return _classes(i, 1 - 0.02 * np.minimum(_s, 15), 1 - 0.005 * _s)


def together(i):
    fall = 1 - 0.02 * np.minimum(_s, 15)
    return _classes(1000 + i, fall, fall)


def flat(i):
    return _classes(2000 + i, np.ones(S), np.ones(S))


def line(i):
    return _classes(3000 + i, 1 - 0.01 * _s, 1 - 0.01 * _s)


def ar1(i):
    return _classes(4000 + i, np.ones(S), np.ones(S), phi=0.5)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    configs = {"default (confirm 3, alpha 0.05)": OnlineConfig(), "confirm 2": OnlineConfig(confirm=2),
               "single look (confirm 1)": OnlineConfig(confirm=1)}
    for label, cfg in configs.items():
        print(label)
        for name, make, change in (("planted", planted, 15), ("together", together, None), ("null flat", flat, None),
                                   ("null line", line, None), ("null AR(1)", ar1, None)):
            r = detection_rates(make, n, cfg, change_step=change, max_lag=12)
            extra = ""
            if change is not None:
                extra = (f", within 12 steps {r['within_lag_rate']:.2f}, median lag "
                         f"{np.median(r['lags']) if r['lags'] else float('nan'):.1f}")
            print(f"  {name:14s} fire rate {r['fire_rate']:.2f}{extra}", flush=True)
    # cost: an unreachable confirmation count keeps the detector testing at every update
    per = 0.0
    for n_steps in (200, 100):
        det = OnlineConsolidationDetector(OnlineConfig(min_steps=10, confirm=10**9))
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for s in range(n_steps):
            det.update(s, *(1 + rng.normal(0, 0.03, 3)))
        last = time.perf_counter()
        det.update(n_steps, 1.0, 1.0, 1.0)
        per = (last - t0) / n_steps
        print(f"cost: mean {1000 * (last - t0) / n_steps:.2f} ms per update over {n_steps} steps, "
              f"{1000 * (time.perf_counter() - last):.2f} ms at step {n_steps}")
    print(f"online_update_ms_mean_first_100_steps: {1000 * per:.2f}")


if __name__ == "__main__":
    main()
