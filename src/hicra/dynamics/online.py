"""Online detection of the end of procedural consolidation, inside a training loop, by the differential rule.

`hicra.dynamics.phases` judges a finished run. Here the same ORDER test runs on the steps seen so far: after each
step the trainer feeds that step's execution-token, planning-token and reference-token perplexities (measured on
the step's rollouts with the behaviour policy's log-probabilities at sampling; `class_perplexities` computes them
exactly as the analyzer does, the reference class drawn by `hicra.dynamics.metrics.reference_token_sample`), and
the detector answers "has execution consolidated before planning yet?".

Per update, once at least `min_steps` steps with all three values have been seen, `phases.order_test` runs on the
series so far (relative perplexities, each divided by its first value; the hinge test is scale-invariant). A
detection is order == "execution-first": execution's fall has ended (hinge significant, falls then flattens) and
planning has not ended its fall before it, nor before a random class of its size (both differences' intervals
above 0, a class that has not consolidated counting as later). Testing again at every step would fire on noise
far more often than `alpha`, so the detector fires only after `confirm` consecutive detections, and only when
tau_exec lies at least `min_after` steps before the newest step (the flat part has been seen, not guessed). Once
fired it stays fired (latched) and stops testing. When planning settles first, or together with execution, it
never fires, and a phase-aware trainer stays with alpha = 0.

Everything is a deterministic function of the fed values (the bootstraps are seeded), and the whole state is the
fed series plus two counters: `state_dict()` / `load_state_dict()` let a checkpointed trainer resume exactly.
The decision never looks at the step number alone: it needs measured values.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from hicra.dynamics.phases import PhaseConfig, order_test
from hicra.dynamics.records import to_numpy


@dataclass(frozen=True)
class OnlineConfig:
    min_steps: int = 10     # no test before this many finite values
    confirm: int = 3        # consecutive detections needed to fire
    min_after: int = 4      # the breakpoint must be at least this many steps before the newest step
    alpha: float = 0.05     # level of each single test
    n_boot: int = 99        # bootstrap resamples per test (the offline analyzer uses 999)
    min_segment: int = 3    # points on each side of a candidate breakpoint
    seed: int = 0

    def validate(self) -> None:
        if self.min_steps < 2 * self.min_segment:
            raise ValueError(f"min_steps must be >= 2 * min_segment = {2 * self.min_segment}")
        if self.confirm < 1 or self.min_after < 0 or self.n_boot < 1:
            raise ValueError("confirm >= 1, min_after >= 0 and n_boot >= 1 are required")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")


def execution_perplexity(logprobs, response_mask, planning_mask) -> float:
    """exp(-mean log-prob) over the response tokens that are not planning tokens (NaN when there are none):
    the per-step `ppl_execution` of `hicra.dynamics.metrics`, computed from a trainer's tensors/arrays."""
    lp = np.asarray(to_numpy(logprobs), dtype=np.float64)
    keep = np.asarray(to_numpy(response_mask), dtype=bool) & ~np.asarray(to_numpy(planning_mask), dtype=bool)
    if not keep.any():
        return float("nan")
    return float(np.exp(-lp[keep].mean()))




def class_perplexities(logprobs, response_mask, planning_mask, step: int) -> tuple[float, float, float]:
    """(execution, planning, reference) perplexity of one step's response tokens ([B, T] arrays or tensors): the
    analyzer's `ppl_execution`, `ppl_planning` and `ppl_reference` (the reference class: as many random
    non-planning response tokens as there are planning tokens, `reference_token_sample` over the non-planning
    response tokens in row order). NaN for
    an empty class."""
    from hicra.dynamics.metrics import reference_token_sample

    lp = np.asarray(to_numpy(logprobs), dtype=np.float64)
    resp = np.asarray(to_numpy(response_mask), dtype=bool)
    plan = np.asarray(to_numpy(planning_mask), dtype=bool) & resp
    flat, flat_plan = lp[resp], plan[resp]

    def ppl(values):
        return float(np.exp(-values.mean())) if values.size else float("nan")

    rest = flat[~flat_plan]
    ref = rest[reference_token_sample(rest.size, int(flat_plan.sum()), step)]
    return ppl(rest), ppl(flat[flat_plan]), ppl(ref)


