"""hicra.evaluation: benchmark field maps, math-verify grading of gold solutions, pass@k, the `hicra eval` verb."""

from __future__ import annotations

import json
import math

import pytest
from reference import brute_pass_at_k

from hicra import evaluation as ev
from hicra.cli import main
from hicra.errors import InputError

# Benchmarks whose worked solutions mark their final answer (\boxed{} or "#### N"): machine-checkable.
MARKED = ["math500", "aime24", "minerva_math", "gsm8k"]


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (6, 1, 4), (8, 3, 8), (7, 0, 3)])
def test_pass_at_k_equals_enumeration(n, c, k):
    assert math.isclose(ev.pass_at_k(n, c, k), brute_pass_at_k(n, c, k), rel_tol=1e-12)


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError):
        ev.pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        ev.pass_at_k(3, 1, 4)


@pytest.mark.parametrize("name", MARKED)
def test_gold_solutions_graded_correct(shared_data, name):
    """Each benchmark's own worked solution is graded correct against its gold answer (>= 98%)."""
    items = ev.load_benchmark(name, shared_data)
    grader = ev.Grader()
    misses = [(it["id"], it["answer"]) for it in items if not grader(it["solution"], it["answer"])]
    assert len(items) > 0
    assert 1 - len(misses) / len(items) >= 0.98, misses[:10]


@pytest.mark.parametrize("name", MARKED)
def test_wrong_gold_solutions_graded_wrong(shared_data, name):
    """The grader is not trivially permissive: a solution judged against the NEXT problem's answer mostly fails."""
    items = ev.load_benchmark(name, shared_data, limit=60)
    grader = ev.Grader()
    pairs = [(a["solution"], b["answer"]) for a, b in zip(items[:-1], items[1:], strict=True) if a["answer"] != b["answer"]]
    accepted = sum(grader(sol, ans) for sol, ans in pairs)
    assert accepted / len(pairs) <= 0.05


@pytest.mark.parametrize("name", ["amc23", "olympiadbench"])
def test_gold_answers_without_marked_solutions_round_trip(shared_data, name):
    """amc23 has no solutions and OlympiadBench's are unmarked proofs: check every gold answer parses and is
    accepted when written as a boxed final answer, and rejected when perturbed (answer + 1 for numbers)."""
    items = ev.load_benchmark(name, shared_data)
    grader = ev.Grader()
    ok = sum(grader(f"The final answer is $\\boxed{{{it['answer']}}}$.", it["answer"]) for it in items)
    assert ok / len(items) >= 0.98
    numeric = [it for it in items if it["answer"].lstrip("-").isdigit()][:40]
    assert numeric
    assert not any(grader(f"\\boxed{{{int(it['answer']) + 1}}}", it["answer"]) for it in numeric)


def test_field_maps(shared_data):
    minerva = ev.load_benchmark("minerva_math", shared_data, limit=1)[0]
    assert (minerva["id"], minerva["answer"]) == ("0", "1.6")
    gsm = ev.load_benchmark("gsm8k", shared_data, limit=1)[0]
    assert (gsm["id"], gsm["answer"]) == ("0", "18")
    amc = ev.load_benchmark("amc23", shared_data, limit=1)[0]
    assert (amc["answer"], amc["solution"]) == ("27", None)
    oly = ev.load_benchmark("olympiadbench", shared_data, limit=1)[0]
    assert (oly["id"], oly["answer"]) == ("1606", "2")
    assert [it["id"] for it in ev.load_benchmark("math500", shared_data, limit=2)] == \
        [json.loads(line)["unique_id"] for line in
         (shared_data / "bench/math500/test.jsonl").read_text().splitlines()[:2]]


def test_normalize_response():
    assert ev.normalize_response("2*3=<<2*3=6>>6 apples\n#### 1,206") == "2*3=6 apples\n\\boxed{1206}"
    assert ev.extract_boxed("a \\boxed{\\frac{1}{2}} then \\boxed{x^{2}}") == "x^{2}"
    assert ev.extract_boxed("no box") is None


