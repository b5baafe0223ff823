"""hicra.integrations.verl against real verl 0.9.1 on CPU: registry, estimator values, plumbing on a DataProto."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("verl")

import torch  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402

from hicra.algorithms import grpo_advantages, hicra_advantages  # noqa: E402
from hicra.integrations import verl as hv  # noqa: E402


def random_batch(seed: int, groups: int = 4, n: int = 5, t: int = 9):
    g = torch.Generator().manual_seed(seed)
    b = groups * n
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    response_mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    scores = torch.randint(0, 2, (b,), generator=g).float() + 0.1 * torch.rand(b, generator=g)
    rewards = torch.zeros(b, t)
    rewards[torch.arange(b), lengths - 1] = scores  # outcome reward on the last response token, as verl does
    index = np.array([f"u{i // n}" for i in range(b)], dtype=object)
    planning = (torch.rand(b, t, generator=g) < 0.3)
    return rewards, response_mask, index, planning, scores


def test_registered_and_callable_by_name():
    assert core_algos.get_adv_estimator_fn("hicra") is hv.compute_hicra_outcome_advantage
    rewards, mask, index, planning, _ = random_batch(0)
    adv, ret = core_algos.get_adv_estimator_fn("hicra")(token_level_rewards=rewards, response_mask=mask,
                                                        index=index, planning_mask=planning, alpha=0.2)
    assert adv.shape == mask.shape and torch.equal(adv, ret)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("norm", [True, False])
def test_estimator_equals_hicra_of_grpo(seed, norm):
    rewards, mask, index, planning, scores = random_batch(seed)
    alpha = 0.1 + 0.15 * seed
    with hv.planning_mask_context(planning, alpha):
        adv, _ = hv.compute_hicra_outcome_advantage(rewards, mask, index, norm_adv_by_std_in_grpo=norm)
    expect = hicra_advantages(grpo_advantages(scores, list(index), scale="std" if norm else "none"),
                              planning & mask.bool(), alpha) * mask
    torch.testing.assert_close(adv, expect)
    # planning tokens move up by alpha*|A| (credit up for good rollouts, blame down for bad), others unchanged
    base = grpo_advantages(scores, list(index), scale="std" if norm else "none")[:, None] * mask
    on = planning & mask.bool()
    assert torch.all(adv[~on] == base[~on])
    torch.testing.assert_close(adv[on] - base[on], alpha * base[on].abs())
    assert torch.all(torch.sign(adv[on]) == torch.sign(base[on]))


@pytest.mark.parametrize("norm", [True, False])
def test_alpha_zero_equals_verl_grpo(norm):
    """Independent reference: verl's own GRPO estimator."""
    rewards, mask, index, planning, _ = random_batch(7)
    adv, _ = hv.compute_hicra_outcome_advantage(rewards, mask, index, planning_mask=planning, alpha=0.0,
                                                norm_adv_by_std_in_grpo=norm)
    ref, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, index, norm_adv_by_std_in_grpo=norm)
    torch.testing.assert_close(adv, ref, atol=1e-5, rtol=1e-5)


def test_estimator_without_mask_is_an_error():
    rewards, mask, index, _, _ = random_batch(1)
    with pytest.raises(RuntimeError, match="planning mask"):
        hv.compute_hicra_outcome_advantage(rewards, mask, index)


@pytest.fixture(scope="module")
def lab_tokenizer():
    from hicra.lab.model import train_tokenizer
    from hicra.planning import Lexicon

    texts = ["reach 12 using 3 4 5", "split it into tens and ones: 3 * 4 = 12. so the answer is 12",
             "dead end. go back and try 5 + 7 = 12"] * 30 + list(Lexicon.preset("lab").texts) * 10
    return train_tokenizer(texts, vocab_size=400)


