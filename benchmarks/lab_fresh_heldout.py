"""Held-out greedy gain of finished lab runs on problems their figures never used.

    python benchmarks/lab_fresh_heldout.py RUN_DIR [RUN_DIR ...] [--n 512] [--seed 1]

Every lab run evaluates on the same `eval_problems(task, n_eval)` (held-out seed 0), and the presets were chosen
by those figures. This evaluates each run's warm start (`run.json["model"]`) and its final weights (`RUN_DIR/model`)
greedily, at the run's response budget, on `--n` other held-out problems: the draw of held-out seed `--seed`
minus every problem in the run's `eval.json["heldout_ids"]` (so disjoint from both training and the tuning set).
One torch thread. Prints per run the two accuracies and the gain (points), then their mean, SD and the count of
positive gains. A warm start shared by several runs is evaluated once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def fresh_problems(task, exclude: set[str], n: int, seed: int) -> list:
    """`n` held-out problems from seed `seed`'s draw that are not in `exclude` (problem ids)."""
    drawn = task.heldout(n + len(exclude), seed)
    out = [p for p in drawn if p.id not in exclude][:n]
    if len(out) < n:
        raise ValueError(f"only {len(out)} fresh held-out problems, {n} asked")
    return out


def main() -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.sft import evaluate
    from hicra.lab.tasks import TaskMix

    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="finished lab run directories (eval.json with a final evaluation)")
    ap.add_argument("--n", type=int, default=512, help="fresh held-out problems per run (default 512)")
    ap.add_argument("--seed", type=int, default=1, help="held-out draw to take them from (the runs use 0)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    warm_cache: dict[tuple, float] = {}
    gains = []
    print(f"{'run':40s} {'warm start':>10s} {'final':>8s} {'gain':>7s}   ({args.n} fresh held-out problems, greedy)")
    for run in map(Path, args.runs):
        try:
            info = json.loads((run / "run.json").read_text())
            ids = set(json.loads((run / "eval.json").read_text())["heldout_ids"])
            cfg = info["config"]
            task = TaskMix(cfg["tasks"], optimum=cfg["optimum"], heldout_share=cfg["heldout_share"])
            problems = fresh_problems(task, ids, args.n, args.seed)
        except (OSError, KeyError, ValueError) as e:
            print(f"lab_fresh_heldout: error: {run}: {e}", file=sys.stderr)
            return 2
        if not (run / "model").is_dir():
            print(f"lab_fresh_heldout: error: {run}: no final model (run not finished)", file=sys.stderr)
            return 2
        tokenizer = AutoTokenizer.from_pretrained(run / "tokenizer")
        budget = cfg["max_new_tokens"]

        def accuracy(model_dir, tokenizer=tokenizer, task=task, problems=problems, budget=budget) -> float:
            model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
            return 100 * evaluate(model, tokenizer, task, problems, budget, greedy=True)["accuracy"]

        key = (info["model"], json.dumps(cfg["tasks"], sort_keys=True), args.n, args.seed, tuple(sorted(ids)))
        if key not in warm_cache:
            warm_cache[key] = accuracy(info["model"])
        before, after = warm_cache[key], accuracy(run / "model")
        gains.append(after - before)
        print(f"{str(run):40s} {before:10.1f} {after:8.1f} {after - before:+7.1f}")
    sd = statistics.stdev(gains) if len(gains) > 1 else float("nan")
    print(f"greedy gain on fresh held-out problems: mean {statistics.mean(gains):+.1f} points, SD {sd:.1f}, "
          f"positive in {sum(g > 0 for g in gains)} of {len(gains)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