class OnlineConsolidationDetector:
    """Feed one step at a time with `update(step, ppl_execution, ppl_planning, ppl_reference)`; `fired` says
    whether execution has consolidated before planning (module docstring).

    >>> det = OnlineConsolidationDetector()
    >>> for s in range(40):  # execution falls until step 12, planning keeps falling (noise-free)
    ...     e, p = 2.0 - 0.05 * min(s, 12), 3.0 - 0.02 * s
    ...     _ = det.update(s, e, p, 0.9 * e + 0.1 * p)
    >>> det.fired, det.consolidation_end_step
    (True, 12)
    """

    def __init__(self, config: OnlineConfig | None = None):
        self.config = config or OnlineConfig()
        self.config.validate()
        # no refinement of a p near its level (v3's sequential Monte Carlo would cost up to 100x a step's test in
        # the training loop); `confirm` consecutive detections already guard against one lucky draw
        self._phase = PhaseConfig(min_steps=self.config.min_steps, min_segment=self.config.min_segment,
                                  alpha=self.config.alpha, n_boot=self.config.n_boot, seed=self.config.seed,
                                  n_boot_refine=0)
        self.steps: list[int] = []
        self.values: list[float] = []      # execution
        self.planning: list[float] = []
        self.reference: list[float] = []
        self.streak = 0
        self.fired_step: int | None = None
        self.consolidation_end_step: int | None = None

    @property
    def fired(self) -> bool:
        return self.fired_step is not None

    def update(self, step: int, ppl_execution: float, ppl_planning: float, ppl_reference: float) -> dict:
        """Add one step's class perplexities (a step with any non-finite value is ignored) and re-decide.
        Returns the decision record: {"step", "n", "tested", "detected", "order", "tau_exec", "streak",
        "fired"}."""
        out = {"step": int(step), "n": len(self.values), "tested": False, "detected": False, "order": None,
               "tau_exec": None, "streak": self.streak, "fired": self.fired}
        if self.fired:
            return out
        vals = [ppl_execution, ppl_planning, ppl_reference]
        if any(v is None or not math.isfinite(float(v)) for v in vals):
            return out
        if self.steps and step <= self.steps[-1]:
            raise ValueError(f"steps must increase: got {step} after {self.steps[-1]}")
        self.steps.append(int(step))
        for series, v in zip((self.values, self.planning, self.reference), vals, strict=True):
            series.append(float(v))
        n = len(self.values)
        out["n"] = n
        if n < self.config.min_steps:
            return out
        x = np.asarray(self.steps, dtype=np.float64)
        curves = {name: np.asarray(series) / series[0] for name, series in
                  (("execution", self.values), ("planning", self.planning), ("reference", self.reference))}
        test = order_test(x, curves, self._phase)
        tau = test["tau_exec"]
        seen_after = tau is not None and int(np.sum(x > tau)) >= self.config.min_after
        detected = bool(test["order"] == "execution-first" and seen_after)
        self.streak = self.streak + 1 if detected else 0
        if self.streak >= self.config.confirm:
            self.fired_step = int(step)
            self.consolidation_end_step = int(x[np.argmin(np.abs(x - tau))])
        out.update(tested=True, detected=detected, order=test["order"], tau_exec=tau, streak=self.streak,
                   fired=self.fired)
        return out

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (plain Python types: JSON- and torch.save-safe)."""
        from hicra.dynamics.metrics import REFERENCE_DRAW

        return {"config": asdict(self.config), "steps": list(self.steps), "values": list(self.values),
                "planning": list(self.planning), "reference": list(self.reference), "reference_draw": REFERENCE_DRAW,
                "streak": self.streak, "fired_step": self.fired_step,
                "consolidation_end_step": self.consolidation_end_step}

    def load_state_dict(self, state: dict) -> None:
        if OnlineConfig(**state["config"]) != self.config:
            raise ValueError("detector state was saved with a different OnlineConfig")
        self.steps = [int(s) for s in state["steps"]]
        if "planning" not in state:
            raise ValueError("detector state from before the differential rule (execution only): cannot resume")
        from hicra.dynamics.metrics import REFERENCE_DRAW

        if state.get("reference_draw", "all") != REFERENCE_DRAW:
            # a run resumed across the change would join reference values of two draws in one curve
            raise ValueError(f"detector state with reference class drawn from {state.get('reference_draw', 'all')!r} "
                             f"tokens (before phase verdict rules v3); this code draws from {REFERENCE_DRAW!r} ones: "
                             "cannot resume")
        self.values = [float(v) for v in state["values"]]
        self.planning = [float(v) for v in state["planning"]]
        self.reference = [float(v) for v in state["reference"]]
        self.streak = int(state["streak"])
        self.fired_step = state["fired_step"]
        self.consolidation_end_step = state["consolidation_end_step"]


def detection_rates(make_series, n_series: int, config: OnlineConfig | None = None,
                    change_step: int | None = None, max_lag: int | None = None) -> dict:
    """Run the detector on `n_series` sequences `make_series(i) -> (steps, execution, planning, reference)` and
    summarise: the share that fired, the firing steps, and (with a planted `change_step`) the lags
    fired_step - change_step and the share that fired within `max_lag` steps after the change (firing before
    the change counts as early)."""
    fired, lags = [], []
    for i in range(n_series):
        det = OnlineConsolidationDetector(config)
        steps, *series = make_series(i)
        for s, e, p, r in zip(steps, *series, strict=True):
            det.update(int(s), float(e), float(p), float(r))
            if det.fired:
                break
        fired.append(det.fired_step)
        if change_step is not None and det.fired:
            lags.append(det.fired_step - change_step)
    out = {"n": n_series, "fire_rate": float(np.mean([f is not None for f in fired])), "fired_steps": fired}
    if change_step is not None:
        out["lags"] = lags
        out["early_rate"] = float(np.mean([lag < 0 for lag in lags])) * len(lags) / n_series if lags else 0.0
        if max_lag is not None:
            out["within_lag_rate"] = float(sum(0 <= lag <= max_lag for lag in lags) / n_series)
    return out
