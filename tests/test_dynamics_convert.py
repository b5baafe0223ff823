"""`hicra convert responses` on other trainers' logs (issue 13): field maps, {step} templates, transcript markers,
score thresholds, grouping by prompt text, verl's rollout dump, and the real run in ../shared/data/realruns read
from its original files."""

from __future__ import annotations

import hashlib
import json

import pytest

from hicra.cli import main
from hicra.dynamics.convert import prompt_key
from hicra.dynamics.records import read_rollouts
from hicra.errors import InputError

REALRUN = "realruns/qwen2.5-1.5b-grpo-openr1math"


def _rows(run):
    info = json.loads((run / "run.json").read_text())
    names = info["config"]["steps"]
    return [{**r, "name": names[str(r["step"])]} for r in read_rollouts(run).to_pylist()], info


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_real_run_from_its_original_files(shared_data, tmp_path):
    """19 checkpoint files: correctness under '<step>_correct', the response after the 'assistant' line of a chat
    transcript, no prompt id. The result equals the flattened responses.jsonl shipped beside them."""
    out = tmp_path / "run"
    assert main(["convert", "responses", str(shared_data / REALRUN / "original"), "--out", str(out),
                 "--response-field", "output", "--response-after", "assistant", "--correct-field", "{step}_correct",
                 "--prompt-field", "problem", "--step-field", "step", "--quiet"]) == 0
    rows, info = _rows(out)
    flat = {(d["step"], d["prompt_id"]): d
            for d in map(json.loads, (shared_data / REALRUN / "responses.jsonl").read_text().splitlines())}
    assert len(rows) == len(flat) == 1900
    assert list(info["config"]["steps"].values()) == [str(s) for s in range(50, 1000, 50)]
    for r in rows:
        want = flat[(int(r["name"]), r["prompt_id"])]  # prompt ids: sha1 of the problem text, as in the flat file
        assert r["response"] == want["response"] and r["correct"] == want["correct"]
        assert r["prompt"] == want["problem"] and r["sample_idx"] == 0
    assert sum(r["correct"] for r in rows) == sum(d["correct"] for d in flat.values())


def test_step_template_marker_threshold_and_grouping(tmp_path):
    rows = []
    for step in (10, 20):
        for q in ("q1", "q2"):
            for k in range(2):
                rows.append({"step": step, "question": q, f"{step}_score": float(k), "log":
                             f"system\nbe brief\nuser\n{q}\nassistant\nanswer {k} for {q}; wait, check"})
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "run"
    assert main(["convert", "responses", str(src), "--out", str(out), "--response-field", "log",
                 "--response-after", "assistant", "--score-field", "{step}_score", "--reward-threshold", "0.5",
                 "--prompt-field", "question", "--step-field", "step", "--quiet"]) == 0
    got, info = _rows(out)
    assert info["config"]["steps"] == {"0": "10", "1": "20"}
    assert [r["response"] for r in got[:2]] == ["answer 0 for q1; wait, check", "answer 1 for q1; wait, check"]
    assert [r["correct"] for r in got] == [False, True] * 4
    assert [r["reward"] for r in got] == [0.0, 1.0] * 4
    # grouped by prompt text: two samples per prompt, the same id at both steps
    assert [(r["prompt_id"], r["sample_idx"]) for r in got[:4]] == [
        (prompt_key("q1"), 0), (prompt_key("q1"), 1), (prompt_key("q2"), 0), (prompt_key("q2"), 1)]
    assert prompt_key("q1") == hashlib.sha1(b"q1").hexdigest()[:12]
    assert {r["prompt_id"] for r in got if r["name"] == "20"} == {prompt_key("q1"), prompt_key("q2")}


