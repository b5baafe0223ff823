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

import argparse

import numpy as np

from hicra.dynamics.phases import PhaseConfig, consolidation_test
from hicra.dynamics.synthetic import ar1_noise

N_STEPS = 300


def detected_share(curve, phi: float, first_seed: int, n: int, cfg: PhaseConfig) -> float:
    """Share of n series (curve + AR(1) noise, seeds first_seed...) in which a consolidation is detected."""
    x = np.arange(N_STEPS, dtype=float)
    hits = [consolidation_test(x, curve + ar1_noise(np.random.default_rng(first_seed + i), N_STEPS, phi, 0.05),
                               cfg)["detected"] for i in range(n)]
    return float(np.mean(hits))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=100, metavar="N_SERIES", help="series per cell (default 100)")
    n = ap.parse_args().n
    if n < 1:
        ap.error(f"N_SERIES must be >= 1, got {n}")
    cfg = PhaseConfig(n_boot=199, seed=0)
    planted = 1 - 0.3 * (1 - np.exp(-np.arange(N_STEPS) / 30))
    for phi in (0.0, 0.5, 0.8):
        null, power = detected_share(1.0, phi, 0, n, cfg), detected_share(planted, phi, 10_000, n, cfg)
        print(f"AR(1) phi {phi}: flat null called consolidation {null:.2f}; planted fall detected {power:.2f} "
              f"({n} series each)", flush=True)


if __name__ == "__main__":
    main()
