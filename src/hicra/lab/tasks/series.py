"""Series: the sum of an arithmetic progression a, a+d, ..., b (n terms). Three strategies:

- `one-by-one`: a running total, n - 1 additions (cheapest for few terms); with `write_terms`, each next term is
  written as its own line first (2(n - 1) additions), so no arithmetic is done in the head; with `stop_check` as
  well, the trace first writes the distance to the last term (`b - a = r`) and takes one step `d` off it after each
  written term (`r - d = r'`; 1 + 3(n - 1) lines), so the stop (`r' = 0`) is read off the line above instead of by
  comparing a term with the prompt's last term;
- `pairing` (Gauss's trick): count the terms ((b - a) / d + 1), pair the ends (a + b), multiply, halve;
- `middle` (odd counts only): count the terms, the middle term (a + b) / 2, times the count.

With the task-spec key `pair_even`, pairing halves the count instead of the product: count the terms, n / 2 pairs,
pair the ends (a + b), multiply. Then it applies to even counts only (an odd count leaves a term unpaired, and
`n/2` has no integer result a line could state), so no strategy is right for every count: long odd series need
`middle`, long even ones `pairing`, and short ones may use `one-by-one`.

Prompt:   sum 14 to 38 by 3
Response: many terms, so pair them from the outside in
          how many terms are there
          38-14=24
          24/3=8
          8+1=9
          14+38=52
          52*9=468
          468/2=234
          so the answer is 234

Misapplied (planning noise; every line right): one-by-one skips a term (adds the first twice when n = 2), pairing forgets the halving, middle
forgets the +1 of the count. Universes: diverse a in 1..119, d in 1..14, n in 2..9 (13,328 problems);
single-route n in {10, 12} (even and long: pairing is cheapest everywhere; 3,332 problems).
"""

from __future__ import annotations

from hicra.lab.tasks.base import Calc, Family, Problem, Ref, Say

MAX_START, MAX_STEP = 119, 14
COUNTS = {"diverse": tuple(range(2, 10)), "single-route": (10, 12)}