def test_eval_responses_cli(tmp_path):
    lines = [
        {"qid": "a", "q": "1+1?", "gold": "2", "outs": ["so \\boxed{2}", "it is 3", "\\boxed{2}"]},
        {"qid": "b", "q": "half?", "gold": "\\frac12", "outs": ["$0.5$", "\\boxed{1/3}", "no idea"]},
        {"qid": 7, "q": "x", "gold": 4.0, "outs": ["\\boxed{4}", "\\boxed{4.0}", "\\boxed{5}"]},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    rc = main(["eval", "--responses", str(src), "--out", str(out), "--k", "2", "--id-field", "qid",
               "--problem-field", "q", "--answer-field", "gold", "--responses-field", "outs"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    expected = [[True, False, True], [True, False, False], [True, True, False]]
    assert [it["id"] for it in res["items"]] == ["a", "b", "7"]
    assert [it["correct"] for it in res["items"]] == expected
    assert math.isclose(res["pass@1"], sum(sum(c) / 3 for c in expected) / 3)
    assert math.isclose(res["pass@k"], sum(brute_pass_at_k(3, sum(c), 2) for c in expected) / 3)
    # rollout rows in the run-directory schema, read back by the records reader
    from hicra.dynamics.records import iter_steps

    steps = list(iter_steps(out))
    assert [s for s, _ in steps] == [0]
    table = steps[0][1]
    assert table.num_rows == 9
    assert table.column("correct").to_pylist() == [c for row in expected for c in row]
    assert table.column("prompt_id").to_pylist()[:3] == ["responses/a"] * 3


def test_null_gold_answer_is_graded_wrong_not_compared_with_none(tmp_path):
    """An item without a gold answer grades every response wrong (not equal to the text "None"); a responses file
    row with a null gold is refused since session 55, as benchmark files refuse it."""
    items = [{"id": "a", "problem": "", "answer": None, "responses": ["None", "\\boxed{None}"]}]
    assert ev.grade_items(items, k=1, progress=False)["items"][0]["correct"] == [False, False]
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "answer": None, "responses": ["None", "\\boxed{None}"]}) + "\n")
    with pytest.raises(InputError, match="field 'answer': no gold answer"):
        ev.read_responses_file(src)