@pytest.mark.parametrize("row, extra, message", [
    ({"step": 1, "out": "x", "correct": True}, ["--response-after", "assistant"],
     "field 'out': no line 'assistant' to split the transcript on"),
    ({"step": 1, "out": "x", "score": None}, ["--score-field", "score", "--reward-threshold", "1"],
     "field 'score': score must be a finite number, got None"),
    ({"step": 1, "out": "x"}, ["--correct-field", "{step}_ok"], "field '1_ok': missing"),
    ({"out": "x", "ok": True}, ["--correct-field", "{step}_ok"], "field 'step': the field name '{step}_ok' needs"),
    ({"step": 1, "out": 3, "correct": True}, [], "field 'out': response must be a string or a list of chat"),
    ({"step": "NaN", "out": "x", "correct": True}, [], "field 'step': a step must be a finite number or a string, got 'NaN'"),
    ({"step": " -inf", "out": "x", "correct": True}, [], "field 'step': a step must be a finite number"),
    # a named score field: every row holds a finite float32 number there (before: a missing, text or null score
    # became a 1/0 reward silently; 1e300 failed at write time naming the output file; 10**400 was a traceback)
    ({"step": 1, "out": "x", "correct": True}, ["--score-field", "s"], "field 's': missing"),
    ({"step": 1, "out": "x", "correct": True, "s": "0.2"}, ["--score-field", "s"],
     "field 's': score must be a finite number, got '0.2'"),
    ({"step": 1, "out": "x", "correct": True, "s": None}, ["--score-field", "s"], "score must be a finite number"),
    ({"step": 1, "out": "x", "correct": True, "s": 1e300}, ["--score-field", "s"],
     "field 's': score 1e+300 is beyond a float32 reward's range"),
    ({"step": 1, "out": "x", "s": 10**400}, ["--score-field", "s", "--reward-threshold", "0.5"],
     "field 's': score must be a finite number, got 1000000000"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, capsys, row, extra, message):
    src = _write_jsonl(tmp_path / "in.jsonl", [row])
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--response-field", "out",
                 "--step-field", "step", "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hicra convert: error: {src}:1, ") and message in err, err
    assert not (tmp_path / "o").exists()


def test_a_step_beyond_any_float_is_a_name_not_a_traceback(tmp_path, capsys):
    code, _, config = _steps_of(tmp_path, capsys, [1, 10**400])
    assert code == 0 and config["steps"]["0"] == "1" and config["steps"]["1"] == str(10**400)


def test_missing_input_is_named(tmp_path, capsys):
    assert main(["convert", "responses", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["convert", "responses", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no .jsonl or .parquet files" in capsys.readouterr().err


def test_verl_rollout_dump_preset(tmp_path):
    """Files written by verl's own dump writer (RayPPOTrainer._write_generations: `{step}.jsonl` in
    trainer.rollout_data_dir) with the reward function's extra `acc`."""
    pytest.importorskip("verl")
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    dump = tmp_path / "rollout_data"
    prompts = ["system\nYou are a helpful assistant.\nuser\nWhat is 2+3?\nassistant\n",
               "system\nYou are a helpful assistant.\nuser\nWhat is 4*5?\nassistant\n"]
    for step in (1, 2, 10):
        inputs = [p for p in prompts for _ in range(3)]  # 3 rollouts per prompt, as verl repeats them
        outputs = [f"Let me check: step {step}, sample {i}. \\boxed{{{i}}}" for i in range(6)]
        acc = [i % 3 == 0 for i in range(6)]
        scores = [1.0 if a else -1.0 for a in acc]
        RayPPOTrainer._write_generations(inputs, outputs, [None] * 6, scores,
                                         {"acc": acc, "pred": [str(i) for i in range(6)]}, str(dump), step)
    assert sorted(p.name for p in dump.iterdir()) == ["1.jsonl", "10.jsonl", "2.jsonl"]
    out = tmp_path / "run"
    assert main(["convert", "responses", str(dump), "--preset", "verl", "--out", str(out), "--quiet"]) == 0
    rows, info = _rows(out)
    assert info["config"]["steps"] == {"0": "1", "1": "2", "2": "10"}
    assert len(rows) == 18
    assert [r["correct"] for r in rows[:6]] == [True, False, False, True, False, False]
    assert [r["reward"] for r in rows[:6]] == [1.0, -1.0, -1.0, 1.0, -1.0, -1.0]
    assert [r["sample_idx"] for r in rows[:6]] == [0, 1, 2, 0, 1, 2]
    assert [r["prompt_id"] for r in rows[:6]] == [prompt_key(prompts[0])] * 3 + [prompt_key(prompts[1])] * 3
    assert rows[0]["response"] == "Let me check: step 1, sample 0. \\boxed{0}"
    # without `acc` (a reward function with no extras): threshold the score instead
    out2 = tmp_path / "run2"
    assert main(["convert", "responses", str(dump), "--preset", "verl", "--reward-threshold", "0", "--out",
                 str(out2), "--quiet"]) == 0
    assert [r["correct"] for r in _rows(out2)[0]] == [r["correct"] for r in rows]


def test_real_run_analysis_gives_the_documented_result(shared_data, tmp_path):
    """docs/dynamics.md and the README state this run's verdict and figures (`hicra convert responses
    .../responses.jsonl --step-field step`, then `hicra analyze`): pinned here so a change of the tests shows there."""
    import pandas as pd

    run, out = tmp_path / "run", tmp_path / "analysis"
    assert main(["convert", "responses", str(shared_data / REALRUN / "responses.jsonl"), "--out", str(run),
                 "--step-field", "step", "--quiet"]) == 0
    assert main(["analyze", str(run), "--out", str(out), "--quiet", "--no-report"]) == 0
    phases = json.loads((out / "summary.json").read_text())["phases"]
    assert (phases["verdict"], phases["order"]) == ("inconclusive", "untestable")
    ex = phases["exploration"]
    assert ex["tested"] and not ex["detected"] and ex["measure"] == "planning-phrases"
    assert ex["slope"] == pytest.approx(-0.0014, abs=5e-5)
    # two-way: the delete-one-problem jackknife plus checkpoint-wide variance, none beyond problem sampling here
    # (since session 29; the centred bootstrap read [-0.0057, +0.0028], p 0.75, the percentile interval before it
    # [-0.0052, +0.0034], p 0.66)
    # [-0.0061, +0.0032] before session 55, when "we can" was also tagged inside "we can't"
    assert ex["interval"] == pytest.approx([-0.0061, 0.00325], abs=5e-5) and ex["p_value"] == pytest.approx(0.73, abs=0.01)
    side = phases["evidence"]["exploration"]
    assert side["problems"] == {"paired": True, "shared": 100, "left_out": 0, "all": 100}
    # accuracy and length on the exploration test's own unit (problems): accuracy rises, barely (p 0.014); the
    # step-based interval, kept beside it, holds 0
    acc = side["accuracy"]
    assert acc["slope"] == pytest.approx(0.0035, abs=5e-5) and acc["interval_method"].startswith("jackknife over problems")
    assert acc["interval"] == pytest.approx([0.0004, 0.0066], abs=5e-5) and acc["p_value"] == pytest.approx(0.014, abs=0.003)
    lo, hi = acc["interval_over_steps"]
    assert lo < 0 < hi
    assert "checkpoint-wide" in acc["interval_method"]
    # responses lengthen; the checkpoint-wide variance widens the length interval ([+3.3, +6.5] by the jackknife)
    assert side["mean_length"]["interval"] == pytest.approx([1.43, 8.31], abs=0.01)
    m = pd.read_parquet(out / "metrics.parquet")
    assert 0.052 <= m.planning_ratio.min() and m.planning_ratio.max() <= 0.064


def _steps_of(tmp_path, capsys, values, field="step", extra=()):
    rows = [{"prompt": "q", "response": f"r{i}", "correct": True, field: v} for i, v in enumerate(values)]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "run"
    code = main(["convert", "responses", str(src), "--out", str(out), "--quiet", *extra])
    captured = capsys.readouterr()
    if code != 0:
        return code, captured.err.strip(), None
    return code, captured.out, json.loads((out / "run.json").read_text())["config"]


@pytest.mark.parametrize("values, want, rule", [
    ([100.0, 50.0, 1000.0], ["50.0", "100.0", "1000.0"], "numeric"),  # floats: by value (was: first appearance)
    (["100", 20, "3.5"], ["3.5", "20", "100"], "numeric"),
    (["ckpt-100", "ckpt-50", "ckpt-1000"], ["ckpt-50", "ckpt-100", "ckpt-1000"], "numbers in the names"),
    (["run2/step_100", "run2/step_9"], ["run2/step_9", "run2/step_100"], "numbers in the names"),
    (["sft", "rl-100", "rl-50"], ["sft", "rl-100", "rl-50"], "first appearance"),  # no common numbering
])
def test_steps_are_ordered_by_value_or_by_the_numbers_in_their_names(tmp_path, capsys, values, want, rule):
    code, out, config = _steps_of(tmp_path, capsys, values, extra=["--step-field", "step"])
    assert code == 0
    assert list(config["steps"].values()) == want and config["step_order"] == rule
    assert list(config["steps"]) == [str(i) for i in range(len(want))]
    # the rule and the meaning of a step (a checkpoint index, evenly spaced) are printed
    stated = {"numeric": "steps ordered by value", "numbers in the names": "by the numbers in their names",
              "first appearance": "in order of first appearance in the input"}[rule]
    assert stated in out and "treats the checkpoints as evenly spaced" in out


@pytest.mark.parametrize("values, message", [
    ([100, 100.0], "step values '100' and '100.0' are the same number ('100' at {src}:1)"),
    ([1, "1.0"], "step values '1' and '1.0' are the same number ('1' at {src}:1)"),
    (["ckpt-5", "ckpt-05"], "step names 'ckpt-5' and 'ckpt-05' carry the same numbers ('ckpt-5' at {src}:1)"),
])
def test_ambiguous_step_names_are_an_error(tmp_path, capsys, values, message):
    """The error names the file, the row where the second name first appears and the step field, and the row of
    the first name (before: only the field)."""
    code, err, _ = _steps_of(tmp_path, capsys, values, extra=["--step-field", "step"])
    src = tmp_path / "in.jsonl"
    assert code == 2 and err == f"hicra convert: error: {src}:2, field 'step': {message.format(src=src)}: the order " \
        "of the checkpoints would be ambiguous"


def test_ambiguous_model_names_of_nested_rows_name_file_row_and_key(tmp_path, capsys):
    """Nested rows: a step is the key of a model's object, so that key is the field named."""
    rows = [{"question": "q1", "ckpt-5": {"solution": "a", "is_correct": True}},
            {"question": "q2", "ckpt-5": {"solution": "b", "is_correct": False}},
            {"question": "q3", "ckpt-05": {"solution": "c", "is_correct": True}}]
    src = _write_jsonl(tmp_path / "nested.jsonl", rows)
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hicra convert: error: {src}:3, field 'ckpt-05': step names 'ckpt-5' and 'ckpt-05' carry the same numbers "
        f"('ckpt-5' at {src}:1): the order of the checkpoints would be ambiguous")


def test_a_row_without_any_response_field_names_the_fields_looked_for(tmp_path, capsys):
    """Before: the message named the file and row but no field."""
    rows = [{"prompt": "q", "response": "a", "correct": True}, {"prompt": "q", "answer": "b", "correct": True}]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hicra convert: error: {src}:2, fields 'response', 'solution' or 'completion': none found, and no "
        "per-model object holding one of them and a correct or is_correct label (--response-field names another "
        "field)")


def test_parquet_rows_are_counted_from_1_and_say_so(tmp_path, capsys):
    """A Parquet file has no lines: its rows are named 'row N (1-based)', the form `hicra analyze` uses for a row of
    a rollout file (before: convert counted from 1 and analyze from 0, both written FILE:N)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "response": "a", "correct": True, "step": 1},
                                         {"prompt": "q", "response": "b", "correct": None, "step": 1},
                                         {"prompt": "q", "response": "c", "correct": True, "step": 1.0}]), src)
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hicra convert: error: {src}, row 2 (1-based), field 'correct': correctness must be true/false, got None")
    # the duplicate-step error names both rows in the same form
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "response": "a", "correct": True, "step": "1"},
                                         {"prompt": "q", "response": "c", "correct": True, "step": "1.0"}]), src)
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--step-field", "step",
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hicra convert: error: {src}, row 2 (1-based), field 'step': step values '1' and '1.0' are the same number "
        f"('1' at {src}, row 1 (1-based)): the order of the checkpoints would be ambiguous")


def test_a_row_without_the_named_step_field_is_an_error(tmp_path, capsys):
    """Before: such a row went silently into a made-up step "responses"."""
    rows = [{"prompt": "q", "response": "a", "correct": True, "step": 10},
            {"prompt": "q", "response": "b", "correct": True}]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--step-field", "step",
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hicra convert: error: {src}:2, field 'step': missing: every row needs its step (checkpoint) when a step "
        "field is named")
    # the default field ("model"): all rows or none
    rows = [{"prompt": "q", "response": "a", "correct": True},
            {"prompt": "q", "response": "b", "correct": True, "model": "m1"}]
    src = _write_jsonl(tmp_path / "in2.jsonl", rows)
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hicra convert: error: {src}:1, field 'model': missing, while other rows have it ({src}:2): every row "
        "needs its step, or none (one step)")
    code, _, config = _steps_of(tmp_path, capsys, [None, None], field="other")
    assert code == 0 and config["steps"] == {"0": "responses"} and config["step_order"] == "one step"


@pytest.mark.parametrize("field", ["model", "step", "checkpoint"])
def test_the_step_field_is_found_without_naming_it(tmp_path, capsys, field):
    """Before session 55 only "model" was looked for: a log whose rows hold `step` (the shared real run) became one
    step of 19 x 100 responses unless --step-field was given, with nothing said."""
    code, _, config = _steps_of(tmp_path, capsys, [100, 50], field=field)
    assert code == 0 and config["steps"] == {"0": "50", "1": "100"}
    # rows that put their step in different fields are named, not merged
    rows = [{"prompt": "q", "response": "a", "correct": True, "step": 1},
            {"prompt": "q", "response": "b", "correct": True, "checkpoint": 2}]
    src = _write_jsonl(tmp_path / "mixed.jsonl", rows)
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o3"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hicra convert: error: {src}:2, field 'checkpoint': this row's step is in field 'checkpoint', earlier rows' "
        f"in 'step' ({src}:1): name one with --step-field")


@pytest.mark.parametrize("value", [-5, 0])
def test_limit_must_be_positive(tmp_path, capsys, value):
    src = _write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "response": "a", "correct": True}])
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--limit", str(value)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hicra convert: error: field '--limit': must be a positive whole number of rows, got {value}")
    assert not (tmp_path / "o").exists()


def test_analysis_of_a_converted_run_keeps_each_checkpoints_source_step(tmp_path, capsys):
    """Steps of a converted run are checkpoint indices; metrics.csv keeps the original value beside each, and the
    analysis says the checkpoints are read as evenly spaced."""
    import pandas as pd

    rows = [{"prompt": f"q{i}", "response": "First, let me check. So the answer is 4.", "correct": i % 2 == 0,
             "step": v} for v in (1000, 50, 100) for i in range(3)]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    run, out = tmp_path / "run", tmp_path / "analysis"
    assert main(["convert", "responses", str(src), "--out", str(run), "--step-field", "step", "--quiet"]) == 0
    assert main(["analyze", str(run), "--out", str(out), "--quiet", "--no-report", "--n-boot", "99"]) == 0
    printed = capsys.readouterr().out
    assert "treated as evenly spaced and every slope is per checkpoint" in printed
    assert " per step " not in printed  # the exploration line's slope is "per checkpoint" when it is tested
    m = pd.read_csv(out / "metrics.csv")
    assert list(m.columns[:2]) == ["step", "source_step"]
    assert m["step"].tolist() == [0, 1, 2] and m["source_step"].tolist() == [50, 100, 1000]
    # names edited by hand into numbers and lists are kept as text (before: the Parquet write failed, a traceback)
    info = json.loads((run / "run.json").read_text())
    info["config"]["steps"] = {"0": 50, "1": "ckpt", "2": [1, 2]}
    (run / "run.json").write_text(json.dumps(info))
    assert main(["analyze", str(run), "--out", str(tmp_path / "a2"), "--quiet", "--no-report", "--n-boot", "99"]) == 0
    assert pd.read_parquet(tmp_path / "a2" / "metrics.parquet")["source_step"].tolist() == ["50", "ckpt", "[1, 2]"]


def test_a_format_phrase_learned_during_training_is_excluded(tmp_path):
    """A review's case: three strategy phrases with fixed per-problem preferences, and from checkpoint 5 of 19 on
    every response also ends "therefore ..." (a format learned under training). The phrase is in 74% of the run's
    responses, under the 90% rule pooled over the run, and its arrival read as a rise of diversity (p 1e-92); it is
    in every response of the later steps, so it is a format phrase and the measure excludes it: no rise."""
    import random

    gen = random.Random(0)
    phrases = ["alternatively", "another approach", "check if"]
    rows = []
    for s in range(19):
        for p in range(40):
            prefs = random.Random(p)
            weights = [prefs.random() for _ in phrases]
            body = " ".join(f"{c} we compute {p} plus {s} equals value"
                            for c in gen.choices(phrases, weights=weights, k=4))
            if s >= 5:
                body += " therefore the final value is 7"
            rows.append({"prompt": f"problem {p}", "response": body, "correct": gen.random() < 0.3, "step": s * 50})
    src = _write_jsonl(tmp_path / "fmt.jsonl", rows)
    run, out = tmp_path / "run", tmp_path / "an"
    assert main(["convert", "responses", str(src), "--out", str(run), "--step-field", "step", "--quiet"]) == 0
    assert main(["analyze", str(run), "--out", str(out), "--quiet", "--no-report"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "therefore" in summary["format_phrases"]
    ex = summary["phases"]["exploration"]
    assert ex["tested"] and not ex["detected"], ex


def test_strategy_field_gives_foreign_logs_the_strategy_measure(tmp_path, capsys):
    """--strategy-field carries a log's strategy labels into the rollouts' `strategy` column, so `hicra analyze`
    tests exploration on them (measure "strategy"): here one label until checkpoint 6, then up to four, a rise."""
    import random

    gen = random.Random(1)
    rows = []
    for s in range(16):
        k = 1 + min(3, max(0, s - 6) // 2)
        for p in range(30):
            lab = gen.choice(["pair", "middle", "one-by-one", "split"][:k])
            rows.append({"prompt": f"q{p}", "response": "we try it", "correct": True, "step": s,
                         "how": lab if p % 10 else [lab, "check"]})
    src = _write_jsonl(tmp_path / "s.jsonl", rows)
    run, out = tmp_path / "run", tmp_path / "an"
    assert main(["convert", "responses", str(src), "--out", str(run), "--step-field", "step", "--strategy-field",
                 "how", "--quiet"]) == 0
    got = read_rollouts(run).to_pylist()
    assert got[0]["strategy"] == "pair+check" and got[1]["strategy"] == "pair"
    assert main(["analyze", str(run), "--out", str(out), "--quiet", "--no-report"]) == 0
    ex = json.loads((out / "summary.json").read_text())["phases"]["exploration"]
    assert ex["measure"] == "strategy" and ex["tested"] and ex["detected"], ex
    # a value that is no label: one line naming file, row and field, exit code 2
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "response": "r", "correct": True, "step": 0,
                                                 "how": 3}])
    assert main(["convert", "responses", str(bad), "--out", str(tmp_path / "o"), "--step-field", "step",
                 "--strategy-field", "how", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hicra convert: error: {bad}:1, field 'how': a strategy must be a string"), err
    missing = _write_jsonl(tmp_path / "m.jsonl", [{"prompt": "q", "response": "r", "correct": True, "step": 0}])
    assert main(["convert", "responses", str(missing), "--out", str(tmp_path / "o2"), "--step-field", "step",
                 "--strategy-field", "how", "--quiet"]) == 2
    assert "field 'how': missing" in capsys.readouterr().err


def test_a_strategic_phrase_universal_early_is_kept_and_its_spread_detected(tmp_path):
    """A sixth review's case, the other side of the format rule: until checkpoint 8 every response is built on
    "alternatively" (one strategy), then responses spread over ten strategic phrases: the paper's rise. A rule that
    excluded any phrase universal at some step removed "alternatively" and hid the rise; the phrase does not stay
    universal to the end, so it is kept, while "so" (in every response at every step) is excluded."""
    import random

    gen = random.Random(0)
    pool = ["alternatively", "another approach", "let me verify", "break it down", "a simpler approach is",
            "based on the given", "but wait", "analyze the", "are looking for", "and then find"]
    rows = []
    for s in range(19):
        for p in range(40):
            phrases = ["alternatively"] * 3 + [gen.choice(pool[1:])] if s < 8 else gen.sample(pool, 4)
            resp = " . ".join(f"{ph} we add the numbers and get the value" for ph in phrases) + " . so the answer is 3"
            rows.append({"prompt": f"problem {p}", "response": resp, "correct": p % 3 == 0, "step": s})
    src = _write_jsonl(tmp_path / "c.jsonl", rows)
    run, out = tmp_path / "run", tmp_path / "an"
    assert main(["convert", "responses", str(src), "--out", str(run), "--step-field", "step", "--quiet"]) == 0
    assert main(["analyze", str(run), "--out", str(out), "--quiet", "--no-report"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "alternatively" not in summary["format_phrases"] and "so" in summary["format_phrases"]
    ex = summary["phases"]["exploration"]
    assert ex["tested"] and ex["detected"], ex


def test_a_null_id_falls_back_to_the_prompt_text(tmp_path, capsys):
    """Before: every row with "id": null went into one prompt group "None"."""
    rows = [{"id": None, "prompt": f"What is {p}+{p}?", "response": "2", "correct": s == 0}
            for p in range(3) for s in range(2)]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    ids = read_rollouts(tmp_path / "o").column("prompt_id").to_pylist()
    assert len(set(ids)) == 3 and ids[0] == prompt_key("What is 0+0?")
    # an id field named on the command line must hold an id
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o2"), "--id-field", "id",
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"hicra convert: error: {src}:1, field 'id': null prompt id"


def test_a_damaged_parquet_data_page_is_a_one_line_error(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 3000
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"prompt": [f"q{i}" for i in range(n)], "response": [f"First, r {i} " * 5 for i in
                                                                                 range(n)],
                             "correct": [i % 2 == 0 for i in range(n)]}), src, compression="snappy",
                   row_group_size=500)
    data = bytearray(src.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 3000):
        data[i] ^= 0x5A
    src.write_bytes(bytes(data))
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"hicra convert: error: {src}: unreadable Parquet data after row")
    assert not (tmp_path / "o" / "rollouts").exists() or not any((tmp_path / "o" / "rollouts").iterdir())


def test_foreign_error_labels_are_read_or_named_at_their_input_line(tmp_path, capsys):
    """Another writer's labels: any case, and "", "none" or "correct" for no error, are read; an unknown one is named
    at its input line (it made the whole convert fail at the output file, a reviewer's regression)."""
    rows = [{"prompt": "q", "response": "a", "correct": False, "error_type": "Execution"},
            {"prompt": "q", "response": "b", "correct": True, "error_type": "correct"},
            {"prompt": "q", "response": "c", "correct": True, "error_type": ""}]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert read_rollouts(tmp_path / "o").column("error_type").to_pylist() == ["execution", None, None]
    src = _write_jsonl(tmp_path / "bad.jsonl", [*rows, {"prompt": "q", "response": "d", "correct": False,
                                                        "error_type": "arithmetic"}])
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hicra convert: error: {src}:4, field 'error_type': error type 'arithmetic' is none of")


def test_a_folder_is_read_whole_and_what_is_not_read_is_said(tmp_path, capsys):
    """Before: `.JSONL` files, other files and subfolders were dropped with nothing said (a reviewer's repro)."""
    folder = tmp_path / "logs"
    (folder / "sub").mkdir(parents=True)
    _write_jsonl(folder / "a.JSONL", [{"prompt": "q", "response": "a", "correct": True, "step": 1}])
    _write_jsonl(folder / "b.jsonl", [{"prompt": "q", "response": "b", "correct": True, "step": 2}])
    (folder / "notes.txt").write_text("x")
    _write_jsonl(folder / "sub" / "c.jsonl", [{"prompt": "q", "response": "c", "correct": True, "step": 3}])
    assert main(["convert", "responses", str(folder), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"not read (2: not .jsonl or .parquet files): {folder / 'notes.txt'}, {folder / 'sub'}" in out
    config = json.loads((tmp_path / "o" / "run.json").read_text())["config"]
    assert config["steps"] == {"0": "1", "1": "2"}


def _trl_log(folder, rows_by_step):
    """Files in the shape TRL 1.16's GRPOTrainer.log writes them (OUTPUT_DIR/completions/completions_{step:05d}
    .parquet: step, prompt, completion, one column per reward function, advantage)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    for step, rows in rows_by_step.items():
        pd.DataFrame([{"step": step, **r, "advantage": 0.0} for r in rows]).to_parquet(
            folder / f"completions_{step:05d}.parquet")
    return folder


def test_trl_chat_completions_keep_the_models_reasoning_and_calls_not_tool_output(tmp_path):
    """A chat template's response schema moves the <think> text into `reasoning_content`; a tool's reply is a
    `tool` message. The response is what the model wrote: reasoning, content, tool calls; not the tool's output.
    Before, the reasoning was dropped (its planning phrases with it) and tool outputs were joined in."""
    user = [{"role": "user", "content": "What is 3 + 3?"}]
    completions = [
        [{"role": "assistant", "content": "The answer is 6.", "reasoning_content": "Let me check again: 3 + 3.",
          "tool_calls": None}],
        [{"role": "assistant", "content": "", "reasoning_content": None,
          "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 3, "b": 3}}}]},
         {"role": "tool", "content": "TOOL-SAYS-6", "name": "add"},
         {"role": "assistant", "content": "So the answer is 6.", "reasoning_content": None}],
    ]
    log = _trl_log(tmp_path / "completions", {1: [{"prompt": user, "completion": c, "accuracy_reward": 1.0}
                                                   for c in completions]})
    assert main(["convert", "responses", str(log), "--preset", "trl", "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    rows, _ = _rows(tmp_path / "run")
    assert rows[0]["response"] == "Let me check again: 3 + 3.\nThe answer is 6."
    assert rows[1]["response"] == '{"name": "add", "arguments": {"a": 3, "b": 3}}\nSo the answer is 6.'
    assert rows[0]["prompt"] == "user\nWhat is 3 + 3?"
    assert any(rows[0]["planning_mask"])  # "let me check" is a planning phrase of the paper lexicon


def test_trl_rows_no_reward_function_scored_are_left_out_and_counted(tmp_path, capsys):
    """TRL logs NaN where every reward function returned None (e.g. accuracy_reward on an unparsable gold): no
    verdict, so no row; the command says how many (before: one such row stopped the whole conversion)."""
    log = _trl_log(tmp_path / "completions", {1: [{"prompt": f"q{i}", "completion": f"a{i}",
                                                   "accuracy_reward": [1.0, 0.0, float("nan")][i % 3]}
                                                  for i in range(6)]})
    assert main(["convert", "responses", str(log), "--preset", "trl", "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "left out 2 row(s) whose score is NaN in TRL's log (the reward function returned None)" in printed
    rows, info = _rows(tmp_path / "run")
    assert [r["response"] for r in rows] == ["a0", "a1", "a3", "a4"] and info["config"]["unscored_rows"] == 2


def test_preset_thresholds_and_missing_fields_say_what_to_pass(tmp_path, capsys):
    """--score-field with the trl preset keeps no threshold silently (its 1.0 is accuracy_reward's: a cosine-scaled
    reward of 0.8 had read as wrong); a missing reward column lists the numeric ones; verl's v1 dumps (no acc) and
    partial-credit acc values say to threshold the score."""
    log = _trl_log(tmp_path / "completions", {1: [{"prompt": "q", "completion": "a", "cosine_scaled_reward": 0.8}]})
    assert main(["convert", "responses", str(log), "--preset", "trl", "--score-field", "cosine_scaled_reward",
                 "--out", str(tmp_path / "r1")]) == 2
    assert "the trl preset's reward threshold (1) is accuracy_reward's; with another score field give one" in \
        capsys.readouterr().err
    assert main(["convert", "responses", str(log), "--preset", "trl", "--out", str(tmp_path / "r2")]) == 2
    assert ("field 'accuracy_reward': missing; the row's numeric fields: step, cosine_scaled_reward, advantage"
            in capsys.readouterr().err)
    assert main(["convert", "responses", str(log), "--preset", "trl", "--score-field", "cosine_scaled_reward",
                 "--reward-threshold", "0.5", "--out", str(tmp_path / "r3"), "--quiet"]) == 0
    assert _rows(tmp_path / "r3")[0][0]["correct"] is True
    dump = tmp_path / "verl"
    dump.mkdir()
    (dump / "1.jsonl").write_text(json.dumps({"input": "q", "output": "a", "score": 1.0, "step": 1,
                                              "uid": "u_0_0"}) + "\n")
    assert main(["convert", "responses", str(dump), "--preset", "verl", "--out", str(tmp_path / "r4")]) == 2
    assert "verl's v1 trainer, its default, dumps no acc: threshold the score" in capsys.readouterr().err
    (dump / "1.jsonl").write_text(json.dumps({"input": "q", "output": "a", "score": 0.1, "step": 1, "acc": 0.1})
                                  + "\n")
    assert main(["convert", "responses", str(dump), "--preset", "verl", "--out", str(tmp_path / "r5")]) == 2
    assert "got 0.1: a score, not a label" in capsys.readouterr().err


def test_steps_with_another_group_size_are_pointed_out(tmp_path, capsys):
    """TRL writes evaluation completions (num_generations_eval per prompt) into the log file of the step it
    evaluates at: the command points at steps whose group size differs from the others'."""
    train = [{"prompt": f"q{i // 4}", "completion": f"a{i}", "accuracy_reward": 1.0} for i in range(8)]
    evaluation = [{"prompt": f"e{i // 2}", "completion": f"b{i}", "accuracy_reward": 0.0} for i in range(8)]
    log = _trl_log(tmp_path / "completions", {1: train, 2: evaluation, 3: train[::-1]})
    assert main(["convert", "responses", str(log), "--preset", "trl", "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert ("note: the steps differ in samples per prompt (step (most common number)): 1 (4), 2 (2), 3 (4); TRL's "
            "log keeps the last completions of training and evaluation alike") in printed
    # without a preset the note names no trainer
    flat = tmp_path / "flat.jsonl"
    flat.write_text("".join(json.dumps({"prompt": f"q{i // n}", "response": "a", "correct": True, "step": step}) + "\n"
                            for step, n in ((1, 2), (2, 4)) for i in range(8)))
    assert main(["convert", "responses", str(flat), "--out", str(tmp_path / "flat")]) == 0
    printed = capsys.readouterr().out
    assert "note: the steps differ in samples per prompt (step (most common number)): 1 (2), 2 (4)\n" in printed


def test_completion_messages_of_any_model_role_are_kept(tmp_path):
    """Only a tool's or environment's replies are left out of a completion: a message without a role (Parquet
    writes a missing key as null), or with role "model" or "Assistant", is the model's text (the review of this
    change found such responses written empty)."""
    user = [{"role": "user", "content": "q"}]
    completions = [[{"role": None, "content": "A."}], [{"role": "model", "content": "B."}],
                   [{"role": "Assistant", "content": "C."}],
                   [{"role": "assistant", "content": "D."}, {"role": "tool", "content": "T"}]]
    log = _trl_log(tmp_path / "completions", {1: [{"prompt": user, "completion": c, "accuracy_reward": 1.0}
                                                   for c in completions]})
    assert main(["convert", "responses", str(log), "--preset", "trl", "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    assert [r["response"] for r in _rows(tmp_path / "run")[0]] == ["A.", "B.", "C.", "D."]


def test_a_named_correct_field_replaces_the_presets_thresholded_score(tmp_path):
    log = _trl_log(tmp_path / "completions", {1: [{"prompt": "q", "completion": "a", "accuracy_reward": 0.0,
                                                   "is_right": True}]})
    assert main(["convert", "responses", str(log), "--preset", "trl", "--correct-field", "is_right", "--out",
                 str(tmp_path / "run"), "--quiet"]) == 0
    row = _rows(tmp_path / "run")[0][0]
    assert row["correct"] is True and row["reward"] == 0.0  # the reward column is still the score


def test_an_unfinished_last_line_is_left_out_and_said(tmp_path, capsys):
    rows = [{"step": s, "question": f"q{i}", "response": f"answer {i}", "correct": i % 2 == 0}
            for s in (1, 2) for i in range(3)]
    (tmp_path / "in").mkdir()
    first = _write_jsonl(tmp_path / "in" / "a.jsonl", rows[:3])
    last = tmp_path / "in" / "b.jsonl"
    last.write_text("".join(json.dumps(r) + "\n" for r in rows[3:]) + json.dumps(rows[0])[:25])  # being written
    out = tmp_path / "run"
    assert main(["convert", "responses", str(tmp_path / "in"), "--out", str(out), "--step-field", "step",
                 "--prompt-field", "question"]) == 0
    assert f"left out {last}:4: an unfinished last line" in capsys.readouterr().out
    got, info = _rows(out)
    assert len(got) == 6 and info["config"]["unfinished_last_line"] == f"{last}:4"
    # a bad line that has its end, or an unfinished one in a file before the last, is still an error
    for path, text in ((last, last.read_text() + "\n"), (first, first.read_text() + '{"step": 1')):
        saved = path.read_text()
        path.write_text(text)
        assert main(["convert", "responses", str(tmp_path / "in"), "--out", str(tmp_path / "run2"),
                     "--step-field", "step", "--quiet"]) == 2
        assert "bad JSON" in capsys.readouterr().err
        path.write_text(saved)


def test_a_log_is_converted_through_the_spool_in_parts_with_the_same_result(tmp_path, monkeypatch):
    import hicra.dynamics.convert as convert

    # three steps interleaved row by row, two samples of some prompts, one step repeating another
    rows = [{"step": s, "question": f"q{i % 3}", "response": f"answer {i} {s == 30}; wait, check",
             "correct": (i + (s == 30)) % 2 == 0} for i in range(7) for s in (10, 20, 30)]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    results = {}
    for label, (per_step, held) in {"whole": (1024, 8192), "parts": (2, 3)}.items():
        monkeypatch.setattr(convert, "SPOOL_ROWS", per_step)
        monkeypatch.setattr(convert, "SPOOL_HELD", held)
        out = tmp_path / label
        result = convert.convert_responses([src], out, step_field="step", prompt_field="question")
        files = sorted(p.name for p in (out / "rollouts").iterdir())
        results[label] = (result, files, read_rollouts(out).to_pylist())
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the spool is gone
    assert results["whole"] == results["parts"]
    result, files, table = results["parts"]
    assert files == [f"step_00000{i}_part000.parquet" for i in range(3)]  # one file a step, as before
    assert result["repeated"] == {"20": "10"} and result["group_sizes"] == {"10": 2, "20": 2, "30": 2}
    assert [(r["prompt_id"], r["sample_idx"]) for r in table if r["step"] == 0][:4] == [
        (table[0]["prompt_id"], 0), (table[1]["prompt_id"], 0), (table[2]["prompt_id"], 0),
        (table[0]["prompt_id"], 1)]


def test_a_conversion_that_fails_after_writing_parts_leaves_nothing(tmp_path, monkeypatch):
    import hicra.dynamics.convert as convert

    monkeypatch.setattr(convert, "SPOOL_ROWS", 2)
    rows = [{"step": 1, "question": f"q{i}", "response": f"answer {i}", "correct": True} for i in range(6)]
    src = _write_jsonl(tmp_path / "in.jsonl", [*rows, {"step": 1, "question": "q", "response": "x", "correct": 0.5}])
    with pytest.raises(InputError, match="a score, not a label"):
        convert.convert_responses([src], tmp_path / "out", step_field="step")
    assert not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(InputError):
        convert.convert_responses([src], tmp_path / "mine", step_field="step")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_the_progress_total_counts_rows_of_both_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hicra.dynamics.convert import _count_rows

    (tmp_path / "a.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n   \n{"x": 3}')
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "b.parquet")
    assert _count_rows([tmp_path / "a.jsonl", tmp_path / "b.parquet"]) == 5
    assert _count_rows([tmp_path / "missing.jsonl"]) is None


def test_an_unfinished_last_line_cut_inside_a_character_is_left_out(tmp_path, capsys):
    rows = [{"step": 1, "question": f"q{i}", "response": f"x \u2208 [0, {i}]", "correct": True} for i in range(3)]
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    cut = json.dumps(rows[0], ensure_ascii=False).encode()
    src = tmp_path / "in.jsonl"
    src.write_bytes(data + cut[:cut.index("\u2208".encode()) + 1])  # the first byte of a three-byte character
    assert main(["convert", "responses", str(src), "--out", str(tmp_path / "run"), "--step-field", "step"]) == 0
    assert f"left out {src}:4: an unfinished last line" in capsys.readouterr().out


def test_a_complete_last_line_that_is_not_utf8_is_an_error_and_failures_leave_no_folders(tmp_path, capsys):
    row = {"step": 1, "question": "q", "response": "answer", "correct": True}
    src = tmp_path / "in.jsonl"
    latin = json.dumps({**row, "response": "sch\u00f6n"}, ensure_ascii=False).encode("latin-1")
    src.write_bytes((json.dumps(row) + "\n").encode() + latin)
    out = tmp_path / "new" / "a" / "b"
    assert main(["convert", "responses", str(src), "--out", str(out), "--step-field", "step", "--quiet"]) == 2
    assert "not UTF-8" in capsys.readouterr().err  # a Latin-1 line is bad input, not a line still being written
    assert not (tmp_path / "new").exists()  # every folder the failed conversion made is gone
