"""One vocabulary of amplification masks (hicra.algorithms.amplification_mask) and the gated rule of TRL PR #4997."""

from __future__ import annotations

import math

import pytest
import torch

from hicra.algorithms import (
    GATED_ENTROPY_TOP,
    HIGH_ENTROPY_QUANTILE,
    MASK_SOURCES,
    amplification_mask,
    canonical_mask_source,
    gated_mask,
    gradient_mass,
    hicra_advantages,
    high_entropy_mask,
    mass_matched_placebo_mask,
    placebo_mask,
    planning_ratio,
    policy_loss,
)


def test_vocabulary():
    import hicra

    assert MASK_SOURCES == ("planning", "high-entropy", "placebo", "placebo-mass", "planning+entropy", "gated")
    assert hicra.MASK_SOURCES is MASK_SOURCES and hicra.amplification_mask is amplification_mask
    assert canonical_mask_source("sg") == "planning" and canonical_mask_source("sg+entropy") == "planning+entropy"
    assert [canonical_mask_source(s) for s in MASK_SOURCES] == list(MASK_SOURCES)
    with pytest.raises(ValueError, match="gated"):
        canonical_mask_source("nope")
    assert HIGH_ENTROPY_QUANTILE == 0.2 and GATED_ENTROPY_TOP == 0.3


def batch(seed=0, b=6, t=10):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, t + 1, (b,), generator=g)
    resp = torch.arange(t)[None] < lengths[:, None]
    plan = (torch.rand(b, t, generator=g) < 0.3)
    ent = torch.rand(b, t, generator=g) * 3
    adv = torch.randn(b, generator=g)
    return resp, plan, ent, adv


def test_each_source_against_its_definition():
    resp, plan, ent, adv = batch()
    groups = [0, 0, 0, 1, 1, 1]
    assert torch.equal(amplification_mask("planning", resp, planning_mask=plan), plan & resp)
    assert torch.equal(amplification_mask("sg", resp, planning_mask=plan), plan & resp)
    high = high_entropy_mask(ent, resp, 0.2)
    assert torch.equal(amplification_mask("high-entropy", resp, entropies=ent), high)
    assert torch.equal(amplification_mask("sg+entropy", resp, planning_mask=plan, entropies=ent), high & plan)
    rate = planning_ratio(plan, resp)
    assert rate == float((plan & resp).sum()) / float(resp.sum())
    placebo = amplification_mask("placebo", resp, planning_mask=plan, generator=3)
    assert torch.equal(placebo, placebo_mask(resp, rate, 3)) and int(placebo.sum()) == int((plan & resp).sum())
    assert int(amplification_mask("placebo", resp, placebo_rate=0.5, generator=3).sum()) == round(0.5 * int(resp.sum()))
    gated = amplification_mask("gated", resp, entropies=ent, advantages=adv, group_ids=groups)
    assert torch.equal(gated, gated_mask(ent, resp, adv, groups))
    for source, missing in (("planning", "planning_mask"), ("high-entropy", "entropies"), ("gated", "advantages"),
                            ("placebo", "generator")):
        with pytest.raises(ValueError, match=missing):
            amplification_mask(source, resp, planning_mask=plan if source == "placebo" else None,
                               entropies=ent if source == "gated" else None)


def hand_batch():
    """Two groups of three responses, T = 6. Group "a" has a positive response, group "b" has none."""
    lengths = torch.tensor([6, 2, 4, 5, 3, 4])
    resp = torch.arange(6)[None] < lengths[:, None]
    # entropies: distinct per token so each response's 0.7 quantile is easy to read off
    ent = torch.tensor([[0.1, 0.9, 0.2, 0.8, 0.3, 0.7],   # a0: A > 0, L = 6 > mean 4: eligible
                        [5.0, 6.0, 0.0, 0.0, 0.0, 0.0],   # a1: A > 0 but L = 2 < 4: not eligible
                        [4.0, 3.0, 2.0, 1.0, 0.0, 0.0],   # a2: A < 0: not eligible
                        [0.1, 0.9, 0.2, 0.8, 0.3, 0.0],   # b*: group without a positive advantage
                        [9.0, 9.0, 9.0, 0.0, 0.0, 0.0],
                        [1.0, 2.0, 3.0, 4.0, 0.0, 0.0]])
    adv = torch.tensor([0.8, 0.3, -1.1, 0.0, -0.5, -0.5])
    plan = torch.zeros(6, 6, dtype=torch.bool)
    plan[:, 1] = True  # token 1 of every response is a planning token
    return resp, ent, adv, ["a"] * 3 + ["b"] * 3, plan


