"""Multi-seed experiments on the CPU lab and their statistics (`hicra study`).

A study is a grid of runs (arm x seed) that share one warm-start model. Layout of the study directory:

    OUT/
      study.json             the settings (preset, warm start, RL config, arms, seeds); a rerun must match them
      warmstart/             the warm-start cache (built once, before any worker starts)
      runs/ARM/seedNN/       one lab run directory each (DESIGN.md schema) + metrics.parquet, summary.json
                             (`analyze_run`) + done.json (written last: a run with done.json is never recomputed)
      results.json           per-arm statistics, per-run values, curves (format "hicra-study/1")
      results.md             the same as readable tables
      figures/accuracy.png, figures/errors.png

Statistics per arm (all from `hicra.stats`, seeded): final held-out accuracy (greedy, `n_eval` problems) with a
95% percentile-bootstrap interval over seeds; area under the training-accuracy curve (trapezoid / span, i.e. the
curve's mean height); steps to reach a training-accuracy threshold (trailing moving average); the difference of
each to GRPO with a bootstrap interval (seeds resampled independently per arm) and a two-sided permutation-test
p-value (exact when the relabellings can be enumerated). Phase verdicts come from `hicra.dynamics.phases` per run
and pooled per arm (`detect_phases_pooled`). Error-type curves are the per-step shares of execution / planning /
format errors among all sampled responses, averaged over seeds.

Runs are independent processes (spawned, each with single-threaded torch); a finished run is recognised by its
done.json, an interrupted one by its checkpoint (`hicra.lab.rl` resumes it exactly), a run that died before its
first checkpoint is started again from scratch (deterministic in its seed, so nothing is lost but time).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hicra.dynamics.phases import VERDICTS
from hicra.errors import InputError
from hicra.fileio import write_json, write_text

FORMAT = "hicra-study/1"

# arm name -> RLConfig overrides. The alpha sweep's 0.2 point is the "hicra" arm itself. Control arms are named
# after their mask source (hicra.algorithms.MASK_SOURCES; the lab's algo -> source map is hicra.lab.rl.MASK_SOURCE_OF).
ARMS: dict[str, dict] = {
    "grpo": {"algo": "grpo", "alpha": 0.0},
    "hicra": {"algo": "hicra", "alpha": 0.2},
    "placebo": {"algo": "placebo", "alpha": 0.2},
    "high-entropy": {"algo": "high-entropy", "alpha": 0.2, "entropy_quantile": 0.2},
    "gated": {"algo": "gated", "alpha": 0.2},
    "hicra-a0.1": {"algo": "hicra", "alpha": 0.1},
    "hicra-a0.4": {"algo": "hicra", "alpha": 0.4},
    "phase-aware": {"algo": "phase-aware", "alpha": 0.2},
}
BASELINE = "grpo"


@dataclass
class StudyPreset:
    name: str
    description: str
    seeds: int
    arms: list[str]
    lab_preset: str = "quick"  # `hicra.lab.presets` entry the settings start from (tasks, warm start, RL)
    warm_start: dict = field(default_factory=dict)  # WarmStartConfig overrides
    rl: dict = field(default_factory=dict)  # RLConfig overrides shared by every arm
    threshold: float = 0.3  # training-accuracy level for "steps to threshold"
    threshold_window: int = 5  # trailing moving-average window for it


PRESETS: dict[str, StudyPreset] = {
    "smoke": StudyPreset(
        name="smoke", description="pipeline check in seconds (tests/CI): tiny corpus, a few steps; no findings",
        seeds=2, arms=["grpo", "hicra"], lab_preset="quick",
        warm_start={"n_train": 200, "epochs": 1, "vocab_size": 300, "size": "1m", "max_response_tokens": 96},
        rl={"steps": 3, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 24, "n_eval": 8,
            "checkpoint_every": 1, "minibatches": 1},
        threshold=0.5, threshold_window=1),
    "quick": StudyPreset(
        name="quick", description="every arm, 3 seeds, 60-step runs: <= 20 minutes on 2 CPU cores",
        seeds=3, arms=list(ARMS), lab_preset="quick",
        rl={"steps": 60, "n_eval": 256, "checkpoint_every": 10}),
    "full": StudyPreset(
        name="full", description="every arm, 8 seeds, the lab's default runs (hours on 2 cores: docs/study.md)",
        seeds=8, arms=list(ARMS), lab_preset="default"),
}


# ---------------------------------------------------------------- planning the grid

@dataclass(frozen=True)
class RunSpec:
    arm: str
    seed: int
    run_dir: str
    model_dir: str
    config: dict  # RLConfig fields


def run_dir_for(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / arm / f"seed{seed:02d}"


def parse_arms(text: str | None, preset: StudyPreset) -> list[str]:
    if text is None:
        return list(preset.arms)
    arms = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise InputError(f"unknown arm(s) {unknown or text!r}; known: {', '.join(ARMS)}", field="arms")
    if len(set(arms)) != len(arms):
        raise InputError("an arm is listed twice", field="arms")
    return arms


def preset_configs(preset: StudyPreset) -> tuple[dict, dict]:
    """(WarmStartConfig fields, RLConfig fields shared by every arm): the lab preset with the study's overrides."""
    from dataclasses import replace

    from hicra.lab.presets import get_preset

    ws, rl = get_preset(preset.lab_preset)
    ws_d, rl_d = asdict(replace(ws, **preset.warm_start)), asdict(replace(rl, **preset.rl))
    for k in ("algo", "alpha", "entropy_quantile", "seed", "tensorboard"):
        rl_d.pop(k, None)  # set per arm / per run
    return ws_d, rl_d


