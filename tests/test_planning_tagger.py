"""PlanningTagger: matching rules (against a brute-force reference), token masks for byte-level BPE and
SentencePiece-style tokenizers trained here, agreement of the offsets and token-id paths."""

from __future__ import annotations

import itertools
import random
import re
import unicodedata

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hicra.planning.lexicon import Lexicon, fold
from hicra.planning.tagger import PlanningTagger, Span

PAPER = Lexicon.preset("paper")


PAPER_TAGGER = PlanningTagger(PAPER)


def tag(text, lexicon=PAPER):
    tagger = PAPER_TAGGER if lexicon is PAPER else PlanningTagger(lexicon)
    return [(text[s.start:s.end], s.phrase) for s in tagger.spans(text)]


# --- rules -------------------------------------------------------------------------------------------

def test_case_folded_and_whitespace():
    assert tag("BUT WAIT, the total") == [("BUT WAIT", "but wait")]
    assert tag("lets  break\n this down") == [("lets  break\n this down", "lets break this down")]


def test_apostrophes_curly_straight_and_missing():
    for text in ["let's verify", "let’s verify", "lets verify", "LET‘S verify"]:
        assert tag(text) == [(text[:-7], "lets")], text
    lex = Lexicon(["let's try", "doesn't"], name="t")
    assert tag("lets try it; it doesnt", lex) == [("lets try", "let's try"), ("doesnt", "doesn't")]
    assert tag("Let’s try; it doesn’t", lex) == [("Let’s try", "let's try"), ("doesn’t", "doesn't")]


def test_a_phrase_ending_in_n_stops_short_of_nt():
    """Rule 2 reads "can't" as the word "cant", so "we can" is not in "we can't" (it was, before session 55: the
    negation tagged as the planning phrase; a reviewer's find)."""
    lex = Lexicon(["we can", "cant be right"], name="t")
    assert tag("we can't do that", lex) == [] and tag("we cant do that", lex) == []
    assert tag("we can’t; we can do it", lex) == [("we can", "we can")]
    assert tag("it can't be right", lex) == [("can't be right", "cant be right")]
    assert tag("we can'ta", lex) == [("we can", "we can")]  # not a contraction: "'ta" is no word end


def test_word_boundaries():
    assert tag("also the reason") == []  # no "so" in "also"
    assert tag("soap, so") == [("so", "so")]
    assert tag("wait?but") == [("wait", "wait"), ("but", "but")]
    lex = Lexicon(["## step", "hmm,"], name="t")
    assert tag("## Step 1: hmm, ok", lex) == [("## Step", "## step"), ("hmm,", "hmm,")]


def test_latin_word_boundaries_next_to_other_scripts():
    """A boundary is a Latin letter or digit on the outside, not any \\w character: CJK text next to a phrase does not
    block it (language mixing in R1-style traces)."""
    assert tag("所以wait，我们再检查一下。") == [("wait", "wait")]
    assert tag("我们so再") == [("so", "so")]
    assert tag("дwait") == [("wait", "wait")]  # Cyrillic
    assert tag("x_wait") == [("wait", "wait")]  # the underscore is no letter
    assert tag("3wait") == [] and tag("naïvewait") == [] and tag("waité") == [] and tag("also") == []


def test_combining_marks_and_invisible_characters_join_the_latin_word():
    """A combining mark or a format character (soft hyphen, zero-width space, ...) after a Latin letter belongs to
    its word: no "so" in decomposed "só" / "söme", nor in "al\u00adso"; after other characters it is no letter."""
    nfd = unicodedata.normalize("NFD", "Ela disse só isso.")
    assert nfd != "Ela disse só isso." and tag(nfd) == []
    assert tag("so\u0308me") == [] and tag("al\u00adso") == [] and tag("al\u200bso") == []
    assert tag("so\u200b wait") == [("wait", "wait")]  # "so" + a zero-width space is still "so" + a letter run
    assert tag("al\u0301\u0301\u0301so") == [] and tag("al\u0301\u0301\u0301\u0301so") == []
    assert tag("\ufeffWait, so") == [("Wait", "wait"), ("so", "so")]  # a BOM at the start of the text
    assert tag("所以\u200bwait") == [("wait", "wait")]  # after CJK the zero-width space is a boundary
    lex = Lexicon(["so\u0301", "wait"], name="t")  # a phrase ending with a mark has the end boundary too
    assert tag("so\u0301 x", lex) == [("so\u0301", "so\u0301")] and tag("so\u0301me", lex) == []


