"""Per-step training-dynamics metrics from a run directory's rollout records.

One row per step (DESIGN.md "Metrics row"), computed over that step's rollouts, one step in memory at a time, with
numpy/pyarrow over flattened token arrays (no per-token Python loops):

- ``accuracy`` = mean(correct); ``pass_at_k`` = mean over prompts of the unbiased estimator
  1 - C(n-c, k) / C(n, k) with k = the step's group size (the most common number of samples per prompt; prompts
  with fewer samples are left out), plus ``pass_at_{k}`` for every extra k asked for; ``mean_length`` in tokens.
- ``entropy_all/planning/execution``: mean next-token entropy over all / planning / execution tokens of the step
  (token-weighted, i.e. pooled over responses).
- ``ppl_c = exp(mean_{t in c} -logprob_t)`` per class c (behaviour-policy log-probabilities at sampling), and
  ``rel_ppl_c = ppl_c(step) / ppl_c(first step)``. ``ppl_execution_rw`` / ``rel_ppl_execution_rw``: execution's
  perplexity with each response counted once (the mean over responses of their mean negative log-likelihood),
  which a shift in the mix of response lengths does not move (`response_weighted_perplexity`; since session 55,
  a diagnostic beside the verdict's consolidation test).
- ``semantic_entropy``: Shannon entropy (nats) of the frequency distribution of strategic-gram phrases found in
  the step's responses; ``semantic_entropy_cluster`` the same over the phrases' lexicon categories.
  ``procedural_cond_entropy``: entropy of the procedural continuation following a strategic gram, conditional on
  the gram (`hicra.planning.metrics`).
- ``planning_ratio`` = planning tokens / tokens.
- Fork-token overlap for each top-q (default 0.2 and 0.3): the step's ceil(q*T) highest-entropy tokens are the
  "high-entropy" tokens; ``high_entropy_planning_share_qXX`` = share of them that are planning tokens,
  ``planning_high_entropy_share_qXX`` = share of planning tokens that are high-entropy. The unsuffixed DESIGN
  columns hold the first q.
- ``ppl_reference`` / ``rel_ppl_reference``: the same for a reference class of random non-planning response
  tokens, as many per step as the step has planning tokens, drawn with a fixed seed (`reference_token_sample`):
  the phase verdict asks whether planning settles later than any class of its size, not only later than execution.
  Since phase verdict v3 (2026-12-04) the draw leaves planning tokens out; before, it drew from all response
  tokens, so a reference holding a share of planning tokens inherited planning's late fall (docs/dynamics.md).
- ``strategy_entropy``: Shannon entropy (nats) of the strategy labels of the step's responses (optional rollout
  column `strategy`, labels joined by "+"; a response with k labels gives each 1/k, so every response weighs the
  same; null labels are left out and counted in ``strategy_unparsed_share``); null when no response has a label.
- ``strategy_information`` = H(strategy) - H(strategy | prompt) (nats, Miller-Madow-corrected entropies; the
  corrected within-prompt term is ``strategy_entropy_within``): how much the choice of strategy depends on the
  problem, from each prompt's group of responses (`strategy_information`), each response counted once under its
  whole label, parts sorted (`joint_strategy_counts`). A rise of ``strategy_entropy`` can be
  the same mix drawn for every problem (information flat) or a policy that learned to choose by problem
  (information up).
- ``semantic_entropy_excl_format``: semantic entropy without **format phrases**: phrases present in at least
  FORMAT_PHRASE_SHARE = 90% of the run's responses, or of every step's from the first step where it reaches 90%
  to the last (since session 29: a format phrase learned during training is in every response from some step on;
  `format_phrases`). One exclusion set per run, so every step is measured over the same phrases (a per-step set
  would let a phrase drop in and out of the measure as it crosses the threshold and move the entropy for that
  reason alone); a phrase nearly every answer contains
  ("so the answer is") says nothing about which strategy was taken, yet as the most frequent phrase it would
  dominate the entropy. The set is in `summary.json["format_phrases"]`.
- Per-step 95% intervals ``accuracy_low/high``, ``semantic_entropy_low/high``, ``strategy_entropy_low/high``,
  ``strategy_information_low/high``, ``semantic_entropy_excl_format_low/high``: bootstrap over the step's prompts (all responses of a drawn prompt
  together; STEP_BOOT = 200 resamples, seeded by the step); percentile interval for accuracy, basic interval
  for the entropies (their plug-in value is biased downwards in a resample).
- ``n_errors_execution/planning/format``: counts of failed responses by `error_type`, and
  ``errors_<type>_share`` = count / n_responses; null for the whole run when no response of the run carries an
  error type (names: `hicra.dynamics.vocab`).

Planning masks come from the records; rows without one are re-tagged with a `PlanningTagger` (lexicon + tokenizer)
when a tokenizer is available, else the token-level planning columns are null for those rows. Metrics that need
log-probabilities or entropies are null when the records do not carry them (converted foreign logs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hicra.dynamics.phases import entropy_rows as _entropy_rows
from hicra.dynamics.vocab import ERROR_TYPES
from hicra.errors import InputError
from hicra.stats import basic_interval, pass_at_k  # pass_at_k: re-exported here (DESIGN: hicra.pass_at_k)

__all__ = ["pass_at_k", "mean_pass_at_k", "relative_perplexity", "perplexity", "step_metrics", "compute_metrics",
           "write_metrics", "METRIC_COLUMNS", "DEFAULT_QUANTILES", "reference_token_sample", "StepCounts",
           "outcome_groups"]

DEFAULT_QUANTILES = (0.2, 0.3)
# the DESIGN.md columns, in order; extra columns (per-q fork overlap, extra k, counts) follow them
METRIC_COLUMNS = (
    "step", "n_responses", "accuracy", "pass_at_k", "mean_length", "entropy_all", "entropy_planning",
    "entropy_execution", "ppl_planning", "ppl_execution", "rel_ppl_planning", "rel_ppl_execution",
    "semantic_entropy", "procedural_cond_entropy", "planning_ratio", "high_entropy_planning_share",
    "planning_high_entropy_share", "n_errors_execution", "n_errors_planning", "n_errors_format",
    "errors_execution_share", "errors_planning_share", "errors_format_share", "ppl_reference", "rel_ppl_reference",
    "strategy_entropy", "semantic_entropy_excl_format",
)
READ_COLUMNS = ("step", "prompt_id", "sample_idx", "response", "token_ids", "logprobs", "entropies",
                "planning_mask", "reward", "correct", "truncated", "error_type", "strategy")
REFERENCE_SEED = 20250903  # seed of the reference-token draw (combined with the step)
# which tokens the reference class is drawn from: "non-planning" since phase verdict rules v3 (2026-12-04), "all"
# response tokens before; recorded wherever reference values are kept (the online detector's state)
REFERENCE_DRAW = "non-planning"
FORMAT_PHRASE_SHARE = 0.9  # a phrase in at least this share of a run's responses is a format phrase
STEP_BOOT = 200            # bootstrap resamples for the per-step intervals


# ---------------------------------------------------------------- estimators

def mean_pass_at_k(n: Sequence[int], c: Sequence[int], k: int) -> float:
    """Mean over problems of the unbiased pass@k, `pass_at_k(n_i, c_i, k)` = 1 - C(n_i - c_i, k) / C(n_i, k).

    One estimator serves evaluation and dynamics: each distinct (n, c) pair is computed once with exact binomials
    (a step has few distinct pairs, so this is faster than a vectorised product). Needs k <= n for every problem.
    """
    n = np.asarray(n, dtype=np.int64).reshape(-1)
    c = np.asarray(c, dtype=np.int64).reshape(-1)
    if n.size == 0:
        raise ValueError("no problems")
    if n.shape != c.shape:
        raise ValueError(f"n and c differ in length ({n.size} vs {c.size})")
    pairs, counts = np.unique(np.stack([n, c], axis=1), axis=0, return_counts=True)
    values = np.array([pass_at_k(int(ni), int(ci), k) for ni, ci in pairs])
    return float(values @ counts / n.size)


def response_weighted_perplexity(logprobs: np.ndarray, selected: np.ndarray, lengths: np.ndarray) -> float | None:
    """exp(mean over responses of each response's mean negative log-likelihood over its `selected` tokens).

    `logprobs`, `selected`: flat over the step's tokens, responses one after another; `lengths`: tokens per
    response. Responses without a selected token are left out; None when no response has one. Unlike the pooled
    ``ppl_c`` (token-weighted), a change in the mix of response lengths does not move it when each response's own
    tokens stay as likely."""
    owner = np.repeat(np.arange(lengths.size), lengths)[selected]
    counts = np.bincount(owner, minlength=lengths.size)
    if not counts.any():
        return None
    sums = np.bincount(owner, weights=-np.asarray(logprobs, np.float64)[selected], minlength=lengths.size)
    has = counts > 0
    return float(np.exp((sums[has] / counts[has]).mean()))


def perplexity(logprobs: np.ndarray) -> float:
    """exp(mean negative log-likelihood) of a set of tokens; NaN for an empty set."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    return float(np.exp(-logprobs.mean())) if logprobs.size else math.nan


def relative_perplexity(ppl: Sequence[float], reference: float | None = None) -> np.ndarray:
    """ppl / reference, where reference defaults to the first finite value (the run's first step)."""
    ppl = np.asarray(ppl, dtype=np.float64)
    if reference is None:
        finite = ppl[np.isfinite(ppl)]
        reference = finite[0] if finite.size else math.nan
    return ppl / reference


def reference_token_sample(n_tokens: int, n_planning: int, step: int) -> np.ndarray:
    """Indices of the reference class: `n_planning` of a step's `n_tokens` non-planning response tokens (flattened
    in row order, tokens with a known log-probability only; all of them when there are fewer), drawn uniformly
    without replacement by a generator seeded with (REFERENCE_SEED, step). The analyzer and the online detector
    call this one function on the same tokens, so both measure the same reference class."""
    rng = np.random.default_rng([REFERENCE_SEED, int(step)])
    return np.sort(rng.choice(int(n_tokens), size=min(int(n_planning), int(n_tokens)), replace=False))


def _prompt_weights(n_prompts: int, step: int, salt: int) -> np.ndarray:
    """(STEP_BOOT, n_prompts) multiplicities of a bootstrap over prompts, seeded by the step."""
    rng = np.random.default_rng([REFERENCE_SEED, int(step), salt])
    flat = rng.integers(0, n_prompts, (STEP_BOOT, n_prompts)) + n_prompts * np.arange(STEP_BOOT)[:, None]
    return np.bincount(flat.ravel(), minlength=STEP_BOOT * n_prompts).reshape(STEP_BOOT, n_prompts).astype(float)


def _interval(values: np.ndarray, point: float | None = None,
              floor: float | None = 0.0) -> tuple[float | None, float | None]:
    """95% bootstrap interval of resampled values: percentile, or with `point` the basic interval
    (2 point - q97.5, 2 point - q2.5; `hicra.stats.basic_interval`), used for entropies, whose plug-in estimate is biased downwards in a resample
    (duplicated prompts concentrate the counts), so their percentile interval sits below the point value. The basic
    interval's lower end is cut at `floor` (0 for an entropy; None for a signed quantity such as the
    Miller-Madow-corrected information, which is centred on 0 when there is nothing to find)."""
    if point is not None:
        return basic_interval(values, point, level=0.95, floor=floor)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    lo, hi = np.quantile(values, [0.025, 0.975])
    return float(lo), float(hi)


def _label_parts(labels: Sequence[str | None]) -> list[list[str]]:
    """Each response's strategy labels: its `strategy` value split on "+", stripped; [] for null or empty."""
    return [[x.strip() for x in str(v).split("+") if x.strip()] if v is not None else [] for v in labels]


def _count_matrix(rows: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """(names, (n_rows, n_names) weights): each row's k names get 1/k each; an empty row is all zeros."""
    names = sorted({x for parts in rows for x in parts})
    pos = {x: i for i, x in enumerate(names)}
    out = np.zeros((len(rows), len(names)))
    for r, parts in enumerate(rows):
        for x in parts:
            out[r, pos[x]] += 1.0 / len(parts)
    return names, out


def strategy_counts(labels: Sequence[str | None]) -> tuple[list[str], np.ndarray]:
    """(label names, (n_responses, n_labels) weights): each response's labels split on "+", 1/k each; a null or
    empty label row is all zeros."""
    return _count_matrix(_label_parts(labels))


def joint_strategy_counts(labels: Sequence[str | None]) -> tuple[list[str], np.ndarray]:
    """(label names, (n_responses, n_labels) one-hot): each response counted once under its whole label, its "+"
    parts sorted (so `split+pairing` and `pairing+split`, which differ only by the order a multi-part prompt lists
    its parts, are one choice); a null or empty label row is all zeros. The counts `strategy_information` needs:
    with `strategy_counts`' 1/k weights a multi-part response would count as k draws."""
    return _count_matrix([["+".join(sorted(parts))] if parts else [] for parts in _label_parts(labels)])


def _miller_madow(counts: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of a count matrix (B, K) with the Miller-Madow correction (m - 1) / 2n, m the
    row's non-zero cells and n its total: the plug-in estimate's first-order bias, which grows as a mix flattens."""
    n = counts.sum(axis=1)
    m = (counts > 0).sum(axis=1)
    return _entropy_rows(counts) + np.divide(m - 1, 2 * n, out=np.zeros_like(n, dtype=float), where=n > 0)


def strategy_information(groups: np.ndarray, weights: np.ndarray | None = None,
                         strata: np.ndarray | None = None) -> dict:
    """How much a step's strategy choice depends on the prompt: ``strategy_information`` = H(strategy) -
    H(strategy | prompt) = H(S) - sum_p (n_p / n) H(S | p), nats, from `groups` (n_prompts, S) label counts per
    prompt (a GRPO group's responses, each counted once: `joint_strategy_counts`), with Miller-Madow-corrected entropies (the uncorrected within-prompt entropy
    of 8 responses is biased low, more so as the mix flattens, which would show as information). 0 for a policy
    that draws the same mix for every prompt (up to noise), H(S) for one that is deterministic per prompt.
    ``strategy_entropy_within`` is the corrected H(S | prompt). With `weights` (B, n_prompts) bootstrap
    multiplicities over prompts, ``strategy_information_low/high`` is its basic 95% interval. With `strata`
    (n_prompts,) ids (e.g. the task family of each prompt, where families have their own strategies) it is the
    conditional I(S; prompt | stratum) = sum_f (n_f / n) [H(S | f) - H(S | prompt, f)]: which family a prompt
    belongs to then adds nothing. Empty dict when no prompt has a label."""
    mass = groups.sum(axis=1)
    if mass.sum() <= 0:
        return {}
    strata = np.zeros(len(groups), dtype=int) if strata is None else np.unique(strata, return_inverse=True)[1]
    onehot = np.eye(strata.max() + 1)[strata]  # (n_prompts, F)
    within = _miller_madow(groups)
    out = {"strategy_entropy_within": float(mass @ within / mass.sum())}
    between = _miller_madow(onehot.T @ groups)  # (F,) entropy of each stratum's pooled labels
    out["strategy_information"] = float((onehot.T @ mass) @ between / mass.sum()) - out["strategy_entropy_within"]
    if weights is not None:
        w_mass = weights * mass  # (B, n_prompts)
        boot_between = np.stack([_miller_madow((weights * onehot[:, f]) @ groups) for f in range(onehot.shape[1])],
                                axis=1)  # (B, F)
        boot = (((w_mass @ onehot) * boot_between).sum(axis=1) - w_mass @ within) / np.maximum(w_mass.sum(axis=1),
                                                                                               1e-12)
        out["strategy_information_low"], out["strategy_information_high"] = _interval(
            boot, out["strategy_information"], floor=None)
    return out


class StepCounts:
    """One step's per-response category counts and outcomes, kept for run-level measures (format-phrase
    exclusion) and the bootstrap over problems: `prompt_ids` (n,), `phrases` + `phrase_counts` (n, P),
    `strategies` + `strategy_counts` (n, S), `correct` (n,) 1.0/0.0 and `lengths` (n,) response tokens (None when
    not kept)."""

    __slots__ = ("step", "prompt_ids", "phrases", "phrase_counts", "strategies", "strategy_counts", "correct",
                 "lengths")

    def __init__(self, step, prompt_ids, phrases, phrase_counts, strategies, strategy_counts, correct=None,
                 lengths=None):
        self.step, self.prompt_ids = step, prompt_ids
        self.phrases, self.phrase_counts = phrases, phrase_counts
        self.strategies, self.strategy_counts = strategies, strategy_counts
        self.correct, self.lengths = correct, lengths


def group_rows(matrix: np.ndarray, inverse: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the rows of `matrix` (n_rows, n_cols) by group: `inverse` (n_rows,) holds each row's group index in
    [0, n_groups); returns (n_groups, n_cols) float counts (e.g. label counts per prompt from per-response rows)."""
    out = np.zeros((n_groups, matrix.shape[1]))
    np.add.at(out, inverse, matrix)
    return out


# ---------------------------------------------------------------- per-step

def _flat_tokens(table: pa.Table, name: str, lengths: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """A per-token column as (values aligned with all tokens of the step, known mask); None if all rows null."""
    if name not in table.column_names:
        return None
    col = table.column(name).combine_chunks()
    row_known = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if not row_known.any():
        return None
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    if row_known.all():
        return flat, np.ones(flat.size, dtype=bool)
    known = np.repeat(row_known, lengths)
    values = np.zeros(known.size, dtype=dtype)
    values[known] = flat
    return values, known


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _fork_overlap(ent: np.ndarray, planning: np.ndarray, q: float) -> tuple[float | None, float | None]:
    """(share of top-q-entropy tokens that are planning, share of planning tokens that are top-q-entropy)."""
    from hicra.planning.metrics import fork_token_overlap, top_quantile_mask

    if ent.size == 0:
        return None, None
    out = fork_token_overlap(ent, planning, q, high_entropy_mask=top_quantile_mask(ent, q))
    return _none_if_nan(out["planning_share_of_high_entropy"]), _none_if_nan(out["high_entropy_share_of_planning"])


def _phrase_statistics(texts: list[str], tagger) -> dict:
    """Semantic entropy (phrase and category level) and procedural conditional entropy of one step's texts."""
    from hicra.planning.metrics import conditional_entropy, following_ngrams, semantic_entropy
    from hicra.planning.tagger import Span

    # one regex pass over the whole step: NUL separates responses (no phrase matches across it)
    joined = "\x00".join(texts)
    bounds = tagger.char_spans(joined).tolist()
    # `tagger.spans` looks every occurrence up in the lexicon; a step has few distinct matched strings, so look
    # each one up once
    lookup: dict[str, object] = {}
    spans = []
    for start, end in bounds:
        matched = joined[start:end]
        phrase = lookup.get(matched)
        if phrase is None:
            phrase = lookup[matched] = tagger.lexicon.get(matched)
        spans.append(Span(start, end, phrase.text, phrase.category))
    phrases: dict[str, int] = {}
    for s in spans:
        phrases[s.phrase] = phrases.get(s.phrase, 0) + 1
    # per-response counts (responses x distinct phrases of the step), for intervals and run-level measures
    names = sorted(phrases)
    col = {p: i for i, p in enumerate(names)}
    starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
    per_response = np.zeros((len(texts), len(names)))
    if spans:
        rows = np.searchsorted(starts, [sp.start for sp in spans], side="right") - 1
        np.add.at(per_response, (rows, [col[sp.phrase] for sp in spans]), 1.0)
    clusters = {p.text: p.category for p in tagger.lexicon.phrases}
    # the words after a gram stop at the end of its own response (the NUL separator), exactly as when each
    # response is passed to `procedural_conditional_entropy` on its own
    pairs = []
    for phrase, following in following_ngrams(joined, spans):
        following = following.split("\x00", 1)[0].strip()
        if following:
            pairs.append((phrase, following))
    return {
        # no gram at all: an empty distribution, entropy 0 (the planning module's convention)
        "semantic_entropy": semantic_entropy(phrases) + 0.0,
        "semantic_entropy_cluster": semantic_entropy(phrases, clusters=clusters) + 0.0,
        "procedural_cond_entropy": conditional_entropy(pairs) + 0.0 if pairs else None,
        "n_strategic_grams": len(spans),
        "n_distinct_strategic_grams": len(phrases),
        "_phrases": names,
        "_phrase_counts": per_response,
    }


def step_metrics(table: pa.Table, *, tagger=None, quantiles: Sequence[float] = DEFAULT_QUANTILES,
                 ks: Sequence[int] = (), load_tokenizer=None, counts_out: list | None = None) -> dict:
    """Metrics of one step's rollouts (a table in `ROLLOUT_SCHEMA`), before the run-level normalisations.

    `load_tokenizer`: called (once) to give `tagger` a tokenizer the first time a row lacks a planning mask, so
    runs that carry their masks never pay for loading one. `counts_out`: a list to which the step's per-response
    phrase and strategy counts (`StepCounts`) are appended."""
    n = table.num_rows
    lengths = pc.list_value_length(table.column("token_ids")).to_numpy(zero_copy_only=False).astype(np.int64)
    correct = np.asarray(table.column("correct").to_numpy(zero_copy_only=False), dtype=bool)
    reward = np.asarray(table.column("reward").to_numpy(zero_copy_only=False), dtype=np.float64)
    row = {"step": int(table.column("step")[0].as_py()), "n_responses": n, "n_tokens": int(lengths.sum()),
           "accuracy": float(correct.mean()), "mean_reward": float(reward.mean()),
           "mean_length": float(lengths.mean())}

    # pass@k over prompt groups
    _, group = np.unique(np.asarray(table.column("prompt_id").to_numpy(zero_copy_only=False), dtype=object)
                         .astype(str), return_inverse=True)
    n_per = np.bincount(group)
    c_per = np.bincount(group, weights=correct).astype(np.int64)
    # a (prompt_id, sample_idx) pair given to more than one response of the step: its prompt was drawn twice and
    # numbered from 0 each time, and both draws are read as one group (noted by `hicra analyze`)
    sample_idx = np.asarray(table.column("sample_idx").to_numpy(zero_copy_only=False), dtype=np.int64)
    row["n_repeated_keys"] = n - int(np.unique(np.stack([group, sample_idx]), axis=1).shape[1])
    group_size = int(np.bincount(n_per).argmax())
    row["group_size"] = group_size
    weights = _prompt_weights(n_per.size, row["step"], 0)
    row["accuracy_low"], row["accuracy_high"] = _interval((weights @ c_per) / (weights @ n_per))
    for k, name in [(group_size, "pass_at_k"), *[(int(k), f"pass_at_{int(k)}") for k in ks]]:
        keep = n_per >= k
        row[name] = mean_pass_at_k(n_per[keep], c_per[keep], k) if keep.any() and k >= 1 else None

    if "truncated" in table.column_names and table.column("truncated").null_count < n:
        row["truncated_share"] = float(pc.mean(table.column("truncated").cast(pa.float64())).as_py())

    # planning masks: from the records, re-tagged where absent and a tokenizer is available
    pm = _flat_tokens(table, "planning_mask", lengths, bool)
    mask_col = table.column("planning_mask").combine_chunks()
    if mask_col.null_count and tagger is not None and tagger.tokenizer is None and load_tokenizer is not None:
        tagger.tokenizer = load_tokenizer()
    recomputed = bool(mask_col.null_count) and tagger is not None and tagger.tokenizer is not None
    if recomputed:
        missing = np.flatnonzero(~np.asarray(mask_col.is_valid().to_numpy(zero_copy_only=False), dtype=bool))
        ids = table.column("token_ids").take(pa.array(missing)).to_pylist()
        new = tagger.token_masks(ids)
        # rebuild the column with the recomputed rows filled in
        masks = mask_col.to_pylist()
        for r, m in zip(missing.tolist(), new, strict=True):
            masks[r] = m.tolist()
        t2 = table.set_column(table.schema.get_field_index("planning_mask"), "planning_mask",
                              pa.array(masks, pa.list_(pa.bool_())))
        pm = _flat_tokens(t2, "planning_mask", lengths, bool)
    # responses left without a planning mask (none recorded, none recomputed): the planning metrics below leave
    # them out, and `hicra analyze` says so in its notes
    row["n_unmasked_responses"] = 0 if recomputed else int(mask_col.null_count)
    lp = _flat_tokens(table, "logprobs", lengths, np.float64)
    ent = _flat_tokens(table, "entropies", lengths, np.float64)

    row["planning_ratio"] = None
    if pm is not None:
        mask, known = pm
        row["planning_ratio"] = _mean(mask[known].astype(np.float64))
        row["n_planning_tokens"] = int(mask[known].sum())
    for name in ("entropy_all", "entropy_planning", "entropy_execution", "ppl_planning", "ppl_execution",
                 "ppl_execution_rw", "ppl_reference"):
        row[name] = None
    if ent is not None:
        e, e_known = ent
        row["entropy_all"] = _mean(e[e_known])
        if pm is not None:
            both = e_known & pm[1]
            row["entropy_planning"] = _mean(e[both & pm[0]])
            row["entropy_execution"] = _mean(e[both & ~pm[0]])
            for q in quantiles:
                he_p, p_he = _fork_overlap(e[both], pm[0][both], q)
                row[f"high_entropy_planning_share_q{round(q * 100):02d}"] = he_p
                row[f"planning_high_entropy_share_q{round(q * 100):02d}"] = p_he
    if lp is not None and pm is not None:
        v, v_known = lp
        both = v_known & pm[1]
        p_lp, e_lp = v[both & pm[0]], v[both & ~pm[0]]
        row["ppl_planning"] = perplexity(p_lp) if p_lp.size else None
        row["ppl_execution"] = perplexity(e_lp) if e_lp.size else None
        # each response counted once: a shift in the mix of response lengths moves the pooled value, not this one
        row["ppl_execution_rw"] = response_weighted_perplexity(v, both & ~pm[0], lengths)
        ref = e_lp[reference_token_sample(e_lp.size, p_lp.size, row["step"])]
        row["ppl_reference"] = perplexity(ref) if ref.size else None
    if lp is not None:
        row["ppl_all"] = perplexity(lp[0][lp[1]])

    # strategic-gram statistics from the response text
    phrases, phrase_counts = [], np.zeros((n, 0))
    if tagger is not None:
        texts = table.column("response").to_pylist()
        stats = _phrase_statistics(texts, tagger)
        phrases, phrase_counts = stats.pop("_phrases"), stats.pop("_phrase_counts")
        row.update(stats)
        g = group_rows(phrase_counts, group, n_per.size)
        row["semantic_entropy_low"], row["semantic_entropy_high"] = _interval(_entropy_rows(weights @ g),
                                                                             row["semantic_entropy"])

    # strategy labels (optional column)
    strategies, s_counts = [], np.zeros((n, 0))
    row["strategy_entropy"] = None
    labelled = None
    if "strategy" in table.column_names and table.column("strategy").null_count < n:
        labels = table.column("strategy").to_pylist()
        strategies, s_counts = strategy_counts(labels)
        labelled = s_counts.sum(axis=1) > 0
        row["strategy_unparsed_share"] = float(1 - labelled.mean())
        row["n_strategies"] = int((s_counts.sum(axis=0) > 0).sum())
    if labelled is not None and labelled.any():  # labels all "" or "+": no label parsed, no measurement (null)
        row["strategy_entropy"] = float(_entropy_rows(s_counts.sum(axis=0, keepdims=True))[0])
        g = group_rows(s_counts, group, n_per.size)
        row["strategy_entropy_low"], row["strategy_entropy_high"] = _interval(_entropy_rows(weights @ g),
                                                                             row["strategy_entropy"])
        _, joint = joint_strategy_counts(labels)
        row.update(strategy_information(group_rows(joint, group, n_per.size), weights))
    if counts_out is not None:
        ids = np.asarray(table.column("prompt_id").to_numpy(zero_copy_only=False), dtype=object).astype(str)
        counts_out.append(StepCounts(row["step"], ids, phrases, phrase_counts, strategies, s_counts,
                                     correct.astype(np.float64), lengths.astype(np.float64)))

    # error types among failed responses: counts and shares (names: hicra.dynamics.vocab)
    from hicra.dynamics.vocab import error_columns

    labels = [t if not ok else None for t, ok in zip(table.column("error_type").to_pylist(), correct, strict=True)]
    row["_error_labels"] = sum(t is not None for t in labels)
    row.update(error_columns(labels))  # a label on a correct response counts nowhere
    return row


# ---------------------------------------------------------------- run level

def compute_metrics(run_dir: str | os.PathLike, *, tagger=None, quantiles: Sequence[float] = DEFAULT_QUANTILES,
                    ks: Sequence[int] = (), skip_invalid: bool = False, skipped: list | None = None,
                    progress: bool = False, load_tokenizer=None, counts_out: list | None = None):
    """Stream a run directory into a pandas DataFrame with one row per step (see the module docstring).

    `counts_out`: a list that receives each step's `StepCounts` (the analyzer keeps them for the bootstrap over
    problems); without it they are still collected for the run-level columns and then dropped."""
    import pandas as pd
    from tqdm import tqdm

    from hicra.dynamics.records import iter_steps, list_rollout_files

    quantiles = tuple(float(q) for q in quantiles)
    for q in quantiles:
        if not 0 < q < 1:
            raise InputError(f"top-q quantile must be in (0, 1), got {q}", field="quantile")
    n_steps = len({step for step, _, _ in list_rollout_files(run_dir)})
    rows = []
    counts = [] if counts_out is None else counts_out
    with tqdm(total=n_steps, desc="analyze", unit="step", disable=None if progress else True) as bar:
        for _step, table in iter_steps(run_dir, columns=READ_COLUMNS, skip_invalid=skip_invalid,
                                       skipped=skipped):
            rows.append(step_metrics(table, tagger=tagger, quantiles=quantiles, ks=ks,
                                     load_tokenizer=load_tokenizer, counts_out=counts))
            bar.update(1)
    if not rows:
        raise InputError("no valid rollout rows to analyse", path=str(Path(run_dir) / "rollouts"))
    df = pd.DataFrame(rows)
    return finalize(df, quantiles, counts=counts)


FORMAT_MIN_STEP_RESPONSES = 10  # a step with fewer responses does not decide the per-step clause of `format_phrases`


def format_phrases(counts: Sequence[StepCounts], share: float = FORMAT_PHRASE_SHARE) -> list[str]:
    """Phrases present in at least `share` of the whole run's responses, or in at least `share` of every step's
    responses from the first step where they reach it to the last (once there, never below it again; steps of at
    least `FORMAT_MIN_STEP_RESPONSES` responses; module
    docstring): one exclusion set for the run. The second clause catches a format the policy picks up during
    training (a format reward: in every response from some step on, yet under `share` of the whole run, and its
    arrival would read as a rise of diversity); it asks for the share to hold to the end so that a strategic phrase
    that every response used early and then shared with others (a collapse, then a spread: the paper's rise) is
    kept. A template phrase every early response held and later ones dropped is kept too, and its loss can read as
    a rise: the docs' known limit."""
    present: dict[str, int] = {}
    n = 0
    per_step: list[dict[str, float]] = []
    for c in sorted(counts, key=lambda c: c.step):
        rows = c.phrase_counts.shape[0]
        n += rows
        shares = {}
        for j, p in enumerate(c.phrases):
            k = int((c.phrase_counts[:, j] > 0).sum())
            present[p] = present.get(p, 0) + k
            shares[p] = k / rows if rows else 0.0
        if rows >= FORMAT_MIN_STEP_RESPONSES:
            per_step.append(shares)
    found = {p for p, k in present.items() if n and k >= share * n}
    for p in present:
        held = [st.get(p, 0.0) >= share for st in per_step]
        if any(held) and all(held[held.index(True):]):  # reaches the share and stays there to the end
            found.add(p)
    return sorted(found)


def exploration_groups(counts: Sequence[StepCounts], measure: str, excluded: Sequence[str] = ()) -> dict:
    """step -> (prompt_ids, counts matrix) for `hicra.dynamics.phases.problem_bootstrap_trend`: strategy labels
    ("strategy") or planning phrases without `excluded` ("planning-phrases"), columns aligned over the run."""
    names = sorted({x for c in counts for x in (c.strategies if measure == "strategy" else c.phrases)}
                   - set(excluded))
    pos = {x: i for i, x in enumerate(names)}
    out = {}
    for c in counts:
        own, mat = (c.strategies, c.strategy_counts) if measure == "strategy" else (c.phrases, c.phrase_counts)
        full = np.zeros((mat.shape[0], len(names)))
        for j, x in enumerate(own):
            if x in pos:
                full[:, pos[x]] = mat[:, j]
        out[c.step] = (c.prompt_ids, full)
    return out


def outcome_groups(counts: Sequence[StepCounts]) -> dict[str, dict]:
    """{"accuracy": step -> (prompt_ids, correct), "mean_length": step -> (prompt_ids, lengths)} for
    `hicra.dynamics.phases.problem_bootstrap_mean_trend` (the side trends of a text-only exploration test); a
    name is left out when some step did not keep its values."""
    out = {}
    for name, attr in (("accuracy", "correct"), ("mean_length", "lengths")):
        if counts and all(getattr(c, attr) is not None for c in counts):
            out[name] = {c.step: (c.prompt_ids, getattr(c, attr)) for c in counts}
    return out


def finalize(df, quantiles: Sequence[float] = DEFAULT_QUANTILES, counts: Sequence[StepCounts] | None = None):
    """Run-level columns: relative perplexity to the first step, error counts nulled when never labelled,
    the unsuffixed fork-overlap columns (first q), DESIGN column order."""
    import pandas as pd

    df = df.sort_values("step").reset_index(drop=True)
    for cls in ("planning", "execution", "execution_rw"):
        col = f"ppl_{cls}"
        if col not in df:
            df[col] = None
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        df[f"rel_ppl_{cls}"] = relative_perplexity(values)
    df["rel_ppl_reference"] = relative_perplexity(
        pd.to_numeric(df["ppl_reference"], errors="coerce").to_numpy(dtype=np.float64)
        if "ppl_reference" in df else np.full(len(df), np.nan))
    labelled = int(df.pop("_error_labels").sum()) if "_error_labels" in df else 0
    for kind in ERROR_TYPES:
        count, share = f"n_errors_{kind}", f"errors_{kind}_share"
        if labelled == 0 or count not in df:
            df[count] = pd.array([None] * len(df), dtype="Int64")
            df[share] = np.nan
        else:
            df[count] = df[count].astype("Int64")
    # planning-phrase semantic entropy without format phrases (one exclusion set for the run)
    if counts:
        excluded = set(format_phrases(counts))
        df.attrs["format_phrases"] = sorted(excluded)
        by_step = {c.step: c for c in counts}
        se, lo, hi = [], [], []
        for step in df["step"]:
            c = by_step.get(int(step))
            if c is None or not c.phrases:
                se.append(0.0 if c is not None else np.nan)
                lo.append(None)
                hi.append(None)
                continue
            keep = [j for j, p in enumerate(c.phrases) if p not in excluded]
            mat = c.phrase_counts[:, keep]
            se.append(float(_entropy_rows(mat.sum(axis=0, keepdims=True))[0]))
            _, inverse = np.unique(c.prompt_ids, return_inverse=True)
            g = group_rows(mat, inverse, int(inverse.max()) + 1)
            a, b = _interval(_entropy_rows(_prompt_weights(g.shape[0], int(step), 1) @ g), se[-1])
            lo.append(a)
            hi.append(b)
        df["semantic_entropy_excl_format"] = se
        df["semantic_entropy_excl_format_low"], df["semantic_entropy_excl_format_high"] = lo, hi
    q0 = f"q{round(quantiles[0] * 100):02d}" if quantiles else None
    for base in ("high_entropy_planning_share", "planning_high_entropy_share"):
        src = f"{base}_{q0}"
        df[base] = df[src] if q0 and src in df else None
    for col in METRIC_COLUMNS:
        if col not in df:
            df[col] = None
    extra = [c for c in df.columns if c not in METRIC_COLUMNS]
    df = df[list(METRIC_COLUMNS) + extra]
    # object columns of all-None become float NaN so Parquet/CSV get a numeric type
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def write_metrics(df, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """metrics.parquet and metrics.csv in `out_dir`, each written atomically."""
    from hicra.fileio import atomic_path, write_parquet

    out_dir = Path(out_dir)
    pq_path, csv_path = out_dir / "metrics.parquet", out_dir / "metrics.csv"
    write_parquet(pq_path, pa.Table.from_pandas(df, preserve_index=False))
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    return pq_path, csv_path