def study_settings(preset: StudyPreset) -> dict:
    """Everything that decides what a run computes (a rerun in the same directory must match it)."""
    ws, rl = preset_configs(preset)
    return {"lab_preset": preset.lab_preset, "warm_start": ws, "rl": rl, "threshold": preset.threshold,
            "threshold_window": preset.threshold_window}


def check_study_dir(out: Path, preset: StudyPreset) -> dict:
    """Create or re-open a study directory; refuse one that holds a study with other settings."""
    if out.exists() and not out.is_dir():
        raise InputError("--out exists and is not a directory", path=str(out))
    settings = study_settings(preset)
    path = out / "study.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"not a study file ({exc})", path=str(path)) from None
        if old.get("format") != FORMAT or old.get("settings") != settings:
            raise InputError(f"the directory holds a study with other settings (preset {old.get('preset')!r}); "
                             "use another --out", path=str(path))
        return old
    out.mkdir(parents=True, exist_ok=True)
    info = {"format": FORMAT, "preset": preset.name, "settings": settings}
    write_json(path, info)
    return info


def plan_runs(out: Path, preset: StudyPreset, arms: list[str], seeds: int, model_dir: Path) -> list[RunSpec]:
    _, rl = preset_configs(preset)
    specs = []
    for seed in range(seeds):  # seed-major: with few workers, every arm gets its first seeds early
        for arm in arms:
            cfg = {**rl, **ARMS[arm], "seed": seed}
            specs.append(RunSpec(arm, seed, str(run_dir_for(out, arm, seed)), str(model_dir), cfg))
    return specs


def run_state(run_dir: Path) -> str:
    """"done" | "resume" (checkpoint present) | "fresh" (nothing usable yet)."""
    if (run_dir / "done.json").exists():
        return "done"
    if (run_dir / "checkpoints" / "last.pt").exists():
        return "resume"
    return "fresh"


# ---------------------------------------------------------------- one run (in a worker process)

def _worker_init() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()  # weight-loading bars would garble the run bars


def run_one(spec: RunSpec) -> dict:
    """Run, resume or skip one run; analyse it; write done.json last. Returns done.json's content."""
    from hicra.dynamics.analyze import analyze_run
    from hicra.lab.rl import RLConfig, run_rl

    run_dir = Path(spec.run_dir)
    state = run_state(run_dir)
    if state == "done":
        return json.loads((run_dir / "done.json").read_text())
    if state == "fresh" and run_dir.exists():
        shutil.rmtree(run_dir)  # died before its first checkpoint: start over (same seed, same result)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(run_dir / "study.log", "a") as fh:
        def log(*parts):
            print(*parts, file=fh, flush=True)

        log(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {'resume' if state == 'resume' else 'start'} "
            f"{spec.arm} seed {spec.seed}")
        result = run_rl(RLConfig(**spec.config), spec.model_dir, run_dir, resume=state == "resume",
                        progress=False, log=log)
        rl_seconds = time.perf_counter() - t0
        summary = analyze_run(run_dir, report=False)
    done = {"arm": spec.arm, "seed": spec.seed, "steps": len(result["log"]), "eval": result["eval"],
            "verdict": summary["phases"]["verdict"], "seconds_rl": rl_seconds,
            "seconds": time.perf_counter() - t0, "resumed": state == "resume",
            "code": code_version()}  # the code that finished the run: a later re-analysis cannot lose it
    write_json(run_dir / "done.json", done)
    return done


