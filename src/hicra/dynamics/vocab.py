"""One metric vocabulary for every file a run writes, and the map that reads older files.

Names (the same in `metrics.parquet`, the lab's `train_log.jsonl` and `eval.json`, TensorBoard):

- ``n_errors_<type>``: number of failed responses whose `error_type` is <type> ("execution" | "planning" |
  "format"); a count.
- ``errors_<type>_share``: the same count divided by the number of responses (all responses, correct ones
  included); a share in [0, 1].
- ``planning_ratio``: planning tokens / response tokens (never `planning_frac`).
- ``loss/<name>``: a statistic returned by `hicra.algorithms.policy_loss` (pg_loss, clip_frac_low, approx_kl,
  adv_planning, ...), prefixed where it is logged (`loss_stats`).

Older files used ``errors_<type>`` for both units: a COUNT in `metrics.parquet`, a SHARE in `train_log.jsonl`
and `eval.json`, and unprefixed loss statistics in `train_log.jsonl`. `upgrade_record` / `upgrade_metrics` rename
them by the file they came from (`LEGACY_NAMES`), so old run directories load with today's names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ERROR_TYPES = ("execution", "planning", "format")
# the statistics `hicra.algorithms.policy_loss` returns (prefixed with "loss/" where logged)
LOSS_STATS = ("loss", "pg_loss", "kl_loss", "clip_frac_low", "clip_frac_high", "clip_frac_dual", "approx_kl",
              "adv_planning", "adv_execution", "planning_ratio", "planning_frac")
# old name -> new name, per file kind: the unit of `errors_<type>` depended on the file
LEGACY_NAMES: dict[str, dict[str, str]] = {
    "metrics": {f"errors_{t}": f"n_errors_{t}" for t in ERROR_TYPES},
    "train_log": {**{f"errors_{t}": f"errors_{t}_share" for t in ERROR_TYPES},
                  **{k: f"loss/{k}" for k in LOSS_STATS if k not in ("planning_frac", "planning_ratio")},
                  "planning_frac": "loss/planning_ratio"},
    "eval": {f"errors_{t}": f"errors_{t}_share" for t in ERROR_TYPES},
}


def error_columns(error_types: Iterable[str | None]) -> dict[str, float]:
    """Counts and shares of error types over a list of responses' `error_type` (None = correct or unlabelled):
    {"n_errors_<type>": int, "errors_<type>_share": float} for each type in ERROR_TYPES. Empty input: shares 0."""
    values = list(error_types)
    n = len(values)
    out: dict[str, float] = {}
    for t in ERROR_TYPES:
        c = sum(v == t for v in values)
        out[f"n_errors_{t}"] = c
        out[f"errors_{t}_share"] = c / n if n else 0.0
    return out


def loss_stats(stats: Mapping[str, float]) -> dict[str, float]:
    """`policy_loss` statistics with the "loss/" prefix (planning_frac, its old name, becomes planning_ratio)."""
    return {"loss/" + ("planning_ratio" if k == "planning_frac" else k): v for k, v in stats.items()}


def upgrade_record(record: Mapping, kind: str) -> dict:
    """One row of an old `train_log.jsonl` ("train_log") or one evaluation of `eval.json` ("eval") with
    today's names; keys already in today's vocabulary are kept as they are."""
    names = LEGACY_NAMES[kind]
    out = {}
    for k, v in record.items():
        new = names.get(k, k)
        if new in record and new != k:  # both present: the new key wins
            continue
        out[new] = v
    return out


def upgrade_eval(evals: Mapping) -> dict:
    """An `eval.json` ({name: {accuracy, errors_..., ...}}) with today's names."""
    return {k: upgrade_record(v, "eval") if isinstance(v, Mapping) else v for k, v in evals.items()}


def upgrade_metrics(df):
    """A metrics DataFrame read from an old `metrics.parquet`: `errors_<type>` (a count there) becomes
    `n_errors_<type>`, and `errors_<type>_share` = count / n_responses is added where absent."""
    df = df.rename(columns={k: v for k, v in LEGACY_NAMES["metrics"].items()
                            if k in df.columns and v not in df.columns})
    for t in ERROR_TYPES:
        share, count = f"errors_{t}_share", f"n_errors_{t}"
        if share not in df.columns and count in df.columns and "n_responses" in df.columns:
            df[share] = df[count].astype("float64") / df["n_responses"].astype("float64")
    return df
