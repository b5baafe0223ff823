"""Countdown: reach a target from given numbers with + - * /, each number used exactly once.

A solution is a left-deep chain `((n0 op n1) op n2) ...`, written one computation per line. The search matters:
a solver tries an order, checks the result against the target, notices a dead end, goes back and tries another.

Prompt:   reach 24 using 3 5 8
Response: let's try 3+5=8
          8*8=64
          64 is not 24, dead end
          go back and try 8-5=3
          3*8=24
          24 matches the target
          so the answer is (8-5)*3

Difficulty knobs: how many numbers (`n_numbers`), how large (`max_number`), the largest target (`max_target`).
Intermediate values of a scripted chain are non-negative integers (exact division only).
"""

from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction

from hicra.lab.tasks.base import (
    ANSWER_PREFIX,
    GIVE_UP,
    CheckResult,
    CorpusKnobs,
    Problem,
    answer_text,
    apply_op,
    gave_up,
    noisy,
    wrong_lines,
)

OPS = ("+", "-", "*", "/")


class Countdown:
    family = "countdown"

    def __init__(self, n_numbers: int = 3, max_number: int = 9, max_target: int = 99, min_number: int = 1):
        if n_numbers < 2:
            raise ValueError("countdown needs at least 2 numbers")
        if not 0 <= min_number <= max_number:
            raise ValueError("need 0 <= min_number <= max_number")
        self.n_numbers, self.max_number, self.max_target, self.min_number = n_numbers, max_number, max_target, min_number

    def params(self) -> dict:
        return {"family": self.family, "n_numbers": self.n_numbers, "max_number": self.max_number,
                "max_target": self.max_target, "min_number": self.min_number}

    # ---- problems -------------------------------------------------------------------------------------------
    def sample(self, rng) -> Problem:
        """A random solvable problem: random numbers, a random valid chain, its value as the target."""
        while True:
            numbers = [rng.randint(self.min_number, self.max_number) for _ in range(self.n_numbers)]
            chains = [c for c in chains_of(numbers) if 1 <= c[1] <= self.max_target]
            if chains:
                target = rng.choice(chains)[1]
                return self.make(numbers, target)

    def make(self, numbers: list[int], target: int) -> Problem:
        nums = " ".join(str(n) for n in numbers)
        return Problem(id=f"countdown:{nums.replace(' ', ',')}:{target}", family=self.family,
                       question=f"reach {target} using {nums}", answer=target,
                       data={"numbers": list(numbers), "target": target})

    # ---- scripted solver ------------------------------------------------------------------------------------
    def solve(self, problem: Problem, rng, knobs: CorpusKnobs) -> str:
        """A reasoning trace from a scripted solver. With probability `strategy_mix` it first tries 1-3 dead
        ends; at each dead end, with probability `planning_noise` it fails to abandon it (commits to it without
        checking, or gives up); each computation line is wrong with probability `execution_noise`."""
        numbers, target = problem.data["numbers"], problem.data["target"]
        chains = chains_of(numbers)
        solutions = [c for c in chains if c[1] == target]
        dead_ends = [c for c in chains if c[1] != target]
        attempts = [rng.choice(solutions)]
        if dead_ends and rng.random() < knobs.strategy_mix:
            k = min(rng.choice([1, 2, 3]), len(dead_ends))
            attempts = rng.sample(dead_ends, k) + attempts
        lines: list[str] = []
        for i, (steps, _) in enumerate(attempts):
            value, expr = None, ""
            for j, (x, op, y) in enumerate(steps):
                x = value if j > 0 else x  # carry the (possibly wrong) running value on
                true = apply_op(x, op, y)
                value = noisy(int(true), rng, knobs.execution_noise) if true.denominator == 1 else int(true)
                prefix = ("let's try " if i == 0 else "go back and try ") if j == 0 else ""
                lines.append(f"{prefix}{x}{op}{y}={value}")
            expr = chain_text(steps)
            if value == target:
                lines += [f"{value} matches the target", f"{ANSWER_PREFIX} {expr}"]
                break
            if rng.random() < knobs.planning_noise:
                if rng.random() < 0.5:
                    lines.append(f"{ANSWER_PREFIX} {expr}")  # dead end never checked nor abandoned
                else:
                    lines += [f"{value} is not {target}, dead end", GIVE_UP]
                break
            lines.append(f"{value} is not {target}, dead end")
        else:
            lines.append(GIVE_UP)  # an execution slip spoiled the solution attempt: nothing left to try
        return "\n".join(lines)

    # ---- checker --------------------------------------------------------------------------------------------
    def check(self, problem: Problem, response: str) -> CheckResult:
        numbers, target = problem.data["numbers"], problem.data["target"]
        ans = answer_text(response)
        parsed = parse_expression(ans) if ans is not None else None
        if parsed is not None:
            value, leaves = parsed
            if value == target and Counter(leaves) == Counter(numbers):
                return CheckResult(1.0, True, None, "")
        elif not gave_up(response):
            return CheckResult(0.0, False, "format", "no answer line" if ans is None else "unparseable answer")
        if wrong_lines(response):
            return CheckResult(0.0, False, "execution", "a computation line is wrong")
        if parsed is None:
            detail = "gave up"
        elif Counter(parsed[1]) != Counter(numbers):
            detail = "numbers not used exactly once"
        else:
            detail = "dead end not abandoned"
        return CheckResult(0.0, False, "planning", detail)


