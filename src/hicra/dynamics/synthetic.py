"""Synthetic run directories with known dynamics, for tests, benchmarks and demos of `hicra analyze`.

Each response is a sequence of segments: a strategic-gram phrase from the "paper" lexicon (the planning tokens)
followed by a run of made-up execution words that match no phrase. Tokens are whitespace words; token ids index a
fixed word list. Per step s of S:

- execution-token NLL ~ Exp-shaped curve: mean nll_exec(s) = 0.15 + 0.25 * exp(-s / (S/8)) when `planted`
  (falls then flattens: consolidation), constant 0.4 otherwise; planning-token NLL stays at ~0.9;
- the number of distinct phrases in use is 4 until s = S/3, then grows linearly to 40 when `planted`
  (semantic entropy rises: exploration), constant 4 otherwise;
- accuracy rises from 0.3 to 0.7 when planted; failures are labelled execution (early) / planning (late) errors.

Nothing here reads analysis code: the analyzer has to recover the planted structure on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hicra.dynamics.records import RolloutWriter, rollout_row, write_run_info

_EXEC_WORDS = [f"{c}{v}{d}" for c in "bdfgkmptvz" for v in "aeiou" for d in "0123456789"] + list("+-*/=()")


def ar1_noise(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """n steps of stationary AR(1) noise with marginal standard deviation sd: e_0 ~ N(0, sd^2),
    e_t = phi e_(t-1) + N(0, sd^2 (1 - phi^2)). Step-to-step drift, as in per-step training metrics."""
    e = np.empty(n)
    e[0] = rng.normal(0, sd)
    z = rng.normal(0, sd * np.sqrt(1 - phi**2), n)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + z[t]
    return e


# ---------------------------------------------------------------- planted metric curves (phase verdict)

# case -> the verdict a correct analysis gives (hicra.dynamics.phases, v2 table)
PHASE_CASES = {
    "execution-first+exploration": "two-phase",
    "execution-first": "consolidation-only",
    "planning-first": "reversed",
    "together": "no-order",
    "exploration-only": "exploration-only",
    "flat": "none",
    "text-only": "inconclusive",
}
# noise conditions: (sd of rel. perplexity of execution, of planning/reference, of the exploration entropy, AR(1) phi)
PHASE_NOISE = {"low": (0.01, 0.02, 0.05, 0.0), "high": (0.02, 0.04, 0.1, 0.0), "drift": (0.01, 0.02, 0.05, 0.6)}
# a stress condition outside the validation's three (planning 8 times as noisy as execution; the lab's runs measure
# about 2: `benchmarks/reference_noise.py`), for the known limit of a quiet reference class
PHASE_NOISE_STRESS = {"noisy-planning": (0.01, 0.08, 0.05, 0.0)}


def phase_curves(case: str, rng: np.random.Generator, *, steps: int = 60, noise: str = "low",
                 planning_ratio: float = 0.0, reference_noise: float = 1.0) -> dict[str, np.ndarray]:
    """Per-step metric columns with a planted phase structure (PHASE_CASES), for `detect_phases`.

    Shapes (x = step): a *fast* fall 1 - 0.3 (1 - exp(-x/5)) (bend near step 12), a *slow* fall
    1 - 0.3 min(x, 40)/40 (consolidates at step 40), flat 1, or a straight decline 1 - 0.003 x (sharpening with
    no bend). execution-first: execution fast, planning slow; planning-first: the reverse; together: both fast;
    exploration-only: both straight declines; flat and text-only: flat (text-only has no perplexity columns).
    The reference class (random tokens, `planning_ratio` of them planning tokens: 0, the default, is verdict
    v3's draw from non-planning tokens; v2's draw from all tokens held about 0.1-0.2) is the token-weighted mix
    (1 - r) exec + r plan with planning's noise (same token count) times `reference_noise` (below 1: a
    reference class less noisy than planning, the case of the known limit in docs/dynamics.md; the lab's runs
    measure about 1). The exploration entropy is 2 + 0.02 per step
    from step 20 in every case but execution-first and flat, else 2. Noise: PHASE_NOISE[noise], AR(1) drift
    (`ar1_noise`) with its phi, independent per curve; `noise` may also name a `PHASE_NOISE_STRESS` condition.
    """
    if case not in PHASE_CASES:
        raise ValueError(f"unknown case {case!r}; one of {sorted(PHASE_CASES)}")
    s_exec, s_plan, s_ent, phi = {**PHASE_NOISE, **PHASE_NOISE_STRESS}[noise]
    x = np.arange(steps, dtype=float)
    fast, slow = 1 - 0.3 * (1 - np.exp(-x / 5)), 1 - 0.3 * np.minimum(x, 40) / 40
    flat, line = np.ones_like(x), 1 - 0.003 * x
    exec_, plan = {"execution-first+exploration": (fast, slow), "execution-first": (fast, slow),
                   "planning-first": (slow, fast), "together": (fast, fast),
                   "exploration-only": (line, line)}.get(case, (flat, flat))
    explores = case not in ("execution-first", "flat")
    ent = 2 + (0.02 * np.maximum(x - 20, 0) if explores else 0)
    ref = (1 - planning_ratio) * exec_ + planning_ratio * plan
    out = {"step": x, "accuracy": 0.3 + 0.3 * x / steps + ar1_noise(rng, steps, phi, 0.02),
           "mean_length": 100 + 0.5 * x + ar1_noise(rng, steps, phi, 3.0)}
    if case != "text-only":
        out["rel_ppl_execution"] = exec_ + ar1_noise(rng, steps, phi, s_exec)
        out["rel_ppl_planning"] = plan + ar1_noise(rng, steps, phi, s_plan)
        out["rel_ppl_reference"] = ref + ar1_noise(rng, steps, phi, s_plan * reference_noise)
    out["strategy_entropy"] = ent + ar1_noise(rng, steps, phi, s_ent)
    return out


def _phrases() -> list[str]:
    from hicra.planning.lexicon import Lexicon

    out = []
    for p in Lexicon.preset("paper").phrases:
        words = p.text.split()
        if len(words) >= 3 and p.text.replace(" ", "").isalpha():
            out.append(p.text)
    return out[:40]


def make_synthetic_run(run_dir: str | os.PathLike, *, steps: int = 30, prompts: int = 8, group: int = 4,
                       segments: int = 6, exec_len: int = 12, planted: bool = True, seed: int = 0,
                       with_planning_mask: bool = True, with_entropies: bool = True,
                       parts: int = 1) -> Path:
    """Write a run directory (run.json + rollouts) and return its path. About
    steps * prompts * group * segments * (exec_len + 3.5) tokens."""
    run_dir = Path(run_dir)
    rng = np.random.default_rng(seed)
    phrases = _phrases()
    vocab = _EXEC_WORDS + sorted({w for p in phrases for w in p.split()})
    word_id = {w: i for i, w in enumerate(vocab)}
    phrase_ids = [np.array([word_id[w] for w in p.split()], dtype=np.int32) for p in phrases]
    exec_words = np.array(_EXEC_WORDS, dtype=object)
    write_run_info(run_dir, {"algorithm": "synthetic", "alpha": 0.0, "seed": seed, "model": "synthetic",
                             "task": "synthetic", "lexicon": "paper",
                             "config": {"planted": planted, "steps": steps}})
    writer = RolloutWriter(run_dir)
    n_resp = prompts * group
    for s in range(steps):
        frac = s / max(steps - 1, 1)
        nll_exec = 0.15 + 0.25 * np.exp(-s / max(steps / 8, 1)) if planted else 0.4
        n_active = 4 + int(36 * max(0.0, (s - steps / 3) / (steps - steps / 3))) if planted else 4
        acc = 0.3 + 0.4 * frac if planted else 0.5
        drawn = []  # per response: token ids, planning mask, text, logprobs, entropies
        for _ in range(n_resp):
            ids, mask, words = [], [], []
            choice = rng.integers(0, n_active, segments)
            exec_tok = rng.integers(0, len(_EXEC_WORDS), (segments, exec_len))
            for j in range(segments):
                pid = phrase_ids[choice[j]]
                ids.append(pid)
                mask.append(np.ones(pid.size, dtype=bool))
                words.append(phrases[choice[j]])
                ids.append(exec_tok[j].astype(np.int32))
                mask.append(np.zeros(exec_len, dtype=bool))
                words.append(" ".join(exec_words[exec_tok[j]]))
            ids_a, mask_a = np.concatenate(ids), np.concatenate(mask)
            nll = np.where(mask_a, rng.exponential(0.9, ids_a.size), rng.exponential(nll_exec, ids_a.size))
            ent = np.where(mask_a, rng.gamma(2.0, 0.6, ids_a.size), rng.gamma(2.0, nll_exec, ids_a.size))
            drawn.append((ids_a, mask_a, " ".join(words), -nll, ent))
        correct = rng.random(n_resp) < acc  # drawn after the responses: the streams of earlier versions
        late = rng.random(n_resp) < frac
        rows = []
        for r, (ids_a, mask_a, text, logprobs, ent) in enumerate(drawn):
            ok = bool(correct[r])
            rows.append(rollout_row(
                step=s, prompt_id=f"s{s}p{r // group}", sample_idx=r % group, prompt=f"synthetic prompt {r // group}",
                response=text, token_ids=ids_a, logprobs=logprobs, entropies=ent if with_entropies else None,
                planning_mask=mask_a if with_planning_mask else None, reward=float(ok), correct=ok, truncated=False,
                error_type=None if ok else ("planning" if late[r] else "execution")))
        bounds = np.linspace(0, n_resp, parts + 1).astype(int)
        for part in range(parts):
            writer.write_step(s, rows[bounds[part]:bounds[part + 1]], part=part)
    return run_dir


def synthetic_vocab() -> list[str]:
    """The synthetic runs' word list (token id -> word), e.g. to build a whitespace tokenizer in tests."""
    phrases = _phrases()
    return _EXEC_WORDS + sorted({w for p in phrases for w in p.split()})


