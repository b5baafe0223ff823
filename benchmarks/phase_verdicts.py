"""Phase verdict v2 on planted synthetic runs: the share of each verdict per case and noise condition.

    python benchmarks/phase_verdicts.py [N_PER_CASE] [N_BOOT] [--seed-offset K] [--pool R]
                                        [--reference-noise F] [--reference-planning-share Q]
                                        [--cases a,b] [--noise low,high]

Cases and noise conditions: `hicra.dynamics.synthetic.PHASE_CASES` / `PHASE_NOISE` (60 steps; low and high white
noise, and the low level with AR(1) drift phi = 0.6). Curve set i (i = K .. K + N - 1) is seeded by i, so
`--seed-offset 1000` gives curve sets disjoint from the default range (a check that the figures do not rest on the
seeds the method was developed on). Prints one line per (condition, case): the share of correct verdicts, the
share called `two-phase`, and the full verdict counts; then whether the targets hold (>= 90% correct per case;
<= 5% `two-phase` on every case that is not two-phase).
`--pool R`: each verdict is the pooled one over R runs of the case (`detect_phases_pooled`, resampling runs); the
runs of set i are seeded K + i R .. K + i R + R - 1, so no two sets share a run.
`--reference-noise F`: the reference class's noise is F times planning's (`phase_curves(reference_noise=F)`;
default 1, the noise-matched reference the targets assume); below 1 measures the known limit of a reference class
quieter than planning (docs/dynamics.md, "Known limits"). `--reference-planning-share Q`: the share of planning
tokens in the reference class (`phase_curves(planning_ratio=Q)`; default 0.1; the lab's control runs measure
0.12-0.22, and 0 is a reference drawn from non-planning tokens only, the candidate fix in docs/dynamics.md,
"Known limits"). `--cases` / `--noise`: a subset of the cases / conditions (`--noise` also takes the stress condition
`noisy-planning`, planning 8 times as noisy as execution: `PHASE_NOISE_STRESS`).
Defaults: 50 per case, n_boot 199 (the analyzer's default is 999; 199 keeps the run to minutes), offset 0.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from hicra.dynamics.phases import PhaseConfig, detect_phases, detect_phases_pooled
from hicra.dynamics.synthetic import PHASE_CASES, PHASE_NOISE, PHASE_NOISE_STRESS, phase_curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=50, help="curve sets per case and condition")
    ap.add_argument("n_boot", nargs="?", type=int, default=199, help="bootstrap resamples per test")
    ap.add_argument("--seed-offset", type=int, default=0, help="first curve set's seed")
    ap.add_argument("--pool", type=int, default=1, help="runs pooled into each verdict (1: one run per verdict)")
    ap.add_argument("--reference-noise", type=float, default=1.0,
                    help="reference-class noise as a multiple of planning's (default 1)")
    ap.add_argument("--reference-planning-share", type=float, default=None,
                    help="planning tokens' share of the reference class (default: 0 with --version 3, which draws "
                         "it from non-planning tokens; 0.1 with --version 2, the v2 validation's share of a draw "
                         "from all tokens, 0.1-0.2 in the lab)")
    ap.add_argument("--version", type=int, default=3, choices=(2, 3),
                    help="the verdict's rules (`PhaseConfig.version`, default 3)")
    ap.add_argument("--n-boot-refine", type=int, default=PhaseConfig().n_boot_refine,
                    help="v3's null size for a p near its level (`PhaseConfig.n_boot_refine`; 0: no refinement)")
    ap.add_argument("--cases", default=",".join(PHASE_CASES), help="comma-separated cases (default: all)")
    ap.add_argument("--noise", default=",".join(PHASE_NOISE), help="comma-separated noise conditions (default: the three of PHASE_NOISE; also noisy-planning)")
    args = ap.parse_args()
    n, off, pool, rn, q = args.n, args.seed_offset, args.pool, args.reference_noise, args.reference_planning_share
    default_q = 0.0 if args.version >= 3 else 0.1  # the rules' own share: not repeated in the summary line
    if q is None:
        q = default_q
    if not 0 <= q <= 1:
        ap.error(f"--reference-planning-share must lie in [0, 1], got {q}")
    cases = {c: PHASE_CASES[c] for c in args.cases.split(",") if c}
    noises = [c for c in args.noise.split(",") if c]
    unknown = sorted((set(cases) - set(PHASE_CASES)) | (set(noises) - set(PHASE_NOISE) - set(PHASE_NOISE_STRESS)))
    if unknown:
        ap.error(f"unknown case or noise condition: {', '.join(unknown)}")
    cfg = PhaseConfig(n_boot=args.n_boot, version=args.version, n_boot_refine=args.n_boot_refine)

    def verdict(case, noise, i):
        if pool == 1:
            return detect_phases(phase_curves(case, np.random.default_rng(i), noise=noise, reference_noise=rn,
                                              planning_ratio=q),
                                 cfg)["verdict"]
        runs = [phase_curves(case, np.random.default_rng(off + (i - off) * pool + r), noise=noise,
                             reference_noise=rn, planning_ratio=q) for r in range(pool)]
        return detect_phases_pooled(runs, cfg)["verdict"]

    t0 = time.perf_counter()
    misses = []
    print(f"{'noise':6s} {'case':29s} {'correct':>8s} {'two-phase':>10s}  verdicts")
    for noise in noises:
        for case, want in cases.items():
            counts = Counter(verdict(case, noise, i) for i in range(off, off + n))
            correct, two = counts[want] / n, counts["two-phase"] / n
            print(f"{noise:6s} {case:29s} {correct:8.0%} {two:10.0%}  {dict(counts.most_common())}", flush=True)
            if correct < 0.9:
                misses.append(f"{noise}/{case}: {correct:.0%} correct")
            if want != "two-phase" and two > 0.05:
                misses.append(f"{noise}/{case}: {two:.0%} two-phase")
    what = (f"{n} curve sets per case" + (f", each {pool} runs pooled" if pool > 1 else "")
            + (f", reference noise {rn:g} x planning's" if rn != 1 else "")
            + (f", planning share of the reference {q:g}" if q != default_q else ""))
    last = off + n * pool - 1
    print(f"{what} (seeds {off}..{last}), n_boot {args.n_boot}, {time.perf_counter() - t0:.0f} s")
    print("targets met" if not misses else "targets missed: " + "; ".join(misses))


if __name__ == "__main__":
    main()
