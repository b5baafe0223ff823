"""hicra.algorithms checked against the real, installed peers: verl 0.9.1 and TRL 1.16.

Nothing here is skipped: if verl or TRL is missing or changed its code, these tests fail.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from trl.trainer import grpo_trainer as trl_grpo
from trl.trainer.utils import nanstd as trl_nanstd
from verl.trainer.ppo import core_algos as verl_algos
from verl.workers.config.actor import ActorConfig

from hicra.algorithms import (
    grpo_advantages,
    hicra_advantages,
    high_entropy_mask,
    policy_loss,
    rloo_advantages,
)

PEER_CASES = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def test_peer_versions_are_the_pinned_ones():
    import trl
    import verl

    # the comparisons below are only meaningful against the versions they were written for
    assert verl.__version__ == "0.9.1"
    assert trl.__version__ == "1.16.0"


# ------------------------------------------------------------------------------------------------ verl advantages


@st.composite
def verl_batches(draw, min_group=2):
    """Interleaved groups (ints or strings as ids) with binary, small-integer or real rewards."""
    sizes = draw(st.lists(st.integers(min_group, 8), min_size=1, max_size=8))
    ids = [g for g, n in enumerate(sizes) for _ in range(n)]
    ids = list(draw(st.permutations(ids)))
    if draw(st.booleans()):
        ids = [f"prompt-{g}" for g in ids]
    kind = draw(st.sampled_from(["binary", "int", "real"]))
    elem = {
        "binary": st.sampled_from([0.0, 1.0]),
        "int": st.integers(-3, 3).map(float),
        "real": st.floats(-5, 5, allow_nan=False, allow_subnormal=False),
    }[kind]
    rewards = draw(st.lists(elem, min_size=len(ids), max_size=len(ids)))
    lengths = draw(st.lists(st.integers(1, 6), min_size=len(ids), max_size=len(ids)))
    return rewards, ids, lengths


def _verl_inputs(rewards, lengths, dtype=torch.float64):
    """verl's inputs: the outcome reward sits on the last response token of a padded [B, T] tensor."""
    t = max(lengths)
    mask = (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]).to(dtype)
    token_rewards = torch.zeros(len(rewards), t, dtype=dtype)
    token_rewards[torch.arange(len(rewards)), torch.tensor(lengths) - 1] = torch.tensor(rewards, dtype=dtype)
    return token_rewards, mask


@pytest.mark.parametrize("norm_by_std", [True, False])
@PEER_CASES
@given(verl_batches())
def test_grpo_equals_verl(norm_by_std, batch):
    rewards, ids, lengths = batch
    token_rewards, mask = _verl_inputs(rewards, lengths)
    expected, _ = verl_algos.compute_grpo_outcome_advantage(
        token_rewards, mask, np.array(ids, dtype=object), epsilon=1e-6, norm_adv_by_std_in_grpo=norm_by_std
    )
    ours = grpo_advantages(
        torch.tensor(rewards, dtype=torch.float64), ids, scale="std" if norm_by_std else "none"
    )
    assert torch.allclose(ours[:, None] * mask, expected, rtol=1e-9, atol=1e-8)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(verl_batches())
def test_grpo_equals_verl_float32_binary_rewards(batch):
    rewards, ids, lengths = batch
    rewards = [float(r > 0) for r in rewards]
    token_rewards, mask = _verl_inputs(rewards, lengths, torch.float32)
    expected, _ = verl_algos.compute_grpo_outcome_advantage(token_rewards, mask, np.array(ids, dtype=object))
    ours = grpo_advantages(torch.tensor(rewards), ids)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours[:, None] * mask, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_by_std", [True, False])
def test_singleton_groups_differ_from_verl_exactly_as_documented(norm_by_std):
    # groups: a = 3 rollouts, b and c are singletons
    rewards = [1.0, 0.0, 0.0, 0.7, -2.0]
    ids = ["a", "a", "a", "b", "c"]
    token_rewards, mask = _verl_inputs(rewards, [2, 2, 2, 2, 2])
    verl_adv, _ = verl_algos.compute_grpo_outcome_advantage(
        token_rewards, mask, np.array(ids, dtype=object), epsilon=1e-6, norm_adv_by_std_in_grpo=norm_by_std
    )
    ours = grpo_advantages(
        torch.tensor(rewards, dtype=torch.float64), ids, scale="std" if norm_by_std else "none"
    )
    verl_seq = verl_adv[:, 0]
    # multi-rollout group: identical
    assert torch.allclose(ours[:3], verl_seq[:3], atol=1e-12)
    # singletons: we give 0, verl uses mean 0 / std 1, i.e. the raw reward (divided by 1 + eps with std)
    assert torch.equal(ours[3:], torch.zeros(2, dtype=torch.float64))
    raw = torch.tensor([0.7, -2.0], dtype=torch.float64)
    assert torch.allclose(verl_seq[3:], raw / (1 + 1e-6) if norm_by_std else raw, atol=1e-12)


