"""Strategy entropy within each lab task family over a run, with the exploration test `hicra analyze` uses.

    python benchmarks/family_entropy.py RUN_DIR [RUN_DIR ...]

`hicra analyze` tests the entropy of a step's strategy labels pooled over the prompts of the step
(`strategy_entropy`). The lab's families have their own strategies, so the pooled figure mixes a rise in one
family with a fall in another, and carries the entropy of the step's family draw. Here, per step, the entropy
(nats) of the labels of each family's responses alone (`series`, `product`, `multi`: the prompt id's prefix before
":"; labels split into parts as `hicra analyze` counts them), and `in family` = sum over families of the family's
share of the labelled responses times its entropy, i.e. H(strategy | family). Each column gets the exploration
test of `hicra analyze` (`hicra.dynamics.phases.trend_test`: OLS slope, AR(1) sieve bootstrap-t; detected when
the 95% interval is above 0) over every step, and `pooled` repeats the analyzer's own column for comparison (over
every step, not after a consolidation end). Prints per run slope and detection per column, then per column the
number of runs with a detected rise, with a detected fall (interval below 0), and the mean slope.
A run without strategy labels: one line naming it, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLUMNS = ("pooled", "in family", "series", "product", "multi")


def step_entropies(table) -> dict:
    """{column: entropy in nats} for one step's rollout table; {} without labels."""
    import numpy as np

    from hicra.dynamics.metrics import strategy_counts
    from hicra.dynamics.phases import entropy_rows

    labels = table.column("strategy").to_pylist()
    family = np.array([p.split(":", 1)[0] for p in table.column("prompt_id").to_pylist()])
    _, counts = strategy_counts(labels)
    labelled = counts.sum(axis=1) > 0
    if not labelled.any():
        return {}
    out = {"pooled": float(entropy_rows(counts.sum(axis=0, keepdims=True))[0])}
    within, n = 0.0, int(labelled.sum())
    for f in np.unique(family):
        rows = (family == f) & labelled
        if rows.any():
            h = float(entropy_rows(counts[rows].sum(axis=0, keepdims=True))[0])
            out[str(f)] = h
            within += rows.sum() / n * h
    out["in family"] = within
    return out


def main() -> int:
    import numpy as np

    from hicra.dynamics.phases import PhaseConfig, trend_test
    from hicra.dynamics.records import iter_steps
    from hicra.errors import InputError

    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    results = {c: [] for c in COLUMNS}
    print(f"{'run':30s}" + "".join(f"{c:>22s}" for c in COLUMNS) + "   (slope per step; + / - : rise / fall detected)")
    for run in args.runs:
        try:
            values = [(step, step_entropies(table))
                      for step, table in iter_steps(run, columns=("step", "prompt_id", "strategy"))]
        except (InputError, OSError, KeyError) as e:
            print(f"family_entropy: error: {run}: {e}", file=sys.stderr)
            return 2
        values = [(s, v) for s, v in values if v]
        if not values:
            print(f"family_entropy: error: {run}: no strategy labels in the rollouts", file=sys.stderr)
            return 2
        line = f"{str(run)[-30:]:30s}"
        for c in COLUMNS:
            pts = [(s, v[c]) for s, v in values if c in v]
            if len(pts) < 4:
                line += f"{'-':>22s}"
                continue
            x, y = np.array(pts, dtype=float).T
            t = trend_test(x, y, PhaseConfig())
            lo, hi = t["slope_interval"]
            mark = "+" if lo > 0 else "-" if hi < 0 else " "
            results[c].append((t["slope"], lo > 0, hi < 0))
            line += f"{t['slope']:+20.5f} {mark}"
        print(line, flush=True)
    print()
    for c, r in results.items():
        if r:
            print(f"{c:10s} rise detected in {sum(u for _, u, _ in r)} of {len(r)}, fall detected in "
                  f"{sum(d for _, _, d in r)}; mean slope {statistics.mean(s for s, _, _ in r):+.5f} per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
