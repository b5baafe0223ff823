"""Batched sampling with a KV cache, and the matching teacher-forced forward pass.

The lab's models are tiny and CPU-bound, so the loop is written out (no `generate`): one forward over the
left-padded prompts, then one token per step through `past_key_values`. For every sampled token it returns the
behaviour log-probability log pi(a_t | s_t) and the entropy H_t = -sum_v p_v log p_v of the distribution it was
drawn from (at temperature 1 these are the model's own; with temperature tau the logits are divided by tau).

`sequence_logprobs` recomputes the same quantities in one teacher-forced pass (for the policy loss); both use the
same position ids (cumulative count of real tokens), so they agree up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


@torch.no_grad()
def sample(model, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int,
           generator: torch.Generator | None = None, temperature: float = 1.0, greedy: bool = False) -> Samples:
    """Sample one response per prompt (repeat a prompt G times for a group).

    Rows that have emitted eos are dropped from the batch and from the KV cache at once, so later decode steps
    only pay for the responses still running (responses differ a lot in length); the loop ends when none is.
    """
    model.eval()
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)
    bsz = prompt_ids.shape[0]
    attn = prompt_mask.long()
    pos = positions(prompt_mask)
    out = model(input_ids=prompt_ids, attention_mask=attn, position_ids=pos, use_cache=True)
    past = out.past_key_values
    logits = out.logits[:, -1, :].float()
    next_pos = pos[:, -1] + 1

    response_ids = torch.full((bsz, max_new_tokens), pad_id, dtype=torch.long)
    response_mask = torch.zeros((bsz, max_new_tokens), dtype=torch.bool)
    logprobs = torch.zeros((bsz, max_new_tokens))
    entropies = torch.zeros((bsz, max_new_tokens))
    rows = torch.arange(bsz)  # original index of every row still running
    length = 0
    for t in range(max_new_tokens):
        logp_all = torch.log_softmax(logits / temperature, dim=-1)
        if greedy:
            tok = logp_all.argmax(-1)
        else:
            tok = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
        response_ids[rows, t] = tok
        response_mask[rows, t] = True
        logprobs[rows, t] = logp_all.gather(-1, tok[:, None]).squeeze(-1)
        entropies[rows, t] = -(logp_all.exp() * logp_all).sum(-1)
        length = t + 1
        running = tok != eos_id
        if not running.any():
            break
        if t + 1 == max_new_tokens:
            break
        if not running.all():  # drop finished rows from the batch and the cache
            keep = running.nonzero().squeeze(-1)
            rows, tok, attn, next_pos = rows[keep], tok[keep], attn[keep], next_pos[keep]
            past.reorder_cache(keep)
        attn = torch.cat([attn, torch.ones((attn.shape[0], 1), dtype=attn.dtype)], dim=1)
        out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos[:, None],
                    past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1, :].float()
        next_pos = next_pos + 1

    truncated = torch.zeros(bsz, dtype=torch.bool)
    last = response_ids[:, length - 1]
    truncated = response_mask[:, length - 1] & (last != eos_id) & (length == max_new_tokens)
    return Samples(prompt_ids=prompt_ids, prompt_mask=prompt_mask, response_ids=response_ids[:, :length],
                   response_mask=response_mask[:, :length], logprobs=logprobs[:, :length],
                   entropies=entropies[:, :length], truncated=truncated)


def sequence_logprobs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                      response_mask: torch.Tensor, temperature: float = 1.0, with_entropy: bool = False):
    """Teacher-forced log pi(response_t | prompt, response_<t) for every response position: [B, T]
    (and the entropies [B, T] when asked). Padding positions hold garbage values; mask them."""
    ids = torch.cat([prompt_ids, response_ids], dim=1)
    mask = torch.cat([prompt_mask, response_mask], dim=1)
    # padding after eos must not shift positions of real tokens; it is masked out of attention anyway
    out = model(input_ids=ids, attention_mask=mask.long(), position_ids=positions(mask), use_cache=False)
    p = prompt_ids.shape[1]
    logits = out.logits[:, p - 1 : -1, :].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, response_ids[..., None]).squeeze(-1)
    if not with_entropy:
        return logp
    return logp, -(logp_all.exp() * logp_all).sum(-1)
