"""Series: the sum of the consecutive integers from a to b. The strategy decides how much computation is needed.

- one by one (the long, direct computation): b - a additions, each a chance for a slip, and a long response;
- the pairing trick (Gauss's shortcut): count = b - a + 1, pair = a + b, sum = pair * count / 2: five lines.

Prompt:   sum 3 to 9
Response: use the pairing trick          or   let's add them one by one
          9-3=6                               3+4=7
          6+1=7                               7+5=12
          3+9=12                              ...
          12*7=84                             36+9=45
          84/2=42                             so the answer is 42
          so the answer is 42

Planning errors have every line right and the strategy misapplied: the count off by one (the "+1" forgotten),
or a term left out / the sum stopped early. Difficulty knobs: `max_start`, `min_count`, `max_count`.
"""

from __future__ import annotations

import re

from hicra.lab.tasks.base import (
    ANSWER_PREFIX,
    CheckResult,
    CorpusKnobs,
    Problem,
    answer_text,
    gave_up,
    noisy,
    wrong_lines,
)

SHORTCUT = "use the pairing trick"
DIRECT = "let's add them one by one"
_INT = re.compile(r"-?\d+")


class Series:
    family = "series"

    def __init__(self, max_start: int = 9, min_count: int = 3, max_count: int = 8):
        if not 1 <= min_count <= max_count:
            raise ValueError("need 1 <= min_count <= max_count")
        self.max_start, self.min_count, self.max_count = max_start, min_count, max_count

    def params(self) -> dict:
        return {"family": self.family, "max_start": self.max_start, "min_count": self.min_count,
                "max_count": self.max_count}

    def sample(self, rng) -> Problem:
        a = rng.randint(1, self.max_start)
        count = rng.randint(self.min_count, self.max_count)
        return self.make(a, a + count - 1)

    def make(self, a: int, b: int) -> Problem:
        return Problem(id=f"series:{a}:{b}", family=self.family, question=f"sum {a} to {b}",
                       answer=(a + b) * (b - a + 1) // 2, data={"a": a, "b": b})

    def solve(self, problem: Problem, rng, knobs: CorpusKnobs) -> str:
        """With probability `strategy_mix` the one-by-one sum, else the pairing trick; with probability
        `planning_noise` the strategy is misapplied (last term dropped / count off by one); each computation
        line is wrong with probability `execution_noise`, and the wrong value is carried on."""
        a, b = problem.data["a"], problem.data["b"]
        slip = rng.random() < knobs.planning_noise
        noise = knobs.execution_noise
        if rng.random() < knobs.strategy_mix:
            lines = [DIRECT]
            total = a
            last = b - 1 if slip and b - 1 > a else b
            for t in range(a + 1, last + 1):
                new = noisy(total + t, rng, noise)
                lines.append(f"{total}+{t}={new}")
                total = new
        else:
            lines = [SHORTCUT]
            diff = noisy(b - a, rng, noise)
            lines.append(f"{b}-{a}={diff}")
            count = diff
            if not slip:
                count = noisy(diff + 1, rng, noise)
                lines.append(f"{diff}+1={count}")
            pair = noisy(a + b, rng, noise)
            lines.append(f"{a}+{b}={pair}")
            prod = noisy(pair * count, rng, noise)
            lines.append(f"{pair}*{count}={prod}")
            total = noisy(prod // 2, rng, noise)
            lines.append(f"{prod}/2={total}")
        lines.append(f"{ANSWER_PREFIX} {total}")
        return "\n".join(lines)

    def check(self, problem: Problem, response: str) -> CheckResult:
        ans = answer_text(response)
        value = int(ans) if ans is not None and _INT.fullmatch(ans) else None
        if value is not None and value == problem.answer:
            return CheckResult(1.0, True, None, "")
        if value is None and not gave_up(response):
            return CheckResult(0.0, False, "format", "no answer line" if ans is None else "unparseable answer")
        if wrong_lines(response):
            return CheckResult(0.0, False, "execution", "a computation line is wrong")
        return CheckResult(0.0, False, "planning", "gave up" if value is None else "wrong strategy use")
