"""Counterfactual sentence importance ("thought anchors", Bogdan et al. 2025, arXiv 2506.19143) of one policy.

For each problem, one response is sampled and split into sentences s_0..s_{m-1} (`hicra.mechanistic.sentences`).
For sentence i two arms of continuations are compared:
- keep: K continuations from the prefix that keeps s_i (`text[:b_{i+1}]`);
- resampled: K continuations from the prefix before s_i (`text[:b_i]`) whose regenerated sentence i (the first
  sentence of the continuation) says something different from s_i. With `differ="meaning"` (the default) that is
  a different `hicra.mechanistic.tasks.meaning` key: for lab tasks a paraphrase of the same strategic move is the
  same sentence, as the paper keeps only resamples that differ in meaning, not in wording; with `differ="text"` any
  change after whitespace normalisation counts. At most `max_tries` draws are spent per wanted continuation
  (`max_tries * K` in all); draws that repeat s_i are discarded. A sentence of which no draw differs is *fixed*:
  reported with `fixed = True` and null importance, and left out of every mean.

importance = accuracy(keep) - accuracy(resampled)   (signed: > 0 when keeping the sentence helps)
tv_distance = 1/2 sum_a |P_keep(a) - P_resampled(a)|  over final answers a (no answer is one more value)

Draws are shared the way the paper shares them: the draws from `text[:b_{i+1}]` are both the keep arm of
sentence i and the pool the resampled arm of sentence i+1 is filtered from. The keep arm of the last sentence is
the original response itself (it ended there).

Adaptive early stopping (`adaptive=True`, the default): each arm grows in rounds of `round_size` continuations
(default K/2). After each round the Agresti-Caffo interval (Agresti & Caffo 2000) at `level` of
accuracy(keep) - accuracy(resampled) is computed; when it excludes 0 the sign of the importance is decided and the
sentence stops; otherwise the arms grow until K. With `adaptive=False` every sentence gets K per arm at once.
Either way a sentence is fixed only when none of its `max_tries * K` tries differs (the same criterion in both
modes, though the draws themselves differ). Because a pool serves two sentences, stopping one saves draws only
when its neighbour stops too; on the quick preset's warm start it saved nothing measurable (docs/mechanistic.md).
Stopping when the interval is decided saves the draws of clearly important sentences; like any optional stopping
it can shift the estimates of the stopped sentences slightly toward larger |importance|.

The summary per class pools sentences (mean over sentences) and resamples *problems* (cluster bootstrap) for its
intervals, so sentences of one response count as one unit of evidence.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from hicra.mechanistic.sentences import (
    CLASSES,
    boundaries,
    classify,
    first_sentence,
    normalize,
    split_sentences,
)
from hicra.mechanistic.tasks import meaning

COLUMNS = ["step", "problem_id", "sentence_idx", "class", "importance", "tv_distance", "n_resamples", "n_keep",
           "n_tries", "fixed", "acc_keep", "acc_resampled", "sentence"]


@dataclass
class AnchorsConfig:
    """Settings of one importance measurement (see the module docstring)."""

    k: int = 8
    max_tries: int = 4
    round_size: int | None = None  # None: max(1, k // 2)
    adaptive: bool = True
    level: float = 0.95
    split: str = "lines"
    seed: int = 0
    differ: str = "meaning"  # what makes a regenerated sentence different: "meaning" (task.meaning) or "text"

    def validate(self) -> None:
        if self.k < 1 or self.max_tries < 1:
            raise ValueError("k >= 1 and max_tries >= 1 are required")
        if self.differ not in ("meaning", "text"):
            raise ValueError(f"differ must be 'meaning' or 'text', got {self.differ!r}")
        if self.round_size is not None and not 1 <= self.round_size <= self.k:
            raise ValueError("round_size must be in [1, k]")
        if not 0 < self.level < 1:
            raise ValueError("level must be in (0, 1)")

    @property
    def round(self) -> int:
        return self.round_size if self.round_size is not None else max(1, self.k // 2)


@dataclass
class _Draw:
    first: str  # the key (`differ`) of the continuation's first sentence
    correct: bool
    answer: str | None


@dataclass
class _Response:
    problem: object
    problem_id: str
    prompt: str
    text: str
    sentences: list
    bounds: list[int]
    classes: list[str]
    complete: _Draw  # the original response, as the keep arm of the last sentence
    pools: list[list[_Draw]] = field(default_factory=list)  # pools[j]: draws from text[:bounds[j]], j < m


def agresti_caffo(c1: int, n1: int, c2: int, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Interval for p1 - p2 from c1/n1 and c2/n2 successes (add one success and one failure to each arm)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    p1, p2 = (c1 + 1) / (n1 + 2), (c2 + 1) / (n2 + 2)
    se = math.sqrt(p1 * (1 - p1) / (n1 + 2) + p2 * (1 - p2) / (n2 + 2))
    d = p1 - p2
    return max(-1.0, d - z * se), min(1.0, d + z * se)


def tv_distance(a: list, b: list) -> float:
    """Total-variation distance of the empirical distributions of two lists of hashable values."""
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[v] / len(a) - cb[v] / len(b)) for v in set(ca) | set(cb))


def _call_seed(seed: int, call: int) -> int:
    return int(np.random.default_rng([seed, call]).integers(2**31 - 1))


def sentence_importance(policy, task, problems: list, tagger, cfg: AnchorsConfig | None = None,
                        progress: bool = False) -> tuple[list[dict], dict]:
    """Importance of every sentence of one sampled response per problem.

    `policy`: a `hicra.mechanistic.policy.Policy`; `task`: a `hicra.mechanistic.tasks.Task`; `tagger`: a
    `PlanningTagger` for the classes. Returns (rows, stats): one row per sentence with the `COLUMNS` less "step",
    and {"draws", "policy_calls", "seconds", "responses"}. Deterministic given `cfg.seed`.
    """
    from tqdm.auto import tqdm

    cfg = cfg or AnchorsConfig()
    cfg.validate()
    t0 = time.perf_counter()
    calls = 0

    def key(sentence: str) -> str:
        return meaning(task, sentence) if cfg.differ == "meaning" else normalize(sentence)

    def draw(contexts: list[tuple[int, int]]) -> list[_Draw]:
        """Continuations for (response index, prefix index) pairs."""
        nonlocal calls
        pairs = [(resp[r].prompt, resp[r].text[:resp[r].bounds[j]]) for r, j in contexts]
        conts = policy.continue_texts(pairs, _call_seed(cfg.seed, calls))
        calls += 1
        out = []
        for (r, _), (_, prefix), cont in zip(contexts, pairs, conts, strict=True):
            full = prefix + cont
            out.append(_Draw(key(first_sentence(cont, cfg.split)), bool(task.check(resp[r].problem, full).correct),
                             task.final_answer(resp[r].problem, full)))
        return out

    prompts = [task.prompt(p) for p in problems]
    originals = policy.continue_texts([(p, "") for p in prompts], _call_seed(cfg.seed, calls))
    calls += 1
    resp: list[_Response] = []
    for problem, prompt, text in zip(problems, prompts, originals, strict=True):
        sents = split_sentences(text, cfg.split)
        complete = _Draw("", bool(task.check(problem, text).correct), task.final_answer(problem, text))
        classes = [classify(s.text, tagger, task.is_answer_sentence) for s in sents]
        resp.append(_Response(problem, task.problem_id(problem), prompt, text, sents, boundaries(text, sents),
                              classes, complete, [[] for _ in sents]))

    step = cfg.round if cfg.adaptive else cfg.k
    target = {(r, i): step for r, x in enumerate(resp) for i in range(len(x.sentences))}
    results: dict[tuple[int, int], dict] = {}
    n_draws = 0
    bar = tqdm(total=len(target), desc="anchors", unit="sentence", disable=not progress, leave=False)

    def keep_arm(r: int, i: int, n: int) -> list[_Draw]:
        x = resp[r]
        return [x.complete] * n if i + 1 == len(x.sentences) else x.pools[i + 1][:n]

    def resampled_arm(r: int, i: int, n: int) -> tuple[list[_Draw], int]:
        """The first n differing draws among the allowed tries, and the number of tries they used."""
        own, pool = key(resp[r].sentences[i].text), resp[r].pools[i][:cfg.max_tries * n]
        got, used = [], 0
        for d in pool:
            used += 1
            if d.first != own:
                got.append(d)
                if len(got) == n:
                    break
        return got, used

    while target:
        # draw until every active sentence has its arms at the current target (or has used its tries)
        while True:
            demand: dict[tuple[int, int], int] = {}
            for (r, i), n in target.items():
                x = resp[r]
                if i + 1 < len(x.sentences):
                    need = n - len(x.pools[i + 1])
                    if need > 0:
                        demand[(r, i + 1)] = max(demand.get((r, i + 1), 0), need)
                got, _ = resampled_arm(r, i, n)
                room = cfg.max_tries * n - len(x.pools[i])
                need = min(n - len(got), room)
                if need > 0:
                    demand[(r, i)] = max(demand.get((r, i), 0), need)
            if not demand:
                break
            contexts = [key for key in sorted(demand) for _ in range(demand[key])]
            for (r, j), d in zip(contexts, draw(contexts), strict=True):
                resp[r].pools[j].append(d)
            n_draws += len(contexts)
        # decide, per active sentence: stop (decided, fixed, or at K) or grow by one round
        for (r, i), n in list(target.items()):
            keep = keep_arm(r, i, n)
            other, tries = resampled_arm(r, i, n)
            fixed = not other and n >= cfg.k  # no differing draw in all max_tries * K tries
            decided = False
            if other and cfg.adaptive and n < cfg.k:
                lo, hi = agresti_caffo(sum(d.correct for d in keep), len(keep), sum(d.correct for d in other),
                                       len(other), cfg.level)
                decided = lo > 0 or hi < 0
            if fixed or decided or n >= cfg.k:
                results[(r, i)] = _row(resp[r], i, keep, other, tries)
                del target[(r, i)]
                bar.update(1)
            else:
                target[(r, i)] = min(cfg.k, n + step)
    bar.close()
    rows = [results[(r, i)] for r, x in enumerate(resp) for i in range(len(x.sentences))]
    stats = {"draws": n_draws, "policy_calls": calls, "responses": len(resp),
             "sentences": len(rows), "seconds": time.perf_counter() - t0}
    return rows, stats


def _row(x: _Response, i: int, keep: list[_Draw], other: list[_Draw], tries: int) -> dict:
    fixed = not other
    acc_keep = sum(d.correct for d in keep) / len(keep)
    acc_other = None if fixed else sum(d.correct for d in other) / len(other)
    return {"problem_id": x.problem_id, "sentence_idx": i,
            "class": x.classes[i],
            "importance": None if fixed else acc_keep - acc_other,
            "tv_distance": None if fixed else tv_distance([d.answer for d in keep], [d.answer for d in other]),
            "n_resamples": len(other), "n_keep": len(keep), "n_tries": tries, "fixed": fixed,
            "acc_keep": acc_keep, "acc_resampled": acc_other, "sentence": x.sentences[i].text}


def cluster_bootstrap(rows: list[dict], value: str, *, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> dict:
    """Per class: mean of `value` over sentences and its interval, resampling problems with replacement; and the
    planning - execution gap with its interval (same resampled problems for both classes).

    `rows`: anchors rows of one step; fixed rows (value None) are left out. Returns
    {class: {"n_sentences", "n_problems", "mean", "interval"}, "gap_planning_minus_execution": {"mean",
    "interval"}}; a mean without any sentence is None, an interval None when fewer than two problems hold it."""
    kept = [r for r in rows if r[value] is not None]
    problems = sorted({r["problem_id"] for r in kept})
    index = {p: k for k, p in enumerate(problems)}
    sums = np.zeros((len(problems), len(CLASSES)))
    counts = np.zeros((len(problems), len(CLASSES)))
    for r in kept:
        c = CLASSES.index(r["class"])
        sums[index[r["problem_id"]], c] += r[value]
        counts[index[r["problem_id"]], c] += 1
    out: dict = {}
    means = None
    if problems:
        idx = np.random.default_rng(seed).integers(0, len(problems), size=(n_boot, len(problems)))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)  # [n_boot, classes], nan where empty
    q = [(1 - level) / 2, (1 + level) / 2]

    def interval(samples: np.ndarray, n_prob: int):
        samples = samples[np.isfinite(samples)]
        if n_prob < 2 or samples.size == 0:
            return None
        return [float(v) for v in np.quantile(samples, q)]

    for c, name in enumerate(CLASSES):
        n = int(counts[:, c].sum())
        n_prob = int((counts[:, c] > 0).sum())
        out[name] = {"n_sentences": n, "n_problems": n_prob,
                     "mean": float(sums[:, c].sum() / n) if n else None,
                     "interval": interval(means[:, c], n_prob) if means is not None and n else None}
    p, e = CLASSES.index("planning"), CLASSES.index("execution")
    both = out["planning"]["mean"] is not None and out["execution"]["mean"] is not None
    out["gap_planning_minus_execution"] = {
        "mean": out["planning"]["mean"] - out["execution"]["mean"] if both else None,
        "interval": interval(means[:, p] - means[:, e], len(problems)) if both else None}
    return out


def summarize_step(rows: list[dict], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """The per-checkpoint summary written to anchors.json: signed importance, |importance| and TV by class (each
    with `cluster_bootstrap` intervals), and the fixed sentences by class."""
    fixed = Counter(r["class"] for r in rows if r["fixed"])
    absolute = [{**r, "abs_importance": None if r["importance"] is None else abs(r["importance"])} for r in rows]
    return {"n_sentences": len(rows), "n_fixed": sum(fixed.values()),
            "fixed_by_class": {c: fixed.get(c, 0) for c in CLASSES},
            "importance": cluster_bootstrap(rows, "importance", n_boot=n_boot, level=level, seed=seed),
            "abs_importance": cluster_bootstrap(absolute, "abs_importance", n_boot=n_boot, level=level, seed=seed),
            "tv_distance": cluster_bootstrap(rows, "tv_distance", n_boot=n_boot, level=level, seed=seed)}


def by_phase(rows: list[dict], consolidation_end: int | None, *, n_boot: int = 2000, level: float = 0.95,
             seed: int = 0) -> dict | None:
    """|importance| by class and the planning - execution gap, pooled over the checkpoints up to the consolidation
    end ("before") and after it ("after"); clusters are (step, problem) pairs. None when the end is unknown or one
    side has no checkpoint."""
    if consolidation_end is None:
        return None
    sides = {"before": [r for r in rows if r["step"] <= consolidation_end],
             "after": [r for r in rows if r["step"] > consolidation_end]}
    if not all(sides.values()):
        return None
    out = {"consolidation_end_step": consolidation_end}
    for name, side in sides.items():
        pooled = [{**r, "problem_id": f"{r['step']}:{r['problem_id']}",
                   "abs_importance": None if r["importance"] is None else abs(r["importance"])} for r in side]
        out[name] = {"steps": sorted({r["step"] for r in side}),
                     "abs_importance": cluster_bootstrap(pooled, "abs_importance", n_boot=n_boot, level=level,
                                                         seed=seed)}
    return out


def pool_runs(runs: list[list[dict]], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Several runs' anchors rows (one list of `anchors.parquet` rows per run, e.g. the seeds of one arm) pooled per
    checkpoint step: `summarize_step` over the union, with (run, problem) as the bootstrap cluster, so each run's
    problems count as separate units and the interval covers both problem and run variation. Returns {step:
    summary} for the steps every run measured; a step missing from some run is left out (listed under
    "steps_not_in_every_run")."""
    steps_per_run = [{r["step"] for r in rows} for rows in runs]
    common = sorted(set.intersection(*steps_per_run)) if runs else []
    out: dict = {"n_runs": len(runs), "steps": {},
                 "steps_not_in_every_run": sorted(set.union(*steps_per_run) - set(common)) if runs else []}
    for step in common:
        pooled = [{**r, "problem_id": f"{k}:{r['problem_id']}"} for k, rows in enumerate(runs) for r in rows
                  if r["step"] == step]
        out["steps"][step] = summarize_step(pooled, n_boot=n_boot, level=level, seed=seed)
    return out


def config_dict(cfg: AnchorsConfig) -> dict:
    return {**asdict(cfg), "round_size": cfg.round}
