"""Named lab settings: `quick` (the default, minutes on a laptop CPU) and `default` (a longer run where accuracy
rises clearly over the warm start). Each preset is a warm-start config plus an RL config.

The warm start does not depend on the RL seed (its own seed is fixed), so runs that differ only in `--seed` or
`--algo` share one cached base policy and differ only in their RL.
"""

from __future__ import annotations

from dataclasses import replace

from hicra.lab.rl import RLConfig
from hicra.lab.sft import WarmStartConfig

# easy enough that a ~1M-parameter model learns the arithmetic within a few CPU minutes; with two numbers the
# search has a handful of orders/operations, so backtracking after a dead end pays off within a short response
TASKS = [{"family": "countdown", "n_numbers": 2, "max_number": 9, "max_target": 81},
         {"family": "series", "max_start": 5, "min_count": 3, "max_count": 6}]

PRESETS: dict[str, tuple[WarmStartConfig, RLConfig]] = {
    "quick": (
        WarmStartConfig(tasks=TASKS, size="1m", n_train=6000, epochs=3, batch_size=16, lr=4e-3),
        RLConfig(tasks=TASKS, steps=50, prompts_per_step=16, group_size=8, max_new_tokens=96, lr=5e-4,
                 n_eval=256, checkpoint_every=10),
    ),
    "default": (
        WarmStartConfig(tasks=TASKS, size="1m", n_train=6000, epochs=3, batch_size=16, lr=4e-3),
        RLConfig(tasks=TASKS, steps=300, prompts_per_step=16, group_size=8, max_new_tokens=96, lr=5e-4,
                 n_eval=512, checkpoint_every=25),
    ),
}


def get_preset(name: str, **rl_overrides) -> tuple[WarmStartConfig, RLConfig]:
    """Copies of a preset's configs; `rl_overrides` replace RLConfig fields (algo, alpha, seed, steps...)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    ws, rl = PRESETS[name]
    return replace(ws), replace(rl, **{k: v for k, v in rl_overrides.items() if v is not None})
