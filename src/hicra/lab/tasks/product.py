"""Product: a times b by mental-arithmetic strategies. Three strategies:

- `split`: split b into tens and ones: a*T, a*o (written as `+a` when o = 1), add;
- `round-up`: go up to the next ten U above b: a*U, a*(U - b) (written as `-a` when U - b = 1), subtract;
- `split-first` (a >= 11 and, up to 100, not a multiple of 10; every a above 100): split a into its round part h
  (its tens, or 100 when a > 100) and the rest r: h*b, r*b, add.

Prompt:   multiply 23 by 39
Response: it is close to a round number, so round up
          23*40=920
          920-23=897
          so the answer is 897

Which is cheapest depends on b's ones digit and on a (see `hicra.lab.tasks.base.difficulty`). Misapplied
(planning noise; every line right): split drops the ones part, round-up adds the correction instead of
subtracting it, split-first drops the rest. Universes: diverse a in 2..149, b in 11..99 not a multiple of 10
(11,988 problems); single-route b ending in 9 (a in 2..399, 3,582 problems): round-up is cheapest for all but 14,
12 ties that the tie-break gives to split and 2 where split is cheaper (101*99, 202*49).
"""

from __future__ import annotations

from hicra.lab.tasks.base import Calc, Family, Problem, Ref, Say

A_RANGE = {"diverse": (2, 149), "single-route": (2, 399)}


class Product(Family):
    family = "product"
    strategies = ("split", "round-up", "split-first")
    blind_weights = {"split": 0.1, "round-up": 0.85, "split-first": 0.05}  # round-up: cheapest for 23% of problems
    blind_common_weights = {"split": 0.85, "round-up": 0.1, "split-first": 0.05}  # split: cheapest for 65%

    def __init__(self, optimum: str = "diverse", a_max: int | None = None):
        """`a_max` narrows the first factor's range (small settings are for tests)."""
        super().__init__(optimum)
        lo, hi = A_RANGE[optimum]
        self.a_range = (lo, hi if a_max is None else a_max)
        if self.a_range[1] < lo:
            raise ValueError(f"a_max must be at least {lo}")

    def params(self) -> dict:
        return {**super().params(), "a_max": self.a_range[1]}

    def make(self, a: int, b: int) -> Problem:
        pid = f"product:{a}:{b}"
        return Problem(id=pid, family=self.family, question=f"multiply {a} by {b}", answer=a * b,
                       data={"a": a, "b": b}, atoms=(pid,))

    def _bs(self):
        if self.optimum == "single-route":
            return list(range(19, 100, 10))
        return [b for b in range(11, 100) if b % 10]

    def sample_atom(self, rng) -> Problem:
        lo, hi = self.a_range
        return self.make(rng.randint(lo, hi), rng.choice(self._bs()))

    def universe(self):
        lo, hi = self.a_range
        for a in range(lo, hi + 1):
            for b in self._bs():
                yield self.make(a, b)

    def applicable(self, problem: Problem) -> tuple[str, ...]:
        hi, lo = self.first_parts(problem.data["a"])
        return self.strategies if hi and lo else ("split", "round-up")

    def decision_class(self, problem: Problem) -> str:
        """`b ends D, a BAND`: round-up pays when b's ones digit D is high (the correction a*(10 - D) is small),
        split-first when a is large (BAND `a<10`, `a 10-99`, `a>=100`; split-first needs a >= 10)."""
        a, b = problem.data["a"], problem.data["b"]
        band = "a<10" if a < 10 else "a 10-99" if a < 100 else "a>=100"
        return f"b ends {b % 10}, {band}"

    @staticmethod
    def first_parts(a: int) -> tuple[int, int]:
        """a = h + r with h its round part (100 when a > 100, else its tens) and r the rest; h = 0 when a < 10."""
        hi = 100 if a > 100 else a - a % 10
        return hi, a - hi

    def known(self, problem: Problem) -> set[int]:
        a, b = problem.data["a"], problem.data["b"]
        tens, ones = b - b % 10, b % 10
        up = tens + 10
        return {a, b, tens, ones, up, up - b, *self.first_parts(a)}

    def plan(self, problem: Problem, strategy: str, misapply: bool = False) -> list:
        a, b = problem.data["a"], problem.data["b"]
        tens, ones = b - b % 10, b % 10
        if strategy == "split":
            plan: list = [Say("split"), Calc(a, "*", tens)]
            if misapply:
                return plan  # the ones part dropped
            if ones == 1:
                return plan + [Calc(Ref(0), "+", a)]
            return plan + [Calc(a, "*", ones), Calc(Ref(0), "+", Ref(1))]
        if strategy == "round-up":
            up = tens + 10
            op = "+" if misapply else "-"  # misapplied: the correction added
            plan = [Say("round-up"), Calc(a, "*", up)]
            if up - b == 1:
                return plan + [Calc(Ref(0), op, a)]
            return plan + [Calc(a, "*", up - b), Calc(Ref(0), op, Ref(1))]
        if strategy == "split-first":
            hi, lo = self.first_parts(a)
            plan = [Say("split-first"), Calc(hi, "*", b)]
            if misapply:
                return plan  # the rest dropped
            return plan + [Calc(lo, "*", b), Calc(Ref(0), "+", Ref(1))]
        raise ValueError(f"unknown product strategy {strategy!r}")

    def parse_strategy(self, problem: Problem, lines: list, response: str = "") -> str | None:
        if not lines or lines[0][1] != "*":
            return None
        a, b = problem.data["a"], problem.data["b"]
        x, _, y, _ = lines[0]
        if y == b and (x, a - x) == self.first_parts(a) and x != a:
            return "split-first"
        if x == a and y % 10 == 0:
            return "split" if y < b else "round-up"
        if {x, y} == {a, b} and len(lines) == 1:
            return "direct"  # not a scripted strategy: a policy may still find it (one hard line)
        return self._strategy_of_products(problem, lines)

    def _strategy_of_products(self, problem: Problem, lines: list) -> str | None:
        """The strategy whose leading product appears among the multiplications, in any order or operand order
        (`40*23` for `23*40`; the ones part before the tens): a*U (U the ten above b) is round-up, a*T (T the tens
        of b) split, h*b (h the round part of a, not a itself) split-first; None when none or several appear."""
        a, b = problem.data["a"], problem.data["b"]
        tens = b - b % 10
        hi, _ = self.first_parts(a)
        products = {frozenset((x, y)) for x, op, y, _ in lines if op == "*"}
        found = [name for name, pair in (("round-up", {a, tens + 10}), ("split", {a, tens}), ("split-first", {hi, b}))
                 if frozenset(pair) in products and (name != "split-first" or 0 < hi != a)]
        return found[0] if len(found) == 1 else None
