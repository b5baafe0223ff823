"""Which strategies a lab run's policy executes, how often each is right, and whether RL moves toward the
cheapest: per (family, strategy) label, the share of the training rollouts and their accuracy in the first and
the last fifth of the run's steps, and per family the share of rollouts that executed the problem's cheapest
strategy.

    python benchmarks/lab_strategies.py RUN_DIR [RUN_DIR ...]

Reads `rollouts/*.parquet` (columns `step`, `prompt_id`, `strategy`, `correct`). Labels are the checker's parse
of the computation lines (`hicra.lab.tasks.base.Family.parse_strategy`); null labels count as "unparsed". The
cheapest strategy of a problem is `Family.optimal_label` of the problem rebuilt from its id
(`hicra.lab.tasks.problem_from_id`) under the task specs in the first run's `run.json`. Several run directories are
pooled row by row (same preset assumed).

Why it matters: exploration of strategies can only be rewarded when the policy executes the alternatives well
enough that choosing them pays. A strategy the warm start cannot execute (accuracy near 0) is no alternative,
whatever its cost.
"""

from __future__ import annotations

import argparse
import glob
import os
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import pandas as pd

    from hicra.lab.tasks import TaskMix, problem_from_id

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    args = ap.parse_args()
    frames = []
    for run in args.run_dirs:
        files = sorted(glob.glob(os.path.join(run, "rollouts", "*.parquet")))
        if not files:
            raise SystemExit(f"{run}: no rollouts/*.parquet")
        df = pd.concat(pd.read_parquet(f, columns=["step", "prompt_id", "strategy", "correct"]) for f in files)
        last = df.step.max()
        df["part"] = pd.cut(df.step, [-1, (last + 1) // 5 - 1, last - (last + 1) // 5, last],
                            labels=["first fifth", "middle", "last fifth"])
        frames.append(df[df.part != "middle"])
    df = pd.concat(frames, ignore_index=True)
    df["family"] = df.prompt_id.str.split(":").str[0]
    df["strategy"] = df.strategy.fillna("unparsed")
    import json

    # the first run's task specs (e.g. series with written terms) decide each problem's cheapest strategy
    info = json.loads((Path(args.run_dirs[0]) / "run.json").read_text())
    mix = TaskMix(info["config"]["tasks"], optimum=info["config"].get("optimum"))
    cheapest = {}
    for pid in df.prompt_id.unique():
        p = problem_from_id(pid)
        cheapest[pid] = mix.family_of(p).optimal_label(p)
    df["cheapest"] = [s == cheapest[pid] for s, pid in zip(df.strategy, df.prompt_id, strict=True)]

    parts = ["first fifth", "last fifth"]
    print(f"{len(args.run_dirs)} run(s), {len(df)} rollouts in the first and last fifths of the steps")
    print(f"{'family':<9}{'strategy':<24}" + "".join(f"{p + ' share':>18}{'accuracy':>10}" for p in parts))
    totals = df.groupby(["family", "part"], observed=True).size()
    table = defaultdict(dict)
    for (fam, strat, part), g in df.groupby(["family", "strategy", "part"], observed=True):
        table[(fam, strat)][part] = (len(g) / totals[(fam, part)], g.correct.mean())
    for (fam, strat), cells in sorted(table.items(), key=lambda kv: (kv[0][0], -kv[1].get(parts[0], (0,))[0])):
        row = f"{fam:<9}{strat:<24}"
        for p in parts:
            share, acc = cells.get(p, (0.0, float("nan")))
            row += f"{share:>18.3f}{acc:>10.3f}"
        print(row)
    print("share of rollouts that executed the problem's cheapest strategy (accuracy of those rollouts):")
    for fam, g in df.groupby("family"):
        cells = []
        for p in parts:
            h = g[g.part == p]
            c = h[h.cheapest]
            cells.append(f"{p} {h.cheapest.mean():.3f} ({c.correct.mean() if len(c) else float('nan'):.3f})")
        print(f"  {fam:<9}" + ", ".join(cells))
    df["cheapest_label"] = df.prompt_id.map(cheapest)
    print_conditioning(df, parts)
    print_series_by_terms(df, parts)


def print_series_by_terms(df, parts, buckets=((2, 4), (5, 8), (9, 12))) -> None:
    """Series rollouts by number of terms n (from the problem id `series:a:d:n`): per bucket and part, the
    strategies' shares (accuracy in brackets). The number of terms decides the cheapest strategy and whether
    one-by-one fits the response budget."""
    series = df[df.family == "series"].copy()
    if series.empty:
        return
    series["n"] = series.prompt_id.str.split(":").str[3].astype(int)
    from sklearn.metrics import mutual_info_score

    print("series by number of terms: executed-strategy shares (accuracy); I(executed; number of terms)")
    for p in parts:
        h = series[series.part == p]
        if not h.empty:
            print(f"  {p:<12}I = {mutual_info_score(h.n, h.strategy):.4f} nats")
        for lo, hi in buckets:
            h = series[(series.part == p) & series.n.between(lo, hi)]
            if h.empty:
                continue
            shares, acc = h.strategy.value_counts(normalize=True), h.groupby("strategy").correct.mean()
            print(f"  {p:<12}{lo}-{hi} terms  n={len(h):<6}"
                  + ", ".join(f"{k} {shares[k]:.2f} ({acc[k]:.2f})" for k in shares.index[:3]))


def part_of(label: str, names: tuple[str, ...]) -> str:
    """The component of a multi-part label (`split+pairing`) that names one of `names` (a family's strategies),
    else "unparsed" (a product written as one line, `direct`, counts for the product part)."""
    for piece in label.split("+"):
        if piece in names:
            return piece
    return "unparsed"


def print_conditioning(df, parts) -> None:
    """Does the choice depend on the problem? Per family and part: for each class of problems sharing a cheapest
    strategy, the shares of the strategies executed (accuracy in brackets), and the mutual information
    I(executed strategy; problem's cheapest strategy) in nats (`sklearn.metrics.mutual_info_score`, plug-in
    estimate from the counts). A policy that picks by problem has I > 0; one that shifts its mix the same way for
    every problem keeps I near 0 however much the mix moves."""
    import pandas as pd
    from sklearn.metrics import mutual_info_score

    from hicra.lab.tasks.product import Product
    from hicra.lab.tasks.series import Series

    # a multi-part label's order follows the prompt's part order, so executed and cheapest labels would share it
    # whatever the policy chooses; each part is compared on its own instead
    multi = df[df.family == "multi"]
    parts_of_multi = []
    for name, names in (("series", Series.strategies), ("product", (*Product.strategies, "direct"))):
        m = multi.copy()
        m["family"] = f"multi:{name}"
        m["strategy"] = [part_of(x, names) for x in m.strategy]
        m["cheapest_label"] = [part_of(x, names) for x in m.cheapest_label]
        parts_of_multi.append(m)
    df = pd.concat([df[df.family != "multi"], *parts_of_multi], ignore_index=True)
    print("choice by the problem's cheapest strategy: executed-strategy shares (accuracy); I(executed; cheapest)")
    for fam, g in df.groupby("family"):
        for p in parts:
            h = g[g.part == p]
            if h.empty:
                continue
            print(f"  {fam:<15}{p:<12} I = {mutual_info_score(h.cheapest_label, h.strategy):.4f} nats")
            for label, k in h.groupby("cheapest_label"):
                shares = k.strategy.value_counts(normalize=True)
                acc = k.groupby("strategy").correct.mean()
                print(f"    cheapest {label:<22} n={len(k):<6}"
                      + ", ".join(f"{s} {shares[s]:.2f} ({acc[s]:.2f})" for s in shares.index[:4]))


if __name__ == "__main__":
    main()
