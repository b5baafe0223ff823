"""Online detection of the end of procedural consolidation, inside a training loop.

`hicra.dynamics.phases` judges a finished run. Here the same consolidation test runs on the steps seen so far:
after each step the trainer feeds the step's execution-token perplexity (measured on that step's rollouts,
behaviour-policy log-probabilities at sampling), and the detector answers "has consolidation ended yet?".

Per update, once at least `min_steps` finite values have been seen, the hinge-vs-line bootstrap F test of
`phases.consolidation_test` is run on the whole series so far (relative execution perplexity
rel_ppl(s) = ppl(s) / ppl(first step); the test is scale-invariant, so the ratio only keeps logs readable):

    y = b0 + b1 * x + b2 * max(x - tau, 0),   detected <=> p < alpha and b1 < 0 and b2 > 0

Testing again at every step would fire on noise far more often than `alpha` (many looks), so the detector
fires only after `confirm` consecutive detections, and only when the estimated breakpoint lies at least
`min_after` steps before the newest step (the flat part has been seen, not guessed). Once fired it stays fired
(latched) and stops testing, so its cost after firing is zero; before, one update costs one bootstrap F test on
n points (O(n^2 * n_boot) multiply-adds; measured 46 ms at n = 100 and 84 ms at n = 200 with n_boot = 199 on a
loaded 2-core CPU, `benchmarks/online_phases.py`: small next to an RL step of the lab).

Everything is a deterministic function of the fed values (the bootstrap is seeded), and the whole state is the
fed series plus two counters: `state_dict()` / `load_state_dict()` let a checkpointed trainer resume exactly.
The decision never looks at the step number alone: it needs measured values.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from hicra.dynamics.phases import PhaseConfig, consolidation_test


@dataclass(frozen=True)
class OnlineConfig:
    min_steps: int = 10     # no test before this many finite values
    confirm: int = 3        # consecutive detections needed to fire
    min_after: int = 4      # the breakpoint must be at least this many steps before the newest step
    alpha: float = 0.05     # level of each single test
    n_boot: int = 199       # bootstrap resamples per test (the offline analyzer uses 999)
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
    lp = np.asarray(_numpy(logprobs), dtype=np.float64)
    keep = np.asarray(_numpy(response_mask), dtype=bool) & ~np.asarray(_numpy(planning_mask), dtype=bool)
    if not keep.any():
        return float("nan")
    return float(np.exp(-lp[keep].mean()))


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


class OnlineConsolidationDetector:
    """Feed one value per step with `update(step, ppl_execution)`; `fired` says whether consolidation has ended.

    >>> det = OnlineConsolidationDetector()
    >>> for s in range(40):
    ...     _ = det.update(s, 2.0 - 0.05 * min(s, 15))  # falls until step 15, then flat (noise-free)
    >>> det.fired, det.consolidation_end_step
    (True, 15)
    """

    def __init__(self, config: OnlineConfig | None = None):
        self.config = config or OnlineConfig()
        self.config.validate()
        self._phase = PhaseConfig(min_steps=self.config.min_steps, min_segment=self.config.min_segment,
                                  alpha=self.config.alpha, n_boot=self.config.n_boot, seed=self.config.seed)
        self.steps: list[int] = []
        self.values: list[float] = []
        self.streak = 0
        self.fired_step: int | None = None
        self.consolidation_end_step: int | None = None

    @property
    def fired(self) -> bool:
        return self.fired_step is not None

    def update(self, step: int, value: float) -> dict:
        """Add one step's execution perplexity (non-finite values are ignored) and re-decide. Returns the
        decision record: {"step", "n", "tested", "detected", "p_value", "breakpoint_step", "streak", "fired"}."""
        out = {"step": int(step), "n": len(self.values), "tested": False, "detected": False, "p_value": None,
               "breakpoint_step": None, "streak": self.streak, "fired": self.fired}
        if self.fired:
            return out
        if value is None or not math.isfinite(float(value)):
            return out
        if self.steps and step <= self.steps[-1]:
            raise ValueError(f"steps must increase: got {step} after {self.steps[-1]}")
        self.steps.append(int(step))
        self.values.append(float(value))
        n = len(self.values)
        out["n"] = n
        if n < self.config.min_steps:
            return out
        x = np.asarray(self.steps, dtype=np.float64)
        y = np.asarray(self.values, dtype=np.float64) / self.values[0]
        test = consolidation_test(x, y, self._phase)
        tau = test.get("breakpoint_step")
        seen_after = tau is not None and int(np.sum(x > tau)) >= self.config.min_after
        detected = bool(test["detected"] and seen_after)
        self.streak = self.streak + 1 if detected else 0
        if self.streak >= self.config.confirm:
            self.fired_step = int(step)
            self.consolidation_end_step = int(x[np.argmin(np.abs(x - tau))])
        out.update(tested=True, detected=detected, p_value=test.get("p_value"),
                   breakpoint_step=None if tau is None else float(tau), streak=self.streak, fired=self.fired)
        return out

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (plain Python types: JSON- and torch.save-safe)."""
        return {"config": asdict(self.config), "steps": list(self.steps), "values": list(self.values),
                "streak": self.streak, "fired_step": self.fired_step,
                "consolidation_end_step": self.consolidation_end_step}

    def load_state_dict(self, state: dict) -> None:
        if OnlineConfig(**state["config"]) != self.config:
            raise ValueError("detector state was saved with a different OnlineConfig")
        self.steps = [int(s) for s in state["steps"]]
        self.values = [float(v) for v in state["values"]]
        self.streak = int(state["streak"])
        self.fired_step = state["fired_step"]
        self.consolidation_end_step = state["consolidation_end_step"]


def detection_rates(make_series, n_series: int, config: OnlineConfig | None = None,
                    change_step: int | None = None, max_lag: int | None = None) -> dict:
    """Run the detector on `n_series` sequences `make_series(i) -> (steps, values)` and summarise: the share
    that fired, the firing steps, and (with a planted `change_step`) the lags fired_step - change_step and the
    share that fired within `max_lag` steps after the change (firing before the change counts as early)."""
    fired, lags = [], []
    for i in range(n_series):
        det = OnlineConsolidationDetector(config)
        steps, values = make_series(i)
        for s, v in zip(steps, values, strict=True):
            det.update(int(s), float(v))
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
