"""Warm-start quality over warm-start seeds: held-out accuracy (greedy and sampled), error shares and the skill
probes of the lab's warm start, with the mean and standard deviation over seeds.

    python benchmarks/lab_warm_start.py [--preset quick] [--seeds 0,1,2,3,4] [--n-eval 128]
        [--series max_start=30,max_step=4] [--product a_max=19] [--epochs N] [--n-train N] [--batch-size N]
        [--lr X] [--lr-floor X] [--ema-decay D] [--strategy-hints H] [--favourite-share S] [--strategy-prior P] [--device cpu|cuda] [--lexicon-from DIR]
        [--cache DIR]

`--series` / `--product` update the preset's task specs by those keys (also inside multi-part problems); without them the
preset's tasks are used. Each warm start is cached by a hash of its settings, so a rerun only evaluates. The lab
issue's floor: the greedy accuracy's standard deviation over 5 warm-start seeds <= 5 points. Each line also gives
the planning language of the warm-start corpus (its `warm_start.json`): the lexicon's distinct strategic grams that
occur in it and the share of response tokens they tag as planning (the issue: >= 150 grams, 2-15% of tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.cli import default_cache
    from hicra.lab.presets import get_preset, narrowed_tasks, parse_universe
    from hicra.lab.probes import run_probes
    from hicra.lab.sft import eval_problems, evaluate, warm_start
    from hicra.lab.tasks import STRATEGY_PRIORS

    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--n-eval", type=int, default=128)
    ap.add_argument("--n-probe", type=int, default=32)
    ap.add_argument("--series", help="series universe, e.g. max_start=30,max_step=4")
    ap.add_argument("--product", help="product universe, e.g. a_max=19")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-drill", type=int, help="arithmetic drills added to SFT (WarmStartConfig.n_drill)")
    ap.add_argument("--size", help="model size: 1m, 3m, 10m")
    ap.add_argument("--lr", type=float, help="SFT learning rate")
    ap.add_argument("--lr-floor", type=float, help="the cosine schedule ends at lr-floor x lr (default 0.1)")
    ap.add_argument("--ema-decay", type=float, help="warm start = EMA of the SFT weights with this decay (0 = off)")
    ap.add_argument("--max-response-tokens", type=int, help="corpus traces longer than this are dropped "
                    "(WarmStartConfig.max_response_tokens; the evaluation keeps the preset's RL budget)")
    ap.add_argument("--favourite-share", type=float, help="blind priors: the favourite's probability, the other "
                    "strategies sharing the rest as in the family's table (WarmStartConfig.favourite_share; default "
                    "0 = the table)")
    ap.add_argument("--strategy-hints", type=float, help="share of SFT pairs whose prompt names a uniformly drawn "
                    "strategy (WarmStartConfig.strategy_hints; default 0)")
    ap.add_argument("--arch", help="qwen2, llama or gpt2")
    ap.add_argument("--batch-size", type=int, help="SFT batch size")
    ap.add_argument("--strategy-prior", choices=STRATEGY_PRIORS, help="warm-start corpus knob")
    ap.add_argument("--device", default="cpu", help="where SFT runs (cpu, cuda); evaluation runs on the CPU")
    ap.add_argument("--lexicon-from", help="a warm-start directory whose lexicon.json is reused instead of mining "
                    "one (for machines without the embedding model; the SFT and so these figures do not depend "
                    "on the lexicon)")
    ap.add_argument("--cache", default=str(default_cache()))
    args = ap.parse_args()
    if args.lexicon_from:
        import hicra.lab.sft as sft
        from hicra.planning.lexicon import Lexicon

        source = Path(args.lexicon_from)
        sft.mine_lab_lexicon = lambda *a, **k: (Lexicon.load(source / "lexicon.json"),
                                                {"reused_from": str(source)})
    torch.set_num_threads(1)
    greedy, grams, shares = [], [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        ws, rl = get_preset(args.preset, warm_start_seed=seed,
                            knobs={"strategy_prior": args.strategy_prior} if args.strategy_prior else None)
        if args.series or args.product:
            ws = replace(ws, tasks=narrowed_tasks(parse_universe(args.series), parse_universe(args.product),
                                                  base=ws.tasks))
        ws = replace(ws, **({"epochs": args.epochs} if args.epochs else {}),
                     **({"n_train": args.n_train} if args.n_train else {}),
                     **{k: v for k, v in (("n_drill", args.n_drill), ("size", args.size), ("lr", args.lr),
                                             ("arch", args.arch), ("batch_size", args.batch_size),
                                             ("lr_floor", args.lr_floor), ("ema_decay", args.ema_decay),
                                             ("strategy_hints", args.strategy_hints), ("favourite_share", args.favourite_share),
                                             ("max_response_tokens", args.max_response_tokens))
                        if v is not None})
        t0 = time.perf_counter()
        model_dir = warm_start(ws, Path(args.cache), progress=False, log=lambda *a: None, device=args.device)
        t_ws = time.perf_counter() - t0
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        task = ws.task_mix()
        problems = eval_problems(task, args.n_eval)
        g = evaluate(model, tok, task, problems, rl.max_new_tokens, greedy=True)
        s = evaluate(model, tok, task, problems, rl.max_new_tokens, seed=3)
        t0 = time.perf_counter()
        p = run_probes(model, tok, task, problems[: args.n_probe], rl.max_new_tokens, 0)
        t_probe = time.perf_counter() - t0
        greedy.append(100 * g["accuracy"])
        corpus = json.loads((model_dir / "warm_start.json").read_text())["corpus"]
        grams.append(corpus["distinct_strategic_grams"])
        shares.append(corpus["planning_token_share"])
        print(f"warm-start seed {seed} ({model_dir.name}, {t_ws:.0f} s): greedy {g['accuracy']:.1%} (execution "
              f"{g['errors_execution_share']:.1%}, planning {g['errors_planning_share']:.1%}, format "
              f"{g['errors_format_share']:.1%}), sampled {s['accuracy']:.1%}, strategy entropy "
              f"{g['strategy_entropy']:.2f} nats, cheapest {g['cheapest_share']:.1%}; probes: execution lines "
              f"{p['exec_probe_line_accuracy']:.1%}, planning solved {p['plan_probe_solved']:.1%} ({t_probe:.1f} s); "
              f"corpus: {grams[-1]} strategic grams, {shares[-1]:.1%} of response tokens planning", flush=True)
    sd = statistics.stdev(greedy) if len(greedy) > 1 else float("nan")
    print(f"greedy warm-start accuracy over {len(greedy)} seeds: mean {statistics.mean(greedy):.1f}, "
          f"SD {sd:.1f} points; corpus strategic grams {min(grams)}-{max(grams)}, planning tokens "
          f"{min(shares):.1%}-{max(shares):.1%} of response tokens")


if __name__ == "__main__":
    main()
