"""Why an order criterion passed or failed: each control cell's token classes, per run and pooled.

    python benchmarks/control_classes.py [SUMMARIES] [--arm grpo] [--preset controls]

Reads the controls study's committed per-run summaries (default `docs/findings/v2/runs`; no run directory) and
prints, per cell of the preset:
- per class (execution, planning, reference; `rel_ppl_*`, each run's perplexity over its first step's): in how
  many runs the class consolidates in its own test (`summary["phases"]["evidence"]["consolidation"]`, the hinge
  test of docs/dynamics.md), the median p, the mean fitted drop, the mean noise SD of the class curve (residuals
  of its bent-cable fit, `evidence.order.noise_sd`) and the mean curve's first and last 20 steps;
- the cell's pooled order (`hicra.dynamics.phases.detect_phases_pooled`, what the criterion reads), each class's
  share of run resamples in which it consolidates (`consolidates_in_draws`), the share in which its end of fall lies
  within the burn-in, so is not claimed (`burn_in_draws`), and the 90% intervals of
  tau_plan - tau_exec and tau_plan - tau_ref. An order is claimed when both intervals lie on one side of 0, so a
  class at 0.9 of the draws with the other two near 0 reads as a near miss;
- the held-out greedy evaluation at the warm start and after RL (`summary["eval"]`, means over the runs): accuracy
  and the shares of responses with an execution, a planning and a format error, i.e. what the cell's knobs did
  to the model (a corpus without execution noise need not give a model without execution errors);
- each of execution's and planning's fall beyond the reference class's (the mean of its first EDGE steps minus
  the mean of its last EDGE, less the same for the reference class): the mean over the runs and in how many runs
  it is positive, i.e. whether a class sharpened more than random tokens of its size;
- the strategy entropy (`metrics["strategy_entropy"]`, what the exploration criteria test) and the share of
  responses with a format error (`train_curve["errors_format_share"]`) over four windows of the run (the steps'
  first sixteenth, to a quarter, to a half, the second half; means over the runs), since a rise that ends early
  is not a trend over the whole run;
- the skill probes (`summary["probes"]`, first -> last probe, means over the runs): the sampled execution probe
  (`exec_probe_line_prob`, the share of computation lines right in one sample) and the planning probe's
  cheapest-strategy share (`plan_probe_cheapest`), a behavioural reading of whether each level changed under RL,
  and the per-run probe orders (`benchmarks/order_readings.py`'s rule: the step at which each probe has done half
  its rise, a rise under 0.02 counting as none);
- the per-run orders of two rollout readings, for comparison with the probes': the run's own perplexity order
  (its phase verdict's) and the error shares' order (`hicra.study.statistics.error_fall_order`: the step at
  which the training rollouts' execution-error and planning-error shares have each done half their fall).

A description beside the pre-registered criteria (docs/study.md, F4), not a criterion. A missing or malformed
summary: one line naming the file, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script order_readings.py
from order_readings import probe_order, probe_rise  # noqa: E402

from hicra.errors import InputError

CLASSES = ("execution", "planning", "reference")
EDGE = 20  # steps averaged at each end of the mean curve


def cell_rows(runs: list[dict]) -> dict:
    """Per class: runs consolidating, median p, mean drop, mean noise SD, mean curve's first/last EDGE steps."""
    out = {}
    for k in CLASSES:
        tests = [r["phases"]["evidence"]["consolidation"][k] for r in runs]
        curves = np.array([np.asarray(r["metrics"][f"rel_ppl_{k}"], dtype=float) for r in runs])
        out[k] = {"detected": sum(bool(t["detected"]) for t in tests), "n": len(runs),
                  "median_p": float(np.median([t["p_value"] for t in tests])),
                  "drop": float(np.mean([t["drop"] for t in tests])),
                  "noise_sd": float(np.mean([r["phases"]["evidence"]["order"]["noise_sd"][k] for r in runs])),
                  "first": float(np.nanmean(curves[:, :EDGE])), "last": float(np.nanmean(curves[:, -EDGE:]))}
    return out


ERROR_KINDS = ("execution", "planning", "format")


WINDOWS = ((0, 1 / 16), (1 / 16, 1 / 4), (1 / 4, 1 / 2), (1 / 2, 1))


def window_means(runs: list[dict]) -> dict:
    """{"strategy_entropy" | "errors_format_share": [mean over runs of each WINDOWS slice's mean]} (nats; fraction)."""
    out = {}
    for key, table in (("strategy_entropy", "metrics"), ("errors_format_share", "train_curve")):
        per_run = []
        for r in runs:
            c = np.asarray(r[table][key], dtype=float)
            per_run.append([np.nanmean(c[int(a * c.size):int(b * c.size)]) for a, b in WINDOWS])
        out[key] = np.mean(per_run, axis=0).tolist()
    return out


def excess_falls(runs: list[dict]) -> dict:
    """{"execution" | "planning": (mean, n_positive)}: per run, the class curve's fall (mean of its first EDGE
    values minus mean of its last EDGE) minus the reference class's fall; mean over runs, runs above 0."""
    def fall(r, k):
        c = np.asarray(r["metrics"][f"rel_ppl_{k}"], dtype=float)
        return np.nanmean(c[:EDGE]) - np.nanmean(c[-EDGE:])

    out = {}
    for k in ("execution", "planning"):
        x = np.array([fall(r, k) - fall(r, "reference") for r in runs])
        out[k] = (float(x.mean()), int((x > 0).sum()))
    return out


