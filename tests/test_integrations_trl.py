"""hicra.integrations.trl against TRL 1.16's own GRPOTrainer, on CPU with a tiny model built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from hicra.algorithms import gated_mask, mass_matched_placebo_mask  # noqa: E402
from hicra.integrations.trl import HICRAConfig, HICRATrainer  # noqa: E402
from hicra.planning import Lexicon, PlanningTagger  # noqa: E402

CORPUS = ["let's try 3 + 4 = 7. so the answer is 7", "wait, dead end. go back and try 5 * 2 = 10",
          "check: 7 is not 9. let's add them one by one"] * 40
COMMON = dict(use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=4, max_completion_length=12,
              learning_rate=0.0, optim="sgd", max_grad_norm=1e9, logging_steps=1, report_to=[],
              save_strategy="no", seed=0, scale_rewards="none", epsilon_high=0.28, loss_type="dapo",
              dataloader_num_workers=0)


def reward_len(completions, **kwargs):
    """A cheap reward with spread inside groups: completion length mod 3 == 0."""
    return [float(len(c) % 3 == 0) for c in completions]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from hicra.lab.model import build_model, train_tokenizer

    tok = train_tokenizer(CORPUS, vocab_size=300)
    path = tmp_path_factory.mktemp("tiny")
    tok.save_pretrained(path)
    build_model(tok, size="1m").save_pretrained(path)
    return path


def dataset():
    return Dataset.from_list([{"prompt": f"{a} + {b} =\n", "id": f"p{a}{b}"} for a in range(4) for b in range(4)])


def alpha_lexicon(tok) -> Lexicon:
    """Every vocabulary token that decodes to letters only: guarantees planning tokens in random completions."""
    words = {tok.decode([i]).strip().lower() for i in range(len(tok))}
    return Lexicon(sorted(w for w in words if w.isalpha()), name="letters")


class GradCapture(TrainerCallback):
    def __init__(self):
        self.grads = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})


def make(trainer_cls, config_cls, tiny_dir, out, steps, **extra):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    args = config_cls(output_dir=str(out), max_steps=steps, **{**COMMON, **extra})
    cap = GradCapture()
    trainer = trainer_cls(model=model, reward_funcs=reward_len, args=args, train_dataset=dataset(),
                          processing_class=tok, callbacks=[cap])
    return trainer, cap


def losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_alpha_zero_equals_plain_grpo(tiny_dir, tmp_path):
    """alpha = 0: the same loss and the same gradients as TRL's GRPOTrainer, step by step."""
    plain, cap_plain = make(GRPOTrainer, GRPOConfig, tiny_dir, tmp_path / "grpo", 2)
    hicra, cap_hicra = make(HICRATrainer, HICRAConfig, tiny_dir, tmp_path / "hicra", 2, alpha=0.0,
                            lexicon=str(_save(alpha_lexicon(plain.processing_class), tmp_path)))
    torch.manual_seed(0)
    plain.train()
    torch.manual_seed(0)
    hicra.train()
    assert losses(hicra) == pytest.approx(losses(plain), abs=1e-7)
    assert len(cap_plain.grads) == len(cap_hicra.grads) == 2
    for g_plain, g_hicra in zip(cap_plain.grads, cap_hicra.grads, strict=True):
        assert g_plain.keys() == g_hicra.keys()
        for name in g_plain:
            torch.testing.assert_close(g_hicra[name], g_plain[name], atol=1e-7, rtol=1e-6)
    # the batch did contain planning tokens, so alpha = 0 was really exercised on them
    assert hicra.last_hicra_batch["planning_mask"].any()
    assert any(g.abs().sum() > 0 for g in cap_plain.grads[0].values())


def _save(lexicon: Lexicon, tmp_path):
    return lexicon.save(tmp_path / "letters.json")


def _grads(trainer, inputs):
    model = trainer.model
    model.zero_grad()
    trainer._compute_loss(model, inputs).backward()
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return out


