"""The order test with the reference class drawn from all response tokens (phase verdict v2) or from non-planning
tokens only (v3, the package's since 2026-12-04; question 6 of the session-38 note), on real runs.

    python benchmarks/reference_guard.py RUN [RUN ...] [--n-boot 999] [--save DIR]

The verdict's reference class (`hicra.dynamics.metrics.reference_token_sample`) is as many random tokens per step
as the step has planning tokens. Until v2 they were drawn from all response tokens, so planning tokens entered it
in their share of the response (0.12-0.22 in the lab's control runs) and it inherited that share of planning's fall
at planning's step (docs/dynamics.md, "Known limit found in session 37"). v3 draws the same number of tokens, with
the same seeded generator, from the non-planning tokens only. The v2 reading is decided by the v2 rules
(`PhaseConfig(version=2)`: no refinement of a p near its level), so it reproduces the old verdict; the v3 and
matched readings by the v3 rules. `benchmarks/order_power.py --reference-planning-share 0` and
`benchmarks/phase_verdicts.py --reference-planning-share 0` measure it on planted curves; this reads real runs.
A third reading, "matched", also draws non-planning tokens, but as many as give the step's mean log-probability the
standard error planning's has: n_plan x var(non-planning) / var(planning) of the step's token log-probabilities
(at least 1, at most all of them). It is for the case where non-planning tokens' log-probabilities vary less than
planning's, so a reference of planning's size is quieter than planning and guards less (the caution of
`QUIET_REFERENCE` in `hicra.dynamics.phases`). On the lab's pilots it over-corrects (planning's tokens come in runs
within a response, so their curve is noisier than their per-token variance says; docs/dynamics.md).

Each RUN is an analysed run directory (rollouts with `logprobs` and `planning_mask`, and the analyzer's
`metrics.parquet`, as `hicra lab` leaves them), or a curves file this script saved before (`--save DIR` writes
DIR/NAME.json per run directory NAME: the verdict's metric columns, `hicra.study.runner._SUMMARY_METRICS`, with
the two other references' `rel_ppl_reference` beside them, about 70 kB for 320 steps), so runs whose rollouts
are gone can still be read and pooled. Per step it recomputes both references' perplexities from the rollouts and
checks that `metrics.parquet`'s `ppl_reference` is one of them (a run analysed by v2 or by v3; a mismatch is an
error: the readings must differ only in the draw). Prints per run, for each reference: the order
(`hicra.dynamics.phases.detect_phases`), planning's consolidation p-value and the null draws behind it, each class's share of the draws in which it consolidates, the noise SD of
each class curve (`evidence.order.noise_sd`; a reference quieter than planning weakens the guard) and the 90%
intervals of tau_plan - tau_exec and tau_plan - tau_ref; with two runs or more, the same pooled
(`detect_phases_pooled`). A description for question 6, not a verdict. A run without those files or columns: one
line naming it, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hicra.errors import InputError

CLASSES = ("execution", "planning", "reference")
NAMES = ("v2 (all tokens):", "v3 (non-planning):", "matched (non-planning):")
VERSIONS = (2, 3, 3)  # the verdict rules each reading is decided by (`PhaseConfig.version`)


def step_perplexities(table, step: int, where: str) -> tuple[float, float, float]:
    """(v2's, v3's, matched) reference perplexity of one step's rollouts (a pyarrow table with `logprobs` and
    `planning_mask` lists). Tokens as the analyzer takes them (`hicra.dynamics.metrics._flat_tokens`, flattened in
    row order, as `step_metrics` does), so the readings differ only in the draw. InputError naming `where`, the step
    and the row when a row with log-probabilities has no planning mask or one of another length."""
    import pyarrow.compute as pc

    from hicra.dynamics.metrics import _flat_tokens, perplexity, reference_token_sample

    lp_col, pm_col = table.column("logprobs"), table.column("planning_mask")
    lengths = pc.fill_null(pc.list_value_length(lp_col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    mask_lengths = pc.fill_null(pc.list_value_length(pm_col), -1).to_numpy(zero_copy_only=False)
    has_lp = np.asarray(lp_col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    bad = np.flatnonzero(has_lp & (mask_lengths != lengths))
    if bad.size:
        raise InputError(f"step {step} row {int(bad[0])}: planning_mask missing or not as long as logprobs",
                         path=where, field="planning_mask")
    lp, pm = _flat_tokens(table, "logprobs", lengths, np.float64), _flat_tokens(table, "planning_mask", lengths, bool)
    if lp is None:
        return (float("nan"),) * 3
    both = lp[1] & pm[1]
    v, p = lp[0][both], pm[0][both]
    n_plan = int(p.sum())
    today = v[reference_token_sample(v.size, n_plan, step)]
    rest = v[~p]
    candidate = rest[reference_token_sample(rest.size, n_plan, step)]
    var_plan = float(v[p].var()) if n_plan > 1 else 0.0
    n_match = (min(rest.size, max(1, round(n_plan * float(rest.var()) / var_plan))) if var_plan > 0 and rest.size
               else min(rest.size, n_plan))
    matched = rest[reference_token_sample(rest.size, n_match, step)]
    return tuple(perplexity(x) if x.size else float("nan") for x in (today, candidate, matched))


def run_curves(run_dir: Path) -> tuple:
    """(v2's metrics, v3's, the matched one's): `metrics.parquet`'s columns with `ppl_reference` and
    `rel_ppl_reference` of each reading (`step_perplexities`). InputError when the file's reference is neither the
    recomputed v2 nor v3 one."""
    import pandas as pd

    from hicra.dynamics.metrics import relative_perplexity
    from hicra.dynamics.records import iter_steps

    path = run_dir / "metrics.parquet"
    if not path.is_file():
        raise InputError("no metrics.parquet (run `hicra analyze` on it first)", path=str(path))
    df = pd.read_parquet(path).sort_values("step").reset_index(drop=True)
    today, candidate, matched = {}, {}, {}
    for step, table in iter_steps(run_dir, columns=("step", "logprobs", "planning_mask")):
        today[step], candidate[step], matched[step] = step_perplexities(table, step, str(run_dir / "rollouts"))
    steps = df["step"].astype(int).tolist()
    if sorted(today) != sorted(steps):
        raise InputError("the rollouts' steps differ from metrics.parquet's", path=str(path), field="step")
    theirs = pd.to_numeric(df["ppl_reference"], errors="coerce").to_numpy(dtype=np.float64)
    if not any(np.allclose([ppl[s] for s in steps], theirs, rtol=1e-9, equal_nan=True) for ppl in (today, candidate)):
        mine = np.array([candidate[s] for s in steps])
        bad = int(np.flatnonzero(~np.isclose(mine, theirs, rtol=1e-9, equal_nan=True))[0])
        raise InputError(f"the file's ppl_reference {theirs[bad]:.6g} at step {steps[bad]} is neither the recomputed v3 "
                         f"reference ({mine[bad]:.6g}) nor the v2 one ({today[steps[bad]]:.6g})", path=str(path),
                         field="ppl_reference")
    out = []
    for ppl in (today, candidate, matched):
        alt = df.copy()
        alt["ppl_reference"] = [ppl[s] for s in steps]
        alt["rel_ppl_reference"] = relative_perplexity(alt["ppl_reference"].to_numpy(dtype=np.float64))
        out.append(alt)
    return tuple(out)


SAVED_FORMAT = "hicra-reference-guard-1"


def save_curves(path: Path, run_dir: Path, curves: tuple) -> None:
    """Write one run's three readings to `path` (JSON, atomic): the v2 reading's metric columns of
    `_SUMMARY_METRICS` and `rel_ppl_reference` of the v3 ("candidate") and matched readings."""
    import json

    from hicra.fileio import write_text
    from hicra.study.runner import _SUMMARY_METRICS

    def floats(column) -> list:  # JSON has no NaN: a non-finite value is written as null
        return [float(v) if np.isfinite(v) else None for v in column.astype(float)]

    df = curves[0]
    cols = {c: floats(df[c]) for c in _SUMMARY_METRICS if c in df.columns}
    for name, m in zip(("candidate", "matched"), curves[1:], strict=True):
        cols[f"rel_ppl_reference_{name}"] = floats(m["rel_ppl_reference"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps({"format": SAVED_FORMAT, "run": str(run_dir), "columns": cols}) + "\n")


def load_curves(path: Path) -> tuple:
    """A file of `save_curves` -> the three readings' metric columns (dicts of arrays). InputError naming the
    file when it is not one."""
    import json

    try:
        saved = json.loads(path.read_text())
        if saved.get("format") != SAVED_FORMAT:
            raise InputError(f"format {saved.get('format')!r}, expected {SAVED_FORMAT!r}", path=str(path),
                             field="format")
        cols = {k: np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
                for k, vals in saved["columns"].items()}
        base = {k: v for k, v in cols.items() if not k.startswith("rel_ppl_reference_")}
        out = [base]
        for name in ("candidate", "matched"):
            out.append({**base, "rel_ppl_reference": cols[f"rel_ppl_reference_{name}"]})
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
        raise InputError(f"not a saved curves file ({type(exc).__name__}: {exc})", path=str(path)) from None
    return tuple(out)


def _iv(iv) -> str:
    return "-" if not iv or iv[0] is None else f"[{iv[0]:g}, {iv[1]:g}]"


def describe(out: dict) -> str:
    o = out["evidence"]["order"]
    draws = ", ".join(f"{k} {o['consolidates_in_draws'][k]:.2f}" for k in CLASSES)
    noise = ", ".join(f"{k} {o['noise_sd'][k]:.4f}" for k in CLASSES) if "noise_sd" in o else "-"
    plan = out["evidence"]["consolidation"]["planning"]
    p = f"planning p {plan['p_value']:.3f} ({plan.get('n_null', '-')} draws)" if plan.get("tested") else \
        "planning untested"
    return (f"order {out['order']}; {p}; consolidates in draws: {draws}; noise SD {noise}; "
            f"plan - exec {_iv(o['intervals'].get('plan_minus_exec'))}, "
            f"plan - ref {_iv(o['intervals'].get('plan_minus_ref'))}")


def main(argv=None) -> int:
    from hicra.dynamics.phases import PhaseConfig, detect_phases, detect_phases_pooled

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--n-boot", type=int, default=999)
    ap.add_argument("--save", type=Path, help="write each run directory's readings to DIR/NAME.json")
    args = ap.parse_args(argv)
    cfgs = [PhaseConfig(n_boot=args.n_boot, version=v) for v in VERSIONS]
    try:
        readings = [load_curves(r) if r.is_file() else run_curves(r) for r in args.runs]
    except InputError as e:
        print(f"reference_guard: error: {e}", file=sys.stderr)
        return 2
    if args.save is not None:
        for run, curves in zip(args.runs, readings, strict=True):
            if not run.is_file():
                save_curves(args.save / f"{run.resolve().name}.json", run, curves)
    for run, curves in zip(args.runs, readings, strict=True):
        df = curves[0]
        share = float(np.nanmedian(df["planning_ratio"])) if "planning_ratio" in df else float("nan")
        print(f"{run} ({len(df['step'])} steps, median planning share {share:.3f})")
        for name, m, cfg in zip(NAMES, curves, cfgs, strict=True):
            print(f"  {name:<26} {describe(detect_phases(m, cfg))}")
    if len(readings) >= 2:
        print(f"pooled over {len(readings)} runs")
        for i, (name, cfg) in enumerate(zip(NAMES, cfgs, strict=True)):
            print(f"  {name:<26} {describe(detect_phases_pooled([c[i] for c in readings], cfg))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