class Series(Family):
    family = "series"
    strategies = ("one-by-one", "pairing", "middle")
    blind_weights = {"one-by-one": 0.1, "pairing": 0.85, "middle": 0.05}  # pairing: cheapest for 9% of problems
    # one-by-one: cheapest for 79% of the plain universe (27% with written terms and 2-12 terms: then pairing, 48%)
    blind_common_weights = {"one-by-one": 0.85, "pairing": 0.1, "middle": 0.05}

    def __init__(self, optimum: str = "diverse", max_start: int = MAX_START, max_step: int = MAX_STEP,
                 counts: tuple[int, ...] | None = None, write_terms: bool = False, stop_check: bool = False,
                 show_count: bool = False, pair_even: bool = False):
        """`max_start`, `max_step`, `counts` narrow (or, for counts, widen) the universe; the single-route variant
        keeps only the given counts among its own (10, 12), ValueError when none is. `write_terms`:
        one-by-one writes each next term as a line (`14+3=17`) before adding it, so no arithmetic is left unwritten
        (2(n - 1) lines instead of n - 1); off by default, as the lab's corpora were built before it existed.
        `stop_check` (needs `write_terms`, else ValueError): the distance to the last term, `b-a=r` first, then
        `r-d=r'` after each written term, so the last term is the one after which the distance is 0. Why: a
        1M-parameter warm start that must compare a term with the prompt's `b` digit by digit learns a length prior
        instead and, in some seeds, runs past `b`; and one that writes the distance as `b-t` gets that subtraction
        wrong far more often than a step (docs/lab.md, "A local stop for one-by-one").
        `show_count`: the prompt states the number of terms (`sum 14 to 38 by 3 (9 terms)`), the problem feature
        that decides the cheapest strategy, so a small policy can read it instead of computing (b - a) / d + 1;
        the count is then a given number (`known`), the traces are unchanged (docs/lab.md, "Does the policy
        choose by problem?").
        `pair_even`: pairing halves the count (`n/2` pairs, then pairs times the pair sum) and applies to even counts
        only, so pairing is no longer right for every count and choosing by parity pays (docs/lab.md, "A family
        with no universal strategy"); off by default, as the lab's corpora were built before it existed."""
        super().__init__(optimum)
        self.pair_even = bool(pair_even)
        self.show_count = bool(show_count)
        self.write_terms = bool(write_terms)
        self.stop_check = bool(stop_check)
        if self.stop_check and not self.write_terms:
            raise ValueError("series stop_check needs write_terms (it checks each written term)")
        self.max_start, self.max_step = max_start, max_step
        self.counts = tuple(counts) if counts else COUNTS[optimum]
        if counts and optimum == "single-route":
            # the negative control keeps only the counts where pairing is cheapest for every problem, so a
            # universe widened for the diverse task (e.g. counts 2-12) does not leak other optima into it
            self.counts = tuple(c for c in self.counts if c in COUNTS["single-route"])
            if not self.counts:
                raise ValueError(f"series single-route needs a count in {COUNTS['single-route']}, got {list(counts)}")
        if max_start < 1 or max_step < 1 or min(self.counts) < 2:
            raise ValueError("series needs max_start >= 1, max_step >= 1 and counts >= 2")

    def params(self) -> dict:
        return {**super().params(), "max_start": self.max_start, "max_step": self.max_step,
                "counts": list(self.counts), **({"write_terms": True} if self.write_terms else {}),
                **({"stop_check": True} if self.stop_check else {}),
                **({"show_count": True} if self.show_count else {}),
                **({"pair_even": True} if self.pair_even else {})}

    def make(self, a: int, d: int, n: int) -> Problem:
        b = a + (n - 1) * d
        pid = f"series:{a}:{d}:{n}"
        question = f"sum {a} to {b} by {d}" + (f" ({n} terms)" if self.show_count else "")
        return Problem(id=pid, family=self.family, question=question, answer=(a + b) * n // 2,
                       data={"a": a, "d": d, "n": n, "b": b}, atoms=(pid,))

    def sample_atom(self, rng) -> Problem:
        return self.make(rng.randint(1, self.max_start), rng.randint(1, self.max_step), rng.choice(self.counts))

    def universe(self):
        for a in range(1, self.max_start + 1):
            for d in range(1, self.max_step + 1):
                for n in self.counts:
                    yield self.make(a, d, n)

    def applicable(self, problem: Problem) -> tuple[str, ...]:
        if problem.data["n"] % 2 == 0:
            return ("one-by-one", "pairing")
        return ("one-by-one", "middle") if self.pair_even else self.strategies

    def decision_class(self, problem: Problem) -> str:
        """`n=N`: every strategy's line count is a function of the number of terms (and `middle` needs it odd)."""
        return f"n={problem.data['n']}"

    def terms(self, problem: Problem) -> list[int]:
        a, d, n = problem.data["a"], problem.data["d"], problem.data["n"]
        return [a + i * d for i in range(n)]

    def known(self, problem: Problem) -> set[int]:
        return set(self.terms(problem)) | {problem.data["d"], 1, 2} | ({problem.data["n"]} if self.show_count else set())

    def plan(self, problem: Problem, strategy: str, misapply: bool = False) -> list:
        a, b, d, n = (problem.data[k] for k in ("a", "b", "d", "n"))
        if strategy == "one-by-one" and self.write_terms:
            return self._one_by_one_written(a, d, n, misapply, b if self.stop_check else None)
        if strategy == "one-by-one":
            terms = self.terms(problem)
            if misapply:  # a term skipped (with two terms: the first one added twice)
                terms = terms[:1] * 2 if n == 2 else terms[: len(terms) // 2] + terms[len(terms) // 2 + 1 :]
            plan: list = [Say("one-by-one"), Calc(terms[0], "+", terms[1])]
            for i, t in enumerate(terms[2:]):
                plan.append(Calc(Ref(i), "+", t))
            return plan
        if strategy not in ("pairing", "middle"):
            raise ValueError(f"unknown series strategy {strategy!r}")
        plan = [Say(strategy), Say("count"), Calc(b, "-", a)]
        if d > 1:
            plan.append(Calc(Ref(0), "/", d))
        last = len([x for x in plan if isinstance(x, Calc)]) - 1
        count = Ref(last)
        if not (misapply and strategy == "middle"):  # middle misapplied: the +1 of the count forgotten
            plan.append(Calc(Ref(last), "+", 1))
            count = Ref(last + 1)
        k = count.index + 1
        if strategy == "pairing" and self.pair_even:
            if n % 2:
                raise ValueError(f"pair_even: pairing needs an even count, got {n} terms")
            if misapply:  # the halving of the count forgotten: every term counted as a pair
                return plan + [Calc(a, "+", b), Calc(count, "*", Ref(k))]
            return plan + [Calc(count, "/", 2), Calc(a, "+", b), Calc(Ref(k), "*", Ref(k + 1))]
        plan.append(Calc(a, "+", b))  # line k: the pair sum
        if strategy == "pairing":
            plan.append(Calc(Ref(k), "*", count))
            if not misapply:  # pairing misapplied: the halving forgotten
                plan.append(Calc(Ref(k + 1), "/", 2))
        else:
            plan += [Calc(Ref(k), "/", 2), Calc(Ref(k + 1), "*", count)]
        return plan

    @staticmethod
    def _one_by_one_written(a: int, d: int, n: int, misapply: bool, last: int | None = None) -> list:
        """One-by-one with every term written: `t_i = t_(i-1) + d`, then `total = total + t_i`; with `last` (the
        last term b), first the distance `r_0 = b - a`, and `r_i = r_(i-1) - d` after each term, so `r_(n-1) = 0`.
        Misapplied: one middle term is computed but not added (with two terms: the first one added twice)."""
        plan: list = [Say("one-by-one")]
        if misapply and n == 2 and last is None:
            return plan + [Calc(a, "+", a)]
        line = -1  # index of the last computation line
        distance = None
        if last is not None:
            plan.append(Calc(last, "-", a))
            line, distance = 0, Ref(0)
        skip = n // 2 if misapply else None
        term, total = a, a  # a number, or a Ref to the line that computed it
        for i in range(1, n):
            plan.append(Calc(term, "+", d))
            line += 1
            term = Ref(line)
            if distance is not None:
                plan.append(Calc(distance, "-", d))
                line += 1
                distance = Ref(line)
            if misapply and n == 2:  # with the stop check: after the second term's distance
                plan.append(Calc(a, "+", a))
                return plan
            if i != skip:
                plan.append(Calc(total, "+", term))
                line += 1
                total = Ref(line)
        return plan

    def parse_strategy(self, problem: Problem, lines: list, response: str = "") -> str | None:
        if not lines:
            return None
        a, b = problem.data["a"], problem.data["b"]
        d = problem.data["d"]
        adds = [x for x, op, _, _ in lines if op == "+"]
        steps = all(op == "+" or (op == "-" and (y == d or (x, y) == (b, a))) for x, op, y, _ in lines)
        if len(adds) == len(lines) or (adds and adds[0] == a and steps):  # additions only; or, with `stop_check`,
            return "one-by-one"  # additions from the first term beside b - a counted down by d
        pair_at = next((i for i, (x, op, y, _) in enumerate(lines) if op == "+" and {x, y} == {a, b}), None)
        if lines[0][:3] != (b, "-", a) and pair_at is None:  # neither the count nor the pair sum: no closed form
            return None  # (a response may skip the count lines when it can read the count: `show_count`)
        # middle halves the pair sum after computing it (pair_even's pairing halves the count, before it)
        if pair_at is not None and any(op == "/" and y == 2 and x == lines[pair_at][3]
                                       for x, op, y, _ in lines[pair_at + 1 :]):
            return "middle"
        if any(op == "*" for _, op, _, _ in lines):
            return "pairing"
        return None
