"""hicra.evaluation.generation: stop tokens and sampling settings (a tiny untrained model on CPU)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hicra import evaluation as ev
from hicra.evaluation.generation import generate_transformers, stop_token_ids

PROMPT = "Natalia sold clips"


@pytest.fixture(scope="module")
def tiny(shared_data):
    """(tokenizer, model builder): an untrained 1m-parameter model, whose next-token distribution is near uniform
    over its 400 tokens."""
    from hicra.lab.model import build_model, train_tokenizer

    texts = [it["problem"] + "\n" + it["solution"] for it in ev.load_benchmark("gsm8k", shared_data, limit=50)]
    tok = train_tokenizer(texts, vocab_size=400)
    return tok, lambda: build_model(tok, size="1m")


def _save(tok, model, path):
    tok.save_pretrained(path)
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize("config_eos, expected", [(None, [1]), (1, [1]), (7, [1, 7]), ([1, 9, 4], [1, 4, 9])])
def test_stop_token_ids_include_generation_config_eos(config_eos, expected):
    tokenizer = SimpleNamespace(eos_token_id=1)
    assert stop_token_ids(tokenizer, SimpleNamespace(eos_token_id=config_eos)) == expected


def test_response_ending_on_a_generation_config_stop_token_is_finished(tmp_path, tiny):
    """A chat model's second stop token (Phi-3's <|end|>, in generation_config.eos_token_id) ends the response:
    the token is not part of it and the response is not truncated."""
    tok, build = tiny
    plain = _save(tok, build(), tmp_path / "plain")
    kwargs = dict(n=1, max_new_tokens=8, temperature=1.0, top_p=1.0, batch_size=1, seed=0, progress=False)
    first = generate_transformers(plain, [PROMPT], **kwargs)[0]
    ids = first["token_ids"][0]
    assert len(ids) == 8 and first["truncated"] == [True]
    # the same seed draws the same tokens up to the stop token: make the first new token from the 3rd on a stop
    end = next(i for i in range(2, 8) if ids[i] not in ids[:i])
    model = build()
    model.generation_config.eos_token_id = [tok.eos_token_id, ids[end]]
    chat = _save(tok, model, tmp_path / "chat")
    out = generate_transformers(chat, [PROMPT], **kwargs)[0]
    assert out["token_ids"] == [ids[:end]]
    assert out["truncated"] == [False]
    assert out["sampling"]["eos_token_id"] == sorted({tok.eos_token_id, ids[end]})


def test_sampling_ignores_the_model_generation_config(tmp_path, tiny):
    """Sampling is temperature + top-p only: a model's generation_config (top_k, repetition_penalty, as
    Qwen2.5-Instruct ships) changes nothing, and no top-k cut applies (transformers' default is top_k=50)."""
    import torch
    from transformers import AutoModelForCausalLM

    tok, build = tiny
    plain = _save(tok, build(), tmp_path / "plain")
    model = build()
    model.generation_config.update(do_sample=True, top_k=1, repetition_penalty=1.5, no_repeat_ngram_size=1)
    tuned = _save(tok, model, tmp_path / "tuned")
    kwargs = dict(n=4, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=3, progress=False)
    a = generate_transformers(plain, [PROMPT], **kwargs)[0]
    b = generate_transformers(tuned, [PROMPT], **kwargs)[0]
    assert a["token_ids"] == b["token_ids"] and a["logprobs"] == b["logprobs"]
    assert b["sampling"] == {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                             "repetition_penalty": 1.0, "max_new_tokens": 12, "eos_token_id": [tok.eos_token_id],
                             "seed": 3}
    # near-uniform model: under a top-50 cut no sampled token could rank below 50
    lm = AutoModelForCausalLM.from_pretrained(plain).eval()
    prompt_ids = tok(PROMPT)["input_ids"]
    ranks = []
    for ids in a["token_ids"]:
        with torch.no_grad():
            logits = lm(torch.tensor([prompt_ids + ids])).logits[0, len(prompt_ids) - 1:-1]
        ranks += (logits > logits.gather(-1, torch.tensor(ids)[:, None])).sum(-1).tolist()
    assert max(ranks) >= 50


def test_evaluate_model_records_sampling_settings(tmp_path, tiny, shared_data):
    tok, build = tiny
    model_dir = _save(tok, build(), tmp_path / "m")
    items, results = ev.evaluate_model(model_dir, ["gsm8k"], n=2, limit=1, data_dir=shared_data,
                                       engine="transformers", progress=False, max_new_tokens=4, temperature=0.7,
                                       top_p=0.9, seed=5)
    assert results["sampling"] == {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0,
                                   "repetition_penalty": 1.0, "max_new_tokens": 4,
                                   "eos_token_id": [tok.eos_token_id], "seed": 5}
    assert "sampling" not in items[0] and len(items[0]["responses"]) == 2
