"""Named lab settings: `quick` (what `make demo` runs) and `default` (the study's unit run). Each preset is a
warm-start config plus an RL config. Since session 31 they differ in one task-spec key: `default`'s series take
`pair_even` (no series strategy is right for every problem, so exploration can last), `quick` keeps the series
whose pairing fits every count (larger held-out gains in 80 steps, the demo's floor). Earlier presets stay under
dated names, so the figures measured with them can be rerun.

The warm start depends on its own seed (`--warm-start-seed`), never on the RL seed or the algorithm: runs that
differ only in `--seed` or `--algo` share one cached base policy and differ only in their RL.
"""

from __future__ import annotations

from dataclasses import replace

from hicra.lab.rl import RLConfig
from hicra.lab.sft import WarmStartConfig

# The families' full universes (at most 5% of a default run's draws repeat an earlier draw), series widened to 2-12
# terms with every term written (`write_terms`), so one-by-one, the warm start's favourite, outgrows RL's 192-token
# response budget on long series and most multi-part problems while pairing always fits (docs/lab.md, "The response
# budget" and "A less lopsided blind prior"). Universes narrowed further (e.g. {"max_start": 30, "max_step": 5} /
# {"a_max": 19}) learn in fewer epochs but repeat 25-31% of draws.
# One-by-one counts down to the last term (`stop_check`: `b-a=r` once, then `r-d=r'` after each written term, the
# answer after the line that reaches 0), so it stops where the prompt says (docs/lab.md, "A local stop for
# one-by-one"). The presets since 2026-12-01 (session 20).
# The prompt states the number of terms (`show_count`, session 22): it decides which series strategy pays for this
# model (one-by-one up to 6 terms, middle for odd counts from 7, pairing for even ones from 8: docs/lab.md "What
# choosing by problem is worth"); without it in the prompt, RL did not learn to choose by it in ten runs.
SERIES_NOCOUNT = {"write_terms": 1, "counts": list(range(2, 13)), "stop_check": 1}
SERIES = {**SERIES_NOCOUNT, "show_count": 1}
TASKS = [{"family": "series", **SERIES}, {"family": "product"}, {"family": "multi", "series": SERIES}]
# The default preset's series (session 31): pairing halves the count and applies to even counts only (`pair_even`),
# so long odd series need middle, long even ones pairing and short ones may use one-by-one: no series strategy is
# right for every problem. Under GRPO the series strategy mix widened through 320 steps in 5 of 5 runs (still moving
# at the end, so whether it lasts is open), where the quick preset's collapsed onto pairing in 3 of 5; its held-out
# gain in 80 steps is smaller (+6.1 against +12.5), under the demo's floor of +8 (docs/lab.md, "Outcome of rule
# (pf)").
SERIES_PAIR_EVEN = {**SERIES, "pair_even": 1}
TASKS_PAIR_EVEN = [{"family": "series", **SERIES_PAIR_EVEN}, {"family": "product"},
                   {"family": "multi", "series": SERIES_PAIR_EVEN}]
# The presets of session 20 (2026-12-01), kept as `quick-nocount` / `default-nocount`: the count not in the prompt.
TASKS_NOCOUNT = [{"family": "series", **SERIES_NOCOUNT}, {"family": "product"},
                 {"family": "multi", "series": SERIES_NOCOUNT}]
# The presets of session 18 (2026-12-01), kept as `quick-fav0.6` / `default-fav0.6`: no stop check, favourite 0.6.
SERIES_FAV06 = {"write_terms": 1, "counts": list(range(2, 13))}
TASKS_FAV06 = [{"family": "series", **SERIES_FAV06}, {"family": "product"}, {"family": "multi", "series": SERIES_FAV06}]
# The presets until 2026-12-01 (session 18), kept as `quick-14ep` / `default-14ep` so the figures measured with them
# (docs/lab.md, sections dated before session 18) can be rerun: series of 2-9 terms without written terms.
TASKS_14EP = [{"family": "series"}, {"family": "product"}, {"family": "multi"}]

def narrowed_tasks(series: dict | None = None, product: dict | None = None, base: list[dict] | None = None) -> list[dict]:
    """The series, product and multi-part specs of `base` (default `TASKS_14EP`, the plain universes; the
    benchmarks pass their preset's tasks) with the series and product specs updated by task-spec keys (series:
    `max_start`, `max_step`, `counts`, `write_terms`; product: `a_max`), the multi-part family's parts alike. No
    keys: `base`'s specs; `narrowed_tasks(SERIES)` is `TASKS`, and so is `narrowed_tasks(base=TASKS)`."""
    specs = {spec["family"]: {k: v for k, v in spec.items() if k != "family"} for spec in (base or TASKS_14EP)}
    series = {**specs.get("series", {}), **(series or {})}
    product = {**specs.get("product", {}), **(product or {})}
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


