"""Batched sampling with a KV cache, and the matching teacher-forced forward pass.

The lab's models are tiny and CPU-bound, so the loop is written out (no `generate`): one forward over the
left-padded prompts, then one token per step through a KV cache. For Qwen2/Llama models the forward is the
plain-torch `hicra.lab.fastdecode.FastDecoder` (same weights, same float32 operations: the same tokens, log-probs
and entropies as the HF path for the same generator in our tests, about 1.5x faster per sample); any other causal LM
runs through its own HF forward with `past_key_values` (`backend="hf"` forces that). For every sampled token it
returns the behaviour log-probability log pi(a_t | s_t) and the entropy H_t = -sum_v p_v log p_v of the
distribution it was drawn from (at temperature 1 these are the model's own; with temperature tau the logits are
divided by tau).

`sequence_logprobs` recomputes the same quantities in one teacher-forced pass (for the policy loss); both use the
same position ids (cumulative count of real tokens), so they agree up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hicra.lab.model import check_layout


@dataclass
class Samples:
    """Right-padded responses of one batch. `response_mask[i, t]` is True for real tokens (the eos included)."""

    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_mask: torch.Tensor  # [B, P] bool
    response_ids: torch.Tensor  # [B, T] right-padded with pad_id
    response_mask: torch.Tensor  # [B, T] bool
    logprobs: torch.Tensor  # [B, T] behaviour log-probs (0 on padding)
    entropies: torch.Tensor  # [B, T] (0 on padding)
    truncated: torch.Tensor  # [B] bool: hit max_new_tokens without eos

    def response_lists(self) -> list[list[int]]:
        return [row[m].tolist() for row, m in zip(self.response_ids, self.response_mask, strict=True)]


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ids [B, L] and a bool mask."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for i, s in enumerate(sequences):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = True
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens (left padding gets 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def draw(logits: torch.Tensor, temperature: float, greedy: bool, generator: torch.Generator | None):
    """One token per row from next-token `logits` [B, V]: the token, log pi(token) and the entropy, all [B]."""
    logp_all = torch.log_softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)  # x/1 == x
    probs = logp_all.exp()
    if greedy:
        tok = logp_all.argmax(-1)
    else:
        tok = inverse_cdf(probs, generator)
    return tok, logp_all.gather(-1, tok[:, None]).squeeze(-1), -(probs * logp_all).sum(-1)


def inverse_cdf(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of `probs` [B, V], P(index = v) = probs[v] / sum(probs): the first v whose cumulative
    sum exceeds u * total for u ~ U[0, 1). One uniform per row; torch.multinomial draws V exponentials per row
    instead, about 17x slower at the lab's shapes (`benchmarks/decode_step.py`) and an eighth of a decode step.
    "Exceeds" (right=True) never picks a zero-probability token; the clamp only guards u * total rounding up."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


BACKENDS = ("auto", "fast", "hf")
DEFAULT_BACKEND = "auto"  # what `sample(backend=None)` uses (the benchmark sets "hf" to time the HF path)
COMPACT = 4 / 3


@torch.no_grad()
def sample(model, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int,
           generator: torch.Generator | None = None, temperature: float = 1.0, greedy: bool = False,
           backend: str | None = None, stop_ids: list[int] | None = None, share_prompts: bool = False) -> Samples:
    """Sample one response per prompt (repeat a prompt G times for a group).

    `backend` (None: `DEFAULT_BACKEND`): "fast" runs `hicra.lab.fastdecode.FastDecoder` (plain torch, preallocated
    KV cache; Qwen2/Llama only), "hf" the model's own forward with `past_key_values` (any causal LM), "auto" the
    fast one when it supports the model, else HF. Both draw every token with `draw` from the same generator, in the
    same order. Finished rows stop being sampled at once, so later steps only pay for the responses still running
    (responses differ a lot in length); the loop ends when none is. A model on another device than the CPU runs
    the HF path (the fast decoder is CPU-only); the returned tensors are on the CPU either way. `stop_ids` end a row like eos does (kept as
    its last token; the probes stop at `=` to let a calculator write the result). `share_prompts`: identical
    prompts are run through the prompt forward once and their KV cache is copied to every row that holds them
    (`hicra anchors` draws many continuations of one prefix); each row's tokens are still drawn from its own
    logits, but the prompt forward runs on a smaller batch, so results agree with `share_prompts=False` only up
    to float rounding (off by default: training keeps its exact numbers).
    """
    from hicra.lab.fastdecode import FastDecoder, unsupported_reason

    backend = DEFAULT_BACKEND if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    device = next(model.parameters()).device
    reason = unsupported_reason(model) or (None if device.type == "cpu" else f"the model is on {device}")
    if backend == "fast" and reason is not None:
        raise ValueError(f"the fast decoder does not support this model: {reason}")
    model.eval()
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)
    bsz = prompt_ids.shape[0]
    out = Samples(prompt_ids=prompt_ids, prompt_mask=prompt_mask,
                  response_ids=torch.full((bsz, max_new_tokens), pad_id, dtype=torch.long),
                  response_mask=torch.zeros((bsz, max_new_tokens), dtype=torch.bool),
                  logprobs=torch.zeros((bsz, max_new_tokens)), entropies=torch.zeros((bsz, max_new_tokens)),
                  truncated=torch.zeros(bsz, dtype=torch.bool))
    stops = torch.tensor(sorted({eos_id, *(stop_ids or ())}), dtype=torch.long)
    shared = _shared_rows(prompts) if share_prompts else None
    if backend == "hf" or reason is not None:
        length = _sample_hf(model, out, max_new_tokens, stops, generator, temperature, greedy, shared)
    else:
        length = _sample_fast(FastDecoder(model), out, max_new_tokens, stops, pad_id, generator, temperature,
                              greedy, shared)
    last = out.response_ids[:, length - 1]
    out.truncated = out.response_mask[:, length - 1] & ~torch.isin(last, stops) & (length == max_new_tokens)
    out.response_ids, out.response_mask = out.response_ids[:, :length], out.response_mask[:, :length]
    out.logprobs, out.entropies = out.logprobs[:, :length], out.entropies[:, :length]
    return out


def _shared_rows(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first row of each distinct prompt, index of every row's prompt among those), or None when all differ."""
    index: dict[tuple[int, ...], int] = {}
    inverse = [index.setdefault(tuple(p), len(index)) for p in prompts]
    if len(index) == len(prompts):
        return None
    first = [0] * len(index)
    for row in reversed(range(len(prompts))):
        first[inverse[row]] = row
    return torch.tensor(first, dtype=torch.long), torch.tensor(inverse, dtype=torch.long)


