"""Cost of a HICRA update step relative to a GRPO one, on CPU.

GRPO:  grpo_advantages (Dr.GRPO scaling, [B])                       + policy_loss forward + backward
HICRA: grpo_advantages + hicra_advantages (planning mask -> [B, T]) + policy_loss forward + backward

Default B = 512 rollouts (64 prompts x 8), T = 4096 tokens, ~4% planning tokens. Prints the median of several
repeats for each, and as last line `ratio: X` = median(HICRA) / median(GRPO) (expected close to 1).

    .venv/bin/python benchmarks/algorithms.py [--batch 512] [--tokens 4096] [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hicra.algorithms import grpo_advantages, hicra_advantages, policy_loss


def make_batch(b: int, t: int, group_size: int, planning_rate: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(t // 4, t + 1, (b,), generator=g)
    response = torch.arange(t)[None, :] < lengths[:, None]
    old = -torch.rand(b, t, generator=g) * 2
    logp = old + 0.1 * torch.randn(b, t, generator=g)
    rewards = (torch.rand(b, generator=g) < 0.5).float()
    group_ids = torch.arange(b) // group_size
    planning = (torch.rand(b, t, generator=g) < planning_rate) & response
    return logp, old, rewards, group_ids, response, planning


def grpo_step(logp, old, rewards, group_ids, response, planning):
    adv = grpo_advantages(rewards, group_ids, scale="none")
    x = logp.detach().requires_grad_(True)
    # the planning mask goes to both arms: a GRPO run logs the same planning/execution statistics
    loss, _ = policy_loss(x, old, adv, response, planning_mask=planning)
    loss.backward()
    return x.grad


def hicra_step(logp, old, rewards, group_ids, response, planning):
    adv = hicra_advantages(grpo_advantages(rewards, group_ids, scale="none"), planning, 0.2)
    x = logp.detach().requires_grad_(True)
    loss, _ = policy_loss(x, old, adv, response, planning_mask=planning)
    loss.backward()
    return x.grad


def timed(fn, args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--planning-rate", type=float, default=0.04)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = make_batch(args.batch, args.tokens, args.group_size, args.planning_rate)
    print(
        f"B={args.batch} T={args.tokens} planning_rate={args.planning_rate} threads={torch.get_num_threads()}"
    )
    grpo_step(*batch), hicra_step(*batch)  # warm-up (allocator, lazy initialisation)
    # interleave the two so that load changes on a shared machine hit both alike
    grpo, hicra = [], []
    for _ in range(args.repeats):
        grpo.append(timed(grpo_step, batch))
        hicra.append(timed(hicra_step, batch))
    g_med, h_med = statistics.median(grpo), statistics.median(hicra)
    print(f"grpo  (advantage + loss fwd+bwd): median {g_med * 1e3:.1f} ms over {len(grpo)} repeats")
    print(f"hicra (advantage + loss fwd+bwd): median {h_med * 1e3:.1f} ms over {len(hicra)} repeats")
    print(f"ratio: {h_med / g_med:.3f}")


if __name__ == "__main__":
    main()
