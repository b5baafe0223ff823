"""Study presets: the arms, the named study settings, and the layout of a study directory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hicra.errors import InputError
from hicra.lab.tasks.base import OPTIMA, STRATEGY_PRIORS, knob_range_error

FORMAT = "hicra-study/2"  # v1 (one warm start, runs/ARM/seedNN, statistics from run directories): docs/study.md
RUN_FORMAT = "hicra-study-run/1"  # one per-run summary file
# train_log columns of the mechanism check (hicra.algorithms.gradient_mass): planning tokens' share of response
# tokens, of the gradient mass (1 - p of the sampled token) and of the update (|A| times the mass); HICRA at alpha
# changes the update by alpha * planning_update_share; update_change is what the arm's own mask changed
MECHANISM_COLUMNS = ("planning_ratio", "planning_gradient_mass_share", "planning_update_share", "update_change")
# and the share of response tokens the arm's own mask amplified (kept in summaries since session 52; older ones
# lack it, and the mechanism table shows it only when some arm has it)
AMPLIFIED_COLUMN = "amplified_ratio"
SEED_STRIDE = 1000  # RL seeds of warm-start seed W: W * SEED_STRIDE + 0..seeds-1 (distinct across warm starts)

# arm name -> RLConfig overrides. The alpha sweep's 0.2 point is the "hicra" arm itself. Control arms are named
# after their mask source (hicra.algorithms.MASK_SOURCES; the lab's algo -> source map is hicra.lab.rl.MASK_SOURCE_OF).
ARMS: dict[str, dict] = {
    "grpo": {"algo": "grpo", "alpha": 0.0},
    "hicra": {"algo": "hicra", "alpha": 0.2},
    "placebo": {"algo": "placebo", "alpha": 0.2},
    "placebo-mass": {"algo": "placebo-mass", "alpha": 0.2},
    "high-entropy": {"algo": "high-entropy", "alpha": 0.2, "entropy_quantile": 0.2},
    "gated": {"algo": "gated", "alpha": 0.2},
    "hicra-a0.1": {"algo": "hicra", "alpha": 0.1},
    "hicra-a0.4": {"algo": "hicra", "alpha": 0.4},
    "phase-aware": {"algo": "phase-aware", "alpha": 0.2},
}
BASELINE = "grpo"
# the arms HICRA is compared with beyond the baseline (name -> what results.md calls it): random tokens matched on
# count, and on update mass
PLACEBO_ARMS = {"placebo": "placebo", "placebo-mass": "mass-matched placebo"}
# the control cells' run length: in the noisy-execution cell execution consolidated in 8 of 8 runs at 320 steps and
# in 1 of 8 within the unit run's 80 (docs/lab.md, "Does execution consolidate when RL runs longer?")
CONTROL_STEPS = 320
# the main arms' held-out set (the lab's is 256): on the session-20 presets ten runs' greedy gains spread by SD 4.4
# points on the 256 tuning problems and by SD 1.7 on 512 others (docs/lab.md, outcome of (s)), so much of the
# spread was the small set's binomial noise; about 8 s more per evaluation point on one core (docs/study.md, 5.)
MAIN_N_EVAL = 512


@dataclass
class StudyPreset:
    name: str
    description: str
    seeds: int  # RL seeds per warm-start seed
    arms: list[str]
    lab_preset: str = "quick"  # `hicra.lab.presets` entry the settings start from (tasks, warm start, RL)
    warm_start: dict = field(default_factory=dict)  # WarmStartConfig overrides
    rl: dict = field(default_factory=dict)  # RLConfig overrides shared by every arm
    threshold: float = 0.3  # training-accuracy level for "steps to threshold"
    threshold_window: int = 5  # trailing moving-average window for it
    warm_start_seeds: int = 1  # W warm-start seeds, from first_warm_start_seed; each carries `seeds` RL seeds (nested)
    # a later study's fresh seeds: clean runs are deterministic, so reusing an earlier study's seeds replays its runs
    first_warm_start_seed: int = 0
    cells: dict[str, dict] = field(default_factory=dict)  # cell name -> corpus knobs (KNOBS); {} = the lab's own
    # the control cells' pass criteria (`ControlCriterion`); () = CONTROL_CRITERIA, the first controls study's
    criteria: tuple = ()
    # a line printed in bold at the head of results.md (e.g. that a preset is exploratory, not pre-registered)
    banner: str = ""
    # the phase verdict rules its runs are read by (`hicra.dynamics.phases.PhaseConfig.version`): every summary must
    # carry this version, and cells are pooled by its rules. New runs are analysed by today's version (3); 2 is
    # the first controls study's, whose summaries were made before v3
    phase_version: int = 3


PRESETS: dict[str, StudyPreset] = {
    "smoke": StudyPreset(
        name="smoke", description="pipeline check in seconds (tests/CI): tiny corpus, a few steps; no findings",
        seeds=2, arms=["grpo", "hicra"], lab_preset="quick",
        warm_start={"n_train": 200, "epochs": 1, "vocab_size": 300, "size": "1m", "max_response_tokens": 96},
        rl={"steps": 3, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 24, "n_eval": 8,
            "checkpoint_every": 1, "minibatches": 1},
        threshold=0.5, threshold_window=1),
    "quick": StudyPreset(
        name="quick", description="every arm, 3 seeds, the lab's quick runs (80 steps): about 4 min of one core "
        "each, after a ~30-min warm start",
        seeds=3, arms=list(ARMS), lab_preset="quick", rl={"checkpoint_every": 10}),
    "full": StudyPreset(
        name="full", description="every arm, 8 seeds, the lab's default runs (hours on 2 cores: docs/study.md)",
        seeds=8, arms=list(ARMS), lab_preset="default"),
    # v2 (issue 15): as docs/study.md's pre-registered section (frozen 2026-12-03) states them, on the lab's
    # `default` preset (since session 31 the quick preset's plus `pair_even`; the draft's first version was pinned
    # to `default-14ep`).
    "controls": StudyPreset(
        name="controls", description="v2 control cells: execution noise {0, 0.05} x strategy prior {oracle, "
        "blind-common} x optimum {diverse, single-route}, GRPO, 2 warm-start seeds x 3 RL seeds per cell, 320 RL "
        "steps (execution consolidation shows after 120-240: docs/lab.md)",
        seeds=3, warm_start_seeds=2, arms=["grpo"], lab_preset="default",
        rl={"steps": CONTROL_STEPS}, phase_version=2),  # cells: knob_grid at the end
    # the controls rerun from scratch (docs/study.md, deviation D3): the same cells, seeds, steps and criteria,
    # with the "high" execution noise at 0.10 and the phase verdict's rules v3 (hicra.dynamics.phases)
    "controls2": StudyPreset(
        name="controls2", description="the controls rerun (D3): execution noise {0, 0.10} x strategy prior "
        "{oracle, blind-common} x optimum {diverse, single-route}, GRPO, 2 warm-start seeds x 3 RL seeds per cell, "
        "320 RL steps, phase verdict v3",
        seeds=3, warm_start_seeds=2, arms=["grpo"], lab_preset="default",
        rl={"steps": CONTROL_STEPS}),  # cells and criteria: at the end
    # a third controls study (D4, frozen: docs/study.md): fresh warm-start seeds (2, 3), slips capped on the noisy
    # blind cells, the exploration criteria read from held-out strategies (k = 8 per problem at both ends) on
    # complete problems
    "controls3": StudyPreset(
        name="controls3", description="a third controls study (D4, frozen 2026-12-05: docs/study.md): "
        "controls2's cells with the noisy blind cells' slips "
        "capped at one unit (slip_cap 1), GRPO, warm-start seeds 2-3 x 3 RL seeds per cell, 320 RL steps, held-out "
        "strategies recorded (k 8), exploration read on held-out complete problems",
        seeds=3, warm_start_seeds=2, first_warm_start_seed=2, arms=["grpo"], lab_preset="default",
        rl={"steps": CONTROL_STEPS, "strategy_k": 8}),  # cells and criteria: at the end
    "main": StudyPreset(
        name="main", description="v2 main arms, 4 warm-start seeds x 4 RL seeds = 16 pairs per arm, the lab's "
        "default runs",
        seeds=4, warm_start_seeds=4, arms=["grpo", "hicra", "placebo", "high-entropy", "phase-aware", "gated"],
        lab_preset="default", rl={"n_eval": MAIN_N_EVAL}),
    # an after-the-fact add-on to the main study (docs/study.md, "Add-on A1"; exploratory, not pre-registered): its
    # settings are main's, so it shares main's summary folder, where GRPO's and HICRA's runs are already done, and
    # runs only the mass-matched placebo on the same 16 pairs
    "main-mass": StudyPreset(
        name="main-mass", description="the main study's GRPO and HICRA with the mass-matched placebo "
        "(placebo-mass) on the same 16 pairs (an exploratory add-on)",
        seeds=4, warm_start_seeds=4, arms=["grpo", "hicra", "placebo-mass"],
        lab_preset="default", rl={"n_eval": MAIN_N_EVAL},
        banner="Exploratory add-on A1 (docs/study.md), not pre-registered: its Holm families hold 3 comparisons, so "
        "its HICRA - GRPO p-values are not the registered ones (docs/findings/v2/main-results)."),
}


# ---------------------------------------------------------------- the grid: cells x arms x (warm-start seed, RL seed)

@dataclass(frozen=True)
class Pair:
    """One (warm-start seed, RL seed) pair; every arm of a study runs on the same pairs."""
    warm_start_seed: int
    seed: int

    @property
    def name(self) -> str:
        return f"ws{self.warm_start_seed}-seed{self.seed:02d}"


def study_pairs(warm_start_seeds: int, seeds: int, first: int = 0) -> list[Pair]:
    """The nested pairs: warm-start seeds w = first..first+W-1, each with its own RL seeds w * SEED_STRIDE +
    0..seeds-1 (RL seeds are never shared between warm starts, so an RL seed's problem stream and sampling belong to
    one warm start: the design is nested, not crossed; the held-out problems are the same for every pair).
    Warm-start seed 0 keeps RL seeds 0..seeds-1 (as in study v1)."""
    if warm_start_seeds < 1 or seeds < 1:
        raise InputError("need >= 1 warm-start seed and >= 1 RL seed", field="seeds")
    if seeds > SEED_STRIDE:
        raise InputError(f"at most {SEED_STRIDE} RL seeds per warm start", field="seeds")
    return [Pair(w, w * SEED_STRIDE + s) for w in range(first, first + warm_start_seeds) for s in range(seeds)]


def condition_label(cell: str, arm: str) -> str:
    """"ARM" for the lab's own corpus, "CELL/ARM" in a knob cell: the folder under runs/ and the summary root."""
    return f"{cell}/{arm}" if cell else arm