def test_alpha_changes_gradient_through_planning_tokens_only(tiny_dir, tmp_path):
    alpha = 0.5
    trainer, cap = make(_Capturing, HICRAConfig, tiny_dir, tmp_path / "h", 1, alpha=alpha,
                        lexicon=str(_save(alpha_lexicon(AutoTokenizer.from_pretrained(tiny_dir)), tmp_path)))
    torch.manual_seed(0)
    trainer.train()  # learning_rate = 0: parameters stay where the captured gradients were taken
    batch = trainer.captured
    mask = trainer.last_hicra_batch["planning_mask"]
    base = trainer.last_hicra_batch["base_advantages"]
    cmask = batch["completion_mask"].bool()
    assert base.dim() == 1 and batch["advantages"].shape == cmask.shape
    assert mask.any() and (cmask & ~mask).any() and base.abs().sum() > 0
    delta = batch["advantages"] - base[:, None]
    # per-token advantages differ from GRPO's exactly on planning tokens, by alpha * |A|
    assert torch.all(delta[~mask] == 0)
    torch.testing.assert_close(delta[mask], (alpha * base.abs()[:, None].expand_as(mask))[mask])

    g_hicra = _grads(trainer, batch)
    g_grpo = _grads(trainer, {**batch, "advantages": base})
    g_delta = _grads(trainer, {**batch, "advantages": delta})
    # the trainer's own update used the HICRA advantages (not a silently dropped copy)
    for name, g in cap.grads[0].items():
        torch.testing.assert_close(g, g_hicra[name], atol=1e-6, rtol=1e-5)
    # the loss is linear in the advantages on the first (on-policy) step: the whole gradient change is the
    # gradient of the planning-token terms alone
    diff = sum(float((g_hicra[n] - g_grpo[n]).abs().sum()) for n in g_hicra)
    assert diff > 1e-6
    for name in g_hicra:
        torch.testing.assert_close(g_hicra[name] - g_grpo[name], g_delta[name], atol=1e-6, rtol=1e-4)
    # the logged hicra/* metrics, recomputed from the batch
    from hicra.planning.metrics import phrase_counts, semantic_entropy

    logged = next(h for h in trainer.state.log_history if "hicra/planning_ratio" in h)
    adv = batch["advantages"]
    assert logged["hicra/planning_ratio"] == pytest.approx(float(mask.sum()) / float(cmask.sum()))
    assert logged["hicra/adv_planning_mean"] == pytest.approx(float(adv[mask].mean()), abs=1e-6)
    assert logged["hicra/adv_execution_mean"] == pytest.approx(float(adv[cmask & ~mask].mean()), abs=1e-6)
    texts = [trainer.processing_class.decode(row[: int(n)], skip_special_tokens=True)
             for row, n in zip(batch["completion_ids"].tolist(), cmask.sum(-1).tolist(), strict=True)]
    assert logged["hicra/semantic_entropy"] == pytest.approx(semantic_entropy(phrase_counts(texts, trainer.tagger)))


class _Capturing(HICRATrainer):
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        self.captured = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
        return out


def test_mask_sources(tiny_dir, tmp_path):
    trainer, _ = make(HICRATrainer, HICRAConfig, tiny_dir, tmp_path / "m", 1, mask_source="placebo",
                      log_rollouts=False)
    g = torch.Generator().manual_seed(0)
    cmask = torch.rand(8, 12, generator=g) < 0.8
    sg = (torch.rand(8, 12, generator=g) < 0.25) & cmask
    ent = torch.rand(8, 12, generator=g)
    placebo = trainer._planning_mask(sg, cmask, None)
    assert int(placebo.sum()) == int(sg.sum()) and not (placebo & ~cmask).any()  # same rate as SG
    trainer.args.mask_source = "high-entropy"
    high = trainer._planning_mask(sg, cmask, ent)
    assert trainer.args.entropy_quantile == 0.2  # hicra.algorithms.HIGH_ENTROPY_QUANTILE, as the lab's
    assert int(high.sum()) == round(0.2 * int(cmask.sum()))
    assert float(ent[high].min()) >= float(ent[cmask & ~high].max())
    trainer.args.mask_source = "sg+entropy"
    assert torch.equal(trainer._planning_mask(sg, cmask, ent), high & sg)
    trainer.args.mask_source = "gated"  # groups: num_generations (4) consecutive rows
    adv = torch.randn(8, generator=g)
    assert torch.equal(trainer._planning_mask(sg, cmask, ent, adv),
                       gated_mask(ent, cmask, adv, [0, 0, 0, 0, 1, 1, 1, 1]))
    trainer.args.mask_source = "placebo-mass"
    logps = -3 * torch.rand(8, 12, generator=g)
    gen_state = trainer._mask_generators["train"].get_state()
    mass = trainer._planning_mask(sg, cmask, None, adv, logps)
    trainer._mask_generators["train"].set_state(gen_state)
    assert torch.equal(mass, mass_matched_placebo_mask(cmask, sg, logps, adv, trainer._mask_generators["train"]))
    assert mass.any() and not (mass & (sg | ~cmask)).any()
    # (before any new config: building one resets the accelerator state)
    # evaluation groups completions by num_generations_eval, as TRL's eval advantages do
    trainer.args.mask_source = "gated"
    trainer.num_generations_eval = 2
    assert torch.equal(trainer._planning_mask(sg, cmask, ent, adv, mode="eval"),
                       gated_mask(ent, cmask, adv, [0, 0, 1, 1, 2, 2, 3, 3]))
    assert HICRAConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, mask_source="sg").mask_source == "planning"
    with pytest.raises(ValueError):
        HICRAConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, mask_source="nope")
    with pytest.raises(ValueError):
        HICRAConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, alpha=1.0)
    with pytest.raises(ValueError, match="placebo_rate"):  # before: a traceback at the first generation
        HICRAConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, placebo_rate=2.0)


