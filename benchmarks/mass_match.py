"""How closely a mass-matched placebo run matched the update change that amplifying its planning tokens would make.

    python benchmarks/mass_match.py SUMMARY [SUMMARY ...] [--alpha 0.2] [--tolerance 0.002]

SUMMARY is a study run summary (`SUMMARIES/[CELL/]ARM/wsW-seedS.json`, as `hicra study` writes it) of a
`placebo-mass` run (`hicra.algorithms.mass_matched_placebo_mask`). Each summary's `train_curve` holds, per step,
the update change its own mask made (`update_change`) and the planning tokens' share of the update
(`planning_update_share`), so the target is alpha x that share. Printed per run: the step-0 update change against
its target, and the steps on which the run fell short of the target by more than --tolerance (a fraction: 0.002 =
0.2 points). Then over all runs: the means at step 0 (with and without runs more than --tolerance off there), the
steps short, the runs with at least one such step, and the largest shortfall with the planning share of that step.
A placebo-mass run falls short mostly where the planning tokens hold more than half of a batch's update (the
mask's documented limit); a last line counts those steps, and how many of the short steps are among them. Steps without an update (null) are not counted. A file that is not a run summary, or a summary
without the two curves: one line naming it and the field, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hicra.errors import InputError
from hicra.study.statistics import load_summary


def run_match(summary: dict, path: Path, alpha: float, tolerance: float) -> dict:
    """{"start": (update change, target) at step 0, "short": [(step, shortfall, planning share), ...], "steps": n,
    "over_half": steps on which planning holds more than half of the update}."""
    curve = summary.get("train_curve") or {}
    for name in ("update_change", "planning_update_share"):
        if not curve.get(name):
            raise InputError("no such curve in train_curve (a run summary from before the mechanism columns?)",
                             path=str(path), field=f"train_curve.{name}")
    steps = curve.get("step") or list(range(len(curve["update_change"])))
    rows = [(s, u, p) for s, u, p in zip(steps, curve["update_change"], curve["planning_update_share"], strict=True)
            if u is not None and p is not None]
    short = [(s, alpha * p - u, p) for s, u, p in rows if alpha * p - u > tolerance]
    first = rows[0] if rows else None
    return {"start": None if first is None else (first[1], alpha * first[2]), "short": short, "steps": len(rows),
            "over_half": sum(p > 0.5 for _, _, p in rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("summaries", nargs="+", type=Path)
    ap.add_argument("--alpha", type=float, default=0.2)
    ap.add_argument("--tolerance", type=float, default=0.002, help="a shortfall counts above this (a fraction)")
    args = ap.parse_args(argv)
    try:
        runs = {p: run_match(load_summary(p), p, args.alpha, args.tolerance) for p in args.summaries}
    except InputError as err:
        print(f"mass_match: {err}", file=sys.stderr)
        return 2
    for p, r in runs.items():
        start = "-" if r["start"] is None else f"{100 * r['start'][0]:.2f}% (target {100 * r['start'][1]:.2f}%)"
        print(f"{p}: step-0 update change {start}; short on {len(r['short'])} of {r['steps']} steps")
    starts = {p: r["start"] for p, r in runs.items() if r["start"] is not None}
    close = {p: s for p, s in starts.items() if abs(s[0] - s[1]) <= args.tolerance}

    def means(d: dict) -> str:
        if not d:
            return "-"
        return (f"{100 * sum(s[0] for s in d.values()) / len(d):.2f}% vs target "
                f"{100 * sum(s[1] for s in d.values()) / len(d):.2f}% ({len(d)} runs)")
    short = [(p, *x) for p, r in runs.items() for x in r["short"]]
    worst = max(short, key=lambda x: x[2], default=None)
    print(f"step 0, all runs: {means(starts)}; runs within {100 * args.tolerance:.1f} points there: {means(close)}")
    print(f"steps short by more than {100 * args.tolerance:.1f} points: {len(short)} of "
          f"{sum(r['steps'] for r in runs.values())}, in {sum(bool(r['short']) for r in runs.values())} of "
          f"{len(runs)} runs" + ("" if worst is None else
                                  f"; largest {100 * worst[2]:.1f} points ({worst[0]}, step {worst[1]}, planning "
                                  f"{100 * worst[3]:.0f}% of the update)"))
    print(f"planning holds more than half of the update on {sum(r['over_half'] for r in runs.values())} steps; "
          f"of the short steps, {sum(x[3] > 0.5 for x in short)} are such steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
