"""`hicra lab`: warm start (cached) + RL + analysis of the run directory, on a laptop CPU."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from hicra.errors import InputError
from hicra.lab.presets import PRESETS
from hicra.lab.rl import ALGORITHMS as ALGOS
from hicra.lab.tasks.base import OPTIMA, STRATEGY_PRIORS, knob_range_error


def default_cache() -> Path:
    return Path(os.environ.get("HICRA_CACHE", Path.home() / ".cache" / "hicra")) / "lab"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lab", help="the CPU lab: tiny model, synthetic tasks, warm start + RL + analysis",
        description="Build a tiny tokenizer and model, warm-start it on scripted reasoning traces (cached by "
        "settings), run RL with the chosen algorithm, write a run directory and analyse it. Accuracy of the "
        "warm start and after RL is measured on the same held-out problems (greedy, and sampled at the RL "
        "temperature, 0.7 in the presets).")
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help="quick (default; what make demo runs) or default (the study's unit run: quick's settings "
                        "plus the series key pair_even since 2026-12-03, session 31); default-s29 (the default "
                        "before that, the same as quick), quick-n015 / default-n015, "
                        "quick-nocount / default-nocount, quick-fav0.6 / default-fav0.6 and "
                        "quick-14ep / default-14ep: earlier "
                        "presets, kept so their settings can be rerun (with today's RL code: a new sample of their "
                        "figures, not a replay; docs/lab.md)")
    p.add_argument("--algo", choices=ALGOS, help="advantage scheme (default hicra)")
    p.add_argument("--alpha", type=float, help="amplification for hicra / controls (default 0.2)")
    p.add_argument("--seed", type=int, help="RL seed (default 0); the warm start is shared")
    p.add_argument("--warm-start-seed", type=int, metavar="M",
                   help="warm-start seed: corpus, initialisation and SFT order (default 0; cached per seed)")
    p.add_argument("--execution-noise", type=float, metavar="P",
                   help="corpus slip rate per unit of line difficulty (default: the preset's; 0.05 in quick and "
                        "default since 2026-12-03, 0.015 before)")
    p.add_argument("--strategy-prior", choices=STRATEGY_PRIORS,
                   help="warm-start strategy choice: blind to the problem with a rarely cheapest favourite (blind), "
                   "the cheapest (oracle), or blind with the favourite most often cheapest in the plain universes "
                   "(blind-common; the quick and default presets', whose favourite one-by-one their written-terms "
                   "series make costly)")
    p.add_argument("--favourite-share", type=float, metavar="S",
                   help="blind priors: the favourite's probability, the others sharing the rest as in the family's "
                   "table (0 = the table; the quick and default presets: 0.85)")
    p.add_argument("--slip-cap", type=int, metavar="N",
                   help="most units of line difficulty the corpus slip rate counts (default 0 = no cap; 1 = every "
                        "line slips at the execution noise whatever its operation)")
    p.add_argument("--optimum", choices=OPTIMA,
                   help="task variant: the cheapest strategy differs between problems (default) or not")
    p.add_argument("--steps", type=int, help="RL steps (default: the preset's)")
    p.add_argument("--strategy-k", type=int, metavar="K",
                   help="sample K responses per held-out problem from the warm start and from the trained policy "
                        "and record their strategies and the change of the strategy entropy within families in "
                        "eval.json (`strategy_change`; default: the preset's, 0 = not measured; about 35 s per end "
                        "at K = 8)")
    p.add_argument("--lr", type=float, help="RL learning rate (default: the preset's, 5e-5 in quick and default); "
                   "the warm start is unchanged, so runs differing only in --lr share it")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads for the warm start's SFT and for RL (default 1, the study's one process "
                        "per core; 0 = every core, what make demo uses; only on an otherwise idle machine: threads that "
                        "share a core with another job make each step wait). Results differ in the last bits "
                        "between thread counts, so a warm start or run made with another count is another draw")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/lab-PRESET-ALGO-seedN-TIME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint with the settings and warm start its "
                        "run.json records; a flag given with it must agree with the record, except --steps (run "
                        "longer) and --tensorboard")
    p.add_argument("--cache", metavar="DIR", help=f"warm-start cache (default $HICRA_CACHE/lab or {default_cache()})")
    p.add_argument("--tensorboard", action="store_true", help="also log to RUN_DIR/tensorboard (if installed)")
    p.add_argument("--no-analyze", action="store_true", help="skip `hicra analyze` at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# what a new run gets for the flags left out (a resumed run gets what its run.json records)
DEFAULTS = {"preset": "quick", "algo": "hicra", "alpha": 0.2, "seed": 0, "warm_start_seed": 0, "threads": 1}


def run(args) -> int:
    from hicra.algorithms import option_problem

    if args.alpha is not None and (problem := option_problem("alpha", args.alpha)):
        raise InputError(f"--{problem}")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be positive, got {args.steps}")
    if args.strategy_k is not None and args.strategy_k < 0:
        raise InputError(f"--strategy-k must be >= 0 (0 = not measured), got {args.strategy_k}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise InputError(f"--lr must be a positive finite number, got {args.lr}")
    for name in ("seed", "warm_start_seed"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 2**32:  # numpy's seed range, checked before any warm start
            raise InputError(f"--{name.replace('_', '-')} must be in [0, 2**32), got {value}")
    if args.threads is not None and not 0 <= args.threads <= (os.cpu_count() or 1):
        raise InputError(f"--threads must be in [0, {os.cpu_count() or 1}] (0 = every core), got {args.threads}")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError("exists and is not a directory", path=str(args.out), field="out")
    threads = None if args.threads is None else args.threads or os.cpu_count() or 1
    if args.resume and not args.out:
        raise InputError("--resume needs --out RUN_DIR")
    if args.out and not args.resume and (Path(args.out) / "run.json").exists():
        no_checkpoint = not (Path(args.out) / "checkpoints" / "last.pt").exists()
        raise InputError("run directory already holds a run (use --resume or another --out)" + (
            "; it stopped before its first checkpoint, so there is nothing to resume: remove the directory to "
            "start it again" if no_checkpoint else ""), path=str(Path(args.out) / "run.json"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from hicra.lab.presets import get_preset
    from hicra.lab.rl import run_rl
    from hicra.lab.sft import warm_start

    for name in ("execution_noise", "favourite_share", "slip_cap"):
        value = getattr(args, name)
        problem = None if value is None else knob_range_error(name, value, label="--" + name.replace("_", "-"))
        if problem:
            raise InputError(problem)
    knobs = {k: v for k, v in (("execution_noise", args.execution_noise), ("strategy_prior", args.strategy_prior),
                               ("favourite_share", args.favourite_share), ("slip_cap", args.slip_cap),
                               ("optimum", args.optimum))
             if v is not None}
    cache = Path(args.cache) if args.cache else default_cache()
    t0 = time.perf_counter()
    if args.resume:
        out = Path(args.out)
        ws_cfg, rl_cfg, model_dir = _resumed_run(args, out, knobs, threads, cache)
        print(f"resuming {out} as its run.json records it: algo {rl_cfg.algo}, alpha {rl_cfg.alpha:g}, seed "
              f"{rl_cfg.seed}, to step {rl_cfg.steps}, warm start {model_dir.name}")
    else:
        settings = dict(DEFAULTS)  # each flag given replaces its default
        for name in DEFAULTS:
            value = threads if name == "threads" else getattr(args, name)
            if value is not None:
                settings[name] = value
        ws_cfg, rl_cfg = get_preset(settings["preset"], warm_start_seed=settings["warm_start_seed"], knobs=knobs,
                                    algo=settings["algo"], alpha=settings["alpha"], seed=settings["seed"],
                                    steps=args.steps, lr=args.lr, tensorboard=args.tensorboard or None,
                                    threads=settings["threads"], strategy_k=args.strategy_k)
        out = Path(args.out) if args.out else Path("runs") / (
            f"lab-{settings['preset']}-{rl_cfg.algo}-ws{ws_cfg.seed}-seed{rl_cfg.seed}-"
            f"{time.strftime('%Y%m%d-%H%M%S')}")
        model_dir = warm_start(ws_cfg, cache, progress=not args.quiet, threads=rl_cfg.threads)
    torch.set_num_threads(rl_cfg.threads)
    t_ws = time.perf_counter() - t0
    print(f"run directory: {out}")
    run_info = {} if ws_cfg is None else {"warm_start": asdict(ws_cfg)}
    if not args.resume:
        run_info["lab_preset"] = settings["preset"]
    result = run_rl(rl_cfg, model_dir, out, resume=args.resume, progress=not args.quiet, run_info=run_info)
    t_rl = time.perf_counter() - t0 - t_ws
    ev = result["eval"]
    for mode, suffix in (("greedy", ""), (f"sampled, temperature {rl_cfg.temperature:g}", "_sampled")):
        ws, fin = ev["warm_start" + suffix], ev["final" + suffix]
        print(f"accuracy on {ws['n']} held-out problems ({mode}): warm start {ws['accuracy']:.1%} -> after RL "
              f"{fin['accuracy']:.1%} ({100 * (fin['accuracy'] - ws['accuracy']):+.1f} points)")
        for name, e in (("warm start", ws), ("after RL", fin)):
            print(f"  {name:10s} errors: execution {e['errors_execution_share']:.1%}, planning "
                  f"{e['errors_planning_share']:.1%}, format {e['errors_format_share']:.1%}; mean length "
                  f"{e['mean_length']:.1f} tokens; strategy entropy {e['strategy_entropy']:.2f} nats, cheapest "
                  f"strategy {e['cheapest_share']:.1%}")
    if "strategy_change" in ev:
        print("\n".join(strategy_change_lines(ev["strategy_change"], rl_cfg.strategy_k)))
    probes_path = out / "probes.jsonl"
    if probes_path.exists():
        import json

        rows = [json.loads(x) for x in probes_path.read_text().splitlines() if x.strip()]
        first, last = rows[0], rows[-1]
        print(f"skill probes (step {first['step']} -> {last['step']}): execution line accuracy "
              f"{first['exec_probe_line_accuracy']:.1%} -> {last['exec_probe_line_accuracy']:.1%}"
              + (f" (sampled: {first['exec_probe_line_prob']:.1%} -> {last['exec_probe_line_prob']:.1%})"
                 if "exec_probe_line_prob" in first and "exec_probe_line_prob" in last else "")
              + "; planning with a "
              f"calculator: solved {first['plan_probe_solved']:.1%} -> {last['plan_probe_solved']:.1%}, with the "
              f"cheapest strategy {first['plan_probe_cheapest']:.1%} -> {last['plan_probe_cheapest']:.1%}")
    print(f"time: warm start {t_ws:.0f}s, RL {t_rl:.0f}s")
    if not args.no_analyze:
        _analyze(out, result["log"])
    print(f"run directory: {out}")
    return 0


# the RL settings `hicra lab` flags set on a new run (beside those of --preset), with their flags
RL_FLAGS = {"algo": "--algo", "alpha": "--alpha", "seed": "--seed", "lr": "--lr", "strategy_k": "--strategy-k",
            "threads": "--threads"}


def _resumed_run(args, run_dir: Path, knobs: dict, threads: int | None, cache: Path):
    """(warm-start config or None, RL config, warm-start directory) of the run `--resume` continues, from its
    run.json: the RL settings as recorded (a flag given must agree: `_check_flags`; --steps and --tensorboard may
    change) and the recorded warm start (`_resumed_warm_start`)."""
    from hicra.dynamics.records import RUN_INFO
    from hicra.lab.rl import NO_CHECKPOINT, config_from_record, recorded_run, steps_done, steps_problem
    from hicra.lab.sft import warm_start

    if not run_dir.is_dir():
        raise InputError("nothing to resume: not a directory", path=str(run_dir))
    path = str(run_dir / RUN_INFO)
    # everything that can refuse the resume is checked before any warm start is looked for or rebuilt
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if not checkpoint.exists():
        raise InputError(NO_CHECKPOINT, path=str(checkpoint))
    info = recorded_run(run_dir)
    if args.preset is not None and info.get("lab_preset", args.preset) != args.preset:
        raise InputError(f"--preset {args.preset} is not the run's {info['lab_preset']}", path=path, field="lab_preset")
    rl_cfg = config_from_record(info["config"], path)
    _check_flags(args, rl_cfg, threads, path)
    rl_cfg = replace(rl_cfg, steps=args.steps or rl_cfg.steps, tensorboard=args.tensorboard or rl_cfg.tensorboard)
    problem = steps_problem(rl_cfg.steps, steps_done(checkpoint))
    if problem:
        raise InputError(problem, path=path, field="config.steps")
    ws_cfg, model_dir = _resumed_warm_start(args, info, knobs, cache, path)
    if model_dir is None:  # gone from where it was and from the cache: rebuilt there from its settings
        model_dir = warm_start(ws_cfg, cache, progress=not args.quiet, threads=rl_cfg.threads)
    return ws_cfg, rl_cfg, model_dir


def _check_flags(args, rl_cfg, threads: int | None, path: str) -> None:
    """InputError naming run.json's field for the first RL flag given that is not what the run recorded; with
    --preset, also for an RL setting of that preset, other than those the flags set, that is not the run's."""
    from hicra.lab.presets import get_preset
    from hicra.lab.rl import resume_conflict

    for name, flag in RL_FLAGS.items():
        value = threads if name == "threads" else getattr(args, name)
        if value is not None and value != getattr(rl_cfg, name):
            typed = f"{flag} {args.threads} ({value} threads here)" if name == "threads" else f"{flag} {value!r}"
            raise InputError(f"{typed} is not the run's {getattr(rl_cfg, name)!r}; leave it out to continue the run "
                             "as recorded", path=path, field=f"config.{name}")
    if args.preset is not None:
        _, preset_rl = get_preset(args.preset)
        overridable = {name: getattr(rl_cfg, name) for name in (*RL_FLAGS, "steps", "tensorboard", "optimum")}
        conflict = resume_conflict(replace(preset_rl, **overridable), asdict(rl_cfg))
        if conflict:
            values = conflict[1].replace(", given ", ", the preset's ")
            raise InputError(f"--preset {args.preset} is not the run's preset ({conflict[0]}: {values})",
                             path=path, field=f"config.{conflict[0]}")


