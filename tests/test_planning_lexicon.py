"""Lexicon: file format, validation, merge/extend, presets."""

from __future__ import annotations

import json

import pytest

from hicra.errors import InputError
from hicra.planning.lexicon import CATEGORIES, FORMAT, Lexicon, Phrase, phrase_key

PAPER_SOURCE = "reference/paper_strategic_grams.json"


def test_paper_preset_has_every_reference_phrase(shared_data):
    ref = json.loads((shared_data.parent / PAPER_SOURCE).read_text())["phrases"]
    lex = Lexicon.preset("paper")
    assert lex.texts == ref  # same phrases, same order, as printed
    assert len(lex) == 249
    assert set(p.category for p in lex) == set(CATEGORIES)
    assert lex.get("but wait").category == "backtracking"
    assert lex.get("let's double-check").category == "verification"
    assert lex.get("alternatively").category == "branching"
    assert lex.get("therefore").category == "deduction"


def test_phrase_key_rules():
    assert phrase_key("  Let’s   Check\n") == "lets check"
    assert phrase_key("doesn't") == phrase_key("doesnt") == "doesnt"
    assert phrase_key("we're") == "we're"  # only 's and n't apostrophes are optional
    assert phrase_key("ABC") == "abc"


def test_save_load_roundtrip(tmp_path):
    lex = Lexicon([("let's try", "branching"), "so", {"text": "wait", "category": "backtracking"}],
                  name="mine", description="d")
    path = lex.save(tmp_path / "lex.json")
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and data["name"] == "mine"
    assert data["phrases"][0] == {"text": "let's try", "category": "branching"}
    assert data["phrases"][1] == {"text": "so", "category": "other"}
    assert Lexicon.load(path) == lex
    yml = tmp_path / "lex.yaml"
    yml.write_text("name: y\nphrases:\n  - {text: hold on, category: backtracking}\n  - next\n")
    assert Lexicon.load(yml).phrases == (Phrase("hold on", "backtracking"), Phrase("next", "other"))


def test_merge_and_extend():
    a = Lexicon([("so", "deduction"), ("wait", "backtracking")], name="a")
    b = Lexicon([("SO", "other"), ("let's see", "verification")], name="b")
    m = a.merge(b)
    assert m.texts == ["so", "wait", "let's see"]
    assert m.get("so").category == "deduction"  # the first lexicon wins on a shared phrase
    e = a.extend(["next"], category="other")
    assert e.texts == ["so", "wait", "next"] and len(a) == 2  # immutable
    with pytest.raises(ValueError, match="duplicate"):
        a.extend(["Wait"])


@pytest.mark.parametrize("content, match", [
    ('{"phrases": [{"text": "so"}, {"text": "So"}]}', "duplicate"),
    ('{"phrases": [{"text": "  "}]}', "empty phrase"),
    ('{"phrases": [{"text": "so", "category": "vibes"}]}', "unknown category"),
    ('{"phrases": [', "bad JSON"),
    ('{"format": "other/9", "phrases": []}', "unknown lexicon format"),
    ('{"name": "x"}', "phrases"),
])
def test_bad_lexicon_files(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        Lexicon.load(path)
    assert str(path) in str(info.value)


def test_non_utf8_lexicon(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"phrases": [\n"caf\xe9"]}')
    with pytest.raises(InputError, match=r"bad.json:2: not UTF-8"):
        Lexicon.load(path)


def test_unknown_preset():
    with pytest.raises(InputError, match="unknown lexicon preset"):
        Lexicon.preset("nope")
    assert "paper" in Lexicon.presets()
    # a CLI's --lexicon takes a preset or a file: the message says neither exists and lists the presets
    with pytest.raises(InputError, match=r"^unknown lexicon preset 'nope' and no lexicon file of that name; "
                                         r"presets: gsm8k, lab, paper$"):
        Lexicon.resolve("nope")


def test_gsm8k_preset_is_a_mined_lexicon():
    lex = Lexicon.preset("gsm8k")
    assert "gsm8k" in Lexicon.presets() and len(lex) > 50
    for p in lex:
        assert 3 <= len(p.text.split()) <= 5 and not any(ch.isdigit() for ch in p.text), p.text


@pytest.mark.parametrize("content, match", [
    ('{"phrases": ["so", "wait", {"category": "other"}]}', "phrase 3: entry without 'text'"),
    ('{"phrases": ["so", "wait", 5]}', "phrase 3: not a phrase"),
    ('{"phrases": ["so", ["a", "b", "c"]]}', "phrase 2: not a phrase"),
    ('{"phrases": ["so", {"text": 7}]}', "phrase 2: text must be a string"),
    ('{"phrases": ["so", "\\ud800 wait"]}', r"phrase 2: lone surrogate U\+D800 at character 1"),
    ('{"name": "x\\udc00", "phrases": ["so"]}', r"field 'name': lone surrogate U\+DC00 at character 2"),
])
def test_bad_phrase_entries_name_the_phrase(tmp_path, content, match):
    """Every problem with one phrase names its number, counted from 1 (docs/planning.md, Lexicon files)."""
    path = tmp_path / "lex.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        Lexicon.load(path)
    assert str(info.value).startswith(f"{path}, field ")


def test_extend_numbers_the_new_phrases_after_the_old():
    with pytest.raises(ValueError, match="phrase 4: not a phrase"):
        Lexicon(["so", "wait"]).extend(["next", 5])


def test_optional_apostrophe_follows_a_letter():
    assert phrase_key("x²'s value") == "x²'s value"  # "²" is no letter: the apostrophe stays
    assert phrase_key("Ⅻ's") == "ⅻ's" and phrase_key("é's") == "és" and phrase_key("don't") == "dont"


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper").mkdir()
    assert Lexicon.resolve("paper") == Lexicon.preset("paper")
    (tmp_path / "gsm8k").write_text('{"phrases": ["so"]}')  # a file of that name is read as the lexicon
    assert Lexicon.resolve("gsm8k").texts == ["so"]
