"""Cost of `hicra anchors` and `hicra graphs` for one checkpoint of the quick preset (docs/mechanistic.md).

Builds a run directory whose only snapshot (step 0) is the quick preset's warm-start model (trained once and
cached in ~/.cache/hicra/lab, or $HICRA_CACHE/lab; training it takes several minutes on two cores), with the
preset's tasks, held-out set and response budget, then times both verbs on it with their defaults (N = 32
held-out problems; anchors K = 8 with adaptive stopping; graphs 2 responses per problem, k = 16). One torch
thread. Prints wall-clock seconds, continuations and tokens sampled (how many tries went to their first line
only, how many of those were continued), the per-class summary it measured, and the machine's load average
before and after (the figures are only comparable at similar load).

    nice -n 19 .venv/bin/python benchmarks/mechanistic.py [--n 32] [--k 8] [--no-adaptive] [--skip-graphs]

$HICRA_CACHE_LAB names the warm-start cache folder itself (default ~/.cache/hicra/lab).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def build_run(root: Path, preset: str) -> Path:
    from dataclasses import asdict

    from hicra.dynamics.records import write_run_info
    from hicra.lab.cli import default_cache
    from hicra.lab.presets import get_preset
    from hicra.lab.sft import warm_start

    ws, rl = get_preset(preset)
    model_dir = warm_start(ws, Path(os.environ.get("HICRA_CACHE_LAB", default_cache())), progress=False)
    run = root / "run"
    shutil.copytree(model_dir, run / "checkpoints" / "step_000000", ignore=shutil.ignore_patterns("*.json.tmp*"))
    # the lab v2 lexicon is mined with the warm start and saved beside it (RLConfig.lexicon "warm-start" names it)
    lexicon = str(model_dir / "lexicon.json") if rl.lexicon == "warm-start" else rl.lexicon
    write_run_info(run, {"algorithm": "warm-start", "lexicon": lexicon, "model": str(model_dir),
                         "config": asdict(rl)})
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--no-adaptive", action="store_true")
    p.add_argument("--skip-graphs", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hicra.mechanistic.anchors import AnchorsConfig
    from hicra.mechanistic.run import run_anchors, run_graphs

    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(Path(tmp), args.preset)
        print(f"load average before (1, 5, 15 min): {_load()}; this process's nice: {os.nice(0)}")
        t0 = time.perf_counter()
        res = run_anchors(run, None, args.n, AnchorsConfig(k=args.k, adaptive=not args.no_adaptive), threads=1,
                          progress=False, log=lambda *_: None)
        t_anchors = time.perf_counter() - t0
        cost = res["cost"]["0"]
        print(f"anchors, one checkpoint ({args.preset} preset warm start, N={args.n}, K={args.k}, adaptive="
              f"{not args.no_adaptive}): {t_anchors:.1f} s wall, {cost['sentences']} sentences, {cost['draws']} "
              f"continuations ({cost.get('first_line_draws', 0)} sampled to their first line only, "
              f"{cost.get('completions', 0)} of those continued), {cost['tokens_sampled']} tokens sampled, "
              f"{cost['policy_calls']} sampler calls")
        summary = res["steps"]["0"]
        print(f"  fixed sentences: {summary['n_fixed']} of {summary['n_sentences']} {summary['fixed_by_class']}")
        for key in ("importance", "abs_importance", "tv_distance"):
            print(f"  {key}: " + json.dumps({c: {k: v for k, v in s.items() if k in ('mean', 'interval',
                                                                                   'n_sentences')}
                                             for c, s in summary[key].items()}))
        if not args.skip_graphs:
            t0 = time.perf_counter()
            g = run_graphs(run, None, args.n, threads=1, progress=False, log=lambda *_: None)
            t_graphs = time.perf_counter() - t0
            s = g["steps"]["0"]
            print(f"graphs, one checkpoint (N={args.n} x 2 responses, k=16): {t_graphs:.1f} s wall "
                  f"({json.dumps({k: round(v, 2) for k, v in g['cost']['0'].items()})})")
            print(f"  cycles {s['cycles']}, diameter {s['diameter']}, small-world omega {s['small_world']} "
                  f"({s['small_world_null_reason'] or 'defined'})")
        print(f"load average after (1, 5, 15 min): {_load()}")
    return 0


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
