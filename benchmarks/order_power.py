"""The order test's power at the lab's effect sizes: how large a class's fall must be, and how many runs a cell
needs, for the pooled order to read a planted order.

    python benchmarks/order_power.py [--sets N] [--runs R] [--drops 0.01,0.02,0.03] [--cases a,b] [--n-boot B]
                                     [--steps S] [--time-constant T] [--noise E,P,F] [--phi PHI]
                                     [--sharpening E,P,F] [--reference-planning-share Q]

The order criteria of the controls study (docs/study.md) read `hicra.dynamics.phases.detect_phases_pooled` over a
cell's runs (6 in the controls preset). The verdict was validated on planted curves whose falls are 15-30 times
their noise (`hicra.dynamics.synthetic.phase_curves`: a fall of 0.3, noise SD 0.01-0.02, 60 steps). The lab's
class curves fall by about 0.01 with noise SDs of 0.004-0.009 (`benchmarks/control_classes.py` on the committed
summaries). This measures the test in between, on planted curves at the lab's scale:
- S steps (default 320, the controls' run length);
- the settling class falls as 1 - DROP (1 - exp(-step / T)) (T = 30 steps by default: most of the fall is done by
  step 90, about where the noisy-oracle runs' execution settled, tau_exec 58-95), the other class is flat at 1;
- the reference class (random tokens of planning's number) is the token-weighted mix (1 - Q) execution + Q
  planning. `hicra.dynamics.metrics` draws it from all response tokens, planning ones included, so Q is the
  planning share of the response: 0.12-0.22 in the 48 control runs, median 0.20. The default Q is 0.1, as in
  `phase_curves` (in the noisy-oracle cells the measured reference fall is 0.9-1.2 times execution's);
  `--reference-planning-share 0` is a reference drawn from non-planning tokens only (not what the verdict measures
  today: a candidate change, question 6);
- noise: AR(1) with lag-1 PHI (default 0.03, the median of the 48 control runs' fitted `noise_ar1`) and SDs
  E, P, F for execution, planning and reference (default 0.0041, 0.0074, 0.0068: the medians of those runs'
  `evidence.order.noise_sd`), independent per run and class;
- optionally (`--sharpening E,P,F`, default none) a straight decline of E, P and F over the run added to the
  execution, planning and reference curves: the general sharpening the lab's runs show where no level has anything
  to learn (the clean oracle diverse cell's mean curves fell 0.005, 0.021 and 0.008 over 320 steps), which has no
  bend and flattens nowhere;
- the strategy entropy is flat with noise (no case plants exploration; only the order is read).

Cases: `execution-first` (execution falls), `planning-first` (planning falls), and two where no order is planted,
for the false claims: `together` (both fall by DROP at the same pace; a correct read is `simultaneous`) and `none`
(nothing falls, DROP unused; a correct read is `none`; with `--sharpening` the sharpening-only control). For each
case and DROP it runs N sets of R runs (set i's runs seeded by i R .. i R + R - 1 within the case and drop) and
prints the share of sets whose pooled order is the correct one (`EXPECTED`), the counts of the pooled orders, and
the share of single runs whose own order is the correct one (the per-run verdicts the pooled call also returns). A sizing aid for a lab change, not a
criterion; the per-class consolidation tests run at `--n-boot` draws (default 199; the analyzer's 999 changes the
p values' resolution, not their level).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from hicra.dynamics.phases import PhaseConfig, detect_phases_pooled
from hicra.dynamics.synthetic import ar1_noise

CASES = ("execution-first", "planning-first", "together", "none")
# case -> the order a correct read gives
EXPECTED = {"execution-first": "execution-first", "planning-first": "planning-first", "together": "simultaneous",
            "none": "none"}
# the default Q per verdict version: v3 draws the reference from non-planning tokens; v2 drew from all tokens
# (0.1-0.2 planning in the lab; session 37's figures used 0.1)
PLANNING_SHARE_OF_REFERENCE = {3: 0.0, 2: 0.1}


def planted_run(case: str, drop: float, rng: np.random.Generator, *, steps: int = 320, time_constant: float = 30.0,
                noise: tuple[float, float, float] = (0.0041, 0.0074, 0.0068), phi: float = 0.03,
                sharpening: tuple[float, float, float] = (0.0, 0.0, 0.0),
                reference_planning_share: float = PLANNING_SHARE_OF_REFERENCE[3]) -> dict:
    """One planted run's metric columns (arrays of length `steps`): rel_ppl_execution / planning / reference,
    strategy_entropy, accuracy, mean_length, step; `sharpening`: each class's straight decline over the run
    (execution, planning, reference); `reference_planning_share`: Q above. ValueError for an unknown case."""
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; one of {CASES}")
    x = np.arange(steps, dtype=float)
    fall, flat = 1 - drop * (1 - np.exp(-x / time_constant)), np.ones_like(x)
    exec_, plan = {"execution-first": (fall, flat), "planning-first": (flat, fall), "together": (fall, fall),
                   "none": (flat, flat)}[case]
    ref = (1 - reference_planning_share) * exec_ + reference_planning_share * plan
    line = x / max(steps - 1, 1)
    exec_, plan, ref = (c - d * line for c, d in zip((exec_, plan, ref), sharpening, strict=True))
    s_exec, s_plan, s_ref = noise
    return {"step": x,
            "rel_ppl_execution": exec_ + ar1_noise(rng, steps, phi, s_exec),
            "rel_ppl_planning": plan + ar1_noise(rng, steps, phi, s_plan),
            "rel_ppl_reference": ref + ar1_noise(rng, steps, phi, s_ref),
            "strategy_entropy": 1.0 + ar1_noise(rng, steps, phi, 0.05),
            "accuracy": 0.5 + ar1_noise(rng, steps, phi, 0.02),
            "mean_length": 120 + ar1_noise(rng, steps, phi, 3.0)}


def power(case: str, drop: float, sets: int, runs: int, config: PhaseConfig, **curve) -> dict:
    """{"pooled_correct", "pooled_orders", "per_run_correct"}: over `sets` sets of `runs` planted runs, the share
    of pooled orders equal to `EXPECTED[case]`, their counts, and the share of the runs' own orders equal to it."""
    pooled, per_run = Counter(), []
    for i in range(sets):
        ms = [planted_run(case, drop, np.random.default_rng(i * runs + j), **curve) for j in range(runs)]
        out = detect_phases_pooled(ms, config)
        pooled[out["order"]] += 1
        per_run += [r["order"] == EXPECTED[case] for r in out["evidence"]["per_run"]]
    return {"pooled_correct": pooled[EXPECTED[case]] / sets, "pooled_orders": dict(pooled),
            "per_run_correct": float(np.mean(per_run))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=20)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--drops", default="0.01,0.02,0.03,0.05")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--n-boot", type=int, default=199)
    ap.add_argument("--steps", type=int, default=320)
    ap.add_argument("--time-constant", type=float, default=30.0)
    ap.add_argument("--noise", default="0.0041,0.0074,0.0068")
    ap.add_argument("--phi", type=float, default=0.03)
    ap.add_argument("--sharpening", default="0,0,0")
    ap.add_argument("--reference-planning-share", type=float, default=None,
                    help="planning share of the reference (default: PLANNING_SHARE_OF_REFERENCE[--version])")
    ap.add_argument("--version", type=int, default=3, choices=(2, 3), help="the verdict's rules (PhaseConfig.version)")
    args = ap.parse_args(argv)
    if args.reference_planning_share is None:
        args.reference_planning_share = PLANNING_SHARE_OF_REFERENCE[args.version]
    try:
        drops = [float(d) for d in args.drops.split(",")]
        noise = tuple(float(v) for v in args.noise.split(","))
        sharpening = tuple(float(v) for v in args.sharpening.split(","))
        cases = args.cases.split(",")
        if len(noise) != 3 or len(sharpening) != 3 or any(c not in CASES for c in cases) or args.sets < 1 or args.runs < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--drops, --noise and --sharpening take numbers (the last two three each), --cases some of {','.join(CASES)}, "
                 "--sets and --runs positive integers")
    cfg = PhaseConfig(n_boot=args.n_boot, version=args.version)
    print(f"{args.sets} sets of {args.runs} planted runs, {args.steps} steps, fall time constant "
          f"{args.time_constant:g}, noise SD exec/plan/ref {noise}, phi {args.phi:g}, straight declines "
          f"exec/plan/ref {sharpening}, planning share of the reference {args.reference_planning_share:g}, "
          f"n_boot {args.n_boot}, verdict rules v{args.version}")
    for case in cases:
        sd = noise[1] if case == "planning-first" else noise[0]
        for drop in (drops if case != "none" else drops[:1]):
            t0 = time.perf_counter()
            r = power(case, drop, args.sets, args.runs, cfg, steps=args.steps, time_constant=args.time_constant,
                      noise=noise, phi=args.phi, sharpening=sharpening,
                      reference_planning_share=args.reference_planning_share)
            orders = ", ".join(f"{k} {v}" for k, v in sorted(r["pooled_orders"].items()))
            size = f"drop {drop:<6g} (drop/noise {drop / sd:4.1f})" if case != "none" else "no fall" + " " * 25
            print(f"{case:<16} {size}: pooled reads {EXPECTED[case]} in "
                  f"{r['pooled_correct']:.0%} of sets ({orders}); single runs {r['per_run_correct']:.0%}; "
                  f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