def run_dir_for(out: Path, arm: str, seed: int, warm_start_seed: int = 0, cell: str = "") -> Path:
    """OUT/runs/[CELL/]ARM/wsW-seedS: one lab run directory."""
    return Path(out) / "runs" / condition_label(cell, arm) / Pair(warm_start_seed, seed).name


def summary_path_for(root: Path, arm: str, seed: int, warm_start_seed: int = 0, cell: str = "") -> Path:
    """SUMMARY_ROOT/[CELL/]ARM/wsW-seedS.json: one finished run's summary (`hicra.study.runner.summarize_run`)."""
    return Path(root) / condition_label(cell, arm) / f"{Pair(warm_start_seed, seed).name}.json"


# ---------------------------------------------------------------- corpus-knob cells

KNOB_ABBREV = {"execution_noise": "exec", "strategy_prior": "prior", "planning_noise": "plan", "favourite_share": "fav",
               "slip_cap": "cap", "optimum": "opt"}
_KNOB_CHOICES = {"strategy_prior": STRATEGY_PRIORS, "optimum": OPTIMA}


def cell_name(knobs: dict) -> str:
    """A folder-safe name for a knob setting, e.g. {"execution_noise": 0.0, "optimum": "diverse"} ->
    "exec0.0_opt-diverse" (numbers follow the abbreviation, words after a dash)."""
    parts = []
    for k in KNOB_ABBREV:
        if k in knobs:
            v = knobs[k]
            parts.append(f"{KNOB_ABBREV[k]}{v}" if isinstance(v, (int, float)) else f"{KNOB_ABBREV[k]}-{v}")
    return "_".join(parts)