def chains_of(numbers: list[int]) -> list[tuple[tuple[tuple[int, str, int], ...], int]]:
    """Every left-deep chain over all the numbers with non-negative integer intermediate values:
    a list of (steps, value) where steps = ((n0, op, n1), (None, op, n2), ...)."""
    out = []
    seen = set()
    for perm in itertools.permutations(numbers):
        if perm in seen:
            continue
        seen.add(perm)
        for ops in itertools.product(OPS, repeat=len(perm) - 1):
            value = Fraction(perm[0])
            steps = []
            ok = True
            for op, y in zip(ops, perm[1:], strict=True):
                nxt = apply_op(value, op, y)
                if nxt is None or nxt < 0 or nxt.denominator != 1:
                    ok = False
                    break
                steps.append((int(value), op, y))
                value = nxt
            if ok:
                out.append((tuple(steps), int(value)))
    return out


def chain_text(steps) -> str:
    """((n0 op n1) op n2) ... with the outermost parentheses dropped: "(8-5)*3"."""
    text = f"{steps[0][0]}{steps[0][1]}{steps[0][2]}"
    for _, op, y in steps[1:]:
        text = f"({text}){op}{y}"
    return text


def parse_expression(text: str) -> tuple[Fraction, list[int]] | None:
    """Evaluate an arithmetic expression of non-negative integers, + - * / and parentheses, exactly.
    Returns (value, the integer literals in order), or None when it does not parse (or divides by zero)."""
    tokens: list[str] = []
    i = 0
    text = text.replace(" ", "")
    while i < len(text):
        ch = text[i]
        if ch.isdigit():
            j = i
            while j < len(text) and text[j].isdigit():
                j += 1
            tokens.append(text[i:j])
            i = j
        elif ch in "+-*/()":
            tokens.append(ch)
            i += 1
        else:
            return None
    if not tokens:
        return None
    pos = 0
    leaves: list[int] = []

    def expr():
        nonlocal pos
        value = term()
        while value is not None and pos < len(tokens) and tokens[pos] in "+-":
            op = tokens[pos]
            pos += 1
            rhs = term()
            value = None if rhs is None else apply_op(value, op, rhs)
        return value

    def term():
        nonlocal pos
        value = atom()
        while value is not None and pos < len(tokens) and tokens[pos] in "*/":
            op = tokens[pos]
            pos += 1
            rhs = atom()
            value = None if rhs is None else apply_op(value, op, rhs)
        return value

    def atom():
        nonlocal pos
        if pos >= len(tokens):
            return None
        tok = tokens[pos]
        if tok == "(":
            pos += 1
            value = expr()
            if value is None or pos >= len(tokens) or tokens[pos] != ")":
                return None
            pos += 1
            return value
        if tok.isdigit():
            pos += 1
            leaves.append(int(tok))
            return Fraction(int(tok))
        return None

    value = expr()
    if value is None or pos != len(tokens):
        return None
    return value, leaves