def test_nfc_tokenizer_on_decomposed_text_paths_agree():
    """A tokenizer that normalises to NFC (Qwen2 does) sees "só" where the text has "so" + U+0301: the text path
    (offsets into the decomposed text) and the id path (the composed text) agree."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(CORPUS[:50] + ["Só isso. Café e pão, so we check"] * 5, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk)
    tagger = PlanningTagger(PAPER, tok)
    for text in ["Ela disse só isso, so we check.", "so\u0308me more, so", "Café: so\u0301 wait"]:
        nfd = unicodedata.normalize("NFD", text)
        ids, from_text = tagger.encode(nfd)
        assert from_text.tolist() == tagger.token_mask(ids).tolist(), nfd
        assert from_text.any()


def test_latin_word_boundaries_token_ids_path(bpe_tokenizer):
    tagger = PlanningTagger(PAPER, bpe_tokenizer)
    text = "所以wait，我们再检查一下。但是hmm"
    ids = bpe_tokenizer(text, add_special_tokens=False)["input_ids"]
    from_ids = tagger.token_masks([ids])[0]
    assert from_ids.any()
    assert tagger.token_mask(text).tolist() == from_ids.tolist() == tagger.token_mask(ids).tolist()
    covered = bpe_tokenizer.decode([i for i, m in zip(ids, from_ids, strict=True) if m])
    assert "wait" in covered


def test_mask_covers_overlapping_occurrences():
    """Both "we can use" and "use the fact that" are paper grams: the mask is their union; counting stays
    leftmost-longest."""
    text = "we can use the fact that x is even"
    assert tag(text) == [("we can use", "we can use")]
    assert PAPER_TAGGER.mask_spans(text).tolist() == [[0, len("we can use the fact that")]]
    text = "so we need to find out how many"
    assert [text[a:b] for a, b in PAPER_TAGGER.mask_spans(text).tolist()] == ["so", "need to find out how many"]
    assert PAPER_TAGGER.mask_spans("").shape == (0, 2)


def test_overlapping_occurrences_in_token_masks(bpe_tokenizer):
    tagger = PlanningTagger(PAPER, bpe_tokenizer)
    text = "we can use the fact that x is even"
    ids = bpe_tokenizer(text, add_special_tokens=False)["input_ids"]
    enc = bpe_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    end = len("we can use the fact that")
    expected = [s < end and e > 0 for s, e in enc["offset_mapping"]]
    assert tagger.token_mask(text).tolist() == expected
    assert tagger.token_masks([ids])[0].tolist() == expected


def test_one_id_sequence(bpe_tokenizer):
    """planning_ratio takes one id sequence (list, 1-D array, 1-D tensor) as one sequence, like one string;
    token_masks wants a batch and says so."""
    tagger = PlanningTagger(PAPER, bpe_tokenizer)
    text = "But wait, let's check the answer."
    ids = bpe_tokenizer(text, add_special_tokens=False)["input_ids"]
    want = tagger.planning_ratio(text)
    assert 0 < want < 1
    for one in (ids, tuple(ids), np.array(ids), torch.tensor(ids)):
        assert tagger.planning_ratio(one) == want
    assert tagger.planning_ratio([ids]) == tagger.planning_ratio(np.array([ids])) == want
    for one in (ids, np.array(ids), torch.tensor(ids)):
        with pytest.raises(TypeError, match=r"token_mask\(ids\)"):
            tagger.token_masks(one)
    assert tagger.token_mask(np.array(ids)).tolist() == tagger.token_mask(text).tolist()


def test_planning_ratio_accepts_text(bpe_tokenizer):
    tagger = PlanningTagger(PAPER, bpe_tokenizer)
    text = "wait, let me check"
    mask = tagger.token_mask(text)
    assert tagger.planning_ratio(text) == pytest.approx(mask.mean())
    assert tagger.planning_ratio([text, "x = 1"]) == pytest.approx(
        (mask.sum() + tagger.token_mask("x = 1").sum()) / (len(mask) + len(tagger.token_mask("x = 1"))))
    ids = bpe_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tagger.planning_ratio([ids]) == tagger.planning_ratio(text)
    with pytest.raises(TypeError, match="token-id sequences"):
        tagger.token_masks(["wait, let me check"])
    with pytest.raises(TypeError, match="integers"):
        tagger.planning_ratio([[1.5, 2.0]])
    with pytest.raises(ValueError, match="tokenizer"):
        PlanningTagger(PAPER).planning_ratio("wait, let me check")


def test_longest_match_and_overlaps():
    assert tag("so again we") == [("so again", "so again")]
    assert tag("but wait, no") == [("but wait", "but wait")]  # leftmost wins over "wait, no"
    assert tag("wait, no") == [("wait, no", "wait, no")]
    # leftmost-longest, then resume after the match: "need to find" hides the later "find out how many"
    assert tag("we need to find out how many") == [("need to find", "need to find")]


def test_longest_match_with_apostrophe_and_optional_apostrophe():
    """"charles'" ends with an apostrophe, "charles's idea" continues with an optional-apostrophe "s": both match
    the apostrophe of "charles's idea"; the longer one wins, whatever the lexicon's order."""
    text = "charles's idea, charles' idea, charles’s plan"
    for phrases in (["charles'", "charles's idea"], ["charles's idea", "charles'"]):
        lex = Lexicon(phrases, name="t")
        assert tag(text, lex) == reference_spans(text, lex) == [
            ("charles's idea", "charles's idea"), ("charles'", "charles'"), ("charles’", "charles'")]
        assert PlanningTagger(lex).mask_spans("charles's idea").tolist() == [[0, 14]]
    lex = Lexicon(["don'", "don't stop"], name="t")
    assert tag("don't stop, don' go", lex) == [("don't stop", "don't stop"), ("don'", "don'")]