def _knob_value(name: str, text: str):
    if name in _KNOB_CHOICES:
        if text not in _KNOB_CHOICES[name]:
            raise InputError(f"{name} must be one of {', '.join(_KNOB_CHOICES[name])}, got {text!r}", field="cells")
        return text
    try:
        value = float(text)
    except ValueError:
        kind = "a whole number >= 0" if name == "slip_cap" else "a number in [0, 1]"
        raise InputError(f"{name} must be {kind}, got {text!r}", field="cells") from None
    problem = knob_range_error(name, value)
    if problem:
        raise InputError(problem, field="cells")
    return int(value) if name == "slip_cap" else value


def knob_grid(spec: dict[str, list]) -> dict[str, dict]:
    """Every combination of knob settings, as cells: {"execution_noise": [0.0, 0.05], "optimum": ["diverse",
    "single-route"]} -> 4 cells named by `cell_name`. Knobs (`hicra.lab.presets.KNOBS`) keep KNOB_ABBREV's order."""
    from itertools import product

    unknown = [k for k in spec if k not in KNOB_ABBREV]
    if unknown:
        raise InputError(f"unknown corpus knob(s) {unknown}; known: {', '.join(KNOB_ABBREV)}", field="cells")
    names = [k for k in KNOB_ABBREV if k in spec]
    for k in names:
        if not spec[k] or len(set(map(str, spec[k]))) != len(spec[k]):
            raise InputError(f"{k}: give distinct values", field="cells")
    cells = {}
    for combo in product(*(spec[k] for k in names)):
        knobs = {k: _knob_value(k, str(v)) for k, v in zip(names, combo, strict=True)}
        cells[cell_name(knobs)] = knobs
    return cells


