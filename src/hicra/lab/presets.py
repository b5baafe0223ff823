"""Named lab settings: `quick` (what `make demo` runs) and `default` (the study's unit run). Each preset is a
warm-start config plus an RL config.

The warm start depends on its own seed (`--warm-start-seed`), never on the RL seed or the algorithm: runs that
differ only in `--seed` or `--algo` share one cached base policy and differ only in their RL.
"""

from __future__ import annotations

from dataclasses import replace

from hicra.lab.rl import RLConfig
from hicra.lab.sft import WarmStartConfig

# The families' full universes (at most 5% of a default run's draws repeat an earlier draw); the 0.8M model learns
# them with >= 6 SFT epochs at lr 1.5e-3 (3 epochs: 4% greedy held-out accuracy). Greedy held-out accuracy over
# warm-start seeds: 9 epochs 60.5, 41.4, 50.2, 43.4, 53.3% (SD 7.7 points: under-trained seeds); 14 epochs, seeds
# 0-3, 65.2, 60.7, 69.5, 59.8% (SD 4.5), so the presets train 14 (docs/lab.md, "Longer SFT"). Narrowed
# universes (e.g. {"max_start": 30, "max_step": 5} / {"a_max": 19}) learn in 3 epochs but repeat 25-31% of draws.
TASKS = [{"family": "series"}, {"family": "product"}, {"family": "multi"}]


def narrowed_tasks(series: dict | None = None, product: dict | None = None) -> list[dict]:
    """`TASKS` with the series and product universes narrowed by their task-spec keys (series: `max_start`,
    `max_step`, `counts`; product: `a_max`), the multi-part family's parts narrowed alike. No keys: `TASKS`."""
    series, product = dict(series or {}), dict(product or {})
    return [{"family": "series", **series}, {"family": "product", **product},
            {"family": "multi", **({"series": series} if series else {}), **({"product": product} if product else {})}]


def parse_universe(text: str | None) -> dict[str, int | list[int]]:
    """`"max_start=30,max_step=5"` -> {"max_start": 30, "max_step": 5} (the benchmarks' --series / --product); a
    range `"counts=2-16"` -> {"counts": [2, ..., 16]} (inclusive). ValueError naming the part that does not parse."""
    out: dict[str, int | list[int]] = {}
    for part in filter(None, (text or "").split(",")):
        key, sep, value = part.partition("=")
        lo, dash, hi = value.partition("-")
        if not sep or not key or not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"task-spec part {part!r}: expected KEY=INT or KEY=LOW-HIGH")
        out[key] = list(range(int(lo), int(hi) + 1)) if dash else int(lo)
    return out


_WARM = WarmStartConfig(tasks=TASKS, size="1m", n_train=8000, epochs=14, batch_size=16, lr=1.5e-3,
                        max_response_tokens=192)

# RL samples at temperature 0.7: over (warm-start seed, RL seed) pairs of the quick preset at lr 2e-5, from warm
# starts of the `blind-common` prior (then the default), the greedy held-out gain was +1.6 points (SD 1.8, 7 of 9
# pairs positive) at 0.7 against -0.2 (SD 0.6, 1 of 5) at 1.0 (benchmarks/sweeps/2026-11-30-device/, docs/lab.md):
# rollouts near the greedy path train the decisions greedy decoding makes. The sampled evaluation uses the same
# temperature.
PRESETS: dict[str, tuple[WarmStartConfig, RLConfig]] = {
    "quick": (
        _WARM,
        RLConfig(tasks=TASKS, steps=60, prompts_per_step=16, group_size=8, max_new_tokens=192, lr=2e-5,
                 temperature=0.7, n_eval=256, eval_every=20, n_probe=64, checkpoint_every=20),
    ),
    "default": (
        _WARM,
        RLConfig(tasks=TASKS, steps=150, prompts_per_step=16, group_size=8, max_new_tokens=192, lr=2e-5,
                 temperature=0.7, n_eval=256, eval_every=25, n_probe=64, checkpoint_every=25),
    ),
}

# the knobs the study's control cells set, on the warm start and (optimum) on RL alike
KNOBS = ("execution_noise", "strategy_prior", "planning_noise", "optimum")


def get_preset(name: str, warm_start_seed: int | None = None, knobs: dict | None = None,
               **rl_overrides) -> tuple[WarmStartConfig, RLConfig]:
    """Copies of a preset's configs; `rl_overrides` replace RLConfig fields (algo, alpha, seed, steps...),
    `warm_start_seed` the warm start's seed, `knobs` the corpus knobs (`KNOBS`; `optimum` applies to RL too)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    ws, rl = PRESETS[name]
    knobs = dict(knobs or {})
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown corpus knobs {sorted(unknown)}; known: {KNOBS}")
    ws = replace(ws, **knobs, **({} if warm_start_seed is None else {"seed": warm_start_seed}))
    rl = replace(rl, **{k: v for k, v in rl_overrides.items() if v is not None})
    if "optimum" in knobs:
        rl = replace(rl, optimum=knobs["optimum"])
    return ws, rl
