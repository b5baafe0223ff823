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

Tries in two stages (when the policy offers `hicra.mechanistic.policy.TwoStagePolicy`, as `HFPolicy` does): only
the first sentence of a try decides whether it counts for the resampled arm, so the tries a pool gets beyond
those its keep arm takes are first sampled up to the end of their first line. Only the tries that are used (they
differ from s_i, or a later round's keep arm grows over them) are continued to a whole response from the tokens
already sampled; a try that repeats s_i costs one line. The head of every pool, which keep arms take, is drawn
whole at once. What is measured does not change: the same arms, the same tries, the same fixed criterion, each
try still one draw of a whole continuation (paused after its first line); only the random draws differ from
sampling every try whole (`two_stage=False`, and what policies without the two methods get).

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
    correct: bool | None  # None until the draw is complete
    answer: str | None
    text: str = ""  # the continuation sampled so far (kept only while the draw is incomplete)
    handle: object = None  # the policy's resume handle while the draw is incomplete (`continue_rest`)

    @property
    def done(self) -> bool:
        return self.handle is None


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
    """Total-variation distance of the empirical distributions of two lists of hashable values. The terms are
    summed in a fixed order (by `repr`), not set order, which for strings changes between processes (hash
    randomisation) and with it the last bits of the sum."""
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[v] / len(a) - cb[v] / len(b)) for v in sorted(set(ca) | set(cb), key=repr))


def _call_seed(seed: int, call: int) -> int:
    return int(np.random.default_rng([seed, call]).integers(2**31 - 1))


