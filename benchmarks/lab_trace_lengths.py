"""How long the warm-start corpus's traces are, per family and strategy, against a token budget.

    python benchmarks/lab_trace_lengths.py [--preset quick] [--strategy-prior P] [--series k=v,...]
        [--product k=v,...] [--strategy-hints H] [--n 3000] [--budget 192] [--cap 320] [--tokenizer DIR]

Builds `--n` corpus pairs of the configured recipe (the same `build_corpus` the warm start uses), keeps the unhinted
ones (the prior's own choice), tokenizes each trace (plus eos) with `--tokenizer` (a warm start's directory; its
BPE covers the lab's characters) and prints, per (family, strategy): how many traces, their mean length and the
share longer than `--budget` (RL's response budget: such a response is cut and earns 0) and than `--cap` (the
warm start's `max_response_tokens`: such a trace is dropped from SFT). A strategy that often exceeds the budget
fails by construction on those problems, whatever the model learns: a lever for a problem-dependent optimum.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from transformers import AutoTokenizer

    from hicra.lab.presets import (
        BENCHMARK_PRESET,
        BENCHMARK_PRESET_HELP,
        get_preset,
        narrowed_tasks,
        parse_universe,
    )
    from hicra.lab.sft import HINT, build_corpus
    from hicra.lab.tasks import STRATEGY_PRIORS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=BENCHMARK_PRESET, help=BENCHMARK_PRESET_HELP)
    ap.add_argument("--strategy-prior", choices=STRATEGY_PRIORS)
    ap.add_argument("--series")
    ap.add_argument("--product")
    ap.add_argument("--strategy-hints", type=float, default=0.0)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--budget", type=int, default=192)
    ap.add_argument("--cap", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", required=True, help="a warm start's directory")
    args = ap.parse_args()
    ws, _ = get_preset(args.preset, knobs={"strategy_prior": args.strategy_prior} if args.strategy_prior else None)
    if args.series or args.product:
        ws = replace(ws, tasks=narrowed_tasks(parse_universe(args.series), parse_universe(args.product), base=ws.tasks))
    task = ws.task_mix()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    stats: dict = defaultdict(list)
    for problem, trace in build_corpus(task, args.n, ws.knobs(), seed=args.seed, strategy_hints=args.strategy_hints):
        if HINT in problem.question:
            continue
        stats[(problem.family, task.check(problem, trace).strategy)].append(len(tok(trace)["input_ids"]) + 1)
    print(f"{'family':8s} {'strategy':24s} {'traces':>6s} {'mean tokens':>11s} {'> budget':>9s} {'> cap':>7s}"
          f"   (budget {args.budget}, cap {args.cap})")
    for (family, strategy), lengths in sorted(stats.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        n = len(lengths)
        print(f"{family:8s} {str(strategy):24s} {n:6d} {sum(lengths) / n:11.1f} "
              f"{sum(x > args.budget for x in lengths) / n:9.3f} {sum(x > args.cap for x in lengths) / n:7.3f}")


if __name__ == "__main__":
    main()