def parse_cells(text: str) -> dict[str, dict]:
    """`--cells "execution_noise=0,0.05;strategy_prior=oracle,blind-common;optimum=diverse,single-route"`: knob=values
    groups separated by ';', values by ','; the cells are every combination (`knob_grid`)."""
    spec: dict[str, list] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in part:
            raise InputError(f"expected KNOB=VALUE[,VALUE], got {part!r}", field="cells")
        key, values = (x.strip() for x in part.split("=", 1))
        if key in spec:
            raise InputError(f"{key} is given twice", field="cells")
        spec[key] = [v.strip() for v in values.split(",") if v.strip()]
    if not spec:
        raise InputError("no knob settings given", field="cells")
    return knob_grid(spec)


def parse_arms(text: str | None, preset: StudyPreset) -> list[str]:
    """The arms of `--arms A,B` (`check_arms`), or the preset's when `text` is None."""
    if text is None:
        return list(preset.arms)
    return check_arms([a.strip() for a in text.split(",") if a.strip()], given=text)


def check_arms(arms: Sequence[str], given: Any = None) -> list[str]:
    """`arms` as a list; InputError (field "arms") for an empty list, an unknown arm (the known ones are listed) or an
    arm listed twice. `given` is what the message quotes when the list is empty (default: the list)."""
    arms = list(arms)
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise InputError(f"unknown arm(s) {unknown or (arms if given is None else given)!r}; known: "
                         f"{', '.join(ARMS)}", field="arms")
    if len(set(arms)) != len(arms):
        raise InputError("an arm is listed twice", field="arms")
    return arms