@pytest.mark.parametrize("extra, message", [
    (["--responses", "{src}", "--k", "0"], "field 'k': must be >= 1"),  # 0 used to mean "default k"
    (["--responses", "{src}", "--k", "3"], "{src}:1, field 'responses': --k 3 exceeds its 2 responses (problem id 'a')"),
    (["--gold", "--bench", "{src}", "--limit", "0"], "field 'limit': must be >= 1"),
    # a JSONL without worked solutions: nothing to grade (used to write results.json, then fail on the rollouts)
    (["--gold", "--bench", "{src}"], "field 'bench': no worked solutions to grade"),
    (["--model", "{tmp}", "--bench", "{empty}"], "field 'bench': no problems to evaluate"),
])
def test_eval_bad_counts_exit_2_before_writing(tmp_path, capsys, extra, message):
    src, empty = tmp_path / "in.jsonl", tmp_path / "empty.jsonl"
    src.write_text(json.dumps({"id": "a", "problem": "1+1", "answer": "2", "responses": ["2", "3"]}) + "\n")
    empty.write_text("")
    argv = [a.format(src=src, tmp=tmp_path, empty=empty) for a in extra]
    assert main(["eval", *argv, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"hicra eval: error: {message.format(src=src)}")
    assert not (tmp_path / "o").exists()


def test_eval_responses_bad_input_exits_2(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"id": "a", "answer": "1", "responses": "not a list"}) + "\n")
    assert main(["eval", "--responses", str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hicra eval: error:") and "bad.jsonl:1" in err and "'responses'" in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_eval_gold_cli(tmp_path, shared_data):
    out = tmp_path / "gold"
    assert main(["eval", "--gold", "--bench", "math500,amc23,gsm8k", "--limit", "5", "--data-dir",
                 str(shared_data), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    # amc23 ships no solutions: nothing to grade there
    assert set(res["benchmarks"]) == {"math500", "gsm8k"}
    assert res["benchmarks"]["math500"]["n_items"] == 5 and res["pass@1"] == 1.0


def test_generation_smoke_tiny_model(tmp_path, shared_data):
    """The model path end to end on a tiny untrained model; logprobs recorded at sampling match a re-scoring."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hicra.lab.model import build_model, train_tokenizer

    texts = [it["problem"] + "\n" + it["solution"] for it in ev.load_benchmark("gsm8k", shared_data, limit=50)]
    tok = train_tokenizer(texts, vocab_size=400)
    model_dir = tmp_path / "tiny"
    tok.save_pretrained(model_dir)
    build_model(tok, size="1m").save_pretrained(model_dir)
    out = tmp_path / "eval"
    temperature = 0.7
    rc = main(["eval", "--model", str(model_dir), "--bench", "gsm8k,amc23", "--limit", "2", "--n", "2",
               "--k", "2", "--max-new-tokens", "6", "--temperature", str(temperature), "--engine",
               "transformers", "--data-dir", str(shared_data), "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["benchmarks"]) == {"gsm8k", "amc23"}
    assert [len(it["correct"]) for it in res["items"]] == [2, 2, 2, 2]
    assert res["engine"] == "transformers" and res["n"] == 2

    from hicra.dynamics.records import read_rollouts

    rows = read_rollouts(out).to_pylist()
    assert len(rows) == 8
    tok2 = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    for row in rows[:2]:
        assert 1 <= len(row["token_ids"]) <= 6 and len(row["logprobs"]) == len(row["token_ids"])
        prompt_ids = tok2(row["prompt"])["input_ids"]
        ids = torch.tensor([prompt_ids + row["token_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt_ids) - 1:-1] / temperature
        logp = torch.log_softmax(logits, -1)
        expect = logp.gather(-1, torch.tensor(row["token_ids"])[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(row["logprobs"]), expect, atol=1e-4)
        entropy = -(logp.exp() * logp).sum(-1)
        assert torch.allclose(torch.tensor(row["entropies"]), entropy, atol=1e-4)
        assert row["response"] == tok2.decode(row["token_ids"], skip_special_tokens=True)
    # the evaluation samples form a run directory that `hicra analyze` accepts; run.json names the local model's
    # tokenizer, so the planning masks are computed without --tokenizer
    assert json.loads((out / "run.json").read_text())["tokenizer"] == str(model_dir.resolve())
    assert main(["analyze", str(out), "--out", str(tmp_path / "analysis"), "--quiet", "--no-report"]) == 0
    import pandas as pd

    metrics = pd.read_parquet(tmp_path / "analysis" / "metrics.parquet")
    assert metrics["n_responses"].tolist() == [8] and "n_planning_tokens" in metrics.columns
    assert metrics["accuracy"].tolist() == [sum(r["correct"] for r in rows) / 8]


def test_custom_jsonl_bench_and_tokenizer(tmp_path, capsys):
    """--bench FILE.jsonl with a field map (gold mode), --tokenizer fills token ids of graded responses."""
    src = tmp_path / "mine.jsonl"
    rows = [{"q": "1+1?", "sol": "It is \\boxed{2}.", "key": "x1"},
            {"q": "2+2?", "sol": "We get \\boxed{4}, surely.", "key": "x2"},
            {"q": "3+3?", "sol": "Wrongly \\boxed{7}; the box below is the gold: \\boxed{6}", "key": "x3"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "g"
    assert main(["eval", "--gold", "--bench", str(src), "--problem-field", "q", "--answer-field", "sol",
                 "--solution-field", "sol", "--id-field", "key", "--answer-from", "boxed", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [it["id"] for it in res["items"]] == ["x1", "x2", "x3"]
    assert [it["answer"] for it in res["items"]] == ["2", "4", "6"]  # the LAST box is the gold answer
    assert set(res["benchmarks"]) == {"mine"}
    assert main(["eval", "--gold", "--bench", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err

    from hicra.dynamics.records import read_rollouts
    from hicra.lab.model import train_tokenizer

    tok = train_tokenizer(["so the answer is 2", "let's try again"] * 20, vocab_size=300)
    tok.save_pretrained(tmp_path / "tok")
    resp = tmp_path / "resp.jsonl"
    resp.write_text(json.dumps({"id": "a", "answer": "2", "responses": ["so the answer is \\boxed{2}", "3"]}) + "\n")
    assert main(["eval", "--responses", str(resp), "--tokenizer", str(tmp_path / "tok"),
                 "--out", str(tmp_path / "r")]) == 0
    table = read_rollouts(tmp_path / "r").to_pylist()
    assert [r["token_ids"] for r in table] == [tok("so the answer is \\boxed{2}", add_special_tokens=False)["input_ids"],
                                               tok("3", add_special_tokens=False)["input_ids"]]
    assert [r["correct"] for r in table] == [True, False] and table[0]["logprobs"] is None
    # run.json names the tokenizer, so `hicra analyze` tags planning tokens without being given it again
    assert main(["analyze", str(tmp_path / "r"), "--out", str(tmp_path / "ra"), "--quiet", "--no-report"]) == 0
    import pandas as pd

    metrics = pd.read_parquet(tmp_path / "ra" / "metrics.parquet")
    assert "n_planning_tokens" in metrics.columns and "planning masks absent" not in capsys.readouterr().out
    # --k beyond a problem's responses names the file, the problem and the field
    assert main(["eval", "--responses", str(resp), "--k", "5", "--out", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{resp}:1, field 'responses': --k 5 exceeds its 2 responses (problem id 'a')" in err and "\n" not in err


def test_default_data_dir_follows_hicra_shared_data(tmp_path, monkeypatch):
    """$HICRA_SHARED_DATA names the data root for `hicra eval` as for the tests; unset, ../shared/data is searched
    upwards from the working directory."""
    monkeypatch.setenv("HICRA_SHARED_DATA", str(tmp_path / "elsewhere"))
    assert ev.default_data_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("HICRA_SHARED_DATA")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "repo" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "sub")
    assert ev.default_data_dir() == (tmp_path / "shared" / "data").resolve()


@pytest.mark.parametrize("mode, rows, message", [
    # two rows of one id would be one prompt group in the rollouts
    ("responses", [{"id": 1, "answer": "5", "responses": ["5"]}, {"id": 1, "answer": "6", "responses": ["6"]}],
     "{src}:2, field 'id': duplicate id '1' (also at line 1)"),
    ("responses", [{"id": 1, "answer": ["5"], "responses": ["5"]}],
     "{src}:1, field 'answer': a gold answer is a string or a finite number, got list"),
    ("responses", [{"id": 1, "answer": {"v": 5}, "responses": ["5"]}],
     "{src}:1, field 'answer': a gold answer is a string or a finite number, got dict"),
    # before session 55: true and NaN were graded as the texts "True" and "nan", a dict problem kept as its str()
    ("responses", [{"id": 1, "answer": True, "responses": ["5"]}],
     "{src}:1, field 'answer': a gold answer is a string or a finite number, got bool True"),
    ("responses", [{"id": 1, "answer": float("nan"), "responses": ["5"]}],
     "{src}:1, field 'answer': a gold answer is a string or a finite number, got float nan"),
    ("responses", [{"id": 1, "answer": "5", "problem": {"a": 1}, "responses": ["5"]}],
     "{src}:1, field 'problem': a problem is text, got dict"),
    # a row without an id takes its line number - 1, which another row names explicitly
    ("gold", [{"id": "1", "problem": "p", "answer": "5", "solution": "\\boxed{5}"},
              {"problem": "q", "answer": "6", "solution": "\\boxed{6}"}],
     "{src}:2, field 'id': duplicate id '1' (also at line 1"),
    ("gold", [{"id": "1", "problem": "p", "answer": None, "solution": "\\boxed{5}"}],
     "{src}:1, field 'answer': no gold answer: the field is null"),
    ("gold", [{"id": "1", "problem": "p", "answer": [5], "solution": "\\boxed{5}"}],
     "{src}:1, field 'answer': a gold answer is a string or a number, got list [5] (a list of answers: answer_from"),
    ("boxed", [{"id": "1", "problem": "p", "solution": "no box here"}],
     "{src}:1, field 'solution': no gold answer: the field holds no \\boxed{}"),
])
def test_eval_rows_that_would_grade_or_group_wrongly_are_refused(tmp_path, capsys, mode, rows, message):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = {"responses": ["--responses", str(src)], "gold": ["--gold", "--bench", str(src), "--solution-field",
                                                              "solution"],
            "boxed": ["--gold", "--bench", str(src), "--solution-field", "solution", "--answer-field", "solution",
                      "--answer-from", "boxed"]}[mode]
    assert main(["eval", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("hicra eval: error: " + message.replace("{src}", str(src))), err
    assert not (tmp_path / "o").exists()


def test_eval_out_naming_a_file_is_refused_before_grading(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "answer": "2", "responses": ["2"]}) + "\n")
    (tmp_path / "o").write_text("keep me")
    assert main(["eval", "--responses", str(src), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"hicra eval: error: {tmp_path / 'o'}, field 'out': exists and is not " \
        "a directory"
    assert (tmp_path / "o").read_text() == "keep me"


def test_eval_out_holding_another_run_is_refused_before_grading(tmp_path, capsys):
    """Before: its step 0 was replaced, its other steps kept, and its run.json replaced, so `hicra analyze` read a
    run that was half one thing and half another (a reviewer's repro). An earlier evaluation's folder is replaced
    whole, as before (the README's commands may be run twice)."""
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "answer": "2", "responses": ["2"]}) + "\n")
    assert main(["eval", "--responses", str(src), "--out", str(tmp_path / "o")]) == 0
    assert main(["eval", "--responses", str(src), "--out", str(tmp_path / "o")]) == 0  # an evaluation again
    rows = [{"prompt": "q", "response": "2", "correct": True, "step": s} for s in (1, 2)]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["convert", "responses", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "c"), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "c").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["eval", "--responses", str(src), "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.strip() == f"hicra eval: error: {tmp_path / 'c'}, field 'out': already holds " \
        "another run's rollouts; evaluate into a new folder"
    assert {p.name: p.read_bytes() for p in (tmp_path / "c").rglob("*") if p.is_file()} == before
