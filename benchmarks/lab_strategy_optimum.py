"""What choosing a strategy by problem is worth to a lab policy, measured from the policy itself.

    python benchmarks/lab_strategy_optimum.py RUN_DIR [RUN_DIR ...] [--steps 0,80] [--n 256] [--k 8]
                                              [--families series,product] [--json OUT]

The lab's "diverse optimum" is the cost model's (fewest and easiest lines); whether a policy gains by choosing
strategies by problem depends on how well it executes each. For each run and each step in `--steps` (a
`checkpoints/step_NNNNNN/` snapshot; step 0 is the warm start, measured once per warm start) this samples `--k`
responses at the run's RL temperature for each of `--n` held-out problems per family and each strategy named in the
prompt, and `--k` with the plain prompt (`hicra.lab.probes.strategy_accuracy`), then prints per family
(`hicra.lab.probes.class_optimum`, cross-fitted over two folds of problems):

  own       accuracy of the policy's own choice (plain prompts)
  cost      accuracy when told the cost model's cheapest strategy (the lab's nominal optimum, as this policy executes it)
  single    accuracy of the one best strategy everywhere (among those that apply to every problem)
  class     accuracy of choosing the best strategy per decision class (`Family.decision_class`)
  gain      class - single: what planning by problem can earn
  H_class   strategy entropy (nats) of the per-class choice, picked on all problems (in-sample: with few problems a
            class, noise makes it look more diverse than it is; read the pooled class table); H_cost the cost
            model's over the same problems
  follow    share of hinted responses that executed the strategy named (a policy that ignores hints measures nothing)
  own_best  share of own-choice responses that executed their class's measured best
  own_info  I(own executed strategy; class), nats, plug-in (0 when the own choice is blind to the class; the
            plug-in bias under independence, (classes - 1)(labels - 1)/2N, is printed with the mean)

then over runs the mean and SD of each per step and family, and the class table pooled over the runs at each step
(every class's accuracy per strategy). `--json` writes every report. One torch thread. A missing run file or
snapshot: one line naming it, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# report key -> printed header (the docstring's names)
COLUMNS = {"own": "own", "cost": "cost", "single_route": "single", "by_class": "class", "gain": "gain",
           "entropy_by_class": "H_class", "entropy_cost": "H_cost", "followed": "follow", "own_best": "own_best",
           "own_information": "own_info"}


def cost_model_figures(task, rows: list[dict]) -> dict:
    """Per family: accuracy when told the cost model's cheapest strategy, the entropy of those strategies, and the
    share of hinted responses that followed the hint."""
    from hicra.lab.tasks.base import entropy

    out = defaultdict(lambda: {"acc": [], "labels": defaultdict(int), "followed": []})
    for r in rows:
        if r["strategy"] is None:
            continue
        f = out[r["family"]]
        f["followed"].append(r["n_followed"] / r["k"])
        p = task.problem(r["problem_id"])
        if r["strategy"] == task.family_of(p).optimal_label(p):
            f["acc"].append(r["n_correct"] / r["k"])
            f["labels"][r["strategy"]] += 1
    return {fam: {"cost": statistics.mean(f["acc"]), "entropy_cost": entropy(f["labels"]),
                  "followed": statistics.mean(f["followed"])} for fam, f in out.items()}


def main() -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.probes import class_optimum, strategy_accuracy
    from hicra.lab.tasks import TaskMix

    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--steps", default="0,80", help="checkpoint steps (default 0,80; step 0 once per warm start)")
    ap.add_argument("--n", type=int, default=256, help="held-out problems per family (default 256)")
    ap.add_argument("--k", type=int, default=8, help="samples per (problem, strategy) (default 8)")
    ap.add_argument("--families", default="series,product")
    ap.add_argument("--json", type=Path, default=None, help="write every report here")
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    families = args.families.split(",")
    torch.set_num_threads(1)
    jobs = []  # (run, step, snapshot, cfg)
    seen_warm = set()
    for run in args.runs:
        try:
            info = json.loads((run / "run.json").read_text())
            cfg = info["config"]
            specs = [s for s in cfg["tasks"] if s["family"] in families]
            if len(specs) != len(families):
                raise ValueError(f"families {families} not all in the run's tasks")
            for s in steps:
                snap = run / "checkpoints" / f"step_{s:06d}"
                if not (snap / "config.json").is_file():
                    raise ValueError(f"no snapshot {snap}")
                if s == 0:  # runs from one warm start share their step 0 (run.json's `model`)
                    if info.get("model", str(run)) in seen_warm:
                        continue
                    seen_warm.add(info.get("model", str(run)))
                jobs.append((run, s, snap, cfg, specs))
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
            print(f"lab_strategy_optimum: error: {run}: {e}", file=sys.stderr)
            return 2
    reports, pooled = [], defaultdict(list)
    print(f"{'run':28s}{'step':>5s} {'family':8s}" + "".join(f"{h:>9s}" for h in COLUMNS.values()))
    for run, step, snap, cfg, specs in jobs:
        task = TaskMix(specs, optimum=cfg["optimum"], heldout_share=cfg["heldout_share"])
        problems = [p for s in specs for p in TaskMix([s], optimum=cfg["optimum"],
                                                      heldout_share=cfg["heldout_share"]).heldout(args.n)]
        tok = AutoTokenizer.from_pretrained(run / "tokenizer")
        model = AutoModelForCausalLM.from_pretrained(snap)
        rows = strategy_accuracy(model, tok, task, problems, args.k, cfg["temperature"], cfg["max_new_tokens"],
                                 seed=cfg["seed"])
        pooled[step] += [{**r, "problem_id": f"{run}/{r['problem_id']}"} for r in rows]  # runs kept apart
        report = class_optimum(rows)
        extra = cost_model_figures(task, rows)
        for fam in families:
            r = {**report[fam], **extra[fam]}
            print(f"{str(run)[-28:]:28s}{step:>5d} {fam:8s}" + "".join(f"{r[c]:9.3f}" for c in COLUMNS), flush=True)
            reports.append({"run": str(run), "step": step, "family": fam, **r})
    print("\nover runs (mean, SD, n):")
    for step in steps:
        for fam in families:
            cells = [r for r in reports if r["step"] == step and r["family"] == fam]
            line = f"step {step:<4d} {fam:8s}"
            for c in COLUMNS:
                v = [r[c] for r in cells]
                sd = statistics.stdev(v) if len(v) > 1 else float("nan")
                line += f"  {COLUMNS[c]} {statistics.mean(v):.3f} ({sd:.3f})"
            bias = statistics.mean(r["own_information_bias"] for r in cells)
            print(line + f"  n={len(cells)}  (own_information plug-in bias ~{bias:.3f})")
    for step in steps:
        print(f"\nclasses pooled over runs at step {step} (accuracy when told each strategy; * = best):")
        for fam, rep in class_optimum(pooled[step]).items():
            for c, v in rep["classes"].items():
                accs = "  ".join(f"{'*' if s == v['best'] else ' '}{s} {a:.2f}" for s, a in v["accuracy"].items())
                chosen = " ".join(f"{s} {x:.2f}" for s, x in v["own_choice"].items() if x >= 0.01)
                print(f"  {fam:8s}{c:22s}{v['share']:6.3f}  {accs}   | own choice: {chosen}")
    if args.json:
        from hicra.fileio import write_json

        write_json(args.json, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
