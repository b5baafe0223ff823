"""How often the verdict's exploration test, and a candidate net-change test, detect a rise of planted shapes.

    python benchmarks/exploration_shapes.py [--n 100] [--amplitudes 0.1 0.2] [--noise-root docs/findings/v2/runs]
    python benchmarks/exploration_shapes.py --runs SUMMARY_ROOT   # the three tests on real runs, per cell

Planted strategy-entropy curves over 320 steps (the lab's run length): a shape of amplitude A (nats) plus noise
drawn from real runs' noise models (`hicra.dynamics.phases._noise_model`: bent-cable residuals, AR(1) phi and
innovations) of the first controls study's blind-diverse runs (the cells where diversity can rise), taken in turn.
Shapes: `flat` (no change), `fall` (a line down by A), `linear` (a line up by A), `early` (up by A over the first
64 steps, then level: the shape benchmarks/entropy_shape.py shows in most clean blind diverse runs), `ease` (up by
A over the first 64 steps, then a line back down to 2A/3 at the end; the clean blind diverse runs keep about two
thirds of their peak). Then, per blind-diverse cell under the noise root, two rows: `profile` plants that cell's
mean curve (its runs' strategy entropy averaged over 40 blocks of 8 steps, joined by straight lines through the
blocks' centres) with its runs' noise models in turn: each test's power on the signal the cell showed on average;
`per-run` plants each run's own curve (20 blocks of 16 steps) with that run's noise model, n/runs times each: the
mean power over the cell's runs, which differs from the power on the mean curve when runs differ (a late riser).
A per-run profile keeps some of its run's noise (about 0.03 nats per block), so that row is slightly optimistic.

Tests, each at the verdict's one-sided 2.5% (`PhaseConfig.level` 0.95):
- `linear`: the verdict's test (`trend_test`: OLS slope, AR(1) sieve bootstrap-t interval above 0) over all 320
  steps, which is the verdict's window when no token class consolidates; when one does, the verdict tests only the
  steps after its end (`tau_exec`), which can leave an early rise out;
- `net5`, `net10`: a candidate, not in the package: D = mean of the last block minus mean of the first block of
  the steps (fifths or tenths), basic bootstrap interval from replicates of the same noise model around the
  bent-cable fit, detected when the interval is above 0.
Prints, per shape and amplitude, the share of the N planted curves each test detects, with a 95% Wilson interval.
A flat or falling curve detected is a false positive. The noise is drawn from the same AR(1) model the bootstrap
intervals assume, so the flat row checks each test's size against its own noise model, not against real noise with
slower drift. `early` and `ease` end above where they start, so a test that reads "rises" as "ends higher than it
starts" should detect them. Which reading the pre-registered criterion
("strategy entropy rises") means is a question for the study's owner, not this script (docs/study.md, session 41).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from hicra.dynamics.phases import PhaseConfig, _ar1_series, _noise_model, bent_cable_fit, trend_test
from hicra.errors import InputError
from hicra.stats import block_means
from hicra.study.statistics import load_summary

STEPS = 320
RISE_STEPS = 64
SHAPES = ("flat", "fall", "linear", "early", "ease")
TESTS = ("linear", "net5", "net10")


def shape(name: str, amplitude: float, n: int = STEPS) -> np.ndarray:
    """The planted signal (n,) in nats above the start, per module docstring."""
    t = np.arange(n, dtype=float)
    up = amplitude * np.minimum(t, RISE_STEPS) / RISE_STEPS
    return {"flat": np.zeros(n), "fall": -amplitude * t / (n - 1), "linear": amplitude * t / (n - 1),
            "early": up,
            "ease": np.where(t <= RISE_STEPS, up,
                             amplitude - (amplitude / 3) * (t - RISE_STEPS) / (n - 1 - RISE_STEPS))}[name]


def net_change(y: np.ndarray, blocks: int) -> np.ndarray:
    """Mean of the last block minus mean of the first (blocks equal consecutive parts), per column of y (n, ...)."""
    k = y.shape[0] // blocks
    return y[-k:].mean(axis=0) - y[:k].mean(axis=0)


def net_change_test(x: np.ndarray, y: np.ndarray, blocks: int, config: PhaseConfig | None = None) -> dict:
    """Candidate: D = `net_change`, interval [D - q_hi, D - q_lo] where q are the (1 -+ level) / 2 quantiles of
    D* - D(fit) over n_boot replicates fit + AR(1) sieve noise (`_noise_model`), fit the bent-cable curve.
    Detected when the interval lies above 0."""
    config = config or PhaseConfig()
    rng = np.random.default_rng(config.seed + 1)
    fit = bent_cable_fit(x, y, config.min_segment)
    residuals, phi, innovations = _noise_model(x, y, config.min_segment)
    ys = fit[:, None] + _ar1_series(residuals, phi, innovations, rng.random((x.size, config.n_boot)))
    dev = net_change(ys, blocks) - net_change(fit, blocks)
    q_lo, q_hi = np.quantile(dev, [(1 - config.level) / 2, (1 + config.level) / 2])
    d = float(net_change(y, blocks))
    return {"net_change": d, "interval": [d - q_hi, d - q_lo], "detected": bool(d - q_hi > 0)}


def block_profile(curves: list[np.ndarray], blocks: int, n: int = STEPS) -> np.ndarray:
    """The mean of several curves' block means (`blocks` equal consecutive parts), joined by straight lines through
    the blocks' centres and level beyond the first and last centre, minus its start; shape (n,)."""
    means = np.mean([block_means(c, blocks) for c in curves], axis=0)
    centres = block_means(np.arange(n, dtype=float), blocks)
    line = np.interp(np.arange(n, dtype=float), centres, means)
    return line - line[0]