def test_five_step_run_writes_run_directory(tiny_dir, tmp_path):
    from hicra.dynamics.records import read_rollouts, read_run_info

    run = tmp_path / "run"
    trainer, _ = make(HICRATrainer, HICRAConfig, tiny_dir, run, 5, alpha=0.2, lexicon="lab")
    trainer.args.learning_rate = 1e-3
    torch.manual_seed(0)
    trainer.train()
    info = read_run_info(run)
    assert info["algorithm"] == "hicra" and info["alpha"] == 0.2 and info["lexicon"] == "lab"
    table = read_rollouts(run)
    rows = table.to_pylist()
    assert sorted({r["step"] for r in rows}) == [0, 1, 2, 3, 4]
    assert len(rows) == 5 * 8
    tok = trainer.processing_class
    tagger = PlanningTagger(Lexicon.preset("lab"), tok)
    for r in rows:
        assert len(r["token_ids"]) == len(r["logprobs"]) == len(r["entropies"]) == len(r["planning_mask"])
        assert r["reward"] == reward_len([r["response"]])[0]
        assert r["correct"] == (r["reward"] >= 1.0)
        assert list(tagger.token_mask(r["token_ids"])) == r["planning_mask"]
        assert all(lp <= 0 for lp in r["logprobs"])
    # every group holds num_generations samples of one prompt
    step0 = [r for r in rows if r["step"] == 0]
    groups = {}
    for r in step0:
        groups.setdefault(r["prompt_id"], []).append(r["sample_idx"])
    assert all(sorted(v) == [0, 1, 2, 3] for v in groups.values())
    logged = [h for h in trainer.state.log_history if "hicra/planning_ratio" in h]
    assert len(logged) == 5 and all(0 <= h["hicra/planning_ratio"] <= 1 for h in logged)
    _analyze(run, steps=5, responses=40)


def test_truncated_completions_keep_their_tokens_when_masked(tiny_dir, tmp_path):
    """mask_truncated_completions=True zeroes the loss mask of truncated rows; their rollout rows still hold every
    sampled token (the same rows as without the option: learning rate 0, same seed)."""
    from hicra.dynamics.records import read_rollouts

    rows = {}
    for masked in (False, True):
        run = tmp_path / f"run{masked}"
        trainer, _ = make(HICRATrainer, HICRAConfig, tiny_dir, run, 1, alpha=0.2, lexicon="lab",
                          mask_truncated_completions=masked)
        torch.manual_seed(0)
        trainer.train()
        rows[masked] = read_rollouts(run).to_pylist()
    truncated = [r for r in rows[True] if r["truncated"]]
    assert truncated, "the tiny model should hit max_completion_length"
    assert all(len(r["token_ids"]) == COMMON["max_completion_length"] for r in truncated)
    assert all(len(r["token_ids"]) == len(r["logprobs"]) == len(r["planning_mask"]) for r in rows[True])
    tagger = PlanningTagger(Lexicon.preset("lab"), trainer.processing_class)
    assert all(list(tagger.token_mask(r["token_ids"])) == r["planning_mask"] for r in truncated)
    for key in ("token_ids", "truncated", "response"):
        assert [r[key] for r in rows[True]] == [r[key] for r in rows[False]]
    np.testing.assert_allclose([x for r in rows[True] for x in r["logprobs"]],
                               [x for r in rows[False] for x in r["logprobs"]], rtol=1e-5, atol=1e-6)


def test_convert_trl_completions_log(tiny_dir, tmp_path):
    """TRL's own completions log (GRPOTrainer with log_completions=True writes OUTPUT_DIR/completions/
    completions_{step:05d}.parquet) read with `hicra convert responses --preset trl`."""
    import pandas as pd

    from hicra.cli import main
    from hicra.dynamics.convert import prompt_key
    from hicra.dynamics.records import read_rollouts

    out = tmp_path / "trl"
    trainer, _ = make(GRPOTrainer, GRPOConfig, tiny_dir, out, 2, log_completions=True)
    torch.manual_seed(0)
    trainer.train()
    files = sorted((out / "completions").glob("completions_*.parquet"))
    assert [f.name for f in files] == ["completions_00001.parquet", "completions_00002.parquet"]
    logged = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    run = tmp_path / "run"
    assert main(["convert", "responses", str(out / "completions"), "--preset", "trl", "--score-field",
                 "reward_len", "--reward-threshold", "1", "--out", str(run), "--quiet"]) == 0
    rows = read_rollouts(run).to_pylist()
    assert len(rows) == len(logged) == 2 * 8
    assert [r["response"] for r in rows] == logged["completion"].tolist()
    assert [r["reward"] for r in rows] == logged["reward_len"].tolist()
    assert [r["correct"] for r in rows] == (logged["reward_len"] >= 1.0).tolist()
    assert [r["prompt_id"] for r in rows] == [prompt_key(p) for p in logged["prompt"]]
    # each prompt's 4 generations form one group
    for step in (0, 1):
        groups = {}
        for r in rows:
            if r["step"] == step:
                groups.setdefault(r["prompt_id"], []).append(r["sample_idx"])
        assert all(sorted(v) == list(range(len(v))) for v in groups.values())
        assert sum(len(v) for v in groups.values()) == 8


def _analyze(run, steps: int, responses: int):
    """`hicra analyze` reads the run directory the trainer wrote: every step and every response."""
    from hicra.cli import main

    assert main(["analyze", str(run), "--out", str(run / "analysis"), "--quiet", "--no-report"]) == 0
    summary = json.loads((run / "analysis" / "summary.json").read_text())
    assert (summary["steps"], summary["n_responses"], summary["skipped"]) == (steps, responses, [])