def make_dataproto(tok):
    """2 prompts x 3 responses as verl's rollout leaves them: left-padded prompts, right-padded responses."""
    from verl.protocol import DataProto

    prompts = ["reach 12 using 3 4 5\n", "reach 7 using 2 5\n"]
    responses = [["split it into tens and ones: 3 * 4 = 12. so the answer is 12", "5 + 7 = 12", "dead end. i give up"],
                 ["split it into tens and ones: 2 + 5 = 7. so the answer is 7", "2 * 5 = 10", "so the answer is 3"]]
    scores = [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    p_ids = [tok(p)["input_ids"] for p in prompts]
    r_ids = [[tok(r)["input_ids"] + [tok.eos_token_id] for r in rs] for rs in responses]
    tp = max(len(p) for p in p_ids)
    tr = max(len(r) for rs in r_ids for r in rs)
    rows = []
    for i, rs in enumerate(r_ids):
        for j, r in enumerate(rs):
            rows.append((p_ids[i], r, scores[i][j], f"uid{i}"))
    b = len(rows)
    pad = tok.pad_token_id
    prompt_t = torch.full((b, tp), pad)
    resp_t = torch.full((b, tr), pad)
    attn = torch.zeros(b, tp + tr, dtype=torch.long)
    level = torch.zeros(b, tr)
    for k, (p, r, s, _) in enumerate(rows):
        prompt_t[k, tp - len(p):] = torch.tensor(p)
        resp_t[k, : len(r)] = torch.tensor(r)
        attn[k, tp - len(p): tp + len(r)] = 1
        level[k, len(r) - 1] = s
    tensors = {"prompts": prompt_t, "responses": resp_t, "input_ids": torch.cat([prompt_t, resp_t], 1),
               "attention_mask": attn, "token_level_scores": level, "token_level_rewards": level.clone(),
               "old_log_probs": -torch.rand(b, tr)}
    uid = np.array([r[3] for r in rows], dtype=object)
    data = DataProto.from_dict(tensors=tensors, non_tensors={"uid": uid}, meta_info={"global_steps": 3})
    flat_responses = [r for rs in responses for r in rs]
    return data, rows, flat_responses, [s for ss in scores for s in ss]


def test_plumbing_end_to_end_on_dataproto(lab_tokenizer, tmp_path):
    import verl.trainer.ppo.ray_trainer as ray_trainer
    from verl.trainer.config import AlgoConfig

    from hicra.dynamics.records import read_rollouts, read_run_info
    from hicra.planning import Lexicon, PlanningTagger

    tok = lab_tokenizer
    data, rows, texts, scores = make_dataproto(tok)
    plumbing = hv.HICRAPlumbing(tok, lexicon="lab", alpha=0.3, run_dir=tmp_path / "run")
    original = ray_trainer.compute_advantage
    plumbing.install()
    try:
        assert ray_trainer.compute_advantage == plumbing.compute_advantage
        # exactly the call RayPPOTrainer.fit makes
        out = ray_trainer.compute_advantage(data, adv_estimator="hicra", gamma=1.0, lam=1.0, num_repeat=3,
                                            norm_adv_by_std_in_grpo=False,
                                            config=AlgoConfig(adv_estimator="hicra", norm_adv_by_std_in_grpo=False))
    finally:
        plumbing.uninstall()
    assert ray_trainer.compute_advantage is original
    # independent recomputation: per-sequence tagging of each response's token ids
    tagger = PlanningTagger(Lexicon.preset("lab"), tok)
    t = data.batch["responses"].size(1)
    expect_mask = torch.zeros(len(rows), t, dtype=torch.bool)
    for k, (_, r, _, _) in enumerate(rows):
        expect_mask[k, : len(r)] = torch.as_tensor(tagger.token_mask(r))
    assert expect_mask.any() and torch.equal(out.batch["planning_mask"].cpu(), expect_mask)
    rmask = out.batch["response_mask"]
    base = grpo_advantages(torch.tensor(scores), [r[3] for r in rows], scale="none")
    expect = hicra_advantages(base, expect_mask, 0.3) * rmask
    torch.testing.assert_close(out.batch["advantages"], expect)
    torch.testing.assert_close(out.batch["returns"], expect)
    # another estimator passes straight through to verl
    plain = original(make_dataproto(tok)[0], adv_estimator="grpo", norm_adv_by_std_in_grpo=False)
    wrapped = plumbing.compute_advantage(make_dataproto(tok)[0], "grpo", norm_adv_by_std_in_grpo=False)
    torch.testing.assert_close(wrapped.batch["advantages"], plain.batch["advantages"])
    # rollout rows for the analyzer
    info = read_run_info(tmp_path / "run")
    assert info["algorithm"] == "hicra" and info["alpha"] == 0.3 and info["lexicon"] == "lab"
    table = read_rollouts(tmp_path / "run").to_pylist()
    assert [r["step"] for r in table] == [3] * 6
    assert [r["response"] for r in table] == texts
    assert [r["prompt_id"] for r in table] == ["uid0"] * 3 + ["uid1"] * 3
    assert [r["sample_idx"] for r in table] == [0, 1, 2] * 2
    assert [r["reward"] for r in table] == scores and [r["correct"] for r in table] == [s >= 1 for s in scores]
    assert table[0]["prompt"] == "reach 12 using 3 4 5\n"
    for k, r in enumerate(table):
        assert r["planning_mask"] == expect_mask[k, : len(r["token_ids"])].tolist()
        assert r["truncated"] is False
        np.testing.assert_allclose(r["logprobs"], data.batch["old_log_probs"][k, : len(r["token_ids"])].numpy(),
                                   rtol=1e-6)
    from hicra.cli import main

    assert main(["analyze", str(tmp_path / "run"), "--out", str(tmp_path / "an"), "--quiet", "--no-report"]) == 0
    summary = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert (summary["first_step"], summary["n_responses"], summary["skipped"]) == (3, 6, [])


def test_placebo_plumbing_matches_sg_rate(lab_tokenizer):
    data, _, _, _ = make_dataproto(lab_tokenizer)
    sg_plumbing = hv.HICRAPlumbing(lab_tokenizer, lexicon="lab")
    placebo = hv.HICRAPlumbing(lab_tokenizer, lexicon="lab", mask_source="placebo", seed=1)
    data.batch["response_mask"] = data.batch["attention_mask"][:, -data.batch["responses"].size(1):]
    sg, _ = sg_plumbing.planning_mask(data)
    mask, sg2 = placebo.planning_mask(data)
    assert torch.equal(sg, sg2) and int(mask.sum()) == int(sg.sum())
    assert not (mask & ~data.batch["response_mask"].bool()).any()
    with pytest.raises(ValueError):
        hv.HICRAPlumbing(lab_tokenizer, mask_source="high-entropy")


def test_rollout_rows_keep_a_multi_turn_response_whole(lab_tokenizer):
    """Tool output inside a response (response_mask 0 there, attended): the row keeps the whole response, up to
    its EOS. Before, the row took the first sum(response_mask) tokens: tool text in, the last model tokens out."""
    from verl.protocol import DataProto

    tok = lab_tokenizer
    prompt = tok("reach 12 using 3 4 5\n")["input_ids"]
    first, tool = tok("split it into tens and ones:")["input_ids"], tok(" 3 * 4 = 12 ")["input_ids"]
    last = tok("so the answer is 12")["input_ids"] + [tok.eos_token_id]
    resp = first + tool + last
    t = len(resp) + 3
    responses = torch.full((1, t), tok.pad_token_id)
    responses[0, : len(resp)] = torch.tensor(resp)
    rmask = torch.zeros(1, t, dtype=torch.long)
    rmask[0, : len(resp)] = torch.tensor([1] * len(first) + [0] * len(tool) + [1] * len(last))
    attention = torch.cat([torch.ones(1, len(prompt), dtype=torch.long), (torch.arange(t) < len(resp)).long()[None]],
                          dim=1)
    scores = torch.zeros(1, t)
    scores[0, len(resp) - 1] = 1.0
    data = DataProto.from_dict(tensors={"prompts": torch.tensor([prompt]), "responses": responses,
                                        "response_mask": rmask, "attention_mask": attention,
                                        "token_level_scores": scores, "old_log_probs": -torch.rand(1, t)},
                               non_tensors={"uid": np.array(["u0"], dtype=object)})
    row = hv.rollout_rows(data, tok, step=1, planning_mask=rmask.bool())[0]
    assert row["token_ids"].tolist() == resp and row["truncated"] is False
    assert row["response"] == tok.decode(resp, skip_special_tokens=True)
    assert len(row["logprobs"]) == len(resp) and row["planning_mask"].tolist() == rmask[0, : len(resp)].bool().tolist()


def test_verl_main_pieces(lab_tokenizer, tmp_path):
    """The entry point's parts (not a Ray run): plumbing from a verl-style config, the TaskRunner actor class."""
    from omegaconf import OmegaConf

    from hicra.integrations.verl_main import plumbing_from_config, task_runner_class

    lab_tokenizer.save_pretrained(tmp_path / "tok")
    cfg = OmegaConf.create({
        "actor_rollout_ref": {"model": {"path": str(tmp_path / "tok")}, "rollout": {"n": 4}},
        "algorithm": {"adv_estimator": "hicra", "norm_adv_by_std_in_grpo": False},
        "data": {"train_files": "train.parquet"},
        "hicra": {"alpha": 0.25, "lexicon": "lab", "run_dir": str(tmp_path / "run"), "seed": 3}})
    p = plumbing_from_config(cfg)
    assert (p.alpha, p.lexicon.name, p.run_dir, p.run_info["config"]["rollout_n"]) == \
        (0.25, "lab", tmp_path / "run", 4)
    data, *_ = make_dataproto(lab_tokenizer)
    data.batch["response_mask"] = data.batch["attention_mask"][:, -data.batch["responses"].size(1):]
    assert p.planning_mask(data)[0].any()
    cls = task_runner_class()
    assert hasattr(cls, "remote") and "run" in vars(cls.__ray_metadata__.modified_class.__mro__[1])


# ------------------------------------------------------------------------------------------------------------------
# the actor loss (verl's default v1 trainer, and the legacy trainer): HICRALoss around verl's own ppo_loss
# ------------------------------------------------------------------------------------------------------------------

ALPHA = 0.3


def actor_config():
    from verl.workers.config import FSDPActorConfig

    return FSDPActorConfig(strategy="fsdp", ppo_mini_batch_size=6, ppo_micro_batch_size_per_gpu=6, rollout_n=3,
                           clip_ratio_low=0.2, clip_ratio_high=0.28, loss_agg_mode="token-mean",
                           use_dynamic_bsz=False)


def fixed_batch(tok):
    """2 prompts x 3 responses: token ids, old log-probs, old entropies, uid and GRPO (r - mean) advantages."""
    prompts = ["reach 12 using 3 4 5\n", "reach 7 using 2 5\n"]
    responses = [["split it into tens and ones: 3 * 4 = 12. so the answer is 12", "5 + 7 = 12", "dead end. i give up"],
                 ["split it into tens and ones: 2 + 5 = 7. so the answer is 7", "2 * 5 = 10", "so the answer is 3"]]
    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    uids = ["u0"] * 3 + ["u1"] * 3
    g = torch.Generator().manual_seed(0)
    rows = []
    for i, rs in enumerate(responses):
        for r in rs:
            ids = tok(r)["input_ids"] + [tok.eos_token_id]
            rows.append({"prompt": tok(prompts[i])["input_ids"], "response": ids,
                         "old": -torch.rand(len(ids), generator=g), "entropy": 2 * torch.rand(len(ids), generator=g)})
    return rows, uids, grpo_advantages(scores, uids, scale="none")


def v1_data(tok):
    """The actor's micro-batch as verl's v1 trainer hands it to the loss: a TensorDict of jagged (nested) fields
    from the TransferQueue (built with verl's own list_of_dict_to_tensordict), plus the engine's batch info."""
    from verl.utils import tensordict_utils as tu

    rows, uids, adv = fixed_batch(tok)
    samples = []
    for k, r in enumerate(rows):
        p, ids = torch.tensor(r["prompt"]), torch.tensor(r["response"])
        samples.append({"prompts": p, "responses": ids, "input_ids": torch.cat([p, ids]),
                        "response_mask": torch.ones(len(ids), dtype=torch.long), "old_log_probs": r["old"],
                        "entropy": r["entropy"], "advantages": torch.full((len(ids),), float(adv[k])),
                        "uid": uids[k]})
    data = tu.list_of_dict_to_tensordict(samples)
    n_tok = sum(len(r["response"]) for r in rows)
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=n_tok, global_batch_size=len(rows))
    return data, rows, uids, adv


