"""Continuing a response from a prefix: the one sampling interface of `hicra anchors` and `hicra graphs`.

A `Policy` takes (prompt text, prefix text) pairs and a seed and returns one sampled continuation text per pair;
the full response is `prefix + continuation`. `HFPolicy` serves any Hugging Face causal LM through the lab's
KV-cache sampler (`hicra.lab.sampling.sample`); the planted tests use scripted policies with the same method.

A policy may also sample in two stages (`TwoStagePolicy`, optional): `continue_first_lines` samples each
continuation only up to the end of its first non-blank line and returns that text with a handle, and
`continue_rest` samples the rest of the continuations whose handles it is given. First line + rest is one
continuation, drawn from the same distribution as `continue_texts` draws it (only the random draws differ).
`hicra anchors` uses it, when offered, for tries that only need their first sentence; a policy without it gets
full continuations for every try.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Policy(Protocol):
    def continue_texts(self, contexts: list[tuple[str, str]], seed: int) -> list[str]:
        """One continuation per (prompt, prefix) pair, deterministic given `seed` and the list."""


class TwoStagePolicy(Policy, Protocol):
    def continue_first_lines(self, contexts: list[tuple[str, str]], seed: int) -> list[tuple[str, Any]]:
        """Per (prompt, prefix) pair: (text, handle). `text` is the start of a sampled continuation that holds at
        least its first non-blank line and the newline ending it (it may run on to the end of the token that
        holds the newline); `handle` is None when the continuation ended there (end of text or budget), else
        what `continue_rest` takes to sample the rest. Deterministic given `seed` and the list."""

    def continue_rest(self, handles: list[Any], seed: int) -> list[str]:
        """The rest of each continuation (`text + rest` is the whole continuation), deterministic given `seed`."""


def two_stage(policy) -> bool:
    """True when `policy` offers `continue_first_lines` and `continue_rest`."""
    return callable(getattr(policy, "continue_first_lines", None)) and callable(getattr(policy, "continue_rest",
                                                                                       None))


@dataclass(frozen=True)
class Resume:
    """`HFPolicy`'s handle: the token ids the model has seen (prompt, prefix, first line as sampled) and how many
    tokens the response may still take."""

    ids: tuple[int, ...]
    budget: int


class HFPolicy:
    """A causal LM and its tokenizer as a `Policy` (and a `TwoStagePolicy`).

    The model sees `encode(prompt) + encode(prefix, no special tokens)` (the lab encodes prompt and response
    apart the same way in training). Every response keeps the budget of `max_new_tokens` tokens in all, prefix
    included: a continuation is cut at `max_new_tokens - len(prefix tokens)` tokens (sampling a row further never
    changes its earlier tokens, so cutting afterwards is the same as stopping there). Contexts are sorted by length
    and sampled in chunks of `batch_size` from one generator seeded with `seed`. `share_prompts` (`hicra anchors`
    sets it): the prompt forward runs once per distinct (prompt, prefix) of a chunk, its cache copied to every
    continuation drawn from it (`hicra.lab.sampling.sample`), instead of once per continuation.

    Two stages: `continue_first_lines` stops each row at the first sampled token whose text holds a newline
    (`newline_ids`: every vocabulary entry that decodes to text containing "\\n"; a byte-level BPE merges newlines
    with spaces or punctuation, e.g. ".\\n" or "\\n\\n", and all of them count) once some non-blank text precedes
    that newline; a row that has only produced blank lines is sampled on. `continue_rest` then continues from the
    very token ids sampled so far (no re-encoding of the text), with the budget left, so first line + rest is the
    one continuation `continue_texts` would sample, paused at the line end. Without any newline token in the
    vocabulary `continue_first_lines` samples whole continuations.
    """

    def __init__(self, model, tokenizer, max_new_tokens: int, temperature: float = 1.0, batch_size: int = 256,
                 share_prompts: bool = False):
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.batch_size = max_new_tokens, temperature, batch_size
        self.share_prompts = share_prompts
        self.line_chunk = 48  # tokens per sampler call while looking for a first line's end
        self._prompt_ids: dict[str, list[int]] = {}
        self._newline_ids: list[int] | None = None
        self.tokens_sampled = 0  # running count, for cost reports

    def encode_prompt(self, prompt: str) -> list[int]:
        if prompt not in self._prompt_ids:
            self._prompt_ids[prompt] = list(self.tokenizer(prompt)["input_ids"])
        return self._prompt_ids[prompt]

    def encode_prefix(self, prefixes: list[str]) -> list[list[int]]:
        nonempty = [p for p in prefixes if p]
        enc = iter(self.tokenizer(nonempty, add_special_tokens=False)["input_ids"] if nonempty else [])
        return [list(next(enc)) if p else [] for p in prefixes]

    def newline_ids(self) -> list[int]:
        """Ids of the vocabulary entries whose decoded text contains a newline (special tokens left out)."""
        if self._newline_ids is None:
            special = set(self.tokenizer.all_special_ids)
            vocab = sorted(set(self.tokenizer.get_vocab().values()) - special)
            texts = self.tokenizer.batch_decode([[i] for i in vocab], skip_special_tokens=True)
            self._newline_ids = [i for i, t in zip(vocab, texts, strict=True) if "\n" in t]
        return self._newline_ids

    def _eos_pad(self) -> tuple[int, int]:
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        return eos, eos if pad is None else pad

    def _sample(self, inputs: list[list[int]], budgets: list[int], gen, stop_ids=None) -> list[list[int] | None]:
        """Sampled ids per input (cut at its budget; None where the budget is spent), sorted by length and in
        chunks of `batch_size`, all from `gen`."""
        from hicra.lab.sampling import sample

        order = sorted(range(len(inputs)), key=lambda i: (len(inputs[i]), i))
        out: list[list[int] | None] = [None] * len(inputs)
        eos, pad = self._eos_pad()
        for c in range(0, len(order), self.batch_size):
            rows = [i for i in order[c:c + self.batch_size] if budgets[i] > 0]
            if not rows:
                continue
            s = sample(self.model, [inputs[i] for i in rows], max(budgets[i] for i in rows), eos, pad,
                       generator=gen, temperature=self.temperature, stop_ids=stop_ids,
                       share_prompts=self.share_prompts)
            for i, ids in zip(rows, s.response_lists(), strict=True):
                out[i] = ids[:budgets[i]]
                self.tokens_sampled += len(out[i])
        return out

    def _contexts(self, contexts: list[tuple[str, str]]) -> tuple[list[list[int]], list[int]]:
        prefix_ids = self.encode_prefix([prefix for _, prefix in contexts])
        inputs = [self.encode_prompt(prompt) + ids for (prompt, _), ids in zip(contexts, prefix_ids, strict=True)]
        return inputs, [self.max_new_tokens - len(ids) for ids in prefix_ids]

    def _decode(self, ids: list[int] | None) -> str:
        return "" if not ids else self.tokenizer.decode(ids, skip_special_tokens=True)

    def continue_texts(self, contexts: list[tuple[str, str]], seed: int) -> list[str]:
        import torch

        if not contexts:
            return []
        inputs, budgets = self._contexts(contexts)
        gen = torch.Generator().manual_seed(int(seed))
        return [self._decode(ids) for ids in self._sample(inputs, budgets, gen)]

    def continue_first_lines(self, contexts: list[tuple[str, str]], seed: int) -> list[tuple[str, Resume | None]]:
        import torch

        if not contexts:
            return []
        stops = self.newline_ids()
        if not stops:
            return [(text, None) for text in self.continue_texts(contexts, seed)]
        inputs, budgets = self._contexts(contexts)
        gen = torch.Generator().manual_seed(int(seed))
        eos, newline = self._eos_pad()[0], set(stops)
        got: list[list[int]] = [[] for _ in contexts]
        open_rows = [i for i in range(len(contexts)) if budgets[i] > 0]
        result: list[tuple[str, Resume | None]] = [("", None)] * len(contexts)
        while open_rows:
            # sampled in pieces of at most `line_chunk` tokens: a line is short, and the sampler's cache is sized
            # by the longest budget it is given; a row that has not finished its first line is sampled on
            drawn = self._sample([inputs[i] + got[i] for i in open_rows],
                                 [min(self.line_chunk, budgets[i] - len(got[i])) for i in open_rows], gen, stops)
            still = []
            for i, ids in zip(open_rows, drawn, strict=True):
                got[i] += ids or []
                if not ids or ids[-1] == eos or len(got[i]) >= budgets[i]:  # the continuation ended here
                    result[i] = (self._decode(got[i]), None)
                    continue
                text = self._decode(got[i])
                if ids[-1] in newline and text[:text.rfind("\n")].strip():  # a line ended by the newline sampled
                    result[i] = (text, Resume(tuple(inputs[i] + got[i]), budgets[i] - len(got[i])))
                else:  # only blank lines so far, or a long line: the first line is still to come
                    still.append(i)
            open_rows = still
        return result

    def continue_rest(self, handles: list[Resume], seed: int) -> list[str]:
        import torch

        if not handles:
            return []
        drawn = self._sample([list(h.ids) for h in handles], [h.budget for h in handles],
                             torch.Generator().manual_seed(int(seed)))
        return [self._decode(ids) for ids in drawn]
