"""Three readings of "which level settles first" for lab runs: token perplexity, error shares, skill probes.

    python benchmarks/order_readings.py RUN_DIR [RUN_DIR ...]

The study's order criteria (docs/study.md) read the phase verdict's order: each class's relative perplexity
(`rel_ppl_execution`, `rel_ppl_planning`, `rel_ppl_reference`) tested for a fall that flattens
(`hicra.dynamics.phases.order_test`, from the run's `summary.json`). This prints it beside two behavioural
readings of the same run, for the filer's choice in docs/study.md ("What the pilots say"):
- **errors**: `hicra.study.statistics.error_fall_order` on `train_log.jsonl`, the step at which the share of
  sampled responses with an execution error, and with a planning error, has done half its fall
  (`hicra.stats.half_fall_step`; `-` = did not fall by 0.02). In the lab a planning error is a misapplied
  strategy: a correct but costlier strategy is not an error.
- **probes**: `probes.jsonl`, the sampled execution probe (`exec_probe_line_prob`) and the planning probe's
  cheapest-strategy share (`plan_probe_cheapest`), start -> end (`hicra.stats.half_fall_step`'s: the means of the
  first and of the last 10% of the points, at least 3 each, not the single first and last values) and the step at which each has done half its
  rise (the same rule on the negated curve; `-` = rose less than 0.02). The probe order is `execution first` /
  `planning first` by those steps, `only execution rises`, `only planning rises` or `neither rises`.
A run directory missing one of those files, or one that cannot be parsed: one line naming it (and the line), exit
code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hicra.errors import InputError
from hicra.fileio import read_jsonl, read_text

MIN_RISE = 0.02  # the smallest rise (probe share) counted, as half_fall_step's default min_drop


def probe_rise(rows: list[dict], key: str) -> dict:
    """{"start", "end", "half_step"} of a probe column: half_fall_step on the negated curve (None: no rise)."""
    from hicra.stats import half_fall_step

    out = half_fall_step([r["step"] for r in rows], [-r[key] for r in rows], min_drop=MIN_RISE)
    return {"start": -out["start"], "end": -out["end"], "half_step": out["half_step"]}


def probe_order(ex: dict, pl: dict) -> str:
    """The probes' order by their half-rise steps (`hicra.study.statistics.half_step_order`, verb "rises")."""
    from hicra.study.statistics import half_step_order

    return half_step_order(ex["half_step"], pl["half_step"], verb="rises")


def readings(run: Path) -> dict:
    """The three readings of one run directory; InputError names a missing or unreadable file."""
    from hicra.study.statistics import error_fall_order

    for name in ("summary.json", "train_log.jsonl", "probes.jsonl"):
        if not (run / name).is_file():
            raise InputError("not found (a finished `hicra lab` run has it)", path=str(run / name))
    phases = json.loads(read_text(run / "summary.json", "summary"))["phases"]
    cons = phases.get("evidence", {}).get("order", {}).get("consolidates", {})
    errors = error_fall_order([row for _, row in read_jsonl(run / "train_log.jsonl", "training log")])
    probes = [row for _, row in read_jsonl(run / "probes.jsonl", "probe log")]
    ex, pl = probe_rise(probes, "exec_probe_line_prob"), probe_rise(probes, "plan_probe_cheapest")
    return {"perplexity": phases["order"], "consolidates": sorted(k for k, v in cons.items() if v),
            "errors": errors, "probe_execution": ex, "probe_planning": pl, "probes": probe_order(ex, pl)}


def _step(x) -> str:
    return "-" if x is None else f"{x:g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args(argv)
    try:
        rows = [(run, readings(run)) for run in args.runs]
    except (InputError, KeyError, json.JSONDecodeError) as e:
        print(f"order_readings: error: {e}", file=sys.stderr)
        return 2
    print(f"{'run':<32} {'perplexity order (consolidating)':<44} {'error-share order (half-fall steps)':<44} "
          "probe order: exec probe, plan probe cheapest (start -> end @ half-rise step)")
    for run, r in rows:
        e = r["errors"]
        ppl = f"{r['perplexity']} ({', '.join(r['consolidates']) or '-'})"
        err = f"{e['order']} (exec {_step(e['execution']['half_step'])}, plan {_step(e['planning']['half_step'])})"
        ex, pl = r["probe_execution"], r["probe_planning"]
        pro = (f"{r['probes']}: {ex['start']:.3f} -> {ex['end']:.3f} @ {_step(ex['half_step'])}, "
               f"{pl['start']:.2f} -> {pl['end']:.2f} @ {_step(pl['half_step'])}")
        print(f"{str(run)[-32:]:<32} {ppl:<44} {err:<44} {pro}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
