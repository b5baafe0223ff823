"""Lab v2 task figures: universe sizes, how often a run's prompt draws repeat, strategy entropies of the optima and
of the blind prior, and the cheapest-strategy shares per family.

    python benchmarks/lab_tasks.py [--preset quick] [--series max_start=30,max_step=5] [--product a_max=19]
        [--steps N (default: the preset's)] [--prompts 16] [--seeds 5]

Without `--series` / `--product`: the preset's tasks (default `--preset quick`, `hicra.lab.presets.TASKS`;
`--preset default` has `TASKS_PAIR_EVEN` since session 31; the figures of docs/lab.md measured before
2026-12-01's session 18 used `--preset default-14ep`); with them, the
preset's tasks updated by those keys (`hicra.lab.presets.narrowed_tasks`, also inside multi-part problems). Also prints the
preset warm start's own prior's strategy entropy (its `strategy_prior` at its `favourite_share`).

Prints, per family, the share of a default-preset run's training draws (steps x prompts, drawn as the RL loop
draws them) that repeat an earlier draw, for several seeds; the issue's floor is 5%.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

from hicra.lab.presets import BENCHMARK_PRESET, BENCHMARK_PRESET_HELP, PRESETS, narrowed_tasks, parse_universe
from hicra.lab.tasks import TaskMix, make_task, repeat_share, strategy_entropy
from hicra.lab.tasks.base import entropy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=tuple(PRESETS), default=BENCHMARK_PRESET, help=BENCHMARK_PRESET_HELP)
    ap.add_argument("--steps", type=int, help="RL steps of the run whose draws are counted (default: the preset's)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--series", help="series universe, e.g. max_start=30,max_step=5")
    ap.add_argument("--product", help="product universe, e.g. a_max=19")
    args = ap.parse_args()
    ws, rl = PRESETS[args.preset]
    args.steps = args.steps or rl.steps
    specs = (narrowed_tasks(parse_universe(args.series), parse_universe(args.product), base=ws.tasks)
             if args.series or args.product
             else ws.tasks)
    print(f"tasks: {specs}")
    for optimum in ("diverse", "single-route"):
        for fam in (make_task(specs[0], optimum), make_task(specs[1], optimum)):
            cheapest = Counter(fam.cheapest(p) for p in fam.universe())
            rng = random.Random(0)
            blind = Counter(fam.choose(p, rng, "blind") for p in fam.universe())
            n = sum(cheapest.values())
            shares = ", ".join(f"{k} {v / n:.1%}" for k, v in cheapest.most_common())
            print(f"{optimum:12s} {fam.family:8s} universe {n:6d}  cheapest: {shares}  entropy optimum "
                  f"{entropy(cheapest):.3f} blind {entropy(blind):.3f} nats")
        mix = TaskMix(specs, optimum)
        print(f"{optimum:12s} mix      strategy entropy: optimum {strategy_entropy(mix, 'oracle'):.3f}, blind prior "
              f"{strategy_entropy(mix, 'blind'):.3f}, the preset's ({ws.strategy_prior}, favourite share "
              f"{ws.favourite_share or 'as tabled'}) {strategy_entropy(mix, ws.strategy_prior, favourite_share=ws.favourite_share):.3f} "
              "nats (20,000 draws)")
    mix = TaskMix(specs)
    draws = args.steps * args.prompts
    worst = 0.0
    for seed in range(args.seeds):
        shares = repeat_share(mix, draws, seed)
        worst = max(worst, *shares.values())
        print(f"repeat share, {draws} draws, seed {seed}: " + ", ".join(f"{k} {v:.1%}" for k, v in sorted(
            shares.items())))
    print(f"worst repeat share over {args.seeds} seeds: {worst:.1%}")


if __name__ == "__main__":
    main()
