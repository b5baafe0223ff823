"""Study statistics, from the per-run summary files alone: per-arm values with nested bootstrap intervals (warm-start
seeds, then RL seeds within them), paired comparisons between arms on their shared (warm-start seed, RL seed) pairs
(nested bootstrap interval of the mean paired difference, exact or Monte Carlo sign-flip test, Holm-adjusted
p-values per endpoint across the reported comparisons), a power analysis per comparison, error-fall order,
curves, probes and phase verdicts per run and pooled."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hicra.errors import InputError
from hicra.fileio import read_json
from hicra.study.presets import (
    AMPLIFIED_COLUMN,
    ARMS,
    BASELINE,
    FORMAT,
    MECHANISM_COLUMNS,
    PLACEBO_ARMS,
    RUN_FORMAT,
    StudyPreset,
    check_arms,
    condition_label,
    resolve_preset,
    study_pairs,
    summary_path_for,
)

# the endpoints compared between arms: summary -> one number per run
ENDPOINTS = ("final_accuracy", "final_sampled_accuracy", "auc", "auc_eval")
MDD_TARGET = 0.03  # the difference the power analysis asks "how many pairs for" (3 points; issue 15)
# the decision rules of the pre-registration (docs/study.md, "Pre-registered (study v2)", points 5-7)
PRIMARY_ENDPOINT = "auc_eval"
HOLM_LEVEL = 0.05  # a difference "holds" when its Holm-adjusted p is below this
ORDER_SHARE = 0.75  # point 7: "execution-first" in >= 12 of GRPO's 16 runs


# what every run summary carries (`hicra.study.runner.write_run_summary`) and its JSON type, checked on loading so
# that a damaged file is named with its field instead of failing inside the statistics
SUMMARY_FIELDS = {"arm": str, "cell": str, "knobs": dict, "warm_start_seed": int, "seed": int, "eval": dict,
                  "eval_curve": dict, "train_curve": dict, "phases": dict, "metrics": dict, "probes": dict,
                  "steps": int, "config": dict}
SUMMARY_CURVES = {"eval_curve": ("step", "accuracy"), "train_curve": ("step", "accuracy")}  # equal-length lists
SUMMARY_EVALS = ("warm_start", "final")  # eval.NAME.accuracy: a number
SUMMARY_OPTIONAL_EVALS = ("final_sampled", "warm_start_sampled")  # eval.NAME.accuracy: a number where present
SUMMARY_PHASES = ("verdict", "consolidation_end_step", "exploration_onset_step", "confidence")  # keys of phases


def _curve_problem(curve, name: str, columns: tuple[str, ...]) -> tuple[str, str] | None:
    """(field, what is wrong) when the curve `name` (an object of per-step lists) lacks one of `columns` or its
    lists differ in length; None when it is sound."""
    for column in columns:
        if not isinstance(curve, dict) or not isinstance(curve.get(column), list):
            return f"{name}.{column}", "missing or not a list"
    lengths = {k: len(v) for k, v in curve.items() if isinstance(v, list)}
    if len(set(lengths.values())) > 1 or len(lengths) != len(curve):
        return name, f"columns are not lists of one length ({lengths})"
    for column in columns:
        bad = next((i for i, v in enumerate(curve[column]) if not _finite_number(v)), None)
        if bad is not None:
            return f"{name}.{column}", f"entry {bad} is {curve[column][bad]!r}, not a finite number"
    return None


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _summary_problem(s: dict, complete: bool) -> tuple[str, str] | None:
    """(field, what is wrong) for the first field of a run summary that is missing or of the wrong type: the
    training curve always, every field the study reads when `complete`."""
    if not complete:
        return _curve_problem(s.get("train_curve"), "train_curve", ("step",))
    for name, kind in SUMMARY_FIELDS.items():
        value = s.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return name, f"missing or not a JSON {'object' if kind is dict else kind.__name__}"
    for name, columns in SUMMARY_CURVES.items():
        problem = _curve_problem(s[name], name, columns)
        if problem:
            return problem
    for name in (*SUMMARY_EVALS, *SUMMARY_OPTIONAL_EVALS):
        entry = s["eval"].get(name)
        if entry is None and name in SUMMARY_OPTIONAL_EVALS:
            continue
        value = entry.get("accuracy") if isinstance(entry, dict) else None
        if not _finite_number(value):
            return f"eval.{name}.accuracy", "missing or not a finite number"
        for key, value in (entry.items() if isinstance(entry, dict) else ()):
            if key.startswith("errors_") and not _finite_number(value):
                return f"eval.{name}.{key}", f"{value!r:.40} is not a finite number"
    missing = next((k for k in SUMMARY_PHASES if k not in s["phases"]), None)
    if missing:
        return f"phases.{missing}", "missing"
    phases = s["phases"]
    for key, ok, kind in (("verdict", lambda v: isinstance(v, str), "a string"),
                          ("order", lambda v: v is None or isinstance(v, str), "a string or null"),
                          ("consolidation_end_step", _step_or_none, "a whole number or null"),
                          ("exploration_onset_step", _step_or_none, "a whole number or null"),
                          ("confidence", _finite_number, "a finite number")):
        if not ok(phases.get(key)):
            return f"phases.{key}", f"{phases.get(key)!r:.40} is not {kind}"
    # probes (when the run has any) and metrics: columns as long as `step`, entries numbers or null (the runner
    # writes NaN as null: a step without tokens of a class, a probe not scored)
    for name in ("probes", "metrics"):
        if name == "probes" and not s[name]:
            continue
        problem = _curve_problem(s[name], name, ("step",))
        if problem:
            return problem
        for column, values in s[name].items():
            bad = next((i for i, v in enumerate(values)
                        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))), None)
            if bad is not None:
                return f"{name}.{column}", f"entry {bad} is {values[bad]!r:.40}, not a number"
    return None


def _step_or_none(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _check_identity(summary: dict, path: Path, arm: str, cell: str, pair) -> None:
    """InputError naming the file and field when a summary is not the run its path stands for: its arm, cell,
    warm-start seed or RL seed, or the arm's settings in its config (`ARMS`: algo, alpha, ...), differ. A file
    copied or moved to another run's place would otherwise be pooled and paired as that run."""
    from hicra.study.presets import ARMS

    config = summary.get("config") or {}
    own = {"arm": arm, "cell": cell, "warm_start_seed": pair.warm_start_seed, "seed": pair.seed}
    settings = {**ARMS.get(arm, {}), "seed": pair.seed}  # a setting the config lacks (an older summary) passes
    checks = [(field, summary.get(field), value) for field, value in own.items()] + \
        [(f"config.{key}", config.get(key, value), value) for key, value in settings.items()]
    for field, got, value in checks:
        if got != value:
            raise InputError(f"is {got!r}, but the file's place names the run ({condition_label(cell, arm)}, "
                             f"{pair.name}) whose {field} is {value!r}", path=str(path), field=field)


