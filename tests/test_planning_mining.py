"""Mining logic with a fake embedder whose clusters are known, plus the corpus reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hicra.errors import InputError
from hicra.planning.lexicon import Lexicon
from hicra.planning.mining import Document, clauses, mine, ngrams, read_corpus
from hicra.planning.tagger import PlanningTagger


def test_ngrams_skip_numbers_symbols_and_formulas():
    text = "So we need 16 - 3 = <<16-3=13>>13 eggs. Let’s check the total cost, then done"
    assert clauses(text) == [["so", "we", "need"], ["eggs"], ["lets", "check", "the", "total", "cost"],
                             ["then", "done"]]
    assert ngrams(text, 3, 4) == {"so we need", "lets check the", "check the total", "the total cost",
                                  "lets check the total", "check the total cost"}
    assert ngrams("", 3, 5) == set()


class FakeEmbedder:
    """Phrases with the same first word get the same direction: clusters = first word."""

    def __init__(self):
        self.dims: dict[str, int] = {}

    def encode(self, texts, **_):
        out = []
        for t in texts:
            v = np.zeros(64, dtype=np.float32)
            v[self.dims.setdefault(t.split()[0], len(self.dims))] = 1.0
            out.append(v)
        return np.stack(out)


def test_mine_cluster_document_frequency_and_top_fraction():
    # cluster "we": "we need to" in docs 0-3, "we want to" in docs 3-5 -> cdf 6 (doc 3 counted once)
    # cluster "let": "let us see" in docs 0-4 -> cdf 5;  cluster "then": "then we add" in docs 0-1 -> cdf 2
    docs = []
    for d in range(8):
        parts = []
        if d <= 3:
            parts.append("we need to go")
        if 3 <= d <= 5:
            parts.append("we want to go")
        if d <= 4:
            parts.append("let us see")
        if d <= 1:
            parts.append("then we add")
        docs.append(Document(". ".join(parts) or "nothing"))
    res = mine(docs, n_min=3, n_max=3, top=0.5, min_df=2, embedder=FakeEmbedder(), distance=0.5,
               progress=False)
    clusters = res.report["clusters"]
    by_first = {c["examples"][0].split()[0]: c for c in clusters}
    assert by_first["we"]["doc_freq"] == 6 and by_first["we"]["size"] == 2
    assert by_first["need"]["doc_freq"] == 4 and by_first["want"]["doc_freq"] == 3
    assert by_first["let"]["doc_freq"] == 5
    assert by_first["then"]["doc_freq"] == 2
    assert [c["rank"] for c in clusters] == list(range(1, len(clusters) + 1))
    kept = [c for c in clusters if c["kept"]]
    assert len(kept) == res.report["n_kept_clusters"] == int(np.ceil(0.5 * res.report["n_clusters"]))
    assert set(res.lexicon.texts) == {p["text"] for c in kept for p in c["phrases"]}
    assert [c["examples"][0] for c in kept] == ["we need to", "let us see", "need to go"]  # 5 clusters, top 3
    assert "then we add" not in res.lexicon and "want to go" not in res.lexicon


def test_question_ngrams_are_not_counted():
    q = "how many apples does she have in total"
    docs = [Document(f"she has in total {i} apples. so we add them up", question=q) for i in range(5)]
    with_q = mine(docs, n_min=3, n_max=3, top=1.0, min_df=2, embedder=FakeEmbedder(), progress=False)
    assert "so we add" in with_q.lexicon and "she has in" in with_q.lexicon
    assert "have in total" not in with_q.lexicon
    docs = [Document(f"she will have in total {i} apples", question=q) for i in range(5)]
    assert "have in total" not in mine(docs, n_min=3, n_max=3, top=1.0, min_df=2, embedder=FakeEmbedder(),
                                       progress=False).lexicon
    assert "have in total" in mine(docs, n_min=3, n_max=3, top=1.0, min_df=2, embedder=FakeEmbedder(),
                                   exclude_question=False, progress=False).lexicon


def test_mine_categories_from_reference():
    ref = Lexicon([("let us check", "verification")], name="r")
    docs = [Document("let us check it. then we add") for _ in range(3)]
    res = mine(docs, n_min=3, n_max=3, top=1.0, min_df=2, embedder=FakeEmbedder(), category_lexicon=ref,
               category_similarity=0.9, progress=False)
    assert res.lexicon.get("let us check").category == "verification"
    assert res.lexicon.get("then we add").category == "other"


def test_read_corpus_wildcards(tmp_path, shared_data):
    path = shared_data / "gsm8k" / "model_solutions.jsonl"
    items = []
    for item in read_corpus(path, "*.solution", "*.is_correct", "question"):
        items.append(item)
        if len(items) == 8:
            break
    first = json.loads(path.read_text().splitlines()[0])
    keys = [k for k, v in first.items() if isinstance(v, dict)]
    assert [d.source for d, _ in items[:4]] == [f"1:{k}" for k in keys]
    assert [ok for _, ok in items[:4]] == [first[k]["is_correct"] for k in keys]
    assert items[0][0].text == first[keys[0]]["solution"] and items[0][0].question == first["question"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"m": {"a": {"text": "x", "ok": true}, "b": {"text": "y"}}}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1, field 'm.b.ok': missing field"):
        list(read_corpus(bad, "m.*.text", "m.*.ok"))


def test_words_are_the_taggers_words():
    """Fragments stuck to digits are no words ("5th", "3kg"); any apostrophe look-alike joins a contraction."""
    text = "On the 5th of the month he sold 3kg of the apples and x_1 of the rest."
    assert clauses(text) == [["on", "the"], ["of", "the", "month", "he", "sold"], ["of", "the", "apples", "and"],
                             ["of", "the", "rest"]]
    assert ngrams("Let\u2018s try a different way.", 3, 3) == {"lets try a", "try a different", "a different way"}
    assert ngrams("Letʼs try it", 3, 3) == {"lets try it"}
    # a soft hyphen or zero-width space makes a run no word; combining marks belong to it
    assert clauses("we al\u00adso see it") == [["we"], ["see", "it"]]
    assert clauses("so\u0301 we go") == [["so\u0301", "we", "go"]]


_PIECES = ["so", "we", "can", "see", "the", "total", "let's", "let‘s", "it’s", "5th", "3kg", "x2", "x_y", "12",
           "naïve", "e\u0301", "al\u00adso", "a\u200bb", "所以", "wait", "re-do", "²", ",", ".", "'", "-"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from([" ", " ", "  ", "\n", ""])), max_size=20))
def test_every_ngram_is_found_by_the_tagger_in_its_text(parts):
    text = "".join(a + b for a, b in parts)
    for gram in ngrams(text, 1, 3):
        assert PlanningTagger(Lexicon([gram], name="g")).mask_spans(text).size, (gram, text)


def test_mine_rejects_bad_limits():
    docs = [Document("we need to go")] * 3
    with pytest.raises(ValueError, match="max_candidates must be >= 1"):
        mine(docs, n_min=3, n_max=3, min_df=1, max_candidates=-1, embedder=FakeEmbedder(), progress=False)
    with pytest.raises(ValueError, match="min_df must be >= 1"):
        mine(docs, n_min=3, n_max=3, min_df=0, embedder=FakeEmbedder(), progress=False)


def test_cluster_ties_go_to_the_alphabetically_first_phrase():
    """Two clusters with the same document frequency and size: the one whose alphabetically first phrase comes
    first ranks first, even though the other's most frequent phrase comes first ("mop" < "zed" but "ant" < "mop")."""

    class TwoClusters:
        def encode(self, texts, **_):
            return np.array([[1.0, 0.0] if t[0] in "az" else [0.0, 1.0] for t in texts], dtype=np.float32)

    docs = [Document("zed zed zed. mop mop mop. " + ("ant ant ant. nut nut nut." if i < 5 else ""))
            for i in range(6)]
    res = mine(docs, n_min=3, n_max=3, min_df=5, top=0.5, embedder=TwoClusters(), progress=False)
    first, second = res.report["clusters"]
    assert (first["doc_freq"], first["size"]) == (second["doc_freq"], second["size"]) == (6, 2)
    assert sorted(res.lexicon.texts) == ["ant ant ant", "zed zed zed"]


