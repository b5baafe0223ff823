"""What every lab task family shares: problems, check results, computation-line parsing, corpus knobs.

A response is reasoning text: planning phrases (the `lab` lexicon) and execution lines. An execution line is a
binary computation written `X<op>Y=Z` (integers, op one of + - * /), possibly inside a longer line
("go back and try 8-5=3"). The final answer is the line `so the answer is ...`.

Every failed response gets exactly one error type, decided in this order:
- "format": no answer line that parses (and no explicit give-up);
- "execution": some computation line is wrong (Z differs from X op Y);
- "planning": every computation line is right, yet the strategy failed (dead end never abandoned, wrong order,
  wrong final combination, gave up, a term forgotten).
A correct final answer earns reward 1 whatever else the response contains; every failure earns 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

ANSWER_PREFIX = "so the answer is"
GIVE_UP = "i give up"

# X op Y = Z, integers; Z may be negative (a wrong line may claim anything)
_LINE = re.compile(r"(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(-?\d+)")


@dataclass(frozen=True)
class Problem:
    """One task instance. `question` is the prompt text (no trailing newline); `data` holds what the checker
    needs (numbers, target, range ends) and is JSON-serialisable."""

    id: str
    family: str
    question: str
    answer: int
    data: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class CheckResult:
    reward: float
    correct: bool
    error_type: str | None  # "execution" | "planning" | "format" | None when correct
    detail: str = ""  # a short reason, for people (e.g. "dead end not abandoned")


@dataclass(frozen=True)
class CorpusKnobs:
    """Warm-start corpus knobs shared by every family (each family reads them in its own way).

    execution_noise: probability that a computation line gets a wrong result (the trace then carries the
        wrong value on, as a person would).
    strategy_mix: probability that the poor strategy is tried first (countdown: dead ends before a solution;
        series: the long one-by-one sum instead of the pairing shortcut).
    planning_noise: probability that the strategy is misapplied (countdown: a dead end is not abandoned, or the
        search is given up; series: a term is forgotten / the count is off by one).
    """

    execution_noise: float = 0.1
    strategy_mix: float = 0.5
    planning_noise: float = 0.2

    def __post_init__(self):
        for name in ("execution_noise", "strategy_mix", "planning_noise"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


def apply_op(x: Fraction | int, op: str, y: Fraction | int) -> Fraction | None:
    """x op y as an exact fraction; None for division by zero."""
    x, y = Fraction(x), Fraction(y)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "/":
        return None if y == 0 else x / y
    raise ValueError(f"unknown op {op!r}")


def computation_lines(text: str) -> list[tuple[int, str, int, int]]:
    """Every `X op Y = Z` in `text`, in order, as (X, op, Y, Z)."""
    return [(int(a), op, int(b), int(c)) for a, op, b, c in _LINE.findall(text)]


def wrong_lines(text: str) -> list[tuple[int, str, int, int]]:
    """The computation lines whose claimed result differs from the true one."""
    return [(a, op, b, c) for a, op, b, c in computation_lines(text) if apply_op(a, op, b) != c]


def answer_text(text: str) -> str | None:
    """What follows the last `so the answer is`, up to the end of that line; None when there is none."""
    idx = text.rfind(ANSWER_PREFIX)
    if idx < 0:
        return None
    return text[idx + len(ANSWER_PREFIX) :].split("\n", 1)[0].strip()


def gave_up(text: str) -> bool:
    return GIVE_UP in text


def noisy(value: int, rng, noise: float) -> int:
    """`value`, or with probability `noise` a nearby wrong non-negative value (an execution slip)."""
    if rng.random() >= noise:
        return value
    delta = rng.choice([-2, -1, 1, 2, 10, -10])
    wrong = value + delta
    return wrong if wrong >= 0 and wrong != value else value + abs(delta)