def entropy_curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, strategy entropy) of one run summary, at the steps with a value; InputError naming the file when
    the curve is missing."""
    m = load_summary(path).get("metrics") or {}
    if not m.get("strategy_entropy") or not m.get("step"):
        raise InputError("no strategy entropy curve", path=str(path), field="metrics.strategy_entropy")
    x, y = np.asarray(m["step"], float), np.asarray(m["strategy_entropy"], float)
    ok = np.isfinite(y)
    return x[ok], y[ok]


def detections(x: np.ndarray, y: np.ndarray) -> dict[str, bool]:
    """Whether each of TESTS detects a rise in the curve y over steps x."""
    return {"linear": trend_test(x, y)["detected"], "net5": net_change_test(x, y, 5)["detected"],
            "net10": net_change_test(x, y, 10)["detected"]}


def noise_models(root: Path) -> dict[str, list[tuple[tuple[np.ndarray, float, np.ndarray], np.ndarray]]]:
    """{cell: [(noise model, strategy entropy curve)]} of the blind-diverse runs under root (CELL/grpo/wsW-seedS.json);
    the noise model is `_noise_model`'s (residuals, phi, innovations)."""
    paths = sorted(root.glob("*prior-blind-common_opt-diverse/grpo/ws*-seed*.json"))
    if not paths:
        raise InputError("no blind-diverse run summaries (*prior-blind-common_opt-diverse/grpo/wsW-seedS.json)",
                         path=str(root))
    out: dict = {}
    for p in paths:
        x, y = entropy_curve(p)
        if y.size != STEPS:
            raise InputError(f"{y.size} steps with a value, the planted curves have {STEPS}", path=str(p),
                             field="metrics.strategy_entropy")
        out.setdefault(p.parent.parent.name, []).append((_noise_model(x, y, PhaseConfig().min_segment), y))
    return out


def detection_rates(signals: list[np.ndarray], models: list, n: int, rng: np.random.Generator) -> dict[str, int]:
    """How many of n planted curves (1 + signals[i % len(signals)] + AR(1) noise of models[i % len(models)]) each
    test detects."""
    x = np.arange(STEPS, dtype=float)
    hits = dict.fromkeys(TESTS, 0)
    for i in range(n):
        residuals, phi, innovations = models[i % len(models)]
        y = 1.0 + signals[i % len(signals)] + _ar1_series(residuals, phi, innovations, rng.random((STEPS, 1)))[:, 0]
        for test, detected in detections(x, y).items():
            hits[test] += detected
    return hits


def on_runs(root: Path) -> int:
    """The three tests on each run's strategy entropy curve under root, counted per cell (module docstring)."""
    paths = sorted(root.glob("*/grpo/ws*-seed*.json"))
    if not paths:
        raise InputError("no run summaries (CELL/grpo/wsW-seedS.json)", path=str(root))
    counts: dict[str, dict[str, int]] = {}
    for p in paths:
        x, y = entropy_curve(p)
        if y.size < 20:
            raise InputError(f"{y.size} steps with a value, need 20", path=str(p), field="metrics.strategy_entropy")
        c = counts.setdefault(p.parent.parent.name, {"runs": 0, **dict.fromkeys(TESTS, 0)})
        c["runs"] += 1
        for test, detected in detections(x, y).items():
            c[test] += detected
    print("cell: runs, detected by " + ", ".join(TESTS))
    for cell, c in counts.items():
        print(f"{cell}: {c['runs']} runs, " + ", ".join(f"{t} {c[t]}" for t in TESTS))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="planted curves per shape and amplitude")
    ap.add_argument("--amplitudes", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--noise-root", type=Path, default=Path("docs/findings/v2/runs"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=Path, help="apply the tests to the real runs under this summary root instead")
    args = ap.parse_args(argv)
    try:
        if args.runs is not None:
            return on_runs(args.runs)
        models = noise_models(args.noise_root)
    except InputError as exc:
        print(f"exploration_shapes: {exc}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    pooled = [m for runs in models.values() for m, _ in runs]
    start = time.time()
    print(f"{args.n} planted curves per row, noise from {len(pooled)} runs' noise models "
          f"(residual SD {min(m[0].std() for m in pooled):.3f}-{max(m[0].std() for m in pooled):.3f} nats, "
          f"AR(1) phi {min(m[1] for m in pooled):.2f}-{max(m[1] for m in pooled):.2f})")
    print("shape  amplitude  " + "  ".join(f"{t:>22}" for t in TESTS))

    def row(label: str, hits: dict) -> None:
        cells = []
        for t in TESTS:
            ci = binomtest(hits[t], args.n).proportion_ci(method="wilson")
            cells.append(f"{hits[t] / args.n:5.2f} [{ci.low:.2f}, {ci.high:.2f}]".rjust(22))
        print(label + "  " + "  ".join(cells))

    for name in SHAPES:
        for amplitude in ([0.0] if name == "flat" else args.amplitudes):
            row(f"{name:6} {amplitude:9.2f}", detection_rates([shape(name, amplitude)], pooled, args.n, rng))
    for cell, runs in models.items():
        signal = block_profile([y for _, y in runs], 40)
        print(f"profile of {cell} ({len(runs)} runs): rises to {signal.max():+.3f} at step "
              f"{int(signal.argmax())}, ends at {signal[-1]:+.3f}; net change by tenths "
              f"{net_change(signal, 10):+.3f}")
        row(f"{'profile':6} {signal[-1]:9.2f}", detection_rates([signal], [m for m, _ in runs], args.n, rng))
        own = [block_profile([y], 20) for _, y in runs]
        row(f"{'per-run':6} {np.mean([p[-1] for p in own]):9.2f}",
            detection_rates(own, [m for m, _ in runs], args.n, rng))
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