def test_all_equal_group_exact_zero_where_verl_has_rounding_noise():
    # seven float32 rewards of 0.1: the float mean is off by one ulp and verl divides that residue by
    # (std + eps) with std ~ 1e-8, giving |A| ~ 7e-3 for a group that carries no signal; we give exact zeros
    rewards = torch.full((7,), 0.1)
    token_rewards, mask = _verl_inputs(rewards.tolist(), [1] * 7, torch.float32)
    verl_adv, _ = verl_algos.compute_grpo_outcome_advantage(token_rewards, mask, np.zeros(7, dtype=int))
    assert verl_adv.abs().max() > 1e-3
    assert torch.equal(grpo_advantages(rewards, [0] * 7), torch.zeros(7))


@PEER_CASES
@given(verl_batches())
def test_rloo_equals_verl(batch):
    rewards, ids, lengths = batch
    token_rewards, mask = _verl_inputs(rewards, lengths)
    expected, _ = verl_algos.compute_rloo_outcome_advantage(token_rewards, mask, np.array(ids, dtype=object))
    ours = rloo_advantages(torch.tensor(rewards, dtype=torch.float64), ids)
    assert torch.allclose(ours[:, None] * mask, expected, rtol=1e-9, atol=1e-8)


def test_rloo_singleton_differs_from_verl_exactly_as_documented():
    rewards, ids = [1.0, 0.0, 0.5], [0, 0, 1]
    token_rewards, mask = _verl_inputs(rewards, [1, 1, 1])
    verl_adv, _ = verl_algos.compute_rloo_outcome_advantage(token_rewards, mask, np.array(ids))
    ours = rloo_advantages(torch.tensor(rewards, dtype=torch.float64), ids)
    assert torch.allclose(ours[:2], verl_adv[:2, 0]) and ours[2] == 0.0 and verl_adv[2, 0] == 0.5


# ------------------------------------------------------------------------------------------------ TRL advantages
#
# TRL 1.16 computes GRPO advantages inline in GRPOTrainer._generate_and_score_completions (no callable function;
# running the method needs a model, generation and reward functions). To compare against TRL's own code rather
# than a re-typing of it, we cut the exact lines out of the installed source, from
#     mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
# to
#     advantages = advantages / (std_rewards + 1e-4)
# (the default multi_objective_aggregation="sum_then_normalize" branch, all three scale_rewards options) and execute
# them with TRL's own `nanstd`. If TRL changes these lines, the anchors are not found and the test fails.
# Where they coincide: TRL's groups are contiguous blocks of num_generations rollouts and eps = 1e-4;
# scale_rewards="group" <-> scale="std", scale_rewards="none" <-> scale="none" ("batch" has no counterpart here).

_TRL_FIRST = "mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)"
_TRL_LAST = "advantages = advantages / (std_rewards + 1e-4)"


def _trl_advantage_block() -> str:
    src = inspect.getsource(trl_grpo.GRPOTrainer._generate_and_score_completions)
    start = src.index(_TRL_FIRST)
    start = src.rindex("\n", 0, start) + 1  # from the start of that line, so dedent keeps the nesting
    end = src.index(_TRL_LAST, start) + len(_TRL_LAST)
    block = textwrap.dedent(src[start:end])
    assert "scale_rewards" in block and "std_rewards = nanstd(" in block
    return block