def _record(out: Samples, rows: torch.Tensor, t: int, tok, logp, ent) -> None:
    out.response_ids[rows, t] = tok
    out.response_mask[rows, t] = True
    out.logprobs[rows, t] = logp
    out.entropies[rows, t] = ent


def _sample_hf(model, out: Samples, max_new_tokens, stops, generator, temperature, greedy, shared=None) -> int:
    """The HF forward with its KV cache; finished rows are dropped from the batch and the cache at once.

    The model may sit on any device: its inputs and cache live there, while each step's last-token logits are
    brought to the CPU, where every token is drawn (so `generator` is a CPU generator and the draws are the same
    function of the logits on every device) and recorded in `out` (CPU tensors)."""
    dev = next(model.parameters()).device
    attn = out.prompt_mask.long().to(dev)
    pos = positions(out.prompt_mask).to(dev)
    ids = out.prompt_ids.to(dev)
    if shared is None:
        res = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
        past, logits = res.past_key_values, res.logits[:, -1, :].float().cpu()
    else:  # the distinct prompts once, then their cache and logits copied to every row
        first, inverse = shared[0].to(dev), shared[1]
        res = model(input_ids=ids[first], attention_mask=attn[first], position_ids=pos[first], use_cache=True)
        past, logits = res.past_key_values, res.logits[:, -1, :].float().cpu()[inverse]
        past.reorder_cache(inverse.to(dev))
    next_pos = pos[:, -1] + 1
    rows = torch.arange(out.prompt_ids.shape[0])  # original index of every row still running
    length = 0
    for t in range(max_new_tokens):
        tok, logp, ent = draw(logits, temperature, greedy, generator)
        _record(out, rows, t, tok, logp, ent)
        length = t + 1
        running = ~torch.isin(tok, stops)
        if not running.any() or t + 1 == max_new_tokens:
            break
        if not running.all():  # drop finished rows from the batch and the cache
            keep = running.nonzero().squeeze(-1)
            rows, tok = rows[keep], tok[keep]
            keep = keep.to(dev)
            attn, next_pos = attn[keep], next_pos[keep]
            past.reorder_cache(keep)
        attn = torch.cat([attn, torch.ones((attn.shape[0], 1), dtype=attn.dtype, device=dev)], dim=1)
        res = model(input_ids=tok[:, None].to(dev), attention_mask=attn, position_ids=next_pos[:, None],
                    past_key_values=past, use_cache=True)
        past = res.past_key_values
        logits = res.logits[:, -1, :].float().cpu()
        next_pos = next_pos + 1
    return length


