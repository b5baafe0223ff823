"""Multi-part: the total of a series part and a product part (in either order); each part is solved with its own
strategy, then the parts are combined. The strategy label joins the parts' strategies in order
("middle+round-up"), so the combination is a strategy choice of its own.

Prompt:   total of: sum 3 to 9 by 2, and multiply 23 by 39
Response: part 1
          a short list, so sum it step by step
          3+5=8
          8+7=15
          15+9=24
          part 2
          use the round number just above it
          23*40=920
          920-23=897
          now add the two parts
          24+897=921
          so the answer is 921

`part 1` / `part 2` are fixed marker lines (format, not planning). Misapplied (planning noise): a part's own
misapplication, or the parts subtracted instead of added. The held-out split of a multi-part problem is decided on
its parts: it is held out when both parts are, trained on when neither is, and never drawn otherwise (its atoms are its
parts), so no part of a held-out problem is ever trained on, alone or inside another problem.
"""

from __future__ import annotations

from hicra.lab.tasks.base import Calc, Family, Problem, Ref, Say, computation_lines, stable_hash
from hicra.lab.tasks.product import Product
from hicra.lab.tasks.series import Series

MARKERS = ("part 1", "part 2")


class MultiPart(Family):
    family = "multi"

    def __init__(self, optimum: str = "diverse", series: dict | None = None, product: dict | None = None):
        """`series` / `product`: keyword arguments of the part families (their universe ranges)."""
        super().__init__(optimum)
        self.part_args = {"series": dict(series or {}), "product": dict(product or {})}
        self.parts = {"series": Series(optimum, **self.part_args["series"]),
                      "product": Product(optimum, **self.part_args["product"])}
        self.strategies = tuple(f"{s}+{p}" for s in Series.strategies for p in Product.strategies) + tuple(
            f"{p}+{s}" for p in Product.strategies for s in Series.strategies)

    def params(self) -> dict:
        return {**super().params(), **{k: v for k, v in self.part_args.items() if v}}

    def make(self, first: Problem, second: Problem) -> Problem:
        q = f"total of: {first.question}, and {second.question}"
        return Problem(id=f"multi:{first.id}|{second.id}", family=self.family, question=q,
                       answer=first.answer + second.answer,
                       data={"parts": [{"family": p.family, "id": p.id, "question": p.question, "answer": p.answer,
                                        "data": p.data} for p in (first, second)]},
                       atoms=(first.id, second.id))

    def sample_atom(self, rng) -> Problem:
        s = self.parts["series"].sample_atom(rng)
        p = self.parts["product"].sample_atom(rng)
        return self.make(s, p) if rng.random() < 0.5 else self.make(p, s)

    def universe(self):
        raise ValueError("the multi-part universe is the product of the series and product universes (~2e8)")

    def _parts(self, problem: Problem) -> list[tuple[Family, Problem]]:
        out = []
        for d in problem.data["parts"]:
            fam = self.parts[d["family"]]
            out.append((fam, Problem(d["id"], d["family"], d["question"], d["answer"], d["data"], (d["id"],))))
        return out

    def applicable(self, problem: Problem) -> tuple[str, ...]:
        (f1, p1), (f2, p2) = self._parts(problem)
        return tuple(f"{s1}+{s2}" for s1 in f1.applicable(p1) for s2 in f2.applicable(p2))

    def decision_class(self, problem: Problem) -> str:
        """The parts' classes, joined by ` | `."""
        return " | ".join(f.decision_class(p) for f, p in self._parts(problem))

    def cheapest(self, problem: Problem) -> str:
        (f1, p1), (f2, p2) = self._parts(problem)
        return f"{f1.cheapest(p1)}+{f2.cheapest(p2)}"

    def prior_weights(self, prior: str, favourite_share: float = 0.0) -> dict[str, float]:
        """Not defined for multi-part problems: each part draws from its own family's `prior_weights`."""
        raise ValueError("multi-part problems have no prior table of their own: each part uses its family's "
                         "prior_weights (Series, Product)")

    def choose(self, problem: Problem, rng, prior: str, favourite_share: float = 0.0) -> str:
        (f1, p1), (f2, p2) = self._parts(problem)
        return f"{f1.choose(p1, rng, prior, favourite_share)}+{f2.choose(p2, rng, prior, favourite_share)}"

    def known(self, problem: Problem) -> set[int]:
        (f1, p1), (f2, p2) = self._parts(problem)
        return f1.known(p1) | f2.known(p2)

    def plan(self, problem: Problem, strategy: str, misapply: bool = False) -> list:
        (f1, p1), (f2, p2) = self._parts(problem)
        s1, s2 = strategy.split("+")
        # which kind of misapplication: decided by a hash of the problem, so the plan stays a pure function
        which = stable_hash(problem.id + ":misapply") % 3 if misapply else -1
        plan1 = f1.plan(p1, s1, which == 0)
        plan2 = f2.plan(p2, s2, which == 1)
        n1 = sum(isinstance(x, Calc) for x in plan1)
        n2 = sum(isinstance(x, Calc) for x in plan2)

        def shift(item):
            if not isinstance(item, Calc):
                return item
            x = Ref(item.x.index + n1) if isinstance(item.x, Ref) else item.x
            y = Ref(item.y.index + n1) if isinstance(item.y, Ref) else item.y
            return Calc(x, item.op, y)

        return ([Say(MARKERS[0], literal=True), *plan1, Say(MARKERS[1], literal=True), *map(shift, plan2),
                 Say("combine"), Calc(Ref(n1 - 1), "-" if which == 2 else "+", Ref(n1 + n2 - 1))])

    def parse_strategy(self, problem: Problem, lines: list, response: str = "") -> str | None:
        head, sep, rest = response.partition(f"\n{MARKERS[1]}\n")
        if not sep or not head.startswith(MARKERS[0]):
            return None
        lines1 = computation_lines(head)
        lines2 = computation_lines(rest)[:-1]  # the last line combines the parts
        (f1, p1), (f2, p2) = self._parts(problem)
        s1, s2 = f1.parse_strategy(p1, lines1), f2.parse_strategy(p2, lines2)
        return None if s1 is None or s2 is None else f"{s1}+{s2}"
