"""The offline consolidation test under autocorrelated noise: false detections on flat series, detections on
planted falls, for AR(1) noise of several phi (docs/dynamics.md).

    python benchmarks/phase_noise.py [N_SERIES]

Series of 300 steps (the lab `default` run length), noise sd 0.05 (marginal), n_boot 199. Null: flat at 1. Planted:
1 - 0.3 (1 - exp(-step / 30)), a consolidation whose bend is near step 30-60. Each line: the share of series in
which `consolidation_test` reports a consolidation. Per-step training metrics drift (consecutive steps share most
of the policy), so a test calibrated for independent noise would call that drift a consolidation; the test's
AR(1) sieve null is what keeps the first block near the test's level.
"""

from __future__ import annotations

import sys

import numpy as np

from hicra.dynamics.phases import PhaseConfig, consolidation_test

N_STEPS = 300


def ar1(rng, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) noise with marginal standard deviation sd."""
    e = np.empty(N_STEPS)
    e[0] = rng.normal(0, sd)
    z = rng.normal(0, sd * np.sqrt(1 - phi**2), N_STEPS)
    for t in range(1, N_STEPS):
        e[t] = phi * e[t - 1] + z[t]
    return e


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    cfg = PhaseConfig(n_boot=199, seed=0)
    x = np.arange(N_STEPS, dtype=float)
    planted = 1 - 0.3 * (1 - np.exp(-x / 30))
    for phi in (0.0, 0.5, 0.8):
        null = np.mean([consolidation_test(x, 1 + ar1(np.random.default_rng(i), phi, 0.05), cfg)["detected"]
                        for i in range(n)])
        power = np.mean([consolidation_test(x, planted + ar1(np.random.default_rng(10_000 + i), phi, 0.05),
                                            cfg)["detected"] for i in range(n)])
        print(f"AR(1) phi {phi}: flat null called consolidation {null:.2f}; planted fall detected {power:.2f} "
              f"({n} series each)", flush=True)


if __name__ == "__main__":
    main()
