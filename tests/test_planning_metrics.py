"""Planning metrics against hand-computed and scipy values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy

from hicra.planning.lexicon import Lexicon
from hicra.planning.metrics import (
    conditional_entropy,
    following_ngrams,
    fork_token_overlap,
    phrase_counts,
    procedural_conditional_entropy,
    semantic_entropy,
    top_quantile_mask,
)
from hicra.planning.tagger import PlanningTagger


def test_semantic_entropy_matches_scipy():
    counts = {"so": 5, "but wait": 3, "let me": 1, "unused": 0}
    assert semantic_entropy(counts) == pytest.approx(scipy_entropy([5, 3, 1]))
    assert semantic_entropy([5, 3, 1]) == pytest.approx(scipy_entropy([5, 3, 1]))
    assert semantic_entropy(["so", "so", "wait"]) == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert semantic_entropy({}) == 0.0 and semantic_entropy([7]) == 0.0
    assert semantic_entropy({f"p{i}": 1 for i in range(8)}) == pytest.approx(math.log(8))
    with pytest.raises(ValueError):
        semantic_entropy([1, -1])


def test_semantic_entropy_cluster_level():
    counts = {"so": 5, "thus": 3, "but wait": 1, "hmm": 1}
    clusters = {"so": "conclude", "thus": "conclude", "but wait": "doubt"}  # "hmm" is its own cluster
    assert semantic_entropy(counts, clusters=clusters) == pytest.approx(scipy_entropy([8, 1, 1]))


def test_conditional_entropy_hand_computed():
    # x=a: y in {u, u, v} -> H = H(2/3, 1/3); x=b: y always w -> 0; p(a) = 3/4
    pairs = [("a", "u"), ("a", "u"), ("a", "v"), ("b", "w")]
    h_a = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert conditional_entropy(pairs) == pytest.approx(0.75 * h_a)
    assert conditional_entropy([]) == 0.0


def test_procedural_conditional_entropy():
    tagger = PlanningTagger(Lexicon([("so", "deduction"), ("but wait", "backtracking")], name="t"))
    texts = ["so we add 3 apples. but wait, we add", "so we add 4", "so x is 2"]
    spans = tagger.spans(texts[0])
    assert following_ngrams(texts[0], spans, n=3) == [("so", "we add 3"), ("but wait", ", we add")]
    # so -> {we add 3, we add 4, x is 2} (uniform over 3); but wait -> one n-gram; p(so) = 3/4
    assert procedural_conditional_entropy(texts, tagger, n=3) == pytest.approx(0.75 * math.log(3))
    assert procedural_conditional_entropy(texts, tagger, n=2) == pytest.approx(
        0.75 * scipy_entropy([2, 1]))
    assert phrase_counts(texts, tagger) == {"so": 3, "but wait": 1}


def test_top_quantile_mask():
    v = np.array([0.1, 0.9, 0.5, 0.9, 0.2])
    assert top_quantile_mask(v, 0.4).tolist() == [False, True, False, True, False]
    assert top_quantile_mask(v, 0.3).tolist() == [False, True, False, True, False]  # k = ceil(1.5) = 2
    assert top_quantile_mask(v, 0.2).tolist() == [False, True, False, False, False]  # tie: earlier wins
    assert top_quantile_mask(v, 1.0).all()


def test_top_quantile_mask_equals_a_stable_sort():
    """The argpartition path selects the same set as sorting by value (stable: ties to the earlier position)."""
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100, 1001):
        values = np.round(rng.random(n), 1)  # many ties
        with_nan = np.where(rng.random(n) < 0.1, np.nan, values)  # NaN ranks last
        for v in (values, with_nan):
            for q in (0.05, 0.2, 0.3, 0.999, 1.0):
                want = np.zeros(n, dtype=bool)
                want[np.argsort(-v, kind="stable")[: math.ceil(q * n - 1e-9)]] = True
                np.testing.assert_array_equal(top_quantile_mask(v, q), want)


def test_fork_token_overlap_hand_computed():
    ent = torch.tensor([[3.0, 2.0, 0.1, 0.2, 5.0], [1.0, 0.0, 4.0, 0.3, 9.9]])
    plan = torch.tensor([[True, False, False, True, False], [False, False, True, True, False]])
    valid = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])  # the 9.9 is padding
    out = fork_token_overlap(ent, plan, quantile=0.3, response_mask=valid)
    # 9 valid tokens, k = ceil(2.7) = 3 highest: 5.0, 4.0, 3.0 -> two of them planning (3.0 and 4.0)
    assert out["n_high_entropy"] == 3 and out["n_planning"] == 4 and out["n_both"] == 2
    assert out["planning_share_of_high_entropy"] == pytest.approx(2 / 3)
    assert out["high_entropy_share_of_planning"] == pytest.approx(2 / 4)
    ragged = fork_token_overlap([ent[0].numpy(), ent[1, :4].numpy()], [plan[0].numpy(), plan[1, :4].numpy()],
                                quantile=0.3)
    assert ragged == out
    none = fork_token_overlap([1.0, 2.0], [False, False], quantile=0.5)
    assert none["planning_share_of_high_entropy"] == 0.0
    assert math.isnan(none["high_entropy_share_of_planning"])
    given = fork_token_overlap(ent, plan, response_mask=valid, high_entropy_mask=ent > 2.5)
    assert given["n_high_entropy"] == 3 and given["n_both"] == 2


def test_fork_token_overlap_takes_bfloat16_entropies():
    ent = torch.tensor([[0.5, 2.0, 0.25, 1.5]])  # exact in bfloat16
    plan = torch.tensor([[False, True, False, True]])
    assert fork_token_overlap(ent.bfloat16(), plan, quantile=0.5) == fork_token_overlap(ent, plan, quantile=0.5)