def _resumed_warm_start(args, info: dict, knobs: dict, cache: Path, path: str):
    """(warm-start config or None, directory or None) of the run's warm start. Its config: run.json's `warm_start`
    (recorded since 2026-12-06; warm-start flags given must agree with it), else the flags' (an older run: give all
    it was made with). Its directory: where run.json says, else in `cache` under the same name, else None (to be
    rebuilt from the config). InputError when the flags' warm start is not the run's, or nothing is left to find
    or rebuild it by."""
    from hicra.lab.presets import KNOBS, get_preset
    from hicra.lab.sft import WarmStartConfig, warm_start_dir

    recorded = Path(info["model"])
    given = {"seed": args.warm_start_seed, **knobs}
    ws_cfg = None
    if "warm_start" in info:
        try:
            ws_cfg = WarmStartConfig(**info["warm_start"])
        except (TypeError, ValueError) as exc:
            raise InputError(f"not valid warm-start settings ({exc})", path=path, field="warm_start") from None
        if warm_start_dir(ws_cfg, cache).name != recorded.name:
            raise InputError(f"the recorded warm-start settings make {warm_start_dir(ws_cfg, cache).name}, not the "
                             f"run's {recorded.name} (field model): a damaged record, or settings of another "
                             "version", path=path, field="warm_start")
        for name, value in given.items():
            if value is not None and value != getattr(ws_cfg, name):
                flag = "--warm-start-seed" if name == "seed" else "--" + name.replace("_", "-")
                raise InputError(f"{flag} {value!r} is not the run's {getattr(ws_cfg, name)!r}", path=path,
                                 field=f"warm_start.{name}")
        if args.preset is not None:
            preset_ws, _ = get_preset(args.preset, warm_start_seed=ws_cfg.seed,
                                      knobs={k: getattr(ws_cfg, k) for k in KNOBS})
            if preset_ws.key() != ws_cfg.key():
                raise InputError(f"--preset {args.preset} trains another warm start than the run's", path=path,
                                 field="warm_start")
    elif args.preset is not None or args.warm_start_seed is not None or knobs:
        ws_cfg, _ = get_preset(args.preset or DEFAULTS["preset"], warm_start_seed=args.warm_start_seed, knobs=knobs)
        if warm_start_dir(ws_cfg, cache).name != recorded.name:
            raise InputError(f"the warm start of these flags ({warm_start_dir(ws_cfg, cache).name}) is not the run's "
                             f"({recorded.name}); give every warm-start flag it was made with", path=path,
                             field="model")
    for candidate in (recorded, cache / recorded.name):
        if (candidate / "config.json").exists():
            return ws_cfg, candidate
    if ws_cfg is None:
        raise InputError(f"the run's warm start is neither at {recorded} nor in the cache {cache}; give the flags it "
                         "was made with (--preset, --warm-start-seed, corpus knobs) to rebuild it there",
                         path=path, field="model")
    return ws_cfg, None


