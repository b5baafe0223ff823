"""Lab task families with exact checkers and typed failures (execution / planning / format).

- `Countdown`: search with dead ends and backtracking;
- `Series`: a sum where the strategy (pairing shortcut vs one-by-one) sets how much computation is needed.

`make_task(spec)` builds one family from a dict (`{"family": "countdown", "max_number": 9}`), `TaskMix` samples
from several and dispatches the checker on `problem.family`.
"""

from __future__ import annotations

from hicra.lab.tasks.base import CheckResult, CorpusKnobs, Problem
from hicra.lab.tasks.countdown import Countdown
from hicra.lab.tasks.series import Series

FAMILIES = {"countdown": Countdown, "series": Series}

__all__ = ["FAMILIES", "CheckResult", "CorpusKnobs", "Countdown", "Problem", "Series", "TaskMix", "make_task"]


def make_task(spec: dict):
    spec = dict(spec)
    family = spec.pop("family", None)
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family](**spec)


class TaskMix:
    """Several families; `sample` picks one uniformly (with `rng`), `check`/`solve` dispatch on the family."""

    def __init__(self, specs: list[dict]):
        if not specs:
            raise ValueError("TaskMix needs at least one task spec")
        self.tasks = [make_task(s) for s in specs]
        self.by_family = {t.family: t for t in self.tasks}
        if len(self.by_family) != len(self.tasks):
            raise ValueError("each family may appear once in a TaskMix")

    def params(self) -> list[dict]:
        return [t.params() for t in self.tasks]

    def sample(self, rng) -> Problem:
        return rng.choice(self.tasks).sample(rng)

    def solve(self, problem: Problem, rng, knobs: CorpusKnobs) -> str:
        return self.by_family[problem.family].solve(problem, rng, knobs)

    def check(self, problem: Problem, response: str) -> CheckResult:
        return self.by_family[problem.family].check(problem, response)
