"""Lab v2 task families: load-bearing checkers on hand-written traces, strategy parsing, the disjoint held-out split,
problem-dependent optima and the corpus knobs."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from hicra.lab.tasks import CorpusKnobs, MultiPart, Product, Series, TaskMix, strategy_entropy
from hicra.lab.tasks.base import (
    Calc,
    apply_op,
    computation_lines,
    difficulty,
    entropy,
    is_heldout_atom,
    plan_cost,
    slip_probability,
)

SR, PR, MP = Series(), Product(), MultiPart()
S = SR.make(14, 3, 9)  # 14, 17, ..., 38: sum 234
P = PR.make(23, 39)  # 897
ALL = ("series", "product", "multi")

SERIES_CASES = [
    ("many terms, so pair them from the outside in\nhow many terms are there\n38-14=24\n24/3=8\n8+1=9\n14+38=52\n"
     "52*9=468\n468/2=234\nso the answer is 234", True, None, "pairing"),
    ("the sum is the middle term times how many\n38-14=24\n24/3=8\n8+1=9\n14+38=52\n52/2=26\n26*9=234\n"
     "so the answer is 234", True, None, "middle"),
    ("add them\n14+17=31\n31+20=51\n51+23=74\n74+26=100\n100+29=129\n129+32=161\n161+35=196\n196+38=234\n"
     "so the answer is 234", True, None, "one-by-one"),
    # execution: one wrong line, even though the final answer is right (load-bearing execution)
    ("pair\n38-14=24\n24/3=8\n8+1=9\n14+38=52\n52*9=467\n468/2=234\nso the answer is 234", False, "execution",
     "pairing"),
    # planning: the halving forgotten, every line right
    ("pair\n38-14=24\n24/3=8\n8+1=9\n14+38=52\n52*9=468\nso the answer is 468", False, "planning", "pairing"),
    # planning: the answer is not the result of the last line (written without being derived)
    ("pair\n38-14=24\n24/3=8\n8+1=9\nso the answer is 234", False, "planning", None),
    # planning: a number out of nowhere ("200+34" is right, but 200 and 34 were never given nor computed)
    ("easy\n200+34=234\nso the answer is 234", False, "planning", "one-by-one"),
    # format
    ("pair\n38-14=24\n24/3=8", False, "format", None),
    ("so the answer is two hundred", False, "format", None),
]


@pytest.mark.parametrize(("response", "correct", "error_type", "strategy"), SERIES_CASES)
def test_series_checker_hand_written(response, correct, error_type, strategy):
    r = SR.check(S, response)
    assert (r.correct, r.error_type, r.strategy) == (correct, error_type, strategy)
    assert r.reward == (1.0 if correct else 0.0)


def test_series_label_does_not_need_the_count_lines():
    """With the count in the prompt (`show_count`) a response may skip the count lines and be right; it is labelled
    by what it computed (before session 55 it got no label). Without the count given, the same lines use a number
    from nowhere: a planning error, still labelled with the strategy it tried."""
    shown = Series(show_count=True)
    s9 = shown.make(14, 3, 9)
    pairing = "pair\n14+38=52\n52*9=468\n468/2=234\nso the answer is 234"
    middle = "middle\n14+38=52\n52/2=26\n26*9=234\nso the answer is 234"
    assert [(r.correct, r.strategy) for r in (shown.check(s9, pairing), shown.check(s9, middle))] == [
        (True, "pairing"), (True, "middle")]
    r = SR.check(S, pairing)
    assert (r.correct, r.error_type, r.strategy) == (False, "planning", "pairing")
    # a product of two numbers with neither the count nor the pair sum is no closed form: no label
    assert SR.check(S, "guess\n26*9=234\nso the answer is 234").strategy is None


PRODUCT_CASES = [
    ("round up\n23*40=920\n920-23=897\nso the answer is 897", True, None, "round-up"),
    ("split\n23*30=690\n23*9=207\n690+207=897\nso the answer is 897", True, None, "split"),
    ("split\n23*30=690\n23*9=206\n690+207=897\nso the answer is 897", False, "execution", "split"),
    ("round up\n23*40=920\n920+23=943\nso the answer is 943", False, "planning", "round-up"),
    ("split\n23*30=690\nso the answer is 690", False, "planning", "split"),
    ("i know it\n897*1=897\nso the answer is 897", False, "planning", None),
    # no scripted strategy does it in one line, but it is a derivation: correct, labelled "direct"
    ("just multiply\n23*39=897\nso the answer is 897", True, None, "direct"),
    # a line that claims a result without being exactly X op Y = Z: an execution error (before session 54 the
    # text around a correct X op Y = Z went unread, and each of these earned reward 1; a reviewer's repros)
    ("round up\n-23*40=920\n920-23=897\nso the answer is 897", False, "execution", "round-up"),
    ("round up\n7-23*40=920\n920-23=897\nso the answer is 897", False, "execution", "round-up"),
    ("round up\n23*40=920=920\n920-23=897\nso the answer is 897", False, "execution", "round-up"),
    ("round up\n23*40=920.5\n920-23=897\nso the answer is 897", False, "execution", "round-up"),
    ("round up\n23*40=920\n920-23=897+5\nso the answer is 897", False, "execution", "round-up"),
    # spaces around the parts of a line are still one computation
    ("round up\n 23 * 40 = 920 \n920-23=897\nso the answer is 897", True, None, "round-up"),
    # the same strategies with the operands or the lines in another order (no label before session 55)
    ("round up\n40*23=920\n920-23=897\nso the answer is 897", True, None, "round-up"),
    ("split\n23*9=207\n23*30=690\n690+207=897\nso the answer is 897", True, None, "split"),
    ("split\n23*9=207\n30*23=690\n207+690=897\nso the answer is 897", True, None, "split"),
    ("round up\n23*1=23\n23*40=920\n920-23=897\nso the answer is 897", True, None, "round-up"),
    ("split the first\n39*20=780\n39*3=117\n780+117=897\nso the answer is 897", True, None, "split-first"),
]


@pytest.mark.parametrize(("response", "correct", "error_type", "strategy"), PRODUCT_CASES)
def test_product_checker_hand_written(response, correct, error_type, strategy):
    r = PR.check(P, response)
    assert (r.correct, r.error_type, r.strategy) == (correct, error_type, strategy)


def test_multi_part_checker_and_label():
    m = MP.make(SR.make(3, 2, 4), P)  # 3+5+7+9 = 24, then 897: total 921
    good = ("part 1\nadd\n3+5=8\n8+7=15\n15+9=24\npart 2\nround\n23*40=920\n920-23=897\nnow add\n24+897=921\n"
            "so the answer is 921")
    r = MP.check(m, good)
    assert r.correct and r.strategy == "one-by-one+round-up"
    wrong_combine = good.replace("24+897=921", "897-24=873").replace("is 921", "is 873")
    r = MP.check(m, wrong_combine)
    assert (r.correct, r.error_type) == (False, "planning")
    slip = good.replace("8+7=15", "8+7=16")
    assert MP.check(m, slip).error_type == "execution"
    assert MP.check(m, good.replace("part 2\n", "")).strategy is None  # unparseable: no label


WRITTEN_TERMS = [{"family": "series", "write_terms": True}, {"family": "multi", "series": {"write_terms": True}}]


@pytest.mark.parametrize("spec", [{"family": f} for f in ALL] + WRITTEN_TERMS)
def test_every_strategy_solves_and_parses(spec):
    """The noise-free trace of every applicable strategy is correct and parses back to its own label; its
    misapplied version has every line right and fails as a planning error."""
    fam = TaskMix([spec]).tasks[0]
    rng = random.Random(0)
    clean = CorpusKnobs(0.0, "oracle", 0.0)
    seen = set()
    for _ in range(60):
        p = fam.sample_atom(rng)
        for strategy in fam.applicable(p):
            text = fam.render(fam.plan(p, strategy), rng, clean)
            r = fam.check(p, text)
            assert r.correct and r.strategy == strategy, (p.question, strategy, text, r)
            seen.add(strategy)
            bad = fam.check(p, fam.render(fam.plan(p, strategy, misapply=True), rng, clean))
            assert (bad.correct, bad.error_type) == (False, "planning"), (p.question, strategy, bad)
    assert len(seen) >= 3


def test_heldout_split_is_disjoint_from_training_draws():
    mix = TaskMix([{"family": f} for f in ALL])
    held = mix.heldout(300)
    held_atoms = {a for p in held for a in p.atoms}
    assert len({p.id for p in held}) == 300
    assert all(all(is_heldout_atom(a, 0.1) for a in p.atoms) for p in held)
    rng = random.Random(1)
    train = [mix.sample(rng, "train") for _ in range(20_000)]
    train_atoms = {a for p in train for a in p.atoms}
    assert not train_atoms & held_atoms
    assert not {p.id for p in train} & {p.id for p in held}
    # a multi-part problem is never trained on when either part is held out
    assert all(not is_heldout_atom(a, 0.1) for p in train for a in p.atoms)


def test_heldout_split_is_a_stable_function_of_the_id():
    # sha256-based: the same on every machine and process (Python's str hash is salted)
    flags = [is_heldout_atom(f"product:{a}:37", 0.1) for a in range(2, 130)]
    assert flags == [is_heldout_atom(f"product:{a}:37", 0.1) for a in range(2, 130)]
    assert 0.02 < sum(flags) / len(flags) < 0.25


def test_universes_are_large_and_repeats_rare():
    assert sum(1 for _ in Series().universe()) == 119 * 14 * 8
    assert sum(1 for _ in Product().universe()) == 148 * 81
    from hicra.lab.tasks import repeat_share

    shares = repeat_share(TaskMix([{"family": f} for f in ALL]), draws=150 * 16, seed=0)
    assert set(shares) == set(ALL)
    assert max(shares.values()) <= 0.05, shares


@pytest.mark.parametrize("fam", [Series(), Product()])
def test_cheapest_strategy_depends_on_the_problem(fam):
    counts = Counter(fam.cheapest(p) for p in fam.universe())
    assert len(counts) == len(fam.strategies)
    assert max(counts.values()) / sum(counts.values()) < 0.9


@pytest.mark.parametrize("fam", [Series("single-route"), Product("single-route")])
def test_single_route_variant_has_one_cheapest_strategy(fam):
    counts = Counter(fam.cheapest(p) for p in fam.universe())
    assert counts.most_common(1)[0][1] / sum(counts.values()) >= 0.99


def test_single_route_series_keeps_its_counts_in_a_widened_universe():
    fam = Series("single-route", counts=tuple(range(2, 13)), write_terms=True)
    assert fam.counts == (10, 12)
    counts = Counter(fam.cheapest(p) for p in fam.universe())
    assert counts.most_common(1)[0][1] / sum(counts.values()) >= 0.99
    with pytest.raises(ValueError, match="single-route needs a count"):
        Series("single-route", counts=(2, 3))


def test_blind_prior_entropy_lies_between_the_two_optima_in_the_widened_universe():
    series = {"write_terms": 1, "counts": list(range(2, 13))}
    specs = [{"family": "series", **series}, {"family": "product"}, {"family": "multi", "series": series}]
    diverse, single = TaskMix(specs, "diverse"), TaskMix(specs, "single-route")
    h_div, h_single = strategy_entropy(diverse, "oracle", 4000), strategy_entropy(single, "oracle", 4000)
    for prior in ("blind", "blind-common"):
        assert h_single < strategy_entropy(diverse, prior, 4000) < h_div, prior


def test_blind_prior_entropy_lies_between_the_two_optima():
    specs = [{"family": f} for f in ALL]
    diverse, single = TaskMix(specs, "diverse"), TaskMix(specs, "single-route")
    h_div = strategy_entropy(diverse, "oracle", 4000)
    h_single = strategy_entropy(single, "oracle", 4000)
    for prior in ("blind", "blind-common"):
        assert h_single < strategy_entropy(diverse, prior, 4000) < h_div, prior


def test_blind_prior_favours_a_strategy_that_is_rarely_cheapest():
    rng = random.Random(1)
    for fam in (SR, PR):
        probs = [fam.sample_atom(rng) for _ in range(400)]
        cheapest = Counter(fam.cheapest(p) for p in probs)
        favourite = Counter(fam.choose(p, rng, "blind") for p in probs).most_common(1)[0][0]
        assert favourite != cheapest.most_common(1)[0][0]
        assert cheapest[favourite] / len(probs) < 0.3  # the usual choice is seldom the cheapest one
        common = Counter(fam.choose(p, rng, "blind-common") for p in probs).most_common(1)[0][0]
        assert common == cheapest.most_common(1)[0][0]


def test_favourite_share_reweights_the_blind_prior_and_keeps_its_favourite():
    for fam in (SR, PR):
        for prior in ("blind", "blind-common"):
            table = fam.prior_weights(prior)
            assert table == pytest.approx({s: w / sum(fam.blind_common_weights.values() if prior == "blind-common"
                                                       else fam.blind_weights.values())
                                           for s, w in (fam.blind_common_weights if prior == "blind-common"
                                                        else fam.blind_weights).items()})
            top = max(table, key=table.get)
            mixed = fam.prior_weights(prior, 0.6)
            assert sum(mixed.values()) == pytest.approx(1.0) and mixed[top] == pytest.approx(0.6)
            others = [s for s in fam.strategies if s != top]
            # the others keep their ratio to each other and share what the favourite gave up
            assert mixed[others[0]] / mixed[others[1]] == pytest.approx(table[others[0]] / table[others[1]])
            assert sum(mixed[s] for s in others) == pytest.approx(0.4)
    # drawn frequencies follow the weights (series with an odd count: all three strategies apply)
    rng = random.Random(3)
    odd = Series(counts=(5,))
    drawn = Counter(odd.choose(odd.sample_atom(rng), rng, "blind-common", 0.6) for _ in range(6000))
    for s, w in odd.prior_weights("blind-common", 0.6).items():
        assert abs(drawn[s] / 6000 - w) < 0.02, s
    # a multi-part problem passes the share to both parts
    mp = MultiPart()
    parts = Counter(s for _ in range(3000) for s in mp.choose(mp.sample_atom(rng), rng, "blind-common", 0.6).split("+"))
    share = parts["one-by-one"] / (parts["one-by-one"] + parts["pairing"] + parts["middle"])
    assert 0.55 < share < 0.75  # 0.6 where middle applies, 0.69 where it does not; 0.85-0.89 with the table
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="favourite_share"):
            CorpusKnobs(favourite_share=bad)


def test_favourite_share_raises_the_blind_priors_entropy_toward_the_optimum():
    series = {"write_terms": 1, "counts": list(range(2, 13))}
    specs = [{"family": "series", **series}, {"family": "product"}, {"family": "multi", "series": series}]
    mix = TaskMix(specs, "diverse")
    h_table, h_mixed = (strategy_entropy(mix, "blind-common", 4000, favourite_share=s) for s in (0.0, 0.6))
    assert h_table < h_mixed < strategy_entropy(mix, "oracle", 4000)


def test_costs_follow_the_difficulty_model():
    assert difficulty(7, "*", 40) == 2  # 7*4 carries
    assert difficulty(23, "*", 30) == 2  # 2*3, 3*3: no carry
    assert difficulty(45, "+", 55) == 3  # two carries
    assert difficulty(52, "-", 14) == 2  # one borrow
    # round-up beats split when b ends in 9 (two lines instead of three)
    assert PR.cost(P, "round-up") < PR.cost(P, "split")
    assert PR.cheapest(PR.make(23, 31)) == "split"
    assert plan_cost([Calc(1, "+", 1)]) == 2


def test_corpus_knobs_shape_the_errors():
    mix = TaskMix([{"family": f} for f in ALL])

    def errors(knobs):
        rng = random.Random(0)
        out = Counter()
        for _ in range(600):
            p = mix.sample(rng)
            out[mix.check(p, mix.solve(p, rng, knobs)).error_type] += 1
        return out

    assert errors(CorpusKnobs(0.0, "blind", 0.0)) == Counter({None: 600})
    noisy = errors(CorpusKnobs(0.05, "blind", 0.0))
    assert noisy["execution"] > 100 and noisy["planning"] == 0
    planning = errors(CorpusKnobs(0.0, "blind", 0.3))
    assert planning["planning"] > 100 and planning["execution"] == 0
    with pytest.raises(ValueError, match="strategy_prior"):
        CorpusKnobs(0.0, "psychic", 0.0)


def _slip_rates(knobs: CorpusKnobs, n: int = 3000) -> dict[str, float]:
    """The share of wrong lines per kind ("+1", or the operation) in `n` rendered pairing plans of series."""
    rng = random.Random(0)
    wrong: Counter = Counter()
    total: Counter = Counter()
    for _ in range(n):
        p = SR.sample_atom(rng)
        for a, op, b, c in computation_lines(SR.render(SR.plan(p, "pairing"), rng, knobs)):
            kind = "+1" if (op, b) == ("+", 1) else op
            total[kind] += 1
            wrong[kind] += apply_op(a, op, b) != c
    return {kind: wrong[kind] / total[kind] for kind in total}


def test_slips_are_more_likely_on_harder_lines():
    rates = _slip_rates(CorpusKnobs(0.05, "oracle", 0.0))
    assert rates["*"] > 2 * rates["+1"]


def test_slip_cap_bounds_the_difficulty_the_slip_rate_counts():
    assert difficulty(52, "*", 9) == 4  # 5*9 and 2*9 both carry
    assert slip_probability(52, "*", 9, 0.1) == pytest.approx(0.4)  # no cap: 0.1 per unit
    assert slip_probability(52, "*", 9, 0.1, slip_cap=2) == pytest.approx(0.2)
    assert slip_probability(1, "+", 1, 0.1, slip_cap=2) == pytest.approx(0.1)  # under the cap: unchanged
    assert slip_probability(999, "*", 999, 0.5) == 0.9  # the 0.9 ceiling
    # cap 1: every line slips at the noise rate, so multiplications slip no more than adding 1 (counted, not assumed)
    rates = _slip_rates(CorpusKnobs(0.1, "oracle", 0.0, slip_cap=1))
    for kind in ("*", "+1"):  # (a division after a slipped line can be wrong without a slip of its own: floor)
        assert abs(rates[kind] - 0.1) < 0.02, kind
    with pytest.raises(ValueError, match="slip_cap"):
        CorpusKnobs(slip_cap=-1)


def test_oracle_prior_picks_the_cheapest_and_blind_prior_ignores_the_problem():
    rng = random.Random(0)
    probs = [PR.sample_atom(rng) for _ in range(400)]
    assert all(PR.choose(p, rng, "oracle") == PR.cheapest(p) for p in probs)
    by_ones: dict[int, Counter] = {}
    for p in probs:
        by_ones.setdefault(p.data["b"] % 10 == 9, Counter())[PR.choose(p, rng, "blind")] += 1
    shares = [c["round-up"] / sum(c.values()) for c in by_ones.values()]
    assert abs(shares[0] - shares[1]) < 0.15  # the same preference whatever the problem
    assert entropy([1, 1]) == pytest.approx(0.6931, abs=1e-4)


def test_drills_are_clean_lines_of_every_strategy_from_training_problems():
    from hicra.lab.sft import build_drills

    mix = TaskMix([{"family": "series"}, {"family": "product"}])
    drills = build_drills(mix, 60, 10, seed=3)
    assert drills == build_drills(mix, 60, 10, seed=3) and drills != build_drills(mix, 60, 10, seed=4)
    lines = [line for d in drills for line in d.split("\n")]
    assert len(lines) == 600 and all(len(d.split("\n")) == 10 for d in drills)
    parsed = [computation_lines(line) for line in lines]
    assert all(len(p) == 1 for p in parsed)  # nothing but computation lines: no phrase, no answer line
    assert all(apply_op(x, op, y) == z for (x, op, y, z), in parsed)  # noise-free
    # not only the blind prior's favourite: lines only pairing / round-up write (a halving, a subtraction) occur
    ops = Counter(p[0][1] for p in parsed)
    assert ops["/"] > 0 and ops["-"] > 0 and ops["*"] > 0 and ops["+"] > 0


def test_written_terms_leave_no_arithmetic_in_the_head():
    """With write_terms, one-by-one computes every term it adds on an earlier line; the default keeps the old
    trace (terms used as given), and the written version costs more, so the cheapest strategy shifts."""
    from hicra.lab.tasks.base import computation_lines
    from hicra.lab.tasks.series import Series

    written, plain = Series(write_terms=True), Series()
    p = written.make(107, 10, 5)
    clean = CorpusKnobs(0.0, "oracle", 0.0)
    lines = computation_lines(written.render(written.plan(p, "one-by-one"), random.Random(0), clean))
    assert len(lines) == 2 * (5 - 1)
    computed = {107}
    for x, op, y, z in lines:  # every operand is the start, the step, or a result of an earlier line
        assert op == "+" and x in computed and (y in computed or y == 10)
        computed.add(z)
    assert lines[-1][3] == p.answer
    old = computation_lines(plain.render(plain.plan(p, "one-by-one"), random.Random(0), clean))
    assert [ln[2] for ln in old] == [117, 127, 137, 147]  # terms used without being computed
    assert written.cost(p, "one-by-one") > plain.cost(p, "one-by-one")
    assert written.cost(p, "pairing") == plain.cost(p, "pairing")
    universe = list(written.universe())
    share = sum(written.cheapest(q) == "one-by-one" for q in universe) / len(universe)
    assert 0.2 < share < 0.6  # against 79% without written terms
    assert written.params()["write_terms"] is True and "write_terms" not in plain.params()


def test_parse_universe_ints_ranges_and_errors():
    from hicra.lab.presets import narrowed_tasks, parse_universe

    assert parse_universe("max_start=30,max_step=5") == {"max_start": 30, "max_step": 5}
    assert parse_universe("write_terms=1,counts=2-16") == {"write_terms": 1, "counts": list(range(2, 17))}
    assert parse_universe(None) == {} and parse_universe("") == {}
    for bad in ("counts", "counts=two", "counts=2-", "=3", "counts=2-x"):
        with pytest.raises(ValueError, match="task-spec part"):
            parse_universe(bad)
    # a parsed range builds a series family whose universe holds exactly those term counts
    spec = narrowed_tasks(parse_universe("counts=10-12"))[0]
    family = Series(**{k: v for k, v in spec.items() if k != "family"})
    assert family.counts == (10, 11, 12)
    rng = random.Random(0)
    assert {family.sample_atom(rng).data["n"] for _ in range(300)} == {10, 11, 12}


def test_stop_check_puts_the_stop_on_the_line_above():
    """With stop_check, the trace writes the distance to the last term (b - a) and takes a step off it after each
    written term; the answer follows the first zero distance, the parser still reads one-by-one, and the checker
    accepts the trace (every line right, every operand known or computed). Without write_terms it is refused."""
    from hicra.lab.tasks.base import computation_lines
    from hicra.lab.tasks.series import Series

    fam, written = Series(write_terms=True, stop_check=True), Series(write_terms=True)
    clean = CorpusKnobs(0.0, "oracle", 0.0)
    for a, d, n in [(107, 10, 5), (55, 4, 2), (3, 1, 12)]:
        p = fam.make(a, d, n)
        text = fam.render(fam.plan(p, "one-by-one"), random.Random(0), clean)
        lines = computation_lines(text)
        assert len(lines) == 1 + 3 * (n - 1)
        checks = [ln for ln in lines if ln[1] == "-"]
        assert checks[0][:3] == (p.data["b"], "-", a) and all(ln[2] == d for ln in checks[1:])
        assert [ln[3] for ln in checks] == [(n - 1 - i) * d for i in range(n)]  # reaches 0 at the last term
        assert lines[-2][3] == 0 and lines[-1][3] == p.answer
        result = fam.check(p, text)
        assert result.correct and result.strategy == "one-by-one"
        assert fam.cost(p, "one-by-one") > written.cost(p, "one-by-one")
        assert fam.cost(p, "pairing") == written.cost(p, "pairing")
        bad = fam.render(fam.plan(p, "one-by-one", misapply=True), random.Random(0), clean)
        assert fam.check(p, bad).error_type == "planning" and fam.check(p, bad).strategy == "one-by-one"
    assert fam.params()["stop_check"] is True and "stop_check" not in written.params()
    # written terms without the check keep their traces (the presets' corpora and cached warm starts depend on it):
    # misapplied with two terms, the first term added twice and nothing else
    from hicra.lab.tasks.base import execute

    assert execute(written.plan(written.make(55, 4, 2), "one-by-one", misapply=True))[0] == [(55, "+", 55, 110)]
    with_check = execute(fam.plan(fam.make(55, 4, 2), "one-by-one", misapply=True))[0]
    assert with_check == [(59, "-", 55, 4), (55, "+", 4, 59), (4, "-", 4, 0), (55, "+", 55, 110)]
    with pytest.raises(ValueError, match="needs write_terms"):
        Series(stop_check=True)


def test_lab_stops_counts_a_one_by_one_that_runs_past_the_last_term(benchmark_script):
    """benchmarks/lab_stops.py's `ran_past`: a written one-by-one that goes on past b is caught, a right one (with
    or without the stop check) is not, and an in-head one-by-one adding a term beyond b is caught too."""

    from hicra.lab.tasks.base import computation_lines
    from hicra.lab.tasks.series import Series

    mod = benchmark_script("lab_stops")
    clean = CorpusKnobs(0.0, "oracle", 0.0)
    for fam in (Series(write_terms=True), Series(write_terms=True, stop_check=True), Series()):
        p = fam.make(55, 4, 4)  # 55, 59, 63, 67
        right = computation_lines(fam.render(fam.plan(p, "one-by-one"), random.Random(0), clean))
        assert not mod.ran_past(p, right)
        longer = fam.make(55, 4, 5)  # the same trace one term further: 71 > 67
        past = computation_lines(fam.render(fam.plan(longer, "one-by-one"), random.Random(0), clean))
        assert mod.ran_past(p, past)


def test_fresh_heldout_problems_avoid_the_tuning_set_and_training(benchmark_script):
    """benchmarks/lab_fresh_heldout.py's `fresh_problems`: held-out problems (never a training draw), none of them
    in the excluded ids (a run's `heldout_ids`), as many as asked, and a clear error when the universe runs out."""

    import pytest

    from hicra.lab.tasks import TaskMix

    mod = benchmark_script("lab_fresh_heldout")
    task = TaskMix([{"family": "series"}, {"family": "product"}], heldout_share=0.1)
    tuned = {p.id for p in task.heldout(256, 0)}
    fresh = mod.fresh_problems(task, tuned, 300, 1)
    assert len(fresh) == len({p.id for p in fresh}) == 300 and not tuned & {p.id for p in fresh}
    train = {task.sample(random.Random(s), "train").id for s in range(2000)}
    assert not train & {p.id for p in fresh}
    assert set(task.heldout(300 + 256, 1)) & set(task.heldout(256, 0))  # the draws overlap: the exclusion matters
    small = TaskMix([{"family": "series", "max_start": 3, "max_step": 1, "counts": [2]}], heldout_share=0.3)
    with pytest.raises(ValueError, match="held-out problems"):
        mod.fresh_problems(small, set(), 500, 1)


def test_lab_strategies_conditioning_reads_each_part_and_measures_choice_by_problem(capsys, benchmark_script):
    """benchmarks/lab_strategies.py's choice-by-problem table: a policy that executes each problem's cheapest
    strategy has I(executed; cheapest) = H(cheapest), one that picks the same mix for every problem has I = 0 (the
    plug-in estimate on balanced counts); a multi-part label is read part by part, so the prompt's part order
    (shared by both labels) adds no information."""
    import math

    import pandas as pd

    mod = benchmark_script("lab_strategies")
    assert mod.part_of("split+pairing", ("one-by-one", "pairing", "middle")) == "pairing"
    assert mod.part_of("direct+middle", ("split", "round-up", "split-first", "direct")) == "direct"
    assert mod.part_of("unparsed", ("split",)) == "unparsed"
    cheap = ["one-by-one", "pairing"] * 50
    rows = [("series", "first fifth", c, c, True) for c in cheap]  # chooses by problem
    mix = ["pairing", "pairing", "one-by-one", "one-by-one"] * 25  # half each, in each class of `cheap`
    rows += [("series", "last fifth", c, s, True) for c, s in zip(cheap, mix, strict=True)]
    # multi: the label order follows the prompt, the series part is chosen independently of the problem
    orders = [("split+{}", "split+{}"), ("{}+split", "{}+split")] * 50
    rows += [("multi", "first fifth", a.format(c), b.format(s), True)
             for (a, b), c, s in zip(orders, cheap, mix, strict=True)]
    df = pd.DataFrame(rows, columns=["family", "part", "cheapest_label", "strategy", "correct"])
    mod.print_conditioning(df, ["first fifth", "last fifth"])
    out = capsys.readouterr().out
    assert f"series         first fifth  I = {math.log(2):.4f} nats" in out
    assert "series         last fifth   I = 0.0000 nats" in out
    assert "multi:series   first fifth  I = 0.0000 nats" in out


def test_show_count_states_the_count_and_the_mix_rebuilds_its_own_questions():
    """Series `show_count`: the prompt states n, the id does not change, n becomes a given number (a pairing
    trace that uses it without counting passes; without `show_count` the same trace is a planning error: a number
    from nowhere); `TaskMix.problem` rebuilds a sampled problem, multi-part ones too, with the mix's own text."""
    from hicra.lab.tasks import TaskMix, problem_from_id
    from hicra.lab.tasks.series import Series

    shown, plain = Series(show_count=True), Series()
    p, q = shown.make(14, 3, 9), plain.make(14, 3, 9)
    assert p.question == "sum 14 to 38 by 3 (9 terms)" and q.question == "sum 14 to 38 by 3" and p.id == q.id
    assert shown.params()["show_count"] is True and "show_count" not in plain.params()
    uses_n = "pair them\n14+38=52\n52*9=468\n468/2=234\nso the answer is 234"
    assert shown.check(p, uses_n).correct
    r = plain.check(q, uses_n)
    assert not r.correct and r.error_type == "planning"
    mix = TaskMix([{"family": "series", "show_count": 1}, {"family": "product"},
                   {"family": "multi", "series": {"show_count": 1}}])
    rng = random.Random(0)
    drawn = [mix.sample(rng) for _ in range(60)]
    assert {d.family for d in drawn} == {"series", "product", "multi"}
    for d in drawn:
        assert mix.problem(d.id).question == d.question and mix.problem(d.id).answer == d.answer
    multi = next(d for d in drawn if d.family == "multi")
    assert "terms)" in multi.question and problem_from_id(multi.id).question != multi.question
    with pytest.raises(ValueError, match="not in this task mix"):
        TaskMix([{"family": "product"}]).problem("series:1:2:3")
    with pytest.raises(ValueError, match="not a lab problem id"):
        mix.problem("series:1:x:3")


def test_decision_class_names_the_features_the_choice_turns_on():
    """Series classes by number of terms; product by b's ones digit and a's band; multi by its parts' classes."""
    from hicra.lab.tasks import TaskMix

    mix = TaskMix([{"family": "series"}, {"family": "product"}, {"family": "multi"}])
    s, p = mix.problem("series:14:3:9"), mix.problem("product:123:39")
    assert mix.family_of(s).decision_class(s) == "n=9"
    assert mix.family_of(p).decision_class(p) == "b ends 9, a>=100"
    assert mix.family_of(mix.problem("product:7:12")).decision_class(mix.problem("product:7:12")) == "b ends 2, a<10"
    m = mix.problem("multi:series:14:3:9|product:23:39")
    assert mix.family_of(m).decision_class(m) == "n=9 | b ends 9, a 10-99"


def _rows(family, classes, acc, k, rng, n_per_class, own_choice=lambda c: "A"):
    """Synthetic strategy_accuracy rows: acc[class][strategy] is each response's chance of being right; the policy's
    own choice executes own_choice(class) every time."""
    rows = []
    for c in classes:
        for i in range(n_per_class):
            pid = f"{family}:{c}:{i}"
            for s, p in acc[c].items():
                rows.append({"problem_id": pid, "family": family, "decision_class": c, "strategy": s, "k": k,
                             "n_correct": sum(rng.random() < p for _ in range(k)), "n_followed": k})
            rows.append({"problem_id": pid, "family": family, "decision_class": c, "strategy": None, "k": k,
                         "n_correct": 0, "n_followed": 0, "executed": {own_choice(c): k}})
    return rows


def test_class_optimum_finds_a_planted_choice_and_cross_fitting_removes_the_pick_bias():
    """A planted problem-dependent optimum (A right in class c1, B in c2) is found: by_class 1, single_route ~0.5,
    gain ~0.5, entropy ln 2. Where every strategy is equally good, the in-sample pick of each class's best looks
    better than one strategy everywhere, but the cross-fitted gain is ~0 on average."""
    import math
    import random

    from hicra.lab.probes import class_optimum

    rng = random.Random(0)
    rows = _rows("fam", ["c1", "c2"], {"c1": {"A": 1.0, "B": 0.0}, "c2": {"A": 0.0, "B": 1.0}}, 4, rng, 20,
                 own_choice=lambda c: "A" if c == "c1" else "B")
    rep = class_optimum(rows)["fam"]
    # the own choice follows the class exactly: I(executed; class) = H(class) = ln 2, always the class's best
    assert rep["own_information"] == pytest.approx(math.log(2)) and rep["own_best"] == 1.0
    assert rep["classes"]["c2"]["own_choice"] == {"B": 1.0}
    assert rep["own_information_bias"] == pytest.approx(1 / (2 * 160))
    # one strategy everywhere is right on the problems of its class: about half (the folds are a hash's split)
    assert rep["by_class"] == 1.0 and rep["single_route"] == pytest.approx(0.5, abs=0.1) and rep["own"] == 0.0
    assert rep["gain"] == pytest.approx(1.0 - rep["single_route"])
    assert rep["entropy_by_class"] == pytest.approx(math.log(2))
    assert {c: v["best"] for c, v in rep["classes"].items()} == {"c1": "A", "c2": "B"}
    assert rep["classes"]["c1"]["accuracy"] == {"A": 1.0, "B": 0.0} and rep["n_problems"] == 40

    classes = [f"c{i}" for i in range(20)]
    flat = {c: {s: 0.5 for s in "ABCD"} for c in classes}
    gains, naive = [], []
    for seed in range(30):
        rep = class_optimum(_rows("fam", classes, flat, 2, random.Random(seed), 6))["fam"]
        gains.append(rep["gain"])
        assert rep["own_information"] == pytest.approx(0.0, abs=1e-12)  # always A: a choice blind to the class
        best_single = max(sum(v["accuracy"][s] * v["share"] for v in rep["classes"].values()) for s in "ABCD")
        naive.append(sum(v["accuracy"][v["best"]] * v["share"] for v in rep["classes"].values()) - best_single)
    assert abs(sum(gains) / len(gains)) < 0.03
    assert sum(naive) / len(naive) > 0.1
    with pytest.raises(ValueError, match="no row names a strategy"):
        class_optimum([r for r in _rows("fam", ["c1"], {"c1": {"A": 1.0}}, 2, rng, 2) if r["strategy"] is None])


def test_strategy_accuracy_scores_each_named_strategy_and_the_own_choice(monkeypatch):
    """With a stand-in policy that executes the strategy a prompt names (noise-free) and answers 0 to a plain
    prompt, every hinted row is right and followed k times out of k and every own-choice row 0; one row per
    applicable strategy and one own row per problem; `hinted=False` keeps only the own rows; k < 1 is refused."""
    import random
    from collections import Counter
    from types import SimpleNamespace

    import hicra.lab.sampling as sampling
    from hicra.lab.probes import strategy_accuracy
    from hicra.lab.sft import HINT
    from hicra.lab.tasks import TaskMix
    from hicra.lab.tasks.base import CorpusKnobs

    mix = TaskMix([{"family": "series"}, {"family": "product"}])
    problems = mix.heldout(6)
    by_question = {p.question: p for p in problems}
    clean = CorpusKnobs(execution_noise=0.0, planning_noise=0.0)
    texts: list[str] = []

    class Tok:
        eos_token_id, pad_token_id = 0, 0

        def __call__(self, text):
            texts.append(text)
            return {"input_ids": [len(texts) - 1]}

        def decode(self, ids, skip_special_tokens=True):
            return texts[ids[0]]

    def fake_sample(model, prompts, max_new_tokens, eos_id, pad_id, generator=None, temperature=1.0, **kw):
        out = []
        for (i,) in prompts:
            question, _, strategy = texts[i].rstrip("\n").partition(HINT)
            p = by_question[question]
            texts.append(mix.solve(p, random.Random(0), clean, strategy) if strategy else "so the answer is 0")
            out.append([len(texts) - 1])
        return SimpleNamespace(response_lists=lambda: out)

    monkeypatch.setattr(sampling, "sample", fake_sample)
    model = SimpleNamespace(eval=lambda: None)
    rows = strategy_accuracy(model, Tok(), mix, problems, k=3, temperature=0.7, max_new_tokens=64)
    want = Counter((p.id, s) for p in problems for s in (*mix.family_of(p).applicable(p), None))
    assert Counter((r["problem_id"], r["strategy"]) for r in rows) == want
    for r in rows:
        assert r["k"] == 3 and r["decision_class"] == mix.family_of(mix.problem(r["problem_id"])).decision_class(
            mix.problem(r["problem_id"]))
        assert (r["n_correct"], r["n_followed"]) == ((3, 3) if r["strategy"] else (0, 0))
        assert r["executed"] == ({r["strategy"]: 3} if r["strategy"] else {"unparsed": 3})
    with pytest.raises(ValueError, match="k must be"):
        strategy_accuracy(model, Tok(), mix, problems, k=0, temperature=0.7, max_new_tokens=64)
    own_only = strategy_accuracy(model, Tok(), mix, problems, k=2, temperature=0.7, max_new_tokens=64, hinted=False)
    assert [(r["problem_id"], r["strategy"]) for r in own_only] == [(p.id, None) for p in problems]
    with pytest.raises(ValueError, match="both False"):
        strategy_accuracy(model, Tok(), mix, problems, k=1, temperature=0.7, max_new_tokens=64, own=False,
                          hinted=False)


def test_strategy_entropy_change_weighs_families_by_problems_and_pairs_the_ends():
    """`hicra.lab.probes`' held-out strategy entropy: "+"-joined labels count 1/parts; H|fam weighs each family
    by its share of the problems, so two families each always on its own label give H = ln 2 and H|fam = 0, and
    half of one family's responses unparsed at one end moves H but not H|fam; a planted rise within families reads
    `rise` with both intervals above 0, its mirror `fall`, equal ends `-` with a zero change; the bootstrap pairs
    the ends (its interval is far narrower than with independent draws). The pooled entropy matches scipy's."""
    from scipy.stats import entropy

    from hicra.lab import probes

    rows = [{"problem_id": "p1", "strategy": None, "executed": {"a+b": 2, "a": 1, "unparsed": 1}},
            {"problem_id": "p1", "strategy": "a", "executed": {"a": 4}},
            {"problem_id": "p2", "strategy": None, "executed": {"c": 3}}]
    names, counts, unparsed = probes.strategy_label_counts(rows, ["p2", "p1"])
    assert names == ["a", "b", "c"]
    assert counts.tolist() == [[0, 0, 3], [2, 1, 0]] and unparsed.tolist() == [0, 1]
    with pytest.raises(ValueError, match="p3"):
        probes.strategy_label_counts(rows, ["p3"])

    family = np.array(["x"] * 40 + ["y"] * 40)
    one = np.zeros((80, 4))
    one[:40, 0] = 4
    one[40:, 2] = 4
    h, hf = probes.strategy_entropies(one, family)
    assert h[0] == pytest.approx(np.log(2)) and hf[0] == pytest.approx(0.0)
    spread = one.copy()
    spread[:40] = [2, 2, 0, 0]
    spread[40:] = [0, 0, 2, 2]
    assert probes.strategy_entropies(spread, family)[0][0] == pytest.approx(entropy(spread.sum(axis=0)))
    rise = probes.strategy_entropy_change(one, spread, family, boot=300)
    assert rise["reading"] == "rise" and rise["Hfam_change"] == pytest.approx(np.log(2))
    assert rise["Hfam_interval"][0] > 0 and rise["H_interval"][0] > 0
    assert probes.strategy_entropy_change(spread, one, family, boot=300)["reading"] == "fall"
    same = probes.strategy_entropy_change(spread, spread, family, boot=300)
    assert same["reading"] == "-" and same["Hfam_change"] == 0 and same["Hfam_interval"] == [0, 0]
    with pytest.raises(ValueError, match="shapes"):
        probes.strategy_entropy_change(one, one[:10], family)

    # unequal families (60 x, 20 y) with unequal entropies; half of y's responses unparsed before
    family = np.array(["x"] * 60 + ["y"] * 20)
    after = np.zeros((80, 5))
    after[:60, :2] = 2          # x: a, b evenly (ln 2)
    after[60:, 2:] = [2, 1, 1]  # y: c, d, e at 1/2, 1/4, 1/4
    before = after.copy()
    before[60:] /= 2
    want = 0.75 * np.log(2) + 0.25 * entropy([2, 1, 1])
    mixed = probes.strategy_entropy_change(before, after, family, boot=300)
    assert mixed["Hfam_before"] == pytest.approx(want) and mixed["Hfam_after"] == pytest.approx(want)
    assert mixed["Hfam_change"] == pytest.approx(0.0) and mixed["H_change"] > 0.01

    # the pairing: each problem keeps one label at both ends, except a few that switch
    rng = np.random.default_rng(1)
    family = np.array(["x"] * 200)
    before = np.zeros((200, 2))
    before[np.arange(200), (rng.random(200) < 0.3).astype(int)] = 4
    after = before.copy()
    after[:20] = [4, 0]
    paired = probes.strategy_entropy_change(before, after, family, boot=500)
    w0 = rng.multinomial(200, np.full(200, 1 / 200), size=500).astype(float)
    w1 = rng.multinomial(200, np.full(200, 1 / 200), size=500).astype(float)
    unpaired = np.percentile(probes.strategy_entropies(after, family, w1)[1]
                             - probes.strategy_entropies(before, family, w0)[1], [2.5, 97.5])
    lo, hi = paired["Hfam_interval"]
    assert hi - lo < 0.5 * (unpaired[1] - unpaired[0])


def test_heldout_strategy_change_aligns_labels_and_reads_complete_problems():
    """`heldout_strategy_change`: labels seen at only one end are aligned (a new strategy after RL counts), families
    come from the ids' prefixes, the unparsed shares are per response, the complete-problem change leaves out every
    problem with an unparsed response at either end, and records on different problems are refused."""
    from hicra.lab import probes

    ids = [f"series:{i}:1:3" for i in range(30)] + [f"product:{i}:7" for i in range(30)]
    before = {"k": 2, "problem_ids": ids, "labels": ["one-by-one", "split"],
              "counts": [[2, 0]] * 30 + [[0, 2]] * 30, "unparsed": [0] * 60}
    after_counts = [[1, 0, 1]] * 30 + [[0, 2, 0]] * 30
    after = {"k": 2, "problem_ids": ids, "labels": ["one-by-one", "split", "pairing"], "counts": after_counts,
             "unparsed": [0] * 60}
    r = probes.heldout_strategy_change(before, after, boot=200)
    assert r["Hfam_before"] == pytest.approx(0.0) and r["Hfam_after"] == pytest.approx(0.5 * np.log(2))
    assert r["reading"] == "rise" and r["n_problems"] == 60 and r["n_complete"] == 60
    assert r["Hfam_complete_change"] == pytest.approx(r["Hfam_change"])
    half_cut = {**after, "counts": [[0, 0, 1]] * 30 + [[0, 2, 0]] * 30, "unparsed": [1] * 30 + [0] * 30}
    r = probes.heldout_strategy_change(before, half_cut, boot=200)
    assert r["unparsed_after"] == pytest.approx(30 / 120) and r["n_complete"] == 30
    assert r["Hfam_complete_change"] == pytest.approx(0.0)  # the product problems: split at both ends
    with pytest.raises(ValueError, match="different problems"):
        probes.heldout_strategy_change(before, {**after, "problem_ids": ids[::-1]})


def test_pair_even_pairing_halves_the_count_and_needs_an_even_count():
    """Series `pair_even`: pairing writes count, n/2 pairs, the pair sum, their product; it applies to even counts
    only (odd ones: one-by-one or middle), so no series strategy is right for every count. Scripted traces of
    every applicable strategy check as correct and parse as themselves; a pairing of an odd count cannot state its
    halving line and is an execution error; pairing misapplied (the halving forgotten) is a planning error; the
    multi-part family passes the key to its series parts."""
    from hicra.lab.tasks.base import computation_lines

    fam = Series(counts=list(range(2, 13)), write_terms=True, stop_check=True, show_count=True, pair_even=True)
    plain = Series(counts=list(range(2, 13)), write_terms=True, stop_check=True, show_count=True)
    assert fam.params()["pair_even"] is True and "pair_even" not in plain.params()
    even, odd = fam.make(14, 3, 10), fam.make(14, 3, 9)
    assert fam.applicable(even) == ("one-by-one", "pairing") and fam.applicable(odd) == ("one-by-one", "middle")
    assert plain.applicable(odd) == ("one-by-one", "pairing", "middle")
    clean = CorpusKnobs(execution_noise=0.0, planning_noise=0.0)
    rng = random.Random(0)
    for p in (even, odd):
        for s in fam.applicable(p):
            text = fam.solve(p, rng, clean, s)
            r = fam.check(p, text)
            assert r.correct and r.strategy == s, (p.id, s, text)
    pairing = fam.solve(even, rng, clean, "pairing")
    lines = [(x, op, y, z) for x, op, y, z in computation_lines(pairing)]
    assert lines[-3:] == [(10, "/", 2, 5), (14, "+", 41, 55), (5, "*", 55, 275)] and even.answer == 275
    # the old pairing (multiply, then halve the product) still parses as pairing, and still checks
    assert fam.check(even, plain.solve(even, rng, clean, "pairing")).strategy == "pairing"
    # an odd count has no integer half: the line is wrong whatever integer it states
    r = fam.check(odd, "pair them\n14+38=52\n9/2=4\n4*52=208\nso the answer is 208")
    assert not r.correct and r.error_type == "execution"
    with pytest.raises(ValueError, match="even count"):
        fam.plan(odd, "pairing")
    r = fam.check(even, fam.render(fam.plan(even, "pairing", misapply=True), rng, clean))
    assert not r.correct and r.error_type == "planning" and r.strategy == "pairing"
    # over the universe pairing and middle each miss half the counts (one-by-one applies everywhere but grows
    # with the count past RL's response budget), and the cheapest strategy depends on the count
    universe = list(fam.universe())
    assert all(any(s not in fam.applicable(p) for p in universe) for s in ("pairing", "middle"))
    assert not all(any(s not in plain.applicable(p) for p in universe) for s in ("pairing", "middle"))
    assert {fam.optimal_label(p) for p in universe} == {"one-by-one", "pairing", "middle"}
    multi = MultiPart(series={"pair_even": 1, "counts": [9]})
    assert multi.parts["series"].pair_even and "middle" in multi.parts["series"].applicable(fam.make(1, 1, 9))


def test_pair_even_single_route_variant_is_still_single_route():
    """The controls' negative cell on the default preset's series (`pair_even`): the single-route variant keeps its
    even counts, so pairing still applies to, and is cheapest on, every problem; the diverse variant's cheapest
    strategy still depends on the problem."""
    from hicra.lab.presets import SERIES_PAIR_EVEN

    single = Series(optimum="single-route", **SERIES_PAIR_EVEN)
    assert single.counts == (10, 12)
    assert {single.cheapest(p) for p in single.universe()} == {"pairing"}
    diverse = Series(**SERIES_PAIR_EVEN)
    assert {diverse.cheapest(p) for p in diverse.universe()} == {"one-by-one", "pairing", "middle"}


def test_rewarded_lines_benchmark_counts_wrong_and_malformed_lines(tmp_path, capsys, benchmark_script):
    """benchmarks/rewarded_lines.py reads a run's rollouts: the rewarded ones with a wrong line, with a malformed line
    (what the checker let through before session 54), and with no parsed strategy, per family."""
    from hicra.dynamics.records import RolloutWriter

    mod = benchmark_script("rewarded_lines")
    texts = [("series:1", "add\n16-5=11=11\nso the answer is 11", 1.0, None),
             ("series:1", "add\n1+2=3\nso the answer is 3", 1.0, "one-by-one"),
             ("product:2", "x\n2*3=7\nso the answer is 7", 1.0, "direct"),
             ("product:2", "x\n2*3=6\nso the answer is 6", 0.0, "direct")]
    RolloutWriter(tmp_path / "run").write_step(0, [
        {"prompt_id": pid, "sample_idx": i, "response": t, "token_ids": [1, 2], "reward": r, "correct": r > 0,
         "strategy": st} for i, (pid, t, r, st) in enumerate(texts)])
    assert mod.main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert ("all 1 runs: rewarded 3, rewarded, malformed line 1, rewarded, strategy null, series 1, "
            "rewarded, wrong line 1, rollouts 4") in out
    assert "  malformed: '16-5=11=11'" in out
    assert mod.main([str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("rewarded_lines: error: ")