def test_train_cli_runs_example_lab_config(tmp_path):
    """`hicra train` on examples/trl_lab_cpu.yaml (5 steps on CPU), then the run directory is readable."""
    from hicra.cli import main
    from hicra.dynamics.records import read_rollouts, read_run_info

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "lab-run"
    assert main(["train", "--config", str(repo / "examples/trl_lab_cpu.yaml"),
                 "--set", f"args.output_dir={out}"]) == 0
    info = read_run_info(out)
    assert info["task"] == "lab:product" and info["algorithm"] == "hicra"
    rows = read_rollouts(out).to_pylist()
    assert sorted({r["step"] for r in rows}) == [0, 1, 2, 3, 4] and len(rows) == 5 * 8
    # lab checker labels: every wrong response carries an error type, every correct one none
    assert all((r["error_type"] is None) == r["correct"] for r in rows)
    assert (out / "final" / "config.json").is_file()
    _analyze(out, steps=5, responses=40)


def test_train_cli_math_data_and_bad_config(tmp_path, shared_data, capsys):
    from hicra.cli import main
    from hicra.integrations.cli import math_reward, math_rows

    rows = math_rows({"path": str(shared_data / "gsm8k/train.jsonl"), "fields": "gsm8k", "limit": 3}, "x.yaml")
    assert [r["id"] for r in rows] == ["0", "1", "2"] and rows[0]["answer"] == "72"
    assert "\\boxed{}" in rows[0]["prompt"]
    reward = math_reward()
    assert reward(["so \\boxed{72}", "it is 71", "#### 72"], ["72", "72", "72"]) == [1.0, 0.0, 1.0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: lab:1m\ndata: {bench: gsm8k}\ntrainer: ppo\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "field 'trainer'" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("model.x=1", "field 'set': cannot set 'model.x': 'model' is not a mapping"),
    ("args.alpha=[", "field 'set': bad YAML value in 'args.alpha=['"),
    ("args=3", "c.yaml, field 'args': must be a mapping"),
    ("args.placebo_rate=2", "c.yaml, field 'args': placebo_rate must be in [0, 1] or unset, got 2"),
    ("data.lab=[{family: nosuch}]", "c.yaml, field 'data.lab': not a lab task mix (unknown task family 'nosuch'"),
    ("data.lab=product", "c.yaml, field 'data.lab': not a lab task mix"),
    ("data.n=many", "c.yaml, field 'data.n': must be a whole number >= 1, got 'many'"),
    # before session 55: a text limit was a traceback; 0, -1 and 2.5 silently took 1, 1 and 3 problems
    ("data.limit='3'", "c.yaml, field 'data.limit': must be a whole number >= 1, got '3'"),
    ("data.limit=0", "c.yaml, field 'data.limit': must be a whole number >= 1, got 0"),
    ("data.limit=2.5", "c.yaml, field 'data.limit': must be a whole number >= 1, got 2.5"),
    ("data.seed=-1", "c.yaml, field 'data.seed': must be a whole number >= 0, got -1"),
    ("data.problem_field=[a]", "c.yaml, field 'data.problem_field': must be a string, got list"),
    ("model=5", "c.yaml, field 'model': must be a string, got int 5"),
    ("model=lab:zzz", "c.yaml, field 'model': unknown lab model size 'zzz'; known: "),
    ("args.output_dir=", "c.yaml, field 'args.output_dir': must be a string, got NoneType None"),
    ("data.prompt_template=5", "c.yaml, field 'data.prompt_template': must be a string, got int 5"),
    ("data.bench=[gsm8k]", "c.yaml, field 'data.bench': must be a string, got list"),
    ("args.max_steps=abc", "c.yaml, field 'args': "),  # TRL meets it only when the trainer is built
])
def test_train_cli_bad_overrides_are_one_line_errors(tmp_path, capsys, override, message):
    from hicra.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(f"model: lab:1m\ndata: {{lab: [{{family: product}}], n: 2}}\n"
                      f"args: {{output_dir: {tmp_path}/o, use_cpu: true, bf16: false}}\n")
    assert main(["train", "--config", str(config), "--set", override]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()  # refused before any model was built, or (max_steps) its folder removed


def test_train_cli_grpo_arm_keeps_rollout_log(tmp_path):
    """trainer: grpo = the baseline arm, alpha forced to 0, still a run directory for `hicra analyze`."""
    from hicra.cli import main
    from hicra.dynamics.records import read_rollouts, read_run_info

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "grpo-run"
    assert main(["train", "--config", str(repo / "examples/trl_lab_cpu.yaml"), "--set", "trainer=grpo",
                 "--set", "args.max_steps=1", "--set", "args.num_generations=2",
                 "--set", f"args.output_dir={out}"]) == 0
    info = read_run_info(out)
    assert info["algorithm"] == "grpo" and info["alpha"] == 0.0
    assert read_rollouts(out).num_rows == 8


def test_placebo_mass_trains_with_behaviour_logprobs(tiny_dir, tmp_path):
    """mask_source="placebo-mass" in a real TRL step. First, the extra no-grad pass (`_token_stats`) gives the
    log-probs of the completion tokens: equal to a plain forward pass of the (unchanged: learning rate 0) model over
    the step's prompts and completions. Then the mask is `mass_matched_placebo_mask` of exactly those log-probs
    (here replaced by planted ones that vary widely, since the untrained model's are nearly uniform and would hide
    a misaligned pass), the step's advantages and the trainer's generator state; no planning token is amplified."""
    words = alpha_lexicon(AutoTokenizer.from_pretrained(tiny_dir)).phrases
    few = Lexicon(words[::4], name="some-letters")  # some planning tokens, so the placebo takes only part of the rest
    trainer, cap = make(HICRATrainer, HICRAConfig, tiny_dir, tmp_path / "pm", 1, mask_source="placebo-mass",
                        lexicon=few, log_rollouts=False)
    seen = {}
    token_stats, planning_mask = trainer._token_stats, trainer._planning_mask

    def capture_stats(out):
        seen["out"] = {k: out[k].detach().clone() for k in ("prompt_ids", "prompt_mask", "completion_ids",
                                                            "completion_mask")}
        seen["logps"], entropies = token_stats(out)
        planted = -6 * torch.rand(seen["logps"].shape, generator=torch.Generator().manual_seed(4))
        seen["planted"] = planted
        return planted, entropies

    def capture_mask(*args):
        seen["gen"] = trainer._mask_generators["train"].get_state()
        return planning_mask(*args)

    trainer._token_stats, trainer._planning_mask = capture_stats, capture_mask
    trainer.train()
    batch, out = trainer.last_hicra_batch, seen["out"]
    mask, sg, base = batch["planning_mask"], batch["sg_mask"], batch["base_advantages"]
    cmask = out["completion_mask"].bool()
    assert len(cap.grads) == 1 and sg.any() and (base != 0).any()
    assert mask.any() and not (mask & sg).any() and int(mask.sum()) < int((cmask & ~sg).sum())
    gen = torch.Generator().manual_seed(0)
    gen.set_state(seen["gen"])
    assert torch.equal(mask, mass_matched_placebo_mask(cmask, sg, seen["planted"], base, gen))
    # the pass itself: a plain forward of the model gives the same completion log-probs
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    with torch.no_grad():
        logits = trainer.model.eval()(input_ids=ids,
                                      attention_mask=torch.cat([out["prompt_mask"], out["completion_mask"]], 1)).logits
    n = out["completion_ids"].size(1)
    logps = torch.log_softmax(logits[:, -n - 1:-1].float() / trainer.args.temperature, -1).gather(
        -1, out["completion_ids"][..., None])[..., 0]
    torch.testing.assert_close(seen["logps"][cmask], logps[cmask], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(seen["logps"][cmask], logps.roll(1, -1)[cmask], atol=1e-4)  # the check can fail


def test_tool_tokens_are_never_tagged_drawn_or_counted(tiny_dir, tmp_path):
    """With tool calls or an environment TRL trains on completion_mask * tool_mask: the tokens a tool wrote are
    not the policy's, so no mask source may amplify them and the hicra/* ratios count trained tokens only. The
    environment here writes only letters (planning tokens of the letters lexicon), the model only arithmetic."""
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    lex = _save(alpha_lexicon(tok), tmp_path)
    model_part = tok("3 + 4 = 7. 5 * 2 = 10", add_special_tokens=False)["input_ids"]
    env_part = tok(" wait, dead end. go back and check", add_special_tokens=False)["input_ids"]

    def rollout_func(prompts, trainer):
        comp, env = [], []
        for i in range(len(prompts)):
            own = model_part[: 4 + i % 4]
            comp.append(own + env_part + [tok.eos_token_id])
            env.append([1] * len(own) + [0] * len(env_part) + [1])
        return {"prompt_ids": [tok(p, add_special_tokens=False)["input_ids"] for p in prompts],
                "completion_ids": comp, "logprobs": None, "env_mask": env}

    def reward(completions, **kwargs):
        return [float(i % 2) for i in range(len(completions))]

    for source in ("planning", "placebo", "high-entropy"):
        args = HICRAConfig(output_dir=str(tmp_path / source), max_steps=1, **{**COMMON, "max_completion_length": 64},
                           mask_source=source, lexicon=str(lex), log_rollouts=False)
        trainer = HICRATrainer(model=AutoModelForCausalLM.from_pretrained(tiny_dir), reward_funcs=reward, args=args,
                               train_dataset=dataset(), processing_class=tok, rollout_func=rollout_func)
        trainer.model.train()
        out = trainer._generate_and_score_completions([dict(r) for r in dataset().select([0] * 4 + [1] * 4)])
        assert out["tool_mask"].eq(0).any()
        trained = (out["completion_mask"] * out["tool_mask"]).bool()
        amplified = trainer.last_hicra_batch["planning_mask"]
        assert not (amplified & ~trained).any(), source
        assert not trainer.last_hicra_batch["sg_mask"].any(), source  # the model wrote no letters
        logged = trainer._metrics["train"]
        assert logged["hicra/planning_ratio"][-1] == 0.0, source
        assert logged["hicra/amplified_ratio"][-1] == pytest.approx(float(amplified.sum()) / float(trained.sum()))
        if source == "high-entropy":
            assert amplified.any()


def test_planning_ratio_is_the_planning_share_whatever_the_mask_source(tiny_dir, tmp_path):
    """hicra/planning_ratio is the SG planning share and hicra/amplified_ratio the mask source's, as the verl
    integration logs them (before: TRL logged the amplified share under planning_ratio)."""
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    trainer, _ = make(HICRATrainer, HICRAConfig, tiny_dir, tmp_path / "h", 1, mask_source="high-entropy",
                      lexicon=str(_save(alpha_lexicon(tok), tmp_path)), log_rollouts=False)
    trainer.model.train()
    out = trainer._generate_and_score_completions([dict(r) for r in dataset().select([0] * 4 + [1] * 4)])
    cmask = out["completion_mask"].bool()
    batch = trainer.last_hicra_batch
    logged = trainer._metrics["train"]
    assert logged["hicra/planning_ratio"][-1] == pytest.approx(float(batch["sg_mask"].sum()) / float(cmask.sum()))
    assert logged["hicra/amplified_ratio"][-1] == pytest.approx(
        float(batch["planning_mask"].sum()) / float(cmask.sum()))
    assert not torch.equal(batch["planning_mask"], batch["sg_mask"])


def test_evaluation_never_changes_the_training_masks(tiny_dir, tmp_path):
    """The placebo draws of training are the same whether or not (and however often) evaluation ran between them:
    train and eval draw from generators of their own."""
    g = torch.Generator().manual_seed(0)
    cmask = torch.rand(8, 12, generator=g) < 0.8
    sg = (torch.rand(8, 12, generator=g) < 0.25) & cmask
    masks = []
    for evaluate in (False, True):
        trainer, _ = make(HICRATrainer, HICRAConfig, tiny_dir, tmp_path / str(evaluate), 1, mask_source="placebo",
                          log_rollouts=False)
        if evaluate:
            trainer._planning_mask(sg, cmask, None, mode="eval")
        masks.append(trainer._planning_mask(sg, cmask, None, mode="train"))
    assert masks[0].any() and torch.equal(masks[0], masks[1])


@pytest.mark.parametrize("extra", [{"importance_sampling_level": "sequence", "loss_type": "grpo"},
                                   {"loss_type": "vespo"}])
def test_alpha_zero_logs_trls_own_statistics(tiny_dir, tmp_path, extra):
    """alpha = 0 with ratios that move (lr 0.3, two iterations): every metric TRL logs is TRL's. Before, [B, T]
    advantages turned the sequence-level clip ratios and VESPO's mean weight into token-weighted means (a reviewer's
    repro: TRL 0.1250, HICRA 0.0556)."""
    class Capturing(HICRATrainer):
        shapes: list = []

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            self.shapes.append(tuple(out["advantages"].shape))
            return out

    moving = dict(learning_rate=0.3, num_iterations=2, **extra)
    plain, _ = make(GRPOTrainer, GRPOConfig, tiny_dir, tmp_path / "grpo", 2, **moving)
    hicra, _ = make(Capturing, HICRAConfig, tiny_dir, tmp_path / "hicra", 2, alpha=0.0, **moving,
                    lexicon=str(_save(alpha_lexicon(plain.processing_class), tmp_path)))
    torch.manual_seed(0)
    plain.train()
    torch.manual_seed(0)
    hicra.train()
    # TRL's own batch: [B] advantages (the tiny model's completions all run to the length cap, so the per-token
    # and per-sequence means below agree even with [B, T] ones; the shape is what differs)
    assert hicra.shapes and all(len(shape) == 1 for shape in hicra.shapes), hicra.shapes
    logged = [(h_p, h_h) for h_p, h_h in zip(plain.state.log_history, hicra.state.log_history, strict=True)
              if "loss" in h_p]
    assert len(logged) == 2
    watched = [k for k in logged[0][0] if k.startswith(("clip_ratio", "cispo", "vespo"))]
    assert watched
    moved = False
    for h_plain, h_hicra in logged:
        for key, value in h_plain.items():
            if key not in ("train_runtime", "train_samples_per_second", "train_steps_per_second", "step_time"):
                assert h_hicra[key] == pytest.approx(value, abs=1e-6), key
        moved |= any(h_plain[k] not in (0.0, 1.0) for k in watched)
    assert moved, "the ratios should have moved off 1, so that the watched statistics are exercised"


def test_vespo_weights_stay_one_per_response_with_hicras_advantages():
    """TRL's VESPO weights depend on the sign of each response's advantage; HICRA's [B, T] advantages keep it, and
    the weights stay [B, 1] (as TRL logs them), equal to TRL's on the [B] advantages."""
    g = torch.Generator().manual_seed(0)
    adv = torch.tensor([0.5, -0.25, 0.0, 1.0])
    mask = torch.rand(4, 6, generator=g) < 0.4
    per_token = torch.where(mask, adv[:, None] + 0.2 * adv.abs()[:, None], adv[:, None].expand(4, 6))
    kw = dict(log_ratio_per_token=0.1 * torch.randn(4, 6, generator=g), mask=torch.ones(4, 6),
              importance_sampling_ratio=None, k_pos=2.0, lambda_pos=3.0, k_neg=3.0, lambda_neg=2.0)
    ours = HICRATrainer.get_gamma_weights(types_namespace_trainer(), advantages=per_token, **kw)
    theirs = GRPOTrainer.get_gamma_weights(advantages=adv[:, None], **kw)
    assert ours.shape == (4, 1)
    torch.testing.assert_close(ours, theirs)


def types_namespace_trainer():
    """An HICRATrainer without __init__: get_gamma_weights reads nothing from the instance."""
    return HICRATrainer.__new__(HICRATrainer)


@pytest.mark.parametrize("loss_type, alpha, refused", [
    ("dapo", 0.2, True), ("grpo", 0.2, True), ("luspo", 0.2, True), ("sapo", 0.2, True),
    ("cispo", 0.2, False), ("vespo", 0.2, False), ("dapo", 0.0, False)])
def test_sequence_level_ratios_that_would_spread_the_amplification_are_refused(tmp_path, loss_type, alpha, refused):
    """With importance_sampling_level='sequence', a loss whose sequence ratio carries the gradient gives every token
    of a response its mean advantage: HICRA would become a response-level rescaling (as verl's geo_mean)."""
    kwargs = dict(output_dir=str(tmp_path), use_cpu=True, report_to=[], alpha=alpha, loss_type=loss_type,
                  importance_sampling_level="sequence", per_device_train_batch_size=4, num_generations=4)
    if refused:
        with pytest.raises(ValueError, match="would be spread over the whole response"):
            HICRAConfig(**kwargs)
    else:
        HICRAConfig(**kwargs)


def test_gated_refuses_a_multi_process_layout_that_splits_groups(tmp_path):
    from hicra.integrations.trl import gated_layout_problem

    cfg = HICRAConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], mask_source="gated",
                      per_device_train_batch_size=6, num_generations=3, steps_per_generation=1)
    # the layouts below are those of 2 processes with 4 completions per prompt (checked as the trainer calls it)
    assert gated_layout_problem(cfg, 1, 4, 4, evaluates=True) is None  # one process holds the whole batch
    assert "in training a process holds 6 completions" in gated_layout_problem(cfg, 2, 4, 4, evaluates=False)
    cfg.steps_per_generation = 2  # 12 per process: whole groups
    assert gated_layout_problem(cfg, 2, 4, 4, evaluates=False) is None
    cfg.per_device_eval_batch_size = 6
    assert "in evaluation a process holds 6" in gated_layout_problem(cfg, 2, 4, 4, evaluates=True)
    cfg.mask_source = "planning"
    assert gated_layout_problem(cfg, 2, 4, 4, evaluates=True) is None


