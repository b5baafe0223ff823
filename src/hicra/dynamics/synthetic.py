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