def sentence_importance(policy, task, problems: list, tagger, cfg: AnchorsConfig | None = None,
                        progress: bool = False, two_stage: bool | None = None) -> tuple[list[dict], dict]:
    """Importance of every sentence of one sampled response per problem.

    `policy`: a `hicra.mechanistic.policy.Policy`; `task`: a `hicra.mechanistic.tasks.Task`; `tagger`: a
    `PlanningTagger` for the classes. Returns (rows, stats): one row per sentence with the `COLUMNS` less "step",
    and {"draws", "first_line_draws", "completions", "policy_calls", "seconds", "responses", "sentences"}.
    Deterministic given `cfg.seed`.

    `two_stage` (None: whenever the policy offers it, `hicra.mechanistic.policy.TwoStagePolicy`): tries drawn only
    for a resampled arm are first sampled up to the end of their first line (`first_line_draws`), and only those
    that are used, because they differ from the original sentence or because a keep arm grows over them, are
    continued to a whole response (`completions`). A try that repeats its sentence costs one line instead of a
    response. False: every try is a whole continuation (`Policy.continue_texts`).
    """
    from tqdm.auto import tqdm

    from hicra.mechanistic.policy import two_stage as offers_two_stage

    cfg = cfg or AnchorsConfig()
    cfg.validate()
    staged = offers_two_stage(policy) if two_stage is None else two_stage
    if staged and not offers_two_stage(policy):
        raise ValueError("two_stage=True needs a policy with continue_first_lines and continue_rest")
    t0 = time.perf_counter()
    calls = 0
    counts = {"draws": 0, "first_line_draws": 0, "completions": 0}

    def key(sentence: str) -> str:
        return meaning(task, sentence) if cfg.differ == "meaning" else normalize(sentence)

    def seed() -> int:
        nonlocal calls
        calls += 1
        return _call_seed(cfg.seed, calls - 1)

    def grade(d: _Draw, r: int, j: int, cont: str) -> None:
        full = resp[r].text[:resp[r].bounds[j]] + cont
        d.correct = bool(task.check(resp[r].problem, full).correct)
        d.answer = task.final_answer(resp[r].problem, full)

    def pairs(contexts: list[tuple[int, int]]) -> list[tuple[str, str]]:
        return [(resp[r].prompt, resp[r].text[:resp[r].bounds[j]]) for r, j in contexts]

    def draw(contexts: list[tuple[int, int]]) -> list[_Draw]:
        """Whole continuations for (response index, prefix index) pairs."""
        out = []
        for (r, j), cont in zip(contexts, policy.continue_texts(pairs(contexts), seed()), strict=True):
            out.append(_Draw(key(first_sentence(cont, cfg.split)), None, None))
            grade(out[-1], r, j, cont)
        return out

    def draw_first_lines(contexts: list[tuple[int, int]]) -> list[_Draw]:
        """Continuations sampled to the end of their first line; complete (graded) only where they ended there."""
        out = []
        for (r, j), (text, handle) in zip(contexts, policy.continue_first_lines(pairs(contexts), seed()),
                                          strict=True):
            out.append(_Draw(key(first_sentence(text, cfg.split)), None, None, text, handle))
            if handle is None:
                grade(out[-1], r, j, text)
        return out

    def complete(todo: list[tuple[int, int, _Draw]]) -> None:
        rests = policy.continue_rest([d.handle for _, _, d in todo], seed())
        for (r, j, d), rest in zip(todo, rests, strict=True):
            grade(d, r, j, d.text + rest)
            d.text, d.handle = "", None
        counts["completions"] += len(todo)

    prompts = [task.prompt(p) for p in problems]
    originals = policy.continue_texts([(p, "") for p in prompts], seed())
    resp: list[_Response] = []
    for problem, prompt, text in zip(problems, prompts, originals, strict=True):
        sents = split_sentences(text, cfg.split)
        complete_draw = _Draw("", bool(task.check(problem, text).correct), task.final_answer(problem, text))
        classes = [classify(s.text, tagger, task.is_answer_sentence) for s in sents]
        resp.append(_Response(problem, task.problem_id(problem), prompt, text, sents, boundaries(text, sents),
                              classes, complete_draw, [[] for _ in sents]))

    step = cfg.round if cfg.adaptive else cfg.k
    target = {(r, i): step for r, x in enumerate(resp) for i in range(len(x.sentences))}
    results: dict[tuple[int, int], dict] = {}
    bar = tqdm(total=len(target), desc="anchors", unit="sentence", disable=None if progress else True, leave=False)

    def keep_arm(r: int, i: int, n: int) -> list[_Draw]:
        x = resp[r]
        return [x.complete] * n if i + 1 == len(x.sentences) else x.pools[i + 1][:n]

    def differing(r: int, i: int, n: int) -> tuple[list[int], int]:
        """Pool positions of the first n differing draws among the allowed tries, and the tries they used."""
        own, pool = key(resp[r].sentences[i].text), resp[r].pools[i][:cfg.max_tries * n]
        got, used = [], 0
        for t, d in enumerate(pool):
            used += 1
            if d.first != own:
                got.append(t)
                if len(got) == n:
                    break
        return got, used

    def resampled_arm(r: int, i: int, n: int) -> tuple[list[_Draw], int]:
        """The first n differing draws among the allowed tries, and the number of tries they used."""
        got, used = differing(r, i, n)
        return [resp[r].pools[i][t] for t in got], used

    while target:
        # draw until every active sentence has its arms at the current target (or has used its tries); whether
        # more tries are needed depends only on the tries' first sentences, so completing the used ones waits
        keep_n: dict[tuple[int, int], int] = {}  # pool -> draws its head must hold, complete (a keep arm)
        for (r, i), n in target.items():
            if i + 1 < len(resp[r].sentences):
                keep_n[(r, i + 1)] = max(keep_n.get((r, i + 1), 0), n)
        while True:
            want = dict(keep_n)  # pool -> length wanted
            for (r, i), n in target.items():
                pool = resp[r].pools[i]
                need = min(n - len(differing(r, i, n)[0]), cfg.max_tries * n - len(pool))
                if need > 0:
                    want[(r, i)] = max(want.get((r, i), 0), len(pool) + need)
            new = {k: w - len(resp[k[0]].pools[k[1]]) for k, w in sorted(want.items())
                   if w > len(resp[k[0]].pools[k[1]])}
            if not new:
                break
            # a pool's new draws that a keep arm needs are whole continuations; the rest, wanted only for a
            # resampled arm, go to their first line (two stages) or whole (one stage)
            full = {k: min(m, max(0, keep_n.get(k, 0) - len(resp[k[0]].pools[k[1]]))) if staged else m
                    for k, m in new.items()}
            whole = [k for k in new for _ in range(full[k])]
            short = [k for k in new for _ in range(new[k] - full[k])]
            for (r, j), d in zip(whole + short, (draw(whole) if whole else []) +
                                 (draw_first_lines(short) if short else []), strict=True):
                resp[r].pools[j].append(d)
            counts["draws"] += len(whole) + len(short)
            counts["first_line_draws"] += len(short)
        # complete the incomplete draws the arms use, in one call: the head of a pool that a keep arm takes, and
        # the differing tries of a resampled arm
        todo: dict[tuple[int, int, int], _Draw] = {}
        for (r, j), n in keep_n.items():
            for t, d in enumerate(resp[r].pools[j][:n]):
                if not d.done:
                    todo[(r, j, t)] = d
        for (r, i), n in target.items():
            for t in differing(r, i, n)[0]:
                if not resp[r].pools[i][t].done:
                    todo[(r, i, t)] = resp[r].pools[i][t]
        if todo:
            complete([(r, j, todo[(r, j, t)]) for r, j, t in sorted(todo)])
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
    stats = {**counts, "policy_calls": calls, "responses": len(resp), "sentences": len(rows),
             "seconds": time.perf_counter() - t0}
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
    # the gap's interval needs each class in two problems at least: with one, every resample that holds the class
    # repeats the same sentences and the interval would show only the other class's spread
    n_both = min(out["planning"]["n_problems"], out["execution"]["n_problems"])
    out["gap_planning_minus_execution"] = {
        "mean": out["planning"]["mean"] - out["execution"]["mean"] if both else None,
        "interval": interval(means[:, p] - means[:, e], n_both) if both else None}
    return out


