"""Two choices inside one decode step of the lab's sampler, timed at the lab's shapes (docs/lab.md).

1. Attention of one new query over the KV cache: `F.scaled_dot_product_attention` (what `FastDecoder.step` used
   first) against the written-out scores / masked softmax / weighted sum of `FastDecoder._attend_one`.
2. Drawing one token per row: `torch.multinomial` (V exponentials per row) against `hicra.lab.sampling.inverse_cdf`
   (one uniform per row).

Shapes: --rows rows (the RL batch: 8 prompts x 8 samples), the 1m model's 4 query / 2 kv heads of width 32, a
cache of --keys keys with the first few masked as left padding, the lab vocabulary (--vocab). One torch thread.
Each figure is the median of --reps timed calls after a warm-up, in microseconds per call; the outputs of each pair
are checked to agree first (same attention within 1e-5; both draws are distributions, checked in the tests).

    .venv/bin/python benchmarks/decode_step.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def timed(fn, reps: int) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--keys", type=int, default=60)
    p.add_argument("--vocab", type=int, default=384)
    p.add_argument("--reps", type=int, default=2000)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from types import SimpleNamespace

    from hicra.lab.fastdecode import FastDecoder
    from hicra.lab.sampling import inverse_cdf

    g = torch.Generator().manual_seed(0)
    heads, kv, dim = 4, 2, 32
    q = torch.randn(args.rows, heads, dim, generator=g)
    keys = torch.randn(args.rows, kv, args.keys, dim, generator=g)
    values = torch.randn(args.rows, kv, args.keys, dim, generator=g)
    ok = torch.ones(args.rows, args.keys, dtype=torch.bool)
    ok[: args.rows // 2, :3] = False  # left padding in half the rows
    allowed = ok[:, None, None, :]
    dec = SimpleNamespace(n_heads=heads, n_kv=kv, head_dim=dim, scale=dim ** -0.5)

    def sdpa():
        y = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=allowed, scale=dec.scale,
                                           enable_gqa=True)
        return y.reshape(args.rows, heads * dim)

    def written_out():
        return FastDecoder._attend_one(dec, q, keys, values, allowed)

    assert (sdpa() - written_out()).abs().max() < 1e-5
    probs = torch.softmax(torch.randn(args.rows, args.vocab, generator=g), -1)
    gen = torch.Generator().manual_seed(1)
    rows = [("attention, SDPA", timed(sdpa, args.reps)), ("attention, written out", timed(written_out, args.reps)),
            ("draw, torch.multinomial", timed(lambda: torch.multinomial(probs, 1, generator=gen), args.reps)),
            ("draw, inverse CDF", timed(lambda: inverse_cdf(probs, gen), args.reps))]
    print(f"{args.rows} rows, {args.keys} keys, {heads}/{kv} heads x {dim}, vocabulary {args.vocab}, 1 thread "
          f"(median us per call; a decode step makes 4 attention calls and 1 draw)")
    for name, us in rows:
        print(f"{name:26s} {us:8.1f} us")
    print(f"attention speed-up: {rows[0][1] / rows[1][1]:.1f}x; draw speed-up: {rows[2][1] / rows[3][1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