def test_completions_no_reward_function_scored_are_counted_not_logged_as_wrong(tiny_dir, tmp_path):
    """Every reward function returned None for a completion: TRL leaves it out of its reward statistics. Its row is
    left out of the rollout log and counted (hicra/unscored_completions). Before, it was written as reward 0, wrong."""
    from hicra.dynamics.records import read_rollouts

    def sometimes_none(completions, **kwargs):
        return [None if len(c) % 2 else float(len(c) % 3 == 0) for c in completions]

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    args = HICRAConfig(output_dir=str(tmp_path / "run"), max_steps=2, **{**COMMON, "learning_rate": 1e-3})
    trainer = HICRATrainer(model=model, reward_funcs=sometimes_none, args=args, train_dataset=dataset(),
                           processing_class=tok)
    torch.manual_seed(0)
    trainer.train()
    rows = read_rollouts(tmp_path / "run").to_pylist()
    unscored = [h["hicra/unscored_completions"] for h in trainer.state.log_history
                if "hicra/unscored_completions" in h]
    assert len(unscored) == 2 and sum(unscored) > 0
    assert len(rows) == 2 * 8 - sum(unscored)
    assert all(len(r["response"]) % 2 == 0 for r in rows)
    # counted whether or not rollouts are logged
    args = HICRAConfig(output_dir=str(tmp_path / "nolog"), max_steps=2, log_rollouts=False,
                       **{**COMMON, "learning_rate": 1e-3})
    trainer = HICRATrainer(model=AutoModelForCausalLM.from_pretrained(tiny_dir), reward_funcs=sometimes_none,
                           args=args, train_dataset=dataset(), processing_class=tok)
    torch.manual_seed(0)
    trainer.train()
    assert [h["hicra/unscored_completions"] for h in trainer.state.log_history
            if "hicra/unscored_completions" in h] == unscored


