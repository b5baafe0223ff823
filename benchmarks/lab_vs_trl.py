"""Steps per second of the lab's RL loop vs TRL's GRPOTrainer, same model, batch, group size, completion length.

Both sides: the same model (default: the --preset's (quick's) warm-start model, from the warm-start cache or trained
first; --model DIR for another; --random for a freshly initialised one), --prompts prompts x --group samples per
step from the same task mix, up to --tokens completion tokens, temperature 1, ONE gradient step per rollout batch
(lab: minibatches=1; TRL: steps_per_generation=1, num_iterations=1), no KL, the lab task checkers as the reward,
CPU (TRL: use_cpu=True, no bf16). Each side runs --warmup steps first, then --steps timed steps.

Runs, in order: the lab at --threads torch threads (default 1) with its plain-torch sampler (`FastDecoder`), the
lab with the HF-forward sampler (`--no-hf-lab` skips it; the figure before the fast sampler), TRL at --threads,
then the lab and TRL at torch's default thread count (skipped when it equals --threads). Printed: the load
average, steps/s of each run, the ratio with each side at its own best thread count, and LAST the like-for-like
figure `ratio: X` = lab steps/s / TRL steps/s, both at --threads threads.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lab_vs_trl.py --model WARM_START_DIR   # last line: ratio: X

`--layout split|joined` sets the lab's teacher-forced batch layout (`RLConfig.logprob_layout`; default: the
preset's). The default batch is the one `hicra lab` runs (its presets: 16 prompts x 8 samples). Measured figures, also for
8 x 8 and at each side's best thread count: docs/lab.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build(size: str, out: Path, tasks: list[dict]):
    from hicra.lab.model import build_model, format_prompt, train_tokenizer
    from hicra.lab.sft import build_corpus
    from hicra.lab.tasks import CorpusKnobs, TaskMix

    task = TaskMix(tasks)
    pairs = build_corpus(task, 1000, CorpusKnobs(), seed=0)
    tok = train_tokenizer([format_prompt(p.question) + t for p, t in pairs], vocab_size=384)
    model = build_model(tok, size=size, seed=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return task


def run_lab(model_dir: Path, args, threads: int, backend: str = "auto", tokens: list | None = None) -> float:
    """Steps/s of the lab loop over the timed steps; appends (distinct prompts' tokens, response tokens, rows) of
    each timed step to `tokens` when given."""
    from transformers import AutoTokenizer

    from hicra.dynamics.records import read_rollouts
    from hicra.lab import sampling
    from hicra.lab.presets import PRESETS
    from hicra.lab.rl import RLConfig, run_rl

    sampling.DEFAULT_BACKEND = backend  # "hf": the sampler the lab used before FastDecoder

    cfg = RLConfig(algo="grpo", tasks=PRESETS[args.preset][0].tasks, steps=args.warmup + args.steps, prompts_per_step=args.prompts,
                   group_size=args.group, max_new_tokens=args.tokens, minibatches=1, n_eval=1, eval_every=0,
                   snapshots=False, checkpoint_every=10**6, threads=threads, lr=1e-4,
                   skip_zero_advantage=not args.full_pass, logprob_layout=args.layout)
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            out = run_rl(cfg, model_dir, Path(run_dir) / "run", progress=False, log=lambda *a: None)
            if tokens is not None:
                tok = AutoTokenizer.from_pretrained(model_dir)
                table = read_rollouts(Path(run_dir) / "run",
                                      columns=["step", "prompt", "token_ids", "reward"]).to_pylist()
                for step in range(args.warmup, args.warmup + args.steps):
                    rows = [r for r in table if r["step"] == step]
                    # rows that carry a gradient: groups (consecutive rows) whose rewards differ
                    groups = [rows[i: i + args.group] for i in range(0, len(rows), args.group)]
                    live = [r for g in groups if len({x["reward"] for x in g}) > 1 or args.full_pass for r in g]
                    tokens.append((*_token_counts(tok, rows), *_token_counts(tok, live)))
    finally:
        sampling.DEFAULT_BACKEND = "auto"
    timed = out["timings"][args.warmup :]
    return len(timed) / sum(t["seconds"] for t in timed)


def _token_counts(tok, rows) -> tuple[int, int, int]:
    """(distinct prompts' tokens, response tokens, rows): a group's rows share their prompt."""
    from hicra.lab.model import format_prompt

    prompts = {r["prompt"] for r in rows}
    return (sum(len(tok(format_prompt(q))["input_ids"]) for q in prompts), sum(len(r["token_ids"]) for r in rows),
            len(rows))


def run_trl(model_dir: Path, task, args, threads: int) -> float:
    import json

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from hicra.lab.model import format_prompt
    from hicra.lab.tasks import Problem

    torch.set_num_threads(threads)
    rng = random.Random(0)
    n_steps = args.warmup + args.steps
    problems = [task.sample(rng) for _ in range(args.prompts * n_steps)]
    ds = Dataset.from_list([{"prompt": format_prompt(p.question), "problem": json.dumps(p.__dict__)}
                            for p in problems])

    def reward(prompts, completions, problem, **kwargs):
        return [task.check(Problem(**json.loads(pj)), c).reward for c, pj in zip(completions, problem, strict=True)]

    class Timer(TrainerCallback):
        def __init__(self):
            self.starts, self.ends = [], []

        def on_step_begin(self, *a, **k):
            self.starts.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            self.ends.append(time.perf_counter())

    timer = Timer()
    batch = args.prompts * args.group
    cfg = GRPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, per_device_train_batch_size=batch,
                     num_generations=args.group, max_completion_length=args.tokens, max_steps=n_steps,
                     learning_rate=1e-4, beta=0.0, epsilon=0.2, epsilon_high=0.28, loss_type="bnpo",
                     scale_rewards="none", temperature=1.0, report_to=[], save_strategy="no",
                     logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=0)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=reward, args=cfg,
                          train_dataset=ds, processing_class=AutoTokenizer.from_pretrained(model_dir),
                          callbacks=[timer])
    trainer.train()
    # a step spans from one step's start to the next one's (the trainer's own bookkeeping included)
    marks = timer.starts[args.warmup :] + [timer.ends[-1]]
    return (len(marks) - 1) / (marks[-1] - marks[0])


def flop_floor(model_dir: Path, tokens: list, threads: int) -> dict:
    """A lower bound on the lab's step time: the matrix-multiply FLOPs a step cannot avoid, at the best rate this
    machine's torch.mm reaches on the model's own layer shapes.

    A step must pass each token it feeds to the network once when sampling, and once more when training (forward +
    backward = 3 passes' worth) each token of a row that carries a gradient (a group whose rewards differ; every
    row with --full-pass): 2 FLOPs per linear weight per token and pass. Counted generously low: a prompt
    once per group (its rows share it), no padding, no pass for a response's last token (nothing reads its
    output), the lm_head only where a response token is predicted, and no attention scores, norms or elementwise
    work. The rate is the best of several timed torch.mm calls at each layer shape with 1024 rows (a training
    micro-batch's size)."""
    import time

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    linear = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = model.get_output_embeddings().weight.numel()
    body = sum(w.numel() for w in linear) - head
    flops_per_step = [2 * (body * (p + r - rows) + head * r) + 2 * 3 * (body * (tp + tr - trows) + head * tr)
                      for p, r, rows, tp, tr, trows in tokens]
    best = 0.0
    for shape in {tuple(w.shape) for w in linear}:
        a, b = torch.randn(1024, shape[1]), torch.randn(shape[1], shape[0])
        for _ in range(5):
            torch.mm(a, b)
        t = time.perf_counter()
        for _ in range(20):
            torch.mm(a, b)
        best = max(best, 20 * 2 * 1024 * shape[0] * shape[1] / (time.perf_counter() - t))
    flops = sum(flops_per_step) / len(flops_per_step)
    return {"gflop": flops / 1e9, "gflops_rate": best / 1e9, "seconds": flops / best}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick", help="lab preset whose tasks (and, without --model, warm start) "
                   "are used (default quick; the figures before 2026-12-01: quick-14ep)")
    p.add_argument("--model", help="HF model directory (default: the preset's warm start)")
    p.add_argument("--random", action="store_true", help="a freshly initialised model instead (--size)")
    p.add_argument("--size", default="1m")
    p.add_argument("--prompts", type=int, default=16,
                   help="prompts per step (default 16: the lab presets' batch, 16 x 8 = 128 rollouts)")
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--tokens", type=int, default=192, help="completion tokens (default 192: the lab presets')")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the like-for-like comparison (default 1: the lab's default, TRL's best "
                        "on 2 shared cores)")
    p.add_argument("--layout", choices=["split", "joined"],
                   help="the lab's teacher-forced batch layout (default: the preset's RLConfig.logprob_layout)")
    p.add_argument("--no-hf-lab", action="store_true", help="skip the lab run with the HF-forward sampler")
    p.add_argument("--full-pass", action="store_true", help="the lab trains on every row, as TRL does (default: "
                   "rows whose advantages are all 0 are left out of the backward pass, `skip_zero_advantage`)")
    args = p.parse_args(argv)
    import torch

    default_threads = torch.get_num_threads()
    from hicra.lab.presets import PRESETS
    from hicra.lab.tasks import TaskMix

    def load() -> str:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())

    print(f"start: {load()}", flush=True)
    lab, trl = {}, {}
    tasks = PRESETS[args.preset][0].tasks
    args.layout = args.layout or PRESETS[args.preset][1].logprob_layout
    print(f"lab layout: {args.layout}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        task = TaskMix(tasks)
        if args.random:
            model_dir = Path(d) / "model"
            build(args.size, model_dir, tasks)
            name = f"random {args.size}"
        elif args.model:
            model_dir, name = Path(args.model), args.model
        else:
            from hicra.lab.cli import default_cache
            from hicra.lab.presets import get_preset
            from hicra.lab.sft import warm_start

            model_dir = warm_start(get_preset(args.preset)[0], default_cache(), progress=False)
            name = f"{args.preset} warm start {model_dir.name}"
        tokens: list = []
        lab[args.threads] = run_lab(model_dir, args, args.threads, tokens=tokens)
        print(f"lab ({args.threads} thread(s), fast sampler): {lab[args.threads]:.3f} steps/s ({load()})",
              flush=True)
        floor = flop_floor(model_dir, tokens, args.threads)
        if not args.no_hf_lab:
            hf = run_lab(model_dir, args, args.threads, backend="hf")
            print(f"lab ({args.threads} thread(s), HF-forward sampler): {hf:.3f} steps/s ({load()})", flush=True)
        trl[args.threads] = run_trl(model_dir, task, args, args.threads)
        print(f"trl ({args.threads} thread(s)): {trl[args.threads]:.3f} steps/s ({load()})", flush=True)
        if default_threads != args.threads:
            lab[default_threads] = run_lab(model_dir, args, default_threads)
            print(f"lab ({default_threads} thread(s), torch's default): {lab[default_threads]:.3f} steps/s "
                  f"({load()})", flush=True)
            trl[default_threads] = run_trl(model_dir, task, args, default_threads)
            print(f"trl ({default_threads} thread(s), torch's default): {trl[default_threads]:.3f} steps/s "
                  f"({load()})", flush=True)
    print(f"setup: model {name}, {args.prompts} prompts x {args.group} samples, {args.tokens} completion "
          f"tokens, one gradient step per rollout batch, {args.steps} timed steps after {args.warmup} warm-up")
    best_lab, best_trl = max(lab, key=lab.get), max(trl, key=trl.get)
    print(f"ratio, each at its best thread count (lab {best_lab}, TRL {best_trl}): "
          f"{lab[best_lab] / trl[best_trl]:.2f}")
    bound = 1 / floor["seconds"] / trl[args.threads]
    print(f"lab FLOP floor at {args.threads} thread(s): {floor['gflop']:.1f} GFLOP of matmuls per step (real tokens "
          f"only) at {floor['gflops_rate']:.0f} GFLOP/s (best torch.mm on the model's shapes) = "
          f"{floor['seconds']:.3f} s/step; the lab runs at {floor['seconds'] * lab[args.threads]:.0%} of it; no "
          f"fp32 loop doing the same work can exceed ratio {bound:.2f} against this TRL figure")
    print(f"like for like, both at {args.threads} thread(s): lab / TRL")
    print(f"ratio: {lab[args.threads] / trl[args.threads]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
