"""Study statistics: per-arm summaries with bootstrap intervals and tests, error-fall order, curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hicra.dynamics.phases import VERDICTS
from hicra.study.presets import ARMS, BASELINE, FORMAT, StudyPreset, run_dir_for

# ---------------------------------------------------------------- statistics

def load_run(run_dir: Path) -> dict:
    """What the statistics need from one finished run directory."""
    import pandas as pd

    from hicra.dynamics.phases import upgrade_phases
    from hicra.dynamics.vocab import upgrade_eval, upgrade_metrics, upgrade_record

    # files written before the v2 vocabulary / verdict load through the maps of hicra.dynamics.vocab / phases
    log = [upgrade_record(json.loads(line), "train_log")
           for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    evals = upgrade_eval(json.loads((run_dir / "eval.json").read_text()))
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = upgrade_metrics(pd.read_parquet(run_dir / "metrics.parquet"))
    return {"log": log, "eval": evals, "phases": upgrade_phases(summary["phases"]), "metrics": metrics}


def _ci(values, seed: int) -> dict:
    from hicra.stats import bootstrap_ci

    mean, lo, hi = bootstrap_ci(values, seed=seed)
    return {"mean": mean, "low": lo, "high": hi, "n": len(values), "values": list(map(float, values))}


def _diff(a, b, seed: int) -> dict:
    from hicra.stats import bootstrap_diff_ci, permutation_pvalue

    d, lo, hi = bootstrap_diff_ci(a, b, seed=seed)
    return {"diff": d, "low": lo, "high": hi, "p_value": permutation_pvalue(a, b, seed=seed)}


def _half_slopes(steps, values) -> dict:
    """OLS slopes of a curve over the first and the second half of the steps (per step)."""
    import numpy as np

    s, v = np.asarray(steps, float), np.asarray(values, float)
    half = s.size // 2
    out = {}
    for name, sel in (("first_half", slice(0, half)), ("second_half", slice(half, None))):
        x, y = s[sel], v[sel]
        ok = np.isfinite(y)
        out[name] = float(np.polyfit(x[ok], y[ok], 1)[0]) if ok.sum() >= 3 else None
    return out


def arm_curves(runs: list[dict], seed: int = 0) -> dict:
    """Per-step means over seeds (steps all runs share) of training accuracy and error shares, with a 95%
    bootstrap band for accuracy."""
    import numpy as np

    from hicra.stats import bootstrap_ci

    shared = sorted(set.intersection(*({e["step"] for e in r["log"]} for r in runs)))
    out: dict = {"step": shared}
    for name in ("accuracy", "errors_execution_share", "errors_planning_share", "errors_format_share"):
        rows = np.array([[{e["step"]: e[name] for e in r["log"]}[s] for s in shared] for r in runs], float)
        out[f"{name}_mean"] = rows.mean(axis=0).tolist()
        if name == "accuracy":
            bands = [bootstrap_ci(rows[:, j], n_boot=2000, seed=seed) for j in range(len(shared))]
            out["accuracy_low"] = [b[1] for b in bands]
            out["accuracy_high"] = [b[2] for b in bands]
    return out


ORDERS = ("execution first", "planning first", "same step", "only execution falls", "only planning falls",
          "neither falls", "too few steps")


def error_fall_order(log: list[dict]) -> dict:
    """Which error type's share of sampled responses falls first in one run: the half-fall step
    (`hicra.stats.half_fall_step`) of the execution and of the planning error curve, and the order (ORDERS)."""
    from hicra.stats import half_fall_step

    steps = [e["step"] for e in log]
    if len(steps) < 6:  # two edges of at least 3 points each
        none = {"start": None, "end": None, "drop": None, "half_step": None}
        return {"execution": none, "planning": none, "order": "too few steps"}
    falls = {k: half_fall_step(steps, [e[f"errors_{k}_share"] for e in log]) for k in ("execution", "planning")}
    ex, pl = falls["execution"]["half_step"], falls["planning"]["half_step"]
    if ex is not None and pl is not None:
        order = "execution first" if ex < pl else "planning first" if pl < ex else "same step"
    else:
        order = {(True, False): "only execution falls", (False, True): "only planning falls",
                 (False, False): "neither falls"}[(ex is not None, pl is not None)]
    return {**falls, "order": order}


def _order_summary(orders: list[str]) -> dict:
    """Counts of each order and the exact sign test of "execution first" vs "planning first" (ties and runs
    where one curve does not fall are left out of the test)."""
    from hicra.stats import sign_test_pvalue

    counts = {o: orders.count(o) for o in ORDERS}
    return {"counts": counts, "n_runs": len(orders),
            "sign_test_p": sign_test_pvalue(counts["execution first"], counts["planning first"])}


def summarize(out: Path, preset: StudyPreset, arms: list[str], seeds: int) -> dict:
    """results dict from the finished run directories (nothing is recomputed but the statistics)."""
    import numpy as np

    from hicra.dynamics.phases import detect_phases_pooled
    from hicra.stats import area_under_curve, steps_to_threshold

    per_arm: dict = {}
    runs_out = []
    raw: dict = {}
    for arm in arms:
        runs = [load_run(run_dir_for(out, arm, s)) for s in range(seeds)]
        raw[arm] = runs
        final = [r["eval"]["final"]["accuracy"] for r in runs]
        warm = [r["eval"]["warm_start"]["accuracy"] for r in runs]
        # one sample per problem at the RL temperature: the policy RL optimises (absent in older run directories)
        sampled = all("final_sampled" in r["eval"] and "warm_start_sampled" in r["eval"] for r in runs)
        if sampled:
            final_s = [r["eval"]["final_sampled"]["accuracy"] for r in runs]
            warm_s = [r["eval"]["warm_start_sampled"]["accuracy"] for r in runs]
        aucs, reach, orders = [], [], []
        for s, r in enumerate(runs):
            steps = [e["step"] for e in r["log"]]
            acc = [e["accuracy"] for e in r["log"]]
            aucs.append(area_under_curve(steps, acc))
            reach.append(steps_to_threshold(steps, acc, preset.threshold, window=preset.threshold_window))
            entry = {"arm": arm, "seed": s, "final_accuracy": final[s], "warm_start_accuracy": warm[s],
                     "auc": aucs[-1], "steps_to_threshold": reach[-1], "phases": _phase_brief(r["phases"]),
                     "final_errors": {k: r["eval"]["final"][f"errors_{k}_share"]
                                      for k in ("execution", "planning", "format")}}
            fall = error_fall_order(r["log"])
            orders.append(fall["order"])
            entry["error_fall"] = {"order": fall["order"], "execution_half_step": fall["execution"]["half_step"],
                                   "planning_half_step": fall["planning"]["half_step"],
                                   "execution_drop": fall["execution"]["drop"],
                                   "planning_drop": fall["planning"]["drop"]}
            if sampled:
                entry["final_sampled_accuracy"], entry["warm_start_sampled_accuracy"] = final_s[s], warm_s[s]
            fired = [e.get("phase_fired_step") for e in r["log"] if e.get("phase_fired_step") is not None]
            if ARMS[arm]["algo"] == "phase-aware":
                entry["phase_aware_switch_step"] = fired[0] if fired else None
            runs_out.append(entry)
        reached = [x for x in reach if x is not None]
        pooled = detect_phases_pooled([r["metrics"] for r in runs])
        curves = arm_curves(runs)
        per_arm[arm] = {
            "n_runs": len(runs),
            "final_accuracy": _ci(final, seed=0),
            "warm_start_accuracy": float(np.mean(warm)),
            "gain": _ci([f - w for f, w in zip(final, warm, strict=True)], seed=6),
            **({"final_sampled_accuracy": _ci(final_s, seed=7), "warm_start_sampled_accuracy": float(np.mean(warm_s)),
                "gain_sampled": _ci([f - w for f, w in zip(final_s, warm_s, strict=True)], seed=8)}
               if sampled else {}),
            "auc": _ci(aucs, seed=1),
            "steps_to_threshold": {"threshold": preset.threshold, "window": preset.threshold_window,
                                   "values": reach, "n_reached": len(reached),
                                   "mean_reached": float(np.mean(reached)) if reached else None},
            "phases": {
                "per_run": [_phase_brief(r["phases"]) for r in runs],
                "counts": {v: sum(r["phases"]["verdict"] == v for r in runs) for v in VERDICTS},
                "consolidation_detected": sum(_phase_brief(r["phases"])["consolidation_detected"] for r in runs),
                "exploration_detected": sum(_phase_brief(r["phases"])["exploration_detected"] for r in runs),
                "pooled": _phase_brief(pooled) | {"agreement": pooled["evidence"].get("agreement"),
                                                  "consolidation_end_interval_over_runs":
                                                      pooled["evidence"].get("consolidation_end_interval_over_runs")},
            },
            "error_trends": {k: _half_slopes(curves["step"], curves[f"errors_{k}_share_mean"])
                             for k in ("execution", "planning")},
            "error_order": _order_summary(orders),
            "curves": curves,
        }
    if BASELINE in per_arm:
        base = per_arm[BASELINE]
        for arm in arms:
            if arm == BASELINE:
                continue
            per_arm[arm]["vs_grpo"] = {
                "final_accuracy": _diff(per_arm[arm]["final_accuracy"]["values"], base["final_accuracy"]["values"],
                                        seed=2),
                "auc": _diff(per_arm[arm]["auc"]["values"], base["auc"]["values"], seed=3)}
    if "placebo" in per_arm and "hicra" in per_arm:
        per_arm["hicra"]["vs_placebo"] = {
            "final_accuracy": _diff(per_arm["hicra"]["final_accuracy"]["values"],
                                    per_arm["placebo"]["final_accuracy"]["values"], seed=4),
            "auc": _diff(per_arm["hicra"]["auc"]["values"], per_arm["placebo"]["auc"]["values"], seed=5)}
    return {"format": FORMAT, "preset": preset.name, "arms": arms, "seeds": seeds,
            "threshold": preset.threshold, "per_arm": per_arm, "runs": runs_out,
            "error_order": _order_summary([r["error_fall"]["order"] for r in runs_out]),
            "run_seconds": {f"{r['arm']}/seed{r['seed']:02d}": _done_seconds(out, r["arm"], r["seed"])
                            for r in runs_out}}


def _done_seconds(out: Path, arm: str, seed: int) -> float | None:
    path = run_dir_for(out, arm, seed) / "done.json"
    return json.loads(path.read_text()).get("seconds") if path.exists() else None


def _phase_brief(p: dict) -> dict:
    """The v2 verdict in brief (`hicra.dynamics.phases`): consolidation_detected = execution consolidates."""
    cons = p.get("evidence", {}).get("order", {}).get("consolidates") or {}
    return {"verdict": p["verdict"], "order": p.get("order"), "consolidation_end_step": p["consolidation_end_step"],
            "exploration_onset_step": p["exploration_onset_step"], "confidence": p["confidence"],
            "consolidation_detected": bool(cons.get("execution", False)),
            "exploration_detected": bool((p.get("exploration") or {}).get("detected", False))}


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


