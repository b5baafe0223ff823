"""Properties of hicra.algorithms that need no peer library: edge cases, HICRA invariants, masks, loss basics.

The comparisons against verl 0.9.1 and TRL 1.16 live in tests/test_algorithms_peers.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hicra.algorithms import (
    drgrpo_advantages,
    grpo_advantages,
    hicra_advantages,
    high_entropy_mask,
    placebo_mask,
    policy_loss,
    rloo_advantages,
)

HYP = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def _reference_grpo(rewards, ids, scale, eps=1e-6):
    """Plain-python per-group loop (statistics module semantics), used as an independent oracle."""
    import statistics

    groups: dict = {}
    for r, g in zip(rewards, ids, strict=True):
        groups.setdefault(g, []).append(float(r))
    out = []
    for r, g in zip(rewards, ids, strict=True):
        vals = groups[g]
        if len(vals) < 2 or len(set(vals)) == 1:
            out.append(0.0)
            continue
        d = float(r) - statistics.fmean(vals)
        out.append(d / (statistics.stdev(vals) + eps) if scale == "std" else d)
    return torch.tensor(out, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ advantages


def test_grpo_small_example_by_hand():
    # group a: [1, 0, 1] mean 2/3, unbiased std sqrt(1/3); group b is a singleton
    adv = grpo_advantages(
        torch.tensor([1.0, 0.0, 1.0, 5.0], dtype=torch.float64), ["a", "a", "a", "b"], eps=0.0
    )
    s = math.sqrt(1 / 3)
    assert torch.allclose(
        adv, torch.tensor([(1 / 3) / s, (-2 / 3) / s, (1 / 3) / s, 0.0], dtype=torch.float64)
    )
    adv_none = grpo_advantages([1.0, 0.0, 1.0, 5.0], ["a", "a", "a", "b"], scale="none")
    assert torch.allclose(adv_none, torch.tensor([1 / 3, -2 / 3, 1 / 3, 0.0]))


@pytest.mark.parametrize("fn", [grpo_advantages, drgrpo_advantages, rloo_advantages])
def test_all_equal_groups_give_exact_zeros(fn):
    # 0.1 * 3 / 3 != 0.1 in floating point: a naive r - mean leaves 1e-17 noise that std division blows up
    rewards = torch.tensor([0.1, 0.1, 0.1, 1.0, 1.0, 0.0, 0.0, 0.7, 0.7, 0.7, 0.7])
    ids = [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    adv = fn(rewards, ids)
    assert not torch.isnan(adv).any()
    assert torch.equal(adv, torch.zeros_like(adv))


@pytest.mark.parametrize("fn", [grpo_advantages, drgrpo_advantages, rloo_advantages])
def test_singleton_groups_give_zero(fn):
    adv = fn(torch.tensor([3.0, 1.0, 0.0, -2.0]), [7, 8, 8, 9])
    assert adv[0] == 0.0 and adv[3] == 0.0
    assert adv[1] > 0 > adv[2]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("fn", [grpo_advantages, drgrpo_advantages, rloo_advantages])
def test_non_finite_reward_names_first_bad_index(fn, bad):
    rewards = [0.0, 1.0, 1.0, bad, 0.5, bad]
    with pytest.raises(ValueError, match=r"index 3\b"):
        fn(rewards, [0, 0, 0, 1, 1, 1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        grpo_advantages([1.0, 0.0], [0, 0], scale="batch")
    with pytest.raises(ValueError, match="group_ids"):
        grpo_advantages([1.0, 0.0], [0])
    with pytest.raises(ValueError, match="1-D"):
        grpo_advantages(torch.zeros(2, 2), [0, 0])


def test_group_id_types_are_equivalent():
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, 1.0, 0.0])
    ints = [3, 1, 3, 1, 3, 1]
    expected = grpo_advantages(rewards, ints)
    for ids in (
        ["p3", "p1", "p3", "p1", "p3", "p1"],
        np.array(ints),
        np.array(["p3", "p1", "p3", "p1", "p3", "p1"]),
        np.array(["p3", "p1", "p3", "p1", "p3", "p1"], dtype=object),
        torch.tensor(ints),
        [(3, "x"), (1, "x"), (3, "x"), (1, "x"), (3, "x"), (1, "x")],
        list(torch.tensor(ints)),  # 0-d tensors hash by identity: read by value, not one group per rollout
    ):
        assert torch.equal(grpo_advantages(rewards, ids), expected)


def test_dtype_and_list_input():
    assert grpo_advantages([1, 0, 1, 1], [0, 0, 1, 1]).dtype == torch.float32
    assert grpo_advantages(torch.tensor([1.0, 0.0], dtype=torch.float64), [0, 0]).dtype == torch.float64
    assert grpo_advantages(torch.tensor([1, 0]), [0, 0]).dtype == torch.float32
    assert grpo_advantages([], []).shape == (0,)


def test_low_precision_rewards_use_float64_group_statistics():
    """bf16 rewards [1, 1, 1, 1.0078125]: the bf16 mean rounds to 1, so the old code gave [0, 0, 0, 1.73]."""
    r = torch.tensor([1, 1, 1, 1.0078125], dtype=torch.bfloat16)
    adv = grpo_advantages(r, [0, 0, 0, 0])
    assert adv.dtype == torch.bfloat16
    assert adv.tolist() == [-0.5, -0.5, -0.5, 1.5]
    assert float(adv.double().sum()) == 0.0
    for fn in (drgrpo_advantages, rloo_advantages):  # zero sum up to bf16 rounding of each advantage
        a = fn(r, [0, 0, 0, 0]).double()
        assert a[0] < 0 and abs(float(a.sum())) <= 2 ** -8 * float(a.abs().max())


@pytest.mark.parametrize("fn", [grpo_advantages, drgrpo_advantages, rloo_advantages])
@pytest.mark.parametrize("ulps", [[0, 0, 0, 1], [0, 1, 2, 3, 0, 0], [5, 0, 0, 2, 1]])
def test_large_float32_rewards_match_float64_reference(fn, ulps):
    """Rewards around 100 that differ in the last bits of float32: the float64 oracle, cast back, and sum 0."""
    base = np.float32(100.0)
    values = [float(np.float32(base + u * np.spacing(base))) for u in ulps]
    ids = [0] * len(values)
    adv = fn(torch.tensor(values, dtype=torch.float32), ids)
    if fn is grpo_advantages:
        ref = _reference_grpo(values, ids, "std")
    else:
        mean = sum(values) / len(values)
        factor = len(values) / (len(values) - 1) if fn is rloo_advantages else 1.0
        ref = [(v - mean) * factor for v in values]
    assert adv.dtype == torch.float32
    np.testing.assert_allclose(adv.numpy(), np.asarray(ref, dtype=np.float64).astype(np.float32), rtol=1e-6, atol=0)
    assert abs(float(adv.double().sum())) <= 1e-6 * float(adv.abs().max())


@st.composite
def grouped_rewards(draw, min_size=1):
    sizes = draw(st.lists(st.integers(min_size, 6), min_size=1, max_size=6))
    ids = [g for g, n in enumerate(sizes) for _ in range(n)]
    ids = draw(st.permutations(ids))
    rewards = draw(
        st.lists(
            st.one_of(st.sampled_from([0.0, 1.0]), st.floats(-4, 4, allow_nan=False, width=32)),
            min_size=len(ids),
            max_size=len(ids),
        )
    )
    return rewards, list(ids)


@HYP
@given(grouped_rewards(), st.sampled_from(["std", "none"]))
def test_grpo_matches_python_oracle(data, scale):
    rewards, ids = data
    r = torch.tensor(rewards, dtype=torch.float64)
    assert torch.allclose(
        grpo_advantages(r, ids, scale=scale), _reference_grpo(rewards, ids, scale), atol=1e-9
    )


@HYP
@given(grouped_rewards(min_size=2))
def test_rloo_is_reward_minus_mean_of_others(data):
    rewards, ids = data
    r = torch.tensor(rewards, dtype=torch.float64)
    adv = rloo_advantages(r, ids)
    for i, g in enumerate(ids):
        others = [rewards[j] for j, h in enumerate(ids) if h == g and j != i]
        assert adv[i].item() == pytest.approx(rewards[i] - sum(others) / len(others), abs=1e-9)


@HYP
@given(grouped_rewards(), st.randoms(use_true_random=False))
def test_advantages_are_permutation_equivariant_and_sum_to_zero(data, rnd):
    rewards, ids = data
    r = torch.tensor(rewards, dtype=torch.float64)
    perm = list(range(len(ids)))
    rnd.shuffle(perm)
    for fn in (grpo_advantages, drgrpo_advantages, rloo_advantages):
        adv = fn(r, ids)
        adv_p = fn(r[perm], [ids[p] for p in perm])
        assert torch.allclose(adv_p, adv[perm], atol=1e-12)
        for g in set(ids):  # centred within every group
            assert abs(sum(adv[i].item() for i, h in enumerate(ids) if h == g)) < 1e-6


# ------------------------------------------------------------------------------------------------ HICRA


def test_hicra_by_hand():
    a = torch.tensor([0.5, -0.5, 0.0])
    m = torch.tensor([[True, False], [True, False], [True, True]])
    out = hicra_advantages(a, m, 0.2)
    assert torch.allclose(out, torch.tensor([[0.6, 0.5], [-0.4, -0.5], [0.0, 0.0]]))


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_hicra_alpha_range(alpha):
    with pytest.raises(ValueError, match="alpha"):
        hicra_advantages(torch.ones(2), torch.ones(2, 3, dtype=torch.bool), alpha)


def test_option_ranges_are_checked_in_one_place_with_one_wording():
    """alpha, entropy_quantile and placebo_rate: one check (`option_problem`) used by the lab, TRL and verl."""
    from hicra.algorithms import check_option, gradient_mass, option_problem
    from hicra.integrations.verl_main import _range_problem

    assert option_problem("alpha", 0.2) is None and option_problem("alpha", 0) is None
    assert option_problem("alpha", 1.0) == "alpha must be in [0, 1), got 1.0"
    assert option_problem("alpha", float("nan")) == "alpha must be in [0, 1), got nan"
    assert option_problem("alpha", "high") == "alpha must be a number in [0, 1), got 'high'"
    assert option_problem("alpha", True) == "alpha must be a number in [0, 1), got True"
    assert option_problem("alpha", None) == "alpha must be a number in [0, 1), got None"
    assert option_problem("entropy_quantile", 1.0) is None
    assert option_problem("entropy_quantile", 5) == "entropy_quantile must be in [0, 1], got 5"
    assert option_problem("placebo_rate", None) is None
    assert option_problem("placebo_rate", -0.1) == "placebo_rate must be in [0, 1] or unset, got -0.1"
    assert check_option("alpha", "0.2") == 0.2 and check_option("placebo_rate", None) is None
    with pytest.raises(ValueError, match=r"^entropy_quantile must be in \[0, 1\], got 2$"):
        check_option("entropy_quantile", 2)
    # every entry point gives the same line (verl's `+hicra` options prefixed with `+hicra.`)
    assert _range_problem({"entropy_quantile": 2}) == "+hicra.entropy_quantile must be in [0, 1], got 2"
    for call in (lambda: hicra_advantages(torch.ones(2), torch.ones(2, 3, dtype=torch.bool), 1.0),
                 lambda: gradient_mass(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool),
                                       torch.ones(1, 2, dtype=torch.bool), torch.ones(1), 1.0)):
        with pytest.raises(ValueError, match=r"^alpha must be in \[0, 1\), got 1.0$"):
            call()


def test_hicra_shape_errors():
    with pytest.raises(ValueError):
        hicra_advantages(torch.ones(3), torch.ones(2, 3, dtype=torch.bool), 0.2)
    with pytest.raises(ValueError):
        hicra_advantages(torch.ones(2, 4), torch.ones(2, 3, dtype=torch.bool), 0.2)
    with pytest.raises(ValueError, match="0 and 1"):
        hicra_advantages(torch.ones(2), torch.full((2, 3), 2), 0.2)


@st.composite
def adv_and_mask(draw):
    b, t = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    # magnitudes >= 2**-100: with subnormal inputs (|A| ~ 1e-45) even the exact result is not representable
    mag = st.floats(2.0**-100, 50, width=32)
    vals = st.one_of(st.just(0.0), mag, mag.map(lambda x: -x))
    per_token = draw(st.booleans())
    shape = (b, t) if per_token else (b,)
    a = torch.tensor(draw(st.lists(vals, min_size=math.prod(shape), max_size=math.prod(shape)))).reshape(
        shape
    )
    m = torch.tensor(draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))).reshape(b, t)
    return a, m


@HYP
@given(adv_and_mask(), st.floats(0.0, 0.999))
def test_hicra_properties(data, alpha):
    a, m = data
    a_before = a.clone()
    version = a._version
    out = hicra_advantages(a, m, alpha)
    full = a.unsqueeze(-1).expand_as(m) if a.dim() == 1 else a
    assert out.shape == m.shape
    # execution tokens unchanged, exactly
    assert torch.equal(out[~m], full[~m])
    # planning tokens: (1 + alpha)|A| if A > 0, -(1 - alpha)|A| if A < 0, 0 stays 0
    expected = torch.where(full > 0, (1 + alpha) * full.abs(), -(1 - alpha) * full.abs())
    assert torch.allclose(out[m], expected[m], rtol=1e-6, atol=0)
    # the sign never flips
    assert torch.equal(torch.sign(out), torch.sign(full))
    # alpha = 0 is exactly GRPO
    assert torch.equal(hicra_advantages(a, m, 0.0), full)
    # input not mutated (values, and no in-place op bumped its version counter)
    assert torch.equal(a, a_before) and a._version == version
    assert out.data_ptr() != a.data_ptr()


def test_hicra_accepts_integer_mask_and_keeps_dtype():
    a = torch.tensor([1.0, -2.0], dtype=torch.float64)
    out = hicra_advantages(a, torch.tensor([[1, 0], [0, 1]]), 0.5)
    assert out.dtype == torch.float64
    assert torch.equal(out, torch.tensor([[1.5, 1.0], [-2.0, -1.0]], dtype=torch.float64))


def _loss_grad(adv_tokens, response_mask, aggregation="token-mean"):
    torch.manual_seed(0)
    old = -torch.rand(response_mask.shape, dtype=torch.float64)
    logp = old.clone().requires_grad_(True)  # ratio 1: inside the clip range, every token has a gradient
    loss, _ = policy_loss(logp, old, adv_tokens, response_mask, aggregation=aggregation)
    (grad,) = torch.autograd.grad(loss, logp)
    return grad


def _buggy_hicra(a, m, alpha):
    """The silent no-op the issue warns about: an in-place update of an advanced-indexed copy."""
    out = a.unsqueeze(-1).expand_as(m).clone() if a.dim() == 1 else a.clone()
    sel = out[m]  # advanced indexing returns a copy...
    sel += alpha * sel.abs()  # ...so this update never reaches `out`
    return out


def _changed_exactly_where_mask_changed(fn, aggregation):
    g = torch.Generator().manual_seed(1)
    b, t = 6, 10
    response = torch.ones(b, t, dtype=torch.bool)
    response[:, 7:] = torch.rand(b, 3, generator=g) < 0.5
    a = torch.tensor([1.0, -1.0, 0.5, -2.0, 3.0, -0.25], dtype=torch.float64)  # no zero advantages
    m1 = torch.rand(b, t, generator=g) < 0.3
    flip = torch.rand(b, t, generator=g) < 0.3
    m2 = m1 ^ flip
    g1 = _loss_grad(fn(a, m1, 0.2), response, aggregation)
    g2 = _loss_grad(fn(a, m2, 0.2), response, aggregation)
    return torch.equal(g1 != g2, flip & response)


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_mask_change_changes_gradient_on_exactly_the_changed_tokens(aggregation):
    assert _changed_exactly_where_mask_changed(hicra_advantages, aggregation)


def test_the_gradient_guard_catches_the_indexed_copy_bug():
    assert not _changed_exactly_where_mask_changed(_buggy_hicra, "token-mean")


# ------------------------------------------------------------------------------------------------ masks


def _random_batch(seed, b=7, t=13):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    response = torch.arange(t)[None, :] < lengths[:, None]
    entropies = torch.rand(b, t, generator=g) * 3
    return entropies, response


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("q", [0.0, 0.05, 0.2, 0.3, 0.5, 0.8, 1.0])
def test_high_entropy_mask_exact_share_top_tokens(seed, q):
    entropies, response = _random_batch(seed)
    entropies = torch.where(response, entropies, torch.full_like(entropies, 1e9))  # padding looks "hot"
    sel = high_entropy_mask(entropies, response, q)
    n = int(response.sum())
    assert int(sel.sum()) == math.floor(q * n + 0.5)
    assert not (sel & ~response).any()
    if sel.any() and (response & ~sel).any():
        assert entropies[sel].min() >= entropies[response & ~sel].max()


def test_high_entropy_mask_ties_go_to_earlier_tokens():
    e = torch.tensor([[1.0, 2.0, 2.0, 2.0], [2.0, 0.0, 0.0, 0.0]])
    response = torch.ones(2, 4, dtype=torch.bool)
    sel = high_entropy_mask(e, response, 0.25)  # 2 of 8
    assert sel.tolist() == [[False, True, True, False], [False] * 4]
    with pytest.raises(ValueError, match="quantile"):
        high_entropy_mask(e, response, 1.5)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rate", [0.0, 0.03, 0.1, 0.5, 1.0])
def test_placebo_mask_exact_rate_only_response_tokens(seed, rate):
    _, response = _random_batch(seed, b=9, t=31)
    sel = placebo_mask(response, rate, torch.Generator().manual_seed(seed))
    assert int(sel.sum()) == math.floor(rate * int(response.sum()) + 0.5)
    assert not (sel & ~response).any()


def test_placebo_mask_determinism():
    _, response = _random_batch(0, b=16, t=64)
    a = placebo_mask(response, 0.1, torch.Generator().manual_seed(42))
    b = placebo_mask(response, 0.1, torch.Generator().manual_seed(42))
    c = placebo_mask(response, 0.1, torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(placebo_mask(response, 0.1, 42), a)  # an int seed is the same as a seeded generator
    gen = torch.Generator().manual_seed(42)
    first, second = placebo_mask(response, 0.1, gen), placebo_mask(response, 0.1, gen)
    assert torch.equal(first, a) and not torch.equal(first, second)  # the generator's state advances


def test_placebo_mask_is_uniform_over_response_tokens():
    response = torch.tensor([[True, True, True, False], [True, True, False, False]])
    gen = torch.Generator().manual_seed(0)
    counts = sum(placebo_mask(response, 0.4, gen).double() for _ in range(4000))  # 2 of 5 tokens each draw
    freq = counts[response] / 4000
    assert torch.allclose(freq, torch.full_like(freq, 0.4), atol=0.04)
    assert counts[~response].sum() == 0


# ------------------------------------------------------------------------------------------------ policy loss


def test_policy_loss_on_policy_equals_minus_mean_advantage():
    # with logp == old the ratio is 1: L = -mean(A) over response tokens and nothing is clipped
    response = torch.tensor([[True, True, False], [True, False, False]])
    a = torch.tensor([1.0, -4.0])
    lp = torch.zeros(2, 3)
    for agg, expected in [
        ("token-mean", -(1 + 1 - 4) / 3),
        ("seq-mean-token-mean", -(1 + -4) / 2),
        ("seq-mean-token-sum-norm", -(2 - 4) / 2 / 3),
    ]:
        loss, stats = policy_loss(lp, lp, a, response, aggregation=agg)
        assert loss.item() == pytest.approx(expected)
        assert stats["clip_frac_low"] == stats["clip_frac_high"] == 0.0 and stats["approx_kl"] == 0.0
    loss, _ = policy_loss(lp, lp, a, response, aggregation="seq-mean-token-sum-norm", max_response_length=10)
    assert loss.item() == pytest.approx(-(2 - 4) / 2 / 10)


def test_policy_loss_clip_fractions_and_planning_stats():
    old = torch.zeros(1, 4)
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))  # ratios: above 1.28, below 0.8, above, below
    a = torch.tensor([[1.0, -1.0, -1.0, 1.0]])  # high-clipped, low-clipped, unclipped, unclipped
    plan = torch.tensor([[True, True, False, False]])
    _, stats = policy_loss(lp, old, a, torch.ones(1, 4, dtype=torch.bool), planning_mask=plan)
    assert stats["clip_frac_high"] == 0.25 and stats["clip_frac_low"] == 0.25
    assert stats["adv_planning"] == 0.0 and stats["adv_execution"] == 0.0 and stats["planning_ratio"] == 0.5
    _, stats = policy_loss(
        lp, old, torch.tensor([2.0]), torch.ones(1, 4, dtype=torch.bool), planning_mask=plan
    )
    assert stats["adv_planning"] == stats["adv_execution"] == 2.0


def test_policy_loss_ignores_garbage_at_padding():
    response = torch.tensor([[True, False], [True, True]])
    lp = torch.tensor([[-1.0, float("-inf")], [-0.5, -0.2]], requires_grad=True)
    old = torch.tensor([[-1.1, float("nan")], [-0.4, -0.3]])
    loss, stats = policy_loss(lp, old, torch.tensor([1.0, -1.0]), response)
    (grad,) = torch.autograd.grad(loss, lp)
    assert torch.isfinite(loss) and torch.isfinite(grad).all() and grad[0, 1] == 0
    assert math.isfinite(stats["approx_kl"])


def test_policy_loss_validation():
    z = torch.zeros(2, 3)
    m = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="aggregation"):
        policy_loss(z, z, torch.zeros(2), m, aggregation="sum")
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(z, z, torch.zeros(2), m, kl_coef=0.1)
    with pytest.raises(ValueError):
        policy_loss(z, torch.zeros(2, 4), torch.zeros(2), m)
    with pytest.raises(ValueError):
        policy_loss(z, z, torch.zeros(2), m, clip_ratio_c=1.0)


def test_policy_loss_does_not_mutate_inputs():
    g = torch.Generator().manual_seed(3)
    tensors = {
        "logprobs": -torch.rand(3, 5, generator=g),
        "old_logprobs": -torch.rand(3, 5, generator=g),
        "advantages": torch.randn(3, 5, generator=g),
        "response_mask": torch.rand(3, 5, generator=g) < 0.8,
        "ref_logprobs": -torch.rand(3, 5, generator=g),
        "planning_mask": torch.rand(3, 5, generator=g) < 0.3,
    }
    before = {k: (v.clone(), v._version) for k, v in tensors.items()}
    policy_loss(**tensors, kl_coef=0.1, clip_ratio_c=3.0)
    for k, v in tensors.items():
        assert torch.equal(v, before[k][0]) and v._version == before[k][1], k


def test_high_entropy_mask_ranks_nan_last():
    from hicra.algorithms import high_entropy_mask

    ent = torch.tensor([[float("nan"), 0.5, 2.0, 1.0]])
    resp = torch.ones(1, 4, dtype=torch.bool)
    assert high_entropy_mask(ent, resp, 0.5).tolist() == [[False, False, True, True]]
    assert high_entropy_mask(ent, resp, 1.0).tolist() == [[True, True, True, True]]


def test_gradient_mass_matches_autograd_on_the_sampled_logits():
    """gradient_mass's figures against an independent computation: autograd of the policy-gradient objective
    sum_t A_t log p(y_t) on the logits. The sampled logit's gradient is A_t (1 - p_t); HICRA's advantages change it
    by alpha|A_t|(1 - p_t) on the mask, and update_change must equal the relative L1 change of those gradients."""
    from hicra.algorithms import gradient_mass

    g = torch.Generator().manual_seed(3)
    B, T, V, alpha = 4, 6, 7, 0.2
    logits = torch.randn(B, T, V, generator=g) * 2
    tokens = torch.randint(0, V, (B, T), generator=g)
    resp = torch.rand(B, T, generator=g) < 0.8
    plan = torch.rand(B, T, generator=g) < 0.3
    adv = torch.tensor([1.0, -0.5, 0.25, -2.0])

    def sampled_logit_grads(token_adv):
        z = logits.clone().requires_grad_(True)
        logp = torch.log_softmax(z, -1).gather(-1, tokens[..., None])[..., 0]
        (token_adv * logp * resp).sum().backward()
        return z.grad.gather(-1, tokens[..., None])[..., 0]

    logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    base = sampled_logit_grads(adv[:, None].expand(B, T))
    amp = sampled_logit_grads(hicra_advantages(adv, plan, alpha))
    mass = (base / adv[:, None]).abs() * resp  # = 1 - p_t on response tokens
    out = gradient_mass(logp, resp, plan, adv, alpha)
    assert out["token_share"] == pytest.approx(float((plan & resp).sum() / resp.sum()))
    assert out["gradient_mass_share"] == pytest.approx(float((mass * plan).sum() / mass.sum()), rel=1e-5)
    assert out["update_share"] == pytest.approx(float((base.abs() * plan * resp).sum() / (base.abs() * resp).sum()),
                                                rel=1e-5)
    assert out["update_change"] == pytest.approx(float((amp - base).abs().sum() / base.abs().sum()), rel=1e-5)
    # no planning token -> no change; every token amplified -> the change is alpha
    assert gradient_mass(logp, resp, torch.zeros_like(plan), adv, alpha)["update_change"] == 0.0
    assert gradient_mass(logp, resp, resp, adv, alpha)["update_change"] == pytest.approx(alpha)
    assert math.isnan(gradient_mass(logp, resp, plan, torch.zeros(B), alpha)["update_share"])
    with pytest.raises(ValueError, match="alpha"):
        gradient_mass(logp, resp, plan, adv, 1.5)


def test_every_public_algorithm_name_is_importable_from_the_package_root():
    """docs/algorithms.md: every function (and constant) of `hicra.algorithms.__all__` is importable from `hicra`,
    as the same object; the root's list of algorithm names is exactly that list."""
    import hicra
    import hicra.algorithms as algorithms

    root = {name for name, module in hicra._PUBLIC.items() if module == "hicra.algorithms"}
    assert root == set(algorithms.__all__)
    for name in algorithms.__all__:
        assert getattr(hicra, name) is getattr(algorithms, name)
    from hicra import gradient_mass, mass_matched_placebo_mask  # noqa: F401 - the reviewer's failing import