# ---------------------------------------------------------------- the runner

def _steps_done(run_dir: Path) -> int:
    folder = run_dir / "rollouts"
    if not folder.is_dir():
        return 0
    return len({p.name.split("_part")[0] for p in folder.glob("step_*_part*.parquet")})


def execute(specs: list[RunSpec], workers: int, progress: bool = True, log=print) -> list[dict]:
    """Run every spec not yet done: in this process when workers == 1, else in `workers` spawned processes.
    Shows an overall bar and one bar per active run (steps done, polled from the run directories)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    todo = [s for s in specs if run_state(Path(s.run_dir)) != "done"]
    results = {(s.arm, s.seed): json.loads((Path(s.run_dir) / "done.json").read_text())
               for s in specs if run_state(Path(s.run_dir)) == "done"}
    if len(results):
        log(f"{len(results)} of {len(specs)} runs already finished: not recomputed")
    if not todo:
        return [results[(s.arm, s.seed)] for s in specs]
    overall = tqdm(total=len(specs), initial=len(results), desc="study runs", unit="run", disable=not progress,
                   position=0)
    if workers == 1:
        for spec in todo:
            bar = tqdm(total=spec.config["steps"], desc=f"{spec.arm} s{spec.seed}", disable=not progress,
                       position=1, leave=False)
            done = run_one(spec)
            bar.update(spec.config["steps"])
            bar.close()
            results[(spec.arm, spec.seed)] = done
            overall.update(1)
            (overall.write if progress else log)(_done_line(done))
    else:
        bars: dict = {}
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(run_one, spec): spec for spec in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
                for fut in finished:
                    spec = futures[fut]
                    if fut.exception() is not None:  # a failed run stops the study: start no further run
                        for other in pending:
                            other.cancel()
                    done = fut.result()  # ...and raises its error (after the running ones end)
                    results[(spec.arm, spec.seed)] = done
                    bar = bars.pop((spec.arm, spec.seed), None)
                    if bar is not None:
                        bar.close()
                    overall.update(1)
                    (overall.write if progress else log)(_done_line(done))
                for fut in pending:  # per-run bars for the runs that have started
                    spec = futures[fut]
                    key = (spec.arm, spec.seed)
                    n = _steps_done(Path(spec.run_dir))
                    if key not in bars and (fut.running() or n) and progress:
                        bars[key] = tqdm(total=spec.config["steps"], desc=f"{spec.arm} s{spec.seed}",
                                         leave=False, position=1 + len(bars))
                    if key in bars:
                        bars[key].n = n
                        bars[key].refresh()
    overall.close()
    return [results[(s.arm, s.seed)] for s in specs]


def _done_line(done: dict) -> str:
    ev = done["eval"]
    return (f"{done['arm']:>13} seed {done['seed']}: held-out accuracy {ev['warm_start']['accuracy']:.1%} -> "
            f"{ev['final']['accuracy']:.1%}, phases {done['verdict']}, {done['seconds']:.0f} s"
            + (" (resumed)" if done.get("resumed") else ""))


def run_study(out: str | os.PathLike, preset: str | StudyPreset = "quick", arms: list[str] | None = None,
              seeds: int | None = None, workers: int | None = None, cache: str | os.PathLike | None = None,
              progress: bool = True, log=print) -> dict:
    """Build (or reuse) the warm start, run every (arm, seed) not yet done, then write results.json,
    results.md and figures. Returns the results dict."""
    from hicra.lab.sft import WarmStartConfig, warm_start

    p = PRESETS[preset] if isinstance(preset, str) else preset
    arms = list(p.arms if arms is None else arms)
    seeds = p.seeds if seeds is None else seeds
    workers = workers or os.cpu_count() or 1
    if seeds < 1:
        raise InputError("--seeds must be >= 1", field="seeds")
    if workers < 1:
        raise InputError("--workers must be >= 1", field="workers")
    out = Path(out)
    info = check_study_dir(out, p)
    if "phase-aware" in arms:
        from hicra.lab.rl import ALGORITHMS

        if "phase-aware" not in ALGORITHMS:
            raise InputError("this hicra.lab.rl has no 'phase-aware' algorithm", field="arms")
    t0 = time.perf_counter()
    # the warm start is built once, here, before any worker exists: workers only ever read it
    _worker_init()
    ws, _ = preset_configs(p)
    cache = Path(cache) if cache is not None else out / "warmstart"
    model_dir = warm_start(WarmStartConfig(**ws), cache, progress=progress, log=log)
    specs = plan_runs(out, p, arms, seeds, model_dir)
    execute(specs, min(workers, len(specs)), progress=progress, log=log)
    results = summarize(out, p, arms, seeds)
    results["wall_seconds_this_invocation"] = time.perf_counter() - t0
    results["workers"] = workers
    results["study"] = info
    results["code"] = code_version()
    write_json(out / "results.json", _json_safe(results))
    write_text(out / "results.md", results_markdown(results))
    plot_figures(results, out / "figures")
    return results


def code_version() -> dict:
    """hicra's version and, when it runs from a git checkout, the commit (for reproducing a study)."""
    import subprocess

    from hicra import __version__

    out = {"hicra": __version__, "git_commit": None}
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, text=True,
                                           capture_output=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


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


