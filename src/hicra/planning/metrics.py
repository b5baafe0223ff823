"""Planning-token metrics: semantic entropy, procedural conditional entropy, fork-token overlap.

All entropies are in nats (natural log). Pure numpy; torch tensors are accepted and converted.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

# A tokenizer-free word proxy: runs of word characters, or single punctuation marks. Used wherever words are
# counted without a real tokenizer (procedural n-grams, `grams tag --summary`, the responses converter).
WORD_PROXY = re.compile(r"\w+|[^\w\s]")


def entropy(counts: Iterable[float]) -> float:
    """Shannon entropy H = -sum_i p_i ln p_i with p_i = c_i / sum(c), over the positive counts.

    No counts (or all zero) gives 0.0. Negative counts raise ValueError.
    """
    c = np.asarray(list(counts), dtype=np.float64)
    if c.size and c.min() < 0:
        raise ValueError("counts must be non-negative")
    c = c[c > 0]
    total = c.sum()
    if total <= 0:
        return 0.0
    p = c / total
    return float(-(p * np.log(p)).sum())


def semantic_entropy(counts: Mapping[Any, float] | Iterable[float] | Iterable[str],
                     clusters: Mapping[Any, Any] | None = None) -> float:
    """Entropy (nats) of the frequency distribution of strategic grams.

    `counts`: a mapping phrase -> count, a sequence of counts, or a sequence of phrase occurrences (strings,
    counted here). Phrase level by default. Cluster level: pass `clusters` (phrase -> cluster id); counts of
    the phrases of one cluster are summed first (a phrase missing from `clusters` is its own cluster).
    """
    if not isinstance(counts, Mapping):
        items = list(counts)
        if items and all(isinstance(x, str) for x in items):
            counts = Counter(items)
        elif clusters is None:
            return entropy(items)
        else:
            raise ValueError("cluster-level entropy needs phrase -> count (a mapping or phrase occurrences)")
    if clusters is not None:
        merged: Counter = Counter()
        for phrase, c in counts.items():
            merged[clusters.get(phrase, ("phrase", phrase))] += c
        counts = merged
    return entropy(counts.values())


def phrase_counts(texts: Iterable[str], tagger) -> Counter:
    """phrase -> number of occurrences over `texts` (what `semantic_entropy` takes)."""
    out: Counter = Counter()
    for text in texts:
        out.update(span.phrase for span in tagger.spans(text))
    return out


def conditional_entropy(pairs: Iterable[tuple[Any, Any]]) -> float:
    """H(Y | X) = sum_x p(x) H(Y | X = x) = H(X, Y) - H(X), nats, from observed (x, y) pairs."""
    joint = Counter(pairs)
    if not joint:
        return 0.0
    marginal: Counter = Counter()
    for (x, _), c in joint.items():
        marginal[x] += c
    return entropy(joint.values()) - entropy(marginal.values())


def following_ngrams(text: str, spans, n: int = 3) -> list[tuple[str, str]]:
    """(strategic gram, the n words that follow it) for each occurrence in `text`.

    Words are `\\w+` runs and single punctuation marks, lower-cased; an occurrence followed by fewer than n
    words uses the words there are, and one at the very end of the text is skipped.
    """
    out = []
    for span in spans:
        words = []
        for m in WORD_PROXY.finditer(text, span.end):
            words.append(m.group().lower())
            if len(words) == n:
                break
        if words:
            out.append((span.phrase, " ".join(words)))
    return out


def procedural_conditional_entropy(texts: Iterable[str], tagger, n: int = 3) -> float:
    """Conditional entropy (nats) of the procedural n-gram that follows a strategic gram, given that gram.

    H(next n-gram | SG) over all SG occurrences in `texts` (see `following_ngrams`): low when each strategic
    gram is followed by a fixed routine, high when what follows varies.
    """
    pairs = []
    for text in texts:
        pairs.extend(following_ngrams(text, tagger.spans(text), n=n))
    return conditional_entropy(pairs)


def _flat(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; numpy has no bfloat16
        x = x.detach().cpu()
        x = (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
    if isinstance(x, (list, tuple)) and x and not np.isscalar(x[0]):
        return np.concatenate([_flat(v) for v in x]) if len(x) else np.zeros(0)
    return np.asarray(x).reshape(-1)


def top_quantile_mask(values: np.ndarray, quantile: float) -> np.ndarray:
    """bool mask of the k = ceil(quantile * N) largest values (ties: the earlier position wins; NaN ranks last).
    A measurement's rounding (at least quantile * N tokens); the training mask `hicra.algorithms.high_entropy_mask`
    takes round(quantile * N), e.g. 2 of 12 tokens at 0.2 where this takes 3.

    O(N) with `argpartition` (the analyzer calls it on every step's tokens); a full stable sort only when some
    value is NaN."""
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    values = np.asarray(values)
    n = values.size
    k = math.ceil(quantile * n - 1e-9)
    mask = np.zeros(n, dtype=bool)
    if k >= n:
        mask[:] = True
    elif k > 0 and np.isnan(values).any():
        mask[np.argsort(-values, kind="stable")[:k]] = True
    elif k > 0:
        threshold = values[np.argpartition(values, n - k)[n - k]]  # the k-th largest value
        mask = values > threshold
        ties = np.flatnonzero(values == threshold)
        mask[ties[: k - int(mask.sum())]] = True  # the earliest tied positions fill the remaining places
    return mask


def fork_token_overlap(entropies, planning_mask, quantile: float = 0.3, response_mask=None,
                       high_entropy_mask=None) -> dict[str, float]:
    """How planning tokens and high-entropy ("fork") tokens overlap.

    Over the valid tokens (`response_mask`, default all), H = the top `quantile` share by entropy
    (`top_quantile_mask`, or a given `high_entropy_mask`), P = planning tokens. Returns
      planning_share_of_high_entropy = |P & H| / |H|   (the paper: 5-9% at q = 0.3)
      high_entropy_share_of_planning = |P & H| / |P|   (the paper: 36-81%)
    and the counts; a share with an empty denominator is NaN. Inputs: arrays / tensors of any shape, or
    lists of per-response arrays (flattened in the same order).
    """
    ent = _flat(entropies).astype(np.float64)
    plan = _flat(planning_mask).astype(bool)
    valid = np.ones(len(ent), dtype=bool) if response_mask is None else _flat(response_mask).astype(bool)
    if not (len(ent) == len(plan) == len(valid)):
        raise ValueError(f"shape mismatch: {len(ent)} entropies, {len(plan)} planning, {len(valid)} valid")
    if high_entropy_mask is None:
        high = np.zeros(len(ent), dtype=bool)
        high[valid] = top_quantile_mask(ent[valid], quantile)
    else:
        high = _flat(high_entropy_mask).astype(bool) & valid
    plan = plan & valid
    both = int((plan & high).sum())
    n_high, n_plan = int(high.sum()), int(plan.sum())
    return {
        "planning_share_of_high_entropy": both / n_high if n_high else float("nan"),
        "high_entropy_share_of_planning": both / n_plan if n_plan else float("nan"),
        "n_high_entropy": n_high, "n_planning": n_plan, "n_both": both, "n_tokens": int(valid.sum()),
    }