def eval_rows(runs: list[dict]) -> dict:
    """{"warm_start" | "final": {"accuracy", "execution", "planning", "format"}}: means over the runs of the held-out
    greedy accuracy and error shares (fractions)."""
    out = {}
    for when in ("warm_start", "final"):
        evs = [r["eval"][when] for r in runs]
        out[when] = {"accuracy": float(np.mean([e["accuracy"] for e in evs])),
                     **{k: float(np.mean([e[f"errors_{k}_share"] for e in evs])) for k in ERROR_KINDS}}
    return out


PROBES = ("exec_probe_line_prob", "plan_probe_cheapest")


def probe_rows(runs: list[dict]) -> dict:
    """{probe: (first, last)}: means over the runs of each probe's first and last value."""
    return {k: (float(np.mean([r["probes"][k][0] for r in runs])), float(np.mean([r["probes"][k][-1] for r in runs])))
            for k in PROBES}


def probe_orders(runs: list[dict]) -> dict[str, int]:
    """Counts of the runs' probe orders (`order_readings.probe_order` of the two probes' half-rise steps)."""
    counts: dict[str, int] = {}
    for r in runs:
        rows = [dict(zip(r["probes"], v, strict=True)) for v in zip(*r["probes"].values(), strict=True)]
        o = probe_order(probe_rise(rows, PROBES[0]), probe_rise(rows, PROBES[1]))
        counts[o] = counts.get(o, 0) + 1
    return counts


def reading_orders(runs: list[dict]) -> dict[str, dict[str, int]]:
    """Counts of the runs' orders by two rollout readings beside the probes': "perplexity" (the run's own phase
    verdict, `summary["phases"]["order"]`) and "error shares" (`hicra.study.statistics.error_fall_order` on the
    training log that `load_summary` rebuilds from the summary's `train_curve`, `summary["log"]`)."""
    from hicra.study.statistics import error_fall_order

    out: dict[str, dict[str, int]] = {"perplexity": {}, "error shares": {}}
    for r in runs:
        for name, o in (("perplexity", r["phases"]["order"]), ("error shares", error_fall_order(r["log"])["order"])):
            out[name][o] = out[name].get(o, 0) + 1
    return out


def _iv(iv) -> str:
    return "-" if not iv or iv[0] is None else f"[{iv[0]:g}, {iv[1]:g}]"


def main(argv=None) -> int:
    from hicra.dynamics.phases import config_for_phases, detect_phases_pooled
    from hicra.study import PRESETS
    from hicra.study.presets import study_pairs, summary_path_for
    from hicra.study.statistics import load_summary

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summaries", nargs="?", type=Path, default=Path("docs/findings/v2/runs"))
    ap.add_argument("--arm", default="grpo")
    ap.add_argument("--preset", default="controls", choices=sorted(PRESETS))
    args = ap.parse_args(argv)
    preset = PRESETS[args.preset]
    pairs = study_pairs(preset.warm_start_seeds, preset.seeds, preset.first_warm_start_seed)
    try:
        cells = {cell: [load_summary(summary_path_for(args.summaries, args.arm, q.seed, q.warm_start_seed, cell))
                        for q in pairs] for cell in (preset.cells or {"": {}})}
    except (InputError, KeyError) as e:
        print(f"control_classes: error: {e}", file=sys.stderr)
        return 2
    for cell, runs in cells.items():
        print(f"{cell or args.preset}/{args.arm} ({len(runs)} runs)")
        for k, v in cell_rows(runs).items():
            print(f"  {k:<10} consolidates in {v['detected']}/{v['n']} runs, median p {v['median_p']:.3f}, "
                  f"drop {v['drop']:+.4f}, noise SD {v['noise_sd']:.4f}, mean curve {v['first']:.4f} -> "
                  f"{v['last']:.4f}")
        ex = excess_falls(runs)
        print("  fall beyond the reference class's: " + ", ".join(
            f"{k} {m:+.4f} (> 0 in {n}/{len(runs)})" for k, (m, n) in ex.items()))
        wm = window_means(runs)
        print("  by window (1/16, 1/4, 1/2, end): strategy entropy " + " -> ".join(f"{v:.3f}" for v in
              wm["strategy_entropy"]) + "; format-error share " + " -> ".join(f"{v:.3f}" for v in
                                                                              wm["errors_format_share"]))
        ev = eval_rows(runs)
        print("  held-out greedy, warm start -> final: " + ", ".join(
            f"{k} {100 * ev['warm_start'][k]:.1f} -> {100 * ev['final'][k]:.1f}%" for k in ("accuracy", *ERROR_KINDS))
            .replace("execution", "execution errors", 1))
        pr = probe_rows(runs)
        print("  probes, first -> last: " + ", ".join(f"{k} {a:.3f} -> {b:.3f}" for k, (a, b) in pr.items())
              + "; probe orders: " + ", ".join(f"{k} {v}" for k, v in sorted(probe_orders(runs).items())))
        for name, counts in reading_orders(runs).items():
            print(f"  per-run orders by {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        pooled = detect_phases_pooled([r["metrics"] for r in runs], config_for_phases([r["phases"] for r in runs]))
        o = pooled["evidence"]["order"]
        draws = ", ".join(f"{k} {o['consolidates_in_draws'][k]:.2f}" for k in CLASSES)
        burn = ", ".join(f"{k} {o['burn_in_draws'][k]:.2f}" for k in CLASSES)
        print(f"  pooled: {pooled['verdict']} (order {o['order']}); consolidates in draws: {draws}; "
              f"ends of fall within the burn-in: {burn}; "
              f"plan - exec {_iv(o['intervals'].get('plan_minus_exec'))}, "
              f"plan - ref {_iv(o['intervals'].get('plan_minus_ref'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
