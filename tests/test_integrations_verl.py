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

    texts = ["reach 12 using 3 4 5", "let's try 3 * 4 = 12. so the answer is 12",
             "dead end. go back and try 5 + 7 = 12"] * 30 + list(Lexicon.preset("lab").texts) * 10
    return train_tokenizer(texts, vocab_size=400)


def make_dataproto(tok):
    """2 prompts x 3 responses as verl's rollout leaves them: left-padded prompts, right-padded responses."""
    from verl.protocol import DataProto

    prompts = ["reach 12 using 3 4 5\n", "reach 7 using 2 5\n"]
    responses = [["let's try 3 * 4 = 12. so the answer is 12", "5 + 7 = 12", "dead end. i give up"],
                 ["let's try 2 + 5 = 7. so the answer is 7", "2 * 5 = 10", "so the answer is 3"]]
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
