"""hicra.lab.model: a locally trained byte-level BPE and tiny causal LMs that round-trip as HF directories."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hicra.lab.model import build_model, count_parameters, format_prompt, train_tokenizer

TEXTS = [f"reach {t} using {a} {b} {c}\nlet's try {a}+{b}={a + b}\ncheck it\n" for t in range(40)
         for a, b, c in [(3, 5, 8), (2, 7, 9), (4, 4, 6)]]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


def test_tokenizer_special_tokens_and_round_trip(tokenizer):
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "<eos>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    # byte-level: text never seen in training (accents, new words) decodes back exactly
    text = "reach 1234 using 45\nzébra ünïcode!\n"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    # merges learned from the corpus: a frequent word is one token, digits are split one by one
    assert tokenizer.tokenize("reach") == ["reach"]
    assert tokenizer.tokenize("123") == ["1", "2", "3"]
    assert format_prompt("reach 5 using 1 4") == "reach 5 using 1 4\n"


@pytest.mark.parametrize(("size", "low", "high"), [("1m", 0.5e6, 1.5e6), ("3m", 2.5e6, 4e6), ("10m", 8e6, 12e6)])
def test_size_presets_parameter_counts(tokenizer, size, low, high):
    n = count_parameters(build_model(tokenizer, size=size))
    assert low <= n <= high


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_save_load_round_trip(tmp_path, tokenizer, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = build_model(tokenizer, size="1m", arch=arch, seed=3)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model2.config.model_type == arch
    text = "reach 123 using 45 6\nlet's try 45+6=51\n"
    assert tok2(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(tok2) == len(tokenizer) == model2.config.vocab_size
    assert (tok2.pad_token_id, tok2.eos_token_id) == (tokenizer.pad_token_id, tokenizer.eos_token_id)
    x = torch.tensor([tokenizer(text)["input_ids"]])
    torch.testing.assert_close(model(x).logits, model2(x).logits, rtol=0, atol=0)


def test_same_seed_same_weights_and_rng_untouched(tokenizer):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(tokenizer, size="1m", seed=7)
    after = torch.rand(1)
    b = build_model(tokenizer, size="1m", seed=7)
    c = build_model(tokenizer, size="1m", seed=8)
    assert torch.equal(before, after)  # building a model leaves the caller's RNG stream alone
    wa, wb, wc = (m.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_gpt2_arch_samples_through_the_hf_path_with_matching_logprobs(tokenizer):
    """gpt2 (learned absolute positions) is not the fast decoder's: `sample` falls back to the HF forward, and the
    behaviour log-probs equal a teacher-forced pass under left padding."""
    from hicra.lab.fastdecode import unsupported_reason
    from hicra.lab.sampling import sample, sequence_logprobs

    model = build_model(tokenizer, size="1m", arch="gpt2", seed=1)
    assert unsupported_reason(model) is not None
    prompts = [tokenizer("sum 1 to 4\n")["input_ids"], tokenizer("multiply 3 by 33\n")["input_ids"]]
    s = sample(model, prompts, 12, tokenizer.eos_token_id, tokenizer.pad_token_id,
               generator=torch.Generator().manual_seed(0))
    lp = sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.response_ids, s.response_mask)
    assert torch.allclose(lp[s.response_mask], s.logprobs[s.response_mask], atol=1e-5)


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_joined_layout_gives_the_split_layouts_logprobs(tokenizer, arch):
    """sequence_logprobs(layout="joined") (prompt and response contiguous, no attention mask) computes what the
    left-padded masked pass computes, at every real response position, for prompts of different lengths and
    responses with right padding; and the joined batch itself puts each row's real tokens first, in order."""
    from hicra.lab.sampling import joined_batch, left_pad, sequence_logprobs

    model = build_model(tokenizer, size="1m", arch=arch, seed=2)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(2, len(tokenizer), (n,), generator=g).tolist() for n in (5, 11, 2, 8)]
    p_ids, p_mask = left_pad(prompts, tokenizer.pad_token_id)
    r_ids = torch.randint(2, len(tokenizer), (4, 9), generator=g)
    r_mask = torch.ones(4, 9, dtype=torch.bool)
    r_mask[1, 3:] = r_mask[3, 7:] = False
    r_ids[~r_mask] = tokenizer.pad_token_id
    ids, starts = joined_batch(p_ids, p_mask, r_ids, tokenizer.pad_token_id)
    assert ids.shape == (4, 11 + 9) and starts.tolist() == [5, 11, 2, 8]
    for i, prompt in enumerate(prompts):
        assert ids[i, : len(prompt) + 9].tolist() == prompt + r_ids[i].tolist()
        assert (ids[i, len(prompt) + 9 :] == tokenizer.pad_token_id).all()
    split, ent_split = sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask, temperature=0.7, with_entropy=True)
    joined, ent_joined = sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask, temperature=0.7, with_entropy=True,
                                           layout="joined")
    torch.testing.assert_close(joined[r_mask], split[r_mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(ent_joined[r_mask], ent_split[r_mask], rtol=0, atol=1e-5)
    # the comparison can fail: dropping the prompts' padding without the shift reads the wrong columns
    shifted = sequence_logprobs(model, p_ids, p_mask.roll(1, 1), r_ids, r_mask, layout="joined")
    assert not torch.allclose(shifted[r_mask], split[r_mask], atol=1e-3)
    with pytest.raises(ValueError, match="layout must be one of"):
        sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask, layout="packed")


def _sft_examples(tokenizer):
    eos = tokenizer.eos_token_id
    return [(tokenizer(f"reach {t}\n")["input_ids"], tokenizer(f"let's try {t}+1={t + 1}\n")["input_ids"] + [eos])
            for t in range(24)]


def test_sft_joined_and_compiled_follow_the_split_eager_losses(tokenizer):
    """The joined layout and torch.compile change only float rounding: three SFT steps give the split eager
    pass's losses to 1e-4 (a C++ toolchain is needed for the compiled pass; without one it falls back to eager,
    which this test then also sees, reported by the returned flag)."""
    from hicra.lab.sft import WarmStartConfig, train_sft

    base = WarmStartConfig(epochs=1, batch_size=8, warmup_steps=1, lr=1e-3)
    runs = {}
    for layout, comp in (("split", False), ("joined", False), ("joined", True)):
        model = build_model(tokenizer, size="1m", seed=1)
        cfg = replace(base, logprob_layout=layout, compile_sft=comp)
        runs[layout, comp] = train_sft(model, _sft_examples(tokenizer), cfg, progress=False, log=lambda *a: None)
    (split, c0), (joined, c1), (compiled, c2) = runs.values()
    assert (c0, c1) == (False, False) and len(split) == 3
    torch.testing.assert_close(torch.tensor(joined), torch.tensor(split), rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(split), rtol=0, atol=1e-4)


def test_sft_falls_back_to_eager_when_compile_fails(tokenizer, monkeypatch):
    """compile_sft on a machine where compiling fails (no C++ toolchain): the first step's error is logged, SFT
    trains eagerly with the same losses, and the returned flag says torch.compile did not run. An error after the
    first step is not swallowed."""
    from hicra.lab.sft import WarmStartConfig, train_sft

    def broken(model, **kwargs):
        def forward(*a, **k):
            raise RuntimeError("InductorError: no C++ compiler\nmore detail")
        return forward

    monkeypatch.setattr(torch, "compile", broken)
    logged = []
    cfg = WarmStartConfig(epochs=1, batch_size=8, warmup_steps=1, lr=1e-3, logprob_layout="joined", compile_sft=True)
    losses, compiled = train_sft(build_model(tokenizer, size="1m", seed=1), _sft_examples(tokenizer), cfg,
                                 progress=False, log=logged.append)
    assert compiled is False and len(losses) == 3
    assert len(logged) == 1 and "torch.compile failed (RuntimeError: InductorError: no C++ compiler)" in logged[0]
    eager, _ = train_sft(build_model(tokenizer, size="1m", seed=1), _sft_examples(tokenizer),
                         replace(cfg, compile_sft=False), progress=False)
    assert losses == eager


def test_sft_ema_is_the_moving_average_of_the_optimiser_steps(tokenizer, monkeypatch):
    """WarmStartConfig.ema_decay: the warm start's weights are the EMA of the weights after every optimiser step
    (first step copied, then d * ema + (1 - d) * w), recomputed here from the recorded trajectory; training itself
    is unchanged by it."""
    from hicra.lab.sft import WarmStartConfig, train_sft

    eos = tokenizer.eos_token_id
    examples = [(tokenizer(f"reach {t}\n")["input_ids"], tokenizer(f"let's try {t}+1={t + 1}\n")["input_ids"] + [eos])
                for t in range(24)]
    trajectory: list[list[torch.Tensor]] = []
    real = torch.optim.AdamW

    class Recording(real):
        def step(self, *a, **k):
            out = super().step(*a, **k)
            trajectory.append([p.detach().clone() for p in self.param_groups[0]["params"]])
            return out

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    d = 0.6
    cfg = WarmStartConfig(epochs=1, batch_size=8, warmup_steps=1, lr=1e-3, ema_decay=d)
    model = build_model(tokenizer, size="1m", seed=1)
    train_sft(model, examples, cfg, progress=False)
    assert len(trajectory) == 3
    ema = trajectory[0]
    for w in trajectory[1:]:
        ema = [d * e + (1 - d) * x for e, x in zip(ema, w, strict=True)]
    for p, e in zip(model.parameters(), ema, strict=True):
        torch.testing.assert_close(p.detach(), e)
    assert any(not torch.equal(e, last) for e, last in zip(ema, trajectory[-1], strict=True))
    # the same training without EMA passes through the same weights and ends at the last step's
    with_ema = [list(w) for w in trajectory]
    trajectory.clear()
    plain = build_model(tokenizer, size="1m", seed=1)
    train_sft(plain, examples, WarmStartConfig(epochs=1, batch_size=8, warmup_steps=1, lr=1e-3), progress=False)
    for a, b in zip(with_ema, trajectory, strict=True):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    for p, last in zip(plain.parameters(), trajectory[-1], strict=True):
        torch.testing.assert_close(p.detach(), last, rtol=0, atol=0)


def test_fields_added_later_keep_old_cache_keys():
    """lr_floor, ema_decay, strategy_hints and favourite_share enter WarmStartConfig.key() only when set, so warm starts cached
    before they existed are found again; setting any gives a new key."""
    import hashlib
    import json
    from dataclasses import asdict

    from hicra.lab.sft import CACHE_VERSION, WarmStartConfig

    cfg = WarmStartConfig(seed=4)
    old = {k: v for k, v in asdict(cfg).items() if k not in ("lr_floor", "ema_decay", "strategy_hints",
                                                                     "favourite_share", "logprob_layout",
                                                                     "compile_sft", "slip_cap")}
    expected = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **old}, sort_keys=True).encode()).hexdigest()[:16]
    assert cfg.key() == expected
    keys = {cfg.key(), WarmStartConfig(seed=4, lr_floor=0.0).key(), WarmStartConfig(seed=4, ema_decay=0.999).key(),
            WarmStartConfig(seed=4, strategy_hints=0.5).key(), WarmStartConfig(seed=4, favourite_share=0.6).key(),
            WarmStartConfig(seed=4, logprob_layout="joined").key(), WarmStartConfig(seed=4, compile_sft=True).key(),
            WarmStartConfig(seed=4, slip_cap=1).key()}
    assert len(keys) == 8


