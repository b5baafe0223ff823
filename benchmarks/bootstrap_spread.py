"""How much does a run's held-out exploration reading depend on the bootstrap's own random draw?

    python benchmarks/bootstrap_spread.py RUN_DIR [RUN_DIR ...] [--seeds 200] [--boot 2000] [--json FILE]

A lab run with `--strategy-k` records, in `eval.json`, the strategies its policy sampled on every held-out problem
at the warm start and at the end (`warm_start_strategies`, `final_strategies`), and the change of the strategy
entropy within families on the complete problems (no unparsed response at either end) with a 95% percentile
interval from a paired bootstrap over problems: 2,000 draws, seeded with the run's RL seed (`run.json`'s `seed`;
`hicra.lab.probes.heldout_strategy_change`, called at the end of `hicra.lab.rl`).
The `controls3` exploration criteria count a run as a rise when that interval lies above 0
(`hicra.stats.interval_reading`). A percentile interval from a finite number of draws has Monte Carlo error of its
own, so a run whose interval ends near 0 can read `rise` at one bootstrap seed and `-` at another.

This recomputes the same interval from the recorded strategies (nothing is sampled from a model) at bootstrap seeds
0 .. S-1 with `--boot` draws each, and prints per run:
- the recorded interval and whether the run's own seed with 2,000 draws reproduces it (it should: same records,
  same code; `n/a` when eval.json has no recorded interval);
- the share of the S seeds at which the interval reads `rise`, `-` and `fall`;
- the lowest, median and highest lower end over the seeds.

A description of how fragile a count of readings is; it changes no reading: the criteria count the recorded one.
A directory without eval.json or run.json, a strategy record that is missing or malformed (fields `k`,
`problem_ids`, `labels`, `counts`, `unparsed`), records on different problems, fewer than 2 complete problems, or a
run.json without an integer `seed`: one line naming the file and the field, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hicra.errors import InputError
from hicra.fileio import read_json, write_json
from hicra.lab.probes import heldout_strategy_change
from hicra.stats import interval_reading

RECORDS = ("warm_start_strategies", "final_strategies")


def _check_record(rec: object, key: str, path: Path) -> dict:
    """The record as `hicra.lab.probes.heldout_strategies` writes it, or InputError naming the bad field."""
    if not isinstance(rec, dict):
        raise InputError("no held-out strategy record (run with --strategy-k)", path=str(path), field=key)
    for sub, kind in (("k", int), ("problem_ids", list), ("labels", list), ("counts", list), ("unparsed", list)):
        if not isinstance(rec.get(sub), kind):
            raise InputError(f"missing or not a {kind.__name__}", path=str(path), field=f"{key}.{sub}")
    n, width = len(rec["problem_ids"]), len(rec["labels"])
    if len(rec["unparsed"]) != n:
        raise InputError(f"{len(rec['unparsed'])} entries for {n} problems", path=str(path), field=f"{key}.unparsed")
    counts = rec["counts"]
    if rec["labels"] and (len(counts) != n or any(not isinstance(r, list) or len(r) != width for r in counts)):
        raise InputError(f"not {n} rows of {width} label counts", path=str(path), field=f"{key}.counts")
    return rec


def load_run(run: Path) -> tuple[dict, dict, list | None, list]:
    """(before, after, recorded complete-problem interval or None, that interval recomputed at the run's RL seed)
    from RUN/eval.json and RUN/run.json; InputError naming the file and field when something is missing or
    malformed, or when fewer than 2 problems have no unparsed response at either end (no interval to recompute)."""
    path = run / "eval.json"
    evals = read_json(path, "eval.json")
    seed = read_json(run / "run.json", "run.json").get("seed")
    if not isinstance(seed, int):
        raise InputError("no integer RL seed", path=str(run / "run.json"), field="seed")
    before, after = (_check_record(evals.get(key), key, path) for key in RECORDS)
    try:
        change = heldout_strategy_change(before, after, seed=seed)
    except ValueError as exc:  # the records are on different problems
        raise InputError(str(exc), path=str(path), field=f"{RECORDS[1]}.problem_ids") from None
    if change["Hfam_complete_interval"] is None:
        raise InputError(f"{change['n_complete']} problem(s) with no unparsed response at either end (2 needed)",
                         path=str(path), field=f"{RECORDS[1]}.unparsed")
    recorded = (evals.get("strategy_change") or {}).get("Hfam_complete_interval")
    return before, after, recorded, change["Hfam_complete_interval"]


def spread(before: dict, after: dict, seeds: int, boot: int) -> dict:
    """Readings of the complete-problem H|fam interval over bootstrap seeds 0..seeds-1 (`boot` draws each)."""
    lows, readings = [], []
    for seed in range(seeds):
        interval = heldout_strategy_change(before, after, boot=boot, seed=seed)["Hfam_complete_interval"]
        lows.append(interval[0])
        readings.append(interval_reading(interval))
    return {"seeds": seeds, "boot": boot,
            "share": {r: readings.count(r) / seeds for r in ("rise", "-", "fall")},
            "low_min": float(np.min(lows)), "low_median": float(np.median(lows)), "low_max": float(np.max(lows))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="hicra lab run directories run with --strategy-k")
    ap.add_argument("--seeds", type=int, default=200, help="bootstrap seeds 0..S-1 (default 200)")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap draws per seed (default 2000, as recorded)")
    ap.add_argument("--json", type=Path, help="write the figures to this file (atomically)")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.boot < 1:
        ap.error("--seeds and --boot must be >= 1")
    out = {}
    for run in args.runs:
        try:
            before, after, recorded, again = load_run(run)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        s = spread(before, after, args.seeds, args.boot)
        s["recorded"] = recorded
        s["reproduced"] = None if recorded is None else bool(np.allclose(again, recorded, rtol=0, atol=1e-6))
        out[str(run)] = s
        rec = "-" if recorded is None else f"[{recorded[0]:+.4f}, {recorded[1]:+.4f}] {interval_reading(recorded)}"
        same = {None: "n/a", True: "yes", False: "NO"}[s["reproduced"]]
        print(f"{run}: recorded {rec} (reproduced: {same}); over {s['seeds']} seeds "
              f"x {s['boot']} draws: rise {s['share']['rise']:.2f}, - {s['share']['-']:.2f}, fall "
              f"{s['share']['fall']:.2f}; lower end {s['low_min']:+.4f} / {s['low_median']:+.4f} / "
              f"{s['low_max']:+.4f} (min / median / max)")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