def model_output(rows, shift: float, seed: int = 1):
    """log_probs as verl's engine returns them: one jagged row per sequence (prompt + response), the response's
    log-probs at positions prompt_len - 1 ... end - 1. Returns it and the [B, T] leaf the loss differentiates."""
    g = torch.Generator().manual_seed(seed)
    t = max(len(r["response"]) for r in rows)
    old = torch.stack([torch.nn.functional.pad(r["old"], (0, t - len(r["old"]))) for r in rows])
    leaf = (old + shift * torch.randn(old.shape, generator=g)).requires_grad_(True)
    seqs = [torch.cat([torch.zeros(len(r["prompt"]) - 1), leaf[i, : len(r["response"])], torch.zeros(1)])
            for i, r in enumerate(rows)]
    return {"log_probs": torch.nested.as_nested_tensor(seqs, layout=torch.jagged)}, leaf, old


def padded_rows(rows, key, t):
    return torch.stack([torch.nn.functional.pad(r[key], (0, t - len(r[key]))) for r in rows])


SOURCES = ["planning", "high-entropy", "placebo", "placebo-mass", "planning+entropy", "gated"]


@pytest.mark.parametrize("source", SOURCES)
def test_v1_actor_loss_equals_policy_loss_with_amplified_advantages(lab_tokenizer, source):
    from functools import partial

    from verl.workers.utils.losses import ppo_loss

    from hicra.algorithms import amplification_mask, policy_loss
    from hicra.planning import Lexicon, PlanningTagger

    tok = lab_tokenizer
    data, rows, uids, adv = v1_data(tok)
    out, leaf, old = model_output(rows, shift=0.3)
    loss_fn = hv.HICRALoss(partial(ppo_loss, config=actor_config()), tok, lexicon="lab", alpha=ALPHA,
                           mask_source=source, gated_planning=True, seed=5)
    loss, metrics = loss_fn(model_output=out, data=data)
    (grad,) = torch.autograd.grad(loss, leaf)
    # independent recomputation of the mask: per-sequence tagging, the old entropies, the same placebo seed
    t = leaf.size(1)
    rmask = torch.arange(t)[None, :] < torch.tensor([len(r["response"]) for r in rows])[:, None]
    tagger = PlanningTagger(Lexicon.preset("lab"), tok)
    plan = torch.zeros_like(rmask)
    for k, r in enumerate(rows):
        plan[k, : len(r["response"])] = torch.as_tensor(tagger.token_mask(r["response"]))
    mask = amplification_mask(source, rmask, planning_mask=plan, entropies=padded_rows(rows, "entropy", t),
                              advantages=adv, group_ids=uids, generator=5, gated_planning=True, logprobs=old)
    assert mask.any() and not (mask & ~rmask).any()
    assert torch.equal(loss_fn.mask(data)["planning_mask"] & rmask, plan)
    # verl's defaults: clip 0.2 / 0.28 here, dual clip 3.0, token-mean over the micro-batch's tokens
    ref, _ = policy_loss(leaf, old, hicra_advantages(adv, mask, ALPHA), rmask, clip_low=0.2, clip_high=0.28,
                         clip_ratio_c=3.0)
    (ref_grad,) = torch.autograd.grad(ref, leaf)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grad, ref_grad)
    # and it is not plain GRPO (verl's own loss on the same batch)
    out0, leaf0, _ = model_output(rows, shift=0.3)
    plain, _ = ppo_loss(actor_config(), out0, data)
    (plain_grad,) = torch.autograd.grad(plain, leaf0)
    assert abs(float(plain.detach() - loss.detach())) > 1e-6
    moved = (plain_grad - grad).abs() > 1e-9
    assert moved.any() and not (moved & ~mask).any()  # only amplified tokens' gradients change
    assert metrics["hicra/amplified_ratio"].values == pytest.approx([float(mask.sum()) / float(rmask.sum())])