# The warm start: 8000 traces x 14 epochs at lr 1.5e-3 (9 epochs left some seeds under-trained, docs/lab.md "Longer
# SFT"); a problem-blind prior whose favourite is one-by-one, at probability 0.85 (`blind-common`, `favourite_share`:
# at 0.6 the favourite's eight paraphrases tie with the other strategies' first words and greedy decoding's first
# planning token became a seed lottery, docs/lab.md "A local stop for one-by-one"), so greedy decoding starts it
# while the alternatives are practised and sampled; half the prompts name a uniformly drawn strategy
# (`strategy_hints`, so every strategy is practised); traces up to 320 tokens, above RL's 192-token budget, so the
# warm start starts long strategies that RL's budget then cuts.
# Execution noise 0.05 (the corpus's slip rate; session 28, docs/lab.md "The cold demo and the execution probe",
# prediction (as)): at 0.015 the warm start's line errors were its own, not the corpus's, and the execution probe
# stayed flat under RL; at 0.05 the sampled probe rose in 10 of 10 pairs. The 0.015 presets stay as `quick-n015` /
# `default-n015`.
_WARM_N015 = WarmStartConfig(tasks=TASKS, size="1m", n_train=8000, epochs=14, batch_size=16, lr=1.5e-3,
                             strategy_prior="blind-common", favourite_share=0.85, strategy_hints=0.5,
                             max_response_tokens=320)
_WARM = replace(_WARM_N015, execution_noise=0.05)
_WARM_PAIR_EVEN = replace(_WARM, tasks=TASKS_PAIR_EVEN)
_WARM_FAV06 = replace(_WARM_N015, tasks=TASKS_FAV06, favourite_share=0.6)
_WARM_NOCOUNT = replace(_WARM_N015, tasks=TASKS_NOCOUNT)

# RL: 80 steps x 16 prompts x 8 samples at temperature 0.7 (rollouts near the greedy path train the decisions greedy
# decoding makes; the sampled evaluation uses the same temperature) and lr 5e-5. The default run uses the same RL as
# the quick one on its own tasks (docs/lab.md, "Presets"). Session 18's presets ran 60
# steps, before rows with all-zero advantages left the backward pass (`RLConfig.skip_zero_advantage`) and made 80
# fit the run budget; the 14-epoch presets before them ran 150 steps at 2e-5 (default).
_RL = RLConfig(tasks=TASKS, steps=80, prompts_per_step=16, group_size=8, max_new_tokens=192, lr=5e-5,
               temperature=0.7, n_eval=256, eval_every=20, n_probe=64, checkpoint_every=20)
_RL_PAIR_EVEN = replace(_RL, tasks=TASKS_PAIR_EVEN)
_RL_FAV06 = replace(_RL, tasks=TASKS_FAV06, steps=60)
_RL_NOCOUNT = replace(_RL, tasks=TASKS_NOCOUNT)

_WARM_14EP = WarmStartConfig(tasks=TASKS_14EP, size="1m", n_train=8000, epochs=14, batch_size=16, lr=1.5e-3,
                             max_response_tokens=192)
PRESETS: dict[str, tuple[WarmStartConfig, RLConfig]] = {
    "quick": (_WARM, _RL),
    # since session 31 (2026-12-03): quick plus `pair_even`; until then the same as quick, kept as `default-s29`
    "default": (_WARM_PAIR_EVEN, _RL_PAIR_EVEN),
    "default-s29": (_WARM, _RL),
    # sessions 22-28 (2026-12-02 to 12-03): execution noise 0.015
    "quick-n015": (_WARM_N015, _RL),
    "default-n015": (_WARM_N015, _RL),
    # session 20 (2026-12-01): the count not in the prompt
    "quick-nocount": (_WARM_NOCOUNT, _RL_NOCOUNT),
    "default-nocount": (_WARM_NOCOUNT, _RL_NOCOUNT),
    # session 18 (2026-12-01): no stop check, favourite share 0.6, 60 RL steps
    "quick-fav0.6": (_WARM_FAV06, _RL_FAV06),
    "default-fav0.6": (_WARM_FAV06, _RL_FAV06),
    # until 2026-12-01 (session 18): the 14-epoch unhinted warm start of the `blind` prior, RL at lr 2e-5
    "quick-14ep": (
        _WARM_14EP,
        RLConfig(tasks=TASKS_14EP, steps=60, prompts_per_step=16, group_size=8, max_new_tokens=192, lr=2e-5,
                 temperature=0.7, n_eval=256, eval_every=20, n_probe=64, checkpoint_every=20),
    ),
    "default-14ep": (
        _WARM_14EP,
        RLConfig(tasks=TASKS_14EP, steps=150, prompts_per_step=16, group_size=8, max_new_tokens=192, lr=2e-5,
                 temperature=0.7, n_eval=256, eval_every=25, n_probe=64, checkpoint_every=25),
    ),
}

# The preset the benchmarks that build a preset's tasks or warm start measure unless told otherwise: the one
# docs/lab.md's figures were measured on (`default` was the same preset until session 31).
BENCHMARK_PRESET = "quick"
BENCHMARK_PRESET_HELP = (f"default {BENCHMARK_PRESET}: the preset docs/lab.md's figures were measured on (the same as "
                         "default until session 31); --preset default for the study's")

# the knobs the study's control cells set, on the warm start and (optimum) on RL alike
KNOBS = ("execution_noise", "strategy_prior", "planning_noise", "favourite_share", "slip_cap", "optimum")


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
