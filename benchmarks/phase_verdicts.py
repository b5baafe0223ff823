"""Phase verdict v2 on planted synthetic runs: the share of each verdict per case and noise condition.

    python benchmarks/phase_verdicts.py [N_PER_CASE] [N_BOOT]

Cases and noise conditions: `hicra.dynamics.synthetic.PHASE_CASES` / `PHASE_NOISE` (60 steps; low and high white
noise, and the low level with AR(1) drift phi = 0.6). Each curve set is seeded by its index. Prints one line per
(condition, case): the share of correct verdicts, the share called `two-phase`, and the full verdict counts; then
whether the targets hold (>= 90% correct per case; <= 5% `two-phase` on every case that is not two-phase).
Defaults: 50 per case, n_boot 199 (the analyzer's default is 999; 199 keeps the run to minutes).
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import numpy as np

from hicra.dynamics.phases import PhaseConfig, detect_phases
from hicra.dynamics.synthetic import PHASE_CASES, PHASE_NOISE, phase_curves


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    n_boot = int(sys.argv[2]) if len(sys.argv) > 2 else 199
    cfg = PhaseConfig(n_boot=n_boot)
    t0 = time.perf_counter()
    misses = []
    print(f"{'noise':6s} {'case':29s} {'correct':>8s} {'two-phase':>10s}  verdicts")
    for noise in PHASE_NOISE:
        for case, want in PHASE_CASES.items():
            counts = Counter(detect_phases(phase_curves(case, np.random.default_rng(i), noise=noise), cfg)["verdict"]
                             for i in range(n))
            correct, two = counts[want] / n, counts["two-phase"] / n
            print(f"{noise:6s} {case:29s} {correct:8.0%} {two:10.0%}  {dict(counts.most_common())}", flush=True)
            if correct < 0.9:
                misses.append(f"{noise}/{case}: {correct:.0%} correct")
            if want != "two-phase" and two > 0.05:
                misses.append(f"{noise}/{case}: {two:.0%} two-phase")
    print(f"{n} curves per case, n_boot {n_boot}, {time.perf_counter() - t0:.0f} s")
    print("targets met" if not misses else "targets missed: " + "; ".join(misses))


if __name__ == "__main__":
    main()