# ---------------------------------------------------------------- a length-mix run (nothing planted)


def make_length_mix_run(run_dir: str | os.PathLike, *, steps: int = 40, responses: int = 64, seed: int = 0) -> Path:
    """A run in which no token becomes likelier, only the mix of response lengths shifts (a reviewer's simulation,
    session 55): half the responses are short (66 tokens, execution NLL ~ Exp(1.0)), half long and likelier
    (execution NLL ~ Exp(0.2)), the long ones growing from 66 to about 400 tokens as 60 + 340 (1 - exp(-s/8)) + 6;
    six planning tokens per response ("lets", NLL ~ Exp(0.9)); groups of 4 per prompt; correct with probability
    0.5. Pooled over tokens, execution's perplexity falls and flattens; per response it stays put."""
    rng = np.random.default_rng(seed)
    write_run_info(run_dir, {"algorithm": "grpo", "alpha": 0.0, "seed": seed, "model": "length-mix",
                             "task": "synthetic", "lexicon": "paper",
                             "config": {"generator": "make_length_mix_run", "steps": steps, "responses": responses}})
    writer = RolloutWriter(run_dir)
    for s in range(steps):
        long_len, rows = int(60 + 340 * (1 - np.exp(-s / 8))), []
        for r in range(responses):
            long = r % 2 == 1
            n = (long_len if long else 60) + 6
            mask = np.zeros(n, bool)
            mask[np.linspace(0, n - 1, 6).astype(int)] = True
            nll = np.where(mask, rng.exponential(0.9, n), rng.exponential(0.2 if long else 1.0, n))
            ent = np.where(mask, rng.gamma(2, .5, n), rng.gamma(2, .1 if long else .5, n))
            ok = bool(rng.random() < .5)
            rows.append(rollout_row(step=s, prompt_id=f"p{r // 4}", sample_idx=r % 4, prompt="q",
                                    response=" ".join("lets" if m else f"w{i}" for i, m in enumerate(mask)),
                                    token_ids=np.arange(n, dtype=np.int32), logprobs=-nll, entropies=ent,
                                    planning_mask=mask, reward=float(ok), correct=ok, truncated=False,
                                    error_type=None))
        writer.write_step(s, rows)
    return Path(run_dir)