def load_summary(path: Path, complete: bool = False) -> dict:
    """One per-run summary file (`hicra.study.runner.write_run_summary`), with its training log as a list of
    per-step dicts (`log`) for the curve statistics. InputError naming the file (and the field) when it is missing or
    malformed: its format and training curve always; with `complete` (what the study's statistics read) also
    `SUMMARY_FIELDS`, `SUMMARY_CURVES` and `SUMMARY_EVALS`. Scripts that read a few fields check those
    themselves."""
    if not Path(path).is_file():
        raise InputError("no summary for this run (run `hicra study` to compute it)", path=str(path))
    s = read_json(path, "run summary")
    if not isinstance(s, dict) or s.get("format") != RUN_FORMAT:
        found = s.get("format") if isinstance(s, dict) else type(s).__name__
        raise InputError(f"format {found!r}, expected {RUN_FORMAT!r}", path=str(path), field="format")
    problem = _summary_problem(s, complete)
    if problem:
        raise InputError(problem[1], path=str(path), field=problem[0])
    tc = s["train_curve"]
    s["log"] = [dict(zip(tc, row, strict=True)) for row in zip(*tc.values(), strict=True)]
    if s.get("phase_fired_step") is not None:
        s["log"][0]["phase_fired_step"] = s["phase_fired_step"]
    return s


def _ci(values, groups, seed: int) -> dict:
    """Mean with a nested bootstrap interval (groups = warm-start seeds); one group: the plain bootstrap."""
    from hicra.stats import nested_bootstrap_ci

    mean, lo, hi, se = nested_bootstrap_ci(values, groups, seed=seed)
    return {"mean": mean, "low": lo, "high": hi, "se": se, "n": len(values), "values": list(map(float, values))}


def endpoint_values(s: dict) -> dict:
    """The compared endpoints of one run: final held-out greedy / sampled accuracy, AUC of the training-accuracy
    curve, AUC of the held-out greedy curve (eval_curve.jsonl; None with fewer than two points)."""
    from hicra.stats import area_under_curve

    ev, tc, ec = s["eval"], s["train_curve"], s["eval_curve"]
    return {"final_accuracy": ev["final"]["accuracy"],
            "final_sampled_accuracy": ev.get("final_sampled", {}).get("accuracy"),
            "auc": area_under_curve(tc["step"], tc["accuracy"]),
            "auc_eval": area_under_curve(ec["step"], ec["accuracy"]) if len(ec["step"]) >= 2 else None}


