"""Sample responses to benchmark problems with transformers (or vLLM when installed and asked for), then grade them.

`evaluate_model(model_dir, benches, n, k)` returns (items, results) as `grading.grade_items` does, with the
sampled token ids, log-probs and entropies kept per response for the run directory, and the sampling settings
used under `results["sampling"]`.

Sampling is exactly what is asked for: temperature and top-p (greedy at temperature 0). The model's own
`generation_config.json` (e.g. Qwen2.5-Instruct's top_k=20, repetition_penalty=1.05) does not apply, except for its
stop tokens (`eos_token_id`, an id or a list), which end a response as the tokenizer's end-of-sequence token does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from hicra.errors import InputError
from hicra.evaluation.benchmarks import DEFAULT_PROMPT, load_benchmark, resolve_bench
from hicra.evaluation.grading import grade_items

# ----------------------------------------------------------------------------------------------------------------
# Generation


def build_prompt(problem: str, tokenizer, template: str = DEFAULT_PROMPT) -> str:
    """The prompt text: `template` filled with the problem, through the chat template when the tokenizer has one."""
    text = template.format(problem=problem)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return text


def stop_token_ids(tokenizer, generation_config) -> list[int]:
    """The token ids that end a response: the tokenizer's end-of-sequence token and the model generation config's
    `eos_token_id` (None, an id, or a list of ids, as chat models such as Phi-3 or Llama-3-Instruct declare)."""
    ids = {tokenizer.eos_token_id}
    extra = getattr(generation_config, "eos_token_id", None)
    ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
    return sorted(ids - {None})


def sampling_settings(temperature: float, top_p: float, max_new_tokens: int, stop_ids: Sequence[int]) -> dict:
    """transformers generation settings for plain sampling at `temperature` with nucleus `top_p` (greedy when
    temperature is 0): no top-k, no repetition penalty, ending on `stop_ids` or after `max_new_tokens` tokens.
    Every sampling field is set, so that no default of the model's own generation config applies."""
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    else:
        sampling = {"do_sample": False}
    return {**sampling, "repetition_penalty": 1.0, "max_new_tokens": max_new_tokens,
            "eos_token_id": list(stop_ids) or None}