def test_gated_selection_rules_on_a_hand_built_batch():
    resp, ent, adv, groups, plan = hand_batch()
    m = gated_mask(ent, resp, adv, groups)
    # a0: 0.7 quantile of [.1 .9 .2 .8 .3 .7] (sorted .1 .2 .3 .7 .8 .9, position 3.5) = 0.75 -> tokens 0.9, 0.8
    tau = torch.quantile(ent[0].double(), 1 - GATED_ENTROPY_TOP)
    assert abs(float(tau) - 0.75) < 1e-9
    assert m[0].tolist() == [False, True, False, True, False, False]
    assert int(m[0].sum()) == 2  # the top 30% of a 6-token response, by "exceeds the 0.7 quantile"
    assert not m[1].any() and not m[2].any()  # short positive response; negative response
    assert not m[3:].any()  # no positive advantage in group b: untouched
    # strategic-gram term: planning tokens of every response of a touched group, failed ones included
    ms = gated_mask(ent, resp, adv, groups, planning_mask=plan)
    assert ms[0].tolist() == [False, True, False, True, False, False]
    assert ms[1].tolist() == [False, True, False, False, False, False]
    assert ms[2].tolist() == [False, True, False, False, False, False]
    assert not ms[3:].any()
    # A * (1 + alpha sign(A)): x(1 - alpha) on the planning token of the failed response a2, x(1 + alpha) on a0's
    alpha = 0.2
    out = hicra_advantages(adv, ms, alpha)
    torch.testing.assert_close(out[2, 1], adv[2] * (1 - alpha))
    torch.testing.assert_close(out[0, 1], adv[0] * (1 + alpha))
    torch.testing.assert_close(out[2, 0], adv[2])
    assert torch.equal(out[3:], adv[3:, None].expand(3, 6))
    # [B, T] advantages (verl's layout) give the same mask; padding never selected
    assert torch.equal(gated_mask(ent, resp, adv[:, None] * resp, groups, plan), ms)
    assert not (ms & ~resp).any()
    # the PR's default leaves the strategic-gram term off
    assert torch.equal(amplification_mask("gated", resp, entropies=ent, advantages=adv, group_ids=groups,
                                          planning_mask=plan), m)
    assert torch.equal(amplification_mask("gated", resp, entropies=ent, advantages=adv, group_ids=groups,
                                          planning_mask=plan, gated_planning=True), ms)


def test_gated_changes_the_loss_and_its_gradient():
    resp, ent, adv, groups, plan = hand_batch()
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(6, 6, generator=g)
    logp = (old + 0.05 * torch.randn(6, 6, generator=g)).requires_grad_(True)
    mask = amplification_mask("gated", resp, entropies=ent, advantages=adv, group_ids=groups, planning_mask=plan,
                              gated_planning=True)
    loss_g, _ = policy_loss(logp, old, hicra_advantages(adv, mask, 0.2), resp)
    (grad_g,) = torch.autograd.grad(loss_g, logp)
    loss_0, _ = policy_loss(logp, old, adv, resp)
    (grad_0,) = torch.autograd.grad(loss_0, logp)
    assert abs(float((loss_g - loss_0).detach())) > 1e-4
    changed = (grad_g - grad_0).abs() > 1e-9
    assert torch.equal(changed, mask)  # only the selected tokens' gradients move


def test_gated_edge_cases():
    resp = torch.tensor([[True, True, False], [False, False, False]])
    ent = torch.tensor([[float("nan"), float("nan"), 1.0], [1.0, 2.0, 3.0]])
    m = gated_mask(ent, resp, torch.tensor([1.0, -1.0]), [0, 0])
    assert not m.any()  # NaN entropies select nothing; an empty response selects nothing
    with pytest.raises(ValueError):
        gated_mask(ent, resp, torch.tensor([1.0, -1.0]), [0, 0], top=0.0)


def _mass_batch(seed=0, b=8, t=30):
    g = torch.Generator().manual_seed(seed)
    resp, plan, _, adv = batch(seed, b, t)
    adv[0] = 0.0  # a row with nothing to amplify
    logprobs = -3 * torch.rand(b, t, generator=g)
    return resp, plan, logprobs, adv