def paired_comparison(a: dict, b: dict, seed: int = 0) -> dict | None:
    """a, b: (warm-start seed, RL seed) -> value (None = missing) for two arms. On their shared pairs: mean of the
    paired differences a - b with a nested bootstrap interval (warm-start seeds, then RL seeds within them),
    two-sided sign-flip p-value, SD of the differences and the power analysis (`hicra.stats.
    min_detectable_difference`: normal approximation, 80% power, two-sided alpha 0.05; `mdd_80` from the SD over
    pairs as if independent, `mdd_80_nested` from the nested bootstrap standard error, which includes the
    warm-start variance; `pairs_for_3_points` from the SD). `identical` is True when every pair differs by exactly 0
    (e.g. a phase-aware run whose switch never fired against its GRPO pair): then there is nothing to compare, and
    the p-value (1) and the detectable differences (0) say nothing. None when no pair is shared."""
    import numpy as np

    from hicra.stats import (
        min_detectable_difference,
        nested_bootstrap_ci,
        paired_signflip_pvalue,
        pairs_needed,
    )

    shared = [k for k in a if k in b and a[k] is not None and b[k] is not None]
    if not shared:
        return None
    d = np.array([a[k] - b[k] for k in shared], float)
    groups = [k[0] for k in shared]
    mean, lo, hi, se = nested_bootstrap_ci(d, groups, seed=seed)
    n = d.size
    sd = _sd(d)
    return {"diff": mean, "low": lo, "high": hi, "se": se, "p_value": paired_signflip_pvalue(d, seed=seed),
            "n_pairs": n, "n_warm_starts": len(set(groups)), "sd_diff": sd,
            "mdd_80": min_detectable_difference(sd, n) if sd is not None else None,
            "mdd_80_nested": min_detectable_difference(se * math.sqrt(n), n) if n > 1 else None,
            "pairs_for_3_points": pairs_needed(sd, MDD_TARGET) if sd else None,
            "identical": bool(np.all(d == 0)), "pairs": [list(k) for k in shared]}


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
    return {**falls, "order": half_step_order(falls["execution"]["half_step"], falls["planning"]["half_step"])}


def half_step_order(execution: float | None, planning: float | None, verb: str = "falls") -> str:
    """The order of two half-way steps (None: that curve did not move): "execution first", "planning first",
    "same step", or "only execution VERB" / "only planning VERB" / "neither VERB" (ORDERS with verb "falls")."""
    if execution is not None and planning is not None:
        return "execution first" if execution < planning else "planning first" if planning < execution else "same step"
    return {(True, False): f"only execution {verb}", (False, True): f"only planning {verb}",
            (False, False): f"neither {verb}"}[(execution is not None, planning is not None)]


def _order_summary(orders: list[str]) -> dict:
    """Counts of each order and the exact sign test of "execution first" vs "planning first" (ties and runs
    where one curve does not fall are left out of the test)."""
    from hicra.stats import sign_test_pvalue

    counts = {o: orders.count(o) for o in ORDERS}
    return {"counts": counts, "n_runs": len(orders),
            "sign_test_p": sign_test_pvalue(counts["execution first"], counts["planning first"])}


def warm_start_builds(runs: list[dict]) -> dict:
    """Did every run of a (cell, warm-start seed) start from one build of its warm start? Runs are per-run summary
    dicts; a build is identified by its greedy held-out evaluation (`eval.warm_start`: accuracy and error shares,
    the same for every run of one build, whatever the RL seed). A warm start rebuilt on another machine differs in
    the last float bits and, after training, in its evaluation (a rebuild moved greedy accuracy from 33.6% to
    36.3% in session 25), so its runs would no longer be paired on one model. Returns {"groups": number of
    (cell, warm-start seed) groups, "rebuilt": [{"cell", "warm_start_seed", "n_builds", "accuracies", "runs"}]}
    for each group with more than one distinct evaluation (runs: "ARM/seedS" per run, in order)."""
    groups: dict = {}
    for r in runs:
        key = (r.get("cell", ""), r["warm_start_seed"])
        ev = json.dumps(r["eval"]["warm_start"], sort_keys=True)
        groups.setdefault(key, {}).setdefault(ev, []).append(f"{r['arm']}/seed{r['seed']}")
    rebuilt = [{"cell": cell, "warm_start_seed": ws, "n_builds": len(evs),
                "accuracies": [json.loads(e)["accuracy"] for e in evs], "runs": list(evs.values())}
               for (cell, ws), evs in sorted(groups.items()) if len(evs) > 1]
    return {"groups": len(groups), "rebuilt": rebuilt}