def test_contraction_rule_is_the_lexicons():
    """The optional apostrophe follows a letter (`str.isalpha`) in the lexicon's keys and in the pattern alike, so
    every phrase matches its own text: "x²'s" keeps its apostrophe ("²" is no letter)."""
    lex = Lexicon(["x²'s value", "Ⅻ's reign", "it's"], name="t")
    for p in lex:
        assert tag(p.text, lex) == [(p.text, p.text)], p.text
    assert tag("x²s value", lex) == [] and tag("its", lex) == [("its", "it's")]


def test_empty_text_and_empty_lexicon():
    assert PlanningTagger(PAPER).spans("") == []
    assert PlanningTagger(Lexicon([], name="e")).spans("so but wait") == []


def test_span_fields():
    (span,) = PlanningTagger(PAPER).spans("Hmm. Alternatively, x")
    assert span == Span(5, 18, "alternatively", "branching")


# --- brute-force reference --------------------------------------------------------------------------

def _variants(key):
    """All literal spellings a phrase key matches (contraction apostrophes present or not)."""
    slots = [i for i in range(1, len(key)) if (key[i] == "s" and key[i - 1].isalpha())
             or (key[i] == "t" and key[i - 1] == "n")]
    for choice in itertools.product([False, True], repeat=len(slots)):
        out, last = [], 0
        for i, on in zip(slots, choice, strict=True):
            out.append(key[last:i] + ("'" if on else ""))
            last = i
        yield "".join(out) + key[last:]


_PAPER_VARIANTS: list = []


def _sorted_variants(lexicon):
    variants = sorted({(v, p.text) for p in lexicon for v in _variants(p.key)}, key=lambda x: -len(x[0]))
    if lexicon is PAPER:  # cached: the brute force runs hundreds of times on the paper lexicon
        if not _PAPER_VARIANTS:
            _PAPER_VARIANTS.extend(variants)
        return _PAPER_VARIANTS
    return variants


_WORD = re.compile("[0-9a-zA-Z\u00aa\u00b5\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]")  # Latin


def _attached(ch):
    """A combining mark of the general-purpose blocks or a format character (docs/planning.md rule 4)."""
    return unicodedata.category(ch) == "Cf" or (unicodedata.category(ch).startswith("M") and (
        "\u0300" <= ch <= "\u036f" or "\u1ab0" <= ch <= "\u1aff" or "\u1dc0" <= ch <= "\u1dff"
        or "\u20d0" <= ch <= "\u20ff" or "\ufe00" <= ch <= "\ufe0f" or "\ufe20" <= ch <= "\ufe2f"))


def _starts_word(v):
    return bool(_WORD.match(v[0]))


