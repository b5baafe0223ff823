"""Where a lab policy's computation lines go wrong: the share of wrong lines per operation, per line difficulty and
per family in greedy held-out responses, beside the warm-start corpus's slip rate for the same lines.

    python benchmarks/lab_errors.py [--preset quick] [--warm-start-seed 0] [--model DIR] [--n-eval 256]
        [--epochs N] [--cache DIR]

Without `--model` the preset's warm start for `--warm-start-seed` is read from the cache (trained first if
missing); `--model` names any lab model directory instead (e.g. a run's `model/` or a checkpoint snapshot), with
the preset's tasks. A wrong line is one whose claimed result differs from `x op y`
(`hicra.lab.tasks.base.wrong_lines`); the corpus slip rate of a line is `min(0.9, execution_noise *
difficulty)`, `hicra.lab.tasks.base.difficulty`. When the policy's wrong-line rate far exceeds the corpus's, its
errors are its own (what SFT did not learn), not imitated slips.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def policy_args(ap: argparse.ArgumentParser) -> None:
    """The arguments that pick a lab policy (shared with lab_hinted.py)."""
    from hicra.lab.cli import default_cache

    ap.add_argument("--preset", default="quick")
    ap.add_argument("--warm-start-seed", type=int, default=0)
    ap.add_argument("--model", help="a lab model directory (default: the preset's cached warm start)")
    ap.add_argument("--n-eval", type=int, default=256)
    ap.add_argument("--epochs", type=int, help="warm-start SFT epochs (default: the preset's)")
    ap.add_argument("--cache", default=str(default_cache()))


def load_policy(args, **warm_start_fields):
    """(model directory, model, tokenizer, warm-start config, RL config) for `policy_args`; `warm_start_fields`
    replace WarmStartConfig fields (e.g. strategy_hints). A `--model` warm-start directory brings its own tasks
    (its warm_start.json's `config.tasks`) into the returned warm-start config. One torch thread."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.presets import get_preset
    from hicra.lab.sft import warm_start

    torch.set_num_threads(1)
    ws, rl = get_preset(args.preset, warm_start_seed=args.warm_start_seed)
    ws = replace(ws, **({"epochs": args.epochs} if args.epochs else {}), **warm_start_fields)
    model_dir = Path(args.model) if args.model else warm_start(ws, Path(args.cache), progress=False,
                                                               log=lambda *a: None)
    record = model_dir / "warm_start.json"
    if args.model and record.is_file():  # a given warm start is evaluated on the tasks it was trained on
        ws = replace(ws, tasks=json.loads(record.read_text(encoding="utf-8"))["config"]["tasks"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    return model_dir, model, tok, ws, rl


def greedy_heldout(args, family: str | None = None):
    """The policy of `policy_args` decoded greedily at RL's token budget on the held-out problems among the first
    `args.n_eval` (only `family`'s when given): (model directory, warm-start config, task mix, problems, response
    texts, whether each response was cut at the budget)."""
    import torch

    from hicra.lab.model import format_prompt
    from hicra.lab.sampling import sample
    from hicra.lab.sft import eval_problems

    model_dir, model, tok, ws, rl = load_policy(args)
    task = ws.task_mix()
    problems = [p for p in eval_problems(task, args.n_eval) if family in (None, p.family)]
    out = sample(model, [tok(format_prompt(p.question))["input_ids"] for p in problems], rl.max_new_tokens,
                 tok.eos_token_id, tok.pad_token_id, generator=torch.Generator().manual_seed(0), greedy=True)
    texts = [tok.decode(ids, skip_special_tokens=True) for ids in out.response_lists()]
    return model_dir, ws, task, problems, texts, [bool(c) for c in out.truncated]


def main() -> None:
    from hicra.lab.tasks.base import computation_lines, difficulty, wrong_lines

    ap = argparse.ArgumentParser()
    policy_args(ap)
    args = ap.parse_args()
    model_dir, ws, task, problems, texts, _ = greedy_heldout(args)
    lines, wrong = Counter(), Counter()  # keyed by ("op", op), ("difficulty", d), ("family", f)
    outcome = Counter()
    for p, text in zip(problems, texts, strict=True):
        outcome[task.check(p, text).error_type or "correct"] += 1
        bad = set(wrong_lines(text))
        for x, op, y, z in computation_lines(text):
            keys = [("op", op), ("difficulty", min(difficulty(x, op, y), 8)), ("family", p.family)]
            for k in keys:
                lines[k] += 1
                wrong[k] += (x, op, y, z) in bad
    print(f"model {model_dir}; {len(problems)} held-out problems, greedy: "
          + ", ".join(f"{k} {v}" for k, v in sorted(outcome.items())))
    print(f"{'group':<18}{'lines':>7}{'wrong':>8}{'corpus slip':>13}")
    for kind in ("op", "difficulty", "family"):
        for key in sorted(k for k in lines if k[0] == kind):
            corpus = f"{min(0.9, ws.execution_noise * key[1]):.3f}" if kind == "difficulty" else ""
            label = f"{kind} {key[1]}" + ("+" if kind == "difficulty" and key[1] == 8 else "")
            print(f"{label:<18}{lines[key]:>7}{wrong[key] / lines[key]:>8.3f}{corpus:>13}")


if __name__ == "__main__":
    main()
