"""Run directory I/O: schema, atomic writer, streaming validating reader."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hicra.dynamics.records import (
    ROLLOUT_SCHEMA,
    RolloutWriter,
    iter_steps,
    read_rollouts,
    read_run_info,
    rollout_path,
    write_run_info,
)
from hicra.errors import InputError


def make_rows(step: int, n_prompts: int = 2, group: int = 3, seed: int = 0, with_mask: bool = True):
    rng = np.random.default_rng(seed + step)
    rows = []
    for p in range(n_prompts):
        for s in range(group):
            t = int(rng.integers(1, 9))
            row = {
                "prompt_id": f"p{p}", "sample_idx": s, "prompt": f"question {p}",
                "response": " ".join(f"w{i}" for i in range(t)),
                "token_ids": rng.integers(0, 50, t).astype(np.int32),
                "logprobs": -rng.random(t).astype(np.float32),
                "entropies": rng.random(t).astype(np.float32),
                "reward": float(s % 2), "correct": bool(s % 2), "truncated": False,
                "error_type": None if s % 2 else "execution",
            }
            if with_mask:
                row["planning_mask"] = rng.random(t) < 0.3
            rows.append(row)
    return rows


def test_roundtrip_and_order(tmp_path):
    write_run_info(tmp_path, {"algorithm": "grpo", "seed": 3})
    info = read_run_info(tmp_path)
    assert info["algorithm"] == "grpo" and info["seed"] == 3 and info["run_id"] == tmp_path.name
    w = RolloutWriter(tmp_path)
    written = {}
    for step in (2, 0, 1):
        rows = make_rows(step)
        written[step] = rows
        path = w.write_step(step, rows)
        assert path == rollout_path(tmp_path, step, 0) and path.exists()
    # a second part of step 1, without planning masks
    extra = make_rows(1, n_prompts=1, seed=9, with_mask=False)
    w.write_step(1, extra, part=1)
    steps = list(iter_steps(tmp_path))
    assert [s for s, _ in steps] == [0, 1, 2]
    _, t1 = steps[1]
    assert t1.schema == ROLLOUT_SCHEMA
    assert t1.num_rows == len(written[1]) + len(extra)
    got = t1.column("token_ids").to_pylist()
    want = [list(map(int, r["token_ids"])) for r in written[1] + extra]
    assert got == want
    assert t1.column("planning_mask").to_pylist()[-1] is None  # part 1 had no masks
    np.testing.assert_allclose(t1.column("logprobs").to_pylist()[0], written[1][0]["logprobs"], rtol=1e-6)
    assert t1.column("step").to_pylist() == [1] * t1.num_rows


def test_writer_is_atomic_and_reader_skips_temp_files(tmp_path):
    w = RolloutWriter(tmp_path)
    w.write_step(0, make_rows(0))
    # simulate a writer in the middle of writing step 1: only a temp file exists
    tmp = tmp_path / "rollouts" / ".step_000001_part000.parquet.abc.tmp"
    tmp.write_bytes(b"PAR1 half written")
    assert [s for s, _ in iter_steps(tmp_path)] == [0]
    # no temp files are left behind by the writer itself
    leftovers = [p.name for p in (tmp_path / "rollouts").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [tmp.name]


def test_foreign_step_files_without_part_are_part_zero(tmp_path):
    """rollouts/step_0.parquet, step_1.parquet, step_2.parquet (another writer's names) are steps 0, 1, 2."""
    w = RolloutWriter(tmp_path)
    for step in range(3):
        w.write_step(step, make_rows(step)).rename(tmp_path / "rollouts" / f"step_{step}.parquet")
    steps = list(iter_steps(tmp_path))
    assert [s for s, _ in steps] == [0, 1, 2]
    assert all(t.num_rows == 6 for _, t in steps)
    # a second part of step 1 in the project's own naming joins the foreign part 0
    w.write_step(1, make_rows(1, n_prompts=1), part=1)
    assert read_rollouts(tmp_path).num_rows == 6 * 3 + 3


@pytest.mark.parametrize("name", ["notes.txt", "step_3.json", "rollout_4.parquet", "step_x_part000.parquet"])
def test_other_files_in_rollouts_are_named_in_an_error(tmp_path, name):
    RolloutWriter(tmp_path).write_step(0, make_rows(0))
    (tmp_path / "rollouts" / name).write_bytes(b"x")
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        list(iter_steps(tmp_path))


def test_run_being_written_reads_up_to_last_complete_file(tmp_path):
    w = RolloutWriter(tmp_path)
    w.write_step(0, make_rows(0))
    w.write_step(1, make_rows(1))
    # a foreign, non-atomic writer left a truncated final file
    good = rollout_path(tmp_path, 1, 0).read_bytes()
    rollout_path(tmp_path, 2, 0).write_bytes(good[: len(good) // 2])
    skipped = []
    assert [s for s, _ in iter_steps(tmp_path, skipped=skipped)] == [0, 1]
    assert "incomplete" in skipped[0].message
    # the same truncated file before the last one is an error
    w.write_step(3, make_rows(3))
    with pytest.raises(InputError, match="step_000002_part000.parquet"):
        list(iter_steps(tmp_path))


def test_writer_rejects_bad_rows(tmp_path):
    w = RolloutWriter(tmp_path)
    rows = make_rows(0)
    rows[4]["logprobs"] = rows[4]["logprobs"][:-1] if len(rows[4]["logprobs"]) > 1 else np.zeros(3, np.float32)
    with pytest.raises(InputError) as exc:
        w.write_step(0, rows)
    # rows[4] is the fifth row: row numbers in errors count from 1
    assert exc.value.row == 5 and exc.value.field == "logprobs"
    assert f"{rollout_path(tmp_path, 0)}, row 5 (1-based), field 'logprobs'" in str(exc.value)
    assert not rollout_path(tmp_path, 0).exists()


def _write_raw(tmp_path, step, table):
    path = rollout_path(tmp_path, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _good_table(step, n=4):
    rows = make_rows(step, n_prompts=2, group=n // 2)
    for r in rows:
        r["step"] = step
    return pa.Table.from_pylist(rows, schema=ROLLOUT_SCHEMA)


@pytest.mark.parametrize("case,field,row", [
    ("missing_column", "correct", None),
    ("length_mismatch", "entropies", 2),
    ("nan_logprob", "logprobs", 1),
    ("inf_logprob", "logprobs", 1),
    ("neg_inf_logprob", "logprobs", 1),
    ("positive_logprob", "logprobs", 1),
    ("negative_entropy", "entropies", 3),
    ("inf_entropy", "entropies", 0),
    ("nan_reward", "reward", 2),
    ("empty", "step", None),
    ("wrong_step", "step", 0),
    ("null_required", "prompt_id", 3),
])
def test_reader_errors_name_file_row_field(tmp_path, case, field, row):
    t = _good_table(5)
    if case == "missing_column":
        t = t.drop_columns(["correct"])
    elif case == "length_mismatch":
        ent = t.column("entropies").to_pylist()
        ent[2] = ent[2] + [0.5]
        t = t.set_column(t.schema.get_field_index("entropies"), "entropies",
                         pa.array(ent, pa.list_(pa.float32())))
    elif case in ("nan_logprob", "inf_logprob", "neg_inf_logprob", "positive_logprob"):
        lp = t.column("logprobs").to_pylist()
        lp[1][0] = {"nan_logprob": math.nan, "inf_logprob": math.inf, "neg_inf_logprob": -math.inf,
                    "positive_logprob": 5.0}[case]
        t = t.set_column(t.schema.get_field_index("logprobs"), "logprobs", pa.array(lp, pa.list_(pa.float32())))
    elif case in ("negative_entropy", "inf_entropy"):
        ent = t.column("entropies").to_pylist()
        ent[row][-1] = -0.5 if case == "negative_entropy" else math.inf
        t = t.set_column(t.schema.get_field_index("entropies"), "entropies",
                         pa.array(ent, pa.list_(pa.float32())))
    elif case == "nan_reward":
        rewards = t.column("reward").to_pylist()
        rewards[2] = math.nan
        t = t.set_column(t.schema.get_field_index("reward"), "reward", pa.array(rewards, pa.float32()))
    elif case == "empty":
        t = t.slice(0, 0)
    elif case == "wrong_step":
        t = t.set_column(0, "step", pa.array([4] + [5] * (t.num_rows - 1), pa.int32()))
    elif case == "null_required":
        ids = t.column("prompt_id").to_pylist()
        ids[3] = None
        t = t.set_column(1, "prompt_id", pa.array(ids, pa.string()))
    path = _write_raw(tmp_path, 5, t)
    _write_raw(tmp_path, 6, _good_table(6))
    with pytest.raises(InputError) as exc:
        list(iter_steps(tmp_path))
    err = exc.value
    # `row` above is the 0-based index of the planted row; errors count rows from 1 and say so
    assert err.path == str(path) and err.field == field and err.row == (None if row is None else row + 1)
    if row is not None:
        assert f"{path}, row {row + 1} (1-based), field '{field}'" in str(err)
    assert str(path) in str(err) and f"'{field}'" in str(err)
    # skip_invalid: the rest is analysed and the skipped input is listed
    skipped = []
    steps = dict(iter_steps(tmp_path, skip_invalid=True, skipped=skipped))
    assert 6 in steps and steps[6].num_rows == 4
    assert skipped and skipped[0].file == str(path) and skipped[0].field == field and skipped[0].row == err.row
    if row is not None:  # row-level problem: the other rows of the step survive
        assert steps[5].num_rows == 3
    else:
        assert 5 not in steps


def test_foreign_types_are_cast_and_extra_columns_dropped(tmp_path):
    t = pa.table({
        "step": pa.array([0, 0], pa.int64()), "prompt_id": ["a", "a"], "sample_idx": pa.array([0, 1], pa.int64()),
        "response": ["x y", "z"], "token_ids": pa.array([[1, 2], [3]], pa.list_(pa.int64())),
        "logprobs": pa.array([[-0.1, -0.2], [-0.3]], pa.list_(pa.float64())),
        "reward": [1.0, 0.0], "correct": [True, False], "extra": [1, 2],
    })
    _write_raw(tmp_path, 0, t)
    table = read_rollouts(tmp_path)
    assert table.schema == ROLLOUT_SCHEMA
    assert table.column("entropies").null_count == 2 and table.column("token_ids").to_pylist() == [[1, 2], [3]]
    only = read_rollouts(tmp_path, columns=["step", "token_ids"])
    assert only.column_names == ["step", "token_ids"]


def test_bad_run_json(tmp_path):
    (tmp_path / "run.json").write_text("{\n  'bad': 1\n}")
    with pytest.raises(InputError) as exc:
        read_run_info(tmp_path)
    assert exc.value.row == 2 and "run.json" in str(exc.value)
    (tmp_path / "foreign").mkdir()
    assert read_run_info(tmp_path / "foreign") == {}  # foreign logs without run.json


def test_writer_accepts_torch_tensors_and_numpy_scalars(tmp_path):
    import torch

    row = {"prompt_id": "p", "sample_idx": np.int64(0), "response": "x y", "token_ids": torch.tensor([5, 6]),
           "logprobs": torch.tensor([-0.5, -0.25]), "planning_mask": torch.tensor([True, False]),
           "reward": np.float32(1.0), "correct": np.bool_(True)}
    RolloutWriter(tmp_path).write_step(7, [row])
    (step, table), = list(iter_steps(tmp_path))
    assert step == 7 and table.column("token_ids").to_pylist() == [[5, 6]]
    assert table.column("logprobs").to_pylist() == [[-0.5, -0.25]]
    assert table.column("planning_mask").to_pylist() == [[True, False]]
    assert table.column("entropies").to_pylist() == [None] and table.column("correct").to_pylist() == [True]


def test_run_file_prefers_the_run_directorys_own_copy(tmp_path):
    from hicra.dynamics.records import run_file

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir(), elsewhere.mkdir()
    (elsewhere / "lexicon.json").write_text("{}")
    assert run_file(run, elsewhere / "lexicon.json") == elsewhere / "lexicon.json"  # only the named one exists
    (run / "lexicon.json").write_text("{}")
    assert run_file(run, elsewhere / "lexicon.json") == run / "lexicon.json"  # the run's own copy wins
    assert run_file(run, "lexicon.json") == run / "lexicon.json"  # relative names resolve in the run directory
    assert run_file(run, "lab") is None  # a preset name is no file


def test_logprob_rounding_above_zero_is_accepted_and_a_positive_one_named(tmp_path):
    """log p <= 0: +1e-7 (float rounding of a certain token) passes, +5.0 is an error naming row and field."""
    t = _good_table(5)
    lp = t.column("logprobs").to_pylist()
    lp[0][0] = 1e-7
    t = t.set_column(t.schema.get_field_index("logprobs"), "logprobs", pa.array(lp, pa.list_(pa.float32())))
    path = _write_raw(tmp_path, 5, t)
    assert dict(iter_steps(tmp_path))[5].num_rows == 4
    lp[2][0] = 5.0
    t = t.set_column(t.schema.get_field_index("logprobs"), "logprobs", pa.array(lp, pa.list_(pa.float32())))
    _write_raw(tmp_path, 5, t)
    with pytest.raises(InputError) as exc:
        list(iter_steps(tmp_path))
    assert str(exc.value) == (f"{path}, row 3 (1-based), field 'logprobs': positive log-probability (above 1e-06; a "
                              "log-probability is <= 0)")


def _with_column(t, name, values, type_):
    i = t.schema.get_field_index(name)
    if i < 0:
        return t.append_column(name, pa.array(values, type_))
    return t.remove_column(i).append_column(name, pa.array(values, type_))


@pytest.mark.parametrize("name,values,type_,row", [
    # a bool column written as numbers: 0 and 1 are read, anything else would have read as True
    ("correct", [1.0, 0.0, math.nan, 0.0], pa.float64(), 2),
    ("correct", [1, 0, 0, 7], pa.int64(), 3),
    ("correct", [1.0, 0.5, 0.0, 1.0], pa.float32(), 1),
    ("truncated", [0, 2, 0, 0], pa.int8(), 1),
    ("reward", [1.0, math.inf, 0.0, 0.0], pa.float64(), 1),
    # finite, but beyond float32: the cast made it inf, and the message said "infinite" (a reviewer's repro)
    ("reward", [1.0, 0.0, 1e300, 0.0], pa.float64(), 2),
    ("error_type", [None, "Execution", None, None], pa.string(), 1),
])
def test_values_a_cast_would_hide_are_named(tmp_path, name, values, type_, row):
    t = _with_column(_good_table(5), name, values, type_)
    path = _write_raw(tmp_path, 5, t)
    with pytest.raises(InputError) as exc:
        list(iter_steps(tmp_path))
    assert exc.value.path == str(path) and exc.value.field == name and exc.value.row == row + 1
    if values[row] == 1e300:
        assert "beyond the float32 reward column's range" in str(exc.value)


def test_an_integer_beyond_its_column_type_names_its_row(tmp_path):
    t = _with_column(_good_table(5), "sample_idx", [0, 1, 2**40, 3], pa.int64())
    _write_raw(tmp_path, 5, t)
    with pytest.raises(InputError, match=r"field 'sample_idx': has type int64, expected int32 \(row 3's value is out "
                                         r"of its range\)"):
        list(iter_steps(tmp_path))


def test_a_numeric_planning_mask_must_hold_zeros_and_ones(tmp_path):
    t = _good_table(5)
    masks = [[int(v) for v in m] for m in t.column("planning_mask").to_pylist()]
    ok = _with_column(t, "planning_mask", masks, pa.list_(pa.int64()))
    _write_raw(tmp_path, 5, ok)
    assert read_rollouts(tmp_path).column("planning_mask").to_pylist() == t.column("planning_mask").to_pylist()
    masks[2][0] = 2
    path = _write_raw(tmp_path, 5, _with_column(t, "planning_mask", masks, pa.list_(pa.int64())))
    with pytest.raises(InputError) as exc:
        list(iter_steps(tmp_path))
    assert exc.value.path == str(path) and exc.value.field == "planning_mask" and exc.value.row == 3
    # the numbers 0/1 and null in a scalar bool column are read as they were meant
    t2 = _with_column(t, "truncated", [0, 1, None, 0], pa.int64())
    _write_raw(tmp_path, 5, t2)
    assert read_rollouts(tmp_path).column("truncated").to_pylist() == [False, True, None, False]


def test_two_files_for_one_step_and_part_are_refused(tmp_path):
    """step_1.parquet is part 0 of step 1, as is step_000001_part000.parquet: reading both doubled the step."""
    w = RolloutWriter(tmp_path)
    w.write_step(0, make_rows(0))
    w.write_step(1, make_rows(1))
    (tmp_path / "rollouts" / "step_1.parquet").write_bytes(rollout_path(tmp_path, 1).read_bytes())
    with pytest.raises(InputError) as exc:
        list(iter_steps(tmp_path))
    assert "step_1.parquet" in str(exc.value) and "step_000001_part000.parquet" in str(exc.value)
    assert "same step and part (1, 0)" in str(exc.value)


def test_input_errors_are_one_line():
    err = InputError("unreadable Parquet file (Couldn't deserialize thrift: No more data.\n  more\n)", path="f")
    assert "\n" not in str(err) and str(err) == "f: unreadable Parquet file (Couldn't deserialize thrift: No more " \
        "data. more )"