def _ends_word(v):
    v = v.rstrip("".join(ch for ch in set(v) if _attached(ch)))
    return bool(v) and bool(_WORD.match(v[-1]))


def _word_before(norm, i):
    """Whether a phrase starting at `i` follows a Latin word: a Latin letter or digit, directly or through 1-3
    attached characters; 4 or more attached characters block a start whatever precedes them."""
    run = 0
    while i - run - 1 >= 0 and _attached(norm[i - run - 1]):
        run += 1
    if run > 3:
        return True
    return i - run - 1 >= 0 and bool(_WORD.match(norm[i - run - 1]))


def reference_spans(text, lexicon):
    """Normalise the text (fold, one apostrophe, whitespace runs -> one space, keeping an index map), then
    scan left to right: at each position the longest literal variant with word boundaries wins."""
    norm, idx = [], []
    for i, ch in enumerate(fold(text)):
        ch = "'" if ch in "'’‘ʼ" else ch
        if ch.isspace():
            if norm and norm[-1] == " ":
                continue
            ch = " "
        norm.append(ch)
        idx.append(i)
    norm = "".join(norm)
    variants = _sorted_variants(lexicon)
    out, i = [], 0
    while i < len(norm):
        for v, phrase in variants:
            j = i + len(v)
            if not norm.startswith(v, i):
                continue
            if _starts_word(v) and _word_before(norm, i):
                continue
            if _ends_word(v) and j < len(norm) and (_WORD.match(norm[j]) or _attached(norm[j])):
                continue
            after = j + 2  # rule 2: "n't" is one word, so a phrase ending in "n" stops short of it
            if v.endswith("n") and norm.startswith("'t", j) and not (
                    after < len(norm) and (_WORD.match(norm[after]) or _attached(norm[after]))):
                continue
            start, end = idx[i], idx[j - 1] + 1
            out.append((text[start:end], phrase))
            i = j
            break
        else:
            i += 1
    return out


FRAGMENTS = ["so", "also", "again", "let's", "lets", "let’s", "let", "verify", "but", "wait", "BUT", "Wait", "can't",
             "'t", "isn't", "again't", "then",
             ",", "no", "check", "if", "we", "can", "see", "that", "doesn't", "work", "it's", "its", "better",
             "x", "7", "?", "!", "é", "所以", "，", "д", "_", "\u0301", "\u0308", "\u00ad", "\u200b", "\ufeff"]
SEPS = [" ", " ", " ", "", "  ", "\n", "\t"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(SEPS)), max_size=25))
def test_matches_brute_force_reference(parts):
    text = "".join(a + b for a, b in parts)
    assert tag(text) == reference_spans(text, PAPER)


def test_reference_on_real_text(shared_data):
    import json

    lines = (shared_data / "gsm8k" / "model_solutions.jsonl").read_text().splitlines()[:40]
    for line in lines:
        row = json.loads(line)
        for key in ("6b_finetuning", "175b_verification"):
            text = row[key]["solution"]
            assert tag(text) == reference_spans(text, PAPER)


# --- tokenizers built here --------------------------------------------------------------------------

def _corpus(n=200, seed=0):
    rng = random.Random(seed)
    words = ("the of and to a in is it that we can so also then total number answer 12 15 apples "
             "café naïve let’s let's — , .").split()
    out = []
    for _ in range(n):
        parts = [rng.choice(PAPER.texts) if rng.random() < 0.2 else rng.choice(words) for _ in range(40)]
        text = " ".join(parts)
        out.append(text[0].upper() + text[1:])
    return out


CORPUS = _corpus()


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """Byte-level BPE (GPT-2 / Qwen style: tokens carry their leading space as "Ġ")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=350, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def sp_tokenizer():
    """SentencePiece style (Llama-2 style: Metaspace "▁", byte fallback for unseen characters)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=450, special_tokens=specials))
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


_SINGLE: dict[str, PlanningTagger] = {}


def _all_occurrences(text):
    """Independent definition of every occurrence, overlaps included: the occurrences of each phrase on its own
    (one single-phrase tagger per lexicon phrase), pooled."""
    out = []
    for phrase in PAPER.phrases:
        tagger = _SINGLE.setdefault(phrase.text, PlanningTagger(Lexicon([phrase.text], name="one")))
        out += [(sp.start, sp.end) for sp in tagger.spans(text)]
    return out