def test_strategy_hints_name_the_executed_strategy_and_leave_the_unhinted_choice():
    from collections import Counter

    from hicra.lab.sft import HINT, WarmStartConfig, build_corpus

    cfg = WarmStartConfig(seed=1)
    task = cfg.task_mix()
    plain = build_corpus(task, 400, cfg.knobs(), seed=1)
    assert build_corpus(task, 400, cfg.knobs(), seed=1, strategy_hints=0.0) == plain  # the old corpus, bit for bit
    mixed = build_corpus(task, 3000, cfg.knobs(), seed=1, strategy_hints=0.5)
    hinted = [(p, t) for p, t in mixed if HINT in p.question]
    assert 0.45 < len(hinted) / len(mixed) < 0.55
    # the named strategy is the one the trace executes (a misapplied plan may still parse as another: rare)
    executed = [task.check(p, t).strategy == p.question.split(HINT)[1] for p, t in hinted]
    assert sum(executed) / len(executed) > 0.97
    # hinted strategies are uniform over those that apply: the prior's favourite is not over-represented
    series = Counter(p.question.split(HINT)[1] for p, _ in hinted if p.family == "series")
    assert series["one-by-one"] > 0.25 * sum(series.values())
    # the unhinted pairs keep the blind prior: its favourite (pairing) dominates the series
    unhinted = Counter(task.check(p, t).strategy for p, t in mixed if HINT not in p.question and p.family == "series")
    assert unhinted["pairing"] > 0.7 * sum(unhinted.values())


@pytest.mark.parametrize("bad", [{"ema_decay": -0.1}, {"ema_decay": 1.0}, {"lr_floor": -0.5}, {"lr_floor": 1.5},
                                 {"strategy_hints": 1.5}, {"logprob_layout": "packed"}])
def test_warm_start_schedule_fields_are_checked(bad):
    from hicra.lab.sft import WarmStartConfig

    with pytest.raises(ValueError, match=next(iter(bad))):
        WarmStartConfig(**bad)
