"""What is still moving in the planning class: planning's perplexity beside the strategy choice and the phrasing.

    python benchmarks/planning_movers.py RUN_DIR [RUN_DIR ...] [--blocks 4] [--json FILE]

The phase verdict calls planning consolidated when the relative perplexity of its tokens (`rel_ppl_planning`) falls
and then flattens. In a lab run two different things can keep that curve falling, and they mean different things:
- the strategy CHOICE: its entropy over the step's responses (`strategy_entropy`, nats), how much of it depends on
  the prompt (`strategy_information` = H(strategy) - H(strategy | prompt), nats) and what is left within a prompt's
  group (`strategy_entropy_within`). A rising information is the policy learning which strategy suits which
  problem: what a diverse task rewards;
- the PHRASING of the same moves: the planning phrases' semantic entropy without format phrases
  (`semantic_entropy_excl_format`, nats) and the number of distinct strategic grams used in the step
  (`n_distinct_strategic_grams`). The reward never reads a paraphrase, so a fall here is sharpening, not learning.
Definitions: `hicra.dynamics.metrics` (docs/dynamics.md).

For each run directory (a lab run after `hicra analyze`, or as `hicra lab` leaves it: `metrics.parquet`) this
prints each metric's mean over `--blocks` equal consecutive blocks of the steps, then the mean over the runs
(min-max in brackets). A description, not a test: no intervals. `--json FILE` also writes the table (atomically).
A run without `metrics.parquet` or without one of the columns: one line naming the file and field, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hicra.stats import block_means

METRICS = ("rel_ppl_planning", "strategy_entropy", "strategy_information", "strategy_entropy_within",
           "semantic_entropy_excl_format", "n_distinct_strategic_grams")


def run_table(run: Path, blocks: int) -> dict[str, list[float]]:
    """metric -> its block means for one run directory; ValueError naming the file (and the column) otherwise."""
    import pandas as pd

    path = run / "metrics.parquet"
    if not path.is_file():
        raise ValueError(f"{path}: not found (run `hicra analyze` on the run first)")
    m = pd.read_parquet(path).sort_values("step")
    missing = [c for c in METRICS if c not in m.columns]
    if missing:
        raise ValueError(f"{path}: field {missing[0]}: no such column (a run without a `strategy` column or from "
                         "before these metrics; rerun `hicra analyze`)")
    if len(m) < blocks:
        raise ValueError(f"{path}: {len(m)} steps, fewer than --blocks {blocks}")
    return {c: block_means(m[c].tolist(), blocks).tolist() for c in METRICS}


def _fmt(values) -> str:
    return " ".join(f"{v:8.3f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--blocks", type=int, default=4, help="equal consecutive blocks of the steps (default 4)")
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    if args.blocks < 1:
        print(f"planning_movers: error: --blocks: expected a positive number, got {args.blocks}", file=sys.stderr)
        return 2
    try:
        tables = {str(run): run_table(run, args.blocks) for run in args.runs}
    except ValueError as exc:
        print(f"planning_movers: error: {exc}", file=sys.stderr)
        return 2
    width = max(len(c) for c in METRICS) + 1
    header = " " * (width + 2) + " ".join(f"{'block ' + str(i + 1):>8}" for i in range(args.blocks))
    for run, table in tables.items():
        print(f"{run}\n{header}")
        for c in METRICS:
            print(f"  {c:<{width}}{_fmt(table[c])}")
    pooled = {}
    for c in METRICS:
        stack = np.array([t[c] for t in tables.values()])
        pooled[c] = {"mean": stack.mean(axis=0).tolist(), "min": stack.min(axis=0).tolist(),
                     "max": stack.max(axis=0).tolist()}
    print(f"mean over {len(tables)} run(s) [min-max]")
    for c in METRICS:
        p = pooled[c]
        cells = " ".join(f"{m:.3f} [{lo:.3f}-{hi:.3f}]" for m, lo, hi in zip(p["mean"], p["min"], p["max"], strict=True))
        print(f"  {c:<{width}}{cells}")
    if args.json:
        from hicra.fileio import write_json

        write_json(args.json, {"blocks": args.blocks, "runs": tables, "pooled": pooled, "command": " ".join(sys.argv)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