def _expected_mask(text, tokenizer):
    """Independent definition: token planning iff its offsets overlap any occurrence (plain Python loops)."""
    spans = _all_occurrences(text)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [any(s < end and e > start for start, end in spans) for s, e in enc["offset_mapping"]]


@pytest.mark.parametrize("which", ["bpe", "sp"])
def test_token_mask_text_and_ids_agree(which, request):
    tok = request.getfixturevalue(f"{which}_tokenizer")
    tagger = PlanningTagger(PAPER, tok)
    texts = _corpus(60, seed=1) + ["Also so we can", "let’s verify", "Wait, naïve café — but", "so"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    batched = tagger.token_masks(ids)
    n_planning = 0
    for text, seq, from_ids in zip(texts, ids, batched, strict=True):
        from_text = tagger.token_mask(text)
        assert from_text.dtype == bool and len(from_text) == len(seq)
        assert from_text.tolist() == from_ids.tolist(), text
        assert tagger.token_mask(seq).tolist() == from_ids.tolist()
        n_planning += int(from_ids.sum())
        if which == "bpe":  # offsets are exact for byte-level BPE: same as the plain definition
            assert from_text.tolist() == _expected_mask(text, tok)
    assert n_planning > 100


@pytest.mark.parametrize("which", ["bpe", "sp"])
def test_token_mask_marks_the_right_tokens(which, request):
    tok = request.getfixturevalue(f"{which}_tokenizer")
    tagger = PlanningTagger(PAPER, tok)
    text = "Also the total, so we verify"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    mask = tagger.token_mask(ids)
    pieces = [tok.decode([i]) for i in ids]
    planning = "".join(p for p, m in zip(pieces, mask, strict=True) if m).replace(" ", "")
    # "so" (with its leading space in BPE / "▁so" in SentencePiece) is planning, "Also" is not
    assert "so" in planning and "Also" not in planning and "total" not in planning
    # every planning token is inside "so" + " we" (the phrase "so" is followed by "we", a separate phrase)
    start = text.index(", so")
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    for (s, e), m in zip(enc, mask, strict=True):
        if m:
            assert s >= start, (s, e)


def test_ids_path_details(bpe_tokenizer):
    tok = bpe_tokenizer
    tagger = PlanningTagger(PAPER, tok)
    a = tok("but wait", add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    # a special token breaks a phrase, padding-style ids (-100, out of vocab) are never planning
    split = tagger.token_mask(a[:1] + [eos] + a[1:])
    whole = tagger.token_mask(a)
    assert whole.all() and not split[1]
    masks = tagger.token_masks([torch.tensor(a), np.array([-100] + a + [10**6]), []])
    assert masks[0].tolist() == whole.tolist()
    assert masks[1].tolist() == [False, *whole.tolist(), False]
    assert masks[2].tolist() == []
    # a 2-D batch is a list of rows; rows never match across their boundary
    rows = tagger.token_masks(np.array([a, a]))
    assert [r.tolist() for r in rows] == [whole.tolist(), whole.tolist()]
    but = tok("but", add_special_tokens=False)["input_ids"]
    wait = tok(" wait", add_special_tokens=False)["input_ids"]
    first, second = tagger.token_masks([but, wait])  # "but" | " wait" in two rows: each alone
    assert first.all() and second.all()
    lex = Lexicon(["but wait"], name="t")
    assert PlanningTagger(lex, tok).token_mask(but + wait).all()
    first, second = PlanningTagger(lex, tok).token_masks([but, wait])
    assert not first.any() and not second.any()
    assert tagger.planning_ratio([a]) == 1.0


def test_multibyte_apostrophe_split_across_byte_tokens(bpe_tokenizer):
    """’ is 3 UTF-8 bytes; byte-level tokens may cut it. The ids path decodes bytes, so it still matches."""
    tok = bpe_tokenizer
    tagger = PlanningTagger(PAPER, tok)
    text = "x let’s verify"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    # force a cut: spell ’ as its three single-byte tokens
    byte_ids = [tok.convert_tokens_to_ids(c) for c in "âĢĻ"]
    let_ids = tok(" let", add_special_tokens=False)["input_ids"]
    s_ids = tok("s verify", add_special_tokens=False)["input_ids"]
    x_ids = tok("x", add_special_tokens=False)["input_ids"]
    cut = x_ids + let_ids + byte_ids + s_ids
    assert tok.decode(cut) == text
    mask = tagger.token_mask(cut)
    assert not mask[: len(x_ids)].any() and mask[len(x_ids):len(x_ids) + len(let_ids) + 3].all()
    assert tagger.token_mask(ids).tolist() == tagger.token_mask(text).tolist()


def test_token_mask_needs_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        PlanningTagger(PAPER).token_mask("so")


_TOKEN_TAGGERS: dict = {}


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.tuples(st.sampled_from(FRAGMENTS + ["naïve", "’", "—", "ß", "İ", "日本"]),
                                st.sampled_from(SEPS)), max_size=20))
