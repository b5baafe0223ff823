"""hicra anchors / hicra graphs: planted cases with known answers, the run-directory walk, the CLI."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from hicra.lab.tasks.base import CheckResult, answer_text
from hicra.mechanistic.anchors import (
    AnchorsConfig,
    agresti_caffo,
    cluster_bootstrap,
    null_abs_importance,
    sentence_importance,
    summarize_step,
    tv_distance,
)
from hicra.mechanistic.graphs import collapse, pooled_graph, small_world, small_world_interval, walk_metrics
from hicra.mechanistic.sentences import boundaries, classify, first_sentence, split_sentences
from hicra.mechanistic.tasks import LabTask
from hicra.planning import Lexicon, PlanningTagger

pytestmark = pytest.mark.xdist_group("mechanistic")


# --- planted anchors: success depends on one sentence only ----------------------------------------------------

@dataclass(frozen=True)
class Prob:
    id: str


class ScriptedPolicy:
    """Writes five lines: a varying greeting, a line it never varies, a planning line that picks the good or the
    bad way (1/2 each), a random computation, and the answer, which is 1 exactly when the planning line says good.
    Success therefore depends on line 2 only."""

    def __init__(self):
        self.calls = 0
        self.lines = Counter()  # lines written per prefix line count (the pool), the stand-in for sampled tokens

    def write(self, prefix, rng, limit=5, pool=None):
        """The next `limit` lines after `prefix` (fewer where the five lines end), counted under `pool` (default:
        the prefix's line count)."""
        lines = prefix.split("\n")[:-1]
        new = []
        for k in range(len(lines), min(5, len(lines) + limit)):
            if k == 0:
                new.append(f"hello {rng.randrange(10)}")
            elif k == 1:
                new.append("fixed opening")
            elif k == 2:
                new.append(f"let's try the {rng.choice(['good', 'bad'])} way")
            elif k == 3:
                a, b = rng.randrange(1, 10), rng.randrange(1, 10)
                new.append(f"{a}+{b}={a + b}")
            else:
                new.append(f"so the answer is {int('good' in (lines + new)[2])}")
        self.lines[len(lines) if pool is None else pool] += len(new)
        return new

    def continue_texts(self, contexts, seed):
        self.calls += 1
        rng = random.Random(seed)
        return ["\n".join(self.write(prefix, rng)) for _, prefix in contexts]


class TwoStageScriptedPolicy(ScriptedPolicy):
    """ScriptedPolicy that also samples in two stages (`hicra.mechanistic.policy.TwoStagePolicy`): the first line
    with its newline, then the rest from prefix + that line."""

    def continue_first_lines(self, contexts, seed):
        self.calls += 1
        rng = random.Random(seed)
        out = []
        for prompt, prefix in contexts:
            new = self.write(prefix, rng, limit=1)
            if not new or prefix.count("\n") + 1 == 5:  # nothing more, or the answer line: the response ends
                out.append(("".join(new), None))
            else:
                out.append((new[0] + "\n", (prompt, prefix + new[0] + "\n", prefix.count("\n"))))
        return out

    def continue_rest(self, handles, seed):
        self.calls += 1
        rng = random.Random(seed)  # the rest's lines are counted under the pool the try was drawn for
        return ["\n".join(self.write(context, rng, pool=pool)) for _, context, pool in handles]


class ScriptedTask:
    def problem_id(self, p):
        return p.id

    def prompt(self, p):
        return "q\n"

    def check(self, p, response):
        ok = answer_text(response) == "1"
        return CheckResult(float(ok), ok, None if ok else "planning")

    def final_answer(self, p, response):
        return answer_text(response)

    def is_answer_sentence(self, sentence):
        return sentence.startswith("so the answer is")


TAGGER = PlanningTagger(Lexicon(["let's try"]))


def _planted(adaptive: bool, n: int = 12, seed: int = 0):
    problems = [Prob(f"p{i}") for i in range(n)]
    return sentence_importance(ScriptedPolicy(), ScriptedTask(), problems, TAGGER,
                               AnchorsConfig(k=8, adaptive=adaptive, seed=seed))


@pytest.mark.parametrize("adaptive", [False, True])
def test_planted_anchor_is_found_and_nothing_else_matters(adaptive):
    rows, stats = _planted(adaptive)
    by_idx = {i: [r for r in rows if r["sentence_idx"] == i] for i in range(5)}
    assert len(rows) == 12 * 5
    # line 2 decides: keeping it gives its own outcome, any different line 2 gives the other one
    for r in by_idx[2]:
        assert r["class"] == "planning" and not r["fixed"]
        assert abs(r["importance"]) == 1.0 and r["tv_distance"] == 1.0
        assert r["acc_keep"] == (1.0 if "good" in r["sentence"] else 0.0)
    # after it, nothing changes the answer: exactly zero
    for r in by_idx[3]:
        assert r["class"] == "execution" and r["importance"] == 0.0 and r["tv_distance"] == 0.0
    # before it, only sampling noise (both arms draw line 2 afresh)
    assert abs(np.mean([r["importance"] for r in by_idx[0]])) < 0.2
    # the line the policy never varies, and the answer line (fixed once line 2 is), are reported fixed
    assert all(r["fixed"] and r["importance"] is None and r["n_resamples"] == 0 for r in by_idx[1] + by_idx[4])
    assert all(r["n_tries"] == 4 * 8 for r in by_idx[1])  # fixed only after all max_tries * K tries


class ParaphrasePolicy(ScriptedPolicy):
    """ScriptedPolicy whose decisive line 2 also varies in wording: "let's try the good way" or "let's try the
    good way now" (the same meaning), so a third of the regenerations that differ in text mean the same."""

    def continue_texts(self, contexts, seed):
        rng = random.Random(seed + 7)
        return [t if len(prefix.split("\n")) > 3 or "let's try" not in t else
                "\n".join(line + (" now" if line.startswith("let's try") and rng.random() < 0.5 else "")
                          for line in t.split("\n"))
                for (_, prefix), t in zip(contexts, super().continue_texts(contexts, seed), strict=True)]


class ParaphraseTask(ScriptedTask):
    def meaning(self, sentence):
        return sentence.removesuffix(" now")


@pytest.mark.parametrize("differ", ["meaning", "text"])
def test_resamples_that_only_reword_are_not_counterfactuals(differ):
    problems = [Prob(f"p{i}") for i in range(16)]
    rows, _ = sentence_importance(ParaphrasePolicy(), ParaphraseTask(), problems, TAGGER,
                                  AnchorsConfig(k=8, adaptive=False, differ=differ))
    line2 = [r for r in rows if r["sentence_idx"] == 2]
    assert line2 and not any(r["fixed"] for r in line2)
    mean_abs = np.mean([abs(r["importance"]) for r in line2])
    if differ == "meaning":  # every counted regeneration takes the other way: the anchor's full weight
        assert all(abs(r["importance"]) == 1.0 for r in line2)
    else:  # a third of the text-different regenerations only reword it: the anchor looks weaker than it is
        assert 0.4 < mean_abs < 0.9


def test_lab_meaning_identifies_paraphrases_of_one_move():
    from hicra.lab.tasks.language import PHRASES

    task = LabTask(None)
    a, b = PHRASES["pairing"][:2]
    assert task.meaning(a) == task.meaning("  " + b + " ") == "move:pairing"
    assert task.meaning(PHRASES["one-by-one"][0]) == "move:one-by-one"
    assert task.meaning("12+30=42") == "12+30=42" != task.meaning("12+30=43")
    with pytest.raises(ValueError, match="differ"):
        AnchorsConfig(differ="words").validate()


def test_pool_runs_keeps_runs_apart_and_matches_a_direct_mean():
    from hicra.mechanistic.anchors import pool_runs

    def rows(step, values):  # one planning and one execution sentence per problem
        return [{"step": step, "problem_id": f"p{i}", "class": c, "importance": v, "tv_distance": abs(v),
                 "fixed": False} for i, (vp, ve) in enumerate(values) for c, v in (("planning", vp), ("execution", ve))]

    run_a = rows(0, [(0.5, 0.1), (0.3, 0.1)]) + rows(10, [(0.2, 0.0)])
    run_b = rows(0, [(0.1, 0.3), (0.1, 0.1)])  # same problem ids, another run: other clusters
    pooled = pool_runs([run_a, run_b], n_boot=200)
    assert pooled["n_runs"] == 2 and list(pooled["steps"]) == [0] and pooled["steps_not_in_every_run"] == [10]
    s0 = pooled["steps"][0]["importance"]
    assert s0["planning"]["mean"] == pytest.approx((0.5 + 0.3 + 0.1 + 0.1) / 4)
    assert s0["planning"]["n_problems"] == 4  # (run, problem) clusters, not the 2 shared ids
    assert s0["gap_planning_minus_execution"]["mean"] == pytest.approx(0.25 - 0.15)


def test_distinct_runs_drops_exact_repeats_in_any_row_order():
    from hicra.mechanistic.anchors import distinct_runs

    a = [{"problem_id": "p1", "cycles": 2, "walk": [0, 1, 0]}, {"problem_id": "p2", "cycles": 0, "walk": [3]}]
    b = list(reversed(a))  # the same rows in another order: a repeat
    c = [dict(a[0]), {**a[1], "cycles": 1}]  # one value differs: a run of its own
    assert distinct_runs([a, b, c, a]) == [0, 2]
    assert distinct_runs([]) == []


def test_pool_runs_counts_runs_that_share_a_snapshot_once():
    from hicra.mechanistic.anchors import pool_runs

    def rows(step, values):
        return [{"step": step, "problem_id": f"p{i}", "class": c, "importance": v, "tv_distance": abs(v),
                 "fixed": False} for i, (vp, ve) in enumerate(values) for c, v in (("planning", vp), ("execution", ve))]

    warm = rows(0, [(0.5, 0.1), (0.3, 0.2), (0.4, 0.0)])  # two RL seeds from one warm start: identical step-0 rows
    seed0, seed1 = warm + rows(9, [(0.1, 0.1)] * 3), warm + rows(9, [(0.2, 0.0)] * 3)
    pooled = pool_runs([seed0, seed1], n_boot=300)
    assert pooled["duplicate_runs_dropped"] == {0: 1, 9: 0}
    assert pooled["steps"][0]["importance"]["planning"]["n_problems"] == 3  # not 6 copies
    assert pooled["steps"][9]["importance"]["planning"]["n_problems"] == 6
    alone = pool_runs([seed0], n_boot=300)["steps"][0]["importance"]
    assert pooled["steps"][0]["importance"]["gap_planning_minus_execution"] == alone["gap_planning_minus_execution"]


def test_adaptive_stopping_saves_draws_only_where_decided():
    rows_a, stats_a = _planted(adaptive=True)
    rows_f, stats_f = _planted(adaptive=False)
    # the decisive sentence is decided after the first round (4 per arm: 4/4 vs 0/4)
    assert all(r["n_resamples"] == 4 and r["n_keep"] == 4 for r in rows_a if r["sentence_idx"] == 2)
    # undecided sentences go on to K
    assert all(r["n_resamples"] == 8 for r in rows_a if r["sentence_idx"] == 3)
    assert all(r["n_resamples"] == 8 for r in rows_f if not r["fixed"])
    assert stats_a["draws"] < stats_f["draws"]


@pytest.mark.parametrize("adaptive", [False, True])
def test_two_stage_tries_measure_the_same_and_repeats_cost_one_line(adaptive):
    """Tries drawn only for a resampled arm go to their first line; only the used ones are continued. The planted
    answers come out the same as with whole continuations, and a fixed sentence's tries cost one line each beyond
    the whole continuations its predecessor's keep arm takes from the same prefix."""
    problems = [Prob(f"p{i}") for i in range(12)]
    cfg = AnchorsConfig(k=8, adaptive=adaptive)
    one_policy, two_policy = TwoStageScriptedPolicy(), TwoStageScriptedPolicy()
    one, one_stats = sentence_importance(one_policy, ScriptedTask(), problems, TAGGER, cfg, two_stage=False)
    two, two_stats = sentence_importance(two_policy, ScriptedTask(), problems, TAGGER, cfg)  # offered: used
    assert one_stats["first_line_draws"] == one_stats["completions"] == 0
    assert 0 < two_stats["completions"] < two_stats["first_line_draws"] <= two_stats["draws"]
    # what is planted comes out the same (line 0's importance and line 1's keep accuracy are sampling noise,
    # the tries a non-fixed line needs are random)
    for a, b in zip(one, two, strict=True):
        assert (a["problem_id"], a["sentence_idx"], a["fixed"]) == (b["problem_id"], b["sentence_idx"], b["fixed"])
        cols = ["importance", "tv_distance", "n_resamples", "n_keep", "acc_resampled"] + (["n_tries"] if a["fixed"]
                                                                                          else [])
        if a["sentence_idx"] > 0:
            assert {c: a[c] for c in cols} == {c: b[c] for c in cols}
    by_idx = {i: [r for r in two if r["sentence_idx"] == i] for i in range(5)}
    assert all(abs(r["importance"]) == 1.0 and r["tv_distance"] == 1.0 for r in by_idx[2])
    assert all(r["importance"] == 0.0 for r in by_idx[3])
    assert all(r["fixed"] and r["n_tries"] == 32 for r in by_idx[1] + by_idx[4])
    assert abs(np.mean([r["importance"] for r in by_idx[0]])) < 0.2
    # line 1 is fixed: its 32 tries from the prefix before it are whole 4-line continuations in one stage; in two
    # stages only the n_keep that line 0's keep arm takes are (every other try is its first line)
    assert one_policy.lines[1] == 12 * 32 * 4
    assert two_policy.lines[1] == sum(4 * r["n_keep"] + (32 - r["n_keep"]) for r in by_idx[0])
    assert two_policy.lines[1] < 0.5 * one_policy.lines[1]
    assert sum(two_policy.lines.values()) < 0.8 * sum(one_policy.lines.values())
    # deterministic for a seed
    again, _ = sentence_importance(TwoStageScriptedPolicy(), ScriptedTask(), problems, TAGGER, cfg)
    assert again == two
    with pytest.raises(ValueError, match="two_stage"):
        sentence_importance(ScriptedPolicy(), ScriptedTask(), problems, TAGGER, cfg, two_stage=True)


def test_anchors_deterministic_given_seed():
    assert _planted(True, n=4, seed=3)[0] == _planted(True, n=4, seed=3)[0]
    assert _planted(True, n=4, seed=3)[0] != _planted(True, n=4, seed=4)[0]


def test_cluster_bootstrap_means_and_gap():
    rows = [{"problem_id": "a", "class": "planning", "importance": 1.0},
            {"problem_id": "a", "class": "execution", "importance": 0.0},
            {"problem_id": "b", "class": "planning", "importance": 0.5},
            {"problem_id": "b", "class": "execution", "importance": 0.0},
            {"problem_id": "b", "class": "execution", "importance": None}]
    out = cluster_bootstrap(rows, "importance", n_boot=500)
    assert out["planning"]["mean"] == 0.75 and out["planning"]["n_problems"] == 2
    assert out["execution"]["mean"] == 0.0 and out["execution"]["n_sentences"] == 2
    lo, hi = out["planning"]["interval"]
    assert 0.5 <= lo <= 0.75 <= hi <= 1.0
    assert out["gap_planning_minus_execution"]["mean"] == 0.75
    assert out["other"]["mean"] is None and out["other"]["interval"] is None


def test_gap_interval_needs_both_classes_in_two_problems():
    # planning in one problem of ten: its mean exists, but no interval for it or for the gap
    rows = [{"problem_id": f"p{k}", "class": "execution", "importance": 0.1 * k} for k in range(10)]
    rows.append({"problem_id": "p3", "class": "planning", "importance": 0.9})
    out = cluster_bootstrap(rows, "importance", n_boot=300)
    assert out["planning"]["interval"] is None
    assert out["gap_planning_minus_execution"]["mean"] == pytest.approx(0.9 - 0.45)
    assert out["gap_planning_minus_execution"]["interval"] is None
    rows.append({"problem_id": "p7", "class": "planning", "importance": 0.7})  # two problems: an interval
    assert cluster_bootstrap(rows, "importance", n_boot=300)["gap_planning_minus_execution"]["interval"] is not None


def test_null_abs_importance_against_enumeration():
    import itertools

    def brute(c1, n1, c2, n2):  # every way to deal the c1 + c2 correct draws over the n1 + n2 slots, equally likely
        c, slots = c1 + c2, n1 + n2
        deals = [set(d) for d in itertools.combinations(range(slots), c)]
        return sum(abs(len(d & set(range(n1))) / n1 - len(d - set(range(n1))) / n2) for d in deals) / len(deals)

    for c1, n1, c2, n2 in ((4, 8, 0, 1), (3, 4, 0, 2), (3, 3, 0, 3), (3, 5, 1, 5), (0, 4, 0, 4)):
        assert null_abs_importance(c1 / n1, n1, c2 / n2, n2) == pytest.approx(brute(c1, n1, c2, n2), abs=1e-12)
    assert null_abs_importance(1.0, 4, 1.0, 4) == 0.0


def test_excess_abs_importance_removes_the_small_arm_inflation():
    # no sentence matters (both arms drawn at the same accuracy); class A gets one differing draw, class B eight.
    # |importance| then differs by class by chance alone; the excess does not.
    rng = np.random.default_rng(0)
    rows = []
    for k in range(400):
        for cls, n2 in (("planning", 1), ("execution", 8)):
            c1, c2 = rng.binomial(8, 0.5), rng.binomial(n2, 0.5)
            rows.append({"problem_id": f"p{k}", "class": cls, "fixed": False, "importance": c1 / 8 - c2 / n2,
                         "acc_keep": c1 / 8, "n_keep": 8, "acc_resampled": c2 / n2, "n_resamples": n2,
                         "tv_distance": None})
    out = summarize_step(rows, n_boot=300)
    assert out["abs_importance"]["planning"]["mean"] - out["abs_importance"]["execution"]["mean"] > 0.2
    gap = out["excess_abs_importance"]["gap_planning_minus_execution"]
    assert abs(gap["mean"]) < 0.05 and gap["interval"][0] < 0 < gap["interval"][1]


def test_tv_and_agresti_caffo():
    assert tv_distance(["1", "1", None], ["1", "2", "2"]) == pytest.approx(2 / 3)
    assert tv_distance(["a"], ["a"]) == 0.0
    lo, hi = agresti_caffo(4, 4, 0, 4)
    assert lo > 0 and hi <= 1
    lo, hi = agresti_caffo(2, 4, 2, 4)
    assert lo < 0 < hi
    # against the closed form: p = (c+1)/(n+2), z = 1.959964
    p1, p2 = 6 / 10, 3 / 10
    se = ((p1 * (1 - p1) + p2 * (1 - p2)) / 10) ** 0.5
    assert agresti_caffo(5, 8, 2, 8) == pytest.approx((p1 - p2 - 1.959964 * se, p1 - p2 + 1.959964 * se), abs=1e-6)


# --- sentences ------------------------------------------------------------------------------------------------

def test_split_classes_and_prefixes():
    text = "let's try 3+4=7\n\n  5*2=10  \nhmm\nso the answer is 7"
    s = split_sentences(text)
    assert [x.text for x in s] == ["let's try 3+4=7", "5*2=10", "hmm", "so the answer is 7"]
    assert all(text[x.start:x.end] == x.text for x in s)
    b = boundaries(text, s)
    assert text[:b[1]] == "let's try 3+4=7\n\n  " and b[-1] == len(text)
    assert [classify(x.text, TAGGER) for x in s] == ["planning", "execution", "other", "other"]
    lab = LabTask(None)
    v2 = split_sentences("split it into tens and ones\n23*30=690\nhmm\nso the answer is 7")
    assert [classify(x.text, PlanningTagger("lab"), lab.is_answer_sentence) for x in v2] == [
        "planning", "execution", "other", "answer"]  # the frozen mined lab lexicon; answer lines come first
    assert first_sentence("\n 8-5=3 \nrest") == "8-5=3"
    free = split_sentences("First, 12 * 7 = 84. Then we stop!\nDone", "sentences")
    assert [x.text for x in free] == ["First, 12 * 7 = 84.", "Then we stop!", "Done"]
    assert classify(free[0].text, TAGGER) == "execution"


# --- planted graphs: walks with a known number of revisits ----------------------------------------------------

@pytest.mark.parametrize("walk, cycles, nodes, diameter", [
    ([0, 1, 2, 1, 3, 0, 0], 2, 4, 2),  # revisits 1 and 0; the repeated 0 at the end is no step
    ([5, 5, 5], 0, 1, 0),
    ([0, 1, 2, 3], 0, 4, 3),  # a path: no cycle, diameter = length
    ([0, 1, 0, 1, 0, 1], 4, 2, 1),  # back and forth: every step after the second is a revisit
    ([], 0, 0, 0),
])
def test_walk_metrics_planted(walk, cycles, nodes, diameter):
    assert walk_metrics(walk) == {"n_nodes": nodes, "cycles": cycles, "diameter": diameter}


def test_walk_metrics_random_walks_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        walk = rng.integers(0, 6, size=rng.integers(1, 20)).tolist()
        w = collapse(walk)
        revisits = sum(w[t] in w[:t] for t in range(len(w)))
        assert walk_metrics(walk)["cycles"] == revisits
        assert walk_metrics(walk)["n_nodes"] == len(set(walk))


def test_small_world_null_when_too_small_and_value_otherwise():
    assert small_world(pooled_graph([[0, 1, 2]]))[0] is None
    assert "too small" in small_world(pooled_graph([[0, 1, 2]]))[1]
    # a ring with chords has triangles: omega is defined and in [-1, 1]-ish
    ring = [[i, (i + 1) % 12] for i in range(12)] + [[i, (i + 2) % 12] for i in range(0, 12, 3)]
    value, reason = small_world(pooled_graph(ring), niter=1, nrand=2, seed=0)
    assert reason is None and -1.5 < value < 1.5
    assert small_world(pooled_graph(ring), seed=0) == small_world(pooled_graph(ring), seed=0)


def test_small_world_interval_resamples_problems():
    # 12 problems, each a walk of a ring with a chord: the pooled graph is a ring with chords, omega defined
    ring = [[i, (i + 1) % 12, (i + 3) % 12] for i in range(12)]
    problems = [f"p{i}" for i in range(12)]
    out = small_world_interval(ring, problems, n_boot=40, seed=0)
    value, _ = small_world(pooled_graph(ring), seed=0)
    assert out["n_boot"] == 40 and 0 <= out["n_null"] <= 20
    lo, hi = out["interval"]
    assert lo <= hi and lo - 0.5 < value < hi + 0.5
    assert small_world_interval(ring, problems, n_boot=40, seed=0) == out  # seeded
    # one problem holds every walk: no problem-level resampling is possible
    assert small_world_interval(ring, ["p"] * 12, n_boot=40)["interval"] is None
    # walks too small for omega in every replicate: no interval, and the nulls are counted
    tiny = small_world_interval([[0, 1]] * 4, problems[:4], n_boot=10)
    assert tiny == {"interval": None, "n_boot": 10, "n_null": 10}
    with pytest.raises(ValueError, match="3 walks but 2"):
        small_world_interval(ring[:3], problems[:2])


def test_cluster_states_planted_clusters():
    from hicra.mechanistic.graphs import cluster_states

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 10
    truth = [0, 1, 0, 2, 1, 0]
    states = centers[truth] + rng.normal(size=(6, 8)) * 0.01
    labels = cluster_states(states, k=3, seed=0)
    # same partition as the truth (labels may be renamed): the walk's revisits survive clustering
    assert walk_metrics(labels.tolist()) == walk_metrics(truth)


# --- a real (tiny) model in a run directory ------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from hicra.dynamics.records import write_run_info
    from hicra.fileio import write_json
    from hicra.lab.model import build_model, format_prompt, train_tokenizer
    from hicra.lab.sft import build_corpus, eval_problems
    from hicra.lab.tasks import CorpusKnobs, TaskMix

    tasks = [{"family": "series", "max_start": 9, "max_step": 2, "counts": [2, 3]}, {"family": "product", "a_max": 9}]
    task = TaskMix(tasks)
    pairs = build_corpus(task, 200, CorpusKnobs(strategy_prior="blind-common"), seed=0)  # the corpus it was tuned on
    tokenizer = train_tokenizer([format_prompt(p.question) + t for p, t in pairs], vocab_size=300)
    root = tmp_path_factory.mktemp("run")
    for step in (0, 10):
        model = build_model(tokenizer, size="1m", seed=step)
        model.save_pretrained(root / "checkpoints" / f"step_{step:06d}")
        tokenizer.save_pretrained(root / "checkpoints" / f"step_{step:06d}")
    (root / "checkpoints" / "last.pt").write_bytes(b"resumable state, not a snapshot")
    config = {"tasks": tasks, "n_eval": 16, "seed": 0, "max_new_tokens": 24, "temperature": 1.0, "heldout_share": 0.1}
    write_run_info(root, {"algorithm": "grpo", "lexicon": "lab", "config": config})
    ids = [p.id for p in eval_problems(task, 16)]
    write_json(root / "eval.json", {"heldout_ids": ids[::-1]})
    return root


def _cli(*args):
    from hicra.cli import main

    return main(list(args))


def test_anchors_on_a_run_directory(run_dir, capsys):
    (run_dir / "summary.json").write_text(json.dumps({"phases": {"version": 2, "order": "execution-first",
                                                                "consolidation_end_step": 0}}))
    assert _cli("anchors", str(run_dir), "--n", "3", "--k", "2", "--quiet", "--n-boot", "100") == 0
    table = pq.read_table(run_dir / "anchors.parquet")
    assert table.column_names[:7] == ["step", "problem_id", "sentence_idx", "class", "importance", "tv_distance",
                                      "n_resamples"]
    rows = table.to_pylist()
    assert {r["step"] for r in rows} == {0, 10}
    ids = json.loads((run_dir / "eval.json").read_text())["heldout_ids"]
    assert {r["problem_id"] for r in rows} <= set(ids[:3])  # the first N in eval.json's order
    assert all((r["importance"] is None) == r["fixed"] for r in rows)
    assert all(r["class"] in ("planning", "execution", "answer", "other") for r in rows)
    summary = json.loads((run_dir / "anchors.json").read_text())
    assert set(summary["steps"]) == {"0", "10"} and summary["settings"]["k"] == 2
    assert (run_dir / "anchors.png").stat().st_size > 0
    assert summary["by_phase"]["before"]["steps"] == [0] and summary["by_phase"]["after"]["steps"] == [10]
    assert "hicra anchors" in (run_dir / "report.html").read_text()
    html = (run_dir / "report.html").read_text()
    assert "before step 0" in html and "excess |importance|" in html and "change after - before" in html
    assert set(summary["by_phase"]["change"]) == {"abs_importance", "excess_abs_importance"}
    # deterministic: a second run writes the same rows (and says, even under --quiet, that step 0 is replaced)
    capsys.readouterr()
    assert _cli("anchors", str(run_dir), "--steps", "10", "--n", "3", "--k", "2", "--quiet", "--n-boot", "100") == 0
    assert "holds steps [0] that this call does not measure" in capsys.readouterr().err
    assert pq.read_table(run_dir / "anchors.parquet").to_pylist() == [r for r in rows if r["step"] == 10]


def test_graphs_on_a_run_directory(run_dir):
    assert _cli("graphs", str(run_dir), "--steps", "10", "--n", "4", "--clusters", "4", "--quiet",
                "--n-boot", "100") == 0
    rows = pq.read_table(run_dir / "graphs.parquet").to_pylist()
    assert len(rows) == 8 and {r["step"] for r in rows} == {10}
    for r in rows:
        assert r["n_sentences"] == len(r["walk"])
        assert walk_metrics(r["walk"]) == {"n_nodes": r["n_nodes"], "cycles": r["cycles"],
                                           "diameter": r["diameter"]}
    summary = json.loads((run_dir / "graphs.json").read_text())["steps"]["10"]
    assert (summary["small_world"] is None) == (summary["small_world_null_reason"] is not None)
    if summary["small_world"] is None:
        assert summary["small_world_interval"] is None
    assert set(summary["small_world_boot"]) == {"n_boot", "n_null"}
    assert summary["cycles"]["interval"][0] <= summary["cycles"]["mean"] <= summary["cycles"]["interval"][1]
    html = (run_dir / "report.html").read_text()
    assert "hicra graphs" in html and html.count("<!-- hicra:mechanistic -->") == 1


def test_sentence_end_states_match_a_single_forward(run_dir):
    """Batched, left-padded hidden states equal those of one unpadded forward per response."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.mechanistic.graphs import sentence_end_states

    path = run_dir / "checkpoints" / "step_000000"
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    prompts = [tok("sum 1 to 4\n")["input_ids"], tok("reach 12 from 3 4\n")["input_ids"]]
    texts = ["let's add them one by one\n1+2=3\nso the answer is 10", "3*4=12\nso the answer is 12"]
    batched = sentence_end_states(model, tok, prompts, texts, layer=-1)
    for ids, text, got in zip(prompts, texts, batched, strict=True):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ends = [max(i for i, (s, _) in enumerate(enc["offset_mapping"]) if s < x.end) for x in split_sentences(text)]
        with torch.no_grad():
            h = model(input_ids=torch.tensor([ids + enc["input_ids"]]), output_hidden_states=True).hidden_states[-1]
        assert np.allclose(got, h[0, [len(ids) + e for e in ends]].numpy(), atol=1e-5)
    # a response without a sentence (EOS at once, or only blank lines) has no states; it used to crash the batch
    empty = sentence_end_states(model, tok, prompts, ["\n", texts[1]], layer=-1)
    assert empty[0].shape == (0, model.config.hidden_size) and np.allclose(empty[1], batched[1], atol=1e-5)


def test_device_flag_refuses_cuda_without_cuda(run_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert _cli("anchors", str(run_dir), "--device", "cuda", "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert "--device" in err and "CUDA is not available" in err and len(err.splitlines()) == 1


def test_sampling_on_cuda_matches_the_cpu(run_dir):
    """Greedy draws from a model on the GPU equal those on the CPU (tokens are drawn on the CPU from the same
    logits, up to float rounding of the forward); runs where CUDA exists (the lent GPU machine)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.sampling import sample

    if not torch.cuda.is_available():
        pytest.skip("no CUDA on this machine")
    path = run_dir / "checkpoints" / "step_000000"
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    prompts = [tok("sum 1 to 4\n")["input_ids"], tok("sum 3 to 9 by 2\n")["input_ids"]] * 3
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    cpu = sample(model, prompts, 24, tok.eos_token_id, pad, greedy=True, backend="hf", share_prompts=True)
    gpu = sample(model.to("cuda"), prompts, 24, tok.eos_token_id, pad, greedy=True, share_prompts=True)
    assert gpu.response_ids.device.type == "cpu"
    assert torch.equal(cpu.response_ids, gpu.response_ids)
    assert torch.allclose(cpu.logprobs, gpu.logprobs, atol=1e-3)


@pytest.mark.parametrize("args, needle", [
    (["anchors", "{missing}"], "not a run directory"),
    (["anchors", "{run}", "--steps", "7"], "no snapshot for step 7"),
    (["graphs", "{run}", "--layer", "9", "--n", "1"], "layer 9 out of range"),
    (["anchors", "{run}", "--n", "0"], "--n"),
    (["graphs", "{run}", "--device", "gpu0"], "--device"),
    (["graphs", "{run}", "--omega-boot", "-1"], "--omega-boot"),
])
def test_bad_input_one_line_exit_2(run_dir, tmp_path, capsys, args, needle):
    args = [a.format(missing=tmp_path / "nope", run=run_dir) for a in args]
    assert _cli(*args, "--quiet") == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_cli_lists_the_verbs():
    proc = subprocess.run([sys.executable, "-m", "hicra.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "anchors" in proc.stdout and "graphs" in proc.stdout


def test_bad_checkpoint_name_and_heldout_id(run_dir, tmp_path):
    import shutil

    from hicra.errors import InputError
    from hicra.mechanistic.run import checkpoint_steps
    from hicra.mechanistic.tasks import lab_heldout_problems

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    (copy / "checkpoints" / "step_abc").mkdir()
    with pytest.raises(InputError, match="step_NNNNNN"):
        checkpoint_steps(copy)
    (copy / "eval.json").write_text(json.dumps({"heldout_ids": ["series:1:999"]}))  # not a:d:n
    with pytest.raises(InputError, match="heldout_ids"):
        lab_heldout_problems(copy)


def test_hf_policy_keeps_the_response_budget_and_is_deterministic(run_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.mechanistic.policy import HFPolicy

    path = run_dir / "checkpoints" / "step_000010"
    tok = AutoTokenizer.from_pretrained(path)
    policy = HFPolicy(AutoModelForCausalLM.from_pretrained(path), tok, max_new_tokens=20)
    prefix = "let's add them one by one\n"
    n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"])
    assert n_prefix < 20 <= 2 * n_prefix
    contexts = [("sum 1 to 4\n", prefix)] * 4 + [("sum 1 to 4\n", prefix * 2), ("sum 1 to 4\n", "")]
    out = policy.continue_texts(contexts[:4], seed=5)
    assert 0 < policy.tokens_sampled <= 4 * (20 - n_prefix)  # sampled token ids, prefix + continuation <= 20
    assert policy.continue_texts(contexts[4:5], seed=5) == [""]  # the prefix alone spends the budget
    out = policy.continue_texts(contexts, seed=5)
    assert out == policy.continue_texts(contexts, seed=5) and out != policy.continue_texts(contexts, seed=6)


class _TokenSampler:
    """Stands in for `hicra.lab.sampling.sample`: every row draws ids from `choices` (uniformly, with the
    generator) until a stop id, eos or `max_new_tokens`; it records the inputs it is given."""

    def __init__(self, choices):
        self.choices, self.inputs = choices, []

    def __call__(self, model, prompts, max_new_tokens, eos_id, pad_id, generator=None, temperature=1.0,
                 stop_ids=None, share_prompts=False):
        import torch

        self.inputs.append([list(p) for p in prompts])
        stops, rows = {eos_id, *(stop_ids or ())}, []
        for _ in prompts:
            ids = []
            while len(ids) < max_new_tokens and (not ids or ids[-1] not in stops):
                ids.append(self.choices[int(torch.randint(len(self.choices), (1,), generator=generator))])
            rows.append(ids)
        return SimpleNamespace(response_lists=lambda: rows)


@pytest.mark.parametrize("line_chunk", [48, 2])
def test_hf_policy_two_stages_stop_at_merged_newlines_resume_by_ids_and_keep_the_budget(monkeypatch, line_chunk):
    """A byte-level BPE merges newlines with what precedes them (".\n", ".\n\n"): every such token ends the first
    stage once a non-blank line precedes it, a leading blank line does not, and the rest continues from the
    sampled ids themselves within the response budget. Lines longer than the sampler's piece (`line_chunk`) are
    sampled on."""
    import hicra.lab.sampling
    from hicra.lab.model import train_tokenizer
    from hicra.mechanistic.policy import HFPolicy, two_stage

    tok = train_tokenizer(["we add them.\nthen we stop.\n\nso the answer is 3.",
                           "first the tens.\nthen the ones.\nso the answer is 7."] * 20, vocab_size=300)
    merged = [tok.convert_tokens_to_ids(t) for t in tok.tokenize(".\n\nthen")]
    assert tok.decode(merged[:1]) == ".\n\n"  # the newline is merged with the full stop before it
    nl, dot_nl = tok.convert_tokens_to_ids(tok.tokenize("\n"))[0], merged[0]
    words = tok("we add", add_special_tokens=False)["input_ids"]
    sampler = _TokenSampler([nl, dot_nl, *words, *words, tok.eos_token_id])
    monkeypatch.setattr(hicra.lab.sampling, "sample", sampler)
    policy = HFPolicy(None, tok, max_new_tokens=12)
    policy.line_chunk = line_chunk
    assert two_stage(policy) and {nl, dot_nl} <= set(policy.newline_ids())
    assert all("\n" in tok.decode([i]) for i in policy.newline_ids()) and words[0] not in policy.newline_ids()
    prompt, prefix = "q\n", "we add them.\n"
    base = policy.encode_prompt(prompt) + tok(prefix, add_special_tokens=False)["input_ids"]
    budget = 12 - (len(base) - len(policy.encode_prompt(prompt)))
    contexts = [(prompt, prefix)] * 60
    first = policy.continue_first_lines(contexts, seed=3)
    assert first == policy.continue_first_lines(contexts, seed=3) != policy.continue_first_lines(contexts, seed=4)
    paused = [(text, h) for text, h in first if h is not None]
    assert paused and any(h is None for _, h in first)
    assert any(text.startswith("\n") for text, _ in paused)  # a blank line first: sampled on to a real line
    assert {h.ids[-1] for _, h in paused} == {nl, dot_nl}  # either newline token ends the first stage
    for text, h in paused:
        assert text.endswith("\n") and text[:text.rstrip("\n").rfind("\n") + 1].strip() == ""
        assert text.strip() and list(h.ids[:len(base)]) == base and tok.decode(h.ids[len(base):]) == text
        assert h.budget == budget - (len(h.ids) - len(base)) >= 1
    for text, h in first:
        if h is None:  # ended: by eos, or the budget is spent
            assert "\n" not in text.strip() and (len(tok(text, add_special_tokens=False)["input_ids"]) <= budget)
    # the rest starts from the very ids sampled, and never goes past the budget
    before = policy.tokens_sampled
    rests = policy.continue_rest([h for _, h in paused], seed=5)
    assert sorted(sampler.inputs[-1]) == sorted(list(h.ids) for _, h in paused)
    assert policy.tokens_sampled - before <= sum(h.budget for _, h in paused)
    for (_, h), rest in zip(paused, rests, strict=True):
        n0 = policy.tokens_sampled
        policy.continue_rest([h], seed=6)
        assert policy.tokens_sampled - n0 <= h.budget
        assert isinstance(rest, str)
    assert policy.continue_first_lines([(prompt, prefix * 6)], seed=1) == [("", None)]  # no budget left


@pytest.mark.parametrize("backend", ["fast", "hf"])
def test_sampler_shares_the_prompt_forward_of_repeated_prompts(run_dir, backend):
    """`share_prompts` runs each distinct prompt once and copies its cache: the same tokens and log-probs (up to
    float rounding) as running every row, for both decoders, with stops and rows of other prompts mixed in."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.sampling import sample

    path = run_dir / "checkpoints" / "step_000010"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    a, b = tok("sum 1 to 4\nlet's")["input_ids"], tok("reach 12 from 3 4\n")["input_ids"]
    prompts = [a, b, a, a, b, tok("3*4=12\n")["input_ids"], a]
    stops = tok("\n", add_special_tokens=False)["input_ids"]
    runs = [sample(model, prompts, 16, tok.eos_token_id, tok.pad_token_id, generator=torch.Generator().manual_seed(3),
                   backend=backend, stop_ids=stops, share_prompts=share) for share in (False, True)]
    assert runs[0].response_lists() == runs[1].response_lists()
    assert torch.allclose(runs[0].logprobs, runs[1].logprobs, atol=1e-5)
    assert torch.equal(runs[0].truncated, runs[1].truncated)


def test_math_task_adapter_grades_with_math_verify():
    pytest.importorskip("math_verify")
    from hicra.mechanistic.tasks import MathTask

    class NoChat:
        chat_template = None

    task = MathTask(NoChat())
    p = {"id": "q1", "problem": "What is 6*7?", "answer": "42"}
    assert task.prompt(p).startswith("What is 6*7?")
    assert task.check(p, "6*7 = 42, so \\boxed{42}.").correct and task.final_answer(p, "\\boxed{42}") == "42"
    wrong = task.check(p, "I think \\boxed{41}")
    assert not wrong.correct and task.final_answer(p, "I think \\boxed{41}") == "41"
    assert task.check(p, "no idea").error_type == "format" and task.final_answer(p, "no idea") is None
    assert task.is_answer_sentence("so \\boxed{42}.") and not task.is_answer_sentence("6*7 = 42")


def test_report_block_is_replaced_not_duplicated(run_dir, tmp_path):
    """Self-contained: its own copy of the run with its own graphs results (no reliance on other tests' order)."""
    import shutil

    from hicra.mechanistic.report import BEGIN, END, splice_sections

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("anchors*", "graphs*", "report.html"))
    assert _cli("graphs", str(run), "--steps", "10", "--n", "2", "--clusters", "3", "--quiet", "--n-boot", "50") == 0
    page = "<html><body><h1>dynamics</h1></body></html>"
    once = splice_sections(page, run)
    assert once.count(BEGIN) == 1 and once.index(END) < once.index("</body>") and "<h1>dynamics</h1>" in once
    assert splice_sections(once, run) == once
    empty = tmp_path / "empty"
    empty.mkdir()
    assert splice_sections(once, empty) == page  # a directory without results removes the block
    # a damaged results file is named in one line (it was a KeyError / JSONDecodeError traceback, after `hicra
    # anchors` had measured every checkpoint)
    from hicra.errors import InputError

    graphs = json.loads((run / "graphs.json").read_text())
    for damaged, message in ((json.dumps({**graphs, "steps": {"10": {}}}), "not a complete graphs.json (KeyError"),
                             ("{'no", "bad JSON"), ("[1]", "not a JSON object")):
        (run / "graphs.json").write_text(damaged)
        with pytest.raises(InputError, match=re.escape(message)) as exc:
            splice_sections(page, run)
        assert str(exc.value).startswith(str(run / "graphs.json"))


def test_by_phase_pools_steps_on_each_side_of_the_consolidation_end():
    from hicra.mechanistic.anchors import by_phase

    rows = [{"step": s, "problem_id": p, "class": c, "importance": v}
            for s, scale in ((0, 0.1), (10, 0.1), (20, 0.5)) for p in ("a", "b")
            for c, v in (("planning", scale), ("execution", -0.1))]
    out = by_phase(rows, 10, n_boot=200)
    assert out["before"]["steps"] == [0, 10] and out["after"]["steps"] == [20]
    assert out["before"]["abs_importance"]["gap_planning_minus_execution"]["mean"] == pytest.approx(0.0)
    assert out["after"]["abs_importance"]["gap_planning_minus_execution"]["mean"] == pytest.approx(0.4)
    assert out["before"]["abs_importance"]["planning"]["n_problems"] == 4  # (step, problem) clusters
    assert by_phase(rows, None) is None and by_phase(rows, 30) is None
    assert out["change"]["abs_importance"]["mean"] == pytest.approx(0.4)


def test_phase_change_pools_runs_each_at_its_own_end_and_pairs_problems():
    from hicra.mechanistic.anchors import phase_change

    rng = np.random.default_rng(0)

    def run(end, grow, n_problems=12):
        rows = []
        for p in range(n_problems):
            offset = rng.normal(0, 0.3)  # a problem-level shift shared by both sides: pairing cancels it
            for step in (0, 20, 40, 80):
                after = step > end
                rows += [{"step": step, "problem_id": f"p{p}", "class": "planning",
                          "importance": offset + (grow if after else 0.0) + rng.normal(0, 0.02)},
                         {"step": step, "problem_id": f"p{p}", "class": "execution",
                          "importance": offset + rng.normal(0, 0.02)},
                         {"step": step, "problem_id": f"p{p}", "class": "answer", "importance": 5.0}]
        return rows

    grown = phase_change([(run(20, 0.3), 20), (run(40, 0.3), 40)], "importance", n_boot=500)
    assert grown["n_runs"] == 2 and grown["n_clusters"] == 24
    assert [r["before"] for r in grown["runs"]] == [[0, 20], [0, 20, 40]]
    assert grown["change"]["mean"] == pytest.approx(0.3, abs=0.02)
    assert grown["change"]["interval"][0] > 0.2  # the problem offsets (SD 0.3) cancel in the paired change
    flat = phase_change([(run(20, 0.0), 20), (run(40, 0.0), 40)], "importance", n_boot=500)
    lo, hi = flat["change"]["interval"]
    assert lo < 0 < hi and hi - lo < 0.1
    # the arms' comparison: the difference of changes, with an interval from independent resamples
    from hicra.mechanistic.anchors import change_difference

    d = change_difference(flat, grown)
    assert d["mean"] == pytest.approx(grown["change"]["mean"] - flat["change"]["mean"])
    assert 0.2 < d["interval"][0] < d["mean"] < d["interval"][1] < 0.4
    # a shared step-0 snapshot (identical rows in two runs) counts once, in the first run
    base = run(20, 0.3)
    twin = [r for r in base if r["step"] == 0] + [{**r, "importance": r["importance"] + 0.01}
                                                  for r in run(20, 0.3) if r["step"] > 0]
    shared = phase_change([(base, 20), (twin, 20)], "importance", n_boot=200)
    assert shared["n_runs"] == 2 and shared["n_clusters"] == 12  # one cluster per problem for the two runs
    swapped = phase_change([(twin, 20), (base, 20)], "importance", n_boot=200)
    assert swapped["change"]["mean"] == pytest.approx(shared["change"]["mean"])  # the order of the runs is moot,
    assert swapped["change"]["interval"] == pytest.approx(shared["change"]["interval"])  # the interval's too
    third = run(40, 0.1)
    orders = [phase_change(list(o), "importance", n_boot=200)["change"]["interval"]
              for o in ([(base, 20), (twin, 20), (third, 40)], [(third, 40), (twin, 20), (base, 20)])]
    assert orders[0] == pytest.approx(orders[1])
    # a class present in one cluster only on a side: no interval for that side (nor the change), as cluster_bootstrap
    lone = [r for r in base if not (r["class"] == "planning" and r["step"] > 20 and r["problem_id"] != "p0")]
    thin = phase_change([(lone, 20)], "importance", n_boot=200)
    assert thin["after"]["interval"] is None and thin["change"]["interval"] is None
    assert thin["before"]["interval"] is not None
    by_hand = phase_change([(base + [r for r in twin if r["step"] > 0], 20)], "importance", n_boot=200)
    assert shared["change"]["mean"] == pytest.approx(by_hand["change"]["mean"])  # step 0 counted once
    # a run with no checkpoint after its end takes no part, and a run sharing its step 0 still does
    early_only = phase_change([(base, 90), (twin, 20)], "importance", n_boot=200)
    assert early_only["n_runs"] == 1 and early_only["runs"][0]["run"] == 1
    alone = phase_change([(twin, 20)], "importance", n_boot=200)
    assert early_only["change"]["mean"] == pytest.approx(alone["change"]["mean"])
    # a run whose end leaves no checkpoint after it adds nothing; with none left there is no answer
    assert phase_change([(run(80, 0.3), 80)], "importance") is None
    assert phase_change([(run(20, 0.3), 20), (run(80, 0.0), 80)], "importance", n_boot=200)["n_runs"] == 1


# ==============================================================================================================
# --- robustness of the run-directory verbs and benchmarks/mechanistic_runs.py (branch h16b) ------------------
# ==============================================================================================================

BENCH_RUNS = __import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks" / "mechanistic_runs.py"


def _copy_run(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def _cli_rc(*args):
    """`_cli`, with argparse's own exits turned into their code."""
    try:
        return _cli(*args)
    except SystemExit as exc:
        return exc.code


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _no_measuring(monkeypatch):
    """Make any measuring fail the test: bad snapshots must be found before the first step is measured."""
    from hicra.mechanistic import anchors as A
    from hicra.mechanistic import graphs as G

    def boom(*a, **k):
        raise AssertionError("measured before every snapshot was checked")

    monkeypatch.setattr(A, "sentence_importance", boom)
    monkeypatch.setattr(G, "reasoning_graphs", boom)


@pytest.mark.parametrize("verb", ["anchors", "graphs"])
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty_folder", "no_weights"])
def test_broken_later_snapshot_fails_up_front_and_keeps_outputs(run_dir, tmp_path, capsys, monkeypatch, verb,
                                                                damage):
    copy = _copy_run(run_dir, tmp_path)
    snap = copy / "checkpoints" / "step_000010"
    weights = snap / "model.safetensors"
    if damage == "garbage":
        weights.write_bytes(b"this is not a safetensors file")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-64])
    elif damage == "no_weights":
        weights.unlink()
    else:
        for f in snap.iterdir():
            f.unlink()
    (copy / f"{verb}.parquet").write_bytes(b"earlier output")
    _no_measuring(monkeypatch)
    assert _cli_rc(verb, str(copy), "--n", "1", "--quiet") == 2
    err = _one_line(capsys)
    assert "step_000010" in err and "Traceback" not in err
    assert (copy / f"{verb}.parquet").read_bytes() == b"earlier output"


def test_load_snapshot_names_the_folder_of_corrupt_weights(run_dir, tmp_path):
    from hicra.errors import InputError
    from hicra.mechanistic.run import load_snapshot

    copy = _copy_run(run_dir, tmp_path)
    snap = copy / "checkpoints" / "step_000000"
    (snap / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}")  # a header, no tensors
    with pytest.raises(InputError, match="step_000000.*cannot load"):
        load_snapshot(snap, copy, {})


@pytest.mark.parametrize("key, value", [("temperature", "hot"), ("temperature", 0), ("temperature", True),
                                        ("max_new_tokens", "many"), ("max_new_tokens", 0), ("max_new_tokens", 2.5),
                                        ("threads", -1), ("threads", "4")])
def test_bad_run_config_sampling_fields_one_line(run_dir, tmp_path, capsys, monkeypatch, key, value):
    copy = _copy_run(run_dir, tmp_path)
    info = json.loads((copy / "run.json").read_text())
    info["config"][key] = value
    (copy / "run.json").write_text(json.dumps(info))
    _no_measuring(monkeypatch)
    assert _cli_rc("anchors", str(copy), "--n", "1", "--quiet") == 2
    err = _one_line(capsys)
    assert "run.json" in err and f"config.{key}" in err


def test_flags_override_a_bad_run_config_value(run_dir, tmp_path, monkeypatch):
    """A run.json value the flag replaces is not used, so it is not an error."""
    from hicra.mechanistic import run as R

    copy = _copy_run(run_dir, tmp_path)
    info = json.loads((copy / "run.json").read_text())
    info["config"]["temperature"] = "hot"
    (copy / "run.json").write_text(json.dumps(info))
    monkeypatch.setattr(R, "_check_snapshots", lambda *a: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError, match="stop"):  # got past the settings
        R.run_anchors(copy, [0], 1, AnchorsConfig(k=1), temperature=0.7, progress=False, log=lambda *a: None)


@pytest.mark.parametrize("args, needle", [
    (["anchors", "{run}", "--threads", "-1"], "--threads"),
    (["anchors", "{run}", "--threads", "0"], "--threads"),
    (["anchors", "{run}", "--k", "0"], "--k"),
    (["anchors", "{run}", "--max-tries", "0"], "--max-tries"),
    (["anchors", "{run}", "--round", "10"], "--round"),
    (["anchors", "{run}", "--round", "0"], "--round"),
    (["anchors", "{run}", "--level", "1.5"], "--level"),
    (["anchors", "{run}", "--steps", "a,b"], "--steps"),
    (["anchors", "{run}", "--steps", "-3"], "--steps"),
    (["anchors", "{run}", "--seed", "-1"], "--seed"),
    (["graphs", "{run}", "--clusters", "0"], "--clusters"),
    (["graphs", "{run}", "--samples", "0"], "--samples"),
    (["graphs", "{run}", "--niter", "0"], "--niter"),
    (["graphs", "{run}", "--nrand", "0"], "--nrand"),
    (["graphs", "{run}", "--steps", ","], "--steps"),
])
def test_bad_flags_named_as_typed(run_dir, capsys, monkeypatch, args, needle):
    _no_measuring(monkeypatch)
    assert _cli_rc(*[a.format(run=run_dir) for a in args], "--quiet") == 2
    err = _one_line(capsys)
    assert f"'{needle}'" in err and "round_size" not in err and "usage:" not in err


def test_run_api_checks_threads(run_dir):
    from hicra.errors import InputError
    from hicra.mechanistic.run import run_anchors

    with pytest.raises(InputError, match="--threads"):
        run_anchors(run_dir, [0], 1, AnchorsConfig(k=1), threads=-1, progress=False, log=lambda *a: None)


def test_anchors_help_lists_every_sentence_class(capsys):
    from hicra.mechanistic.sentences import CLASSES

    assert _cli_rc("anchors", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(c in text for c in CLASSES) and "answer / planning / execution / other" in text


def test_bad_heldout_id_names_field_and_1_based_position(run_dir, tmp_path):
    from hicra.errors import InputError
    from hicra.mechanistic.tasks import lab_heldout_problems

    copy = _copy_run(run_dir, tmp_path)
    ids = json.loads((copy / "eval.json").read_text())["heldout_ids"]
    (copy / "eval.json").write_text(json.dumps({"heldout_ids": ids[:2] + ["series:1:999"]}))
    with pytest.raises(InputError) as info:
        lab_heldout_problems(copy)
    msg = str(info.value)
    assert "eval.json:" not in msg.replace("eval.json: ", "")  # no 'eval.json:2' that reads like a line number
    assert "heldout_ids" in msg and "entry 3" in msg and "series:1:999" in msg


def _bench(*args):
    return subprocess.run([sys.executable, str(BENCH_RUNS), *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args, needle", [
    (["--arm", "g", "/nonexistent/run"], "/nonexistent/run"),
    (["--arm", "g", "{run}", "--steps", "a,b"], "--steps"),
    (["--arm", "g", "{run}", "--steps", "10", "--graph-steps", "-1"], "--graph-steps"),
    (["--arm", "g", "{run}", "--steps", "7", "--no-graphs", "--k", "1"], "no snapshot for step 7"),
    (["--arm", "g"], "--arm g"),
    (["--arm", "g", "{run}", "--arm", "g", "{run}"], "--arm g given twice"),
])
def test_benchmark_bad_input_one_line_exit_2(run_dir, tmp_path, args, needle):
    copy = _copy_run(run_dir, tmp_path)
    for name in ("anchors.parquet", "anchors.json"):
        (copy / name).unlink(missing_ok=True)
    proc = _bench(*[a.format(run=copy) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_stored_settings_mismatch(run_dir, tmp_path):
    from hicra.mechanistic.run import stored_settings_mismatch

    copy = _copy_run(run_dir, tmp_path)
    for name in ("anchors.parquet", "anchors.json"):
        (copy / name).unlink(missing_ok=True)
    assert stored_settings_mismatch(copy, "anchors", [10], 2, AnchorsConfig(k=2))[0].startswith("no ")
    assert _cli("anchors", str(copy), "--steps", "10", "--n", "2", "--k", "2", "--quiet", "--n-boot", "50") == 0
    assert stored_settings_mismatch(copy, "anchors", [10], 2, AnchorsConfig(k=2)) == []
    assert stored_settings_mismatch(copy, "anchors", [10], 2, AnchorsConfig(k=2), n_boot=7) == []  # summaries only
    assert any("k " in d for d in stored_settings_mismatch(copy, "anchors", [10], 2, AnchorsConfig(k=3)))
    assert any("differ" in d for d in stored_settings_mismatch(copy, "anchors", [10], 2,
                                                               AnchorsConfig(k=2, differ="text")))
    assert any("steps" in d for d in stored_settings_mismatch(copy, "anchors", [0, 10], 2, AnchorsConfig(k=2)))
    assert any("n_problems" in d for d in stored_settings_mismatch(copy, "anchors", [10], 3, AnchorsConfig(k=2)))
    assert any("batch_size" in d for d in stored_settings_mismatch(copy, "anchors", [10], 2, AnchorsConfig(k=2),
                                                                   batch_size=8))
    # rows that are not the ones the summary describes (a run killed between writing the two: a reviewer's repro)
    import pyarrow.parquet as pq

    table = pq.read_table(copy / "anchors.parquet")
    pq.write_table(table.slice(0, table.num_rows - 1), copy / "anchors.parquet")
    assert stored_settings_mismatch(copy, "anchors", [10], 2, AnchorsConfig(k=2)) == [
        "anchors.parquet is not the one anchors.json describes (a run stopped between writing the two?)"]


def test_benchmark_recomputes_outputs_made_with_other_settings(run_dir, tmp_path):
    copy = _copy_run(run_dir, tmp_path)
    assert _cli("anchors", str(copy), "--steps", "10", "--n", "2", "--k", "2", "--quiet", "--n-boot", "50") == 0
    common = ["--arm", "g", str(copy), "--steps", "10", "--n", "2", "--no-graphs"]
    proc = _bench(*common, "--k", "2", "--per-run")
    assert proc.returncode == 0, proc.stderr
    assert "reusing" in proc.stdout and "recomputing" not in proc.stdout
    assert f"  {copy}: excess gap step 10 " in proc.stdout  # --per-run: the run's own excess gap
    assert f"by phase: consolidation end per run {copy.name} " in proc.stdout  # the split is always reported
    assert f"  {copy}: excess gap's change after - before " in proc.stdout  # --per-run: the run's own change
    proc = _bench(*common, "--k", "1")
    assert proc.returncode == 0, proc.stderr
    assert "recomputing" in proc.stdout and "k 2 -> 1" in proc.stdout
    assert json.loads((copy / "anchors.json").read_text())["settings"]["k"] == 1


def _fake_graph_run(root, name, slope, detected, cycles, model):
    import json

    run = root / name
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"model": model}))
    (run / "summary.json").write_text(json.dumps({"phases": {"verdict": "none", "exploration": {
        "tested": True, "detected": detected, "slope": slope}}}))
    (run / "graphs.json").write_text(json.dumps({"steps": {
        str(s): {"cycles": {"mean": c, "interval": [c, c]}} for s, c in cycles.items()}}))
    return run


def test_cycles_vs_exploration_reads_runs_and_rejects_bad_ones(tmp_path, capsys, monkeypatch, benchmark_script):
    """benchmarks/cycles_vs_exploration.py: the change in cycles is step `to` minus step 0, Spearman's rho of a
    monotone relation is 1, the detected-minus-not difference is the difference of means; a run without
    graphs.json is one line naming it, exit code 2."""
    import sys

    mod = benchmark_script("cycles_vs_exploration")
    runs = [_fake_graph_run(tmp_path, f"r{i}", slope=0.001 * i, detected=i >= 2,
                            cycles={0: 1.0, 40: 1.0 + i, 80: 1.0 + i * i}, model=f"ws{i // 2}") for i in range(4)]
    monkeypatch.setattr(sys, "argv", ["x", *map(str, runs), "--n-boot", "200"])
    assert mod.main() == 0
    out = capsys.readouterr().out
    assert "change 0 -> 80" in out and "| +9.00" in out  # run 3: 1 + 9 - 1
    assert "Spearman(exploration slope, cycles change): +1.000" in out
    assert "exploration detected +6.50 (2 runs), not detected +0.50 (2 runs); difference +6.00" in out
    (runs[1] / "graphs.json").unlink()
    monkeypatch.setattr(sys, "argv", ["x", *map(str, runs)])
    assert mod.main() == 2
    err = _one_line(capsys)
    assert "r1" in err and "graphs.json" in err


def test_cycles_by_length_standardises_to_the_first_steps_length_mix(tmp_path, capsys, benchmark_script):
    """cycles_vs_exploration.print_by_length: when only the mix of lengths changes (cycles per length bucket the
    same), the standardised mean at the later step equals the first step's mean while the raw mean falls."""

    import pyarrow as pa
    import pyarrow.parquet as pq

    mod = benchmark_script("cycles_vs_exploration")
    rows = ([{"step": 0, "n_sentences": 5, "cycles": 0}] * 5 + [{"step": 0, "n_sentences": 25, "cycles": 10}] * 5
            + [{"step": 80, "n_sentences": 5, "cycles": 0}] * 9 + [{"step": 80, "n_sentences": 25, "cycles": 10}] * 1)
    run = tmp_path / "run"
    run.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), run / "graphs.parquet")
    mod.print_by_length([run, tmp_path / "absent"], 0)
    out = capsys.readouterr().out
    assert "left out" in out and str(tmp_path / "absent") in out
    assert "\n0 | 10 | 15.0 | +1.00 | 5.00 | 5.00 |" in out
    assert "\n80 | 10 | 7.0 | +1.00 | 1.00 | 5.00 |" in out


def test_lab_exec_probe_benchmark_reads_snapshots(run_dir, tmp_path, capsys, monkeypatch, benchmark_script):
    """benchmarks/lab_exec_probe.py: per snapshot the greedy column is `execution_probe` and the sampled one
    `execution_probe_probability` at the run's temperature on the run's first n_probe held-out problems; a step
    without a snapshot is one line naming it, exit code 2; --temperature 0 is refused."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.probes import execution_probe, execution_probe_probability
    from hicra.lab.sft import eval_problems
    from hicra.lab.tasks import TaskMix

    run = _copy_run(run_dir, tmp_path)
    shutil.copytree(run / "checkpoints" / "step_000000", run / "tokenizer")
    info = json.loads((run / "run.json").read_text())
    info["config"].update(optimum="diverse", n_probe=6)
    (run / "run.json").write_text(json.dumps(info))
    mod = benchmark_script("lab_exec_probe")
    monkeypatch.setattr(sys, "argv", ["x", str(run), "--steps", "0,10"])
    assert mod.main() == 0
    out = capsys.readouterr().out
    cfg = info["config"]
    task = TaskMix(cfg["tasks"], optimum="diverse", heldout_share=cfg["heldout_share"])
    problems = eval_problems(task, cfg["n_eval"])[:6]
    tok = AutoTokenizer.from_pretrained(run / "tokenizer")
    want = []
    for step in (0, 10):
        model = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / f"step_{step:06d}").eval()
        want += [execution_probe(model, tok, task, problems),
                 execution_probe_probability(model, tok, task, problems, cfg["temperature"])]
    row = next(line for line in out.splitlines() if line.strip().startswith(str(run)[-36:].strip()[:20]))
    got = [float(x) for x in row.split()[1:5]]
    assert got == pytest.approx(want, abs=6e-4)
    capsys.readouterr()  # drop the model-loading progress bars
    monkeypatch.setattr(sys, "argv", ["x", str(run), "--steps", "0,7"])
    assert mod.main() == 2
    assert "step_000007" in _one_line(capsys)
    monkeypatch.setattr(sys, "argv", ["x", str(run), "--temperature", "0"])
    assert mod.main() == 2
    assert "--temperature" in _one_line(capsys)


def test_heldout_exploration_benchmark_samples_both_ends(run_dir, tmp_path, capsys, monkeypatch, benchmark_script):
    """benchmarks/heldout_exploration.py on two runs that share a warm start, with a stand-in sampler whose labels
    depend on the snapshot (the warm start: always `one-by-one`; a trained policy: half `pairing`; a third of the
    responses unparsed at both ends): the warm start is sampled once, on the run's held-out ids at the run's
    temperature, with own-choice prompts only; H|fam rises from 0 to the problem-weighted entropy of the series
    problems (ln 2), inside its interval; a run without eval.json, or with empty held-out ids, is one line naming the
    file, exit code 2; --k 0 is refused."""
    import shutil

    import hicra.lab.probes as probes

    runs = []
    for name in ("a", "b"):
        run = tmp_path / name / "cell" / "grpo" / "ws0-seed0"
        shutil.copytree(run_dir, run)
        shutil.copytree(run / "checkpoints" / "step_000000", run / "tokenizer")
        shutil.copytree(run / "checkpoints" / "step_000010", run / "model")
        info = json.loads((run / "run.json").read_text())
        info["config"].update(optimum="diverse")
        info["model"] = "/cache/warmstart-x"  # both runs: one warm start
        (run / "run.json").write_text(json.dumps(info))
        runs.append(run)
    ids = json.loads((runs[0] / "eval.json").read_text())["heldout_ids"]
    calls = []

    def stand_in(model, tokenizer, task, problems, k, temperature, max_new_tokens, seed=0, hinted=True, **kw):
        warm = model.config._name_or_path.endswith("step_000000")
        calls.append(("warm" if warm else "trained", [p.id for p in problems], temperature, hinted, k))
        rows = []
        for p in problems:
            own = {"one-by-one": 2} if warm or p.family != "series" else {"one-by-one": 1, "pairing": 1}
            rows.append({"problem_id": p.id, "strategy": None, "executed": {**own, "unparsed": 1}})
        return rows

    monkeypatch.setattr(probes, "strategy_accuracy", stand_in)
    mod = benchmark_script("heldout_exploration")
    out_json = tmp_path / "he.json"
    monkeypatch.setattr(sys, "argv", ["x", *map(str, runs), "--k", "3", "--boot", "200", "--json", str(out_json)])
    assert mod.main() == 0
    assert [c[0] for c in calls] == ["warm", "trained", "trained"]
    assert all(c[1] == ids and c[2] == 1.0 and c[3] is False and c[4] == 3 for c in calls)
    series = sum(i.startswith("series") for i in ids) / len(ids)
    for r in json.loads(out_json.read_text()):
        assert r["cell"] == "cell" and r["unparsed_before"] == pytest.approx(1 / 3)
        assert r["Hfam_before"] == pytest.approx(0.0) and r["reading"] in ("rise", "-")
        assert r["Hfam_change"] == pytest.approx(series * np.log(2))
        assert 0 <= r["Hfam_interval"][0] <= r["Hfam_change"] <= r["Hfam_interval"][1]
        assert r["n_complete"] == 0 and r["Hfam_complete_change"] is None
    capsys.readouterr()
    (runs[1] / "eval.json").write_text(json.dumps({"heldout_ids": []}))
    assert mod.main() == 2
    assert "heldout_ids is empty" in _one_line(capsys)
    (runs[1] / "eval.json").unlink()
    assert mod.main() == 2
    assert "eval.json" in _one_line(capsys)
    monkeypatch.setattr(sys, "argv", ["x", str(runs[0]), "--k", "0"])
    with pytest.raises(SystemExit):
        mod.main()


def test_lab_strategy_optimum_benchmark_reads_snapshots(run_dir, tmp_path, capsys, monkeypatch, benchmark_script):
    """benchmarks/lab_strategy_optimum.py: its JSON holds, per snapshot and family, `class_optimum` of
    `strategy_accuracy` on the run's held-out problems at the run's temperature and seed; a step without a snapshot
    is one line naming it, exit code 2."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.probes import class_optimum, strategy_accuracy
    from hicra.lab.tasks import TaskMix

    run = _copy_run(run_dir, tmp_path)
    shutil.copytree(run / "checkpoints" / "step_000000", run / "tokenizer")
    info = json.loads((run / "run.json").read_text())
    info["config"].update(optimum="diverse")
    (run / "run.json").write_text(json.dumps(info))
    mod = benchmark_script("lab_strategy_optimum")
    out_json = tmp_path / "so.json"
    monkeypatch.setattr(sys, "argv", ["x", str(run), "--steps", "0,10", "--n", "3", "--k", "2", "--json", str(out_json)])
    assert mod.main() == 0
    reports = json.loads(out_json.read_text())
    assert sorted((r["step"], r["family"]) for r in reports) == [(0, "product"), (0, "series"), (10, "product"),
                                                                 (10, "series")]
    cfg = info["config"]
    task = TaskMix(cfg["tasks"], optimum="diverse", heldout_share=cfg["heldout_share"])
    problems = [p for s in cfg["tasks"] for p in TaskMix([s], heldout_share=cfg["heldout_share"]).heldout(3)]
    model = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "step_000010")
    rows = strategy_accuracy(model, AutoTokenizer.from_pretrained(run / "tokenizer"), task, problems, 2,
                             cfg["temperature"], cfg["max_new_tokens"], seed=cfg["seed"])
    want = class_optimum(rows)
    for r in reports:
        if r["step"] == 10:
            for key in ("own", "single_route", "by_class", "own_information", "n_problems"):
                assert r[key] == pytest.approx(want[r["family"]][key], nan_ok=True)
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["x", str(run), "--steps", "0,7"])
    assert mod.main() == 2
    assert "step_000007" in _one_line(capsys)


