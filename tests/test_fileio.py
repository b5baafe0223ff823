"""Reading user files (hicra.fileio.read_*): every failure is one InputError naming file and line; every verb that
reads a file turns it into the one-line error and exit 2."""

import pytest

from hicra.cli import main
from hicra.errors import InputError
from hicra.fileio import read_json, read_jsonl, read_text, read_yaml


def test_read_jsonl_skips_blank_lines_and_counts_them(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"a": 2}\n')
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, {"a": 2})]
    path.write_text('[1, 2]\n"x"\n')
    assert list(read_jsonl(path, objects=False)) == [(1, [1, 2]), (2, "x")]


@pytest.mark.parametrize("data, message", [
    (b'{"a": 1}\n{"a": \n', "x.jsonl:2: bad JSON: Expecting value (column 7)"),
    (b'{"a": 1}\n[1]\n', "x.jsonl:2: each line must be a JSON object"),
    (b'{"a": 1}\n{"a": "caf\xe9"}\n', "x.jsonl:2: not UTF-8 (byte 0xe9 at column 11)"),
])
def test_read_jsonl_errors_name_file_and_line(tmp_path, data, message):
    path = tmp_path / "x.jsonl"
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        list(read_jsonl(path))
    assert str(info.value) == f"{tmp_path}/{message}"
    assert (info.value.path, info.value.row) == (str(path), 2)


def test_read_json_reads_one_document_and_names_file_line_and_column(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"a": [1,\n  2]}\n')
    assert read_json(path) == {"a": [1, 2]}
    path.write_text('{"a": 1,\n  "b": }\n')
    with pytest.raises(InputError) as info:
        read_json(path)
    assert str(info.value) == f"{path}:2: bad JSON: Expecting value (column 8)"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"x.json: not a JSON object"):
        read_json(path)
    assert read_json(path, objects=False) == [1, 2]
    path.write_bytes(b'{"a": "caf\xe9"}')
    with pytest.raises(InputError, match="not UTF-8"):
        read_json(path)
    with pytest.raises(InputError, match=r"none.json: cannot read eval.json: No such file"):
        read_json(tmp_path / "none.json", "eval.json")


def _readers():
    """Every reader of a whole JSON file the project writes or takes (run.json, eval.json, summaries, study.json,
    a model's config.json): (file name, how to call the reader on the folder holding it)."""
    from hicra.dynamics.analyze import read_phases
    from hicra.dynamics.records import read_run_info
    from hicra.mechanistic.run import check_snapshot
    from hicra.study import PRESETS
    from hicra.study.runner import check_study_dir
    from hicra.study.statistics import load_summary

    return [
        ("run.json", read_run_info),
        ("summary.json", read_phases),
        ("s.json", lambda d: load_summary(d / "s.json")),
        ("study.json", lambda d: check_study_dir(d, PRESETS["smoke"])),
        ("config.json", lambda d: check_snapshot(d, d, {})),
    ]


@pytest.mark.parametrize("index", range(5))
def test_json_readers_share_read_jsons_errors(tmp_path, index):
    """One reader for a whole JSON document: each of these says 'bad JSON' with the line and column, and 'not a
    JSON object', the same words as `read_json` (before, each had its own wording and some no line)."""
    name, reader = _readers()[index]
    path = tmp_path / name
    for text, message in (('{"a": 1,\n  "b": }\n', ":2: bad JSON: Expecting value (column 8)"),
                          ("[1, 2]", ": not a JSON object")):
        path.write_text(text)
        with pytest.raises(InputError) as info:
            reader(tmp_path)
        assert str(info.value) == f"{path}{message}"


@pytest.mark.parametrize("weight_map", ['{}', '{"weight_map": [1]}', '{"weight_map": {"w": ["a"]}}'])
def test_snapshot_index_without_a_usable_weight_map_is_one_line(tmp_path, weight_map):
    """A sharded index whose weight_map is missing, not a mapping, or maps to unhashable file names."""
    from hicra.mechanistic.run import check_snapshot

    (tmp_path / "config.json").write_text("{}")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(weight_map)
    with pytest.raises(InputError) as info:
        check_snapshot(tmp_path, tmp_path, {})
    assert str(info.value) == f"{index}: no weight_map"


