"""Study runner: plan the grid, run each (arm, seed) in a worker process (resumable), then write the results."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from hicra.errors import InputError
from hicra.fileio import write_json, write_text
from hicra.study.presets import (
    ARMS,
    FORMAT,
    PRESETS,
    StudyPreset,
    preset_configs,
    run_dir_for,
    study_settings,
)
from hicra.study.report import plot_figures, results_markdown
from hicra.study.statistics import _json_safe, summarize

# ---------------------------------------------------------------- planning the grid

@dataclass(frozen=True)
class RunSpec:
    arm: str
    seed: int
    run_dir: str
    model_dir: str
    config: dict  # RLConfig fields


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