def _by_loop(resp, plan, logprobs, adv, seed):
    """The mass-matched placebo by a plain Python loop over the same random order (an independent computation)."""
    weight = {(i, j): abs(float(adv[i])) * max(0.0, 1.0 - math.exp(float(logprobs[i, j])))
              for i in range(resp.shape[0]) for j in range(resp.shape[1]) if resp[i, j]}
    target = sum(w for (i, j), w in weight.items() if plan[i, j])
    candidates = [(i, j) for i in range(resp.shape[0]) for j in range(resp.shape[1]) if resp[i, j] and not plan[i, j]]
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed)).tolist()
    best_k, best_gap, total = 0, abs(target), 0.0
    for k, idx in enumerate(order, start=1):
        total += weight[candidates[idx]]
        if abs(total - target) < best_gap - 1e-12:
            best_k, best_gap = k, abs(total - target)
    out = torch.zeros_like(resp)
    for idx in order[:best_k]:
        out[candidates[idx]] = True
    return out, target


@pytest.mark.parametrize("seed", range(40))
def test_mass_matched_placebo_against_a_loop_and_its_definition(seed):
    """placebo-mass: the same tokens as a plain loop over the same random order (the shortest prefix closest to the
    target, so zero-weight tokens at the end of the prefix are left out: seed 8 has such a tie); never padding or
    planning tokens; its update mass within one token's weight of the planning tokens', so amplifying it changes
    the update as much as HICRA does (`gradient_mass`), with another token count. Padding may hold NaN."""
    resp, plan, logprobs, adv = _mass_batch(seed)
    logprobs = torch.where(resp, logprobs, torch.nan)
    got = mass_matched_placebo_mask(resp, plan, logprobs, adv, seed)
    want, target = _by_loop(resp, plan, logprobs, adv, seed)
    assert torch.equal(got, want)
    assert not bool((got & ~resp).any()) and not bool((got & plan).any())
    weight = torch.where(resp, adv[:, None].abs() * (1 - logprobs.exp()), 0.0)
    assert abs(float((weight * got).sum()) - target) <= float(weight.max()) / 2 + 1e-9
    finite = torch.where(resp, logprobs, 0.0)
    hicra = gradient_mass(finite, resp, plan, adv, 0.2)["update_change"]
    placebo = gradient_mass(finite, resp, got, adv, 0.2)["update_change"]
    assert placebo == pytest.approx(hicra, abs=0.2 * float(weight.max()) / float(weight.sum()))
    assert torch.equal(amplification_mask("placebo-mass", resp, planning_mask=plan, logprobs=logprobs,
                                          advantages=adv, generator=seed), got)
    assert torch.equal(mass_matched_placebo_mask(resp, plan, logprobs, adv, torch.Generator().manual_seed(seed)), got)


def test_mass_matched_placebo_edges():
    """Nothing to match (no planning token, or no advantage) selects nothing; more mass than the other tokens hold
    selects them all; the inputs the source needs are named when missing; a count-matched placebo on the same batch
    carries less of the update when planning tokens are the uncertain ones."""
    resp, plan, logprobs, adv = _mass_batch(5)
    none = torch.zeros_like(plan)
    assert not mass_matched_placebo_mask(resp, none, logprobs, adv, 0).any()
    assert not mass_matched_placebo_mask(resp, plan, logprobs, torch.zeros_like(adv), 0).any()
    confident = torch.where(plan, -5.0, -1e-4)  # planning tokens uncertain, the rest near-certain: little mass
    allrest = mass_matched_placebo_mask(resp, plan, confident, adv, 0)
    assert torch.equal(allrest, resp & ~plan)
    count = placebo_mask(resp, planning_ratio(plan, resp), 0)
    assert gradient_mass(confident, resp, count, adv, 0.2)["update_change"] < 0.5 * gradient_mass(
        confident, resp, plan, adv, 0.2)["update_change"]
    for missing in ("logprobs", "advantages", "planning_mask"):
        kw = {"planning_mask": plan, "logprobs": logprobs, "advantages": adv, "generator": 0}
        kw[missing] = None
        with pytest.raises(ValueError, match=missing):
            amplification_mask("placebo-mass", resp, **kw)
    with pytest.raises(ValueError, match="one shape"):
        mass_matched_placebo_mask(resp, plan, logprobs[:, :-1], adv, 0)
    with pytest.raises(ValueError, match="one shape"):  # a broadcastable planning mask is refused, not broadcast
        mass_matched_placebo_mask(resp, plan[:, :1], logprobs, adv, 0)
    bad = logprobs.clone()
    bad[resp.nonzero()[0].tolist()] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        mass_matched_placebo_mask(resp, plan, bad, adv, 0)
    gen = torch.Generator().manual_seed(1)
    mass_matched_placebo_mask(resp, none, logprobs, adv, gen)  # nothing to match still draws the order once
    assert torch.equal(gen.get_state(), (lambda g: (torch.randperm(int((resp & ~none).sum()), generator=g), g)[1])(
        torch.Generator().manual_seed(1)).get_state())
