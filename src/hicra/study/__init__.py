"""Multi-seed experiments on the CPU lab and their statistics (`hicra study`).

A study is a grid of runs (arm x seed) that share one warm-start model. Layout of the study directory:

    OUT/
      study.json             the settings (preset, warm start, RL config, arms, seeds); a rerun must match them
      warmstart/             the warm-start cache (built once, before any worker starts)
      runs/ARM/seedNN/       one lab run directory each (DESIGN.md schema) + metrics.parquet, summary.json
                             (`analyze_run`) + done.json (written last: a run with done.json is never recomputed)
      results.json           per-arm statistics, per-run values, curves (format "hicra-study/1")
      results.md             the same as readable tables
      figures/accuracy.png, figures/errors.png

Statistics per arm (all from `hicra.stats`, seeded): final held-out accuracy (greedy, `n_eval` problems) with a
95% percentile-bootstrap interval over seeds; area under the training-accuracy curve (trapezoid / span, i.e. the
curve's mean height); steps to reach a training-accuracy threshold (trailing moving average); the difference of
each to GRPO with a bootstrap interval (seeds resampled independently per arm) and a two-sided permutation-test
p-value (exact when the relabellings can be enumerated). Phase verdicts come from `hicra.dynamics.phases` per run
and pooled per arm (`detect_phases_pooled`). Error-type curves are the per-step shares of execution / planning /
format errors among all sampled responses, averaged over seeds.

Runs are independent processes (spawned, each with single-threaded torch); a finished run is recognised by its
done.json, an interrupted one by its checkpoint (`hicra.lab.rl` resumes it exactly), a run that died before its
first checkpoint is started again from scratch (deterministic in its seed, so nothing is lost but time).
"""

from hicra.study.presets import (
    ARMS,
    BASELINE,
    FORMAT,
    PRESETS,
    Pair,
    StudyPreset,
    cell_name,
    knob_grid,
    parse_arms,
    parse_cells,
    preset_configs,
    run_dir_for,
    study_pairs,
    study_settings,
    summary_path_for,
)
from hicra.study.report import plot_figures, results_markdown
from hicra.study.runner import (
    RunSpec,
    check_study_dir,
    code_version,
    execute,
    plan_runs,
    run_one,
    run_state,
    run_study,
    summarize_run,
    write_run_summary,
)
from hicra.study.statistics import (
    ENDPOINTS,
    ORDERS,
    _order_summary,
    arm_curves,
    error_fall_order,
    load_summary,
    paired_comparison,
    summarize,
)

__all__ = ["ARMS", "ENDPOINTS", "Pair", "cell_name", "knob_grid", "paired_comparison", "parse_cells",
           "study_pairs", "summary_path_for", "summarize_run", "write_run_summary", "BASELINE", "FORMAT", "ORDERS", "PRESETS", "RunSpec", "StudyPreset", "_order_summary",
           "arm_curves", "check_study_dir", "code_version", "error_fall_order", "execute", "load_summary", "parse_arms",
           "plan_runs", "plot_figures", "preset_configs", "results_markdown", "run_dir_for", "run_one", "run_state",
           "run_study", "study_settings", "summarize"]
