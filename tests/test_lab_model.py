"""hicra.lab.model: a locally trained byte-level BPE and tiny causal LMs that round-trip as HF directories."""

from __future__ import annotations

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
