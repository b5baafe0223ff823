"""Is the reference class as noisy as planning in real runs? The order test's guard needs it (docs/dynamics.md,
"Known limits": a noisier curve's end of fall is estimated later, so a reference class quieter than planning lets
classes that settle together read `execution-first`).

    python benchmarks/reference_noise.py RUN_DIR [RUN_DIR ...] [--out DIR]

Analyses each run (`analyze_run`, no report; outputs under --out, default a temporary folder, never the run
directory) and prints, per run, each class curve's noise as the order test measures it (`evidence.order.noise_sd`:
the sd of the bent-cable residuals of rel_ppl_execution / planning / reference) and the reference-to-planning
ratio, then the ratios' mean and range. The synthetic counterpart, with the ratio set by hand, is `python
benchmarks/phase_verdicts.py 50 199 --reference-noise F`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from hicra.dynamics.analyze import analyze_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories with log-probabilities and planning masks")
    ap.add_argument("--out", help="folder for the analyses (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="refnoise-") as tmp:  # removed at the end unless --out names a folder
        report(args.runs, Path(args.out) if args.out else Path(tmp))


def report(runs: list[str], base: Path) -> None:
    ratios = []
    print(f"{'run':40s} {'execution':>10s} {'planning':>10s} {'reference':>10s} {'ref/plan':>9s}  order")
    for i, run in enumerate(runs):
        summary = analyze_run(run, base / f"{i:03d}", report=False)
        order = summary["phases"]["evidence"]["order"]
        sd = order.get("noise_sd")
        if sd is None:
            print(f"{run:40s} {'untestable: ' + order.get('reason', ''):s}")
            continue
        ratio = order["reference_to_planning_noise"]
        ratios.append(ratio)
        print(f"{run[-40:]:40s} {sd['execution']:10.4f} {sd['planning']:10.4f} {sd['reference']:10.4f} "
              f"{ratio:9.2f}  {order['order']}")
    if ratios:
        r = np.array(ratios)
        print(f"reference/planning noise over {r.size} runs: mean {r.mean():.2f}, range {r.min():.2f}-{r.max():.2f}")


if __name__ == "__main__":
    main()