def test_v1_alpha_zero_is_verls_own_loss(lab_tokenizer):
    from functools import partial

    from verl.workers.utils.losses import ppo_loss

    data, rows, _, _ = v1_data(lab_tokenizer)
    out, leaf, _ = model_output(rows, shift=0.3)
    loss_fn = hv.HICRALoss(partial(ppo_loss, config=actor_config()), lab_tokenizer, lexicon="lab", alpha=0.0)
    loss, _ = loss_fn(model_output=out, data=data)
    (grad,) = torch.autograd.grad(loss, leaf)
    out0, leaf0, _ = model_output(rows, shift=0.3)
    plain, _ = ppo_loss(actor_config(), out0, data)
    (plain_grad,) = torch.autograd.grad(plain, leaf0)
    torch.testing.assert_close(loss, plain)
    torch.testing.assert_close(grad, plain_grad)


def test_v1_gated_needs_uid_and_entropy_sources_need_entropies(lab_tokenizer):
    from functools import partial

    from verl.workers.utils.losses import ppo_loss

    data, rows, _, _ = v1_data(lab_tokenizer)
    out, _, _ = model_output(rows, shift=0.1)
    base = partial(ppo_loss, config=actor_config())
    no_entropy = data.exclude("entropy")
    with pytest.raises(ValueError, match="calculate_entropy"):
        hv.HICRALoss(base, lab_tokenizer, lexicon="lab", mask_source="high-entropy")(model_output=out,
                                                                                    data=no_entropy)
    with pytest.raises(ValueError, match="uid"):
        hv.HICRALoss(base, lab_tokenizer, lexicon="lab", mask_source="gated")(model_output=out,
                                                                             data=data.exclude("uid"))
    with pytest.raises(ValueError, match="mask source"):
        hv.HICRALoss(base, lab_tokenizer, mask_source="nope")