def test_convert_points_at_a_generation_batch_trl_logged_twice(tiny_dir, tmp_path, capsys):
    """With num_iterations=2 TRL logs its last generation batch at each step, so steps 1-2 and 3-4 hold the same
    completions: the command says so and how to read each batch once, and keeps every step (greedy decoding can
    give equal steps too; before, nothing was said)."""
    import pandas as pd

    from hicra.cli import main
    from hicra.dynamics.records import read_rollouts

    out = tmp_path / "trl"
    trainer, _ = make(GRPOTrainer, GRPOConfig, tiny_dir, out, 4, log_completions=True, num_iterations=2)
    torch.manual_seed(0)
    trainer.train()
    logs = [pd.read_parquet(out / "completions" / f"completions_{s:05d}.parquet") for s in (1, 2, 3, 4)]
    assert logs[0]["completion"].tolist() == logs[1]["completion"].tolist()  # TRL's log, as the premise
    assert logs[0]["completion"].tolist() != logs[2]["completion"].tolist()
    capsys.readouterr()
    assert main(["convert", "responses", str(out / "completions"), "--preset", "trl", "--score-field",
                 "reward_len", "--reward-threshold", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for later, earlier in ((2, 1), (4, 3)):
        assert (f"note: step {later} holds the same completions as step {earlier}, row for row (TRL logs its last "
                "generation batch at each logging step") in printed
    assert "remove the later file to read it once" in printed
    rows = read_rollouts(tmp_path / "run").to_pylist()
    assert [r["response"] for r in rows] == [c for log in logs for c in log["completion"]]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["config"]["repeated_steps"] == {"2": "1", "4": "3"}
    for path in (out / "completions" / "completions_00002.parquet", out / "completions" / "completions_00004.parquet"):
        path.unlink()  # as the note says: each batch once
    assert main(["convert", "responses", str(out / "completions"), "--preset", "trl", "--score-field",
                 "reward_len", "--reward-threshold", "1", "--out", str(tmp_path / "once"), "--quiet"]) == 0
    assert "holds the same completions" not in capsys.readouterr().out


MULTI_PROCESS_SCRIPT = '''
import json, sys, torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from hicra.integrations.trl import HICRAConfig, HICRATrainer

tiny, out, per_device, source = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


def sometimes_none(completions, **kwargs):
    return [None if len(c) % 2 else float(len(c) % 3 == 0) for c in completions]


args = HICRAConfig(output_dir=out, max_steps=2, use_cpu=True, bf16=False, per_device_train_batch_size=per_device,
                   num_generations=4, max_completion_length=12, learning_rate=1e-3, report_to=[],
                   save_strategy="no", seed=0, logging_steps=1, mask_source=source, dataloader_num_workers=0)
data = Dataset.from_list([{"prompt": f"{a} + {b} =\\n", "id": f"p{a}{b}"} for a in range(4) for b in range(4)])
try:
    trainer = HICRATrainer(model=AutoModelForCausalLM.from_pretrained(tiny), reward_funcs=sometimes_none, args=args,
                           train_dataset=data, processing_class=AutoTokenizer.from_pretrained(tiny))
except ValueError as exc:
    print("REFUSED:", exc, file=sys.stderr)
    sys.exit(3)
torch.manual_seed(trainer.accelerator.process_index)
trainer.train()
if trainer.accelerator.is_main_process:
    with open(out + "/log_history.json", "w") as f:
        json.dump(trainer.state.log_history, f)
'''


def _torchrun(tmp_path, tiny_dir, out, per_device, source):
    import subprocess
    import sys

    script = tmp_path / "two_processes.py"
    script.write_text(MULTI_PROCESS_SCRIPT)
    torchrun = Path(sys.executable).with_name("torchrun")
    return subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(tiny_dir),
                           str(out), str(per_device), source], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})


