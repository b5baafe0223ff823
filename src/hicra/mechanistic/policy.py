"""Continuing a response from a prefix: the one sampling interface of `hicra anchors` and `hicra graphs`.

A `Policy` takes (prompt text, prefix text) pairs and a seed and returns one sampled continuation text per pair;
the full response is `prefix + continuation`. `HFPolicy` serves any Hugging Face causal LM through the lab's
KV-cache sampler (`hicra.lab.sampling.sample`); the planted tests use scripted policies with the same method.
"""

from __future__ import annotations

from typing import Protocol


class Policy(Protocol):
    def continue_texts(self, contexts: list[tuple[str, str]], seed: int) -> list[str]:
        """One continuation per (prompt, prefix) pair, deterministic given `seed` and the list."""


class HFPolicy:
    """A causal LM and its tokenizer as a `Policy`.

    The model sees `encode(prompt) + encode(prefix, no special tokens)` (the lab encodes prompt and response
    apart the same way in training). Every response keeps the budget of `max_new_tokens` tokens in all, prefix
    included: a continuation is cut at `max_new_tokens - len(prefix tokens)` tokens (sampling a row further never
    changes its earlier tokens, so cutting afterwards is the same as stopping there). Contexts are sorted by length
    and sampled in chunks of `batch_size` from one generator seeded with `seed`.
    """

    def __init__(self, model, tokenizer, max_new_tokens: int, temperature: float = 1.0, batch_size: int = 256):
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.batch_size = max_new_tokens, temperature, batch_size
        self._prompt_ids: dict[str, list[int]] = {}
        self.tokens_sampled = 0  # running count, for cost reports

    def encode_prompt(self, prompt: str) -> list[int]:
        if prompt not in self._prompt_ids:
            self._prompt_ids[prompt] = list(self.tokenizer(prompt)["input_ids"])
        return self._prompt_ids[prompt]

    def encode_prefix(self, prefixes: list[str]) -> list[list[int]]:
        nonempty = [p for p in prefixes if p]
        enc = iter(self.tokenizer(nonempty, add_special_tokens=False)["input_ids"] if nonempty else [])
        return [list(next(enc)) if p else [] for p in prefixes]

    def continue_texts(self, contexts: list[tuple[str, str]], seed: int) -> list[str]:
        import torch

        from hicra.lab.sampling import sample

        if not contexts:
            return []
        prefix_ids = self.encode_prefix([prefix for _, prefix in contexts])
        inputs = [self.encode_prompt(prompt) + ids for (prompt, _), ids in zip(contexts, prefix_ids, strict=True)]
        budgets = [self.max_new_tokens - len(ids) for ids in prefix_ids]
        order = sorted(range(len(inputs)), key=lambda i: (len(inputs[i]), i))
        out = [""] * len(inputs)
        gen = torch.Generator().manual_seed(int(seed))
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        pad = eos if pad is None else pad
        for c in range(0, len(order), self.batch_size):
            rows = [i for i in order[c:c + self.batch_size] if budgets[i] > 0]
            if not rows:
                continue
            s = sample(self.model, [inputs[i] for i in rows], max(budgets[i] for i in rows), eos, pad,
                       generator=gen, temperature=self.temperature)
            for i, ids in zip(rows, s.response_lists(), strict=True):
                ids = ids[:budgets[i]]
                self.tokens_sampled += len(ids)
                out[i] = self.tokenizer.decode(ids, skip_special_tokens=True)
        return out