def resolve_preset(preset: str | StudyPreset) -> StudyPreset:
    """A study preset given by name or as itself; InputError (field "preset") naming the known presets."""
    if isinstance(preset, StudyPreset):
        return preset
    if preset not in PRESETS:
        raise InputError(f"unknown study preset {preset!r}; known: {', '.join(PRESETS)}", field="preset")
    return PRESETS[preset]


def preset_configs(preset: StudyPreset, warm_start_seed: int | None = None,
                   knobs: dict | None = None) -> tuple[dict, dict]:
    """(WarmStartConfig fields, RLConfig fields shared by every arm): the lab preset (at `warm_start_seed` and
    with the corpus `knobs` of a cell, via `hicra.lab.presets.get_preset`) with the study's overrides."""
    from dataclasses import replace

    from hicra.lab.presets import get_preset

    ws, rl = get_preset(preset.lab_preset, warm_start_seed=warm_start_seed, knobs=knobs)
    ws_d, rl_d = replace(ws, **preset.warm_start).settings(), asdict(replace(rl, **preset.rl))
    for k in ("algo", "alpha", "entropy_quantile", "seed", "tensorboard"):
        rl_d.pop(k, None)  # set per arm / per run
    return ws_d, rl_d


def study_settings(preset: StudyPreset) -> dict:
    """Everything that decides what a run computes (a rerun in the same directory must match it)."""
    ws, rl = preset_configs(preset)
    ws.pop("seed", None)  # set per pair
    return {"lab_preset": preset.lab_preset, "warm_start": ws, "rl": rl, "threshold": preset.threshold,
            "threshold_window": preset.threshold_window, "cells": preset.cells}



# ---------------------------------------------------------------- control cells and their pass criteria

CONTROL_NOISE = {"none": 0.0, "high": 0.05}  # the control cells' execution noise levels (WarmStartConfig)
# the rerun's (D3): the first controls' noisy-oracle execution fall was 0.01, near the curves' noise; pilots at
# 0.10 (docs/study.md, sessions 37-38) read execution-first in 5 of 7 planted runs and kept exploration in 3 of 4
CONTROL_NOISE_2 = {"none": 0.0, "high": 0.10}
# the control cells' problem-blind prior: the lab presets' own (`blind-common` at their favourite share, 0.85)
CONTROL_PRIORS = {"oracle": "oracle", "blind": "blind-common"}
for _preset, _noise in (("controls", CONTROL_NOISE), ("controls2", CONTROL_NOISE_2)):
    PRESETS[_preset].cells = knob_grid({"execution_noise": list(_noise.values()),
                                        "strategy_prior": list(CONTROL_PRIORS.values()),
                                        "optimum": ["diverse", "single-route"]})


@dataclass(frozen=True)
class ControlCriterion:
    """One pass criterion of the control cells, fixed before the runs (docs/study.md, "Pre-registered").

    The runs of the `arm` in every cell whose knobs match one of the `where` dicts are pooled; `statistic` is the
    share of those runs whose own phase verdict shows it: "exploration" (`phases.exploration.detected`, measured on
    the `strategy` column: the strategy-entropy rise after the execution consolidation), "heldout-strategy-rise"
    (the run's held-out strategy entropy within families rose from the warm start to the trained policy: eval.json's
    `strategy_change` reads "rise", its 95% paired bootstrap interval above 0; recorded with `RLConfig.strategy_k`;
    a run without it is not testable), "heldout-strategy-rise-complete" (the same, on the problems with no unparsed
    response at either end: `Hfam_complete_interval` above 0) or "order:VALUE" (`phases.order == VALUE`). The
    criterion passes when the share is >= `at_least` (or <= `at_most`).
    "pooled-order:VALUE" passes when the order of each matched cell's runs pooled by resampling runs
    (`detect_phases_pooled`) is VALUE; the per-run share is reported beside it. It is not
    tested (neither pass nor fail) when a matched cell has fewer than `min_runs_per_cell` runs; for "exploration"
    and "order:VALUE" also when a pooled run could not be tested (exploration not tested or measured on planning
    phrases; order `untestable`); for "pooled-order:VALUE" when a matched cell's pooled order is `untestable` or
    missing (a run whose own order is `untestable` is counted in `untested`, as a description)."""
    name: str
    where: tuple[dict, ...]
    statistic: str
    at_least: float | None = None
    at_most: float | None = None
    arm: str = BASELINE
    min_runs_per_cell: int = 6  # the controls preset's 2 warm-start seeds x 3 RL seeds
    why: str = ""


