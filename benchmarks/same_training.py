"""Whether the runs two studies share trained identically: field-by-field equality of their run summaries.

    python benchmarks/same_training.py ROOT_A ROOT_B [--arm grpo]

ROOT_A and ROOT_B are study summary folders (`hicra study --summaries`, e.g. docs/findings/v2/runs and
docs/findings/v2/controls2/runs): [CELL/]ARM/wsW-seedS.json files (`hicra.study.runner.write_run_summary`; a
study without cells has no CELL level). A run is in both when the same file exists under each root. Per shared run it compares, with exact
equality (no tolerance; NaN equals NaN), the run's setup (`knobs`, `config`, `warm_start_config`, `steps`) and
the training's record: the held-out evaluations (`eval`, `eval_curve`), the training curve (`train_curve`), the
probes (`probes`) and each metric curve (`metrics.NAME`), and prints the fields that differ with their largest
absolute difference. Beside it, whether the phase verdict (`phases.verdict`, `phases.order`,
`phases.exploration.detected`) is the same; it can differ between two identical trainings when the studies read
them with different rules versions. It counts the runs found under only one root. Not compared: `code` (the
commit), `seconds`, `resumed`, `phases` beyond the verdict, and fields outside the lists above.

A run "trains identically" when every compared field is equal except the metrics named with --except (by
default none). Use it to check a claim that a rerun reproduces a run bit for bit (e.g. docs/study.md, controls2
part 5b: every field but `metrics.rel_ppl_reference`, which the v3 rules define differently).
No shared run, a summary that is not one, or an --except metric that no shared run has: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from hicra.errors import InputError
from hicra.study.statistics import load_summary

SETUP = ("knobs", "config", "warm_start_config", "steps")
COMPARED = ("eval", "eval_curve", "train_curve", "probes")


def max_abs_diff(a, b) -> float | None:
    """Largest |a - b| over the numbers of two equally shaped JSON values; None when their shapes or non-numeric
    parts differ (then no number says how far apart they are)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return None
        parts = [max_abs_diff(a[k], b[k]) for k in a]
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return None
        parts = [max_abs_diff(x, y) for x, y in zip(a, b, strict=True)]
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 0.0
        return abs(a - b)
    else:
        return 0.0 if a == b else None
    if any(p is None for p in parts):
        return None
    return max(parts, default=0.0)


def differing_fields(a: dict, b: dict) -> dict[str, float | None]:
    """{field: largest absolute difference (None: not comparable)} for the setup and record fields that differ
    between two run summaries (NaN equals NaN); `metrics.NAME` per metric curve, a metric present in only one as
    not comparable."""
    out: dict[str, float | None] = {}
    pairs = [(f, a.get(f), b.get(f)) for f in (*SETUP, *COMPARED)]
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    pairs += [(f"metrics.{name}", ma.get(name), mb.get(name)) for name in sorted(set(ma) | set(mb))]
    for field, x, y in pairs:
        if x != y and (diff := max_abs_diff(x, y)) != 0.0:
            out[field] = diff
    return out


def verdict(s: dict) -> tuple:
    ph = s.get("phases") or {}
    return ph.get("verdict"), ph.get("order"), (ph.get("exploration") or {}).get("detected")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root_a", type=Path)
    ap.add_argument("root_b", type=Path)
    ap.add_argument("--arm", default="grpo")
    ap.add_argument("--except", dest="allowed", action="append", default=[], metavar="METRIC",
                    help="a metric curve allowed to differ (e.g. rel_ppl_reference); repeatable")
    args = ap.parse_args(argv)
    allowed = {f"metrics.{m}" for m in args.allowed}
    patterns = (f"{args.arm}/ws*-seed*.json", f"*/{args.arm}/ws*-seed*.json")  # without cells, with cells
    try:
        runs_a = {p.relative_to(args.root_a) for pat in patterns for p in args.root_a.glob(pat)}
        runs_b = {p.relative_to(args.root_b) for pat in patterns for p in args.root_b.glob(pat)}
        shared = sorted(runs_a & runs_b)
        if not shared:
            raise InputError(f"no run summary ([CELL/]{args.arm}/wsW-seedS.json) in both {args.root_a} and "
                             f"{args.root_b}", path=str(args.root_b))
        pairs = [(rel, load_summary(args.root_a / rel), load_summary(args.root_b / rel)) for rel in shared]
        present = {f"metrics.{m}" for _, a, b in pairs for m in (*(a.get("metrics") or {}), *(b.get("metrics") or {}))}
        if allowed - present:
            raise InputError(f"--except {', '.join(sorted(m[8:] for m in allowed - present))}: no such metric in the "
                             "shared runs' summaries", path=str(args.root_b))
        identical = same_verdict = 0
        for rel, a, b in pairs:
            diff = differing_fields(a, b)
            ok = set(diff) <= allowed
            identical += ok
            same_verdict += verdict(a) == verdict(b)
            shown = ", ".join(f"{f} (max |diff| {'n/a' if d is None else f'{d:.3g}'})" for f, d in diff.items())
            print(f"{rel}: {'trains identically' if ok else 'DIFFERS'}; differing fields: {shown or 'none'}; "
                  f"verdict {verdict(a)} vs {verdict(b)}")
    except InputError as exc:
        print(f"same_training: {exc}", file=sys.stderr)
        return 2
    print()
    print(f"{len(shared)} runs in both; {identical} train identically"
          + (f" (allowing {', '.join(sorted(allowed))} to differ)" if allowed else "")
          + f"; {same_verdict} have the same verdict, order and exploration reading; "
          f"only under {args.root_a}: {len(runs_a - runs_b)}, only under {args.root_b}: {len(runs_b - runs_a)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
