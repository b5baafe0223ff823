"""Lab task families with exact, load-bearing checkers, named strategies and typed failures.

- `Series` (one-by-one, pairing, middle), `Product` (split, round-up, split-first), `MultiPart` (a series part and
  a product part, each with its own strategy, then combined);
- each family in two variants: `optimum="diverse"` (the cheapest strategy differs between problems) and
  `"single-route"` (one strategy is cheapest everywhere: a negative control);
- a held-out split disjoint from training by construction (a hash of each single problem, see
  `base.is_heldout_atom`).

`TaskMix(specs, optimum=...)` samples a family uniformly, then a problem of the requested split, and dispatches
`check`/`solve` on `problem.family`. `optimum_entropy(...)` gives the strategy entropy of a prior over a mix.
"""

from __future__ import annotations

import random
from collections import Counter

from hicra.lab.tasks.base import OPTIMA, STRATEGY_PRIORS, CheckResult, CorpusKnobs, Family, Problem, entropy
from hicra.lab.tasks.multipart import MultiPart
from hicra.lab.tasks.product import Product
from hicra.lab.tasks.series import Series

FAMILIES = {"series": Series, "product": Product, "multi": MultiPart}

__all__ = ["FAMILIES", "OPTIMA", "STRATEGY_PRIORS", "CheckResult", "CorpusKnobs", "Family", "MultiPart", "Problem",
           "Product", "Series", "TaskMix", "make_task", "problem_from_id", "repeat_share", "strategy_entropy"]


def make_task(spec: dict, optimum: str | None = None) -> Family:
    """One family from a dict (`{"family": "series"}`; an `optimum` key or argument picks the variant)."""
    spec = dict(spec)
    family = spec.pop("family", None)
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; known: {sorted(FAMILIES)}")
    if optimum is not None:
        spec["optimum"] = optimum
    return FAMILIES[family](**spec)


class TaskMix:
    """Several families; `sample` picks one uniformly (with `rng`), `check`/`solve` dispatch on the family.

    heldout_share: the share of single problems (atoms) reserved for evaluation; training draws never touch them.
    """

    def __init__(self, specs: list[dict], optimum: str | None = None, heldout_share: float = 0.1):
        if not specs:
            raise ValueError("TaskMix needs at least one task spec")
        if not 0.0 < heldout_share < 1.0:
            raise ValueError(f"heldout_share must be in (0, 1), got {heldout_share}")
        self.tasks = [make_task(s, optimum) for s in specs]
        self.by_family = {t.family: t for t in self.tasks}
        self.heldout_share = heldout_share
        if len(self.by_family) != len(self.tasks):
            raise ValueError("each family may appear once in a TaskMix")

    def params(self) -> list[dict]:
        return [t.params() for t in self.tasks]

    def sample(self, rng, split: str = "train") -> Problem:
        return rng.choice(self.tasks).sample(rng, split, self.heldout_share)

    def heldout(self, n: int, seed: int = 0) -> list[Problem]:
        """`n` distinct held-out problems (their own RNG stream: they never depend on training draws)."""
        rng = random.Random(10_000 + seed)
        out, seen = [], set()
        for _ in range(100 * n + 1000):
            if len(out) == n:
                break
            p = self.sample(rng, "heldout")
            if p.id not in seen:
                seen.add(p.id)
                out.append(p)
        if len(out) < n:
            raise ValueError(f"only {len(out)} distinct held-out problems found, {n} asked: universe too small")
        return out

    def problem(self, problem_id: str) -> Problem:
        """The problem with this id (as written in rollout rows' `prompt_id` and `eval.json`'s `heldout_ids`), built
        by this mix's own families, so its question is the one the mix asks (a task spec such as the series'
        `show_count` changes the text, not the id). ValueError for an id that is not a lab problem id or whose
        family is not in the mix."""
        family, _, rest = problem_id.partition(":")
        if family not in FAMILIES:
            raise ValueError(f"not a lab problem id: {problem_id!r}")
        fam = self.by_family.get(family)
        if fam is None:
            raise ValueError(f"problem id {problem_id!r}: family {family!r} is not in this task mix")
        try:
            if family == "multi":
                return fam.make(*(_atom(fam.parts, part) for part in rest.split("|", 1)))
            return fam.make(*map(int, rest.split(":")))
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"not a lab problem id: {problem_id!r}") from None

    def family_of(self, problem: Problem) -> Family:
        return self.by_family[problem.family]

    def solve(self, problem: Problem, rng, knobs: CorpusKnobs, strategy: str | None = None) -> str:
        return self.by_family[problem.family].solve(problem, rng, knobs, strategy)

    def check(self, problem: Problem, response: str) -> CheckResult:
        return self.by_family[problem.family].check(problem, response)


_ALL_FAMILIES = TaskMix([{"family": f} for f in FAMILIES])  # every family, default task specs


def _atom(families: dict[str, Family], problem_id: str) -> Problem:
    """A single (series or product) problem from its id, by `families[family].make`; errors propagate."""
    family, _, rest = problem_id.partition(":")
    return families[family].make(*map(int, rest.split(":")))


def problem_from_id(problem_id: str) -> Problem:
    """Rebuild a problem from its id: `series:a:d:n`, `product:a:b`, `multi:ID1|ID2`, with every family's default
    task spec (`TaskMix.problem` of a mix of all families); ValueError otherwise. A mix whose task specs change the
    question text (e.g. the series' `show_count`) rebuilds its own problems with `TaskMix.problem`."""
    return _ALL_FAMILIES.problem(problem_id)


def strategy_entropy(mix: TaskMix, prior: str, n: int = 20_000, seed: int = 0, favourite_share: float = 0.0) -> float:
    """Entropy (nats) of the strategy labels a prior writes over the mix's training distribution, estimated from
    `n` draws: `oracle` is the reward-optimal policy under the lab's cost model (its entropy is the optimum's),
    `blind` the problem-blind warm-start preference (`favourite_share`: see `CorpusKnobs`). Labels of different
    families never coincide."""
    rng = random.Random(seed)
    counts: Counter = Counter()
    for _ in range(n):
        p = mix.sample(rng)
        fam = mix.family_of(p)
        counts[(p.family, fam.choose(p, rng, prior, favourite_share))] += 1
    return entropy(counts)


def repeat_share(mix: TaskMix, draws: int, seed: int = 0) -> dict[str, float]:
    """Per family, the share of a run's training draws that repeat an earlier draw of the same problem, for a run
    of `draws` prompts drawn as the RL loop draws them (`TaskMix.sample(rng, "train")`, seeded like it)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    repeats: Counter = Counter()
    totals: Counter = Counter()
    for _ in range(draws):
        p = mix.sample(rng, "train")
        totals[p.family] += 1
        repeats[p.family] += p.id in seen
        seen.add(p.id)
    return {f: repeats[f] / totals[f] for f in totals}
