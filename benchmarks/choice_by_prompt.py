"""Does a run's policy learn to choose its strategy by problem? `strategy_information` (H(strategy) -
H(strategy | prompt), nats, Miller-Madow corrected, `hicra.dynamics.metrics.strategy_information`) in the first and
the last fifth of the steps, per run and over runs.

    python benchmarks/choice_by_prompt.py RUN_DIR [RUN_DIR ...]

Reads `prompt_id` and `strategy` from the rollouts. Two columns: `pooled`, the metric as `hicra analyze` computes it
(every prompt of the step together), and `in family`, conditional on the lab task family (the prompt id's prefix
before ":", e.g. `series`): the lab's families have their own strategy labels, so the pooled figure also counts
which family a prompt is from, and moves with the step's family draws (all runs with one RL seed draw the same
problems); then the same per family (a family absent from a step is left out of that step; about five prompts
per family and step, so each step's figure is noisy and the fifths average 16 steps). Then the change first -> last fifth over runs: mean, SD, count of rises. A run without strategy labels:
one line naming it, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLUMNS = ("pooled", "in family", "series", "product", "multi")


def step_information(table) -> dict:
    """{"pooled": I(S; prompt), "in family": I(S; prompt | family), and per family present I(S; prompt) over that
    family's prompts} of one step's rollout table (nats); {} without labels."""
    import numpy as np

    from hicra.dynamics.metrics import group_rows, joint_strategy_counts, strategy_information

    ids = np.asarray(table.column("prompt_id").to_pylist(), dtype=object).astype(str)
    _, counts = joint_strategy_counts(table.column("strategy").to_pylist())
    prompts, group = np.unique(ids, return_inverse=True)
    g = group_rows(counts, group, len(prompts))  # label counts per prompt, as `hicra analyze` groups them
    pooled = strategy_information(g)
    if not pooled:
        return {}
    family = np.array([p.split(":", 1)[0] for p in prompts])
    out = {"pooled": pooled["strategy_information"],
           "in family": strategy_information(g, strata=family)["strategy_information"]}
    for f in np.unique(family):
        one = strategy_information(g[family == f])
        if one:
            out[str(f)] = one["strategy_information"]
    return out


def fifths(values: list[tuple[int, dict]]) -> tuple[list[dict], list[dict]]:
    """(first fifth, last fifth) of (step, value) pairs in step order, at least one each."""
    values = sorted(values, key=lambda sv: sv[0])
    k = max(1, len(values) // 5)
    return [v for _, v in values[:k]], [v for _, v in values[-k:]]


def main() -> int:
    from hicra.dynamics.records import iter_steps
    from hicra.errors import InputError
    from hicra.stats import describe_changes

    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    changes = {c: [] for c in COLUMNS}
    print(f"{'run':30s}" + "".join(f"{c:>24s}" for c in COLUMNS))
    print(f"{'':30s}" + "   first    last  change" * len(COLUMNS))
    for run in args.runs:
        try:
            values = [(step, step_information(table))
                      for step, table in iter_steps(run, columns=("step", "prompt_id", "strategy"))]
        except (InputError, OSError, KeyError) as e:
            print(f"choice_by_prompt: error: {run}: {e}", file=sys.stderr)
            return 2
        values = [(s, v) for s, v in values if v]
        if not values:
            print(f"choice_by_prompt: error: {run}: no strategy labels in the rollouts", file=sys.stderr)
            return 2
        first, last = fifths(values)
        line = f"{str(run)[-30:]:30s}"
        for c in COLUMNS:
            a, b = [[v[c] for v in part if c in v] for part in (first, last)]
            if not a or not b:
                line += f"  {'-':>6s}  {'-':>6s}  {'-':>6s}"
                continue
            a, b = statistics.mean(a), statistics.mean(b)
            changes[c].append(b - a)
            line += f"  {a:6.3f}  {b:6.3f}  {b - a:+6.3f}"
        print(line)
    print()
    for c, v in changes.items():
        if not v:
            continue
        print(f"{c:10s} change first -> last fifth: {describe_changes(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