def summarize(root: Path, preset: str | StudyPreset, arms: list[str], seeds: int,
              warm_start_seeds: int | None = None, cells: dict[str, dict] | None = None) -> dict:
    """results dict (format FORMAT) from the per-run summary files under `root` (SUMMARY_ROOT/[CELL/]ARM/
    wsW-seedS.json) for the study's cells x arms x pairs; no run directory is read. InputError naming the first
    missing summary. `code_versions`: the git commits that finished the runs, with their run counts (a study run in
    parts may span several; "unknown" when a run did not run from a checkout). `warm_start_builds`: the (cell,
    warm-start seed) groups whose runs did not all start from one build of their warm start (`warm_start_builds`).
    `preset` is a StudyPreset or its name; an unknown name or arm is an InputError listing the known ones."""
    import numpy as np

    from hicra.dynamics.phases import ORDERS as PHASE_ORDERS
    from hicra.dynamics.phases import VERDICTS, PhaseConfig, detect_phases_pooled, phases_version
    from hicra.stats import holm_adjust, steps_to_threshold

    preset, arms = resolve_preset(preset), check_arms(arms)
    warm_start_seeds = preset.warm_start_seeds if warm_start_seeds is None else warm_start_seeds
    cells = preset.cells if cells is None else cells
    pairs = study_pairs(warm_start_seeds, seeds, preset.first_warm_start_seed)
    per_arm: dict = {}
    runs_out = []
    values: dict = {}  # label -> endpoint -> {(ws, seed): value}
    code_versions: dict[str, int] = {}  # git commit that finished a run (done.json) -> runs
    loaded: list[dict] = []  # every run's summary, for the warm-start build check
    for cell in (cells or {"": {}}):
        for arm in arms:
            label = condition_label(cell, arm)
            paths = [summary_path_for(root, arm, q.seed, q.warm_start_seed, cell) for q in pairs]
            runs = [load_summary(p, complete=True) for p in paths]
            for p, r, q in zip(paths, runs, pairs, strict=True):
                _check_identity(r, p, arm, cell, q)
                version = phases_version(r.get("phases"))
                if version != preset.phase_version:
                    raise InputError(f"phase verdict rules v{version}, but preset {preset.name!r} reads its runs by "
                                     f"v{preset.phase_version}: one study's runs are read by one version",
                                     path=str(p), field="phases.version")
            loaded += runs
            for r in runs:
                commit = (r.get("code") or {}).get("git_commit") or "unknown"
                code_versions[commit] = code_versions.get(commit, 0) + 1
            groups = [q.warm_start_seed for q in pairs]
            ends = [endpoint_values(r) for r in runs]
            for e, source in (("auc_eval", "eval_curve"), ("final_sampled_accuracy", "eval.final_sampled")):
                lacking = [p for p, v in zip(paths, ends, strict=True) if v[e] is None]
                if lacking and len(lacking) < len(runs):  # its pairs would drop out of the comparisons unnamed
                    raise InputError(f"gives no {e} (fewer than two held-out evaluations, or none sampled) while "
                                     f"{len(runs) - len(lacking)} other runs of {label} do", path=str(lacking[0]),
                                     field=source)
            lacking = [p for p, r in zip(paths, runs, strict=True) if not r["probes"]]
            if lacking and len(lacking) < len(runs):  # the arm's probe changes would drop out unnamed
                raise InputError(f"has no skill probes while {len(runs) - len(lacking)} other runs of {label} do",
                                 path=str(lacking[0]), field="probes")
            values[label] = {e: {(q.warm_start_seed, q.seed): v[e] for q, v in zip(pairs, ends, strict=True)}
                             for e in ENDPOINTS}
            final = [v["final_accuracy"] for v in ends]
            warm = [r["eval"]["warm_start"]["accuracy"] for r in runs]
            # one sample per problem at the RL temperature: the policy RL optimises
            sampled = all("final_sampled" in r["eval"] and "warm_start_sampled" in r["eval"] for r in runs)
            if sampled:
                final_s = [r["eval"]["final_sampled"]["accuracy"] for r in runs]
                warm_s = [r["eval"]["warm_start_sampled"]["accuracy"] for r in runs]
            auc_eval = [v["auc_eval"] for v in ends]
            reach, orders, probe_changes = [], [], []
            for q, r, v in zip(pairs, runs, ends, strict=True):
                tc = r["train_curve"]
                reach.append(steps_to_threshold(tc["step"], tc["accuracy"], preset.threshold,
                                                window=preset.threshold_window))
                entry = {"arm": arm, "cell": cell, "warm_start_seed": q.warm_start_seed, "seed": q.seed,
                         **{e: v[e] for e in ENDPOINTS}, "warm_start_accuracy": r["eval"]["warm_start"]["accuracy"],
                         "steps_to_threshold": reach[-1], "phases": _phase_brief(r["phases"]),
                         **({"strategy_change": _strategy_change_brief(r["eval"]["strategy_change"])}
                            if "strategy_change" in r["eval"] else {}),
                         "final_errors": {k: r["eval"]["final"].get(f"errors_{k}_share")
                                          for k in ("execution", "planning", "format")},
                         "probe_change": _probe_change(r.get("probes") or {}),
                         "seconds": r.get("seconds")}
                fall = error_fall_order(r["log"])
                orders.append(fall["order"])
                entry["error_fall"] = {"order": fall["order"], "execution_half_step": fall["execution"]["half_step"],
                                       "planning_half_step": fall["planning"]["half_step"],
                                       "execution_drop": fall["execution"]["drop"],
                                       "planning_drop": fall["planning"]["drop"]}
                if ARMS[arm]["algo"] == "phase-aware":
                    entry["phase_aware_switch_step"] = r.get("phase_fired_step")
                runs_out.append(entry)
                probe_changes.append(entry["probe_change"])
            reached = [x for x in reach if x is not None]
            briefs = [_phase_brief(r["phases"]) for r in runs]
            # by the rules that made the runs' own verdicts (checked above): the first controls pool as they did
            # when they were evaluated
            pooled = detect_phases_pooled([r["metrics"] for r in runs], PhaseConfig(version=preset.phase_version))
            slopes = [(r["phases"].get("exploration") or {}).get("slope") for r in runs]
            curves = arm_curves(runs)
            per_arm[label] = {
                "arm": arm, "cell": cell, "knobs": (cells or {}).get(cell, {}),
                "n_runs": len(runs), "n_warm_starts": len(set(groups)),
                "final_accuracy": _ci(final, groups, seed=0),
                "warm_start_accuracy": float(np.mean(warm)),
                "gain": _ci([f - w for f, w in zip(final, warm, strict=True)], groups, seed=6),
                **({"final_sampled_accuracy": _ci(final_s, groups, seed=7),
                    "warm_start_sampled_accuracy": float(np.mean(warm_s)),
                    "gain_sampled": _ci([f - w for f, w in zip(final_s, warm_s, strict=True)], groups, seed=8)}
                   if sampled else {}),
                "auc": _ci([v["auc"] for v in ends], groups, seed=1),
                **({"auc_eval": _ci(auc_eval, groups, seed=9)} if None not in auc_eval else {}),
                "steps_to_threshold": {"threshold": preset.threshold, "window": preset.threshold_window,
                                       "values": reach, "n_reached": len(reached),
                                       "mean_reached": float(np.mean(reached)) if reached else None},
                "phases": {
                    "per_run": briefs,
                    "counts": {v: sum(b["verdict"] == v for b in briefs) for v in VERDICTS},
                    "order_counts": {o: sum(b["order"] == o for b in briefs) for o in PHASE_ORDERS},
                    "consolidation_detected": sum(b["consolidation_detected"] for b in briefs),
                    "exploration_detected": sum(b["exploration_detected"] for b in briefs),
                    "exploration_tested": sum(b["exploration_tested"] for b in briefs),
                    "exploration_slope": (_ci([x for x in slopes if x is not None],
                                              [g for g, x in zip(groups, slopes, strict=True) if x is not None], 10)
                                          if any(x is not None for x in slopes) else None),
                    "pooled": _phase_brief(pooled) | {
                        "agreement": pooled["evidence"].get("agreement"),
                        "consolidation_end_interval_over_runs":
                            pooled["evidence"].get("consolidation_end_interval_over_runs")},
                },
                "error_trends": {k: _half_slopes(curves["step"], curves[f"errors_{k}_share_mean"])
                                 for k in ("execution", "planning")},
                "error_order": _order_summary(orders),
                "curves": curves,
                "eval_curve": _mean_curve([r["eval_curve"] for r in runs], ("accuracy",)),
                "mechanism": mechanism_check(runs),
                "probe_change": _probe_change_summary(probe_changes, groups),
                "probes": _mean_curve([r["probes"] for r in runs],
                                      tuple(k for k in runs[0]["probes"] if k != "step")) if runs[0]["probes"] else {},
            }
    comparisons = []
    for cell in (cells or {"": {}}):
        base = condition_label(cell, BASELINE)
        wanted = [(condition_label(cell, a), base) for a in arms if a != BASELINE and BASELINE in arms]
        for placebo in PLACEBO_ARMS:  # HICRA against each placebo it was run beside
            if "hicra" in arms and placebo in arms:
                wanted.append((condition_label(cell, "hicra"), condition_label(cell, placebo)))
        for i, (a, b) in enumerate(wanted):
            for j, e in enumerate(ENDPOINTS):
                c = paired_comparison(values[a][e], values[b][e], seed=100 + 10 * i + j)
                if c is not None:
                    comparisons.append({"a": a, "b": b, "endpoint": e, **c})
    for e in ENDPOINTS:  # Holm per endpoint, across every comparison reported for it
        family = [c for c in comparisons if c["endpoint"] == e]
        for c, adj in zip(family, holm_adjust([c["p_value"] for c in family]), strict=True):
            c["p_holm"], c["holm_family_size"] = adj, len(family)
    for c in comparisons:
        key = f"vs_{c['b'].rsplit('/', 1)[-1]}"  # vs_grpo, vs_placebo, vs_placebo-mass
        per_arm[c["a"]].setdefault(key, {})[c["endpoint"]] = c
    pooled_orders = {(per_arm[k]["cell"], per_arm[k]["arm"]): per_arm[k]["phases"]["pooled"]["order"] for k in per_arm}
    controls = control_checks(runs_out, cells, preset.criteria or None, pooled_orders) if cells else None
    return {"format": FORMAT, "preset": preset.name, "arms": arms, "cells": cells or {}, "seeds": seeds,
            "phase_version": preset.phase_version,
            **({"controls": controls} if controls else {}),
            "warm_start_seeds": warm_start_seeds, "pairs": [[q.warm_start_seed, q.seed] for q in pairs],
            "threshold": preset.threshold, "endpoints": list(ENDPOINTS), "per_arm": per_arm,
            "comparisons": comparisons, "runs": runs_out, "code_versions": code_versions,
            "warm_start_builds": warm_start_builds(loaded),
            "error_order": _order_summary([r["error_fall"]["order"] for r in runs_out]),
            "run_seconds": {f"{condition_label(r['cell'], r['arm'])}/ws{r['warm_start_seed']}-seed{r['seed']:02d}":
                            r["seconds"] for r in runs_out}}