def null_abs_importance(acc_keep: float, n_keep: int, acc_resampled: float, n_resampled: int) -> float:
    """E|X/n1 - (c - X)/n2| where X, the correct draws of the keep arm, is hypergeometric: c = the correct draws of
    both arms together (n1 = n_keep, n2 = n_resampled), shuffled between the arms at random. This is the
    |importance| a sentence shows on average when keeping it changes nothing (the draws of both arms are then
    exchangeable, so given c every split is equally likely), at its own arm sizes and total. It is larger for small
    arms (averaged over draws right with probability 0.5: 0.50 with one differing draw against eight kept, 0.20
    with eight and eight), so sentences with few differing draws look more important by chance alone. Because it
    conditions on c, |importance| minus it has mean exactly 0 under no effect, whatever the accuracy. Exact sums."""
    n1, n2 = int(n_keep), int(n_resampled)
    c = round(acc_keep * n1) + round(acc_resampled * n2)
    total = math.comb(n1 + n2, n1)
    return sum(math.comb(c, x) * math.comb(n1 + n2 - c, n1 - x) / total * abs(x / n1 - (c - x) / n2)
               for x in range(max(0, c - n2), min(n1, c) + 1))


def _with_abs(rows: list[dict]) -> list[dict]:
    """Rows with `abs_importance` = |importance| and `excess_abs_importance` = |importance| minus
    `null_abs_importance` at the row's arm sizes and correct draws (None for fixed rows, and for rows without the
    arm columns)."""
    out = []
    for r in rows:
        if r["importance"] is None:
            out.append({**r, "abs_importance": None, "excess_abs_importance": None})
            continue
        arms = [r.get(k) for k in ("acc_keep", "n_keep", "acc_resampled", "n_resamples")]
        excess = None if None in arms else abs(r["importance"]) - null_abs_importance(*arms)
        out.append({**r, "abs_importance": abs(r["importance"]), "excess_abs_importance": excess})
    return out