def test_read_text_and_yaml_errors(tmp_path):
    missing = tmp_path / "none.yaml"
    with pytest.raises(InputError, match=r"none.yaml: cannot read config: No such file"):
        read_text(missing, "config")
    bad = tmp_path / "b.yaml"
    bad.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(InputError) as info:
        read_text(bad)
    assert str(info.value) == f"{bad}:2: not UTF-8 (byte 0xe9 at column 7)"
    bad.write_text("a: 1\nb: [\n")
    with pytest.raises(InputError) as info:
        read_yaml(bad)
    assert info.value.row == 3 and "\n" not in str(info.value) and "bad YAML" in str(info.value)
    bad.write_text("a: 1\nb: [2, 3]\n")
    assert read_yaml(bad) == {"a": 1, "b": [2, 3]}


def _run_dir_with_bad_run_json(tmp_path):
    run = tmp_path / "run"
    (run / "rollouts").mkdir(parents=True)
    (run / "run.json").write_bytes(b'{"run_id": "caf\xe9"}')
    return [str(run)], run / "run.json"


@pytest.mark.parametrize("verb", ["eval", "convert", "grams tag", "grams mine", "analyze", "train config",
                                  "train data"])
def test_verbs_reject_non_utf8_input_with_one_line(tmp_path, capsys, verb):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": 1, "problem": "caf\xe9", "answer": "1", "responses": ["1"], "correct": true}\n')
    argv = {
        "eval": ["eval", "--responses", str(bad), "--out", str(tmp_path / "o")],
        "convert": ["convert", "responses", str(bad), "--out", str(tmp_path / "o")],
        "grams tag": ["grams", "tag", "--file", str(bad), "--text-field", "problem"],
        "grams mine": ["grams", "mine", str(bad), "--text-field", "problem", "--out", str(tmp_path / "l.json")],
    }.get(verb)
    where = f"{bad}:1"
    if verb == "analyze":
        argv, run_json = _run_dir_with_bad_run_json(tmp_path)
        argv, where = ["analyze", *argv, "--out", str(tmp_path / "o")], f"{run_json}:1"
    elif verb == "train config":
        config = tmp_path / "c.yaml"
        config.write_bytes(b"model: lab:1m\n# caf\xe9\n")
        argv, where = ["train", "--config", str(config)], f"{config}:2"
    elif verb == "train data":
        config = tmp_path / "c.yaml"
        config.write_text(f"model: lab:1m\ndata: {{path: {bad}}}\n")
        argv = ["train", "--config", str(config)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]  # a progress bar may come before it
    assert "Traceback" not in err and err.endswith(")\n")
    assert last.startswith(f"hicra {argv[0]}: error: {where}: not UTF-8 (byte 0xe9 at column "), err
    assert list(tmp_path.glob("o*")) == [] and not (tmp_path / "l.json").exists()


def test_load_tokenizer_errors_are_one_line(tmp_path):
    from hicra.fileio import load_tokenizer

    with pytest.raises(InputError, match=r"none, field 'tokenizer': tokenizer directory not found$"):
        load_tokenizer(tmp_path / "none")
    with pytest.raises(InputError) as info:
        load_tokenizer(tmp_path, field="model")
    assert info.value.field == "model" and "cannot load tokenizer" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("verb", ["eval model", "eval tokenizer", "grams tag", "train"])
