"""The one rollout-row builder (hicra.dynamics.records.rollout_row) and the optional strategy column."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hicra.dynamics.records import ROLLOUT_SCHEMA, RolloutWriter, read_rollouts, rollout_row
from hicra.errors import InputError


def test_builder_fills_every_schema_column_and_round_trips(tmp_path):
    rows = [rollout_row(prompt_id=7, sample_idx=np.int64(0), response="a b", token_ids=torch.tensor([1, 2]),
                        logprobs=torch.tensor([-0.5, -0.25]), entropies=np.array([1.0, 2.0]),
                        planning_mask=[True, False], reward=np.float32(1.0), correct=np.bool_(True),
                        truncated=False, strategy=["pairing", "sum"]),
            rollout_row(prompt_id="7", sample_idx=1, response="c", token_ids=[3], reward=0, correct=False,
                        error_type="execution")]
    assert set(rows[0]) == {f.name for f in ROLLOUT_SCHEMA} - {"step"}
    assert rows[0]["token_ids"].dtype == np.int32 and rows[0]["logprobs"].dtype == np.float32
    RolloutWriter(tmp_path).write_step(4, rows)
    table = read_rollouts(tmp_path).to_pylist()
    assert [r["strategy"] for r in table] == ["pairing+sum", None]
    assert table[0]["prompt_id"] == "7" and table[0]["step"] == 4 and table[0]["planning_mask"] == [True, False]
    assert table[1]["logprobs"] is None and table[1]["error_type"] == "execution" and table[1]["truncated"] is None


def test_bad_row_fails_at_the_writer_naming_the_field(tmp_path):
    row = rollout_row(prompt_id="p", sample_idx=0, response="x", token_ids=[1, 2], logprobs=[-1.0], reward=1.0,
                      correct=True)
    with pytest.raises(InputError, match="logprobs"):
        RolloutWriter(tmp_path).write_step(0, [row])


@pytest.mark.parametrize(("value", "expected"), [(True, True), (0, False), (1.0, True), (np.bool_(False), False),
                                                 (torch.tensor(True), True), ("false", False), ("TRUE", True)])
def test_correct_is_read_as_a_flag_not_cast(value, expected):
    row = rollout_row(prompt_id="p", sample_idx=0, response="x", token_ids=[1], reward=0.0, correct=value,
                      truncated=value)
    assert row["correct"] is expected and row["truncated"] is expected


@pytest.mark.parametrize("value", ["no", 0.5, float("nan"), 7, None])
def test_a_value_a_cast_would_read_as_true_is_refused(value):
    # bool("no"), bool(0.5), bool(nan) and bool(7) are all True: the label would have been written as correct
    with pytest.raises(ValueError, match="correct must be true/false"):
        rollout_row(prompt_id="p", sample_idx=0, response="x", token_ids=[1], reward=0.0, correct=value)


def test_planning_mask_holds_only_flags():
    row = rollout_row(prompt_id="p", sample_idx=0, response="x", token_ids=[1, 2], reward=0.0, correct=True,
                      planning_mask=torch.tensor([0, 1]))
    assert row["planning_mask"].tolist() == [False, True]
    with pytest.raises(ValueError, match="planning_mask must hold true/false or 0/1, got 7 at position 1"):
        rollout_row(prompt_id="p", sample_idx=0, response="x", token_ids=[1, 2], reward=0.0, correct=True,
                    planning_mask=[0, 7])


def test_bfloat16_tensors_are_accepted(tmp_path):
    lp = torch.tensor([-0.5, -0.25], dtype=torch.bfloat16)
    row = rollout_row(prompt_id="p", sample_idx=0, response="x", token_ids=[1, 2], reward=0.0, correct=True,
                      logprobs=lp, entropies=lp.abs())
    assert row["logprobs"].tolist() == [-0.5, -0.25]
    RolloutWriter(tmp_path).write_step(0, [{**row, "logprobs": lp}])  # a dict row with the tensor itself
    assert read_rollouts(tmp_path).to_pylist()[0]["logprobs"] == [-0.5, -0.25]


def test_dict_rows_are_read_as_a_foreign_file_is(tmp_path):
    # 0/1 flags, an integer prompt id and tensors: what `.tolist()` of a trainer's tensors gives
    rows = [{"prompt_id": 3, "sample_idx": 0, "response": "x", "token_ids": torch.tensor([1, 2]), "reward": 1.0,
             "correct": 1, "planning_mask": torch.tensor([0, 1]).tolist()},
            {"prompt_id": 3, "sample_idx": 1, "response": "y", "token_ids": [4], "reward": 0.0, "correct": 0,
             "planning_mask": None}]
    RolloutWriter(tmp_path).write_step(2, rows)
    table = read_rollouts(tmp_path).to_pylist()
    assert [(r["prompt_id"], r["correct"], r["planning_mask"]) for r in table] == [("3", True, [False, True]),
                                                                                 ("3", False, None)]


def test_dict_rows_bad_values_name_the_row_and_field(tmp_path):
    base = {"prompt_id": "p", "sample_idx": 0, "response": "x", "token_ids": [1], "reward": 1.0, "correct": True}
    writer = RolloutWriter(tmp_path)
    with pytest.raises(InputError, match=r"row 2 \(1-based\), field 'correct': .* must be 0 or 1"):
        writer.write_step(0, [{**base, "correct": 1}, {**base, "sample_idx": 1, "correct": 7}])
    with pytest.raises(InputError, match=r"row 1 \(1-based\), field 'planing_mask': not a rollout column"):
        writer.write_step(0, [{**base, "planing_mask": [True]}])  # a typo is not dropped silently
    with pytest.raises(InputError, match=r"row 2 \(1-based\), field 'reward': values of mixed or unsupported types"):
        writer.write_step(0, [base, {**base, "sample_idx": 1, "reward": "high"}])
    assert not list((tmp_path / "rollouts").iterdir())  # nothing written


def test_a_dict_row_holding_a_batch_is_refused_not_flattened(tmp_path):
    base = {"prompt_id": "p", "sample_idx": 0, "response": "x", "reward": 1.0, "correct": True}
    with pytest.raises(InputError, match=r"row 1 \(1-based\), field 'token_ids': an array of shape \(2, 2\)"):
        RolloutWriter(tmp_path).write_step(0, [{**base, "token_ids": np.array([[1, 2], [3, 4]])}])
    with pytest.raises(InputError, match="field 'reward': an array of shape"):
        RolloutWriter(tmp_path).write_step(0, [{**base, "token_ids": [1], "reward": torch.tensor([1.0, 0.0])}])