# ---------------------------------------------------------------- tables and figures

def _fmt_ci(d: dict, pct: bool = True) -> str:
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
    return f"{f(d['mean'])} [{f(d['low'])}, {f(d['high'])}]"


def _fmt_diff(d: dict | None) -> str:
    if d is None:
        return "-"
    return f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], p={d['p_value']:.3f}"


def results_markdown(results: dict) -> str:
    lines = [f"# hicra study: preset {results['preset']}", "",
             f"{results['seeds']} seed(s) per arm. Accuracies in %, 95% percentile-bootstrap intervals over seeds; "
             "differences to GRPO with bootstrap intervals and two-sided permutation p-values.", "",
             "| arm | final held-out acc. | AUC train acc. | steps to "
             f"{results['threshold']:.0%} (reached) | final acc. - GRPO | AUC - GRPO | verdicts (non-zero counts) | "
             "consolidation / exploration detected | pooled |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, a in results["per_arm"].items():
        st = a["steps_to_threshold"]
        reach = f"{st['mean_reached']:.1f} ({st['n_reached']}/{a['n_runs']})" if st["mean_reached"] is not None \
            else f"- (0/{a['n_runs']})"
        vs = a.get("vs_grpo", {})
        c = a["phases"]["counts"]
        pooled = a["phases"]["pooled"]
        lines.append(f"| {arm} | {_fmt_ci(a['final_accuracy'])} | {_fmt_ci(a['auc'])} | {reach} | "
                     f"{_fmt_diff(vs.get('final_accuracy'))} | {_fmt_diff(vs.get('auc'))} | "
                     f"{', '.join(f'{k} {v}' for k, v in c.items() if v) or '-'} | "
                     f"{a['phases']['consolidation_detected']}/{a['phases']['exploration_detected']} of "
                     f"{a['n_runs']} | {pooled['verdict']} "
                     f"({pooled['confidence']:.2f}) |")
    if "vs_placebo" in results["per_arm"].get("hicra", {}):
        vp = results["per_arm"]["hicra"]["vs_placebo"]
        lines += ["", f"HICRA - placebo: final accuracy {_fmt_diff(vp['final_accuracy'])}; "
                  f"AUC {_fmt_diff(vp['auc'])}."]
    lines += ["", "## Accuracy gain over the warm start (held-out, points; 95% bootstrap over seeds)", "",
              "| arm | greedy: warm start -> final | greedy gain | sampled: warm start -> final | sampled gain |",
              "|---|---|---|---|---|"]
    for arm, a in results["per_arm"].items():
        if "gain_sampled" in a:
            samp = (f"{100 * a['warm_start_sampled_accuracy']:.1f} -> {_fmt_ci(a['final_sampled_accuracy'])} | "
                    f"{_fmt_ci(a['gain_sampled'])}")
        else:
            samp = "- | -"
        lines.append(f"| {arm} | {100 * a['warm_start_accuracy']:.1f} -> {_fmt_ci(a['final_accuracy'])} | "
                     f"{_fmt_ci(a['gain'])} | {samp} |")
    shown = [o for o in ORDERS if o != "too few steps" or results["error_order"]["counts"][o]]
    lines += ["", "## Which error type falls first (per run: the step at which its share of sampled responses has "
              "made half of its fall; a fall is a drop of at least 2 points between the first and last 10% of "
              "steps)", "",
              "| arm | " + " | ".join(shown) + " | sign test p (execution first vs planning first) |",
              "|---|" + "---|" * (len(shown) + 1)]
    for arm, a in list(results["per_arm"].items()) + [("all runs", {"error_order": results["error_order"]})]:
        o = a["error_order"]
        lines.append(f"| {arm} | " + " | ".join(str(o["counts"][k]) for k in shown) +
                     f" | {o['sign_test_p']:.3g} |")
    lines += ["", "## Error trends (slope of the share of sampled responses per step, x100)", "",
              "| arm | execution 1st half | execution 2nd half | planning 1st half | planning 2nd half |",
              "|---|---|---|---|---|"]
    for arm, a in results["per_arm"].items():
        t = a["error_trends"]

        def f(v):
            return "-" if v is None else f"{100 * v:+.2f}"
        lines.append(f"| {arm} | {f(t['execution']['first_half'])} | {f(t['execution']['second_half'])} | "
                     f"{f(t['planning']['first_half'])} | {f(t['planning']['second_half'])} |")
    lines += ["", "## Runs", "", "(verdict: C = consolidation detected, E = exploration detected; switch = the "
              "phase-aware arm's step of switching alpha on)", "",
              "| arm | seed | final acc. | AUC | steps to thr. | verdict | cons. end | switch |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        sw = r.get("phase_aware_switch_step", "")
        lines.append(f"| {r['arm']} | {r['seed']} | {100 * r['final_accuracy']:.1f} | {100 * r['auc']:.1f} | "
                     f"{'-' if r['steps_to_threshold'] is None else int(r['steps_to_threshold'])} | "
                     f"{r['phases']['verdict']} ({_ce(r['phases'])}) | {r['phases']['consolidation_end_step']} | "
                     f"{'-' if sw is None else sw} |")
    return "\n".join(lines) + "\n"


def _smooth(values, window: int) -> list[float]:
    """Trailing moving average (shorter windows at the start), for display."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(0, idx - window)
    return ((c[idx] - c[lo]) / (idx - lo)).tolist()


def _ce(p: dict) -> str:
    return ("C" if p["consolidation_detected"] else "") + ("E" if p["exploration_detected"] else "") or "-"


def plot_figures(results: dict, fig_dir: Path) -> list[Path]:
    """accuracy.png (training accuracy per arm, mean over seeds with a 95% bootstrap band) and errors.png
    (execution / planning / format error shares per arm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hicra.fileio import atomic_path

    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    arms = list(results["per_arm"])
    n_steps = max(len(a["curves"]["step"]) for a in results["per_arm"].values())
    w = max(1, n_steps // 12)  # display smoothing only; the statistics use the raw curves
    # small multiples: each arm against GRPO, so seven arms stay readable
    cols = min(4, len(arms))
    rows = -(-len(arms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharex=True, sharey=True,
                             squeeze=False)
    base = results["per_arm"].get(BASELINE)
    for i, arm in enumerate(arms):
        ax = axes[i // cols][i % cols]
        a = results["per_arm"][arm]
        c = a["curves"]
        color = colors[i % len(colors)]
        if base is not None and arm != BASELINE:
            ax.plot(base["curves"]["step"], _smooth(base["curves"]["accuracy_mean"], w), color="0.5", lw=1,
                    label=BASELINE)
        ax.plot(c["step"], _smooth(c["accuracy_mean"], w), label=f"{arm} (n={a['n_runs']})", color=color)
        ax.fill_between(c["step"], _smooth(c["accuracy_low"], w), _smooth(c["accuracy_high"], w), alpha=0.2,
                        color=color)
        ax.set_title(arm, fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
        if i % cols == 0:
            ax.set_ylabel("training accuracy")
        if i // cols == rows - 1:
            ax.set_xlabel("RL step")
    for j in range(len(arms), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"hicra study ({results['preset']}): sampled training accuracy\nmean over seeds, 95% bootstrap "
                 f"band, {w}-step moving average", fontsize=9)
    fig.tight_layout()
    with atomic_path(fig_dir / "accuracy.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    paths.append(fig_dir / "accuracy.png")

    kinds = ("execution", "planning", "format")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharex=True)
    for i, (arm, a) in enumerate(results["per_arm"].items()):
        c = a["curves"]
        for ax, k in zip(axes, kinds, strict=True):
            ax.plot(c["step"], _smooth(c[f"errors_{k}_share_mean"], w), label=arm, color=colors[i % len(colors)])
    for ax, k in zip(axes, kinds, strict=True):
        ax.set_title(f"{k} errors ({w}-step moving average)", fontsize=9)
        ax.set_xlabel("RL step")
    axes[0].set_ylabel("share of sampled responses")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(fig_dir / "errors.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    paths.append(fig_dir / "errors.png")
    return paths