def generate_transformers(model_dir: str | Path, prompts: Sequence[str], n: int, max_new_tokens: int = 512,
                          temperature: float = 0.6, top_p: float = 0.95, batch_size: int = 8, seed: int = 0,
                          progress: bool = True) -> list[dict]:
    """Sample `n` responses per prompt with transformers' `generate`, with `sampling_settings` only (the model's
    own generation config is replaced; its stop tokens are kept, `stop_token_ids`).

    Returns per prompt `{responses, token_ids, logprobs, entropies, truncated, sampling}`; logprobs and entropies
    are those of the sampling distribution (logits / temperature, before top-p), per generated token; a response
    is truncated when it ends without a stop token; `sampling` is the settings used (`sampling_settings` plus
    `seed`), the same for every prompt."""
    import torch
    from tqdm import tqdm
    from transformers import GenerationConfig

    from hicra.fileio import load_causal_lm, load_tokenizer

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(model_dir, field="model")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = load_causal_lm(model_dir, dtype=dtype).to(device).eval()
    stop = stop_token_ids(tokenizer, model.generation_config)
    settings = sampling_settings(temperature, top_p, max_new_tokens, stop)
    # replace (not update) the model's generation config: a field left unset would otherwise take its value
    config = GenerationConfig(**settings, pad_token_id=tokenizer.pad_token_id, output_logits=True,
                              return_dict_in_generate=True)
    model.generation_config = config
    flat = [p for p in prompts for _ in range(n)]
    out: list[dict] = []
    for start in tqdm(range(0, len(flat), batch_size), desc="generating", disable=None if progress else True):
        chunk = flat[start:start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            gen = model.generate(**enc, generation_config=config)
        seqs = gen.sequences[:, enc["input_ids"].shape[1]:]
        logits = torch.stack(gen.logits, dim=1).float() / (temperature if temperature > 0 else 1.0)
        logp = torch.log_softmax(logits, dim=-1)
        token_logp = logp.gather(-1, seqs.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp.exp() * logp).sum(-1)
        for i in range(seqs.shape[0]):
            ids = seqs[i].tolist()
            length = next((t + 1 for t, tok in enumerate(ids) if tok in stop), len(ids))
            finished = bool(ids[:length]) and ids[length - 1] in stop
            keep = ids[:length - 1] if finished else ids[:length]  # the stop token is not part of the text
            m = len(keep)
            out.append({"response": tokenizer.decode(keep, skip_special_tokens=True), "token_ids": keep,
                        "logprobs": token_logp[i, :m].tolist(), "entropies": entropy[i, :m].tolist(),
                        "truncated": not finished})
    sampling = {**settings, "seed": seed}
    return [_regroup(out[i * n:(i + 1) * n], sampling) for i in range(len(prompts))]


def generate_vllm(model_dir: str | Path, prompts: Sequence[str], n: int, max_new_tokens: int = 512,
                  temperature: float = 0.6, top_p: float = 0.95, seed: int = 0, **_) -> list[dict]:
    """Sample with vLLM (optional dependency). Entropies are not available from vLLM and are left empty.

    Returns per prompt the same dict as `generate_transformers`; `sampling` holds the SamplingParams values used
    (explicit SamplingParams: vLLM does not apply the model's generation config defaults to them)."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), seed=seed)
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, logprobs=0)
    sampling = {key: getattr(params, key) for key in ("temperature", "top_p", "top_k", "min_p",
                                                      "repetition_penalty")}
    sampling.update(max_new_tokens=max_new_tokens, seed=seed)
    results = []
    for request in llm.generate(list(prompts), params):
        samples = []
        for o in request.outputs:
            lps = [next(iter(d.values())).logprob for d in (o.logprobs or [])]
            samples.append({"response": o.text, "token_ids": list(o.token_ids), "logprobs": lps,
                            "entropies": [], "truncated": o.finish_reason == "length"})
        results.append(_regroup(samples, sampling))
    return results


def _regroup(samples: list[dict], sampling: dict) -> dict:
    return {"responses": [s["response"] for s in samples], "token_ids": [s["token_ids"] for s in samples],
            "logprobs": [s["logprobs"] for s in samples], "entropies": [s["entropies"] for s in samples],
            "truncated": [s["truncated"] for s in samples], "sampling": sampling}


def evaluate_model(model_dir: str | Path, benches: Iterable[str], n: int = 1, k: int | None = None,
                   limit: int | None = None, data_dir: str | Path | None = None, engine: str = "auto",
                   template: str = DEFAULT_PROMPT, progress: bool = True, fields: dict | None = None,
                   **gen_kwargs) -> tuple[list, dict]:
    """Generate `n` samples per problem for each benchmark (a name or a .jsonl file read with `fields`) and grade
    them. Returns (items, results); results also hold `model`, `engine`, `n` and `sampling` (the settings used,
    `generate_transformers`)."""
    import importlib.util

    from hicra.fileio import load_tokenizer

    if not Path(model_dir).is_dir():
        raise InputError("model directory not found", path=str(model_dir))
    k = n if k is None else k
    if not 1 <= k <= n:
        raise InputError(f"need 1 <= k <= n (got k={k}, n={n})", field="k")
    if engine == "auto":
        engine = "vllm" if importlib.util.find_spec("vllm") else "transformers"
    items = []
    for bench in benches:  # the benchmark files first: their errors come before loading the model
        name, spec = resolve_bench(bench, fields)
        items += load_benchmark(name, data_dir, limit, spec=spec)
    if not items:
        raise InputError("no problems to evaluate", field="bench")
    tokenizer = load_tokenizer(model_dir, field="model")
    prompts = [build_prompt(it["problem"], tokenizer, template) for it in items]
    generate = generate_vllm if engine == "vllm" else generate_transformers
    samples = generate(model_dir, prompts, n, progress=progress, **gen_kwargs)
    sampling = samples[0]["sampling"]
    for it, prompt, sample in zip(items, prompts, samples, strict=True):
        it.update({key: value for key, value in sample.items() if key != "sampling"}, prompt=prompt)
    results = grade_items(items, k=k, progress=progress)
    results.update(model=str(model_dir), engine=engine, n=n, sampling=sampling)
    return items, results