def _trl_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str) -> torch.Tensor:
    scope = {
        "torch": torch,
        "nanstd": trl_nanstd,
        "self": SimpleNamespace(scale_rewards=scale_rewards),
        "rewards": rewards,
        "num_generations": num_generations,
    }
    exec(compile(_trl_advantage_block(), trl_grpo.__file__, "exec"), scope)
    return scope["advantages"]


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    st.integers(1, 8),
    st.integers(2, 8),
    st.sampled_from(["group", "none"]),
    st.data(),
)
def test_grpo_matches_trl(n_groups, num_generations, scale_rewards, data):
    elem = data.draw(st.sampled_from([st.sampled_from([0.0, 1.0]), st.floats(-5, 5, allow_subnormal=False)]))
    values = data.draw(
        st.lists(elem, min_size=n_groups * num_generations, max_size=n_groups * num_generations)
    )
    rewards = torch.tensor(values, dtype=torch.float64)
    expected = _trl_advantages(rewards, num_generations, scale_rewards)
    ids = torch.arange(n_groups).repeat_interleave(num_generations)
    ours = grpo_advantages(rewards, ids, scale="std" if scale_rewards == "group" else "none", eps=1e-4)
    # rtol 1e-6, not 1e-9: TRL's nanstd computes Bessel's factor count / (count - 1) in float32 even for float64
    # rewards, a relative error of ~1e-8
    assert torch.allclose(ours, expected, rtol=1e-6, atol=1e-9)


def test_trl_batch_scaling_is_not_ours():
    # "batch" divides by the std of the whole batch: a different estimator, documented as not offered
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    batch = _trl_advantages(rewards, 3, "batch")
    group = grpo_advantages(rewards, [0, 0, 0, 1, 1, 1], eps=1e-4)
    assert not torch.allclose(batch, group)


# ------------------------------------------------------------------------------------------------ TRL entropy mask
#
# GRPOTrainer.get_high_entropy_mask is a method whose only use of `self` is accelerator.pad_across_processes and
# accelerator.gather (for multi-process batches). On one process both are identities, so we call TRL's real method
# with a stand-in accelerator. TRL keeps tokens with entropy >= torch.quantile(entropies, 1 - q) (linear
# interpolation), which can keep one token more or fewer than our exact round(q * N); both are top-sets of the same
# ordering, so the smaller is always inside the larger, and they are equal when the counts agree.


def _trl_high_entropy_mask(entropies, mask, quantile):
    fake = SimpleNamespace(
        accelerator=SimpleNamespace(pad_across_processes=lambda t, dim=0, pad_index=0: t, gather=lambda t: t)
    )
    return trl_grpo.GRPOTrainer.get_high_entropy_mask(fake, entropies, mask, 1 - quantile)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("quantile", [0.1, 0.2, 0.3, 0.5])
def test_high_entropy_mask_matches_trl(seed, quantile):
    g = torch.Generator().manual_seed(seed)
    b, t = 8, 40
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    response = torch.arange(t)[None, :] < lengths[:, None]
    entropies = torch.rand(b, t, generator=g, dtype=torch.float64) * 4  # distinct values (no ties)
    ours = high_entropy_mask(entropies, response, quantile)
    trl = _trl_high_entropy_mask(entropies, response.long(), quantile)
    n_ours, n_trl = int(ours.sum()), int(trl.sum())
    assert abs(n_ours - n_trl) <= 1
    small, large = (ours, trl) if n_ours <= n_trl else (trl, ours)
    assert not (small & ~large).any()
    if n_ours == n_trl:
        assert torch.equal(ours, trl)


# ------------------------------------------------------------------------------------------------ verl policy loss


def _actor_config(clip_low, clip_high, clip_ratio_c=3.0, loss_scale_factor=None):
    info = {} if loss_scale_factor is None else {"loss_scale_factor": loss_scale_factor}
    return ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        clip_ratio_low=clip_low,
        clip_ratio_high=clip_high,
        clip_ratio_c=clip_ratio_c,
        global_batch_info=info,
    )


def _loss_case(seed, b=12, t=33, spread=0.6, per_token_adv=False):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t  # the longest response fills the padded length
    lengths[-1] = 0  # an empty response: sequence-level modes must leave it out of the mean
    mask = torch.arange(t)[None, :] < lengths[:, None]
    old = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    logp = old + spread * torch.randn(b, t, generator=g, dtype=torch.float64)
    ref = old + 0.5 * torch.randn(b, t, generator=g, dtype=torch.float64)
    adv = (
        torch.randn(b, t, generator=g, dtype=torch.float64) if per_token_adv else torch.randn(b, generator=g)
    )
    adv = adv.to(torch.float64)
    adv[1] = 0.0  # a rollout from an all-equal group
    return logp, old, ref, adv, mask