def test_text_and_ids_paths_agree_on_random_text(bpe_tokenizer, sp_tokenizer, parts):
    text = "".join(a + b for a, b in parts)
    for tok in (bpe_tokenizer, sp_tokenizer):
        if tok not in _TOKEN_TAGGERS:  # the tokenizer fixtures live as long as the module
            _TOKEN_TAGGERS[tok] = PlanningTagger(PAPER, tok)
        tagger = _TOKEN_TAGGERS[tok]
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tagger.token_mask(text).tolist() == tagger.token_mask(ids).tolist(), (text, tok)


def test_tokenizer_can_be_set_later(bpe_tokenizer, sp_tokenizer):
    tagger = PlanningTagger(PAPER)
    text = "Also, so we verify"
    tagger.tokenizer = bpe_tokenizer
    ids = bpe_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tagger.token_mask(ids).tolist() == PlanningTagger(PAPER, bpe_tokenizer).token_mask(text).tolist()
    tagger.tokenizer = sp_tokenizer  # the vocabulary table is rebuilt for the new tokenizer
    ids = sp_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tagger.token_mask(ids).tolist() == PlanningTagger(PAPER, sp_tokenizer).token_mask(text).tolist()


def test_invalid_utf8_row_does_not_spoil_the_batch(bpe_tokenizer):
    """A row starting with a stray continuation byte is decoded token by token; the other rows keep the exact
    byte path (a "’" cut across three byte tokens still matches)."""
    tok = bpe_tokenizer
    tagger = PlanningTagger(PAPER, tok)
    byte_ids = [tok.convert_tokens_to_ids(c) for c in "âĢĻ"]  # the three bytes of ’
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    cut = enc("x let") + byte_ids + enc("s verify")
    stray = byte_ids[1:2] + enc(" so we")  # starts with a lone continuation byte: not valid UTF-8
    masks = tagger.token_masks([cut, stray, enc("but wait")])
    assert masks[0].tolist() == tagger.token_mask(cut).tolist()
    n_x = len(enc("x"))
    assert not masks[0][:n_x].any() and masks[0][n_x:n_x + len(enc(" let")) + 3].all()
    assert masks[1].tolist() == [False] + [True] * (len(stray) - 1 - len(enc(" we"))) + [False] * len(enc(" we"))
    assert masks[2].all()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_batch_equals_rows_on_random_ids(bpe_tokenizer, data):
    """No leakage across rows, whatever the ids (random ids include lone UTF-8 continuation bytes)."""
    tok = bpe_tokenizer
    if tok not in _TOKEN_TAGGERS:
        _TOKEN_TAGGERS[tok] = PlanningTagger(PAPER, tok)
    tagger = _TOKEN_TAGGERS[tok]
    phrase_ids = [tok(" " + p, add_special_tokens=False)["input_ids"] for p in ("so", "but wait", "let's")]
    piece = st.one_of(st.lists(st.integers(-5, len(tok) + 5), max_size=3), st.sampled_from(phrase_ids))
    rows = data.draw(st.lists(st.lists(piece, max_size=6).map(lambda ps: sum(ps, [])), min_size=1, max_size=5))
    batch = tagger.token_masks(rows)
    assert [m.tolist() for m in batch] == [tagger.token_masks([r])[0].tolist() for r in rows]
    assert [len(m) for m in batch] == [len(r) for r in rows]


