"""How long a run must be for the phase verdict to see a consolidation: the order test on each run's first N steps.

    python benchmarks/phase_window.py RUN_DIR [RUN_DIR ...] [--windows 80,120,160,240,320] [--tail 40]

For each finished run (a lab run or any run directory with `metrics.parquet`) this prints: the mean relative
perplexity of execution, planning and reference tokens over the last `--tail` steps; the execution probe
(`probes.jsonl`: greedy line accuracy and, where recorded, the sampled probability) and the held-out greedy accuracy
(`eval_curve.jsonl`) at the first and last evaluation; and, for each N in `--windows`, the order and tau_exec
with its interval from `hicra.dynamics.phases.detect_phases` on the rows with step < N (the same test `hicra
analyze` runs, on a shorter run). A window longer than the run is the whole run. Files a run lacks are left out of
its line (named); a run without `metrics.parquet`, or a bad `--windows`: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file; ValueError naming the file and line for one that is not JSON."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
    return rows


def _first_last(rows: list[dict], key: str) -> str:
    vals = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    if not vals:
        return f"{key} n/a"
    (s0, v0), (s1, v1) = vals[0], vals[-1]
    return f"{key} {v0:.3f} (step {s0}) -> {v1:.3f} (step {s1})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--windows", default="80,120,160,240,320", help="first-N-steps windows (default 80,...,320)")
    ap.add_argument("--tail", type=int, default=40, help="steps averaged for the final relative perplexities")
    args = ap.parse_args()
    try:
        windows = [int(w) for w in args.windows.split(",") if w.strip()]
        if not windows or min(windows) < 1:
            raise ValueError
    except ValueError:
        print(f"phase_window: error: --windows: expected positive step counts like 80,160, got {args.windows!r}",
              file=sys.stderr)
        return 2
    if args.tail < 1:
        print(f"phase_window: error: --tail: expected a positive number of steps, got {args.tail}", file=sys.stderr)
        return 2
    import pandas as pd

    tables = {}
    needed = {"step", *(f"rel_ppl_{c}" for c in ("execution", "planning", "reference"))}
    for run in args.runs:
        path = run / "metrics.parquet"
        if not path.is_file():
            print(f"phase_window: error: {path}: not found (run `hicra analyze` first)", file=sys.stderr)
            return 2
        tables[run] = pd.read_parquet(path).sort_values("step")
        missing = sorted(needed - set(tables[run].columns))
        if missing:
            print(f"phase_window: error: {path}: no column(s) {', '.join(missing)} (a run without log-probabilities "
                  "has no perplexities to test)", file=sys.stderr)
            return 2
        for name in ("probes.jsonl", "eval_curve.jsonl"):
            if (run / name).is_file():
                try:
                    _jsonl(run / name)
                except ValueError as exc:
                    print(f"phase_window: error: {exc}", file=sys.stderr)
                    return 2

    from hicra.dynamics.phases import detect_phases

    for run in args.runs:
        m = tables[run]
        tail = m[m.step > m.step.max() - args.tail]
        print(f"{run}: {len(m)} steps")
        print("  relative perplexity over the last {} steps: execution {:.3f}, planning {:.3f}, reference {:.3f}"
              .format(args.tail, *(tail[f"rel_ppl_{c}"].mean() for c in ("execution", "planning", "reference"))))
        if (run / "probes.jsonl").is_file():
            probes = _jsonl(run / "probes.jsonl")
            print(f"  {_first_last(probes, 'exec_probe_line_accuracy')}; {_first_last(probes, 'exec_probe_line_prob')}")
        else:
            print("  probes.jsonl: not in the run")
        if (run / "eval_curve.jsonl").is_file():
            curve = _jsonl(run / "eval_curve.jsonl")
            print("  held-out greedy accuracy: " + ", ".join(f"{r['step']}: {100 * r['accuracy']:.1f}" for r in curve))
        else:
            print("  eval_curve.jsonl: not in the run")
        for n in windows:
            ph = detect_phases(m[m.step < n])
            order = ph["evidence"].get("order") or {}
            tau, iv = order.get("tau_exec"), (order.get("intervals") or {}).get("tau_exec")
            tau_text = "n/a" if tau is None else f"{tau:.0f}" + (f" [{iv[0]:.0f}, {iv[1]:.0f}]" if iv else "")
            print(f"  first {n} steps: order {ph['order']}, verdict {ph['verdict']}, tau_exec {tau_text}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