def test_legacy_actor_loss_on_left_right_padded_batch(lab_tokenizer):
    """The legacy trainer hands the same worker a DataProto converted by verl's own left_right_2_no_padding (dense
    responses and advantages, no old entropies: an entropy source uses the current policy's, detached)."""
    from functools import partial

    from verl.workers.utils.losses import ppo_loss
    from verl.workers.utils.padding import left_right_2_no_padding

    from hicra.algorithms import amplification_mask, policy_loss

    tok = lab_tokenizer
    data, rows_, texts, scores = make_dataproto(tok)
    b, t = data.batch["responses"].shape
    attn = data.batch["attention_mask"]
    rmask = attn[:, -t:]
    data.batch["response_mask"] = rmask
    data.batch["position_ids"] = (attn.cumsum(-1) - 1).clamp(min=0)
    adv = grpo_advantages(torch.tensor(scores), [r[3] for r in rows_], scale="none")
    data.batch["advantages"] = adv[:, None] * rmask
    td = left_right_2_no_padding(data.to_tensordict())
    from verl.utils import tensordict_utils as tu

    tu.assign_non_tensor(td, dp_size=1, batch_num_tokens=int(rmask.sum()), global_batch_size=b)
    g = torch.Generator().manual_seed(2)
    old = data.batch["old_log_probs"]
    leaf = (old + 0.3 * torch.randn(old.shape, generator=g)).requires_grad_(True)
    ent = 2 * torch.rand(b, t, generator=g)
    seqs, ents = [], []
    for k, (p, r, _, _) in enumerate(rows_):
        seqs.append(torch.cat([torch.zeros(len(p) - 1), leaf[k, : len(r)], torch.zeros(1)]))
        ents.append(torch.cat([torch.zeros(len(p) - 1), ent[k, : len(r)], torch.zeros(1)]))
    out = {"log_probs": torch.nested.as_nested_tensor(seqs, layout=torch.jagged),
           "entropy": torch.nested.as_nested_tensor(ents, layout=torch.jagged)}
    for source in ("planning", "gated"):
        loss_fn = hv.HICRALoss(partial(ppo_loss, config=actor_config()), tok, lexicon="lab", alpha=ALPHA,
                               mask_source=source, gated_planning=True)
        loss, _ = loss_fn(model_output=out, data=td)
        (grad,) = torch.autograd.grad(loss, leaf)
        m = loss_fn.mask(td, out)
        plan = hv.HICRAPlumbing(tok, lexicon="lab").sg_mask(data.batch["responses"], rmask)
        expect = amplification_mask(source, rmask.bool(), planning_mask=plan, entropies=ent * rmask,
                                    advantages=adv, group_ids=[r[3] for r in rows_], gated_planning=True)
        assert expect.any() and torch.equal(m["mask"], expect)
        ref, _ = policy_loss(leaf, old, hicra_advantages(adv, expect, ALPHA), rmask, clip_low=0.2, clip_high=0.28,
                             clip_ratio_c=3.0)
        (ref_grad,) = torch.autograd.grad(ref, leaf)
        torch.testing.assert_close(loss, ref)
        torch.testing.assert_close(grad, ref_grad)


def test_v1_worker_class_and_task_runners(lab_tokenizer, tmp_path):
    """What verl_main puts into verl: a worker subclass with a registered init_model, the v1 module patch, and a
    legacy TaskRunner that swaps the actor worker unless the legacy estimator is chosen."""
    import types

    from omegaconf import OmegaConf
    from verl.single_controller.base.decorator import MAGIC_ATTR, Dispatch
    from verl.workers.engine_workers import ActorRolloutRefWorker

    from hicra.integrations.verl_main import (
        hicra_options,
        install_v1_worker,
        task_runner_class,
        task_runner_class_v1,
    )

    cfg = OmegaConf.create({
        "actor_rollout_ref": {"model": {"path": "m"}, "actor": {"use_kl_loss": False}, "rollout": {"n": 4}},
        "algorithm": {"adv_estimator": "grpo", "use_kl_in_reward": False},
        "hicra": {"alpha": 0.25, "lexicon": "lab", "mask_source": "gated", "gated_planning": True}})
    assert hicra_options(cfg) == {"alpha": 0.25, "lexicon": "lab", "mask_source": "gated", "gated_planning": True}
    # a null option is unset, on the driver and in the worker alike (a null entropy_quantile had passed the driver
    # check and then failed HICRALoss's in the worker; a reviewer's repro)
    nulls = OmegaConf.create({"hicra": {"alpha": 0.2, "entropy_quantile": None, "placebo_rate": None}})
    assert hicra_options(nulls) == {"alpha": 0.2}
    hv.HICRALoss(lambda *a, **k: None, None, **{**hicra_options(nulls), "lexicon": "lab"})
    module = types.SimpleNamespace(ActorRolloutRefWorker=ActorRolloutRefWorker)
    worker = install_v1_worker(cfg, module)
    assert module.ActorRolloutRefWorker is worker and issubclass(worker, ActorRolloutRefWorker)
    assert worker.hicra_options["mask_source"] == "gated"
    assert worker.hicra_options["group_size"] == 4  # rollout.n: HICRALoss checks that gated sees whole groups
    assert getattr(worker.init_model, MAGIC_ATTR)["dispatch_mode"] == Dispatch.ONE_TO_ALL
    assert hasattr(task_runner_class_v1(), "remote")
    legacy = task_runner_class().__ray_metadata__.modified_class  # our subclass of verl's TaskRunner
    runner = legacy()
    cls, _ = runner.add_actor_rollout_worker(cfg)
    assert issubclass(cls, ActorRolloutRefWorker) and cls is not ActorRolloutRefWorker
    cfg.algorithm.adv_estimator = "hicra"
    runner = legacy()
    assert runner.add_actor_rollout_worker(cfg)[0] is ActorRolloutRefWorker
    from hicra.integrations.verl_main import config_problem

    cfg.trainer = {"use_v1": True}
    assert "use_v1=False" in config_problem(cfg)  # the legacy estimator on the v1 trainer
    cfg.algorithm.adv_estimator = "grpo"
    assert config_problem(cfg) is None
    cfg.trainer.use_v1 = False
    assert "calculate_entropy" in config_problem(cfg)  # gated on the legacy trainer: no old entropies in the batch
    cfg.actor_rollout_ref.actor.calculate_entropy = True
    assert "trainer.balance_batch=True" in config_problem(cfg)  # verl's default splits groups across ranks
    cfg.trainer.balance_batch = False
    assert config_problem(cfg) is None
    cfg.hicra.run_dir = str(tmp_path)
    assert "run_dir" in config_problem(cfg)
    cfg.hicra.typo = 1
    with pytest.raises(ValueError, match="typo"):
        hicra_options(cfg)
    assert "typo" in config_problem(cfg)


