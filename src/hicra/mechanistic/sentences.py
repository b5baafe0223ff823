"""Sentences of a response, the prefixes that resampling starts from, and each sentence's class.

A sentence is a character span of the response text with its outer whitespace left out; blank pieces are no
sentences. Two ways to split (`SPLITS`):
- "lines" (the lab's: its responses are one planning phrase or one computation per line): each non-blank line;
- "sentences" (free text of real models): a piece ends at a newline or after `.`, `!` or `?` followed by
  whitespace.

Resampling works on the prefixes between sentences: `boundaries(text, spans)` gives b_0..b_m with b_i the start
of sentence i and b_m = len(text), so `text[:b_i]` is the prefix *before* sentence i and `text[:b_{i+1}]` the prefix
that *keeps* it (with whatever whitespace follows it).

Classes (`classify`), the first that applies: "answer" for the sentence that states the final answer (the task
says which: lab `so the answer is ...`, `\\boxed{}` for math), "planning" when the sentence contains a strategic
gram of the lexicon (even if it also computes), "execution" when it holds a computation (`X op Y = Z`,
`hicra.lab.tasks.base.computation_lines`, or a looser arithmetic-with-result pattern for free text), else "other".
The answer sentence is a class of its own because it is an anchor by construction (changing it changes the answer)
and would otherwise land among the planning sentences whenever the lexicon holds the answer phrase (the lab's does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hicra.lab.tasks.base import computation_lines

SPLITS = ("lines", "sentences")
CLASSES = ("planning", "execution", "answer", "other")

_LINE = re.compile(r"[^\n]+")
_SENTENCE = re.compile(r"[^\n]+?(?:[.!?](?=\s)|$)", re.MULTILINE)
_WS = re.compile(r"\s+")
# free-text arithmetic with a result: "12 * 7 = 84", "3 × 4 = 12", "(5 + 2) = 7"
_ARITH = re.compile(r"\d[\d.,]*\s*\)?\s*[-+*/×÷^·]\s*\(?\s*\d[^=\n]*=\s*-?\(?\d")


@dataclass(frozen=True)
class Sentence:
    """Sentence `idx` of a response: characters `[start, end)`, `text` is that slice."""

    idx: int
    start: int
    end: int
    text: str


def split_sentences(text: str, split: str = "lines") -> list[Sentence]:
    """The non-blank sentences of `text` in order (see the module docstring for the two splits)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pattern = _LINE if split == "lines" else _SENTENCE
    out: list[Sentence] = []
    for m in pattern.finditer(text):
        piece = m.group(0)
        stripped = piece.strip()
        if not stripped:
            continue
        start = m.start() + (len(piece) - len(piece.lstrip()))
        out.append(Sentence(len(out), start, start + len(stripped), stripped))
    return out


def boundaries(text: str, sentences: list[Sentence]) -> list[int]:
    """b_0..b_m: b_i = start of sentence i, b_m = len(text). `text[:b_i]` is the prefix before sentence i."""
    return [s.start for s in sentences] + [len(text)]


def normalize(sentence: str) -> str:
    """The key two sentences are compared by: outer whitespace dropped, inner runs of whitespace made one space."""
    return _WS.sub(" ", sentence).strip()


def first_sentence(text: str, split: str = "lines") -> str:
    """The normalized first sentence of a continuation ("" when it has none)."""
    found = split_sentences(text, split)
    return normalize(found[0].text) if found else ""


def is_computation(sentence: str) -> bool:
    """True when the sentence states a computation with its result (`X op Y = Z` or looser free-text arithmetic)."""
    return bool(computation_lines(sentence)) or bool(_ARITH.search(sentence))


def classify(sentence: str, tagger, is_answer=None) -> str:
    """The class of one sentence (`CLASSES`); `tagger` is a `hicra.planning.PlanningTagger`, `is_answer(sentence)`
    tells the answer sentence (None: no sentence is one)."""
    if is_answer is not None and is_answer(sentence):
        return "answer"
    if tagger.spans(sentence):
        return "planning"
    if is_computation(sentence):
        return "execution"
    return "other"
