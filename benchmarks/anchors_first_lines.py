"""Are tries sampled to their first line only (`hicra anchors`' two stages) the same draws as the first lines of
whole continuations? A check on the quick preset's warm start (docs/mechanistic.md, "Cost").

Samples one response per held-out problem (N = 32, as `hicra anchors` does for seed 0), then `--tries` first lines
from every sentence prefix `text[:b_i]` twice: with `HFPolicy.continue_first_lines` and as the first sentences of
whole continuations (`continue_texts`). Prints, per way, the share of tries whose first sentence differs in meaning
from s_i, how many sentences no try of the first 32 varies (fixed, as `hicra anchors` counts them), the time taken,
and, per prefix, the two-proportion z score of the two ways' differing shares (same distribution: mean about 0,
standard deviation about 1, no |z| far beyond 3; prefixes whose tries all differ or none does carry no z). One torch thread.

    nice -n 19 .venv/bin/python benchmarks/anchors_first_lines.py [--tries 64] [--seed 11]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--tries", type=int, default=64)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mechanistic import build_run

    from hicra.mechanistic.anchors import _call_seed
    from hicra.mechanistic.policy import HFPolicy
    from hicra.mechanistic.run import load_snapshot
    from hicra.mechanistic.sentences import boundaries, first_sentence, split_sentences
    from hicra.mechanistic.tasks import lab_heldout_problems, meaning, read_run_info

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(Path(tmp), args.preset)
        info = read_run_info(run)
        task, problems = lab_heldout_problems(run, info)
        model, tok = load_snapshot(run / "checkpoints" / "step_000000", run, info)
        config = info["config"]
        policy = HFPolicy(model, tok, int(config.get("max_new_tokens", 96)), float(config.get("temperature", 1.0)),
                          share_prompts=True)
        prompts = [task.prompt(x) for x in problems[:args.n]]
        texts = policy.continue_texts([(x, "") for x in prompts], _call_seed(0, 0))
        contexts, own = [], []
        for prompt, text in zip(prompts, texts, strict=True):
            sentences = split_sentences(text)
            bounds = boundaries(text, sentences)
            for i, s in enumerate(sentences):
                contexts.append((prompt, text[:bounds[i]]))
                own.append(meaning(task, s.text))
        print(f"load average: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; {len(contexts)} sentence prefixes, "
              f"{args.tries} tries each, temperature {policy.temperature}")
        t, differs = args.tries, {}
        for way in ("first lines", "whole"):
            t0 = time.perf_counter()
            tries = [c for c in contexts for _ in range(t)]
            if way == "whole":
                conts = policy.continue_texts(tries, args.seed)
            else:
                conts = [text for text, _ in policy.continue_first_lines(tries, args.seed)]
            d = np.array([meaning(task, first_sentence(c)) != own[k // t] for k, c in enumerate(conts)])
            differs[way] = d.reshape(len(contexts), t)
            fixed = int((differs[way][:, :32].sum(1) == 0).sum())
            print(f"{way:>11}: {time.perf_counter() - t0:5.0f} s, differing {d.mean():.4f} of tries, "
                  f"{fixed} sentences fixed (no differing try among the first 32)")
        a, b = differs["first lines"].sum(1), differs["whole"].sum(1)
        pooled = (a + b) / (2 * t)
        informative = ((a + b) > 0) & ((a + b) < 2 * t)  # some tries differ, some do not: z is defined
        z = (a - b)[informative] / t / np.sqrt(pooled[informative] * (1 - pooled[informative]) * 2 / t)
        print(f"per prefix z (first lines - whole), {informative.sum()} prefixes with both kinds of try: mean "
              f"{z.mean():+.3f}, sd {z.std():.3f}, max |z| {np.abs(z).max():.2f}; differing tries in all "
              f"{a.sum()} against {b.sum()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