@pytest.mark.parametrize("estimator, hicra, message", [
    ("grpo", {"alpha": 1.5}, "+hicra.alpha must be in [0, 1), got 1.5"),
    ("hicra", {"alpha": 1.5}, "+hicra.alpha must be in [0, 1), got 1.5"),
    ("grpo", {"alpha": "high"}, "+hicra.alpha must be a number"),
    ("grpo", {"entropy_quantile": 5}, "+hicra.entropy_quantile must be in [0, 1], got 5"),
    ("grpo", {"placebo_rate": -0.1}, "+hicra.placebo_rate must be in [0, 1] or unset, got -0.1"),
    ("grpo", {"lexicon": "nosuch"}, "+hicra.lexicon: unknown lexicon preset 'nosuch'"),
    ("hicra", {"mask_source": "high-entropy"}, "+hicra.mask_source=high-entropy needs the actor-loss path"),
    ("hicra", {"gated_planning": True}, "+hicra.gated_planning is not used by the hicra estimator"),
    ("hicra", {"entropy_quantile": 0.3}, "+hicra.entropy_quantile is not used by the hicra estimator"),
    ("hicra", {"mask_source": "placebo", "placebo_rate": 0.05}, None),
    ("grpo", {"alpha": 0.2, "lexicon": "lab", "entropy_quantile": 0.3, "mask_source": "high-entropy"}, None),
])
def test_verl_main_refuses_on_the_driver_what_workers_would_refuse(estimator, hicra, message):
    """Before, these passed config_problem and failed inside the Ray workers or the TaskRunner (or were ignored)."""
    from omegaconf import OmegaConf

    from hicra.integrations.verl_main import config_problem

    cfg = OmegaConf.create({"actor_rollout_ref": {"actor": {"calculate_entropy": True}},
                            "algorithm": {"adv_estimator": estimator}, "trainer": {"use_v1": False},
                            "hicra": hicra})
    problem = config_problem(cfg)
    assert problem == message if message is None else message in problem, problem


def test_verl_main_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "hicra.integrations.verl_main", "+hicra.bogus=1",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-500:]
    assert out.stderr.strip().splitlines()[-1].startswith("hicra verl_main: error: unknown +hicra option(s) ['bogus']")


def test_v1_worker_init_model_wraps_verls_loss(lab_tokenizer, tmp_path, monkeypatch):
    """The worker subclass's init_model (run in each Ray worker) wraps the loss verl built and hands it to the actor."""
    from functools import partial

    from omegaconf import OmegaConf
    from verl.workers.engine_workers import ActorRolloutRefWorker
    from verl.workers.utils.losses import ppo_loss

    lab_tokenizer.save_pretrained(tmp_path / "tok")
    handed = {}

    class FakeActor:
        def set_loss_fn(self, loss_fn):
            handed["loss_fn"] = loss_fn

    def fake_init_model(self):  # what verl's init_model leaves behind for the actor role
        self.actor = FakeActor()
        self.loss_fn = partial(ppo_loss, config=actor_config())

    monkeypatch.setattr(ActorRolloutRefWorker, "init_model", fake_init_model)
    worker_cls = hv.hicra_worker_class({"lexicon": "lab", "alpha": 0.3, "mask_source": "gated", "seed": 7})
    worker = object.__new__(worker_cls)
    worker.config = OmegaConf.create({"model": {"path": str(tmp_path / "tok")}})
    worker.init_model()
    loss_fn = handed["loss_fn"]
    assert isinstance(loss_fn, hv.HICRALoss) and worker.loss_fn is loss_fn
    assert (loss_fn.alpha, loss_fn.mask_source, loss_fn.tagger.lexicon.name) == (0.3, "gated", "lab")
    data, rows, _, _ = v1_data(lab_tokenizer)
    out, _, _ = model_output(rows, shift=0.2)
    loss, _ = loss_fn(model_output=out, data=data)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("source", SOURCES)
def test_v1_lab_trl_and_verl_give_the_same_mask(lab_tokenizer, source):
    """One fixed batch, the same settings: the lab's token_advantages, TRL's HICRATrainer._planning_mask and verl's
    HICRALoss (the batch as one micro-batch) amplify the same tokens."""
    import types
    from functools import partial

    pytest.importorskip("trl")
    from verl.workers.utils.losses import ppo_loss

    from hicra.integrations.trl import HICRATrainer
    from hicra.lab.rl import MASK_SOURCE_OF, RLConfig, token_advantages

    data, rows, uids, adv = v1_data(lab_tokenizer)
    verl_loss = hv.HICRALoss(partial(ppo_loss, config=actor_config()), lab_tokenizer, lexicon="lab", alpha=ALPHA,
                             mask_source=source, seed=11)
    v = verl_loss.mask(data)
    rmask, plan = v["response_mask"], v["planning_mask"]
    ent = padded_rows(rows, "entropy", rmask.size(1)) * rmask
    # lab: groups are group_size consecutive rows
    algo = next(a for a, s in MASK_SOURCE_OF.items() if s == source)
    cfg = RLConfig(algo=algo, alpha=ALPHA, group_size=3)
    lp = padded_rows(rows, "old", rmask.size(1))  # behaviour log-probs (placebo-mass)
    _, lab_mask = token_advantages(cfg, adv, rmask, plan, ent, torch.Generator().manual_seed(11), logprobs=lp)
    # TRL: the trainer's own method on this process's batch (num_generations consecutive completions per prompt)
    trl_self = types.SimpleNamespace(
        args=types.SimpleNamespace(mask_source=source, entropy_quantile=0.2, placebo_rate=None, gated_planning=False),
        accelerator=types.SimpleNamespace(process_index=0), num_generations=3,
        _mask_generators={"train": torch.Generator().manual_seed(11)})
    trl_mask = HICRATrainer._planning_mask(trl_self, plan, rmask, ent, adv, lp)
    assert v["mask"].any()
    assert torch.equal(lab_mask, v["mask"]) and torch.equal(trl_mask, v["mask"])