def control_checks(runs: list[dict], cells: dict[str, dict], criteria=None,
                   pooled_orders: dict[tuple[str, str], str | None] | None = None) -> dict:
    """The control cells' pass criteria (`criteria`, default `hicra.study.presets.CONTROL_CRITERIA`: the first
    controls study's; a preset's own in `StudyPreset.criteria`, from `control_criteria`; pre-registered in docs/study.md)
    on the per-run entries of `summarize` (`results["runs"]`: arm, cell, phases brief). Per criterion: the cells
    it pools, n_runs, the runs showing the statistic (`hits`), the runs that could not be tested (`untested`),
    their share of the tested runs, the threshold and `passed` (None = not tested, with `reason`). `all_passed`
    is True only when every criterion was tested and passed.

    Statistic "pooled-order:VALUE": `pooled_orders[(cell, arm)]` is the order of the cell's runs pooled by
    resampling runs (`hicra.dynamics.phases.detect_phases_pooled`, as `per_arm[...]["phases"]["pooled"]`); the
    criterion passes when it equals VALUE in every matched cell (`pooled` lists them); `hits` and `share` still
    count the runs whose own order is VALUE, as a description. A pooled order `untestable` (or missing) makes the
    criterion not tested. Statistic "heldout-strategy-rise": the runs whose entry has `strategy_change` (eval.json's,
    from `RLConfig.strategy_k`) are tested, and a hit reads "rise"; a run without it makes the criterion not tested.
    Statistic "heldout-strategy-rise-complete": the same change on the problems with no unparsed response at either
    end; a hit is an interval above 0, and a run without the record or with fewer than 2 such problems makes the
    criterion not tested. ValueError for an unknown statistic."""
    from hicra.dynamics.phases import ORDERS as PHASE_ORDERS
    from hicra.stats import interval_reading
    from hicra.study.presets import CONTROL_CRITERIA

    criteria = CONTROL_CRITERIA if criteria is None else criteria
    pooled_orders = pooled_orders or {}
    out = []
    for c in criteria:
        names = sorted(n for n, knobs in cells.items()
                       if any(all(k in knobs and knobs[k] == v for k, v in w.items()) for w in c.where))
        pool = [r for r in runs if r["arm"] == c.arm and r["cell"] in names]
        kind, _, order = c.statistic.partition(":")
        if kind == "heldout-strategy-rise" and not order:
            testable = [r for r in pool if "strategy_change" in r]
            hits = sum(r["strategy_change"]["reading"] == "rise" for r in testable)
        elif kind == "heldout-strategy-rise-complete" and not order:
            testable = [r for r in pool if (r.get("strategy_change") or {}).get("Hfam_complete_interval") is not None]
            hits = sum(interval_reading(r["strategy_change"]["Hfam_complete_interval"]) == "rise" for r in testable)
        elif kind == "exploration" and not order:
            testable = [r for r in pool if r["phases"].get("exploration_tested")
                        and r["phases"].get("exploration_measure") == "strategy"]
            hits = sum(bool(r["phases"]["exploration_detected"]) for r in testable)
        elif kind in ("order", "pooled-order") and order in PHASE_ORDERS:
            testable = [r for r in pool if r["phases"].get("order") not in (None, "untestable")]
            hits = sum(r["phases"]["order"] == order for r in testable)
        else:
            raise ValueError(f"unknown control statistic {c.statistic!r}")
        pooled = {n: pooled_orders.get((n, c.arm)) for n in names} if kind == "pooled-order" else None
        per_cell = {n: sum(r["cell"] == n for r in pool) for n in names}
        short = [n for n, k in per_cell.items() if k < c.min_runs_per_cell]
        reason = None
        if not names:
            reason = "no cell matches"
        elif short:
            reason = f"fewer than {c.min_runs_per_cell} runs in {', '.join(short)}"
        elif pooled is not None and any(v in (None, "untestable") for v in pooled.values()):
            reason = "no pooled order in " + ", ".join(n for n, v in pooled.items() if v in (None, "untestable"))
        elif pooled is None and len(testable) < len(pool):
            reason = f"{len(pool) - len(testable)} run(s) could not be tested"
        share = hits / len(testable) if testable else None
        if reason:
            passed = None
        elif pooled is not None:
            passed = all(v == order for v in pooled.values())
        else:
            passed = ((c.at_least is None or share >= c.at_least - 1e-12)
                      and (c.at_most is None or share <= c.at_most + 1e-12))
        out.append({"name": c.name, "arm": c.arm, "where": list(c.where), "statistic": c.statistic,
                    "cells": names, "n_runs": len(pool), "untested": len(pool) - len(testable), "hits": hits,
                    "share": share, "at_least": c.at_least, "at_most": c.at_most, "passed": passed,
                    **({"pooled": pooled} if pooled is not None else {}), "reason": reason, "why": c.why})
    return {"criteria": out, "all_passed": bool(out) and all(c["passed"] is True for c in out)}


