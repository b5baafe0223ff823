"""What every lab task family shares: problems, plans, the scripted solver, the load-bearing checker.

A response is reasoning text: planning phrases (paraphrases of strategic moves, `hicra.lab.tasks.language`) and
execution lines. An execution line is a binary computation written `X<op>Y=Z` (integers, op one of + - * /). The
final line is `so the answer is V`.

Execution is load-bearing (the paper: a single slip invalidates a solution). The checker decides, in this order:
- "format": no answer line, or an answer that is not an integer;
- "execution": some computation line is wrong (Z differs from X op Y), or a line claims a result (holds `=`) without
  being exactly one computation `X op Y = Z` (`malformed_lines`); the response earns 0 even when its final answer
  happens to be right;
- "planning": every line is right, yet the strategy failed: the answer is not the result of the last line, a line
  uses a number that is neither given by the problem (or its place-value parts) nor computed earlier, or the
  (misapplied) strategy reached a wrong value;
- otherwise correct, reward 1.

Each family offers several named strategies, every one of which can solve every problem it applies to, at a cost
that depends on the problem (`cost`: one per line plus the line's difficulty, see `difficulty`). The cheapest
strategy is therefore problem-dependent, and the reward-optimal policy's strategy distribution is known before
training (`hicra.lab.tasks.optimum_entropy`). The checker parses which strategy a response executed from its
computation lines (`CheckResult.strategy`), never from the phrases it says.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

ANSWER_PREFIX = "so the answer is"
STRATEGY_PRIORS = ("oracle", "blind", "blind-common")
OPTIMA = ("diverse", "single-route")

# X op Y = Z, integers; Z may be negative (a wrong line may claim anything)
_LINE = re.compile(r"(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(-?\d+)")
# a whole line that is one computation and nothing else
_FULL_LINE = re.compile(r"\s*\d+\s*[-+*/]\s*\d+\s*=\s*-?\d+\s*")
_INT = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Problem:
    """One task instance. `question` is the prompt text (no trailing newline); `data` holds what the checker
    needs and is JSON-serialisable; `atoms` are the ids of the single problems it is made of (itself for a
    single-part problem): the held-out split is decided on atoms, so no part of a held-out problem is ever drawn
    in training."""

    id: str
    family: str
    question: str
    answer: int
    data: dict = field(default_factory=dict, compare=False, hash=False)
    atoms: tuple[str, ...] = field(default=(), compare=False, hash=False)


@dataclass(frozen=True)
class CheckResult:
    reward: float
    correct: bool
    error_type: str | None  # "execution" | "planning" | "format" | None when correct
    detail: str = ""  # a short reason, for people (e.g. "a line uses a number from nowhere")
    strategy: str | None = None  # the strategies the response executed, parsed from its lines, joined by "+"


@dataclass(frozen=True)
class CorpusKnobs:
    """Warm-start corpus knobs (the study's control cells set them separately).

    execution_noise: slip rate per unit of line difficulty: a computation line is wrong with probability
        min(0.9, execution_noise * difficulty(line)), so multiplications of long numbers slip more than adding 1
        (the trace carries the wrong value on, as a person would).
    strategy_prior: "oracle" (the cheapest strategy for this problem), "blind" (a fixed preference over the
        family's strategies that ignores the problem, only skipping strategies that do not apply; its favourite is a
        strategy that is rarely the cheapest, so the warm start's usual plan is often the costly one:
        `Family.blind_weights`) or "blind-common" (as blind, but the favourite is the strategy most often cheapest in
        the plain universes: `Family.blind_common_weights`; the lab's blind prior until 2026-11-30). Widened
        universes can change which strategy is most often cheapest: with written series terms and 2-12 terms (the
        presets' tasks since 2026-12-01) pairing is cheapest for 48% of series, one-by-one, blind-common's
        favourite, for 27%; `benchmarks/lab_tasks.py` prints the shares.
    planning_noise: probability that the chosen strategy is misapplied (a term skipped, the +1 of a count
        forgotten, a part dropped, the wrong combination), every line still right.
    slip_cap: the most units of line difficulty the slip rate counts (0 = no cap): a line is wrong with probability
        min(0.9, execution_noise * min(difficulty(line), slip_cap)). 1 makes every line slip at `execution_noise`
        whatever its operation, so a strategy's slips depend on its number of lines only (`slip_probability`).
        Why it exists: at execution noise 0.10 the warm start's long multiplications slip so often that choosing a
        series strategy by problem earns it nothing (docs/study.md, "Pilot P22"), so a noisy cell whose cost-model
        optimum is diverse is not diverse for its own executor.
    favourite_share: for the blind priors, the probability of the table's favourite; the other strategies share
        the rest in proportion to their table weights (`Family.prior_weights`). 0 keeps the table as it is. Where
        a strategy does not apply the weights are renormalised over those that do (series of even length: 0.6
        becomes 0.69). A share above the next strategy's keeps the favourite in the lead (greedy decoding starts
        it) while the warm start samples and practises the alternatives more often; below that (about 1/3 for the
        tables) another strategy leads.
    """

    execution_noise: float = 0.015
    strategy_prior: str = "blind"
    planning_noise: float = 0.1
    favourite_share: float = 0.0
    slip_cap: int = 0

    def __post_init__(self):
        for name in ("execution_noise", "planning_noise", "favourite_share", "slip_cap"):
            problem = knob_range_error(name, getattr(self, name))
            if problem:
                raise ValueError(problem)
        if self.strategy_prior not in STRATEGY_PRIORS:
            raise ValueError(f"strategy_prior must be one of {STRATEGY_PRIORS}, got {self.strategy_prior!r}")


def knob_range_error(name: str, value: float, label: str | None = None) -> str | None:
    """The one range check of the numeric corpus knobs (CorpusKnobs, `hicra lab`'s flags, `hicra study --cells`):
    None when `value` is allowed, else the message, naming the knob as `label` (default `name`).
    `execution_noise` and `planning_noise` are probabilities in [0, 1]; `favourite_share` lies in [0, 1) (0 = the
    family's table; 1 would leave no alternative); `slip_cap` is a whole number >= 0 (0 = no cap)."""
    label = label or name
    if name == "slip_cap":
        ok = float(value) == int(value) and value >= 0
        return None if ok else f"{label} must be a whole number >= 0 (0 = no cap), got {value}"
    if name == "favourite_share":
        return None if 0.0 <= value < 1.0 else f"{label} must be in [0, 1) (0 = the family's table), got {value}"
    return None if 0.0 <= value <= 1.0 else f"{label} must be in [0, 1], got {value}"


@dataclass(frozen=True)
class Ref:
    """The (claimed) result of the plan's `index`-th computation line."""

    index: int


@dataclass(frozen=True)
class Calc:
    x: int | Ref
    op: str
    y: int | Ref


@dataclass(frozen=True)
class Say:
    """A planning move (rendered as one of its paraphrases) or, with `literal`, a fixed text line."""

    move: str
    literal: bool = False


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


def nonzero_digits(n: int) -> int:
    return sum(c != "0" for c in str(abs(n))) or 1


def _carries(x: int, y: int, op: str) -> int:
    """Carries of x + y, or borrows of x - y (column by column)."""
    count, carry = 0, 0
    while x or y:
        a, b = x % 10, y % 10
        if op == "+":
            carry = 1 if a + b + carry >= 10 else 0
        else:
            carry = 1 if a - b - carry < 0 else 0
        count += carry
        x, y = x // 10, y // 10
    return count


def difficulty(x: int, op: str, y: int) -> int:
    """How hard one line is: for a multiplication, its non-zero digit products, each counted twice when it carries
    (>= 10); for a division, the non-zero digits of the dividend; 1 + carries of an addition; 1 + borrows of a
    subtraction."""
    if op == "*":  # schoolbook digit products, and one more for each product that carries (>= 10)
        dx = [int(c) for c in str(abs(x)) if c != "0"] or [0]
        dy = [int(c) for c in str(abs(y)) if c != "0"] or [0]
        return sum(1 + (a * b >= 10) for a in dx for b in dy)
    if op == "/":
        return nonzero_digits(x)
    return 1 + _carries(abs(x), abs(y), op)


def slip_probability(x: int, op: str, y: int, execution_noise: float, slip_cap: int = 0) -> float:
    """The warm-start corpus's chance that the line `x op y` is written wrong:
    min(0.9, execution_noise * d), d = difficulty(x, op, y), counted up to `slip_cap` units when `slip_cap` > 0
    (`CorpusKnobs`)."""
    d = difficulty(x, op, y)
    return min(0.9, execution_noise * (min(d, slip_cap) if slip_cap else d))


def execute(plan: list, slip=None) -> tuple[list[tuple[int, str, int, int]], int | None]:
    """Run a plan's computation lines: (x, op, y, claimed z) per line and the last claimed value. `slip(x, op, y,
    true)` may return a wrong claimed value (an execution slip); later lines that refer to it use the claim."""
    claims: list[int] = []
    lines = []
    for item in plan:
        if not isinstance(item, Calc):
            continue
        x = claims[item.x.index] if isinstance(item.x, Ref) else item.x
        y = claims[item.y.index] if isinstance(item.y, Ref) else item.y
        true = apply_op(x, item.op, y)
        z = int(true) if true is not None and true.denominator == 1 else int(math.floor(true or 0))
        if slip is not None:
            z = slip(x, item.op, y, z)
        claims.append(z)
        lines.append((x, item.op, y, z))
    return lines, (claims[-1] if claims else None)


def plan_cost(plan: list) -> int:
    """One per computation line plus its difficulty (the lab's cost model; lower is cheaper)."""
    lines, _ = execute(plan)
    return sum(1 + difficulty(x, op, y) for x, op, y, _ in lines)


def computation_lines(text: str) -> list[tuple[int, str, int, int]]:
    """Every `X op Y = Z` in `text`, in order, as (X, op, Y, Z)."""
    return [(int(a), op, int(b), int(c)) for a, op, b, c in _LINE.findall(text)]


def wrong_lines(text: str) -> list[tuple[int, str, int, int]]:
    """The computation lines whose claimed result differs from the true one (see also `malformed_lines`)."""
    return [(a, op, b, c) for a, op, b, c in computation_lines(text) if apply_op(a, op, b) != c]


def malformed_lines(text: str) -> list[str]:
    """The lines that claim a result (hold `=`) without being exactly one computation `X op Y = Z`: e.g.
    `-23*40=920`, `7-23*40=920`, `23*40=920=921`, `23*40=920.5`. `computation_lines` would read a correct
    computation inside some of them, so the checker counts them as wrong lines (execution)."""
    return [line for line in text.split("\n") if "=" in line and not _FULL_LINE.fullmatch(line)]


def answer_text(text: str) -> str | None:
    """What follows the last `so the answer is`, up to the end of that line; None when there is none."""
    idx = text.rfind(ANSWER_PREFIX)
    if idx < 0:
        return None
    return text[idx + len(ANSWER_PREFIX) :].split("\n", 1)[0].strip()


def stable_hash(text: str) -> int:
    """A machine-independent 64-bit hash of `text` (Python's `hash` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def is_heldout_atom(atom_id: str, heldout_share: float) -> bool:
    """Whether a single problem belongs to the held-out split: a hash of its id, so the split is the same on every
    machine and for every seed."""
    return stable_hash(atom_id) % 1_000_000 < heldout_share * 1_000_000


def check_response(problem: Problem, response: str, known: set[int], strategy: str | None,
                   expected: int | None = None) -> CheckResult:
    """The load-bearing checker shared by every family (see the module docstring for the order of the verdicts).
    `known`: the numbers a line may use without computing them; `strategy`: what the family's parser read."""
    ans = answer_text(response)
    if ans is None:
        return CheckResult(0.0, False, "format", "no answer line", strategy)
    if not _INT.fullmatch(ans):
        return CheckResult(0.0, False, "format", "unparseable answer", strategy)
    value = int(ans)
    lines = computation_lines(response)
    if any(apply_op(a, op, b) != c for a, op, b, c in lines):
        return CheckResult(0.0, False, "execution", "a computation line is wrong", strategy)
    if malformed_lines(response):  # before session 54 text around `X op Y = Z` on its line went unread
        return CheckResult(0.0, False, "execution", "a computation line is malformed (not X op Y = Z)", strategy)
    if not lines or lines[-1][3] != value:
        return CheckResult(0.0, False, "planning", "the answer is not the result of the last line", strategy)
    seen = set(known)
    for a, _, b, c in lines:
        if a not in seen or b not in seen:
            return CheckResult(0.0, False, "planning", "a line uses a number from nowhere", strategy)
        seen.add(c)
    if value != (problem.answer if expected is None else expected):
        return CheckResult(0.0, False, "planning", "strategy misapplied: wrong value", strategy)
    return CheckResult(1.0, True, None, "", strategy)


def entropy(counts) -> float:
    """Shannon entropy (nats) of a histogram (dict or iterable of counts)."""
    values = list(counts.values()) if isinstance(counts, dict) else list(counts)
    total = sum(values)
    return -sum(v / total * math.log(v / total) for v in values if v > 0) if total else 0.0


def _slip_value(value: int, rng) -> int:
    """A nearby wrong non-negative value (an execution slip)."""
    delta = rng.choice([-2, -1, 1, 2, 10, -10])
    wrong = value + delta
    return wrong if wrong >= 0 and wrong != value else value + abs(delta)


class Family:
    """A task family: a problem universe (one per `optimum` variant), named strategies, plans, a parser.

    Subclasses define `family`, `strategies` (in tie-break order), `blind_weights`, `blind_common_weights`, and the methods marked below.
    `optimum="diverse"` draws from the full universe, where the cheapest strategy differs between problems;
    `"single-route"` from a sub-universe where one strategy is cheapest everywhere (a negative control).
    """

    family = ""
    strategies: tuple[str, ...] = ()
    blind_weights: dict[str, float] = {}
    blind_common_weights: dict[str, float] = {}

    def __init__(self, optimum: str = "diverse"):
        if optimum not in OPTIMA:
            raise ValueError(f"optimum must be one of {OPTIMA}, got {optimum!r}")
        self.optimum = optimum

    def params(self) -> dict:
        return {"family": self.family, "optimum": self.optimum}

    # ---- to define ------------------------------------------------------------------------------------------
    def sample_atom(self, rng) -> Problem:  # pragma: no cover - abstract
        raise NotImplementedError

    def universe(self):  # pragma: no cover - abstract
        """Every problem of this variant (a generator)."""
        raise NotImplementedError

    def applicable(self, problem: Problem) -> tuple[str, ...]:
        return self.strategies

    def plan(self, problem: Problem, strategy: str, misapply: bool = False) -> list:  # pragma: no cover
        raise NotImplementedError

    def known(self, problem: Problem) -> set[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_class(self, problem: Problem) -> str:  # pragma: no cover - abstract
        """The problem features the cost model's choice of strategy mostly turns on, as a class name (e.g. `n=9`
        for a series): the classes over which `hicra.lab.probes.class_optimum` picks a strategy, as a policy that
        chooses by problem would."""
        raise NotImplementedError

    def parse_strategy(self, problem: Problem, lines: list, response: str = "") -> str | None:  # pragma: no cover
        """The strategy the response executed, from its computation `lines` (and, where parts must be told apart,
        its text); None when it cannot tell."""
        raise NotImplementedError

    # ---- shared ---------------------------------------------------------------------------------------------
    def sample(self, rng, split: str = "train", heldout_share: float = 0.1) -> Problem:
        """A uniform draw from the universe, restricted to the `split`: "train" (no atom held out), "heldout" (every
        atom held out; a multi-part problem with one part in each split belongs to neither) or "any"."""
        if split not in ("train", "heldout", "any"):
            raise ValueError(f"split must be 'train', 'heldout' or 'any', got {split!r}")
        for _ in range(100_000):
            p = self.sample_atom(rng)
            held = [is_heldout_atom(a, heldout_share) for a in p.atoms]
            if split == "any" or (split == "train" and not any(held)) or (split == "heldout" and all(held)):
                return p
        raise ValueError(f"no {split} problem in 100,000 draws of {self.family} {self.params()}: universe too small "
                         f"for heldout_share={heldout_share}")

    def cost(self, problem: Problem, strategy: str) -> int:
        return plan_cost(self.plan(problem, strategy))

    def cheapest(self, problem: Problem) -> str:
        """The strategy of least cost; ties go to the earlier one in `strategies`."""
        options = self.applicable(problem)
        return min(options, key=lambda s: (self.cost(problem, s), self.strategies.index(s)))

    def optimal_label(self, problem: Problem) -> str:
        return self.cheapest(problem)

    def prior_weights(self, prior: str, favourite_share: float = 0.0) -> dict[str, float]:
        """A blind prior's weights over `strategies` (summing to 1): the family's table for `prior` ("blind" or
        "blind-common"); with `favourite_share` s > 0 the table's favourite gets s and the others share 1 - s in
        proportion to their table weights (e.g. series blind-common 0.85/0.10/0.05 at s = 0.6: 0.6/0.267/0.133)."""
        table = self.blind_common_weights if prior == "blind-common" else self.blind_weights
        total = sum(table.values())
        weights = {s: table[s] / total for s in self.strategies}
        if not favourite_share:
            return weights
        top = max(self.strategies, key=lambda s: weights[s])
        rest = 1.0 - weights[top]
        return {s: favourite_share if s == top else (1.0 - favourite_share) * weights[s] / rest
                for s in self.strategies}

    def choose(self, problem: Problem, rng, prior: str, favourite_share: float = 0.0) -> str:
        """The warm-start solver's strategy: the cheapest one (oracle) or a fixed preference (blind, blind-common;
        `prior_weights`), renormalised over the strategies that apply to this problem."""
        if prior == "oracle":
            return self.cheapest(problem)
        options = self.applicable(problem)
        table = self.prior_weights(prior, favourite_share)
        return rng.choices(options, weights=[table[s] for s in options])[0]

    def render(self, plan: list, rng, knobs: CorpusKnobs) -> str:
        """A plan as text: moves as paraphrases, lines `x op y=z` with slips at the knobs' rate, then the answer."""
        from hicra.lab.tasks.language import say

        def slip(x, op, y, z):
            if rng.random() < slip_probability(x, op, y, knobs.execution_noise, knobs.slip_cap):
                return _slip_value(z, rng)
            return z

        lines_iter = iter(execute(plan, slip)[0])
        out, last = [], None
        for item in plan:
            if isinstance(item, Say):
                out.append(item.move if item.literal else say(item.move, rng))
            else:
                x, op, y, z = next(lines_iter)
                out.append(f"{x}{op}{y}={z}")
                last = z
        out.append(f"{ANSWER_PREFIX} {last}")
        return "\n".join(out)

    def solve(self, problem: Problem, rng, knobs: CorpusKnobs, strategy: str | None = None) -> str:
        """A reasoning trace from the scripted solver (strategy by the prior unless given, misapplied with
        probability `planning_noise`, slips at the execution-noise rate)."""
        if strategy is None:
            strategy = self.choose(problem, rng, knobs.strategy_prior, knobs.favourite_share)
        misapply = rng.random() < knobs.planning_noise
        return self.render(self.plan(problem, strategy, misapply), rng, knobs)

    def oracle_trace(self, problem: Problem, rng) -> str:
        """The noise-free trace of the cheapest strategy (the execution probe teacher-forces it)."""
        return self.render(self.plan(problem, self.cheapest(problem)), rng, CorpusKnobs(0.0, "oracle", 0.0))

    def check(self, problem: Problem, response: str) -> CheckResult:
        lines = computation_lines(response)
        return check_response(problem, response, self.known(problem), self.parse_strategy(problem, lines, response))
