"""Study runner: plan the grid (cells x arms x (warm-start seed, RL seed) pairs), build each warm start once,
run every pair that has no summary file yet in worker processes (resumable), summarise each finished run into one
small JSON file, then compute the statistics from those files alone and write the results."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from hicra.errors import InputError
from hicra.fileio import read_json, write_json, write_text
from hicra.study.presets import (
    AMPLIFIED_COLUMN,
    ARMS,
    FORMAT,
    MECHANISM_COLUMNS,
    RUN_FORMAT,
    StudyPreset,
    check_arms,
    condition_label,
    preset_configs,
    resolve_preset,
    run_dir_for,
    study_pairs,
    study_settings,
    summary_path_for,
)
from hicra.study.report import plot_figures, results_markdown
from hicra.study.statistics import _json_safe, controls_outcome, preregistered_answers, summarize

# ---------------------------------------------------------------- planning the grid


@dataclass(frozen=True)
class RunSpec:
    arm: str
    seed: int  # the RL seed
    run_dir: str
    summary_path: str
    config: dict  # RLConfig fields
    warm_start: dict  # WarmStartConfig fields (its seed is the warm-start seed)
    warm_start_seed: int = 0
    cell: str = ""  # "" = the lab's own corpus knobs
    knobs: dict = field(default_factory=dict)
    model_dir: str = ""  # the built warm start ("" = built or loaded by `execute` from its cache)

    @property
    def label(self) -> str:
        return f"{condition_label(self.cell, self.arm)} ws{self.warm_start_seed} s{self.seed}"


def _part_of(study: dict | None, settings: dict) -> bool:
    """Whether `settings` are the study's, or those of a part of it that runs some of its cells (`--cells` naming a
    subset, knobs unchanged): a study run in parts of whole (cell, warm-start seed) groups shares one summary
    folder."""
    if study == settings:
        return True
    if not isinstance(study, dict) or not settings.get("cells"):
        return False
    rest = {k: v for k, v in settings.items() if k != "cells"}
    cells = study.get("cells") or {}
    return ({k: v for k, v in study.items() if k != "cells"} == rest
            and all(name in cells and cells[name] == knobs for name, knobs in settings["cells"].items()))


# config fields added after studies were recorded, each with the value that reproduces the behaviour before it: a
# study.json without the field still matches while today's setting is that value (`_with_later_fields`). A field
# joins this table only when it is added with such a value (not when a default changes).
LATER_STUDY_FIELDS: dict[str, dict] = {"rl": {"strategy_k": 0}}  # strategy_k 0: no held-out strategy readings


def _with_later_fields(old: dict | None, settings: dict) -> tuple[dict | None, dict[str, object]]:
    """(`old` with each `LATER_STUDY_FIELDS` field it lacks filled in from `settings` when today's value is the
    field's behaviour-preserving value, {"SECTION.FIELD": value} of the fields so filled). Example:
    `RLConfig.strategy_k` is missing from the `controls` and `controls2` studies' files."""
    if not isinstance(old, dict):
        return old, {}
    filled, assumed = dict(old), {}
    for section, later in LATER_STUDY_FIELDS.items():
        mine, today = old.get(section), settings.get(section)
        if not isinstance(mine, dict) or not isinstance(today, dict):
            continue
        added = {k: v for k, v in later.items() if k not in mine and k in today and today[k] == v}
        filled[section] = {**mine, **added}
        assumed.update({f"{section}.{k}": v for k, v in added.items()})
    return filled, assumed


def _first_difference(old, new, prefix: str = "settings") -> str:
    """The first path (dotted) at which two settings dicts differ, with both values, for error messages."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            if old.get(k, _ABSENT) != new.get(k, _ABSENT):
                return _first_difference(old.get(k, _ABSENT), new.get(k, _ABSENT), f"{prefix}.{k}")
    shown = ["absent" if v is _ABSENT else json.dumps(v, sort_keys=True)[:60] for v in (old, new)]
    return f"{prefix} is {shown[0]} in study.json, {shown[1]} today"


_ABSENT = object()


def check_study_dir(out: Path, preset: StudyPreset) -> dict:
    """Create or re-open a study directory; refuse one that holds a study with other settings (a part that runs
    some of the study's cells is the same study: `_part_of`; a config field added since the study was recorded
    matches while it holds its behaviour-preserving value: `_with_later_fields`, and the returned dict then names
    it under "assumed_fields"). study.json is not rewritten on re-opening.

    Raises InputError (exit code 2) naming study.json when the settings differ."""
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", path=str(out))
    settings = study_settings(preset)
    path = out / "study.json"
    if path.exists():
        old = read_json(path, "study file")
        filled, assumed = _with_later_fields(old.get("settings"), settings)
        if old.get("format") != FORMAT or not _part_of(filled, settings):
            where = _first_difference(filled, settings) if old.get("format") == FORMAT else "format"
            raise InputError(f"the directory holds a study with other settings (preset {old.get('preset')!r}; "
                             f"first difference: {where}); use another --out", path=str(path))
        return {**old, "assumed_fields": assumed} if assumed else old
    out.mkdir(parents=True, exist_ok=True)
    info = {"format": FORMAT, "preset": preset.name, "settings": settings}
    write_json(path, info)
    return info


def plan_runs(out: Path, summary_root: Path, preset: StudyPreset, arms: list[str], seeds: int,
              warm_start_seeds: int = 1) -> list[RunSpec]:
    """Every (cell, arm, pair), pair-major (with few workers every arm gets its first pairs early)."""
    specs = []
    cells = preset.cells or {"": {}}
    for pair in study_pairs(warm_start_seeds, seeds, preset.first_warm_start_seed):
        for cell, knobs in cells.items():
            ws, rl = preset_configs(preset, warm_start_seed=pair.warm_start_seed, knobs=knobs or None)
            for arm in arms:
                cfg = {**rl, **ARMS[arm], "seed": pair.seed}
                specs.append(RunSpec(
                    arm, pair.seed, str(run_dir_for(out, arm, pair.seed, pair.warm_start_seed, cell)),
                    str(summary_path_for(summary_root, arm, pair.seed, pair.warm_start_seed, cell)), cfg, ws,
                    pair.warm_start_seed, cell, dict(knobs)))
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


def _pool_worker_init() -> None:
    """`_worker_init`, and a pool worker ends with the study: one whose study process was killed (SIGKILL, out of
    memory) had gone on writing beside a rerun and then waited forever; on Linux it now gets SIGTERM when its parent
    dies. Only in pool workers: the study process itself must outlive the shell that started it (`nohup`)."""
    _worker_init()
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def run_one(spec: RunSpec) -> dict:
    """Run, resume or skip one run; analyse it; write done.json, then its summary file. Returns the summary.
    A run whose summary file exists is not touched (its run directory may be gone)."""
    from hicra.dynamics.analyze import analyze_run
    from hicra.lab.rl import RLConfig, run_rl

    summary_path = Path(spec.summary_path)
    if summary_path.exists():
        return read_json(summary_path, "run summary")
    run_dir = Path(spec.run_dir)
    state = run_state(run_dir)
    if state != "done":
        if state == "fresh" and run_dir.exists():
            shutil.rmtree(run_dir)  # died before its first checkpoint: start over (same seed, same result)
        run_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(run_dir / "study.log", "a") as fh:
            def log(*parts):
                print(*parts, file=fh, flush=True)

            log(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {'resume' if state == 'resume' else 'start'} {spec.label}")
            result = run_rl(RLConfig(**spec.config), spec.model_dir, run_dir, resume=state == "resume",
                            progress=False, log=log)
            rl_seconds = time.perf_counter() - t0
            summary = analyze_run(run_dir, report=False)
        done = {"arm": spec.arm, "cell": spec.cell, "warm_start_seed": spec.warm_start_seed, "seed": spec.seed,
                "steps": len(result["log"]), "eval": result["eval"], "verdict": summary["phases"]["verdict"],
                "seconds_rl": rl_seconds, "seconds": time.perf_counter() - t0, "resumed": state == "resume",
                "code": code_version()}  # the code that finished the run: a later re-analysis cannot lose it
        write_json(run_dir / "done.json", done)
    return write_run_summary(spec)


# ---------------------------------------------------------------- per-run summary files

# the metrics.parquet columns the pooled phase verdict and the strategy-entropy trend need
# rel_ppl_execution_rw (since session 55): the response-weighted execution curve, so a later reading can check a
# consolidation against the response-length mix (docs/dynamics.md, "Response length")
_SUMMARY_METRICS = ("step", "rel_ppl_execution", "rel_ppl_planning", "rel_ppl_reference", "rel_ppl_execution_rw",
                    "accuracy", "mean_length",
                    "errors_planning_share", "errors_execution_share", "planning_ratio", "strategy_entropy",
                    "semantic_entropy_excl_format", "semantic_entropy")
_TRAIN_COLUMNS = ("accuracy", "errors_execution_share", "errors_planning_share", "errors_format_share",
                  *MECHANISM_COLUMNS, AMPLIFIED_COLUMN)
# eval.json's per-problem strategy counts (`RLConfig.strategy_k`): a summary keeps only their `strategy_change`
_STRATEGY_RECORDS = ("warm_start_strategies", "final_strategies", "strategy_change")


def _round(v, digits: int = 6):
    """Floats to `digits` significant digits (the files are committed: small, and stable across platforms)."""
    import math

    if isinstance(v, float):
        return None if not math.isfinite(v) else float(f"{v:.{digits}g}")
    if isinstance(v, dict):
        return {k: _round(x, digits) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_round(x, digits) for x in v]
    if hasattr(v, "item"):
        return _round(v.item(), digits)
    return v


def _brief(obj, max_list: int = 16):
    """A dict without its long lists (bootstrap draws, per-step arrays): what a summary keeps of the evidence."""
    if isinstance(obj, dict):
        return {k: _brief(v, max_list) for k, v in obj.items()
                if not (isinstance(v, (list, tuple)) and len(v) > max_list)}
    if isinstance(obj, (list, tuple)):
        return [_brief(v, max_list) for v in obj]
    return obj


def summarize_run(run_dir: Path) -> dict:
    """One finished run directory -> its summary (format RUN_FORMAT): held-out results before / after RL
    (eval.json: greedy and, when present, sampled), the held-out greedy curve (eval_curve.jsonl), the training
    curves (train_log.jsonl: accuracy and error shares per step), the phase verdict with its order and
    exploration test (summary.json["phases"], long arrays left out), the metric columns the pooled verdict needs
    (metrics.parquet), the skill probes (probes.jsonl), seconds and code version (done.json). With
    `RLConfig.strategy_k`, eval.json's held-out strategy entropy change (`strategy_change`) is kept and its
    per-problem counts are not."""
    import pandas as pd

    from hicra.dynamics.phases import upgrade_phases
    from hicra.dynamics.vocab import upgrade_eval, upgrade_metrics, upgrade_record

    def jsonl(name):
        path = run_dir / name
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []

    log = [upgrade_record(e, "train_log") for e in jsonl("train_log.jsonl")]
    evals = upgrade_eval(json.loads((run_dir / "eval.json").read_text()))
    phases = upgrade_phases(json.loads((run_dir / "summary.json").read_text())["phases"])
    metrics = upgrade_metrics(pd.read_parquet(run_dir / "metrics.parquet"))
    done = json.loads((run_dir / "done.json").read_text())
    keep = ("accuracy", "errors_execution_share", "errors_planning_share", "errors_format_share")
    curve = jsonl("eval_curve.jsonl")
    probes = jsonl("probes.jsonl")
    fired = [e.get("phase_fired_step") for e in log if e.get("phase_fired_step") is not None]
    return _round({
        "eval": {**{k: {f: v[f] for f in keep if f in v} for k, v in evals.items()
                    if isinstance(v, dict) and k not in _STRATEGY_RECORDS},
                 **({"strategy_change": evals["strategy_change"]} if "strategy_change" in evals else {})},
        "eval_curve": {"step": [r["step"] for r in curve], "accuracy": [r["accuracy"] for r in curve]},
        "train_curve": {"step": [e["step"] for e in log], **{c: [e.get(c) for e in log] for c in _TRAIN_COLUMNS}},
        "phase_fired_step": fired[0] if fired else None,
        "phases": _brief(phases),
        "metrics": {c: metrics[c].astype(float).tolist() for c in _SUMMARY_METRICS if c in metrics.columns},
        "probes": {k: [r.get(k) for r in probes] for k in dict.fromkeys(k for r in probes for k in r)},
        "steps": done["steps"], "seconds": done.get("seconds"), "resumed": done.get("resumed"),
        "code": done.get("code"),
    })


def write_run_summary(spec: RunSpec) -> dict:
    """summarize_run(spec.run_dir) with the run's identity and settings, written atomically to spec.summary_path."""
    from hicra.fileio import write_text as write

    summary = {"format": RUN_FORMAT, "arm": spec.arm, "cell": spec.cell, "knobs": spec.knobs,
               "warm_start_seed": spec.warm_start_seed, "seed": spec.seed,
               **summarize_run(Path(spec.run_dir)), "config": spec.config, "warm_start_config": spec.warm_start}
    Path(spec.summary_path).parent.mkdir(parents=True, exist_ok=True)
    write(spec.summary_path, json.dumps(summary, separators=(",", ":")) + "\n")
    return summary


# ---------------------------------------------------------------- the runner

def _steps_done(run_dir: Path) -> int:
    folder = run_dir / "rollouts"
    if not folder.is_dir():
        return 0
    return len({p.name.split("_part")[0] for p in folder.glob("step_*_part*.parquet")})


def _build_warm_start(fields: dict, cache: str) -> str:
    """In a worker process: train (or load) the warm start of WarmStartConfig(**fields) into `cache`; returns
    its directory. Quiet: the main process logs the build."""
    from hicra.lab.sft import WarmStartConfig, warm_start

    return str(warm_start(WarmStartConfig(**fields), cache, progress=False, log=lambda *a: None))


def _now() -> float:
    return time.perf_counter()


def execute(specs: list[RunSpec], workers: int, progress: bool = True, log=print,
            cache: str | os.PathLike | None = None, deadline: float | None = None,
            blind: bool = False) -> list[dict | None]:
    """Run every spec without a summary file: in this process when workers == 1, else in `workers` spawned
    processes. A spec without `model_dir` runs on the warm start of its `warm_start` fields in `cache`, which is
    built once, by one worker (or this process), when no run whose warm start is ready is left to start: runs of
    cached warm starts finish, and write their summaries, first, and two workers never build the same warm start.
    The overall bar counts RL steps of all runs (so its ETA is in steps, polled from the run directories; a build
    moves it not at all); one bar per active run shows its steps. A failed run or build is logged, starts nothing
    new, and its error is raised once the running jobs end. `deadline` (a `time.perf_counter()` value): no run or
    build starts after it; running jobs finish. `blind`: a finished run's line gives its name and seconds only.
    Returns the summaries in spec order (None for a run not done)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    from hicra.lab.sft import WarmStartConfig, warm_start, warm_start_dir

    results = {s.summary_path: read_json(s.summary_path, "run summary")
               for s in specs if Path(s.summary_path).exists()}
    todo = [s for s in specs if s.summary_path not in results]
    if results:
        log(f"{len(results)} of {len(specs)} runs already summarised: not recomputed")
    if not todo:
        return [results[s.summary_path] for s in specs]
    if any(not s.model_dir for s in todo) and cache is None:
        raise ValueError("specs without model_dir need a warm-start cache")

    key_of = {s.summary_path: WarmStartConfig(**s.warm_start).key() for s in todo}  # each spec's warm-start key
    models = {key_of[s.summary_path]: s.model_dir for s in todo if s.model_dir}  # key -> model directory
    unbuilt: dict[str, dict] = {}  # key -> WarmStartConfig fields, in the order the runs need them
    for spec in todo:
        key = key_of[spec.summary_path]
        if key in models or key in unbuilt:
            continue
        cfg = WarmStartConfig(**spec.warm_start)
        if (warm_start_dir(cfg, cache) / "warm_start.json").exists():
            models[key] = str(warm_start(cfg, cache, log=log))
        else:
            unbuilt[key] = spec.warm_start
    if unbuilt:
        log(f"{len(unbuilt)} warm start(s) to build into {cache}, {len(models)} ready")
    queue = list(todo)

    def next_job():
        """("run", spec) for the first queued run whose warm start is ready, else ("build", (key, fields)) for the
        next warm start to build, else None (also once the deadline has passed)."""
        if deadline is not None and _now() >= deadline:
            return None
        spec = next((s for s in queue if key_of[s.summary_path] in models), None)
        if spec is not None:
            queue.remove(spec)
            return "run", replace(spec, model_dir=models[key_of[spec.summary_path]])
        if unbuilt:
            key = next(iter(unbuilt))
            fields = unbuilt.pop(key)
            log(f"warm start {key}: building (warm-start seed {fields.get('seed')})")
            return "build", (key, fields)
        return None

    total = sum(s.config["steps"] for s in specs)
    overall = tqdm(total=total, initial=total - sum(s.config["steps"] for s in todo), desc="study", unit="step",
                   disable=None if progress else True, position=0, dynamic_ncols=True)
    n_done, n_built, n_builds = len(results), 0, len(unbuilt)

    def postfix(refresh=True):  # the bar counts RL steps; warm-start builds (no RL steps) are counted here
        built = f", {n_built}/{n_builds} warm starts built" if n_builds else ""
        overall.set_postfix_str(f"{n_done}/{len(specs)} runs{built}", refresh=refresh)

    postfix()
    base = overall.n

    def finished(kind, what, result):
        nonlocal n_done, n_built, base
        if kind == "build":
            models[what[0]] = result
            n_built += 1
            log(f"warm start {what[0]}: built")
            postfix(refresh=False)
            return
        results[what.summary_path] = result
        n_done += 1
        base += what.config["steps"]
        postfix(refresh=False)
        (overall.write if progress else log)(_done_line(result, blind))

    def failed(kind, what, exc):
        name = f"warm start {what[0]}" if kind == "build" else what.label
        log(f"{name} failed ({type(exc).__name__}: {exc}); {len(queue)} queued run(s) not started")

    bars: dict = {}  # summary path -> the bar of a running run
    slot_of: dict = {}  # summary path -> its bar's line (the lowest free one when it started)
    try:
        if workers == 1:
            while (job := next_job()) is not None:
                kind, what = job
                try:
                    if kind == "build":
                        result = str(warm_start(WarmStartConfig(**what[1]), cache, progress=progress, log=log))
                    else:
                        result = run_one(what)
                except Exception as exc:
                    failed(kind, what, exc)
                    raise
                finished(kind, what, result)
                overall.n = base
                overall.refresh()
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                     initializer=_pool_worker_init) as pool:
                jobs: dict = {}  # future -> (kind, what)
                error = None  # the first failed job: start nothing new, raise once the running jobs end
                while True:
                    while error is None and len(jobs) < workers and (job := next_job()) is not None:
                        kind, what = job
                        if kind == "build":
                            jobs[pool.submit(_build_warm_start, what[1], str(cache))] = job
                        else:
                            jobs[pool.submit(run_one, what)] = job
                    if not jobs:  # everything ran, or a job failed and the running ones have ended
                        break
                    done_now, _ = wait(jobs, timeout=2.0, return_when=FIRST_COMPLETED)
                    for fut in done_now:
                        kind, what = jobs.pop(fut)
                        if kind == "run" and what.summary_path in bars:
                            bars.pop(what.summary_path).close()
                        if fut.exception() is not None:
                            failed(kind, what, fut.exception())
                            error = error or fut
                        else:
                            finished(kind, what, fut.result())
                    running = 0
                    for kind, spec in jobs.values():  # per-run bars for the running runs
                        if kind != "run":
                            continue
                        if spec.summary_path not in bars and progress:
                            used = {slot_of[path] for path in bars}
                            slot_of[spec.summary_path] = next(i for i in range(1, len(bars) + 2) if i not in used)
                            bars[spec.summary_path] = tqdm(total=spec.config["steps"], desc=spec.label,
                                                           leave=False, position=slot_of[spec.summary_path],
                                                           dynamic_ncols=True)
                        n = min(_steps_done(Path(spec.run_dir)), spec.config["steps"])
                        if spec.summary_path in bars:
                            bars[spec.summary_path].n = n
                            bars[spec.summary_path].refresh()
                        running += n
                    overall.n = base + running
                    overall.refresh()
                if error is not None:
                    error.result()  # raises the first failed job's error
    finally:
        for bar in bars.values():
            bar.close()
        overall.close()
    if queue and deadline is not None and _now() >= deadline:
        log(f"time limit reached: {len(queue)} run(s) not started; rerun the same command to continue")
    return [results.get(s.summary_path) for s in specs]


def _done_line(s: dict, blind: bool = False) -> str:
    """One line for a finished run: its label, held-out accuracy and verdict, and seconds; with `blind`, only
    the label and seconds (for a study whose figures may not be read before every run is in)."""
    ev = s["eval"]
    figures = "" if blind else (f" held-out accuracy {ev['warm_start']['accuracy']:.1%} -> "
                                f"{ev['final']['accuracy']:.1%}, phases {s['phases']['verdict']},")
    return (f"{condition_label(s['cell'], s['arm']):>13} ws{s['warm_start_seed']} seed {s['seed']}:{figures} "
            f"{s['seconds'] or 0:.0f} s" + (" (resumed)" if s.get("resumed") else ""))


def run_study(out: str | os.PathLike, preset: str | StudyPreset = "quick", arms: list[str] | None = None,
              seeds: int | None = None, workers: int | None = None, cache: str | os.PathLike | None = None,
              progress: bool = True, log=print, warm_start_seeds: int | None = None,
              cells: dict[str, dict] | None = None, summary_root: str | os.PathLike | None = None,
              stop_after: float | None = None, only_warm_starts: list[int] | None = None,
              controls: str | os.PathLike | None = None, blind: bool = False) -> dict:
    """Run every (cell, arm, warm-start seed, RL seed) without a summary file, then write results.json,
    results.md and figures to `out`. Returns the results dict.

    seeds: RL seeds per warm-start seed; warm_start_seeds: W (seeds F..F+W-1, F = the preset's
    `first_warm_start_seed`, 0 but in a later study that needs fresh seeds); cells: cell name -> corpus knobs
    (replaces the preset's; see `knob_grid`); summary_root: where the per-run summaries live (default
    OUT/summaries; e.g. docs/findings/v2/runs to commit them). Each warm start a pending run needs is loaded from
    `cache` (default OUT/warmstart) or built there once (`execute`). The statistics come from the
    summary files alone, so a fresh `out` with committed summaries runs only the pairs that have none.

    stop_after: seconds of wall time after which no run or build starts (running ones finish), so a long study
    runs in parts. When runs are left, no statistics are written and the result is {"complete": False,
    "n_summarised", "n_runs", "wall_seconds_this_invocation"}; rerunning the same call continues. A finished
    study's dict has "complete": True.

    only_warm_starts: build and run only the runs of these warm-start seeds in this call (each in
    F..F+warm_start_seeds-1); the others are left for a later call, and the statistics are written once every run of
    the study is summarised. For machines whose warm-start cache does not outlive a session: a warm start rebuilt
    on another machine is a different model (its last float bits differ, and training amplifies them), so each
    warm start's runs should all come from one build; `summarize` reports any group that did not
    (`warm_start_builds`). InputError for a seed outside the range.

    controls: a controls study's results.json. The main verdicts count only when every control criterion passed
    (pre-registration point 1), so the outcome (`controls_outcome`) is read before any run starts (a bad file:
    InputError) and goes into results.json (`controls_study`) and the head of results.md.

    blind: the line logged for each finished run names it and its seconds, without its accuracy or verdict, so a
    study with a no-interim-look rule (docs/study.md, the main study) can be watched without reading figures."""
    p = resolve_preset(preset)
    if cells is not None:
        p = replace(p, cells=dict(cells))
    arms = check_arms(p.arms if arms is None else arms)
    seeds = p.seeds if seeds is None else seeds
    warm_start_seeds = p.warm_start_seeds if warm_start_seeds is None else warm_start_seeds
    workers = workers or os.cpu_count() or 1
    if seeds < 1:
        raise InputError("--seeds must be >= 1", field="seeds")
    if warm_start_seeds < 1:
        raise InputError("--warm-start-seeds must be >= 1", field="warm_start_seeds")
    if workers < 1:
        raise InputError("--workers must be >= 1", field="workers")
    if only_warm_starts is not None:
        first = p.first_warm_start_seed
        outside = sorted(set(only_warm_starts) - set(range(first, first + warm_start_seeds)))
        if outside or not only_warm_starts:
            raise InputError(f"warm-start seeds must be among {first}..{first + warm_start_seeds - 1}, got "
                             f"{sorted(set(only_warm_starts))}", field="only_warm_starts")
    out = Path(out)
    summary_root = Path(summary_root) if summary_root is not None else out / "summaries"
    info = check_study_dir(out, p)
    assumed = {**info.get("assumed_fields", {}), **check_study_dir(summary_root, p).get("assumed_fields", {})}
    if "phase-aware" in arms:
        from hicra.lab.rl import ALGORITHMS

        if "phase-aware" not in ALGORITHMS:
            raise InputError("this hicra.lab.rl has no 'phase-aware' algorithm", field="arms")
    if stop_after is not None and stop_after < 0:
        raise InputError(f"must be >= 0, got {stop_after}", field="stop_after")
    controls_study = controls_outcome(controls) if controls is not None else None
    t0 = time.perf_counter()
    specs = plan_runs(out, summary_root, p, arms, seeds, warm_start_seeds)
    todo = [s for s in specs if not Path(s.summary_path).exists()
            and (only_warm_starts is None or s.warm_start_seed in only_warm_starts)]
    # each warm start a pending run needs is built once (by one worker), or loaded from the cache
    cache = Path(cache) if cache is not None else out / "warmstart"
    if todo:
        _worker_init()
    deadline = None if stop_after is None else t0 + stop_after
    execute(todo, min(workers, max(1, len(todo))), progress=progress, log=log, cache=cache, deadline=deadline,
            blind=blind)
    left = sum(not Path(s.summary_path).exists() for s in specs)  # this call's and any it was told to leave
    if left:
        return {"complete": False, "n_summarised": len(specs) - left, "n_runs": len(specs),
                "wall_seconds_this_invocation": time.perf_counter() - t0}
    results = summarize(summary_root, p, arms, seeds, warm_start_seeds)
    results["complete"] = True
    results["wall_seconds_this_invocation"] = time.perf_counter() - t0
    results["workers"] = workers
    results["study"] = info
    results["summary_root"] = str(summary_root)
    if assumed:  # study files recorded before these config fields existed, matched at their earlier behaviour
        results["assumed_fields"] = assumed
    if p.banner:
        results["banner"] = p.banner
    results["code"] = code_version()
    if controls_study is not None:
        results["controls_study"] = controls_study
    answers = preregistered_answers(results)
    if answers is not None:
        results["preregistered"] = answers
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