def _value_and_grad(fn, logp):
    x = logp.clone().requires_grad_(True)
    loss = fn(x)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


def _verl_vanilla(old, adv_bt, mask, aggregation, config, metrics: dict):
    """log_prob -> verl's compute_policy_loss_vanilla loss; its metrics are copied into `metrics`."""

    def verl_fn(x):
        loss, m = verl_algos.compute_policy_loss_vanilla(
            old_log_prob=old,
            log_prob=x,
            advantages=adv_bt,
            response_mask=mask,
            loss_agg_mode=aggregation,
            config=config,
        )
        metrics.update(m)
        return loss

    return verl_fn


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-sum-norm", "seq-mean-token-mean"])
@pytest.mark.parametrize(("clip_low", "clip_high"), [(0.2, 0.28), (0.2, 0.2), (0.1, 0.4)])
def test_policy_loss_equals_verl_vanilla(seed, aggregation, clip_low, clip_high):
    logp, old, _, adv, mask = _loss_case(seed, per_token_adv=seed % 2 == 1)
    adv_bt = adv if adv.dim() == 2 else adv[:, None].expand_as(mask)
    # dual clip off in ours <-> a dual-clip constant verl can never reach (ratio <= e^20 after its clamp)
    config = _actor_config(clip_low, clip_high, clip_ratio_c=1e30)
    verl_stats = {}
    verl_fn = _verl_vanilla(old, adv_bt, mask, aggregation, config, verl_stats)

    def ours_fn(x):
        loss, stats = policy_loss(x, old, adv, mask, clip_low, clip_high, aggregation)
        verl_stats["ours"] = stats
        return loss

    v_loss, v_grad = _value_and_grad(verl_fn, logp)
    o_loss, o_grad = _value_and_grad(ours_fn, logp)
    assert torch.allclose(o_loss, v_loss, rtol=1e-7, atol=1e-10)
    assert torch.allclose(o_grad, v_grad, rtol=1e-7, atol=1e-12)
    assert (o_grad != 0).any()  # the case exercises real gradients
    ours = verl_stats["ours"]
    assert ours["clip_frac_low"] > 0 and ours["clip_frac_high"] > 0  # both clip sides were hit
    assert ours["clip_frac_low"] + ours["clip_frac_high"] == pytest.approx(
        verl_stats["actor/pg_clipfrac"], abs=1e-6
    )
    assert ours["approx_kl"] == pytest.approx(verl_stats["actor/ppo_kl"], abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-sum-norm"])
def test_policy_loss_dual_clip_equals_verl_default(seed, aggregation):
    logp, old, _, adv, mask = _loss_case(seed, spread=1.5)  # ratios up to ~e^5: the dual clip (3.0) is hit
    config = _actor_config(0.2, 0.28)  # verl's default clip_ratio_c = 3.0
    adv_bt = adv[:, None].expand_as(mask)
    metrics = {}
    verl_fn = _verl_vanilla(old, adv_bt, mask, aggregation, config, metrics)
    v_loss, v_grad = _value_and_grad(verl_fn, logp)
    o_loss, o_grad = _value_and_grad(
        lambda x: policy_loss(x, old, adv, mask, aggregation=aggregation, clip_ratio_c=3.0)[0], logp
    )
    assert torch.allclose(o_loss, v_loss, rtol=1e-7) and torch.allclose(o_grad, v_grad, rtol=1e-7, atol=1e-12)
    _, stats = policy_loss(logp, old, adv, mask, aggregation=aggregation, clip_ratio_c=3.0)
    assert stats["clip_frac_dual"] > 0
    assert stats["clip_frac_dual"] == pytest.approx(metrics["actor/pg_clipfrac_lower"], abs=1e-6)
    # without the dual clip the loss differs: the option really does something
    assert not math.isclose(
        policy_loss(logp, old, adv, mask, aggregation=aggregation)[0].item(), v_loss.item()
    )


@pytest.mark.parametrize("horizon", [40, 512])
def test_drgrpo_max_response_length_equals_verl_loss_scale_factor(horizon):
    logp, old, _, adv, mask = _loss_case(7)
    config = _actor_config(0.2, 0.28, clip_ratio_c=1e30, loss_scale_factor=horizon)
    adv_bt = adv[:, None].expand_as(mask)
    v_loss, v_grad = _value_and_grad(
        lambda x: verl_algos.compute_policy_loss_vanilla(
            old, x, adv_bt, mask, loss_agg_mode="seq-mean-token-sum-norm", config=config
        )[0],
        logp,
    )
    o_loss, o_grad = _value_and_grad(
        lambda x: policy_loss(
            x, old, adv, mask, aggregation="seq-mean-token-sum-norm", max_response_length=horizon
        )[0],
        logp,
    )
    assert torch.allclose(o_loss, v_loss, rtol=1e-7) and torch.allclose(o_grad, v_grad, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-sum-norm"])
def test_policy_loss_with_k3_kl_equals_verl(seed, aggregation):
    # verl's actor loss with use_kl_loss: pg_loss + kl_loss_coef * agg_loss(kl_penalty(logp, ref, "low_var_kl"))
    logp, old, ref, adv, mask = _loss_case(seed)
    coef = 0.05
    config = _actor_config(0.2, 0.28, clip_ratio_c=1e30)
    adv_bt = adv[:, None].expand_as(mask)

    def verl_fn(x):
        pg, _ = verl_algos.compute_policy_loss_vanilla(
            old, x, adv_bt, mask, loss_agg_mode=aggregation, config=config
        )
        kld = verl_algos.kl_penalty(logprob=x, ref_logprob=ref, kl_penalty="low_var_kl")
        return pg + coef * verl_algos.agg_loss(kld, mask, aggregation)

    v_loss, v_grad = _value_and_grad(verl_fn, logp)
    o_loss, o_grad = _value_and_grad(
        lambda x: policy_loss(x, old, adv, mask, aggregation=aggregation, ref_logprobs=ref, kl_coef=coef)[0],
        logp,
    )
    assert torch.allclose(o_loss, v_loss, rtol=1e-7) and torch.allclose(o_grad, v_grad, rtol=1e-7, atol=1e-12)
    _, stats = policy_loss(logp, old, adv, mask, aggregation=aggregation, ref_logprobs=ref)
    kld = verl_algos.kl_penalty(logprob=logp, ref_logprob=ref, kl_penalty="low_var_kl")
    assert stats["kl_loss"] == pytest.approx(verl_algos.agg_loss(kld, mask, aggregation).item(), rel=1e-9)


def test_hicra_loss_equals_verl_loss_on_hicra_advantages():
    # the whole HICRA step (GRPO advantages -> amplification -> loss) against verl's pieces end to end
    g = torch.Generator().manual_seed(11)
    b, t = 16, 24
    ids = [i // 4 for i in range(b)]
    rewards = (torch.rand(b, generator=g) < 0.5).double()
    mask = torch.arange(t)[None, :] < torch.randint(1, t + 1, (b,), generator=g)[:, None]
    planning = (torch.rand(b, t, generator=g) < 0.1) & mask
    old = -torch.rand(b, t, generator=g, dtype=torch.float64)
    logp = old + 0.3 * torch.randn(b, t, generator=g, dtype=torch.float64)

    token_rewards, fmask = _verl_inputs(rewards.tolist(), mask.sum(-1).tolist())
    verl_adv, _ = verl_algos.compute_grpo_outcome_advantage(
        token_rewards, fmask, np.array(ids), norm_adv_by_std_in_grpo=False
    )
    verl_adv = torch.nn.functional.pad(verl_adv, (0, t - verl_adv.shape[1]))
    verl_hicra = torch.where(planning, verl_adv + 0.2 * verl_adv.abs(), verl_adv)
    config = _actor_config(0.2, 0.28, clip_ratio_c=1e30)
    v_loss, v_grad = _value_and_grad(
        lambda x: verl_algos.compute_policy_loss_vanilla(old, x, verl_hicra, mask, "token-mean", config)[0],
        logp,
    )
    ours_adv = hicra_advantages(grpo_advantages(rewards, ids, scale="none"), planning, 0.2)
    o_loss, o_grad = _value_and_grad(lambda x: policy_loss(x, old, ours_adv, mask)[0], logp)
    assert torch.allclose(o_loss, v_loss, rtol=1e-9) and torch.allclose(o_grad, v_grad, rtol=1e-9, atol=1e-14)
