"""Multi-seed experiments on the CPU lab and their statistics (`hicra study`), format "hicra-study/2".

A study is a grid of runs: cells (corpus-knob settings; none = the lab's own) x arms x (warm-start seed, RL seed)
pairs, every arm on the same pairs. Modules: `presets` (arms, named studies, pairs, cells, layout), `runner`
(warm starts built once each, worker processes, resumable runs, per-run summary files), `statistics` (from the summary
files alone: nested bootstrap intervals, paired sign-flip tests, Holm, power), `report` (results.md, figures),
`cli` (the `hicra study` verb). Layout:

    OUT/
      study.json             the settings (preset, warm start, RL config, cells); a rerun must match them
      warmstart/             the warm-start cache (each needed warm start built once, by one worker)
      runs/[CELL/]ARM/wsW-seedS/   one lab run directory each + metrics.parquet, summary.json, done.json (last)
      results.json, results.md, figures/accuracy.png, figures/errors.png
    SUMMARIES/ (default OUT/summaries)
      study.json, [CELL/]ARM/wsW-seedS.json   one small summary per finished run: a run with one is never rerun

Runs are independent spawned processes with single-threaded torch; an interrupted run resumes from its checkpoint
(`hicra.lab.rl`), one that died before its first checkpoint starts again (deterministic in its seeds).
See docs/study.md.
"""

from hicra.study.presets import (
    ARMS,
    BASELINE,
    FORMAT,
    PRESETS,
    Pair,
    StudyPreset,
    cell_name,
    check_arms,
    knob_grid,
    parse_arms,
    parse_cells,
    preset_configs,
    resolve_preset,
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
    arm_curves,
    controls_outcome,
    error_fall_order,
    load_summary,
    paired_comparison,
    summarize,
)

__all__ = [
    "ARMS", "BASELINE", "ENDPOINTS", "FORMAT", "ORDERS", "PRESETS", "Pair", "RunSpec", "StudyPreset",
    "arm_curves", "cell_name", "check_arms", "check_study_dir", "code_version", "controls_outcome",
    "error_fall_order", "execute", "knob_grid", "load_summary", "paired_comparison", "parse_arms", "parse_cells",
    "plan_runs", "plot_figures", "preset_configs", "resolve_preset", "results_markdown", "run_dir_for",
    "run_one", "run_state", "run_study", "study_pairs", "study_settings", "summarize", "summarize_run",
    "summary_path_for", "write_run_summary",
]