def controls_outcome(path: str | Path) -> dict:
    """What a main study's report says about the controls its verdicts depend on (pre-registration point 1;
    docs/study.md, D5): read from a controls study's results.json (`results["controls"]`, from `control_checks`).

    Returns {"path", "preset", "all_passed", "n_criteria", "n_passed", "failed": [names], "not_tested": [names]}.
    InputError (file and field) for a file that is not a controls study's results (no `controls.criteria`, a
    criterion without `name` and `passed`), or whose statistics are not final (`complete` false)."""
    data = read_json(path, "controls results")
    ctl = data.get("controls")
    if not isinstance(ctl, dict) or not isinstance(ctl.get("criteria"), list) or not ctl["criteria"]:
        raise InputError("not a controls study's results.json (no control checks)", path=str(path),
                         field="controls.criteria")
    if data.get("complete") is False:
        raise InputError("the controls study is not complete", path=str(path), field="complete")
    for i, c in enumerate(ctl["criteria"]):
        if not isinstance(c, dict) or "name" not in c or "passed" not in c:
            raise InputError("a criterion needs 'name' and 'passed'", path=str(path), field=f"controls.criteria[{i}]")
    crit = ctl["criteria"]
    return {"path": str(path), "preset": data.get("preset"),
            "all_passed": all(c["passed"] is True for c in crit), "n_criteria": len(crit),
            "n_passed": sum(c["passed"] is True for c in crit),
            "failed": [c["name"] for c in crit if c["passed"] is False],
            "not_tested": [c["name"] for c in crit if c["passed"] is None]}


