"""HICRA's step-time overhead over TRL's plain GRPOTrainer, same setup.

Both trainers get the same tiny lab model, data, seed and config; the learning rate is 0 so both sample exactly
the same completions every step and the only difference in work is HICRA's: tagging the completions (planning
mask), the [B, T] advantages and the hicra/* metrics. Steps (generate + score + loss + backward; the optimizer is
left out, it is the same for both) alternate between the arms one by one, and the
median step time of each is compared, which cancels most of the noise of a shared machine.

Two figures:
  ratio (logging off):  HICRA with `log_rollouts=False` (the algorithm alone);
  ratio (logging on):   HICRA writing rollout rows with token log-probs and entropies (one extra no-grad forward
                        pass of the policy per generation, for `hicra analyze`).
The last line `ratio: X` is the algorithm-alone figure, the median over steps of the paired per-step ratio
(floor: <= 1.05).

    HF_HUB_OFFLINE=1 python benchmarks/trl_overhead.py [--size 3m] [--steps 30] [--length 48] [--cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from hicra.integrations.trl import HICRAConfig, HICRATrainer
from hicra.lab.model import build_model, train_tokenizer
from hicra.planning import Lexicon


def timed_step(trainer, rows: list[dict], seed: int) -> float:
    """One GRPO step without the optimizer (learning rate 0): generate + score (+ HICRA), loss, backward."""
    trainer.model.train()
    torch.manual_seed(seed)  # the same seed for every arm: the same completions
    t0 = time.perf_counter()
    inputs = trainer._prepare_inputs(rows)
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    if getattr(trainer, "rollout_logger", None) is not None:
        trainer.rollout_logger.flush()
    elapsed = time.perf_counter() - t0
    trainer.model.zero_grad()
    trainer.last_inputs = inputs
    return elapsed


def hicra_additions_seconds(trainer, repeats: int = 20) -> float:
    """Direct timing of the work HICRA adds to a step (mask, [B, T] advantages, metrics) on its last batch."""
    from hicra.algorithms import hicra_advantages

    inputs = trainer.last_inputs
    ids, cmask = inputs["completion_ids"], inputs["completion_mask"].bool()
    base = trainer.last_hicra_batch["base_advantages"][: ids.size(0)]
    t0 = time.perf_counter()
    for _ in range(repeats):
        sg = trainer.tagger.padded_masks(ids, cmask)
        mask = trainer._planning_mask(sg, cmask, None)
        adv = hicra_advantages(base, mask, trainer.args.alpha)
        trainer._log_hicra_metrics("train", adv, mask, cmask, ids)
    return (time.perf_counter() - t0) / repeats


def reward(completions, **kwargs):
    return [float(len(c) % 3 == 0) for c in completions]


def make(kind: str, model_dir: Path, out: Path, length: int, cuda: bool = False, **extra):
    common = dict(output_dir=str(out), use_cpu=not cuda, bf16=False, per_device_train_batch_size=16,
                  num_generations=4, max_completion_length=length, max_steps=1, learning_rate=0.0,
                  logging_steps=10_000, report_to=[], save_strategy="no", seed=0, scale_rewards="none",
                  epsilon_high=0.28, loss_type="dapo", disable_tqdm=True)
    data = Dataset.from_list([{"prompt": f"reach {a * b} using {a} {b}\n"} for a in range(1, 9) for b in range(1, 9)])
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if kind == "grpo":
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=GRPOConfig(**common), train_dataset=data,
                              processing_class=tok)
    else:
        trainer = HICRATrainer(model=model, reward_funcs=reward, args=HICRAConfig(**common, **extra),
                               train_dataset=data, processing_class=tok)
    trainer.current_gradient_accumulation_steps = 1  # set by train(); the steps here are driven by hand
    return trainer, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="3m")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per arm (after one warm-up step)")
    ap.add_argument("--length", type=int, default=48, help="max completion length")
    ap.add_argument("--cuda", action="store_true", help="run on the GPU (default: CPU)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one thread: less sensitive to other work on a shared machine
    lexicon = Lexicon.preset("lab")
    texts = [f"reach {a * b} using {a} {b}\n" for a in range(1, 9) for b in range(1, 9)]
    texts += list(lexicon.texts) * 30 + ["so the answer is 12. let's try 3 * 4 = 12. dead end."] * 30
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok = train_tokenizer(texts, vocab_size=512)
        tok.save_pretrained(tmp / "model")
        build_model(tok, size=args.size).save_pretrained(tmp / "model")
        # An untrained model writes no lab phrases; a lexicon of every alphabetic vocabulary token makes a large
        # share of completion tokens planning tokens, so the mask work is at its heaviest (worst case).
        words = sorted({w for w in (tok.decode([i]).strip().lower() for i in range(len(tok))) if w.isalpha()})
        lex_path = Lexicon(words, name="letters").save(tmp / "letters.json")
        arms = {"grpo": {}, "hicra": dict(alpha=0.2, lexicon=str(lex_path), log_rollouts=False),
                "hicra+log": dict(alpha=0.2, lexicon=str(lex_path), log_rollouts=True)}
        trainers = {k: make("grpo" if k == "grpo" else "hicra", tmp / "model", tmp / k, args.length, args.cuda,
                            **extra)
                    for k, extra in arms.items()}
        times = {k: [] for k in arms}
        prompts = list(trainers["grpo"][1])
        for it in range(args.steps + 1):
            batch = prompts[(it * 4) % len(prompts):][:4]
            rows = [row for row in batch for _ in range(4)]  # 4 prompts x 4 samples, as TRL's sampler repeats
            for kind, (trainer, _) in trainers.items():  # arms alternate step by step: drift hits all alike
                t = timed_step(trainer, rows, seed=it)
                if it > 0:  # the first step pays one-off costs
                    times[kind].append(t)
            print(f"step {it}: " + ", ".join(f"{k} {times[k][-1]:.3f}s" for k in arms) if it else "warm-up done",
                  flush=True)
        added = hicra_additions_seconds(trainers["hicra"][0])
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"step time {k}: median {v:.4f} s, min {min(times[k]):.4f} s over {len(times[k])} steps")
    # paired: each step's HICRA time over the GRPO time of the same step (same completions), then the median
    paired = {k: statistics.median(a / b for a, b in zip(times[k], times["grpo"], strict=True))
              for k in ("hicra", "hicra+log")}
    print(f"ratio of medians: hicra {med['hicra'] / med['grpo']:.3f}, hicra+log {med['hicra+log'] / med['grpo']:.3f}")
    print(f"hicra additions timed directly: {added * 1000:.2f} ms per step "
          f"({100 * added / min(times['grpo']):.1f}% of the fastest grpo step)")
    print(f"ratio (logging on): {paired['hicra+log']:.3f}")
    print(f"ratio: {paired['hicra']:.3f}")


if __name__ == "__main__":
    main()