def test_a_copied_run_reads_its_own_lexicon_not_the_absolute_path_in_run_json(run_dir, tmp_path):
    """run.json names the lexicon by the absolute path where the run was made; a copied (or moved) run must read
    the copy in its own directory, not whatever now lies at that path."""
    from hicra.dynamics.records import write_run_info
    from hicra.mechanistic.run import run_tagger
    from hicra.mechanistic.tasks import read_run_info
    from hicra.planning import Lexicon

    copy = _copy_run(run_dir, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Lexicon(["try another way"], name="theirs").save(elsewhere / "lexicon.json")
    Lexicon(["let me check"], name="ours").save(copy / "lexicon.json")
    write_run_info(copy, {**read_run_info(copy), "lexicon": str(elsewhere / "lexicon.json")})
    tagger = run_tagger(copy, read_run_info(copy))
    assert [p.key for p in tagger.lexicon.phrases] == [p.key for p in Lexicon.load(copy / "lexicon.json").phrases]
    (copy / "lexicon.json").unlink()  # without its own copy the run reads the path it names
    assert run_tagger(copy, read_run_info(copy)).lexicon.name == "theirs"


def test_both_views_run_end_to_end_on_a_non_lab_model_with_math_verify():
    """The real-model path on the CPU: a (random, tiny) Llama with a byte-level BPE tokenizer, graded by
    math-verify, split into sentences: anchors rows and graph walks come out with the contract's columns. What a GPU
    changes is only where the forward runs (test_sampling_on_cuda_matches_the_cpu)."""
    pytest.importorskip("math_verify")
    pytest.importorskip("sklearn")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from hicra.mechanistic.anchors import AnchorsConfig, sentence_importance
    from hicra.mechanistic.graphs import GraphsConfig, reasoning_graphs
    from hicra.mechanistic.policy import HFPolicy
    from hicra.mechanistic.tasks import MathTask
    from hicra.planning import PlanningTagger

    text = ["Let's try a different approach. 6*7 = 42, so the answer is \\boxed{42}.",
            "First, add the numbers. 2+3 = 5. Wait, let me check: \\boxed{5}.", "What is 6*7? What is 2+3?"] * 20
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<pad>", "</s>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)).eval()
    task = MathTask(tok)
    problems = [{"id": "a", "problem": "What is 6*7?", "answer": "42"},
                {"id": "b", "problem": "What is 2+3?", "answer": "5"}]
    policy = HFPolicy(model, tok, max_new_tokens=24)
    rows, stats = sentence_importance(policy, task, problems, PlanningTagger("paper"),
                                      AnchorsConfig(k=2, split="sentences", adaptive=False))
    assert stats["sentences"] == len(rows) > 0
    assert {"problem_id", "sentence_idx", "class", "importance", "tv_distance", "n_resamples"} <= set(rows[0])
    assert {r["problem_id"] for r in rows} <= {"a", "b"}
    assert all((r["importance"] is None) == r["fixed"] for r in rows)
    walks, info = reasoning_graphs(policy, task, problems, PlanningTagger("paper"),
                                   GraphsConfig(samples=2, clusters=3, split="sentences"))
    assert len(walks) == 4 and {"n_nodes", "cycles", "diameter"} <= set(walks[0])


