"""Where a lab run's time goes, on one torch thread: held-out evaluation (greedy and sampled), the skill probes, and
RL steps (sampling and update), then what a run of the preset costs at that rate.

    python benchmarks/lab_budget.py [--preset quick] [--steps 10] [--warm-start-seed 0] [--cache DIR]

The warm start is taken from the cache (trained first if missing). Prints seconds per part, the mean step time over
`--steps` GRPO steps, and the preset's estimated run time (steps x step time + its evaluation points). The lab
issue's budget: a default-preset run <= 4 minutes on one core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.cli import default_cache
    from hicra.lab.presets import BENCHMARK_PRESET, BENCHMARK_PRESET_HELP, get_preset
    from hicra.lab.probes import run_probes
    from hicra.lab.rl import run_rl
    from hicra.lab.sft import eval_problems, evaluate, warm_start

    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default=BENCHMARK_PRESET, help=BENCHMARK_PRESET_HELP)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warm-start-seed", type=int, default=0)
    ap.add_argument("--cache", default=str(default_cache()))
    args = ap.parse_args()
    torch.set_num_threads(1)
    ws, preset_rl = get_preset(args.preset, warm_start_seed=args.warm_start_seed)
    model_dir = warm_start(ws, Path(args.cache), progress=False, log=lambda *a: None)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    task = ws.task_mix()
    problems = eval_problems(task, preset_rl.n_eval)
    cost = {}
    for name, fn in (
            ("greedy evaluation", lambda: evaluate(model, tok, task, problems, preset_rl.max_new_tokens, greedy=True)),
            ("sampled evaluation", lambda: evaluate(model, tok, task, problems, preset_rl.max_new_tokens, seed=3,
                                                    temperature=preset_rl.temperature)),
            ("probes", lambda: run_probes(model, tok, task, problems[: preset_rl.n_probe], preset_rl.max_new_tokens,
                                          0))):
        t0 = time.perf_counter()
        fn()
        cost[name] = time.perf_counter() - t0
        print(f"{name} ({len(problems) if name != 'probes' else preset_rl.n_probe} problems): {cost[name]:.1f} s",
              flush=True)
    _, rl = get_preset(args.preset, warm_start_seed=args.warm_start_seed, algo="grpo", steps=args.steps,
                       eval_every=0, snapshots=False)
    out = Path(tempfile.mkdtemp(prefix="lab_budget_"))
    try:
        result = run_rl(rl, model_dir, out / "run", progress=False, log=lambda *a: None)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    steps = result["timings"][1:] or result["timings"]  # the first step also warms the caches up
    step = statistics.mean(t["seconds"] for t in steps)
    sample = statistics.mean(t["sample_seconds"] for t in steps)
    print(f"RL step ({rl.prompts_per_step} x {rl.group_size} rollouts, mean of {len(steps)}): {step:.2f} s "
          f"(sampling {sample:.2f} s, update {step - sample:.2f} s)")
    points = preset_rl.steps // preset_rl.eval_every + 1 if preset_rl.eval_every else 0
    total = preset_rl.steps * step + points * (cost["greedy evaluation"] + cost["probes"]) \
        + 2 * (cost["greedy evaluation"] + cost["sampled evaluation"])
    print(f"estimated {args.preset}-preset run ({preset_rl.steps} steps, {points} evaluation points): {total:.0f} s "
          f"= {total / 60:.1f} min on one thread (budget: 4 min)")


if __name__ == "__main__":
    main()
