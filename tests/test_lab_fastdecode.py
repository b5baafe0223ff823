"""The plain-torch sampler (`hicra.lab.fastdecode`) against the Hugging Face models it re-implements."""

from __future__ import annotations

import pytest
import torch

from hicra.lab.fastdecode import FastDecoder, unsupported_reason
from hicra.lab.sampling import left_pad, positions, sample, sequence_logprobs

pytestmark = pytest.mark.xdist_group("lab_fastdecode")

VOCAB, PAD, EOS = 40, 0, 1


def tiny(arch: str, **overrides):
    """A random tiny HF causal LM. Llama gets an untied lm_head, biases, an explicit head_dim and another
    rope_theta, so both layouts the decoder reads are covered."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=PAD,
                  eos_token_id=EOS)
    if arch == "qwen2":
        config = Qwen2Config(**common, tie_word_embeddings=True, **overrides)
    else:
        config = LlamaConfig(**common, tie_word_embeddings=False, attention_bias=True, mlp_bias=True, head_dim=16,
                             rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, **overrides)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        with torch.no_grad():  # non-trivial norm weights and biases (HF initialises them to 1 and 0)
            for name, p in model.named_parameters():
                if "norm" in name or name.endswith("bias"):
                    p.add_(0.3 * torch.randn_like(p))
    return model


def prompts(n: int = 5, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = [1, 3, 6, 2, 6, 4][:n]  # different lengths: left padding in every row but the longest
    return [torch.randint(2, VOCAB, (k,), generator=g).tolist() for k in lengths]


def hf_logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask.long(), position_ids=positions(mask)).logits


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_forward_matches_hf(arch):
    model = tiny(arch)
    assert unsupported_reason(model) is None
    ids, mask = left_pad(prompts(), PAD)
    with torch.no_grad():
        ours = FastDecoder(model).forward(ids, mask)
    ref = hf_logits(model, ids, mask)
    assert mask.sum() < mask.numel()  # the batch has padding
    assert (ours - ref)[mask].abs().max() < 1e-5


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_decode_steps_match_hf_full_forward(arch):
    """Prefill, then decode fixed tokens one by one, dropping rows on the way: every step's logits equal the
    HF model's teacher-forced logits at that position of the full (prompt + tokens so far) sequence."""
    model = tiny(arch)
    ids, mask = left_pad(prompts(), PAD)
    g = torch.Generator().manual_seed(1)
    new = torch.randint(2, VOCAB, (ids.shape[0], 6), generator=g)
    dec = FastDecoder(model)
    logits = dec.prefill(ids, mask, max_new_tokens=6)
    full_ids, full_mask = ids, mask
    rows = torch.arange(ids.shape[0])
    for t in range(6):
        ref = hf_logits(model, full_ids, full_mask)[rows, -1]
        assert (logits - ref).abs().max() < 1e-5, f"step {t}"
        if t == 2:  # drop rows 0 and 3 from the decoder's batch
            keep = torch.tensor([1, 2, 4])
            dec.keep(keep)
            rows = rows[keep]
        full_ids = torch.cat([full_ids, new[:, t : t + 1]], dim=1)
        full_mask = torch.cat([full_mask, torch.ones(ids.shape[0], 1, dtype=torch.bool)], dim=1)
        logits = dec.step(new[rows, t], positions(full_mask)[rows, -1])


def _run(model, backend, seed=3, greedy=False, temperature=1.0):
    group = [p for p in prompts(6, seed=seed) for _ in range(4)]
    g = torch.Generator().manual_seed(seed)
    return sample(model, group, 12, EOS, PAD, generator=g, greedy=greedy, temperature=temperature,
                  backend=backend)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("greedy,temperature", [(False, 1.0), (False, 0.7), (True, 1.0)])
