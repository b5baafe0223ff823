"""Does strategy diversity on held-out problems rise under RL? The warm start against the trained policy, on one
fixed problem set.

    python benchmarks/heldout_exploration.py RUN_DIR [RUN_DIR ...] [--k 8] [--boot 2000] [--json OUT]

A candidate exploration measure for a later controls study (docs/study.md, "Held-out strategy entropy"), measured
after the fact on lab runs. The phase verdict reads exploration from the training rollouts' per-step strategy
entropy (128 responses a step, a fresh draw of prompts each step, noise SD about 0.1 nats). This reads it from the
policy itself, before and after RL, on the same problems at both ends.

For each run, `--k` responses are sampled at the run's RL temperature for each of the run's held-out evaluation
problems (`eval.json`'s `heldout_ids`: the lab's held-out split, disjoint from every training draw), from the warm
start (`checkpoints/step_000000`; sampled once for runs that share a warm start and a held-out set) and from the
trained policy (`model/`), both with sampling seed 0 (`hicra.lab.probes.heldout_strategies`; the lab records the
same in a run with `RLConfig.strategy_k`). The task's checker parses each response's strategy; a label of k
"+"-joined parts counts 1/k for each part (as `hicra.dynamics.metrics.strategy_counts`); unparsed responses are
left out and their share is printed. The figures are `hicra.lab.probes.heldout_strategy_change`'s. Two entropies
(nats):

  H        of all parsed labels, families pooled
  H|fam    sum_f w_f H(parsed labels of family f), w_f the family's share of the problems (the same at both ends):
           a change in how many responses of each family are parsed cannot move the weights

and the change of each (trained minus warm start) with a 95% percentile interval from a paired bootstrap over
problems (both ends resample the same problems; `--boot` draws, seed 0). A run reads `rise` when the interval of
the change of H|fam lies above 0, `fall` when it lies below, `-` otherwise. Unparsed responses (cut off by the
response budget, or malformed) can still move H|fam when they are more common under one strategy than another, so
the change of H|fam is also given on the problems with no unparsed response at either end (`complete`, with
their number). Then, per cell (the run directory's grandparent, as `hicra study` lays runs out: CELL/ARM/RUN), the
number of runs that rise and fall.

One torch thread. A run without run.json (with the config keys used), eval.json (with a non-empty
`heldout_ids`), tokenizer/ or a snapshot: one line naming the file, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _sample(run: Path, snapshot: Path, cfg: dict, ids: list[str], k: int) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from hicra.lab import probes
    from hicra.lab.tasks import TaskMix

    hf_logging.disable_progress_bar()
    task = TaskMix(cfg["tasks"], optimum=cfg["optimum"], heldout_share=cfg["heldout_share"])
    model = AutoModelForCausalLM.from_pretrained(snapshot)
    tok = AutoTokenizer.from_pretrained(run / "tokenizer")
    return probes.heldout_strategies(model, tok, task, [task.problem(i) for i in ids], k, cfg["temperature"],
                                     cfg["max_new_tokens"], seed=0)


CONFIG_KEYS = ("tasks", "optimum", "heldout_share", "temperature", "max_new_tokens")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _load(run: Path) -> tuple[dict, str, list[str]]:
    """(config, warm-start key, held-out ids) of a run; ValueError naming the file and field otherwise."""
    for name in ("run.json", "eval.json", "tokenizer", "checkpoints/step_000000/config.json", "model/config.json"):
        if not (run / name).exists():
            raise ValueError(f"{run / name}: missing")
    try:
        info = json.loads((run / "run.json").read_text())
        cfg = info["config"]
        missing = [k for k in CONFIG_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"{run / 'run.json'}: config has no {missing[0]!r}")
        ids = json.loads((run / "eval.json").read_text())["heldout_ids"]
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{run}: run.json or eval.json: {e!r}") from e
    if not isinstance(ids, list) or not ids:
        raise ValueError(f"{run / 'eval.json'}: heldout_ids is empty or not a list")
    return cfg, info.get("model", str(run)), ids


def main() -> int:
    import torch

    from hicra.lab.probes import heldout_strategy_change

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--k", type=_positive, default=8, help="responses per problem and end (default 8)")
    ap.add_argument("--boot", type=_positive, default=2000, help="bootstrap draws (default 2000)")
    ap.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    jobs = []
    for run in args.runs:
        try:
            cfg, model_key, ids = _load(run)
        except ValueError as e:
            print(f"heldout_exploration: error: {e}", file=sys.stderr)
            return 2
        jobs.append((run, cfg, model_key, ids))
    warm: dict = {}
    reports = []
    print(f"{'cell':44s}{'run':14s}{'H':>14s}{'change [95%]':>22s}{'H|fam':>14s}{'change [95%]':>22s}"
          f"{'unparsed':>16s}  reading   H|fam change on complete problems")
    for run, cfg, model_key, ids in jobs:
        key = (model_key, tuple(ids), cfg["temperature"], cfg["max_new_tokens"])
        if key not in warm:
            warm[key] = _sample(run, run / "checkpoints" / "step_000000", cfg, ids, args.k)
        r = heldout_strategy_change(warm[key], _sample(run, run / "model", cfg, ids, args.k), args.boot)
        r.update({"run": str(run), "cell": run.parent.parent.name, "k": args.k})
        reports.append(r)
        print(f"{r['cell'][:43]:44s}{run.name[:13]:14s}{r['H_before']:6.3f}->{r['H_after']:6.3f}"
              f"{r['H_change']:+8.3f} [{r['H_interval'][0]:+.3f},{r['H_interval'][1]:+.3f}]"
              f"{r['Hfam_before']:6.3f}->{r['Hfam_after']:6.3f}"
              f"{r['Hfam_change']:+8.3f} [{r['Hfam_interval'][0]:+.3f},{r['Hfam_interval'][1]:+.3f}]"
              f"   {r['unparsed_before']:.2f}->{r['unparsed_after']:.2f}  {r['reading']}"
              f"   complete ({r['n_complete']}): " + ("-" if r["Hfam_complete_change"] is None else
                                                     f"{r['Hfam_complete_change']:+.3f} "
                                                     f"[{r['Hfam_complete_interval'][0]:+.3f},"
                                                     f"{r['Hfam_complete_interval'][1]:+.3f}]"), flush=True)
    cells = defaultdict(list)
    for r in reports:
        cells[r["cell"]].append(r)
    print("\nper cell (H|fam):")
    for cell, rs in sorted(cells.items()):
        ch = [r["Hfam_change"] for r in rs]
        sd = float(np.std(ch, ddof=1)) if len(ch) > 1 else float("nan")
        print(f"  {cell:44s} rise {sum(r['reading'] == 'rise' for r in rs)} of {len(rs)}, "
              f"fall {sum(r['reading'] == 'fall' for r in rs)}; mean change {np.mean(ch):+.3f} (SD {sd:.3f})")
    if args.json:
        from hicra.fileio import write_json

        write_json(args.json, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