def test_read_corpus_error_fields_are_concrete_paths(tmp_path):
    cases = [('{"models": {"a": {"solution": "so", "ok": true}, "b": {"solution": 7, "ok": true}}}',
              "models.*.solution", None, "field 'models.b.solution': expected a string, got int"),
             ('{"sols": {"a": "so wait", "b": 7}}', "sols.*", None, "field 'sols.b': expected a string"),
             ('{"models": {"a": {"solution": "so", "ok": true}, "b": {"solution": "x", "ok": "maybe"}}}',
              "models.*.solution", "models.*.ok", "field 'models.b.ok': correctness must be true/false"),
             ('{"t": {"a": "x", "b": "y"}, "ok": "maybe"}', "t.*", "ok", "field 'ok': correctness must be")]
    for i, (row, text_field, correct_field, needle) in enumerate(cases):
        path = tmp_path / f"c{i}.jsonl"
        path.write_text(row + "\n")
        with pytest.raises(InputError, match=f"c{i}.jsonl:1, {needle}"):
            list(read_corpus(path, text_field, correct_field))


def test_read_corpus_rejects_lone_surrogates(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"t": "so"}\n{"t": "so \\ud800 wait"}\n')
    with pytest.raises(InputError, match=r"c.jsonl:2, field 't': .*lone surrogate U\+D800 at character 4"):
        list(read_corpus(path, "t"))
    path.write_text('{"m": {"a": "so"}, "q": "x\\udfff"}\n')
    with pytest.raises(InputError, match=r"c.jsonl:1, field 'q': .*lone surrogate"):
        list(read_corpus(path, "m.*", question_field="q"))
