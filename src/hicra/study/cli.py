"""Verb `hicra study`: multi-seed lab experiments with controls, resumable and parallel (see hicra.study)."""

from __future__ import annotations

import argparse
import sys

from hicra.errors import InputError

PRESET_NAMES = ("smoke", "quick", "full")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "study", help="multi-seed lab comparisons of GRPO, HICRA and controls, with statistics",
        description="Run every (arm, seed) of a preset on the CPU lab from one shared warm start, in parallel "
        "processes, then write results.json, results.md and figures/ to --out. Rerunning the same command "
        "never recomputes a finished run and resumes an interrupted one from its checkpoint. Arms: grpo, hicra "
        "(alpha 0.2), placebo, high-entropy, gated (the rule of TRL PR #4997), hicra-a0.1, hicra-a0.4, phase-aware.")
    p.add_argument("--preset", choices=PRESET_NAMES, default="quick",
                   help="smoke: pipeline check in seconds; quick: every arm, 3 seeds x 60 steps (~9 min on an idle "
                   "2-core machine); full: every arm, 8 seeds x 300 steps (hours) (default quick)")
    p.add_argument("--arms", metavar="ARM[,ARM]", help="comma-separated subset of the preset's arms")
    p.add_argument("--seeds", type=int, metavar="N", help="seeds per arm (0..N-1; default: the preset's)")
    p.add_argument("--workers", type=int, metavar="N", help="parallel run processes (default: one per core)")
    p.add_argument("--cache", metavar="DIR", help="warm-start cache folder (default OUT/warmstart; pass the lab's "
                   "cache, e.g. ~/.cache/hicra/lab, to share warm starts with `hicra lab`)")
    p.add_argument("--out", required=True, metavar="DIR", help="study directory (created or resumed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_study_cli)


def run_study_cli(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hicra.study import PRESETS, parse_arms, run_study

    preset = PRESETS[args.preset]
    arms = parse_arms(args.arms, preset)
    if args.seeds is not None and args.seeds < 1:
        raise InputError(f"must be >= 1, got {args.seeds}", field="seeds")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"must be >= 1, got {args.workers}", field="workers")
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    results = run_study(args.out, preset, arms=arms, seeds=args.seeds, workers=args.workers, cache=args.cache,
                        progress=not args.quiet, log=log)
    print(f"wrote {args.out}/results.json, results.md and figures/ "
          f"({len(results['runs'])} runs, {results['wall_seconds_this_invocation']:.0f} s)")
    return 0
