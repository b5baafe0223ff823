"""The execution probe of finished lab runs, greedy and at RL's sampling temperature, at chosen checkpoints.

    python benchmarks/lab_exec_probe.py RUN_DIR [RUN_DIR ...] [--steps 0,80] [--n 64] [--temperature T]

For each run and each step in `--steps` (a `checkpoints/step_NNNNNN/` snapshot; step 0 is the warm start) this
teacher-forces the oracle plans of the run's first `--n` held-out problems (`eval_problems(task, n_eval)`, the
probe set of `probes.jsonl` when `--n` is the run's `n_probe`) and prints the share of lines greedy decoding writes
right (`exec_probe_line_accuracy`) and the mean probability that sampling at `--temperature` (default: the run's
RL temperature) writes them right (`exec_probe_line_prob`, `hicra.lab.probes.execution_probe_probability`), then
per step pair the change of each, and over runs the mean, SD and count of rises. Runs made before the sampled probe
existed lack it in `probes.jsonl`; this computes both from the snapshots. One torch thread. A missing run file or
snapshot: one line naming it, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.probes import execution_line_scores
    from hicra.lab.sft import eval_problems
    from hicra.lab.tasks import TaskMix
    from hicra.stats import describe_changes

    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--steps", default="0,80", help="checkpoint steps, first and last compared (default 0,80)")
    ap.add_argument("--n", type=int, default=None, help="held-out problems (default: the run's n_probe)")
    ap.add_argument("--temperature", type=float, default=None, help="default: the run's RL temperature")
    args = ap.parse_args()
    if args.temperature is not None and args.temperature <= 0:
        print("lab_exec_probe: error: --temperature must be > 0 (the greedy column is the T -> 0 limit)", file=sys.stderr)
        return 2
    steps = [int(s) for s in args.steps.split(",")]
    torch.set_num_threads(1)

    changes: dict[str, list[float]] = {"greedy": [], "probability": []}
    print(f"{'run':36s} " + " ".join(f"{'step ' + str(s):>17s}" for s in steps) + f" {'change (greedy, prob)':>24s}")
    for run in args.runs:
        try:
            cfg = json.loads((run / "run.json").read_text())["config"]
            snaps = [run / "checkpoints" / f"step_{s:06d}" for s in steps]
            for snap in snaps:
                if not (snap / "config.json").is_file():
                    raise ValueError(f"no snapshot {snap}")
            task = TaskMix(cfg["tasks"], optimum=cfg["optimum"], heldout_share=cfg["heldout_share"])
            problems = eval_problems(task, cfg["n_eval"])[: args.n or cfg["n_probe"]]
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
            print(f"lab_exec_probe: error: {run}: {e}", file=sys.stderr)
            return 2
        temperature = cfg["temperature"] if args.temperature is None else args.temperature
        tok = AutoTokenizer.from_pretrained(run / "tokenizer")
        scores = []
        for snap in snaps:
            model = AutoModelForCausalLM.from_pretrained(snap).eval()
            scores.append(execution_line_scores(model, tok, task, problems, temperature))
        first, last = scores[0], scores[-1]
        for key in changes:
            changes[key].append(last[key] - first[key])
        print(f"{str(run)[-36:]:36s} " + " ".join(f"{s['greedy']:8.3f} {s['probability']:8.3f}" for s in scores)
              + f" {last['greedy'] - first['greedy']:+11.3f} {last['probability'] - first['probability']:+11.3f}")
    print(f"\n(greedy line accuracy, probability at T = {temperature}; {len(problems)} problems, "
          f"{scores[0]['n_lines']} lines in the last run)")
    for key, values in changes.items():
        print(f"{key:11s} change step {steps[0]} -> {steps[-1]}: {describe_changes(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
