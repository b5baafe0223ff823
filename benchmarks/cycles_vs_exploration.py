"""Does reasoning-graph cyclicity track strategy exploration? (docs/mechanistic.md, "Third measurement")

    python benchmarks/cycles_vs_exploration.py RUN_DIR [RUN_DIR ...] [--from-step 0] [--to-step LAST] [--n-boot 10000]

Reads each run's `summary.json` (`hicra analyze`: `phases.exploration`, its slope and whether it was detected) and
`graphs.json` (`hicra graphs`: mean cycles per response at each checkpoint), and prints per run the cycles at every
measured step, the change from `--from-step` to `--to-step` (default: the last step every run has), and over runs:

- the Spearman correlation between the exploration slope and the change in cycles, with a 95% percentile bootstrap
  interval over runs (`n_boot` resamples of the run list, with replacement) and one over warm starts (runs that
  share `run.json["model"]`, the warm start, are resampled together: they are not independent);
- the mean change in cycles of the runs where exploration was detected minus that of the others, with a bootstrap
  interval over runs (`hicra.stats.bootstrap_diff_ci`).

and, pooled over the runs' `graphs.parquet` rows, cycles by response length: at each step the mean number of
sentences per response, the correlation of cycles with it, mean cycles per length bucket, and the step's cycles
reweighted to `--from-step`'s mix of lengths (direct standardisation), so a fall in cycles that only reflects
shorter responses shows as a standardised mean close to the from-step's.

A run without either file, or without the two steps, is an input error: one line naming the run and the file,
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _load(run: Path) -> dict:
    for name in ("summary.json", "graphs.json", "run.json"):
        if not (run / name).is_file():
            raise ValueError(f"{run}: no {name} (run `hicra analyze` / `hicra graphs` first)")
    phases = json.loads((run / "summary.json").read_text())["phases"]
    exploration = phases.get("exploration") or {}
    if exploration.get("slope") is None:
        raise ValueError(f"{run / 'summary.json'}: field phases.exploration.slope is missing or null")
    steps = json.loads((run / "graphs.json").read_text())["steps"]
    cycles = {int(s): v["cycles"]["mean"] for s, v in steps.items() if v.get("cycles", {}).get("mean") is not None}
    return {"run": str(run), "warm_start": json.loads((run / "run.json").read_text())["model"],
            "slope": float(exploration["slope"]), "detected": bool(exploration.get("detected")),
            "verdict": phases.get("verdict"), "cycles": cycles}


def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def bootstrap_spearman(x, y, groups, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of Spearman's rho, resampling groups (each group's runs together) with replacement;
    resamples where either variable is constant are skipped (rho undefined); the interval is over the defined ones."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x), np.asarray(y)
    labels = sorted(set(groups))
    members = [np.flatnonzero(np.asarray(groups) == g) for g in labels]
    rhos = []
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(labels), len(labels))])
        if np.ptp(x[idx]) == 0 or np.ptp(y[idx]) == 0:
            continue
        rhos.append(spearman(x[idx], y[idx]))
    lo, hi = np.percentile(rhos, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--from-step", type=int, default=0)
    ap.add_argument("--to-step", type=int, default=None)
    ap.add_argument("--n-boot", type=int, default=10_000)
    args = ap.parse_args()
    try:
        runs = [_load(r) for r in args.runs]
        to_step = args.to_step if args.to_step is not None else min(max(r["cycles"]) for r in runs)
        for r in runs:
            for s in (args.from_step, to_step):
                if s not in r["cycles"]:
                    raise ValueError(f"{r['run']}/graphs.json: no cycles at step {s} (has {sorted(r['cycles'])})")
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from hicra.stats import bootstrap_diff_ci

    steps = sorted(set.intersection(*(set(r["cycles"]) for r in runs)))
    print("run | verdict | exploration slope | detected | cycles per response at steps "
          + ", ".join(map(str, steps)) + f" | change {args.from_step} -> {to_step}")
    for r in runs:
        r["change"] = r["cycles"][to_step] - r["cycles"][args.from_step]
        print(f"{r['run']} | {r['verdict']} | {r['slope']:+.4f} | {'yes' if r['detected'] else 'no'} | "
              + ", ".join(f"{r['cycles'][s]:.2f}" for s in steps) + f" | {r['change']:+.2f}")
    slope = [r["slope"] for r in runs]
    change = [r["change"] for r in runs]
    rho = spearman(slope, change)
    by_run = bootstrap_spearman(slope, change, list(range(len(runs))), args.n_boot)
    by_ws = bootstrap_spearman(slope, change, [r["warm_start"] for r in runs], args.n_boot)
    print(f"\n{len(runs)} runs, {len({r['warm_start'] for r in runs})} warm starts")
    print(f"Spearman(exploration slope, cycles change): {rho:+.3f}; 95% bootstrap over runs [{by_run[0]:+.3f}, "
          f"{by_run[1]:+.3f}], over warm starts [{by_ws[0]:+.3f}, {by_ws[1]:+.3f}]")
    det = [r["change"] for r in runs if r["detected"]]
    nodet = [r["change"] for r in runs if not r["detected"]]
    print(f"mean cycles change: exploration detected {np.mean(det) if det else float('nan'):+.2f} ({len(det)} runs), "
          f"not detected {np.mean(nodet) if nodet else float('nan'):+.2f} ({len(nodet)} runs)", end="")
    if len(det) >= 2 and len(nodet) >= 2:
        d, lo, hi = bootstrap_diff_ci(det, nodet, n_boot=args.n_boot)
        print(f"; difference {d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    else:
        print("; difference not computed (fewer than 2 runs in a group)")
    print_by_length([Path(r["run"]) for r in runs], args.from_step)
    return 0


LENGTH_BUCKETS = ((0, 10), (11, 19), (20, 29), (30, 10_000))  # sentences per response


def print_by_length(run_dirs: list[Path], from_step: int) -> None:
    """Cycles against response length (sentences), pooled over the runs' graphs.parquet rows (see the module
    docstring). Runs without graphs.parquet are left out and named."""
    import pandas as pd

    frames, missing = [], []
    for run in run_dirs:
        path = run / "graphs.parquet"
        if path.is_file():
            frames.append(pd.read_parquet(path, columns=["step", "n_sentences", "cycles"]))
        else:
            missing.append(str(run))
    if missing:
        print(f"\nby length: no graphs.parquet in {missing}; left out")
    if not frames:
        return
    df = pd.concat(frames, ignore_index=True)
    df["bucket"] = pd.cut(df.n_sentences, [lo - 0.5 for lo, _ in LENGTH_BUCKETS] + [LENGTH_BUCKETS[-1][1]],
                          labels=[f"{lo}-{hi}" if hi < 10_000 else f"{lo}+" for lo, hi in LENGTH_BUCKETS])
    base = df[df.step == from_step].bucket.value_counts(normalize=True)
    print(f"\ncycles by response length (sentences), pooled rows; standardised = reweighted to step {from_step}'s "
          "length mix")
    print("step | responses | sentences per response | r(cycles, sentences) | mean cycles | standardised | "
          + " | ".join(f"cycles, {b} (share)" for b in base.index.categories))
    for step, g in df.groupby("step"):
        by = g.groupby("bucket", observed=False).cycles.mean()
        share = g.bucket.value_counts(normalize=True)
        present = [b for b in base.index if base[b] > 0 and not np.isnan(by[b])]  # buckets both steps have
        standardised = sum(base[b] * by[b] for b in present)
        covered = sum(base[b] for b in present)
        r = np.corrcoef(g.cycles, g.n_sentences)[0, 1] if g.n_sentences.nunique() > 1 else float("nan")
        print(f"{step} | {len(g)} | {g.n_sentences.mean():.1f} | {r:+.2f} | {g.cycles.mean():.2f} | "
              f"{standardised / covered if covered else float('nan'):.2f} | "
              + " | ".join(f"{by[b]:.2f} ({share.get(b, 0):.0%})" for b in base.index.categories))


if __name__ == "__main__":
    sys.exit(main())
