"""Study presets: the arms, the named study settings, and the layout of a study directory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from hicra.errors import InputError

FORMAT = "hicra-study/1"

# arm name -> RLConfig overrides. The alpha sweep's 0.2 point is the "hicra" arm itself. Control arms are named
# after their mask source (hicra.algorithms.MASK_SOURCES; the lab's algo -> source map is hicra.lab.rl.MASK_SOURCE_OF).
ARMS: dict[str, dict] = {
    "grpo": {"algo": "grpo", "alpha": 0.0},
    "hicra": {"algo": "hicra", "alpha": 0.2},
    "placebo": {"algo": "placebo", "alpha": 0.2},
    "high-entropy": {"algo": "high-entropy", "alpha": 0.2, "entropy_quantile": 0.2},
    "gated": {"algo": "gated", "alpha": 0.2},
    "hicra-a0.1": {"algo": "hicra", "alpha": 0.1},
    "hicra-a0.4": {"algo": "hicra", "alpha": 0.4},
    "phase-aware": {"algo": "phase-aware", "alpha": 0.2},
}
BASELINE = "grpo"


@dataclass
class StudyPreset:
    name: str
    description: str
    seeds: int
    arms: list[str]
    lab_preset: str = "quick"  # `hicra.lab.presets` entry the settings start from (tasks, warm start, RL)
    warm_start: dict = field(default_factory=dict)  # WarmStartConfig overrides
    rl: dict = field(default_factory=dict)  # RLConfig overrides shared by every arm
    threshold: float = 0.3  # training-accuracy level for "steps to threshold"
    threshold_window: int = 5  # trailing moving-average window for it


PRESETS: dict[str, StudyPreset] = {
    "smoke": StudyPreset(
        name="smoke", description="pipeline check in seconds (tests/CI): tiny corpus, a few steps; no findings",
        seeds=2, arms=["grpo", "hicra"], lab_preset="quick",
        warm_start={"n_train": 200, "epochs": 1, "vocab_size": 300, "size": "1m", "max_response_tokens": 96},
        rl={"steps": 3, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 24, "n_eval": 8,
            "checkpoint_every": 1, "minibatches": 1},
        threshold=0.5, threshold_window=1),
    "quick": StudyPreset(
        name="quick", description="every arm, 3 seeds, 60-step runs: <= 20 minutes on 2 CPU cores",
        seeds=3, arms=list(ARMS), lab_preset="quick",
        rl={"steps": 60, "n_eval": 256, "checkpoint_every": 10}),
    "full": StudyPreset(
        name="full", description="every arm, 8 seeds, the lab's default runs (hours on 2 cores: docs/study.md)",
        seeds=8, arms=list(ARMS), lab_preset="default"),
}


def run_dir_for(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / arm / f"seed{seed:02d}"


def parse_arms(text: str | None, preset: StudyPreset) -> list[str]:
    if text is None:
        return list(preset.arms)
    arms = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise InputError(f"unknown arm(s) {unknown or text!r}; known: {', '.join(ARMS)}", field="arms")
    if len(set(arms)) != len(arms):
        raise InputError("an arm is listed twice", field="arms")
    return arms


def preset_configs(preset: StudyPreset) -> tuple[dict, dict]:
    """(WarmStartConfig fields, RLConfig fields shared by every arm): the lab preset with the study's overrides."""
    from dataclasses import replace

    from hicra.lab.presets import get_preset

    ws, rl = get_preset(preset.lab_preset)
    ws_d, rl_d = asdict(replace(ws, **preset.warm_start)), asdict(replace(rl, **preset.rl))
    for k in ("algo", "alpha", "entropy_quantile", "seed", "tensorboard"):
        rl_d.pop(k, None)  # set per arm / per run
    return ws_d, rl_d


def study_settings(preset: StudyPreset) -> dict:
    """Everything that decides what a run computes (a rerun in the same directory must match it)."""
    ws, rl = preset_configs(preset)
    return {"lab_preset": preset.lab_preset, "warm_start": ws, "rl": rl, "threshold": preset.threshold,
            "threshold_window": preset.threshold_window}