def test_installed_plumbing_files_rows_under_verls_global_step_across_a_resume(lab_tokenizer, tmp_path):
    """The batch RayPPOTrainer.fit hands to compute_advantage carries no global step; the installed hook reads it
    from the trainer when fit calls _get_gen_batch. Before, rows were filed by call count (0, 1, ...): one step off
    verl's logger, and from 0 again after a resume, over the earlier steps' files (a reviewer's repro)."""
    import types

    import verl.trainer.ppo.ray_trainer as ray_trainer
    from verl.protocol import DataProto

    from hicra.dynamics.records import read_rollouts

    original = ray_trainer.RayPPOTrainer._get_gen_batch
    for steps in ((1, 2, 3), (3, 4)):  # a run, then a resume from its step-2 checkpoint (a new process, new plumbing)
        plumbing = hv.HICRAPlumbing(lab_tokenizer, lexicon="lab", run_dir=tmp_path / "run").install()
        try:
            for step in steps:
                trainer = types.SimpleNamespace(global_steps=step)
                batch = DataProto.from_single_dict({"index": torch.arange(2)})
                batch.non_tensor_batch["uid"] = np.array(["a", "b"], dtype=object)
                ray_trainer.RayPPOTrainer._get_gen_batch(trainer, batch)  # what fit calls first each step
                data = make_dataproto(lab_tokenizer)[0]
                data.meta_info.pop("global_steps")
                data.batch["token_level_scores"] *= step  # to trace which step's batch a file holds
                ray_trainer.compute_advantage(data, adv_estimator="hicra", norm_adv_by_std_in_grpo=False)
        finally:
            plumbing.uninstall()
    assert ray_trainer.RayPPOTrainer._get_gen_batch is original
    table = read_rollouts(tmp_path / "run").to_pylist()
    assert sorted({r["step"] for r in table}) == [1, 2, 3, 4]
    assert all(max(x["reward"] for x in table if x["step"] == r["step"]) == r["step"] for r in table)


def test_rejected_responses_keep_their_planning_tokens_in_the_rows(lab_tokenizer, tmp_path):
    """verl's rollout correction (rejection sampling) zeroes the response mask of rejected responses before the
    advantages. They are not trained (no amplification), but their rows keep the planning mask of the text they
    hold. Before, a rejected response was written with no planning tokens (a reviewer's repro)."""
    import verl.trainer.ppo.rollout_corr_helper as corr
    from omegaconf import OmegaConf

    from hicra.dynamics.records import read_rollouts

    data = make_dataproto(lab_tokenizer)[0]
    resp = data.batch["responses"]
    data.batch["response_mask"] = data.batch["attention_mask"][:, -resp.size(1):].clone()
    plumbing = hv.HICRAPlumbing(lab_tokenizer, lexicon="lab", alpha=0.3, run_dir=tmp_path / "run")
    sg = plumbing.sg_mask(resp, data.batch["response_mask"])
    off = [k for k in range(len(resp)) if sg[k].any()][:1]  # a response with planning tokens, far off-policy
    data.batch["rollout_log_probs"] = data.batch["old_log_probs"].clone()
    data.batch["rollout_log_probs"][off] -= 3.0
    plumbing.install()
    try:
        cfg = OmegaConf.create({"rollout_is": None, "rollout_rs": "seq_mean_k1", "rollout_rs_threshold": "0.5_2.0"})
        other = make_dataproto(lab_tokenizer)[0]
        other.batch["response_mask"] = other.batch["attention_mask"][:, -resp.size(1):].clone()
        other.batch["rollout_log_probs"] = other.batch["old_log_probs"].clone()
        other, _ = corr.compute_rollout_correction_and_add_to_batch(other, cfg)
        passed = plumbing.compute_advantage(other, "grpo", norm_adv_by_std_in_grpo=False)
        assert hv.SAMPLED_MASK_KEY not in passed.batch.keys()  # another estimator: the batch leaves as verl's
        data, _ = corr.compute_rollout_correction_and_add_to_batch(data, cfg)  # as fit calls it
        assert [k for k in range(len(resp)) if data.batch["response_mask"][k].sum() == 0] == off
        out = plumbing.compute_advantage(data, "hicra", norm_adv_by_std_in_grpo=False)
    finally:
        plumbing.uninstall()
    assert hv.SAMPLED_MASK_KEY not in out.batch.keys()  # not sent on to the workers
    assert not out.batch["planning_mask"][off].any() and not out.batch["advantages"][off].any()
    for k, row in enumerate(read_rollouts(tmp_path / "run").to_pylist()):
        assert row["planning_mask"] == sg[k, : len(row["token_ids"])].tolist()
    assert any(read_rollouts(tmp_path / "run").to_pylist()[off[0]]["planning_mask"])


def test_placebo_draws_the_same_tokens_when_a_micro_batch_comes_again(lab_tokenizer):
    """PPO epochs pass the same micro-batch to the loss again: the placebo sources amplify the tokens they drew the
    first time, as the planning source does. Before, each call drew anew (a reviewer's repro: 25 of 94 tokens in
    both epochs). A micro-batch not seen before draws anew."""
    from functools import partial

    from verl.workers.utils.losses import ppo_loss

    data, rows, _, _ = v1_data(lab_tokenizer)
    for source in ("placebo", "placebo-mass"):
        loss_fn = hv.HICRALoss(partial(ppo_loss, config=actor_config()), lab_tokenizer, lexicon="lab",
                               alpha=ALPHA, mask_source=source, seed=3)
        first = loss_fn.mask(data)["mask"]
        other = v1_data(lab_tokenizer)[0]
        other["advantages"] = other["advantages"] * 2.0  # another micro-batch: new content
        loss_fn.mask(other)
        again = loss_fn.mask(data)["mask"]
        assert first.any() and torch.equal(first, again)
        fresh = hv.HICRALoss(partial(ppo_loss, config=actor_config()), lab_tokenizer, lexicon="lab", alpha=ALPHA,
                             mask_source=source, seed=3)
        fresh.mask(other)  # a new micro-batch advances the generator
        assert not torch.equal(fresh.mask(data)["mask"], first)


