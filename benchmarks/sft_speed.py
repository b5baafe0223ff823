"""Seconds per warm-start SFT step by batch layout and torch.compile, on the preset's own corpus and batches.

    python benchmarks/sft_speed.py [--preset quick] [--threads 2] [--steps 200] [--warmup 30] [--n-train 8000]

Builds the preset's corpus (warm-start seed 0, `--n-train` pairs) and a tokenizer trained on it, then for each of
split/eager, joined/eager and joined/compiled trains a fresh model of the preset's size on the same length-sorted
batches of the preset's batch size: `--warmup` steps (for the compiled pass they include compiling; their time is
printed), then `--steps` timed steps. Prints ms per step, tokens/s and each variant's time relative to split/eager.
One process, torch at `--threads` threads; the figures depend on the machine's load, so the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--n-train", type=int, default=8000)
    args = ap.parse_args()

    import torch

    from hicra.lab.model import build_model, format_prompt, train_tokenizer
    from hicra.lab.presets import get_preset
    from hicra.lab.sampling import sequence_logprobs
    from hicra.lab.sft import build_corpus, encode_pairs, length_batches, pad_batch

    torch.set_num_threads(args.threads)
    ws, _ = get_preset(args.preset, warm_start_seed=0)
    task = ws.task_mix()
    pairs = build_corpus(task, args.n_train, ws.knobs(), seed=0, strategy_hints=ws.strategy_hints)
    tok = train_tokenizer([format_prompt(p.question) + t for p, t in pairs], vocab_size=ws.vocab_size)
    examples = encode_pairs(tok, pairs, ws.max_response_tokens)
    batches = length_batches(examples, ws.batch_size, random.Random(1))[: args.warmup + args.steps]
    print(f"preset {args.preset}: {len(examples)} traces, batch {ws.batch_size}, {args.threads} threads, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    base = None
    for layout, compiled in (("split", False), ("joined", False), ("joined", True)):
        model = build_model(tok, size=ws.size, arch=ws.arch, seed=0)
        forward = torch.compile(model, dynamic=True) if compiled else model
        opt = torch.optim.AdamW(model.parameters(), lr=ws.lr)
        model.train()
        t0, tokens = time.perf_counter(), 0
        for i, batch in enumerate(batches):
            if i == args.warmup:
                warm, t0, tokens = time.perf_counter() - t0, time.perf_counter(), 0
            p_ids, p_mask, r_ids, r_mask = pad_batch(batch, tok.pad_token_id)
            logp = sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask, layout=layout, forward=forward)
            loss = -(logp * r_mask).sum() / r_mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tokens += int(p_mask.sum() + r_mask.sum())
        per_step = (time.perf_counter() - t0) / args.steps
        base = base or per_step
        print(f"{layout:6s} {'compiled' if compiled else 'eager':8s} {1000 * per_step:6.1f} ms/step "
              f"{tokens / (per_step * args.steps):7.0f} tokens/s  x{per_step / base:.2f} of split/eager  "
              f"(first {args.warmup} steps: {warm:.1f} s)", flush=True)
    print(f"end: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