def strategy_change_lines(change: dict, k: int) -> list[str]:
    """What `hicra lab` prints of eval.json's `strategy_change` (`hicra.lab.probes.heldout_strategy_change`, k
    samples a problem): the held-out H|fam at both ends (nats) and its change with the 95% paired bootstrap interval
    and reading; then the change on complete problems (no unparsed response at either end; the reading of the
    third controls study, docs/study.md P26) when it was measured."""
    lo, hi = change["Hfam_interval"]
    lines = [f"held-out strategy entropy within families ({k} samples a problem): warm start "
             f"{change['Hfam_before']:.3f} -> after RL {change['Hfam_after']:.3f} nats, change "
             f"{change['Hfam_change']:+.3f} (95% paired bootstrap {lo:+.3f} to {hi:+.3f}: {change['reading']})"]
    if change.get("Hfam_complete_interval") is not None:
        from hicra.stats import interval_reading

        clo, chi = change["Hfam_complete_interval"]
        lines.append(f"  on the {change['n_complete']} of {change['n_problems']} problems with no unparsed response at "
                     f"either end: change {change['Hfam_complete_change']:+.3f} ({clo:+.3f} to {chi:+.3f}: "
                     f"{interval_reading(change['Hfam_complete_interval'])})")
    return lines


def _analyze(run_dir: Path, log: list[dict]) -> None:
    """`hicra analyze` on the run; if the analysis is unavailable or fails, a compact per-step table instead
    (the run itself is complete either way)."""
    try:
        from hicra.dynamics.analyze import analyze_run

        summary = analyze_run(run_dir)
        ph = summary.get("phases", {})
        print(f"dynamics: verdict {ph.get('verdict')} (confidence {ph.get('confidence')}); "
              f"report {run_dir / 'report.html'}")
        return
    except Exception as exc:  # noqa: BLE001 - the analysis is optional here; say why and fall back
        print(f"analysis unavailable ({type(exc).__name__}: {exc}); run `hicra analyze {run_dir}` later")
    every = max(1, len(log) // 20)
    print("step  reward  accuracy  exec_err  plan_err  length  entropy")
    for e in log[::every] + ([log[-1]] if (len(log) - 1) % every else []):
        print(f"{e['step']:4d}  {e['reward']:6.3f}  {e['accuracy']:8.3f}  {e['errors_execution_share']:8.3f}  "
              f"{e['errors_planning_share']:8.3f}  {e['mean_length']:6.1f}  {e['entropy']:7.3f}")