def _strategy_change_brief(change: dict) -> dict:
    """What a run entry keeps of eval.json's `strategy_change` (`hicra.lab.probes.heldout_strategy_change`): the
    held-out strategy entropy within families at both ends (nats), its change with the 95% paired bootstrap
    interval, the reading ("rise" | "fall" | "-") and the change on complete problems."""
    keys = ("Hfam_before", "Hfam_after", "Hfam_change", "Hfam_interval", "reading", "n_complete",
            "Hfam_complete_change", "Hfam_complete_interval")
    return {k: change.get(k) for k in keys}


def preregistered_answers(results: dict) -> dict | None:
    """The pre-registration's decision rules (docs/study.md, "Pre-registered (study v2)", points 1, 6 and 7)
    applied to a finished study's results (`summarize`, with `controls_study` when `--controls` was given), so the
    answers are computed, not read off by hand. None for a study without the arms grpo, hicra and placebo or with
    corpus-knob cells (a controls study).

    Point 6, on `PRIMARY_ENDPOINT`: a difference "holds" when its Holm-adjusted p (family: every comparison of
    that endpoint) < `HOLM_LEVEL`. "HICRA beats GRPO" when HICRA - GRPO holds and is positive, "and not by the
    extra advantage mass alone" when HICRA - placebo also holds and is positive; a negative difference that holds
    is the other arm beating HICRA; otherwise "no difference detected" (with the interval and the smallest
    detectable difference). Point 7: "the two-phase order appears under GRPO" when GRPO's pooled verdict is
    `two-phase` and >= `ORDER_SHARE` of its runs read `execution-first`; otherwise the pooled verdict's name.
    Point 1: `counts` is True only when a linked controls study passed every criterion (False when it failed or
    none is linked). A comparison whose every pair differs by exactly 0 reads "identical in every pair";
    `phase_aware_switched` counts the phase-aware runs whose online detector fired (the others ran as GRPO)."""
    arms = results.get("per_arm", {})
    if results.get("cells") or not {"grpo", "hicra", "placebo"} <= set(arms):
        return None
    comps = {(c["a"], c["b"]): c for c in results["comparisons"] if c["endpoint"] == PRIMARY_ENDPOINT}

    def reading(a: str, b: str) -> dict:
        c = comps.get((a, b))
        if c is None:
            return {"a": a, "b": b, "answer": "not computed (no paired values)", "holds": None}
        holds = c["p_holm"] < HOLM_LEVEL
        if c.get("identical", c["diff"] == 0 and c.get("sd_diff") == 0):  # e.g. phase-aware, never switched
            answer = "identical in every pair (nothing to compare)"
        elif holds:
            answer = f"{a} beats {b}" if c["diff"] > 0 else f"{b} beats {a}"
        else:
            answer = "no difference detected"
        return {"a": a, "b": b, "answer": answer, "holds": bool(holds), "diff": c["diff"], "low": c["low"],
                "high": c["high"], "p_holm": c["p_holm"], "mdd_80": c["mdd_80"], "mdd_80_nested": c["mdd_80_nested"]}

    primary = [reading("hicra", "grpo"), reading("hicra", "placebo")]
    hg, hp = primary
    if hg["answer"] == "hicra beats grpo":
        headline = ("HICRA beats GRPO, and not by the extra advantage mass alone" if hp["answer"] ==
                    "hicra beats placebo" else "HICRA beats GRPO, but not shown to beat the placebo")
    elif hg["answer"] == "grpo beats hicra":
        headline = "GRPO beats HICRA"
    else:
        headline = "no difference detected between HICRA and GRPO"
    secondary = [reading(a, BASELINE) for a in arms if a not in (BASELINE, "hicra")]
    g = arms[BASELINE]["phases"]
    n = arms[BASELINE]["n_runs"]
    need = math.ceil(ORDER_SHARE * n)
    first = g["order_counts"].get("execution-first", 0)
    appears = g["pooled"]["verdict"] == "two-phase" and first >= need
    ctl = results.get("controls_study")
    switched = None
    if "phase-aware" in arms:  # GRPO until the online detector fires: unswitched runs are GRPO runs
        steps = [r.get("phase_aware_switch_step") for r in results.get("runs", []) if r["arm"] == "phase-aware"]
        switched = {"runs": len(steps), "switched": sum(x is not None for x in steps)}
    return {"endpoint": PRIMARY_ENDPOINT, "holm_level": HOLM_LEVEL, "headline": headline, "primary": primary,
            "secondary": secondary,
            "phases": {"grpo_pooled_verdict": g["pooled"]["verdict"], "grpo_pooled_order": g["pooled"]["order"],
                       "execution_first_runs": first, "runs": n, "needed": need, "two_phase_order_appears": appears,
                       "answer": ("the two-phase order appears under GRPO" if appears else
                                  f"not shown: GRPO's pooled verdict is {g['pooled']['verdict']!r}, "
                                  f"{first} of {n} runs execution-first (needed: {need} and 'two-phase')")},
            "phase_aware_switched": switched,
            "counts": bool(ctl and ctl["all_passed"]),
            "controls": None if ctl is None else {k: ctl[k] for k in ("preset", "n_passed", "n_criteria")}}


