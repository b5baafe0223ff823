"""One metric vocabulary (hicra.dynamics.vocab): counts vs shares, loss/ prefix, and the map for old files."""

from __future__ import annotations

import pandas as pd
import pytest

from hicra.dynamics.vocab import error_columns, loss_stats, upgrade_eval, upgrade_metrics, upgrade_record


def test_error_columns_counts_and_shares():
    out = error_columns(["execution", None, "planning", "execution", None])
    assert out == {"n_errors_execution": 2, "errors_execution_share": 0.4, "n_errors_planning": 1,
                   "errors_planning_share": 0.2, "n_errors_format": 0, "errors_format_share": 0.0}
    assert error_columns([])["errors_format_share"] == 0.0


def test_loss_stats_prefix_and_planning_ratio():
    assert loss_stats({"pg_loss": 1.0, "planning_frac": 0.1, "planning_ratio": 0.2}) == {
        "loss/pg_loss": 1.0, "loss/planning_ratio": 0.2}


def test_old_files_load_by_the_unit_each_file_held():
    # train_log.jsonl held shares and unprefixed loss statistics; its own planning_ratio (masks) stays
    old_log = {"step": 3, "errors_execution": 0.25, "pg_loss": -0.1, "planning_frac": 0.05, "planning_ratio": 0.05,
               "grad_norm": 1.5}
    assert upgrade_record(old_log, "train_log") == {
        "step": 3, "errors_execution_share": 0.25, "loss/pg_loss": -0.1, "loss/planning_ratio": 0.05,
        "planning_ratio": 0.05, "grad_norm": 1.5}
    # eval.json held shares, per evaluation
    assert upgrade_eval({"final": {"accuracy": 0.5, "errors_planning": 0.1}, "n": 3}) == {
        "final": {"accuracy": 0.5, "errors_planning_share": 0.1}, "n": 3}
    # metrics.parquet held counts: renamed, and the share derived from n_responses
    df = upgrade_metrics(pd.DataFrame({"step": [0, 1], "n_responses": [8, 4], "errors_format": [2, 1]}))
    assert df["n_errors_format"].tolist() == [2, 1]
    assert df["errors_format_share"].tolist() == pytest.approx([0.25, 0.25])
    # new files pass unchanged
    new = {"errors_execution_share": 0.1, "loss/pg_loss": 0.0}
    assert upgrade_record(new, "train_log") == new