def test_gated_reports_the_groups_a_micro_batch_holds_in_part(lab_tokenizer):
    """The gated rule's group statistics are those of the part of a group the micro-batch holds: with the group size
    known, `hicra/gated_partial_groups` says how many groups that was (verl's no-op padding samples left out; a
    response verl's rejection sampling masked still counts, as it is still in the batch)."""
    from functools import partial

    from verl.utils.metric import Metric
    from verl.workers.utils.losses import ppo_loss

    data, rows, _, _ = v1_data(lab_tokenizer)  # two groups of 3
    out, _, _ = model_output(rows, shift=0.1)
    base = partial(ppo_loss, config=actor_config())
    for size, share in ((3, 0.0), (4, 1.0)):
        loss_fn = hv.HICRALoss(base, lab_tokenizer, lexicon="lab", mask_source="gated", group_size=size)
        assert loss_fn.mask(data)["partial_groups"] == share
        _, metrics = loss_fn(model_output=out, data=data)
        assert isinstance(metrics["hicra/gated_partial_groups"], Metric)
        assert metrics["hicra/gated_partial_groups"].values == pytest.approx([share])
    assert "partial_groups" not in hv.HICRALoss(base, lab_tokenizer, lexicon="lab", mask_source="gated").mask(data)
    assert hv._partial_groups(["u0"] * 3 + ["u1"] * 2 + ["pad" + "0123456789abcdef" * 2] * 5, 3) == 0.5
    assert hv._partial_groups(["u0"] * 3, None) == 0.0


@pytest.mark.parametrize("change, message", [
    ({"actor_rollout_ref": {"actor": {"policy_loss": {"loss_mode": "geo_mean"}}}}, "loss_mode=geo_mean (GMPO)"),
    ({"actor_rollout_ref": {"actor": {"policy_loss": {"loss_mode": "geo_mean"}}}, "hicra": {"alpha": 0.0}}, None),
    ({"trainer": {"use_v1": True, "v1": {"trainer_mode": "separate_async"}}}, "trainer_mode=separate_async"),
    ({"trainer": {"use_v1": True, "v1": {"trainer_mode": "colocate_async"}}}, None),
    ({"algorithm": {"adv_estimator": "hicra"}, "actor_rollout_ref": {"rollout": {"n": 1}}},
     "algorithm.adv_estimator=hicra needs groups: actor_rollout_ref.rollout.n >= 2, got 1"),
    ({"trainer": {"use_v1": True}, "algorithm": {"rollout_correction": {"bypass_mode": True}},
      "hicra": {"mask_source": "high-entropy"}}, "v1 trainer in rollout_correction.bypass_mode needs per-token"),
    ({"trainer": {"use_v1": True}, "hicra": {"mask_source": "high-entropy"}}, None),
    ({"distillation": {"enabled": True, "distillation_loss": {"loss_mode": "forward_kl_topk"}}},
     "loss_mode=forward_kl_topk (a top-k loss)"),
    ({"distillation": {"enabled": True, "distillation_loss": {"loss_mode": "k3"}}}, None),
    ({"hicra": {"mask_source": "gated"}, "actor_rollout_ref": {"actor": {"calculate_entropy": True}}},
     "set trainer.balance_batch=False"),
    ({"hicra": {"mask_source": "gated"}, "trainer": {"balance_batch": False},
      "actor_rollout_ref": {"actor": {"calculate_entropy": True, "use_dynamic_bsz": True}}}, "use_dynamic_bsz=True"),
    ({"hicra": {"mask_source": "gated"}, "trainer": {"balance_batch": False},
      "actor_rollout_ref": {"actor": {"calculate_entropy": True, "shuffle": True}}}, "actor.shuffle=True"),
    ({"hicra": {"mask_source": "gated"}, "trainer": {"balance_batch": False},
      "actor_rollout_ref": {"actor": {"calculate_entropy": True, "ppo_micro_batch_size_per_gpu": 6}}},
     "ppo_micro_batch_size_per_gpu (6) must be a multiple of actor_rollout_ref.rollout.n (4)"),
    ({"hicra": {"mask_source": "gated"}, "trainer": {"balance_batch": False},
      "actor_rollout_ref": {"actor": {"calculate_entropy": True, "ppo_micro_batch_size_per_gpu": 8}}}, None),
])
def test_verl_main_refuses_settings_that_would_turn_hicra_off_or_mislead_it(change, message):
    """Each passed the driver check before and then trained without HICRA, spread its amplification over whole
    responses, trained nothing, failed late in every worker, or (gated) selected tokens from split groups."""
    from omegaconf import OmegaConf

    from hicra.integrations.verl_main import config_problem

    cfg = OmegaConf.merge(OmegaConf.create({
        "actor_rollout_ref": {"actor": {"calculate_entropy": False}, "rollout": {"n": 4}},
        "algorithm": {"adv_estimator": "grpo"}, "trainer": {"use_v1": False}, "hicra": {"alpha": 0.2}}),
        OmegaConf.create(change))
    problem = config_problem(cfg)
    assert problem == message if message is None else message in problem, problem


def test_verl_main_notes_what_runs_but_may_surprise():
    from omegaconf import OmegaConf

    from hicra.integrations.verl_main import config_notes

    cfg = OmegaConf.create({"actor_rollout_ref": {"actor": {}}, "algorithm": {}, "hicra": {"alpha": 0.2}})
    assert [n.split(" ")[0] for n in config_notes(cfg)] == ["algorithm.adv_estimator=gae"]  # verl's default
    cfg.algorithm.adv_estimator = "grpo"
    assert config_notes(cfg) == []
    cfg.actor_rollout_ref.actor.policy_loss = {"loss_mode": "kl_cov"}
    assert len(config_notes(cfg)) == 1 and "loss_mode=kl_cov picks the tokens" in config_notes(cfg)[0]