def test_two_processes_write_one_run_directory_and_count_unscored_completions_globally(tiny_dir, tmp_path):
    """Two CPU processes (torchrun, gloo): each writes its part of a step's rows (parts 0 and 1), every row is a
    scored completion, and hicra/unscored_completions counts the whole generation batch (both processes)."""
    from hicra.dynamics.records import list_rollout_files, read_rollouts

    out = tmp_path / "run"
    done = _torchrun(tmp_path, tiny_dir, out, 4, "planning")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [(step, part) for step, part, _ in list_rollout_files(out)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    rows = read_rollouts(out).to_pylist()
    history = json.loads((out / "log_history.json").read_text())
    unscored = [h["hicra/unscored_completions"] for h in history if "hicra/unscored_completions" in h]
    assert len(unscored) == 2
    assert len(rows) == 2 * 8 - sum(unscored)  # 8 completions a step over both processes
    assert all(len(r["response"]) % 2 == 0 for r in rows)
    for step in (0, 1):  # each process holds one whole group of 4: sample_idx 0..3 within it
        groups = {}
        for r in rows:
            if r["step"] == step:
                groups.setdefault(r["prompt_id"], []).append(r["sample_idx"])
        assert all(len(set(v)) == len(v) and max(v) < 4 for v in groups.values())


def test_two_processes_refuse_gated_when_a_process_holds_part_of_a_group(tiny_dir, tmp_path):
    done = _torchrun(tmp_path, tiny_dir, tmp_path / "run", 2, "gated")
    assert done.returncode != 0
    assert ("mask source 'gated' needs each process to hold whole groups: in training a process holds 2 completions"
            in done.stderr), done.stderr[-2000:]