def test_public_names_are_listed_by_dir_and_one_name_per_concept():
    import hicra
    import hicra.study

    assert {"hicra_advantages", "policy_loss", "PlanningTagger", "run_study"} <= set(dir(hicra))
    assert hicra.planning_rate is hicra.planning_ratio  # the old name stays, as the same function
    assert not [name for name in hicra.study.__all__ if name.startswith("_")]


def _padded_batch(poison: float):
    """A [2, 4] batch whose padding (the last token of row 0, the last two of row 1) holds `poison`."""
    resp = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([[0.5, 0.5, 0.5, poison], [-1.0, -1.0, poison, poison]])
    old = torch.tensor([[-1.0, -0.5, -2.0, poison], [-0.3, -1.2, poison, poison]])
    return resp, adv, old


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), 1e30])
@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("poisoned", ["advantages", "log-probs", "both"])
def test_padding_values_reach_neither_loss_nor_gradient(poison, aggregation, poisoned):
    resp, adv, old = _padded_batch(poison)
    clean_adv, clean_old = torch.where(resp, adv, 0.0), torch.where(resp, old, 0.0)
    adv = adv if poisoned in ("advantages", "both") else clean_adv
    old = old if poisoned in ("log-probs", "both") else clean_old
    grads = []
    for a, o in ((adv, old), (clean_adv, clean_old)):
        weight = torch.tensor([0.3, -0.2], requires_grad=True)  # a "model": log-probs depend on the weights
        logprobs = o + 0.1 * weight.sum() * torch.ones_like(o)
        loss, _ = policy_loss(logprobs, o, a, resp, aggregation=aggregation, clip_ratio_c=3.0)
        loss.backward()
        grads.append((float(loss.detach()), weight.grad.clone()))
    assert math.isfinite(grads[0][0]) and grads[0][0] == grads[1][0]
    assert torch.isfinite(grads[0][1]).all() and torch.equal(grads[0][1], grads[1][1])