def _sample_fast(dec, out: Samples, max_new_tokens, stops, pad_id, generator, temperature, greedy,
                 shared=None) -> int:
    """The plain-torch decoder. `held` are the original rows the decoder's batch holds, `live` the positions
    (in that batch) of those still running. Finished rows are no longer sampled; the decoder's batch is
    compacted only once fewer than 3/4 of its rows run (each compaction copies the cache)."""
    if shared is None:
        logits = dec.prefill(out.prompt_ids, out.prompt_mask, max_new_tokens)
    else:  # the distinct prompts once, then their cache and logits copied to every row
        first, inverse = shared
        logits = dec.prefill(out.prompt_ids[first], out.prompt_mask[first], max_new_tokens)[inverse]
        dec.keep(inverse)
    next_pos = positions(out.prompt_mask)[:, -1] + 1
    held = torch.arange(out.prompt_ids.shape[0])
    live = held.clone()
    length = 0
    for t in range(max_new_tokens):
        tok, logp, ent = draw(logits if len(live) == len(held) else logits[live], temperature, greedy, generator)
        _record(out, held[live], t, tok, logp, ent)
        length = t + 1
        running = ~torch.isin(tok, stops)
        if not running.any() or t + 1 == max_new_tokens:
            break
        if not running.all():
            live, tok = live[running], tok[running]
            if COMPACT * len(live) < len(held):  # compact: keep only the running rows
                dec.keep(live)
                held, next_pos = held[live], next_pos[live]
                live = torch.arange(len(live))
        if len(live) < len(held):  # held rows that have finished get a pad token; their logits are ignored
            step_tok = torch.full((len(held),), pad_id, dtype=torch.long)
            step_tok[live] = tok
        else:
            step_tok = tok
        logits = dec.step(step_tok, next_pos)
        next_pos = next_pos + 1
    return length


def joined_batch(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                 pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's real prompt tokens followed directly by its response columns, right-padded with `pad_id`:
    ids [B, P_max + T] (P_max: the longest real prompt) and the index [B] of each row's first response column.

    Row i is `prompt_ids[i]` without its left padding, then `response_ids[i]` (all T columns; the response's own
    right padding comes after its real tokens). Every real token then sits at its real position (0 = the first
    prompt token) and sees only real tokens under a causal mask, so the model needs no attention mask: what a
    causal LM computes at the real positions equals the left-padded, masked pass's (up to float rounding)."""
    b, p = prompt_ids.shape
    lengths = prompt_mask.sum(1)
    width = int(lengths.max()) + response_ids.shape[1]
    full = torch.cat([prompt_ids, response_ids, prompt_ids.new_full((b, width), pad_id)], dim=1)
    shift = (p - lengths)[:, None]
    return full.gather(1, shift + torch.arange(width, device=full.device)[None, :]), lengths


def sequence_logprobs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                      response_mask: torch.Tensor, temperature: float = 1.0, with_entropy: bool = False,
                      layout: str = "split", forward=None):
    """Teacher-forced log pi(response_t | prompt, response_<t) for every response position: [B, T]
    (and the entropies [B, T] when asked), on the model's device (inputs are moved there). Padding positions hold
    garbage values; mask them.

    `layout` (`hicra.lab.model.LAYOUTS`) is how the batch reaches the model, the same quantities either way up to
    float rounding: "split" (the default, what every cached warm start was trained with): left-padded prompts then
    right-padded responses, an attention mask and position ids that skip the padding; "joined" (`joined_batch`):
    each row's prompt and response contiguous and right-padded, no attention mask, so the attention runs causal and
    skips the masked half (7% faster per SFT step on the lab's 1m model, docs/lab.md "Faster teacher-forced
    passes").
    `forward`: the callable that runs the model (default `model`; e.g. `torch.compile(model)`)."""
    check_layout(layout)
    forward = model if forward is None else forward
    dev = next(model.parameters()).device
    prompt_ids, prompt_mask, response_ids, response_mask = (
        x.to(dev) for x in (prompt_ids, prompt_mask, response_ids, response_mask))
    if layout == "joined":
        ids, starts = joined_batch(prompt_ids, prompt_mask, response_ids, model.config.pad_token_id or 0)
        out = forward(input_ids=ids, use_cache=False)
        # the logits that predict response token j of row i sit at column starts[i] - 1 + j
        cols = starts[:, None] - 1 + torch.arange(response_ids.shape[1], device=dev)[None, :]
        logits = out.logits.gather(1, cols[..., None].expand(-1, -1, out.logits.shape[-1]))
    else:
        ids = torch.cat([prompt_ids, response_ids], dim=1)
        mask = torch.cat([prompt_mask, response_mask], dim=1)
        # padding after eos must not shift positions of real tokens; it is masked out of attention anyway
        # logits at every position, though only the last T + 1 (less the very last) are read: asking the model
        # for those alone (`logits_to_keep`) saves ~1% and changes float rounding, which moved the cached warm
        # start's greedy accuracy from 33% to 23% (SFT amplifies last-bit differences); kept as it is for
        # reproducibility
        out = forward(input_ids=ids, attention_mask=mask.long(), position_ids=positions(mask), use_cache=False)
        p = prompt_ids.shape[1]
        logits = out.logits[:, p - 1 : -1, :]
    logits = logits.float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, response_ids[..., None]).squeeze(-1)
    if not with_entropy:
        return logp
    return logp, -(logp_all.exp() * logp_all).sum(-1)
