"""Summarise lab run directories brought back from a sweep: per run its held-out greedy accuracy curve
(`eval_curve.jsonl`), the probes at the first and last evaluation, and the final greedy and sampled accuracy
(`eval.json`), as a table on stdout and as JSON.

    python benchmarks/sweeps/summarise.py OUT.json ROOT [ROOT ...]

Every directory under a ROOT that holds an `eval_curve.jsonl` is a run; its name is its path below the ROOT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def summarise(run: Path) -> dict:
    curve = read_jsonl(run / "eval_curve.jsonl")
    probes = read_jsonl(run / "probes.jsonl")
    ev = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() else {}
    out = {"greedy_curve": {str(r["step"]): round(100 * r["accuracy"], 2) for r in curve},
           "probes_first_last": [probes[0], probes[-1]] if probes else []}
    for key in ("warm_start", "final", "warm_start_sampled", "final_sampled"):
        if key in ev:
            out[key] = {"accuracy": round(100 * ev[key]["accuracy"], 2),
                        "errors": {k: ev[key][k] for k in ev[key] if k.startswith("errors_")},
                        "by_family": ev[key].get("accuracy_by_family")}
    return out


def main() -> None:
    out_path, roots = Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]
    runs = {}
    for root in roots:
        for curve in sorted(root.rglob("eval_curve.jsonl")):
            runs[str(curve.parent.relative_to(root))] = summarise(curve.parent)
    for name, r in runs.items():
        curve = " ".join(f"{s}:{a:.1f}" for s, a in r["greedy_curve"].items())
        sampled = (f"{r['warm_start_sampled']['accuracy']:.1f} -> {r['final_sampled']['accuracy']:.1f}"
                   if "final_sampled" in r else "-")
        print(f"{name:40s} greedy {curve}   sampled {sampled}")
    out_path.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
