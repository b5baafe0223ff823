"""The lab's planning language: every strategic move has several paraphrases, as in real reasoning traces.

The scripted solvers say a move by drawing one of its paraphrases; the `lab` lexicon is then *mined* from the
successful traces of the warm-start corpus (`hicra.planning.mining`, as the paper mines its strategic grams), not
hand-listed here. Moves:
- one per strategy (announcing the plan): `one-by-one`, `pairing`, `middle`, `split`, `round-up`, `split-first`;
- `count` (before counting the terms of a series), `combine` (before adding the parts of a multi-part problem),
  `next-part` (turning to the second part).
"""

from __future__ import annotations

PHRASES: dict[str, tuple[str, ...]] = {
    "one-by-one": (
        "let's add them one by one",
        "i will just add the terms in order",
        "adding term by term is simplest here",
        "just keep a running total of the terms",
        "go through the terms one at a time",
        "simply add them up in order",
        "few terms, so add each one directly",
        "a short list, so sum it step by step",
    ),
    "pairing": (
        "use the pairing trick",
        "pair the first and last terms",
        "let's pair up terms from both ends",
        "the ends pair up to the same sum",
        "many terms, so pair them from the outside in",
        "match the ends in pairs and count the pairs",
        "use gauss's trick of pairing the ends",
        "each pair from both ends has equal sum",
    ),
    "middle": (
        "use the middle term times the count",
        "there is a middle term, so multiply it by the count",
        "an odd count means a middle term exists",
        "the average is the middle term here",
        "take the middle value and scale it by the count",
        "find the middle term and multiply",
        "the sum is the middle term times how many",
        "with an odd number of terms use the middle",
    ),
    "split": (
        "split the second number into tens and ones",
        "break the second factor by place value",
        "let's split it into tens and ones",
        "multiply the tens and the ones separately",
        "take the tens part and the ones part",
        "use place value on the second number",
        "decompose the multiplier into tens plus ones",
        "do the tens first and then the ones",
    ),
    "round-up": (
        "round up to the next ten and take away the extra",
        "it is close to a round number, so round up",
        "go up to the next multiple of ten then subtract",
        "easier to overshoot to a round number and correct",
        "use the round number just above it",
        "multiply by the next ten and remove the excess",
        "round the multiplier up, then subtract the difference",
        "compensate: round up first and take back the rest",
    ),
    "split-first": (
        "split the first number instead",
        "break up the first factor by place value",
        "it is easier to split the first factor",
        "decompose the first number and multiply each part",
        "take the first number apart into round and rest",
        "let's split the multiplicand this time",
        "the first factor splits nicely, use that",
        "work with the parts of the first number",
    ),
    "count": (
        "first count the terms",
        "how many terms are there",
        "count how many numbers we add",
        "find the number of terms first",
        "work out the count of terms",
        "let me count the terms",
    ),
    "combine": (
        "now add the two parts",
        "put the two results together",
        "combine both parts for the total",
        "finally add the parts up",
        "the total is the sum of both parts",
        "add the results of the two parts",
    ),
    "next-part": (
        "now the second part",
        "on to the second part",
        "next, the other part",
        "turn to the second part",
        "then work out the second part",
        "moving on to the other part",
    ),
}


def say(move: str, rng) -> str:
    """One paraphrase of `move`, drawn with `rng` (a `random.Random`)."""
    return rng.choice(PHRASES[move])
