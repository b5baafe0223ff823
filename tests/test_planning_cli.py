"""`hicra grams` through a subprocess: tag, show, mine, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hicra.planning.lexicon import Lexicon


def hicra(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "hicra", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_tag_text():
    r = hicra("grams", "tag", "--lexicon", "paper", "Let’s verify. Also, so again", "nothing")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 2 and lines[1]["spans"] == []
    assert [(s["match"], s["phrase"], s["category"]) for s in lines[0]["spans"]] == [
        ("Let’s", "lets", "other"), ("so again", "so again", "deduction")]
    assert lines[0]["spans"][1]["start"] == len("Let’s verify. Also, ")


def test_tag_file_and_summary(tmp_path):
    corpus = tmp_path / "c.jsonl"
    rows = [{"q": "x", "m": {"a": {"ok": True, "text": "But wait, so we add."},
                             "b": {"ok": False, "text": "Hmm, no"}}},
            {"q": "y", "m": {"a": {"ok": True, "text": "Also nothing"}, "b": {"ok": True, "text": "thus"}}}]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    r = hicra("grams", "tag", "--file", corpus, "--text-field", "m.*.text", "--correct-field", "m.*.ok")
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["source"] for o in out] == ["1:a", "2:a", "2:b"]  # the incorrect 1:b is skipped
    assert [s["phrase"] for s in out[0]["spans"]] == ["but wait", "so"]
    r = hicra("grams", "tag", "--file", corpus, "--text-field", "m.*.text", "--summary")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    texts = ["But wait, so we add.", "Hmm, no", "Also nothing", "thus"]
    assert summary["texts"] == 4 and summary["chars"] == sum(map(len, texts))
    # spans: "But wait" (8), "so" (2), "Hmm," (4), "thus" (4)
    assert summary["planning_chars"] == 18 and summary["occurrences"] == 4
    # words: but wait , so we add . | hmm , no | also nothing | thus -> 13; planning: but wait so hmm , thus
    assert summary["words"] == 13 and summary["planning_words"] == 6


def test_show():
    r = hicra("grams", "show", "paper")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("paper: 249 phrases") and "backtracking (" in r.stdout
    r = hicra("grams", "show", "paper", "--json")
    assert len(json.loads(r.stdout)["phrases"]) == 249


def _check_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    err = r.stderr.strip().splitlines()[-1]  # progress bars (on a terminal) may precede the one error line
    assert err.startswith("hicra grams: error: ")
    for n in needles:
        assert n in err, (n, err)


@pytest.mark.parametrize("content, needles", [
    (b'{"phrases": ["so", "So"]}', ["lex.json", "phrase 2: duplicate"]),
    (b'{"phrases": [""]}', ["lex.json", "empty phrase"]),
    (b'{"phrases": [\n  "so",\n', ["lex.json:3", "bad JSON"]),
    (b'{"phrases": [\n"caf\xe9"]}', ["lex.json:2", "not UTF-8"]),
    (b'{"phrases": ["so", "wait", 5]}', ["lex.json", "field 'phrases'", "phrase 3: not a phrase"]),
    (b'{"phrases": ["so", "\\ud800 wait"]}', ["lex.json", "phrase 2: lone surrogate U+D800"]),
])
def test_bad_lexicon_file(tmp_path, content, needles):
    lex = tmp_path / "lex.json"
    lex.write_bytes(content)
    _check_error(hicra("grams", "tag", "--lexicon", lex, "so"), *needles)
    _check_error(hicra("grams", "show", lex), *needles)


def test_bad_corpus(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(b'{"text": "so"}\n{"txt": "so"}\n')
    _check_error(hicra("grams", "tag", "--file", corpus, "--text-field", "text"),
                 "c.jsonl:2", "field 'text'", "missing field")
    corpus.write_bytes(b'{"text": "so"}\n{"text": "caf\xe9"}\n')
    _check_error(hicra("grams", "tag", "--file", corpus, "--text-field", "text"), "c.jsonl:2", "not UTF-8")
    corpus.write_bytes(b'{"text": "so"}\n{"text": 3}\n')
    _check_error(hicra("grams", "mine", corpus, "--text-field", "text", "--out", tmp_path / "o.json"),
                 "c.jsonl:2", "field 'text'", "expected a string")
    corpus.write_bytes(b'{"text": "so", "ok": true}\n{"text": "x", "ok": "maybe"}\n')
    _check_error(hicra("grams", "mine", corpus, "--text-field", "text", "--correct-field", "ok",
                       "--out", tmp_path / "o.json"), "c.jsonl:2", "field 'ok'", "correctness must be true/false")
    # the rule `hicra convert` applies too (hicra.fileio.read_correctness): "yes" is not a correctness value
    corpus.write_bytes(b'{"text": "so", "ok": 1}\n{"text": "x", "ok": "yes"}\n')
    _check_error(hicra("grams", "tag", "--file", corpus, "--text-field", "text", "--correct-field", "ok"),
                 "c.jsonl:2", "field 'ok'", "correctness must be true/false, got 'yes'")
    corpus.write_bytes(b'{"text": "so"}\n{"text": "so"\n')
    _check_error(hicra("grams", "tag", "--file", corpus, "--text-field", "text"), "c.jsonl:2", "bad JSON")
    _check_error(hicra("grams", "show", "no-such-preset"), "unknown lexicon preset")
    corpus.write_bytes(b'{"text": "so"}\n')
    for option, value, needle in [("--n", "5-3", "--n must satisfy 1 <= A <= B"), ("--top", "0", "--top must be in"),
                                  ("--distance", "-0.1", "--distance must be >= 0"),
                                  ("--max-candidates", "-1", "--max-candidates must be >= 1, got -1"),
                                  ("--min-df", "0", "--min-df must be >= 1, got 0")]:
        _check_error(hicra("grams", "mine", corpus, "--text-field", "text", option, value,
                           "--out", tmp_path / "o.json"), needle)
    assert not (tmp_path / "o.json").exists()
    # outputs that cannot both be written are refused before mining, so an earlier lexicon stays (before: a report
    # named like the lexicon replaced it, exit 0; an unwritable report came after the lexicon was replaced)
    (tmp_path / "prev.json").write_text('{"old": 1}')
    (tmp_path / "afile").write_text("x")
    for extra, needle in ([tmp_path / "prev.json", "--report must name another file than --out"],
                          [tmp_path / "afile" / "r.json", f"cannot write here: {tmp_path / 'afile'} is a file"],
                          [tmp_path, "field 'report': cannot write here: a directory of that name exists"]):
        _check_error(hicra("grams", "mine", corpus, "--text-field", "text", "--out", tmp_path / "prev.json",
                           "--report", extra), needle)
    assert (tmp_path / "prev.json").read_text() == '{"old": 1}'


def test_mine_end_to_end(tmp_path):
    """A small corpus where planning phrases recur across correct solutions; the real embedder runs."""
    import random

    rng = random.Random(0)
    plans = ["let us check the result", "we need to figure out", "on the other hand we", "first we compute"]
    rows = []
    for i in range(60):
        steps = [f"{rng.choice(plans)} {rng.randint(2, 99)} plus {rng.randint(2, 99)}" for _ in range(3)]
        rows.append({"question": f"what is the sum of item {i}", "sol": {"text": ". ".join(steps), "ok": i % 4 != 0}})
    rows.append({"question": "q", "sol": {"text": "a wrong path that keeps going wrong " * 3, "ok": False}})
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "mined.json"
    r = hicra("grams", "mine", corpus, "--text-field", "sol.text", "--correct-field", "sol.ok",
              "--question-field", "question", "--n", "3-4", "--top", "0.5", "--min-df", "3", "--out", out)
    assert r.returncode == 0, r.stderr
    lex = Lexicon.load(out)
    report = json.loads((tmp_path / "mined.report.json").read_text())
    assert report["n_documents"] == 45  # 60 rows, every 4th is incorrect
    texts = set(lex.texts)
    assert "we need to figure" in texts or "need to figure out" in texts
    assert not any("wrong" in t for t in texts)  # only successful solutions count
    assert not any(any(ch.isdigit() for ch in t) for t in texts)
    kept = [c for c in report["clusters"] if c["kept"]]
    assert len(kept) == report["n_kept_clusters"] >= 1
    assert [c["doc_freq"] for c in kept] == sorted((c["doc_freq"] for c in kept), reverse=True)
    assert sum(len(c["phrases"]) for c in kept) == len(lex)


def test_tag_summary_with_tokenizer(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from hicra.planning.tagger import PlanningTagger

    texts = ["But wait, so we add 3 and 4.", "Therefore the answer is 7. Let’s verify: 3 + 4 = 7.", "Also nothing"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts * 5, trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>")
    tok.save_pretrained(tmp_path / "tok")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"t": t}) + "\n" for t in texts))
    r = hicra("grams", "tag", "--file", corpus, "--text-field", "t", "--summary", "--tokenizer", tmp_path / "tok")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    tagger = PlanningTagger("paper", tok)
    masks = [tagger.token_mask(t) for t in texts]
    assert summary["tokens"] == sum(len(m) for m in masks)
    assert summary["planning_tokens"] == sum(int(m.sum()) for m in masks) > 0
    assert summary["planning_token_share"] == round(summary["planning_tokens"] / summary["tokens"], 5)


def test_non_utf8_text_argument():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable.encode(), b"-m", b"hicra", b"grams", b"tag", b"ok", b"caf\xe9 so"],
                       capture_output=True, env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.decode().strip() == "hicra grams: error: text argument 2 is not UTF-8"


def test_lone_surrogate_in_corpus(tmp_path):
    """A \\ud800 escape is legal JSON but not Unicode text: one error line, exit 2 (spans and --summary)."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"t": "so wait"}\n{"t": "so \\ud800 wait"}\n')
    _check_error(hicra("grams", "tag", "--file", corpus, "--text-field", "t"),
                 "c.jsonl:2", "field 't'", "lone surrogate U+D800 at character 4")
    _check_error(hicra("grams", "tag", "--file", corpus, "--text-field", "t", "--summary"), "c.jsonl:2")


def test_folder_named_like_a_preset(tmp_path):
    (tmp_path / "paper").mkdir()
    r = hicra("grams", "show", "paper", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("paper: 249 phrases")
