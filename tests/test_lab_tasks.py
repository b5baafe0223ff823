"""Lab task checkers on hand-written traces of every outcome, and the scripted solvers' knobs."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from hicra.lab.tasks import CorpusKnobs, Countdown, Series, TaskMix
from hicra.lab.tasks.base import computation_lines, wrong_lines
from hicra.lab.tasks.countdown import chains_of, parse_expression

CD = Countdown()
P = CD.make([3, 5, 8], 9)  # (8-5)*3

COUNTDOWN_CASES = [
    # correct after a dead end and a backtrack
    ("let's try 3+5=8\n8*8=64\n64 is not 9, dead end\ngo back and try 8-5=3\n3*3=9\n9 matches the target\n"
     "so the answer is (8-5)*3", True, None, ""),
    # correct with an expression written differently from the solver's (spaces, other order)
    ("let's try 8-5=3\n3*3=9\n9 matches the target\nso the answer is 3 * (8 - 5)", True, None, ""),
    # execution: 3+5 written as 9, the trace goes on consistently with the wrong value
    ("let's try 3+5=9\n9*8=72\n72 is not 9, dead end\ni give up", False, "execution", "a computation line is wrong"),
    # execution: a wrong line makes a wrong answer look right
    ("let's try 5+3=8\n8+8=9\n9 matches the target\nso the answer is (5+3)+8", False, "execution", ""),
    # planning: dead end never abandoned (every line right, answer misses the target)
    ("let's try 3+5=8\n8*8=64\nso the answer is (3+5)*8", False, "planning", "dead end not abandoned"),
    # planning: gave up with every line right
    ("let's try 3+5=8\n8*8=64\n64 is not 9, dead end\ni give up", False, "planning", "gave up"),
    # planning: the target reached with a number used twice and one left out
    ("let's try 3*3=9\n9 matches the target\nso the answer is 3*3", False, "planning",
     "numbers not used exactly once"),
    # format: no answer line (truncated mid-line); unparseable answers
    ("let's try 3+5=8\n8*8=64\n64 is not", False, "format", "no answer line"),
    ("let's try 8-5=3\n3*3=9\nso the answer is (8-5*3", False, "format", "unparseable answer"),
    ("so the answer is nine", False, "format", "unparseable answer"),
]


@pytest.mark.parametrize(("response", "correct", "error_type", "detail"), COUNTDOWN_CASES)
def test_countdown_checker_hand_written(response, correct, error_type, detail):
    r = CD.check(P, response)
    assert r.correct is correct and r.error_type == error_type and r.reward == (1.0 if correct else 0.0)
    if detail:
        assert r.detail == detail


def test_countdown_correct_answer_is_correct_even_with_a_slip_in_an_abandoned_attempt():
    # outcome reward: a slip in an abandoned attempt does not spoil a right final answer
    r = CD.check(P, "let's try 3+5=9\n9*8=72\n72 is not 9, dead end\ngo back and try 8-5=3\n3*3=9\n"
                    "9 matches the target\nso the answer is (8-5)*3")
    assert r.correct and r.error_type is None


SR = Series()
Q = SR.make(3, 9)  # 3+4+...+9 = 42

SERIES_CASES = [
    ("use the pairing trick\n9-3=6\n6+1=7\n3+9=12\n12*7=84\n84/2=42\nso the answer is 42", True, None),
    ("let's add them one by one\n3+4=7\n7+5=12\n12+6=18\n18+7=25\n25+8=33\n33+9=42\nso the answer is 42",
     True, None),
    # planning: count off by one (the +1 forgotten), every line right
    ("use the pairing trick\n9-3=6\n3+9=12\n12*6=72\n72/2=36\nso the answer is 36", False, "planning"),
    # planning: stopped one term early
    ("let's add them one by one\n3+4=7\n7+5=12\n12+6=18\n18+7=25\n25+8=33\nso the answer is 33", False, "planning"),
    # execution: 12*7 written as 86
    ("use the pairing trick\n9-3=6\n6+1=7\n3+9=12\n12*7=86\n86/2=43\nso the answer is 43", False, "execution"),
    # execution: an odd product halved to an integer is a wrong line
    ("use the pairing trick\n9-3=6\n6+1=7\n3+9=12\n12*7=85\n85/2=42\nso the answer is 42", True, None),
    ("let's add them one by one\n3+4=7\n7+5=12\n12+6=18", False, "format"),
    ("use the pairing trick\nso the answer is 4 2", False, "format"),
]


@pytest.mark.parametrize(("response", "correct", "error_type"), SERIES_CASES)
def test_series_checker_hand_written(response, correct, error_type):
    r = SR.check(Q, response)
    assert Q.answer == sum(range(3, 10))
    assert r.correct is correct and r.error_type == error_type


def test_line_parsing_and_exact_division():
    text = "go back and try 8-5=3\n7/2=3\n9/3=3\n2*6=13"
    assert computation_lines(text) == [(8, "-", 5, 3), (7, "/", 2, 3), (9, "/", 3, 3), (2, "*", 6, 13)]
    assert wrong_lines(text) == [(7, "/", 2, 3), (2, "*", 6, 13)]


def test_parse_expression_against_python_eval():
    rng = random.Random(1)
    for _ in range(200):
        nums = [rng.randint(1, 9) for _ in range(4)]
        ops = [rng.choice("+-*") for _ in range(3)]
        text = f"({nums[0]}{ops[0]}{nums[1]}){ops[1]}{nums[2]}{ops[2]}{nums[3]}"
        value, leaves = parse_expression(text)
        assert value == eval(text) and leaves == nums  # eval is the independent reference here
    assert parse_expression("8/(4-4)") is None and parse_expression("3 +") is None


def test_chains_reach_every_sampled_target_and_stay_integral():
    rng = random.Random(2)
    for _ in range(50):
        p = CD.sample(rng)
        chains = chains_of(p.data["numbers"])
        assert any(v == p.answer for _, v in chains)
        for steps, v in chains:
            assert v >= 0 and all(x >= 0 for x, _, _ in steps)


@pytest.mark.parametrize("task", [Countdown(), Countdown(n_numbers=4, max_number=6), Series()])
def test_noiseless_good_solver_is_always_correct(task):
    rng = random.Random(3)
    knobs = CorpusKnobs(execution_noise=0.0, strategy_mix=0.5, planning_noise=0.0)
    for _ in range(200):
        p = task.sample(rng)
        r = task.check(p, task.solve(p, rng, knobs))
        assert r.correct, (p, task.solve(p, rng, knobs))


def test_knobs_produce_the_error_types_they_control():
    rng = random.Random(4)
    mix = TaskMix([{"family": "countdown"}, {"family": "series"}])

    def error_counts(knobs, n=600):
        c = Counter()
        for _ in range(n):
            p = mix.sample(rng)
            c[mix.check(p, mix.solve(p, rng, knobs)).error_type] += 1
        return c

    only_exec = error_counts(CorpusKnobs(execution_noise=0.3, strategy_mix=0.5, planning_noise=0.0))
    only_plan = error_counts(CorpusKnobs(execution_noise=0.0, strategy_mix=1.0, planning_noise=0.5))
    assert only_exec["execution"] > 100 and only_exec["planning"] == 0 and only_exec["format"] == 0
    assert only_plan["planning"] > 100 and only_plan["execution"] == 0 and only_plan["format"] == 0


def test_strategy_mix_sets_the_share_of_long_direct_sums():
    rng = random.Random(5)
    for mix, lo, hi in [(0.0, 0.0, 0.0), (0.5, 0.4, 0.6), (1.0, 1.0, 1.0)]:
        knobs = CorpusKnobs(execution_noise=0.0, strategy_mix=mix, planning_noise=0.0)
        share = sum(SR.solve(SR.sample(rng), rng, knobs).startswith("let's add") for _ in range(400)) / 400
        assert lo <= share <= hi


def test_bad_knobs_rejected():
    with pytest.raises(ValueError):
        CorpusKnobs(execution_noise=1.5)
    with pytest.raises(ValueError):
        TaskMix([{"family": "nope"}])