def test_padded_masks_of_a_trainer_batch(bpe_tokenizer):
    """The [B, T] trainer path (TRL completions, verl responses): rows tagged up to their last response token,
    False on padding and on tokens masked out inside a response, which still keep their place in the text."""
    tok = bpe_tokenizer
    tagger = PlanningTagger(PAPER, tok)
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    a, b = enc("so 3 + 4 = 7. but wait"), enc("x = 7, but wait")
    t = len(a) + 2
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((3, t), pad)
    ids[0, : len(a)], ids[1, : len(b)] = torch.tensor(a), torch.tensor(b)
    rmask = torch.zeros(3, t, dtype=torch.long)  # 0/1 like trainers' masks; row 2 is empty
    rmask[0, : len(a)], rmask[1, : len(b)] = 1, 1
    hole = len(enc("x"))  # " =" masked out (say, a tool's output) inside row 1
    rmask[1, hole] = 0
    out = tagger.padded_masks(ids, rmask)
    assert out.dtype == torch.bool and out.shape == (3, t)
    assert out[0, : len(a)].tolist() == tagger.token_mask(a).tolist() and not out[0, len(a):].any()
    want = tagger.token_mask(b)
    want[hole] = False
    # the phrase at the end is tagged: the row is not cut short by the masked-out token
    assert want[-1] and out[1, : len(b)].tolist() == want.tolist() and not out[1, len(b):].any()
    assert not out[2].any()
    assert tagger.padded_masks(ids[:0], rmask[:0]).shape == (0, t)


def test_planning_fraction_is_the_old_name_of_planning_ratio():
    assert PlanningTagger.planning_fraction is PlanningTagger.planning_ratio


# --- other decoders ---------------------------------------------------------------------------------

def _suffix_bpe(byte_level: bool):
    """BPE whose tokens end words with "</w>": OpenAI-GPT style (BPEDecoder) or CLIP style (byte level)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    if byte_level:
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tk.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tk.pre_tokenizer = pre_tokenizers.Whitespace()
        tk.decoder = decoders.BPEDecoder(suffix="</w>")
        alphabet = []
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>"],
                                                       end_of_word_suffix="</w>", initial_alphabet=alphabet))
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")


@pytest.mark.parametrize("byte_level", [False, True])
def test_end_of_word_suffix_tokenizers(byte_level):
    """"wait</w>" decodes to "wait" and a word end (a space): the id path finds the phrases the text path finds
    (texts without punctuation: these tokenizers split it off, so the ids cannot tell "let's" from "let ' s")."""
    tok = _suffix_bpe(byte_level)
    tagger = PlanningTagger(PAPER, tok)
    texts = ["So we can use the fact that it works", "but wait we need to check the answer again",
             "also the soap then the plan"]
    n_planning = 0
    for text in texts:
        ids, from_text = tagger.encode(text)
        assert any(t.endswith("</w>") for t in tok.convert_ids_to_tokens(ids))
        assert tagger.token_mask(ids).tolist() == from_text.tolist(), text
        n_planning += int(from_text.sum())
    assert n_planning >= 8


def test_tokenizer_without_decoder():
    """No decoder: Hugging Face joins the tokens with spaces, and so does the id path."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["<unk>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")
    tagger = PlanningTagger(PAPER, tok)
    text = "Also, so we can use the fact that x"
    ids, from_text = tagger.encode(text)
    assert from_text.any() and tagger.token_mask(ids).tolist() == from_text.tolist()


def test_byte_level_tokenizer_saved_without_its_decoder():
    """A byte-level BPE whose decoder was not saved: its tokens are still the byte alphabet's ("Ġwait"), so the id
    path reads them as bytes (read as words joined by spaces it found about a tenth of the planning tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk)
    tagger = PlanningTagger(PAPER, tok)
    for text in ("Also, so we can use the fact that x", "Wait, let me check that again. So the answer is 3"):
        ids, from_text = tagger.encode(text)
        assert from_text.any() and tagger.token_mask(ids).tolist() == from_text.tolist()


def test_unsupported_decoder_warns():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.CTC()
    tk.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["<unk>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")
    with pytest.warns(UserWarning, match=r"CTC.*not supported.*token_mask\(text\)"):
        PlanningTagger(PAPER, tok).token_mask([1, 2, 3])


def test_supported_tokenizers_do_not_warn(bpe_tokenizer, sp_tokenizer, recwarn):
    for tok in (bpe_tokenizer, sp_tokenizer, _suffix_bpe(False)):
        PlanningTagger(PAPER, tok).token_mask([1, 2, 3])
    assert not [w for w in recwarn if "not supported" in str(w.message)]