def _probe_change(probes: dict) -> dict:
    """Each skill probe's last value minus its first (probes.jsonl: the warm start's step, then every `eval_every`
    steps; `hicra.lab.probes`), as shares; {} for a run without probes."""
    if not probes or len(probes.get("step", [])) < 2:
        return {}
    return {k: float(v[-1] - v[0]) for k, v in probes.items() if k != "step" and None not in (v[0], v[-1])}


def _probe_change_summary(changes: list[dict], groups: list[int]) -> dict:
    """Per probe over an arm's runs: the mean change (last - first) with its nested bootstrap interval, and the
    number of runs in which it rose (> 0). Probes missing from any run are left out."""
    names = sorted(set.intersection(*(set(c) for c in changes))) if changes and all(changes) else []
    return {n: {**_ci([c[n] for c in changes], groups, seed=11), "n_rose": sum(c[n] > 0 for c in changes)}
            for n in names}


def _sd(x) -> float | None:
    """Sample standard deviation (ddof 1) of a sequence; None with fewer than two values."""
    import numpy as np

    return float(np.std(x, ddof=1)) if len(x) > 1 else None


def mechanism_check(runs: list[dict]) -> dict:
    """Per MECHANISM_COLUMNS (planning tokens' share of response tokens and of the gradient mass, the change of
    the update HICRA's alpha makes, the change this arm's own mask made) and AMPLIFIED_COLUMN (the share of tokens
    this arm's own mask amplified): the mean and SD over runs at the warm
    start (the first step's rollouts are sampled from it) and over the last tenth of the steps. Columns a run's
    train_curve lacks (summaries from before they were logged) are left out."""
    import numpy as np

    out = {}
    for c in (*MECHANISM_COLUMNS, AMPLIFIED_COLUMN):
        curves = [r["train_curve"].get(c) for r in runs]
        if not curves or any(v is None or not v or v[0] is None for v in curves):
            continue
        first = np.array([v[0] for v in curves], dtype=float)
        last = np.array([np.nanmean(np.array(v[-max(1, len(v) // 10):], dtype=float)) for v in curves])
        out[c] = {"warm_start_mean": float(np.mean(first)), "warm_start_sd": _sd(first),
                  "end_mean": float(np.nanmean(last)), "end_sd": _sd(last)}
    return out


def _mean_curve(curves: list[dict], names: tuple[str, ...]) -> dict:
    """Per-step means over runs (steps every run has) of column-wise curves {"step": [...], name: [...]}."""
    import numpy as np

    shared = sorted(set.intersection(*(set(c["step"]) for c in curves))) if curves else []
    out: dict = {"step": shared}
    for n in names:
        rows = [[dict(zip(c["step"], c[n], strict=True))[s] for s in shared] for c in curves]
        out[f"{n}_mean"] = np.nanmean(np.array(rows, dtype=float), axis=0).tolist() if shared else []
    return out


def _phase_brief(p: dict) -> dict:
    """The v2 verdict in brief (`hicra.dynamics.phases`): consolidation_detected = execution consolidates."""
    cons = p.get("evidence", {}).get("order", {}).get("consolidates") or {}
    expl = p.get("exploration") or {}
    return {"verdict": p["verdict"], "order": p.get("order"), "consolidation_end_step": p["consolidation_end_step"],
            "exploration_onset_step": p["exploration_onset_step"], "confidence": p["confidence"],
            "consolidation_detected": bool(cons.get("execution", False)),
            "exploration_detected": bool(expl.get("detected", False)),
            "exploration_tested": bool(expl.get("tested", False)), "exploration_measure": expl.get("measure")}


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