def test_gradient_mass_ignores_padding_values():
    from hicra.algorithms import gradient_mass

    resp, adv, logp = _padded_batch(float("nan"))
    plan = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    poisoned = gradient_mass(logp, resp, plan, adv, 0.2)
    clean = gradient_mass(torch.where(resp, logp, 0.0), resp, plan, torch.where(resp, adv, 0.0), 0.2)
    assert poisoned == clean and all(math.isfinite(v) for v in clean.values())


def test_lists_arrays_and_numpy_seeds_are_accepted():
    resp = torch.ones(2, 3, dtype=torch.bool)
    plan = torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    expected = hicra_advantages(torch.tensor([1.0, -2.0]), plan, 0.2)
    assert torch.equal(hicra_advantages([1.0, -2.0], plan, 0.2), expected)
    assert torch.equal(hicra_advantages(np.array([1.0, -2.0], dtype=np.float32), plan, 0.2), expected)
    assert torch.equal(hicra_advantages(torch.tensor([1, -2]), plan, 0.2), expected)  # integers: default float
    logp = torch.full((2, 3), -0.5)
    assert policy_loss(logp, logp, np.array([1.0, -2.0]), resp)[0] == policy_loss(logp, logp, torch.tensor(
        [1.0, -2.0]), resp)[0]
    assert torch.equal(placebo_mask(resp, 0.5, np.int64(3)), placebo_mask(resp, 0.5, 3))
    with pytest.raises(TypeError, match="got str"):
        placebo_mask(resp, 0.5, "3")


def test_group_ids_that_are_not_one_id_per_rollout_are_named():
    with pytest.raises(TypeError, match="one hashable id per rollout .*got a list"):
        grpo_advantages(torch.tensor([1.0, 0.0]), [[0, 1], [0, 1]])


def test_array_advantages_keep_their_float_dtype_or_take_the_log_probs():
    plan = torch.tensor([[True, False]])
    assert hicra_advantages(np.array([0.1234567891234]), plan, 0.2).dtype == torch.float64
    logp = torch.zeros(1, 2)
    loss, _ = policy_loss(logp, logp, np.array([1.0]), torch.ones(1, 2, dtype=torch.bool))
    assert loss.dtype == torch.float32
