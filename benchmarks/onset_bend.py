"""A known limit of the exploration onset test: a bend from an exactly constant curve into a steep, concave rise.

    python benchmarks/onset_bend.py [N_SEEDS]      (default 50 seeds; a few seconds)

Two planted strategy-entropy curves over 60 steps, each run through `hicra.dynamics.phases.onset_test` (the test
`detect_phases` uses for `exploration_onset_step`) with the default `PhaseConfig`:

- mix: every response carries the same strategy label up to step 18, so the label entropy is exactly 0 there; from
  step 18 a second label's share grows by 0.01 per step (0.41 at step 59), and each step's entropy is that of 64
  sampled labels (binomial). The entropy of a two-label mix rises steeply as the share leaves 0 and then flattens
  (0.06 nats at step 19, 0.20 at step 23, 0.44 at step 34, 0.68 at step 59): a sharp bend at step 18 into a
  concave rise.
- linear: a straight rise from step 18 to the same final value (0.016 nats per step), with Gaussian noise of sd 0.05.

For each curve it prints the share of seeds whose onset is detected, the median p value, breakpoint and noise
lag-1 (`noise_ar1`, the AR(1) phi of the null) over the seeds, and the same for the mix curve without sampling
noise.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from hicra.dynamics.phases import PhaseConfig, onset_test

STEPS, BEND, RATE, RESPONSES = 60, 18, 0.01, 64


def two_label_entropy(share: np.ndarray) -> np.ndarray:
    """Entropy (nats) of a two-label mix with the second label's share `share` (0 where the share is 0 or 1)."""
    q = np.clip(share, 1e-300, 1.0)
    p = np.clip(1.0 - share, 1e-300, 1.0)
    return np.where((share > 0) & (share < 1), -(q * np.log(q) + p * np.log(p)), 0.0)


def curves(seed: int) -> dict[str, np.ndarray]:
    x = np.arange(STEPS, dtype=float)
    share = np.clip(RATE * (x - BEND), 0.0, 1.0)
    rng = np.random.default_rng(seed)
    sampled = rng.binomial(RESPONSES, share) / RESPONSES
    end = float(two_label_entropy(share)[-1])
    linear = end * np.maximum(x - BEND, 0) / (STEPS - 1 - BEND) + rng.normal(0, 0.05, STEPS)
    return {"mix": two_label_entropy(sampled), "linear": linear, "mix, no sampling noise": two_label_entropy(share)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n_seeds", nargs="?", type=int, default=50, metavar="N_SEEDS", help="seeds (default 50)")
    n_seeds = ap.parse_args().n_seeds
    if n_seeds < 1:
        print(f"onset_bend: error: N_SEEDS must be >= 1, got {n_seeds}", file=sys.stderr)
        return 2
    config = PhaseConfig()
    x = np.arange(STEPS, dtype=float)
    results: dict[str, list[dict]] = {}
    for seed in range(n_seeds):
        for name, y in curves(seed).items():
            if name == "mix, no sampling noise" and seed > 0:
                continue  # the same curve for every seed
            results.setdefault(name, []).append(onset_test(x, y, config))
    print(f"onset_test on {STEPS}-step curves, constant up to step {BEND}, then rising ({n_seeds} seeds):")
    for name, rs in results.items():
        detected = sum(r["detected"] for r in rs)
        print(f"  {name:24s} detected {detected}/{len(rs)} ({detected / len(rs):.0%}); median p "
              f"{np.median([r['p_value'] for r in rs]):.3f}, breakpoint step "
              f"{np.median([r['breakpoint_step'] for r in rs]):.0f}, noise AR(1) phi "
              f"{np.median([r['noise_ar1'] for r in rs]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
