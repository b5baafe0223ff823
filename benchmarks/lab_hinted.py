"""Can a lab policy execute each strategy when asked? Greedy accuracy per (family, strategy) on held-out
single-part problems whose prompt names the strategy (`question + hicra.lab.sft.HINT + strategy`, the form of the
corpus's hinted pairs), and the share of responses that executed the named strategy
(`hicra.lab.probes.strategy_accuracy`, greedy; `benchmarks/lab_strategy_optimum.py` samples at RL's temperature
and asks what choosing by problem class is worth).

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
    from lab_errors import load_policy, policy_args  # benchmarks/ is on sys.path when run as a script

    from hicra.lab.probes import strategy_accuracy
    from hicra.lab.sft import eval_problems

    ap = argparse.ArgumentParser()
    policy_args(ap)
    ap.add_argument("--strategy-hints", type=float, default=0.5)
    args = ap.parse_args()
    model_dir, model, tok, ws, rl = load_policy(args, strategy_hints=args.strategy_hints)
    task = ws.task_mix()
    problems = [p for p in eval_problems(task, args.n_eval) if p.family != "multi"]
    rows = strategy_accuracy(model, tok, task, problems, k=1, temperature=1.0, max_new_tokens=rl.max_new_tokens,
                             greedy=True, own=False)
    right, named = defaultdict(list), defaultdict(list)
    for r in rows:
        right[(r["family"], r["strategy"])].append(r["n_correct"])
        named[(r["family"], r["strategy"])].append(r["n_followed"])
    print(f"model {model_dir}; greedy, hinted prompts, held-out single-part problems of the first {args.n_eval}")
    print(f"{'family':<9}{'strategy':<13}{'n':>5}{'accuracy':>10}{'executed as named':>19}")
    for key in sorted(right):
        n = len(right[key])
        print(f"{key[0]:<9}{key[1]:<13}{n:>5}{sum(right[key]) / n:>10.2f}{sum(named[key]) / n:>19.2f}")


if __name__ == "__main__":
    main()
