"""Can a lab policy execute each strategy when asked? Greedy accuracy per (family, strategy) on held-out
single-part problems whose prompt names the strategy (`question + hicra.lab.sft.HINT + strategy`, the form of the
corpus's hinted pairs), and the share of responses that executed the named strategy.

    python benchmarks/lab_hinted.py [--preset quick] [--warm-start-seed 0] [--strategy-hints 0.5] [--model DIR]
        [--n-eval 256] [--epochs N] [--cache DIR]

Without `--model` the preset's warm start with `--strategy-hints` is read from the cache (trained first if
missing). A policy that never saw hinted prompts (`--strategy-hints 0`) reads the hint as noise; the figure is
meant for warm starts trained with hints. A strategy that is cheapest by the cost model but that the policy cannot
execute is no alternative for RL (docs/lab.md, "What RL can and cannot change").
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    import torch
    from lab_errors import load_policy, policy_args  # benchmarks/ is on sys.path when run as a script

    from hicra.lab.model import format_prompt
    from hicra.lab.sampling import sample
    from hicra.lab.sft import HINT, eval_problems

    ap = argparse.ArgumentParser()
    policy_args(ap)
    ap.add_argument("--strategy-hints", type=float, default=0.5)
    args = ap.parse_args()
    model_dir, model, tok, ws, rl = load_policy(args, strategy_hints=args.strategy_hints)
    task = ws.task_mix()
    items = [(p, s) for p in eval_problems(task, args.n_eval) if p.family != "multi"
             for s in task.family_of(p).applicable(p)]
    out = sample(model, [tok(format_prompt(p.question + HINT + s))["input_ids"] for p, s in items],
                 rl.max_new_tokens, tok.eos_token_id, tok.pad_token_id, generator=torch.Generator().manual_seed(0),
                 greedy=True)
    right, named = defaultdict(list), defaultdict(list)
    for (p, s), ids in zip(items, out.response_lists(), strict=True):
        r = task.check(p, tok.decode(ids, skip_special_tokens=True))
        right[(p.family, s)].append(r.correct)
        named[(p.family, s)].append(r.strategy == s)
    print(f"model {model_dir}; greedy, hinted prompts, held-out single-part problems of the first {args.n_eval}")
    print(f"{'family':<9}{'strategy':<13}{'n':>5}{'accuracy':>10}{'executed as named':>19}")
    for key in sorted(right):
        n = len(right[key])
        print(f"{key[0]:<9}{key[1]:<13}{n:>5}{sum(right[key]) / n:>10.2f}{sum(named[key]) / n:>19.2f}")


if __name__ == "__main__":
    main()
