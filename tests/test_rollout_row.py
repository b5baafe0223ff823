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