def test_verbs_reject_a_directory_that_is_no_tokenizer(tmp_path, capsys, verb):
    empty = tmp_path / "empty"
    empty.mkdir()
    bench = tmp_path / "b.jsonl"
    bench.write_text('{"id": 1, "problem": "1+1", "answer": "2", "responses": ["\\\\boxed{2}"]}\n')
    out = tmp_path / "o"
    argv, field = {
        "eval model": (["eval", "--model", str(empty), "--bench", str(bench), "--out", str(out)], "model"),
        "eval tokenizer": (["eval", "--responses", str(bench), "--tokenizer", str(empty), "--out", str(out)],
                           "tokenizer"),
        "grams tag": (["grams", "tag", "--tokenizer", str(empty), "let me"], "tokenizer"),
        "train": (["train", "--config", str(tmp_path / "c.yaml")], "model"),
    }[verb]
    (tmp_path / "c.yaml").write_text(f"model: {empty}\ndata: {{path: {bench}}}\n"
                                     f"args: {{output_dir: {out}, use_cpu: true, bf16: false}}\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"hicra {argv[0]}: error: {empty}, field '{field}': cannot load tokenizer")
    assert not out.exists()


@pytest.fixture(scope="module")
def tokenizer_only_dir(tmp_path_factory):
    """A directory holding a tokenizer but no model weights."""
    from hicra.lab.model import train_tokenizer

    path = tmp_path_factory.mktemp("tok_only")
    train_tokenizer(["reach 24 using 3 8", "so the answer is 24"] * 20, vocab_size=300).save_pretrained(path)
    return path


def test_load_causal_lm_errors_are_one_line(tmp_path, tokenizer_only_dir):
    from hicra.fileio import load_causal_lm

    with pytest.raises(InputError, match="model directory not found") as missing:
        load_causal_lm(tmp_path / "nope")
    assert "field 'model'" in str(missing.value)
    with pytest.raises(InputError, match="cannot load model") as bad:
        load_causal_lm(tokenizer_only_dir)
    assert "\n" not in str(bad.value) and str(tokenizer_only_dir) in str(bad.value)


def test_load_causal_lm_loads_a_saved_model(tmp_path, tokenizer_only_dir):
    from hicra.fileio import load_causal_lm, load_tokenizer
    from hicra.lab.model import build_model

    tok = load_tokenizer(tokenizer_only_dir)
    saved = build_model(tok, size="1m", seed=0)
    saved.save_pretrained(tmp_path / "m")
    loaded = load_causal_lm(tmp_path / "m")
    assert loaded.config.vocab_size == saved.config.vocab_size
    got = loaded.state_dict()
    assert set(got) == set(saved.state_dict())
    for name, a in saved.state_dict().items():
        assert a.shape == got[name].shape and bool((a == got[name]).all()), name


def test_eval_with_a_directory_without_model_is_exit_2(tmp_path, tokenizer_only_dir, capsys, shared_data):
    code = main(["eval", "--model", str(tokenizer_only_dir), "--bench", "gsm8k", "--limit", "1",
                 "--data-dir", str(shared_data), "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "cannot load model" in err[0]
    assert not (tmp_path / "ev" / "results.json").exists()


def test_a_yaml_key_given_twice_is_named(tmp_path):
    """yaml.safe_load keeps the last of two `args:` blocks and drops the first without a word."""
    path = tmp_path / "c.yaml"
    path.write_text("args:\n  output_dir: a\nmodel: m\nargs:\n  alpha: 0.2\n")
    with pytest.raises(InputError) as exc:
        read_yaml(path)
    assert str(exc.value) == f"{path}:4: bad YAML: key 'args' given twice (first on line 1)"
    path.write_text("a: {x: 1, y: 2}\nb: [1, 1]\n")
    assert read_yaml(path) == {"a": {"x": 1, "y": 2}, "b": [1, 1]}
    # a merge key's keys may be overridden, as in any YAML loader
    path.write_text("defaults: &d\n  use_cpu: true\n  bf16: false\nargs:\n  <<: *d\n  bf16: true\n")
    assert read_yaml(path)["args"] == {"use_cpu": True, "bf16": True}
    path.write_text("a: 1\n? [1, 2]\n: 3\n")  # an unhashable key: the loader's own one-line error
    with pytest.raises(InputError, match="c.yaml:2: bad YAML: found unhashable key"):
        read_yaml(path)


def test_read_jsonl_names_a_lone_surrogate(tmp_path):
    r"""`"\ud800"` is valid JSON but no Unicode text (it crashed the writers); a pair such as an emoji is fine."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"a": "ok \\ud83d\\ude00"}\n{"x": {"y": ["fine", "bad \\ud800"]}}\n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": "ok \U0001f600"})
    with pytest.raises(InputError) as exc:
        next(rows)
    assert str(exc.value) == f"{path}:2, field 'x.y.1': not Unicode text: a lone surrogate U+D800 at character 5"


def test_a_json_key_given_twice_is_refused(tmp_path):
    """json.loads keeps the last of two values silently (a reviewer's repros: `"correct": true, "correct": false`
    converted as false; a lexicon's second `phrases` list replaced the first); read_yaml already refused them."""
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"correct": true, "response": "r", "correct": false}\n')
    with pytest.raises(InputError) as info:
        list(read_jsonl(path))
    assert str(info.value) == f"{path}:2: a key given twice in one object (JSON would keep the last silently): " \
        "'correct'"
    lex = tmp_path / "lex.json"
    lex.write_text('{\n "phrases": ["let me"],\n "meta": {"k": 1, "k": 2}\n}')
    with pytest.raises(InputError, match="a key given twice in one object .*'k'"):
        read_json(lex)
    lex.write_text('{"phrases": ["let me"], "meta": [{"k": 1}, {"k": 2}]}')  # one key in two objects is fine
    assert read_json(lex)["meta"] == [{"k": 1}, {"k": 2}]
