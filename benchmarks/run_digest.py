"""One line per lab run: its phase verdict, each class's consolidation, greedy held-out accuracy at both ends and
the held-out strategy change, read from files the run already wrote.

    python benchmarks/run_digest.py RUN [RUN ...] [--json FILE]

RUN is either a `hicra lab` run directory (its `summary.json` and `eval.json`) or a study run summary
(`SUMMARIES/CELL/ARM/wsW-seedS.json`, format `hicra-study-run/1`, as `hicra study` writes it). Nothing is
recomputed: the figures are the run's own phase verdict (`hicra.dynamics.phases`, the rules version it was read by)
and evaluation.

RUN may also be a cached warm start (a directory holding `warm_start.json`, e.g. `CACHE/warmstart-KEY` under a
study's `--cache`): its line gives the key, the warm-start seed, the corpus knobs (`hicra.lab.presets.KNOBS`) and
the build's wall time in seconds (`warm_start.json` fields `key`, `config.seed`, `seconds`, `threads`), which the
summaries do not carry.

Printed per run (and written to FILE with --json, one entry per run, keyed by the path as given):
- `verdict` and `order` (`phases.verdict`, `phases.order`);
- per class (execution, planning, reference): whether its relative perplexity consolidates (a fall that flattens),
  its fitted end of fall `tau` (step) and the share of the resampling draws in which it consolidates
  (`phases.evidence.order`);
- greedy held-out accuracy at the warm start and at the end (`eval.warm_start`, `eval.final`; a fraction in the
  JSON, printed in %);
- a study run's wall time in seconds (the summary's `seconds`; a lab run directory does not record it: None);
  with two study runs or more, a closing line gives their range, median and how many took at most --budget seconds;
- the held-out strategy entropy within families, change on complete problems with its 95% paired bootstrap
  interval and what the interval establishes (`hicra.stats.interval_reading`: rise, fall or -; the `controls3`
  exploration criteria count a rise) (`eval.strategy_change`, `hicra.lab.probes.heldout_strategy_change`; absent
  without `--strategy-k`).

This is how the pilot tables and the `controls3` progress table in docs/study.md are filled. A path that is not a
run, or a file that cannot be parsed: one line naming it and the field, exit code 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from hicra.errors import InputError
from hicra.fileio import read_json, write_json
from hicra.lab.presets import KNOBS
from hicra.stats import interval_reading

CLASSES = ("execution", "planning", "reference")
_TAU = {"execution": "tau_exec", "planning": "tau_plan", "reference": "tau_ref"}


def _load(path: Path, what: str) -> dict:
    if not path.exists():
        raise InputError(f"no {what}", path=str(path))
    return read_json(path, what)  # unreadable, not UTF-8, bad JSON, not an object: its one-line errors


def read_run(path: Path) -> tuple[dict, dict, str, float | None]:
    """(phases, eval, source, seconds) of a lab run directory (seconds None) or a study run summary; InputError
    otherwise."""
    seconds = None
    if path.is_dir():
        phases = _load(path / "summary.json", "summary.json (not a hicra lab run directory)").get("phases")
        evals = _load(path / "eval.json", "eval.json")
        source = str(path / "summary.json")
    else:
        data = _load(path, "file")
        if not str(data.get("format", "")).startswith("hicra-study-run/"):
            raise InputError("not a study run summary (format hicra-study-run/N)", path=str(path), field="format")
        phases, evals, source, seconds = data.get("phases"), data.get("eval"), str(path), data.get("seconds")
    if not isinstance(phases, dict):
        raise InputError("no phase verdict", path=source, field="phases")
    if not isinstance(evals, dict):
        raise InputError("no held-out evaluation", path=str(path), field="eval")
    return phases, evals, source, seconds


def warm_start_digest(path: Path) -> dict:
    """The build record of a cached warm start directory (`warm_start.json`); InputError names a missing field."""
    data = _load(path / "warm_start.json", "warm_start.json")
    config = data.get("config")
    if not isinstance(config, dict):
        raise InputError("no build settings", path=str(path / "warm_start.json"), field="config")
    for field in ("key", "seconds"):
        if data.get(field) is None:
            raise InputError("missing", path=str(path / "warm_start.json"), field=field)
    return {"source": str(path / "warm_start.json"), "warm_start_key": data["key"], "seed": config.get("seed"),
            "knobs": {k: config.get(k) for k in KNOBS}, "build_seconds": float(data["seconds"]),
            "threads": data.get("threads")}


def digest(path: Path) -> dict:
    """The digest of one run (the fields listed in the module docstring), or of a warm start's build."""
    if path.is_dir() and (path / "warm_start.json").exists():
        return warm_start_digest(path)
    phases, evals, source, seconds = read_run(path)
    order = ((phases.get("evidence") or {}).get("order")) or {}
    draws = order.get("consolidates_in_draws") or {}
    consolidates = order.get("consolidates") or {}
    classes = {c: {"consolidates": consolidates.get(c), "tau": order.get(_TAU[c]),
                   "share_of_draws": draws.get(c)} for c in CLASSES}
    greedy = {}
    for end in ("warm_start", "final"):
        acc = (evals.get(end) or {}).get("accuracy")
        if acc is None:
            raise InputError("no greedy accuracy", path=str(path), field=f"eval.{end}.accuracy")
        greedy[end] = float(acc)
    change = evals.get("strategy_change")
    heldout = None if change is None else {
        "Hfam_complete_change": change.get("Hfam_complete_change"),
        "Hfam_complete_interval": change.get("Hfam_complete_interval"), "n_complete": change.get("n_complete"),
        "Hfam_change": change.get("Hfam_change"), "Hfam_interval": change.get("Hfam_interval"),
        "reading": change.get("reading")}
    return {"source": source, "phase_version": phases.get("version"), "verdict": phases.get("verdict"),
            "order": phases.get("order"), "classes": classes, "greedy_accuracy": greedy,
            "heldout_strategies": heldout, "seconds": seconds}


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def line(name: str, d: dict) -> str:
    if "warm_start_key" in d:
        knobs = ", ".join(f"{k} {v}" for k, v in d["knobs"].items())
        return (f"{name}: warm start {d['warm_start_key']} (seed {d['seed']}; {knobs}): built in "
                f"{d['build_seconds']:.0f} s on {d['threads']} thread(s)")
    cls = "; ".join(f"{c[:4]} {'yes' if v['consolidates'] else 'no'} tau {_fmt(v['tau'], '.0f')} "
                    f"draws {_fmt(v['share_of_draws'], '.2f')}" for c, v in d["classes"].items())
    g = d["greedy_accuracy"]
    text = (f"{name}: {d['verdict']} ({d['order']}); {cls}; greedy {100 * g['warm_start']:.1f}% -> "
            f"{100 * g['final']:.1f}%")
    h = d["heldout_strategies"]
    if h and h["Hfam_complete_change"] is not None:
        interval = h["Hfam_complete_interval"]
        lo, hi = interval or (None, None)
        reading = interval_reading(interval) if interval else "-"
        text += (f"; held-out H|fam complete {h['Hfam_complete_change']:+.3f} [{_fmt(lo, '+.3f')}, "
                 f"{_fmt(hi, '+.3f')}] ({h['n_complete']} problems, {reading})")
    if d["seconds"] is not None:
        text += f"; {d['seconds']:.0f} s"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path,
                    help="hicra lab run directories, study run summaries or cached warm-start directories")
    ap.add_argument("--json", type=Path, help="write the digests to this file (atomically)")
    ap.add_argument("--budget", type=float, default=240.0,
                    help="seconds a run may take, for the closing line over study runs (default 240: the lab "
                         "issue's budget for a default run on one core)")
    args = ap.parse_args(argv)
    try:
        out = {str(p): digest(p) for p in args.runs}
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, d in out.items():
        print(line(name, d))
    seconds = sorted(d["seconds"] for d in out.values() if d.get("seconds") is not None)
    if len(seconds) > 1:
        print(f"wall time of {len(seconds)} study runs: {seconds[0]:.0f}-{seconds[-1]:.0f} s, median "
              f"{statistics.median(seconds):.0f} s; {sum(x <= args.budget for x in seconds)} within {args.budget:g} s")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