def summarize_step(rows: list[dict], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """The per-checkpoint summary written to anchors.json: signed importance, |importance|, excess |importance|
    (`_with_abs`) and TV by class (each with `cluster_bootstrap` intervals), and the fixed sentences by class."""
    fixed = Counter(r["class"] for r in rows if r["fixed"])
    absolute = _with_abs(rows)
    return {"n_sentences": len(rows), "n_fixed": sum(fixed.values()),
            "fixed_by_class": {c: fixed.get(c, 0) for c in CLASSES},
            "importance": cluster_bootstrap(rows, "importance", n_boot=n_boot, level=level, seed=seed),
            "abs_importance": cluster_bootstrap(absolute, "abs_importance", n_boot=n_boot, level=level, seed=seed),
            "excess_abs_importance": cluster_bootstrap(absolute, "excess_abs_importance", n_boot=n_boot,
                                                       level=level, seed=seed),
            "tv_distance": cluster_bootstrap(rows, "tv_distance", n_boot=n_boot, level=level, seed=seed)}


def by_phase(rows: list[dict], consolidation_end: int | None, *, n_boot: int = 2000, level: float = 0.95,
             seed: int = 0) -> dict | None:
    """|importance| by class and the planning - execution gap, pooled over the checkpoints up to the consolidation
    end ("before") and after it ("after"); clusters are (step, problem) pairs. "change" holds the gap after minus
    the gap before for both measures (`phase_change`: paired on problems). None when the end is unknown or one
    side has no checkpoint."""
    if consolidation_end is None:
        return None
    sides = {"before": [r for r in rows if r["step"] <= consolidation_end],
             "after": [r for r in rows if r["step"] > consolidation_end]}
    if not all(sides.values()):
        return None
    out = {"consolidation_end_step": consolidation_end}
    for name, side in sides.items():
        pooled = [{**r, "problem_id": f"{r['step']}:{r['problem_id']}"} for r in _with_abs(side)]
        out[name] = {"steps": sorted({r["step"] for r in side}),
                     **{v: cluster_bootstrap(pooled, v, n_boot=n_boot, level=level, seed=seed)
                        for v in ("abs_importance", "excess_abs_importance")}}
    changes = {v: phase_change([(rows, consolidation_end)], v, n_boot=n_boot, level=level, seed=seed)
               for v in ("abs_importance", "excess_abs_importance")}
    out["change"] = {v: c and c["change"] for v, c in changes.items()}  # None where no row has the value
    return out


def phase_change(runs: list[tuple[list[dict], int]], value: str = "excess_abs_importance", *, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0) -> dict | None:
    """Does the planning - execution gap of `value` grow after the consolidation end? Several runs pooled, each
    with its own end.

        gap_side   = mean(value | planning, side) - mean(value | execution, side)   (means over sentences)
        change     = gap_after - gap_before,   before: step <= end, after: step > end

    `runs`: (anchors rows of one run, that run's consolidation end step) pairs; `value` is "abs_importance",
    "excess_abs_importance" (`_with_abs`) or any row column ("importance", "tv_distance"). The bootstrap resamples
    (run, problem) clusters with replacement (runs that share a snapshot count as one run here, below), each
    cluster carrying its sentences at every checkpoint on both sides,
    so the before/after comparison is paired on problems (anchors measures the same held-out problems at every
    checkpoint). Returns {"before", "after", "change"}: each {"mean", "interval"} (interval None with fewer than two
    clusters), plus "n_runs", "n_clusters", and each side's steps per run; None when no run has a checkpoint on
    both sides."""
    p, e = CLASSES.index("planning"), CLASSES.index("execution")
    # runs that take part: a checkpoint on each side of their own end (a snapshot they share with another run counts)
    taking, steps = [], []
    for k, (rows, end) in enumerate(runs):
        sides = {"before": sorted({r["step"] for r in rows if r["step"] <= end}),
                 "after": sorted({r["step"] for r in rows if r["step"] > end})}
        if all(sides.values()):
            taking.append(k)
            steps.append({"run": k, "consolidation_end_step": end, **sides})
    # a snapshot measured in several runs with the same settings (identical rows at a step, e.g. a warm start shared
    # by two RL seeds at step 0) is one piece of evidence: its rows count once, and the runs that share it form one
    # cluster per problem (union-find), so each run's later rows stay paired with the shared rows of each problem
    root = {k: k for k in taking}

    def find(k: int) -> int:
        while root[k] != k:
            k = root[k]
        return k

    repeated = set()
    for step in sorted({r["step"] for k in taking for r in runs[k][0]}):
        first_with: dict[tuple, int] = {}  # the rows' signature -> the first run that measured them
        for k in taking:
            mine = [r for r in runs[k][0] if r["step"] == step]
            if not mine:
                continue
            first = first_with.setdefault(_signature(mine), k)
            if first != k:
                repeated.add((k, step))
                root[find(k)] = find(first)
    keys: dict[tuple[int, str], int] = {}
    cells = []  # (cluster, side, class, value)
    for k in taking:
        rows, end = runs[k]
        for r in _with_abs([r for r in rows if (k, r["step"]) not in repeated]):
            v = r.get(value)
            if v is None or not math.isfinite(v) or r["class"] not in ("planning", "execution"):
                continue
            c = keys.setdefault((find(k), r["problem_id"]), len(keys))
            cells.append((c, int(r["step"] > end), CLASSES.index(r["class"]), float(v)))
    if not cells:
        return None
    # clusters numbered by their content, not by the order of `runs`, so the bootstrap draws (and the interval,
    # not only the point estimate) do not depend on how the runs are listed
    content: dict[int, list] = {}
    for c, side, cls, v in cells:
        content.setdefault(c, []).append((side, cls, v))
    rank = {c: i for i, c in enumerate(sorted(content, key=lambda c: repr(sorted(content[c]))))}
    sums = np.zeros((len(keys), 2, len(CLASSES)))
    counts = np.zeros_like(sums)
    for c, side, cls, v in cells:
        sums[rank[c], side, cls] += v
        counts[rank[c], side, cls] += 1
    # as in `cluster_bootstrap`: a side's gap gets an interval only when each class occurs in two clusters there
    spread = [bool((counts[:, side, p] > 0).sum() >= 2 and (counts[:, side, e] > 0).sum() >= 2) for side in (0, 1)]

    def gaps(s, n):  # [..., 2 sides, classes] -> [..., 2] gap per side
        with np.errstate(invalid="ignore", divide="ignore"):
            m = s / n
        return m[..., p] - m[..., e]

    point = gaps(sums.sum(axis=0), counts.sum(axis=0))
    idx = np.random.default_rng(seed).integers(0, len(keys), size=(n_boot, len(keys)))
    draws = gaps(sums[idx].sum(axis=1), counts[idx].sum(axis=1))  # [n_boot, 2]
    q = [(1 - level) / 2, (1 + level) / 2]

    def cell(point_value: float, samples: np.ndarray, spread_ok: bool) -> dict:
        samples = samples[np.isfinite(samples)]
        ok = spread_ok and samples.size > 0 and np.isfinite(point_value)
        return {"mean": float(point_value) if np.isfinite(point_value) else None,
                "interval": [float(x) for x in np.quantile(samples, q)] if ok else None}

    return {"value": value, "n_runs": len(steps), "n_clusters": len(keys), "runs": steps,
            "before": cell(point[0], draws[:, 0], spread[0]), "after": cell(point[1], draws[:, 1], spread[1]),
            "change": cell(point[1] - point[0], draws[:, 1] - draws[:, 0], all(spread)),
            "change_draws": draws[:, 1] - draws[:, 0]}  # the bootstrap draws, for `change_difference`


def change_difference(a: dict, b: dict, *, level: float = 0.95, seed: int = 0) -> dict:
    """b's change minus a's (two `phase_change` results over disjoint runs, e.g. HICRA and GRPO): the point
    difference and a percentile interval from their bootstrap draws, b's randomly permuted against a's so the two
    arms' resamples are independent. Arms that share a warm start share its step-0 rows; treating them as
    independent then makes the interval wider than a joint resampling would, not narrower. Returns {"mean",
    "interval"}; the interval None when either side has none."""
    mean_a, mean_b = a["change"]["mean"], b["change"]["mean"]
    if mean_a is None or mean_b is None:
        return {"mean": None, "interval": None}
    da, db = a["change_draws"], np.random.default_rng(seed).permutation(b["change_draws"])
    n = min(da.size, db.size)
    diff = (db[:n] - da[:n])
    diff = diff[np.isfinite(diff)]
    ok = a["change"]["interval"] is not None and b["change"]["interval"] is not None and diff.size > 0
    q = [(1 - level) / 2, (1 + level) / 2]
    return {"mean": mean_b - mean_a, "interval": [float(x) for x in np.quantile(diff, q)] if ok else None}


def _signature(rows: list[dict]) -> tuple:
    """Rows compared as a multiset, whatever their order (`distinct_runs`, `phase_change`)."""
    return tuple(sorted(repr(sorted(r.items())) for r in rows))


def distinct_runs(per_run_rows: list[list[dict]]) -> list[int]:
    """Indices of the runs whose rows (one step's) do not repeat an earlier run's exactly, in order. Runs that
    measured the same snapshot with the same settings (two RL seeds from one warm start, at step 0) give identical
    rows: one piece of evidence, not two. Rows are compared as a multiset, whatever their order."""
    seen, keep = set(), []
    for k, rows in enumerate(per_run_rows):
        signature = _signature(rows)
        if signature not in seen:
            seen.add(signature)
            keep.append(k)
    return keep


def pool_runs(runs: list[list[dict]], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Several runs' anchors rows (one list of `anchors.parquet` rows per run, e.g. the seeds of one arm) pooled per
    checkpoint step: `summarize_step` over the union, with (run, problem) as the bootstrap cluster, so each run's
    problems count as separate units and the interval covers both problem and run variation. Returns {step:
    summary} for the steps every run measured; a step missing from some run is left out (listed under
    "steps_not_in_every_run").

    A run whose rows at a step repeat an earlier run's exactly (`distinct_runs`) is left out of that step
    (`duplicate_runs_dropped`: {step: how many}), which keeps the intervals from shrinking on copies."""
    steps_per_run = [{r["step"] for r in rows} for rows in runs]
    common = sorted(set.intersection(*steps_per_run)) if runs else []
    out: dict = {"n_runs": len(runs), "steps": {}, "duplicate_runs_dropped": {},
                 "steps_not_in_every_run": sorted(set.union(*steps_per_run) - set(common)) if runs else []}
    for step in common:
        mine = [[r for r in rows if r["step"] == step] for rows in runs]
        keep = distinct_runs(mine)
        pooled = [{**r, "problem_id": f"{k}:{r['problem_id']}"} for k in keep for r in mine[k]]
        out["duplicate_runs_dropped"][step] = len(runs) - len(keep)
        out["steps"][step] = summarize_step(pooled, n_boot=n_boot, level=level, seed=seed)
    return out


def config_dict(cfg: AnchorsConfig) -> dict:
    return {**asdict(cfg), "round_size": cfg.round}
