"""The shape of each run's strategy entropy curve beside the verdict's exploration test, for study run summaries.

    python benchmarks/entropy_shape.py SUMMARY_ROOT [SUMMARY_ROOT ...] [--arm grpo]

Each SUMMARY_ROOT is a study's summary folder (`hicra study --summaries`, e.g. docs/findings/v2/runs): its
CELL/ARM/wsW-seedS.json files (`hicra.study.runner.write_run_summary`). Per run it prints the strategy entropy
(nats; the summary's `metrics.strategy_entropy`, the per-step entropy of the executed strategies' shares) averaged
over each tenth of the steps, the net change (last tenth minus first tenth), and the verdict's exploration test
(`phases.exploration`: detected, the slope of its linear trend in nats per step, and the window it was fitted on).
Per cell: how many runs the test detects and how many have a net rise. A description, not a test: the net change
has no interval here, and the pre-registered criteria read the verdict's test (docs/study.md). It shows whether a
linear trend over the window sees the curve's shape (e.g. a rise in the first tenths followed by a plateau).
A folder without summaries, or a summary without the entropy curve: one line naming it, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from hicra.errors import InputError
from hicra.stats import block_means
from hicra.study.statistics import load_summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", type=Path)
    ap.add_argument("--arm", default="grpo")
    args = ap.parse_args(argv)
    try:
        per_cell: dict[tuple[str, str], list[tuple[bool, float]]] = defaultdict(list)
        for root in args.roots:
            paths = sorted(root.glob(f"*/{args.arm}/ws*-seed*.json"))
            if not paths:
                raise InputError(f"no run summaries of arm {args.arm!r} (CELL/{args.arm}/wsW-seedS.json)",
                                 path=str(root))
            for path in paths:
                s = load_summary(path)
                for field in ("cell", "warm_start_seed", "seed", "phases"):
                    if s.get(field) is None:
                        raise InputError("missing", path=str(path), field=field)
                curve = (s.get("metrics") or {}).get("strategy_entropy")
                if not curve:
                    raise InputError("no strategy entropy curve", path=str(path), field="metrics.strategy_entropy")
                t = block_means(curve, 10)
                if not np.isfinite(t).all():
                    raise InputError(f"{len(curve)} steps: every tenth of the steps needs a value (10 steps or more, "
                                     "not all missing)", path=str(path), field="metrics.strategy_entropy")
                ex = s["phases"].get("exploration") or {}
                window = ((s["phases"].get("evidence") or {}).get("exploration") or {}).get("window")
                slope = ex.get("slope")  # null when the test could not run (`tested` false)
                net = float(t[-1] - t[0])
                per_cell[(str(root), s["cell"])].append((bool(ex.get("detected")), net))
                print(f"{s['cell']} ws{s['warm_start_seed']} seed {s['seed']}: tenths "
                      + " ".join(f"{v:.2f}" for v in t)
                      + f" | net {net:+.3f} | test: detected {bool(ex.get('detected'))}, slope "
                      + ("n/a (not tested)" if slope is None else f"{slope:+.6f}/step on steps {window}"))
    except InputError as exc:
        print(f"entropy_shape: {exc}", file=sys.stderr)
        return 2
    print()
    for (root, cell), rows in per_cell.items():
        print(f"{root} {cell}: {len(rows)} runs, test detects {sum(d for d, _ in rows)}, net rise in "
              f"{sum(n > 0 for _, n in rows)} (net change mean {np.mean([n for _, n in rows]):+.3f}, "
              f"range {min(n for _, n in rows):+.3f} to {max(n for _, n in rows):+.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
