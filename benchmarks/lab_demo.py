"""The lab demo's acceptance figure: held-out gain of RL over (warm-start seed, RL seed) pairs.

    python benchmarks/lab_demo.py [--preset quick] [--pairs 0:0,0:1,1:0,...] [--jobs 2] [--algo grpo]
        [--steps N] [--lr X] [--kl X] [--adv-scale none|std] [--temperature T] [--minibatches N] [--prompts N]
        [--group-size N] [--strategy-prior P] [--cache DIR] [--out DIR] [--series k=v,...]
        [--product k=v,...] [--n-drill N] [--strategy-hints H] [--favourite-share S] [--epochs N] [--rl-optimum single-route]
        [--paired-with OTHER_OUT]

Each pair is one `hicra lab` run (warm start cached per warm-start seed; RL in its own process, one torch thread;
`--jobs` processes at once; a finished run directory under --out is read, not rerun). Prints per pair the greedy
and sampled held-out accuracy before and after RL, the probes (execution: greedy line accuracy and the sampled line
probability `exec_probe_line_prob`; planning: problems solved), and how many rewarded rollouts contain a wrong
computation line (the load-bearing reward says none may), then the mean, SD and count of positive greedy and sampled
gains, the warm starts' greedy accuracy (each the mean over its pairs' held-out sets) with their SD, how many pairs
each probe rose in, and the wrong-line total. The lab issue's floor for `make demo` (quick preset):
over 10 pairs, the greedy gain is positive in >= 9 and its mean >= +8 points.
`--paired-with OTHER_OUT`: another arm's --out folder over the same pairs (e.g. GRPO's, for `--algo hicra`); also
prints this arm's final greedy accuracy minus that arm's, per pair, with its mean, SD, 95% Student t interval,
two-sided p, the counts ahead / behind / equal and the smallest difference detectable at 80% power from that SD. A pair missing there: one line naming its eval.json, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def configs(args, ws_seed: int, rl_seed: int):
    from hicra.lab.presets import get_preset, narrowed_tasks, parse_universe

    overrides = {k: v for k, v in (("steps", args.steps), ("lr", args.lr), ("kl_coef", args.kl),
                                   ("adv_scale", args.adv_scale), ("temperature", args.temperature),
                                   ("minibatches", args.minibatches), ("prompts_per_step", args.prompts),
                                   ("group_size", args.group_size)) if v is not None}
    knobs = {k: v for k, v in (("strategy_prior", args.strategy_prior), ("execution_noise", args.execution_noise))
             if v is not None} or None
    ws, rl = get_preset(args.preset, warm_start_seed=ws_seed, knobs=knobs, algo=args.algo, seed=rl_seed,
                        **overrides)
    if args.series or args.product:
        tasks = narrowed_tasks(parse_universe(args.series), parse_universe(args.product), base=ws.tasks)
        ws, rl = replace(ws, tasks=tasks), replace(rl, tasks=tasks)
    if args.rl_optimum:
        rl = replace(rl, optimum=args.rl_optimum)
    ws = replace(ws, **{k: v for k, v in (("n_drill", args.n_drill), ("epochs", args.epochs),
                                          ("strategy_hints", args.strategy_hints), ("favourite_share", args.favourite_share),
                                          ("max_response_tokens", args.max_response_tokens)) if v is not None})
    return ws, rl


def one_pair(args, ws_seed: int, rl_seed: int) -> dict:
    import torch

    from hicra.dynamics.records import iter_steps
    from hicra.lab.rl import run_rl
    from hicra.lab.sft import warm_start
    from hicra.lab.tasks.base import malformed_lines, wrong_lines

    torch.set_num_threads(1)
    ws, rl = configs(args, ws_seed, rl_seed)
    model_dir = warm_start(ws, Path(args.cache), progress=False, log=lambda *a: None)
    out = Path(args.out) / f"ws{ws_seed}-seed{rl_seed}"
    t0 = time.perf_counter()
    if (out / "eval.json").exists() and "final" in json.loads((out / "eval.json").read_text()):
        ev = json.loads((out / "eval.json").read_text())
    else:
        if out.exists():
            import shutil

            shutil.rmtree(out)
        ev = run_rl(rl, model_dir, out, progress=False, log=lambda *a: None)["eval"]
    probes = [json.loads(x) for x in (out / "probes.jsonl").read_text().splitlines() if x.strip()]
    rewarded = [r["response"] for _, table in iter_steps(out) for r in table.to_pylist() if r["reward"] > 0]
    return {"ws": ws_seed, "seed": rl_seed, "seconds": time.perf_counter() - t0, "rewarded": len(rewarded),
            "rewarded_wrong_line": sum(bool(wrong_lines(t) or malformed_lines(t)) for t in rewarded),
            **{f"{k}{s}": 100 * ev[f"{k}{s}"]["accuracy"] for k in ("warm_start", "final") for s in ("", "_sampled")},
            "exec_probe": (probes[0]["exec_probe_line_accuracy"], probes[-1]["exec_probe_line_accuracy"]),
            "exec_probe_sampled": (probes[0].get("exec_probe_line_prob", math.nan),
                                   probes[-1].get("exec_probe_line_prob", math.nan)),
            "plan_probe": (probes[0]["plan_probe_solved"], probes[-1]["plan_probe_solved"])}


def main() -> None:
    from hicra.lab.tasks import STRATEGY_PRIORS

    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--pairs", default="0:0,0:1,1:0,1:1,2:0,2:1,3:0,3:1,4:0,4:1", help="ws:seed,...")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--algo", default="grpo")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--kl", type=float)
    ap.add_argument("--adv-scale", choices=("none", "std"))
    ap.add_argument("--temperature", type=float, help="RL sampling temperature (also the sampled evaluation's)")
    ap.add_argument("--minibatches", type=int, help="gradient steps per rollout batch")
    ap.add_argument("--prompts", type=int, help="prompts per step")
    ap.add_argument("--group-size", type=int, help="responses per prompt")
    ap.add_argument("--strategy-prior", choices=STRATEGY_PRIORS, help="warm-start corpus knob")
    ap.add_argument("--execution-noise", type=float, help="warm-start corpus knob (slip rate per unit of difficulty)")
    ap.add_argument("--rl-optimum", choices=("diverse", "single-route"),
                    help="RL's task variant only; the warm start keeps the preset's (a control that changes the "
                         "reward landscape from the same base policy)")
    ap.add_argument("--series")
    ap.add_argument("--product")
    ap.add_argument("--n-drill", type=int)
    ap.add_argument("--favourite-share", type=float, help="blind priors: the favourite's probability, the other "
                    "strategies sharing the rest as in the family's table (WarmStartConfig.favourite_share; default "
                    "0 = the table)")
    ap.add_argument("--strategy-hints", type=float, help="share of SFT pairs whose prompt names a uniformly drawn "
                    "strategy (WarmStartConfig.strategy_hints)")
    ap.add_argument("--epochs", type=int, help="warm-start SFT epochs (default: the preset's)")
    ap.add_argument("--max-response-tokens", type=int, help="warm start: corpus traces longer than this are "
                    "dropped (WarmStartConfig.max_response_tokens; RL's max_new_tokens is the preset's)")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default="/tmp/lab_demo")
    ap.add_argument("--paired-with", metavar="OTHER_OUT", help="another arm's --out over the same pairs: paired "
                    "differences of the final greedy accuracy")
    args = ap.parse_args()
    if args.cache is None:
        from hicra.lab.cli import default_cache

        args.cache = str(default_cache())
    pairs = [tuple(int(x) for x in p.split(":")) for p in args.pairs.split(",")]
    # warm starts first, one per warm-start seed, in parallel; then the RL runs
    with ProcessPoolExecutor(args.jobs) as pool:
        list(pool.map(_warm, [(args, w) for w in sorted({w for w, _ in pairs})]))
        rows = list(pool.map(_pair, [(args, w, s) for w, s in pairs]))
    print(f"{'pair':8s} {'greedy':>16s} {'sampled':>16s} {'exec probe':>14s} {'sampled exec':>16s} "
          f"{'plan probe':>14s} {'s':>5s}  rewarded (with a wrong line)")
    for r in rows:
        print(f"ws{r['ws']}:s{r['seed']:<3d} {r['warm_start']:5.1f} -> {r['final']:5.1f}   "
              f"{r['warm_start_sampled']:5.1f} -> {r['final_sampled']:5.1f}   "
              f"{r['exec_probe'][0]:.2f} -> {r['exec_probe'][1]:.2f}   "
              f"{r['exec_probe_sampled'][0]:.3f} -> {r['exec_probe_sampled'][1]:.3f}   {r['plan_probe'][0]:.2f} -> "
              f"{r['plan_probe'][1]:.2f} {r['seconds']:5.0f}  {r['rewarded']} ({r['rewarded_wrong_line']})", flush=True)
    for name, key in (("greedy", ""), ("sampled", "_sampled")):
        gains = [r[f"final{key}"] - r[f"warm_start{key}"] for r in rows]
        ws_acc = [r[f"warm_start{key}"] for r in rows]
        sd = statistics.stdev(gains) if len(gains) > 1 else float("nan")
        print(f"{name}: warm start mean {statistics.mean(ws_acc):.1f}; gain mean {statistics.mean(gains):+.1f} "
              f"points, SD {sd:.1f}, positive in {sum(g > 0 for g in gains)} of {len(gains)} pairs")
    by_ws = {w: statistics.mean(r["warm_start"] for r in rows if r["ws"] == w) for w in sorted({r["ws"] for r in rows})}
    if len(by_ws) > 1:
        print("warm starts' greedy accuracy (mean over their pairs' held-out sets): "
              + ", ".join(f"ws{w} {a:.1f}" for w, a in by_ws.items()) + f"; SD {statistics.stdev(by_ws.values()):.1f}")
    for name, key in (("exec probe", "exec_probe"), ("sampled exec probe", "exec_probe_sampled"),
                      ("plan probe", "plan_probe")):
        print(f"{name}: rose in {sum(r[key][1] > r[key][0] for r in rows)} of {len(rows)} pairs")
    print(f"rewarded rollouts with a wrong line: {sum(r['rewarded_wrong_line'] for r in rows)} of "
          f"{sum(r['rewarded'] for r in rows)}")
    if args.paired_with:
        paired(rows, Path(args.paired_with))


def paired(rows: list[dict], other: Path) -> None:
    """This arm's final greedy accuracy minus `other`'s on the same pairs: mean, SD, 95% Student t interval."""
    import sys

    from scipy import stats

    diffs = []
    for r in rows:
        path = other / f"ws{r['ws']}-seed{r['seed']}" / "eval.json"
        if not path.exists():
            print(f"lab_demo.py: error: {path}: missing (the pair ws{r['ws']}:s{r['seed']} was not run there)",
                  file=sys.stderr)
            sys.exit(2)
        diffs.append(r["final"] - 100 * json.loads(path.read_text())["final"]["accuracy"])
    m, sd = statistics.mean(diffs), statistics.stdev(diffs)
    half = stats.t.ppf(0.975, len(diffs) - 1) * sd / len(diffs) ** 0.5
    print(f"greedy, this arm minus {other}: " + " ".join(f"{d:+.1f}" for d in diffs))
    n = len(diffs)
    p = 2 * stats.t.sf(abs(m) / (sd / n**0.5), n - 1) if sd > 0 else float("nan")
    detectable = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / n**0.5
    print(f"  mean {m:+.1f} points, SD {sd:.1f}, 95% t interval [{m - half:+.1f}, {m + half:+.1f}], two-sided p "
          f"{p:.2f}; ahead in {sum(d > 0 for d in diffs)}, behind in {sum(d < 0 for d in diffs)}, equal in "
          f"{sum(d == 0 for d in diffs)}; smallest difference detectable at 80% power from this SD: {detectable:.1f}")


def _warm(a):
    args, w = a
    from hicra.lab.sft import warm_start

    ws, _ = configs(args, w, 0)
    warm_start(ws, Path(args.cache), progress=False, log=lambda *x: None)


def _pair(a):
    return one_pair(*a)


if __name__ == "__main__":
    main()
