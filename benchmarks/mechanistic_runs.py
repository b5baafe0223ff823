"""Counterfactual sentence importance and reasoning-graph cycles over training, pooled per arm
(docs/mechanistic.md, "The scientific question").

    python benchmarks/mechanistic_runs.py --arm grpo RUN_DIR [RUN_DIR ...] --arm hicra RUN_DIR [...]
        [--steps 0,60] [--graph-steps 0,20,40,60] [--n 32] [--k 8] [--differ meaning|text] [--no-graphs] [--per-run]

For every run directory the verb is run first at the given steps (`hicra.mechanistic.run.run_anchors` /
`run_graphs`, their defaults otherwise) unless its outputs are there and were measured with the same settings
(anchors.json / graphs.json record them; `hicra.mechanistic.run.stored_settings_mismatch`): outputs made with
other settings (`--k`, `--differ`, `--steps`, `--n`, ...) are recomputed, and each run's line says whether it
reused or recomputed, and why. A rerun with the same arguments only prints. Bad input (a missing run directory,
a step without a snapshot, ...) prints one line and exits with code 2. Lab runs keep their warm start as `checkpoints/step_000000`; for a run made before that
snapshot existed, copy the warm-start directory named in its run.json there first.

Prints, per arm and checkpoint step: mean |importance| of planning and execution sentences and their gap
(planning - execution) with a 95% interval from a cluster bootstrap over (run, problem) pairs
(`hicra.mechanistic.anchors.pool_runs`); the same for excess |importance| (|importance| less its expectation under
no effect at the sentence's arm sizes, `null_abs_importance`: the comparison that arm sizes cannot bias) with the
mean number of differing draws per class; the signed importance gap, the total-variation gap, the fixed sentences;
and the mean cycles per response with a bootstrap interval over (run, problem) pairs. Where runs have a
consolidation end (their summary.json), the gaps before and after it and their change, paired on problems
(`hicra.mechanistic.anchors.phase_change`), and each later arm's change minus the first arm's
(`change_difference`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _fmt(cell: dict) -> str:
    if cell.get("mean") is None:
        return "n/a"
    iv = cell.get("interval")
    return f"{cell['mean']:+.3f}" + (f" [{iv[0]:+.3f}, {iv[1]:+.3f}]" if iv else "")


def _measure(verb: str, run: Path, steps: list[int], n: int, cfg, quiet: dict) -> None:
    """Run `verb` on `run` unless its stored outputs were made with these settings; say which it did."""
    from hicra.mechanistic.run import run_anchors, run_graphs, stored_settings_mismatch

    diff = stored_settings_mismatch(run, verb, steps, n, cfg)
    if not diff:
        print(f"{verb}: {run}: reusing the stored outputs (same settings)", flush=True)
        return
    if (run / f"{verb}.parquet").is_file():
        print(f"{verb}: {run}: recomputing steps {steps}, the stored outputs differ ({'; '.join(diff)})", flush=True)
    else:
        print(f"{verb}: {run}: measuring steps {steps} (no stored outputs)", flush=True)
    (run_anchors if verb == "anchors" else run_graphs)(run, steps, n, cfg, **quiet)


def main() -> int:
    from hicra.errors import InputError

    try:
        _main()
    except InputError as exc:
        print(f"mechanistic_runs: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _steps(text: str, flag: str) -> list[int]:
    from hicra.errors import InputError

    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"expected steps like 0,60, got {text!r}", field=flag) from None
    if not steps or min(steps) < 0:
        raise InputError(f"expected non-negative steps like 0,60, got {text!r}", field=flag)
    return steps


def _consolidation_end(run: Path) -> int | None:
    """The run's `consolidation_end_step` from its summary.json (`hicra analyze`, v1 summaries upgraded: None);
    None without one. InputError
    (one line) for a summary that is not JSON or whose "phases" is not an object."""
    from hicra.dynamics.analyze import read_phases

    phases = read_phases(run)
    return None if phases is None else phases.get("consolidation_end_step")  # a v1 summary's end: None


def _print_phase_change(runs: list[Path], tables: list[list[dict]], per_run: bool = False) -> dict:
    """The planning - execution gap before and after each run's consolidation end (its summary.json, `hicra
    analyze`), pooled over the runs that have one (`hicra.mechanistic.anchors.phase_change`). Returns the
    excess-gap result (None without one), for the arms' comparison."""
    from hicra.mechanistic.anchors import phase_change

    ends = {run: _consolidation_end(run) for run in runs}
    with_end = [(t, ends[r]) for r, t in zip(runs, tables, strict=True) if ends[r] is not None]
    print(f"  by phase: consolidation end per run {', '.join(f'{r.name} {ends[r]}' for r in runs)}")
    if per_run:
        for run, table in zip(runs, tables, strict=True):
            res = phase_change([(table, ends[run])]) if ends[run] is not None else None
            print(f"  {run}: excess gap's change after - before "
                  + (_fmt(res["change"]) if res else "n/a (no consolidation end, or no checkpoint on one side)"))
    excess = None
    for value, label in (("excess_abs_importance", "excess gap"), ("abs_importance", "|imp| gap")):
        res = phase_change(with_end, value) if with_end else None
        if value == "excess_abs_importance":
            excess = res
        if res is None:
            print(f"  by phase, {label}: no run has a measured checkpoint on both sides of a consolidation end")
            continue
        print(f"  by phase, {label} (plan - exec) over {res['n_runs']} run(s), {res['n_clusters']} (run, problem) "
              f"clusters (runs sharing a snapshot count as one run): before {_fmt(res['before'])}, "
              f"after {_fmt(res['after'])}, change after - before {_fmt(res['change'])} (paired on problems)")
    return excess


def _main() -> None:
    import numpy as np
    import pyarrow.parquet as pq

    from hicra.errors import InputError
    from hicra.mechanistic.anchors import AnchorsConfig, change_difference, distinct_runs, pool_runs
    from hicra.mechanistic.graphs import GraphsConfig
    from hicra.stats import cluster_bootstrap_ci

    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", nargs="+", action="append", required=True, metavar="NAME RUN_DIR",
                    help="an arm's name, then its run directories")
    ap.add_argument("--steps", default="0,60", help="checkpoint steps measured (default 0,60)")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--differ", choices=("meaning", "text"), default="meaning")
    ap.add_argument("--no-graphs", action="store_true")
    ap.add_argument("--graph-steps", default=None,
                    help="checkpoint steps for the graphs (default: --steps); graphs cost far less than anchors")
    ap.add_argument("--per-run", action="store_true",
                    help="also print each run's excess |importance| gap per step and its change after the "
                         "consolidation end (for paired comparisons)")
    args = ap.parse_args()
    steps = _steps(args.steps, "--steps")
    graph_steps = steps if args.graph_steps is None else _steps(args.graph_steps, "--graph-steps")
    for flag, value in (("--n", args.n), ("--k", args.k)):
        if value < 1:
            raise InputError(f"must be >= 1, got {value}", field=flag)
    arms = {}
    for group in args.arm:
        if len(group) < 2:
            raise InputError(f"--arm {group[0]}: no run directory")
        if group[0] in arms:
            raise InputError(f"--arm {group[0]} given twice")
        arms[group[0]] = [Path(p) for p in group[1:]]
    for runs in arms.values():  # bad summaries fail now, not after the measuring
        for run in runs:
            _consolidation_end(run)
    quiet = dict(progress=False, log=lambda *a: None)
    for runs in arms.values():
        for run in runs:
            _measure("anchors", run, steps, args.n, AnchorsConfig(k=args.k, differ=args.differ), quiet)
            if not args.no_graphs:
                _measure("graphs", run, graph_steps, args.n, GraphsConfig(), quiet)

    changes: dict = {}
    for arm, runs in arms.items():
        tables = [pq.read_table(run / "anchors.parquet").to_pylist() for run in runs]
        pooled = pool_runs(tables)
        print(f"\n{arm}: {len(runs)} run(s); 95% intervals over (run, problem) clusters")
        print(f"{'step':>5}  {'|imp| planning':>28}  {'|imp| execution':>28}  {'|imp| gap (plan - exec)':>28}  "
              f"{'signed gap':>28}  {'TV gap':>28}  fixed (plan/exec)")
        for step, summ in pooled["steps"].items():
            a, i, tv = summ["abs_importance"], summ["importance"], summ["tv_distance"]
            fx = summ["fixed_by_class"]
            print(f"{step:>5}  {_fmt(a['planning']):>28}  {_fmt(a['execution']):>28}  "
                  f"{_fmt(a['gap_planning_minus_execution']):>28}  {_fmt(i['gap_planning_minus_execution']):>28}  "
                  f"{_fmt(tv['gap_planning_minus_execution']):>28}  {fx['planning']}/{fx['execution']} "
                  f"(n = {a['planning']['n_sentences']}/{a['execution']['n_sentences']})")
        print(f"{'step':>5}  {'excess |imp| planning':>28}  {'excess |imp| execution':>28}  "
              f"{'excess gap (plan - exec)':>28}  differing draws per sentence (plan/exec)")
        for step, summ in pooled["steps"].items():
            x = summ["excess_abs_importance"]
            draws = {c: np.mean([r["n_resamples"] for rows in tables for r in rows
                                 if r["step"] == step and r["class"] == c and not r["fixed"]] or [np.nan])
                     for c in ("planning", "execution")}
            print(f"{step:>5}  {_fmt(x['planning']):>28}  {_fmt(x['execution']):>28}  "
                  f"{_fmt(x['gap_planning_minus_execution']):>28}  {draws['planning']:.1f}/{draws['execution']:.1f}")
        if args.per_run:
            for run, table in zip(runs, tables, strict=True):
                per = pool_runs([table])["steps"]
                print(f"  {run}: excess gap " + ", ".join(
                    f"step {st} {_fmt(summ['excess_abs_importance']['gap_planning_minus_execution'])}"
                    for st, summ in per.items()))
        changes[arm] = _print_phase_change(runs, tables, args.per_run)
        dup = {s: n for s, n in pooled["duplicate_runs_dropped"].items() if n}
        if dup:
            print(f"  runs whose rows repeat an earlier run's (the same snapshot), left out: {dup} (step: runs)")
        if pooled["steps_not_in_every_run"]:
            print(f"  steps not measured in every run (left out): {pooled['steps_not_in_every_run']}")
        if args.no_graphs:
            continue
        tables = [pq.read_table(run / "graphs.parquet").to_pylist() for run in runs]
        for step in sorted(set.intersection(*({r["step"] for r in t} for t in tables))):
            mine = [[r for r in t if r["step"] == step] for t in tables]
            keep = distinct_runs(mine)  # runs that share a snapshot (e.g. one warm start at step 0) count once
            cycles = np.array([r["cycles"] for k in keep for r in mine[k]], dtype=float)
            clusters = [f"{k}:{r['problem_id']}" for k in keep for r in mine[k]]
            _, lo, hi = cluster_bootstrap_ci(cycles, clusters, n_boot=2000, seed=0)
            print(f"  graphs step {step}: cycles per response {cycles.mean():.2f} [{lo:.2f}, {hi:.2f}] "
                  f"over {cycles.size} responses ({len(tables) - len(keep)} duplicate run(s) left out)")

    named = [a for a, c in changes.items() if c is not None]
    for other in named[1:]:
        d = change_difference(changes[named[0]], changes[other])
        print(f"\nby phase, excess gap's change, {other} - {named[0]}: {_fmt(d)} (independent bootstraps of the "
              "arms' (run, problem) clusters; run-to-run variation enters only through the runs measured)")


if __name__ == "__main__":
    raise SystemExit(main())
