"""Throughput of planning-token masks from token ids (the trainer path), on CPU.

Builds a Qwen-style byte-level BPE (digits split, leading-space tokens) trained here on GSM8K reference
solutions, makes B responses of exactly T tokens from GSM8K model solutions with paper strategic grams mixed in
at the start of sentences (a few percent of tokens become planning), then times
`PlanningTagger(lexicon, tokenizer).token_masks(batch)` (the vocabulary table is built once, before timing, as a
trainer would). Prints the median of several repeats and, as last line, `tokens_per_s: X`.

    .venv/bin/python benchmarks/tagging.py [--batch 256] [--tokens 1024] [--repeats 7] [--lexicon paper]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np

from hicra.planning import Lexicon, PlanningTagger

# the GSM8K texts: $HICRA_SHARED_DATA/gsm8k when set (as for the tests), else ../shared/data/gsm8k beside the checkout
DATA = (Path(os.environ["HICRA_SHARED_DATA"]) if os.environ.get("HICRA_SHARED_DATA")
        else Path(__file__).resolve().parents[1].parent / "shared" / "data") / "gsm8k"
PRETOKENIZE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def build_tokenizer(texts, vocab_size=4096):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def make_batch(tokenizer, lexicon, batch, tokens, seed=0):
    rows = [json.loads(line) for line in (DATA / "model_solutions.jsonl").read_text().splitlines()]
    solutions = [r[m]["solution"] for r in rows for m in ("6b_finetuning", "175b_verification")]
    rng = random.Random(seed)
    out = []
    for _ in range(batch):
        ids: list[int] = []
        while len(ids) < tokens:
            sentences = rng.choice(solutions).split("\n")
            text = "\n".join(f"{rng.choice(lexicon.texts).capitalize()}, {s}" if rng.random() < 0.3 else s
                             for s in sentences)
            ids += tokenizer(text + "\n", add_special_tokens=False)["input_ids"]
        out.append(np.array(ids[:tokens], dtype=np.int64))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--lexicon", default="paper")
    args = ap.parse_args()

    train = [json.loads(line)["answer"] for line in (DATA / "train.jsonl").read_text().splitlines()]
    tokenizer = build_tokenizer(train)
    lexicon = Lexicon.resolve(args.lexicon)
    tagger = PlanningTagger(lexicon, tokenizer)
    batch = make_batch(tokenizer, lexicon, args.batch, args.tokens)
    n_tokens = sum(len(r) for r in batch)

    t0 = time.perf_counter()
    tagger.token_masks(batch[:1])  # builds the per-id byte table once (a trainer keeps its tagger)
    setup = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        masks = tagger.token_masks(batch)
        times.append(time.perf_counter() - t0)
    share = float(np.concatenate(masks).mean())
    median = statistics.median(times)
    print(f"vocab: {len(tokenizer)}  lexicon: {lexicon.name} ({len(lexicon)} phrases)  table build: {setup:.3f}s")
    print(f"batch: {args.batch} x {args.tokens} = {n_tokens} tokens  planning share: {share:.3f}")
    print(f"median: {median * 1e3:.1f} ms  min: {min(times) * 1e3:.1f} ms over {args.repeats} repeats")
    print(f"tokens_per_s: {n_tokens / median:.0f}")


if __name__ == "__main__":
    main()