def test_a_run_missing_its_own_lexicon_never_reads_one_from_the_working_directory(run_dir, tmp_path, monkeypatch):
    from hicra.dynamics.analyze import analyze_run
    from hicra.dynamics.records import write_run_info
    from hicra.errors import InputError
    from hicra.mechanistic.run import run_tagger
    from hicra.mechanistic.tasks import read_run_info
    from hicra.planning import Lexicon

    copy = _copy_run(run_dir, tmp_path)
    (copy / "lexicon.json").unlink(missing_ok=True)
    write_run_info(copy, {**read_run_info(copy), "lexicon": "lexicon.json"})
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    Lexicon(["try another way"], name="theirs").save(elsewhere / "lexicon.json")
    monkeypatch.chdir(elsewhere)
    with pytest.raises(InputError, match="neither in the run directory nor at that path"):
        run_tagger(copy, read_run_info(copy))
    from hicra.dynamics.synthetic import make_synthetic_run

    synthetic = tmp_path / "synthetic"
    make_synthetic_run(synthetic, steps=6)
    write_run_info(synthetic, {**read_run_info(synthetic), "lexicon": "lexicon.json"})
    with pytest.raises(InputError, match="neither in the run directory nor at that path"):
        analyze_run(synthetic)
    Lexicon(["let me check"], name="ours").save(synthetic / "lexicon.json")
    assert analyze_run(synthetic)["lexicon"] == "ours"  # the run's own copy


def test_phase_steps_do_not_take_a_v1_consolidation_end(tmp_path, benchmark_script):
    """A v1 summary.json (no `order`: it never tested the order of consolidation) gives no consolidation end to
    split at, in the verbs and in benchmarks/mechanistic_runs.py; a v2 one gives its own."""
    from hicra.mechanistic.run import _phase_steps

    v1 = {"phases": {"verdict": "two-phase", "consolidation_end_step": 6, "exploration_onset_step": 9,
                     "confidence": 0.9, "evidence": {}}}
    (tmp_path / "summary.json").write_text(json.dumps(v1))
    assert _phase_steps(tmp_path) == {"consolidation_end_step": None, "exploration_onset_step": 9}

    mechanistic_runs = benchmark_script("mechanistic_runs")

    assert mechanistic_runs._consolidation_end(tmp_path) is None
    v2 = {"phases": {"version": 2, "verdict": "consolidation-only", "order": "execution-first",
                     "consolidation_end_step": 39, "exploration_onset_step": None, "confidence": 0.9}}
    (tmp_path / "summary.json").write_text(json.dumps(v2))
    assert _phase_steps(tmp_path)["consolidation_end_step"] == 39
    assert mechanistic_runs._consolidation_end(tmp_path) == 39