def test_sampled_outputs_match_hf_path(arch, greedy, temperature):
    """Same generator, same draws: same tokens; log-probs and entropies agree, and re-scoring the responses
    with the HF model's teacher-forced pass gives the fast sampler's log-probs within 1e-4."""
    model = tiny(arch)
    with torch.no_grad():  # eos more likely, so responses end at different steps and rows get dropped
        model.lm_head.weight[EOS] += 0.5 * model.lm_head.weight.std()
        if greedy:  # random tiny models repeat one token: eos ties with the rarest first token (argmax: eos)
            first = _run(model, "hf", greedy=True).response_ids[:, 0]
            values, counts = first.unique(return_counts=True)
            model.lm_head.weight[EOS] = model.lm_head.weight[values[counts.argmin()]]
    fast, hf = _run(model, "fast", greedy=greedy, temperature=temperature), _run(model, "hf", greedy=greedy,
                                                                                  temperature=temperature)
    lengths = fast.response_mask.sum(1)
    assert lengths.min() < lengths.max()  # rows did finish at different steps
    assert torch.equal(fast.response_ids, hf.response_ids)
    assert torch.equal(fast.response_mask, hf.response_mask)
    assert torch.equal(fast.truncated, hf.truncated)
    assert (fast.logprobs - hf.logprobs).abs().max() < 1e-5
    assert (fast.entropies - hf.entropies).abs().max() < 1e-5
    with torch.no_grad():
        lp, ent = sequence_logprobs(model, fast.prompt_ids, fast.prompt_mask, fast.response_ids,
                                    fast.response_mask, temperature, with_entropy=True)
    m = fast.response_mask
    assert (lp - fast.logprobs)[m].abs().max() < 1e-4
    assert (ent - fast.entropies)[m].abs().max() < 1e-4


def test_gradients_flow_through_forward():
    """Built with grad enabled, the decoder's forward back-propagates into the HF weights (same gradients)."""
    model = tiny("qwen2")
    ids, mask = left_pad(prompts(), PAD)
    FastDecoder(model).forward(ids, mask)[mask].logsumexp(-1).sum().backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(input_ids=ids, attention_mask=mask.long(), position_ids=positions(mask)).logits[mask].logsumexp(-1) \
        .sum().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(ours[n], p.grad, atol=1e-5), n


def test_unsupported_models_fall_back_to_hf():
    """Other architectures (GPT-2 here), Qwen2 with sliding windows and float64 weights are not supported: "auto" samples with
    the HF path (identical result), "fast" refuses."""
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64)).eval()
    assert "gpt2" in unsupported_reason(gpt2)
    auto, hf = _run(gpt2, "auto"), _run(gpt2, "hf")
    assert torch.equal(auto.response_ids, hf.response_ids) and torch.equal(auto.logprobs, hf.logprobs)
    with pytest.raises(ValueError, match="gpt2"):
        _run(gpt2, "fast")
    with pytest.raises(ValueError):
        FastDecoder(gpt2)
    sliding = tiny("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=0)
    assert unsupported_reason(sliding) == "sliding-window attention"
    double = tiny("qwen2").double()
    assert unsupported_reason(double) == "weights are not float32 on the CPU"
    assert _run(double, "auto").response_ids.shape[0] == 24  # sampled through the HF path
    with pytest.raises(ValueError, match="backend"):
        _run(tiny("qwen2"), "vllm")


def test_inverse_cdf_draws_follow_the_probabilities():
    """200k draws from three rows (one with zero-probability tokens, one unnormalised): every frequency is
    within 5 standard errors of its probability, and a zero-probability token is never drawn."""
    from hicra.lab.sampling import inverse_cdf

    probs = torch.tensor([[0.5, 0.0, 0.25, 0.25, 0.0],
                          [0.1, 0.2, 0.3, 0.2, 0.2],
                          [0.0, 1.5, 0.0, 1.5, 0.0]])  # sums to 3: normalised by the draw
    g = torch.Generator().manual_seed(0)
    n = 200_000
    counts = torch.zeros(3, 5)
    for _ in range(n // 1000):
        tok = inverse_cdf(probs.repeat(1000, 1), g).view(1000, 3)
        for row in range(3):
            counts[row] += torch.bincount(tok[:, row], minlength=5)
    expected = probs / probs.sum(-1, keepdim=True)
    freq = counts / n
    se = (expected * (1 - expected) / n).sqrt()
    assert ((freq - expected).abs() <= 5 * se + 1e-12).all(), freq
    assert counts[expected == 0].sum() == 0
    again = inverse_cdf(probs, torch.Generator().manual_seed(7))
    assert torch.equal(again, inverse_cdf(probs, torch.Generator().manual_seed(7)))  # same generator, same draw
