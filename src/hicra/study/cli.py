"""Verb `hicra study`: multi-seed lab experiments with controls, resumable and parallel (see hicra.study)."""

from __future__ import annotations

import argparse
import sys

from hicra.errors import InputError
from hicra.study.presets import PRESETS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "study", help="multi-seed lab comparisons of GRPO, HICRA and controls, with statistics",
        description="Run every (cell, arm, warm-start seed, RL seed) of a preset on the CPU lab, in parallel "
        "processes, summarise each finished run into SUMMARIES/[CELL/]ARM/wsW-seedS.json, then write "
        "results.json, results.md and figures/ to --out from those summaries alone. Rerunning never recomputes a "
        "summarised run and resumes an interrupted one from its checkpoint. Arms: grpo, hicra (alpha 0.2), placebo, "
        "placebo-mass (random non-planning tokens with the planning tokens' update mass), high-entropy, gated (the "
        "rule of TRL PR #4997), hicra-a0.1, hicra-a0.4, phase-aware.")
    p.add_argument("--preset", choices=tuple(PRESETS), default="quick",
                   help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()) + " (default quick)")
    p.add_argument("--arms", metavar="ARM[,ARM]", help="comma-separated subset of the preset's arms")
    p.add_argument("--seeds", type=int, metavar="N", help="RL seeds per warm-start seed (default: the preset's)")
    p.add_argument("--warm-start-seeds", type=int, metavar="W", help="W warm-start seeds, from the preset's first one (0, "
                   "and 2 in controls3), each with its own RL seeds seed*1000+0..N-1, every arm on the same pairs "
                   "(default: the preset's)")
    p.add_argument("--cells", metavar="KNOB=V[,V][;KNOB=V...]", help="corpus-knob cells, every combination, e.g. "
                   "'execution_noise=0,0.05;strategy_prior=oracle,blind-common;optimum=diverse,single-route' (knobs: "
                   "execution_noise, strategy_prior, planning_noise, favourite_share, slip_cap, optimum; default: the "
                   "preset's)")
    p.add_argument("--summaries", metavar="DIR", help="per-run summary folder (default OUT/summaries; e.g. "
                   "docs/findings/v2/runs to commit them: a new machine then resumes from them alone)")
    p.add_argument("--workers", type=int, metavar="N", help="parallel run processes (default: one per core)")
    p.add_argument("--cache", metavar="DIR", help="warm-start cache folder (default OUT/warmstart; pass the lab's "
                   "cache, e.g. ~/.cache/hicra/lab, to share warm starts with `hicra lab`)")
    p.add_argument("--out", required=True, metavar="DIR", help="study directory (created or resumed)")
    p.add_argument("--stop-after", type=float, metavar="MINUTES", help="start no run or warm-start build after "
                   "MINUTES of wall time; running ones finish (a 320-step control run takes ~20 min beside another), "
                   "then exit without statistics if runs are left: rerun the same command to continue")
    p.add_argument("--only-warm-starts", metavar="W[,W]", help="build and run only the runs of these warm-start "
                   "seeds now (statistics once every run is summarised): on a machine whose cache does not outlive "
                   "the session, run all of a warm start's runs on one build, since a rebuild elsewhere is a "
                   "different model")
    p.add_argument("--controls", metavar="FILE", help="the results.json of the controls study this study's verdicts "
                   "depend on (e.g. docs/findings/v2/controls3/results.json): its outcome heads results.md, since the "
                   "main verdicts count only when every control passed (docs/study.md, point 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (one line per finished run or warm-start "
                   "build still goes to stderr)")
    p.add_argument("--blind", action="store_true", help="each finished run's line gives its name and seconds only, "
                   "no accuracy or verdict: for a study declared with no interim look, whose log may be watched")
    p.set_defaults(func=run_study_cli)


def run_study_cli(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hicra.study import parse_arms, parse_cells, run_study

    preset = PRESETS[args.preset]
    arms = parse_arms(args.arms, preset)
    cells = parse_cells(args.cells) if args.cells is not None else None
    if args.seeds is not None and args.seeds < 1:
        raise InputError(f"must be >= 1, got {args.seeds}", field="seeds")
    if args.warm_start_seeds is not None and args.warm_start_seeds < 1:
        raise InputError(f"must be >= 1, got {args.warm_start_seeds}", field="warm_start_seeds")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"must be >= 1, got {args.workers}", field="workers")
    if args.stop_after is not None and args.stop_after < 0:
        raise InputError(f"must be >= 0, got {args.stop_after}", field="stop_after")
    only = None
    if args.only_warm_starts is not None:
        try:
            only = [int(w) for w in args.only_warm_starts.split(",")]
        except ValueError:
            raise InputError(f"expected comma-separated integers, got {args.only_warm_starts!r}",
                             field="only_warm_starts") from None

    def log(*parts):
        print(*parts, file=sys.stderr, flush=True)

    results = run_study(args.out, preset, arms=arms, seeds=args.seeds, workers=args.workers, cache=args.cache,
                        progress=not args.quiet, log=log, warm_start_seeds=args.warm_start_seeds, cells=cells,
                        summary_root=args.summaries,
                        stop_after=None if args.stop_after is None else 60 * args.stop_after,
                        only_warm_starts=only, controls=args.controls, blind=args.blind)
    if not results["complete"]:
        why = [f"stopped after {args.stop_after:g} min"] if args.stop_after is not None else []
        if only is not None:
            why.append(f"ran only warm-start seed(s) {','.join(map(str, only))}")
        print(f"{'; '.join(why)}: {results['n_summarised']} of {results['n_runs']} runs summarised; rerun to "
              f"continue (no statistics yet)")
        return 0
    print(f"wrote {args.out}/results.json, results.md and figures/ "
          f"({len(results['runs'])} runs, {results['wall_seconds_this_invocation']:.0f} s)")
    return 0
