"""Phase verdict v2 on planted synthetic runs: the share of each verdict per case and noise condition.

    python benchmarks/phase_verdicts.py [N_PER_CASE] [N_BOOT] [--seed-offset K]

Cases and noise conditions: `hicra.dynamics.synthetic.PHASE_CASES` / `PHASE_NOISE` (60 steps; low and high white
noise, and the low level with AR(1) drift phi = 0.6). Curve set i (i = K .. K + N - 1) is seeded by i, so
`--seed-offset 1000` gives curve sets disjoint from the default range (a check that the figures do not rest on the
seeds the method was developed on). Prints one line per (condition, case): the share of correct verdicts, the
share called `two-phase`, and the full verdict counts; then whether the targets hold (>= 90% correct per case;
<= 5% `two-phase` on every case that is not two-phase).
Defaults: 50 per case, n_boot 199 (the analyzer's default is 999; 199 keeps the run to minutes), offset 0.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from hicra.dynamics.phases import PhaseConfig, detect_phases
from hicra.dynamics.synthetic import PHASE_CASES, PHASE_NOISE, phase_curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=50, help="curve sets per case and condition")
    ap.add_argument("n_boot", nargs="?", type=int, default=199, help="bootstrap resamples per test")
    ap.add_argument("--seed-offset", type=int, default=0, help="first curve set's seed")
    args = ap.parse_args()
    n, off = args.n, args.seed_offset
    cfg = PhaseConfig(n_boot=args.n_boot)
    t0 = time.perf_counter()
    misses = []
    print(f"{'noise':6s} {'case':29s} {'correct':>8s} {'two-phase':>10s}  verdicts")
    for noise in PHASE_NOISE:
        for case, want in PHASE_CASES.items():
            counts = Counter(detect_phases(phase_curves(case, np.random.default_rng(i), noise=noise), cfg)["verdict"]
                             for i in range(off, off + n))
            correct, two = counts[want] / n, counts["two-phase"] / n
            print(f"{noise:6s} {case:29s} {correct:8.0%} {two:10.0%}  {dict(counts.most_common())}", flush=True)
            if correct < 0.9:
                misses.append(f"{noise}/{case}: {correct:.0%} correct")
            if want != "two-phase" and two > 0.05:
                misses.append(f"{noise}/{case}: {two:.0%} two-phase")
    print(f"{n} curves per case (seeds {off}..{off + n - 1}), n_boot {args.n_boot}, {time.perf_counter() - t0:.0f} s")
    print("targets met" if not misses else "targets missed: " + "; ".join(misses))


if __name__ == "__main__":
    main()