def _order_flip(noise: str, prior: str, order: str, why: str,
                levels: dict[str, float]) -> tuple[ControlCriterion, ...]:
    return tuple(ControlCriterion(f"{order}-{noise}-execution-{prior}-plan-{opt}",
                                  ({"execution_noise": levels[noise], "strategy_prior": CONTROL_PRIORS[prior],
                                    "optimum": opt},), f"pooled-order:{order}", why=why)
                 for opt in ("diverse", "single-route"))


def control_criteria(levels: dict[str, float], exploration: str = "exploration") -> tuple[ControlCriterion, ...]:
    """The six pre-registered pass criteria (docs/study.md, "Pre-registered") for control cells whose "none" and
    "high" execution noise are `levels` (CONTROL_NOISE for the first controls study, CONTROL_NOISE_2 for its
    rerun and the third): only the cells they match differ. `exploration` is the statistic of the two exploration
    criteria: "exploration" (the run's own phase verdict; the first two studies) or a held-out reading,
    "heldout-strategy-rise" or "heldout-strategy-rise-complete" (the third, D4)."""
    return (
        ControlCriterion("exploration-where-possible", ({"strategy_prior": CONTROL_PRIORS["blind"], "optimum": "diverse"},),
                         exploration, at_least=0.8,
                         why="positive control: a problem-blind prior under a problem-dependent optimum leaves "
                             "strategy entropy room to rise"),
        ControlCriterion("no-exploration-where-impossible",
                         ({"optimum": "single-route"}, {"strategy_prior": CONTROL_PRIORS["oracle"]}),
                         exploration, at_most=0.1,
                         why="negative control: one strategy is cheapest everywhere (reward pulls entropy down) or the "
                             "warm start already plans like the optimum"),
        *_order_flip("high", "oracle", "execution-first", "only execution has anything to consolidate", levels),
        *_order_flip("none", "blind", "planning-first",
                     "with clean execution traces and a problem-blind plan, planning has more to consolidate: the order "
                     "must flip, or the order test only reflects how many tokens a class has", levels),
    )


CONTROL_CRITERIA: tuple[ControlCriterion, ...] = control_criteria(CONTROL_NOISE)
PRESETS["controls2"].criteria = control_criteria(CONTROL_NOISE_2)
# a third controls study (D4): controls2's grid with the noisy blind cells' slips capped at one unit of difficulty,
# which gives the noisy blind diverse cell room to explore (docs/study.md, pilots P23-P26); the noisy oracle cells
# stay uncapped, since the cap cost their execution-first order (P31, P31b). The held-out strategies are recorded
# at both ends and read on complete problems
CONTROL_SLIP_CAP_3 = 1
PRESETS["controls3"].cells = {
    **knob_grid({"execution_noise": [CONTROL_NOISE_2["none"]], "strategy_prior": list(CONTROL_PRIORS.values()),
                 "optimum": ["diverse", "single-route"]}),
    **knob_grid({"execution_noise": [CONTROL_NOISE_2["high"]], "strategy_prior": [CONTROL_PRIORS["oracle"]],
                 "optimum": ["diverse", "single-route"]}),
    **knob_grid({"execution_noise": [CONTROL_NOISE_2["high"]], "strategy_prior": [CONTROL_PRIORS["blind"]],
                 "slip_cap": [CONTROL_SLIP_CAP_3], "optimum": ["diverse", "single-route"]})}
PRESETS["controls3"].criteria = control_criteria(CONTROL_NOISE_2, exploration="heldout-strategy-rise-complete")
