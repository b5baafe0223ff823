"""`analyze_run`: run directory -> metrics.parquet/.csv, summary.json, dynamics.png, report.html.

Inputs are only read (the rollouts and run.json are never modified); every output is written to a temp name and
renamed. The lexicon comes from the argument, else run.json's "lexicon" (a preset name or a path, relative paths
resolved against the run directory), else the "paper" preset. A tokenizer (argument, else run.json's
"tokenizer") is loaded only to recompute planning masks that the records lack.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hicra.dynamics.metrics import (
    DEFAULT_QUANTILES,
    METRIC_COLUMNS,
    compute_metrics,
    exploration_groups,
    outcome_groups,
    write_metrics,
)
from hicra.dynamics.phases import (
    PhaseConfig,
    detect_phases,
    detect_phases_pooled,
    exploration_column,
    upgrade_phases,
)
from hicra.dynamics.records import Problem, iter_steps, list_rollout_files, read_run_info, run_file
from hicra.errors import InputError
from hicra.fileio import check_writable, load_tokenizer, read_json, write_json


def _resolve_lexicon(spec, run_dir: Path):
    from hicra.planning.lexicon import Lexicon

    if spec is None:
        return Lexicon.preset("paper")
    if isinstance(spec, Lexicon):
        return spec
    path = Path(str(spec))
    if not path.is_absolute() and (run_dir / path).exists():
        path = run_dir / path
        return Lexicon.load(path)
    try:
        return Lexicon.resolve(str(spec))
    except (ValueError, OSError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot load lexicon: {exc}", field="lexicon") from None


def run_lexicon(run_dir: Path, named: str):
    """The lexicon run.json's "lexicon" names: the run directory's own copy first, else the path as written
    (`records.run_file`), else the preset of that name. InputError naming run.json when it is none of these: a
    relative name never resolves against the working directory, so a run missing its copy cannot silently read
    another one's."""
    from hicra.planning.lexicon import Lexicon

    local = run_file(run_dir, named)
    if local is not None and local.is_file():
        return _resolve_lexicon(local, run_dir)
    if named in Lexicon.presets():
        return Lexicon.preset(named)
    raise InputError(f"names lexicon {named!r}, which is neither in the run directory nor at that path",
                     path=str(run_dir / "run.json"), field="lexicon")


def _tokenizer_path(spec, run_dir: Path) -> Path:
    """run.json's or the user's tokenizer path: a relative one is taken from the run directory if it is there,
    else from the working directory (where a user typing `--tokenizer DIR` means it)."""
    path = Path(spec)
    return run_dir / path if not path.is_absolute() and (run_dir / path).exists() else path


def _load_tokenizer(spec, run_dir: Path, required: bool, failures: list[str] | None = None):
    """A tokenizer from a local directory, or None. `required`: the user named it, so failures are errors;
    otherwise (run.json's tokenizer) a failure returns None and its message is appended to `failures`, for the
    summary's notes."""
    if spec is None:
        return None
    if not isinstance(spec, (str, os.PathLike)):
        return spec  # already a tokenizer object
    try:
        return load_tokenizer(_tokenizer_path(spec, run_dir))
    except InputError as exc:
        if required:
            raise
        if failures is not None:
            failures.append(str(exc))
        return None


def _check_run_info(info: dict, run_dir: Path) -> None:
    """InputError naming run.json and the field when a field analysis reads has the wrong JSON type: "lexicon" and
    "tokenizer" are strings (a preset name or a path), "config" an object; null or absent is allowed."""
    for field, kind, what in (("lexicon", str, "a string"), ("tokenizer", str, "a string"),
                              ("config", dict, "an object")):
        value = info.get(field)
        if value is not None and not isinstance(value, kind):
            raise InputError(f"must be {what} or null, got {type(value).__name__} {value!r:.60}",
                             path=str(run_dir / "run.json"), field=field)


def _clean(value):
    """JSON-safe scalars: NaN -> None, numpy -> python."""
    if value is None or isinstance(value, (str, bool, dict, list, tuple)):
        return value
    import pandas as pd

    if pd.isna(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _examples(run_dir: Path, first: int, last: int, n: int = 2,
              labels: dict | None = None) -> dict[str, list[dict]]:
    """Example responses of the first and last steps; a converted run's steps also named by their source step."""
    from hicra.dynamics.report import pick_examples

    def name(step: int) -> str:
        label = (labels or {}).get(str(step))
        return f"{step}" + (f", source step {label}" if label is not None else "")

    out = {}
    cols = ["prompt_id", "sample_idx", "response", "correct", "error_type"]
    # validated: a row `--skip-invalid` left out of the analysis is not shown as an example either
    for step, table in iter_steps(run_dir, columns=cols, skip_invalid=True, steps={first, last}):
        if step == first:
            out[f"first step ({name(step)})"] = pick_examples(table, n)
        if step == last:
            out[f"last step ({name(step)})"] = pick_examples(table, n)
    return out


def analyze_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, lexicon=None,
                tokenizer=None, ks: Sequence[int] = (), quantiles: Sequence[float] = DEFAULT_QUANTILES,
                skip_invalid: bool = False, phase_config: PhaseConfig | None = None, report: bool = True,
                progress: bool = False) -> dict:
    """Analyse one run directory; write the outputs into `out_dir` (default: the run directory). Returns the
    summary dict (also written as summary.json)."""
    from hicra.planning.tagger import PlanningTagger

    config = _current_rules(phase_config)  # before any work
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    outputs = ("metrics.parquet", "metrics.csv", "summary.json", *(("dynamics.png", "report.html") if report else ()))
    for name in outputs:  # all of them before the work: a refusal leaves the earlier outputs a set, not a mix
        check_writable(out_dir / name, "out")
    info = read_run_info(run_dir)
    _check_run_info(info, run_dir)
    list_rollout_files(run_dir)  # fail early, with a clear message, when there is no rollouts/ folder
    named = info.get("lexicon")
    if lexicon is None and isinstance(named, str) and named:
        lex = run_lexicon(run_dir, named)
    else:
        lex = _resolve_lexicon(lexicon if lexicon is not None else named, run_dir)
    named_tok = info.get("tokenizer")
    # run.json's tokenizer: the run directory's copy, else the path it names if that exists, else none (never a
    # same-named folder in the working directory)
    tok_spec = tokenizer if tokenizer is not None else (
        run_file(run_dir, named_tok) if isinstance(named_tok, str) and named_tok else named_tok)
    required = tokenizer is not None
    if required and isinstance(tok_spec, (str, os.PathLike)) and not _tokenizer_path(tok_spec, run_dir).exists():
        raise InputError("tokenizer directory not found", path=str(tok_spec), field="tokenizer")
    tagger = PlanningTagger(lex)
    skipped: list[Problem] = []
    tok_failures: list[str] = []
    # the tokenizer is loaded only if some record lacks its planning mask
    counts: list = []
    df = compute_metrics(run_dir, tagger=tagger, quantiles=quantiles, ks=ks, skip_invalid=skip_invalid,
                         skipped=skipped, progress=progress, counts_out=counts,
                         load_tokenizer=functools.cache(lambda: _load_tokenizer(tok_spec, run_dir, required,
                                                                                tok_failures)))
    tok = tagger.tokenizer
    labels = (info.get("config") or {}).get("steps") if info.get("algorithm") == "converted" else None
    if isinstance(labels, dict) and labels:
        # a converted run's steps are checkpoint indices: keep each one's original value (name) beside it
        # as text, as `hicra convert` writes the names (a hand-edited number or list had failed the Parquet write)
        names = [labels.get(str(int(s))) for s in df["step"]]
        df.insert(1, "source_step", [v if v is None or isinstance(v, str) else json.dumps(v) for v in names])
    fmt = df.attrs.get("format_phrases", [])
    groups = outcomes = None
    if df["rel_ppl_execution"].isna().all():
        # text-only (no log-probabilities, or no planning masks): consolidation is untestable; the exploration
        # test resamples problems
        column, measure = exploration_column(df, config.min_steps)
        if measure is not None:
            groups = exploration_groups(counts, measure, excluded=fmt if column != "semantic_entropy" else ())
            outcomes = outcome_groups(counts)  # accuracy and length beside it, on the same problem bootstrap
    if progress:  # the phase tests can take as long as the metrics (a text-only run's problem resampling)
        print(f"analyze: phase tests on {len(df)} steps" + (", resampling problems" if groups else ""),
              file=sys.stderr, flush=True)
    phases = detect_phases(df, config, problem_groups=groups, problem_outcomes=outcomes)
    notes = []
    if tok_failures:
        notes.append(f"run.json's tokenizer did not load ({tok_failures[0]}), so planning masks could not be "
                     "recomputed")
    unmasked = int(df["n_unmasked_responses"].sum()) if "n_unmasked_responses" in df else 0
    if unmasked:
        partial = int(((df["n_unmasked_responses"] > 0) & df["planning_ratio"].notna()).sum())
        notes.append(f"planning masks absent from {unmasked} of {int(df['n_responses'].sum())} responses and no "
                     "tokenizer to recompute them (pass --tokenizer DIR): token-level planning metrics leave those "
                     "responses out" + (f", in {partial} step(s) computed from the other responses only"
                                         if partial else "") + ", and are null in steps with none masked")
    repeated = int(df["n_repeated_keys"].sum()) if "n_repeated_keys" in df else 0
    if repeated:
        notes.append(f"{repeated} response(s) repeat a (prompt_id, sample_idx) of an earlier response in their step, "
                     "in " + f"{int((df['n_repeated_keys'] > 0).sum())} step(s): a prompt drawn more than once in a "
                     "step; all of a step's responses to one prompt_id are read as one group (pass@k, problem "
                     "bootstrap)")
    if "ppl_all" not in df or df["ppl_all"].isna().all():
        notes.append("the records carry no log-probabilities: perplexities are unavailable and the order of "
                     "consolidation is untestable (verdict inconclusive); exploration is tested by resampling "
                     f"problems (given {config.min_steps} or more steps)")
    elif df["ppl_execution"].isna().all():
        notes.append("the records carry log-probabilities but no planning masks, and there is no tokenizer to "
                     "recompute them (pass --tokenizer DIR): execution and planning perplexities are unavailable "
                     "and the order of consolidation is untestable (verdict inconclusive); exploration is tested "
                     f"by resampling problems (given {config.min_steps} or more steps)")
    tokens = str((info.get("config") or {}).get("tokens") or "")
    if tokens.startswith("regex word proxy"):
        notes.append("tokens are hicra convert's word proxy (\\w+|[^\\w\\s]), not a model tokenizer's: lengths, "
                     "token counts and planning ratios are in those units (hicra convert --tokenizer DIR gives the "
                     "model's)")
    if isinstance(labels, dict) and labels:
        notes.append("a converted run: each step is a checkpoint index (its original value in the source_step "
                     "column), so checkpoints are treated as evenly spaced and every slope is per checkpoint")
    if df["entropy_all"].isna().all():
        notes.append("the records carry no token entropies: token entropy and fork-token overlap are unavailable")
    caution = (phases["evidence"].get("order") or {}).get("caution")
    if caution:  # the order stands by the rules, but its reader must see why it may not
        notes.append(f"the order {phases.get('order')} carries a caution: {caution}")
    rw = phases["evidence"].get("execution_response_weighted") or {}
    if rw.get("tested") and not rw.get("consolidates"):
        lengths = rw.get("mean_length")
        notes.append("execution consolidates in the pooled (token-weighted) perplexity but not with each response "
                     f"counted once (rel_ppl_execution_rw, p {rw['p_value']:.3g}): the fall may come from a change "
                     "in the mix of response lengths" + (f" (mean length {lengths[0]:.0f} -> {lengths[1]:.0f} tokens)"
                                                          if lengths else "") + "; read the consolidation with care")
    last = df.iloc[-1]
    summary = {
        "run": {k: info.get(k) for k in ("run_id", "algorithm", "alpha", "seed", "model", "task")} | {
            "run_id": info.get("run_id", run_dir.resolve().name)},
        "steps": int(len(df)),
        "first_step": int(df["step"].iloc[0]), "last_step": int(last["step"]),
        "n_responses": int(df["n_responses"].sum()), "n_tokens": int(df["n_tokens"].sum()),
        "lexicon": lex.name, "tokenizer": str(tok_spec) if tok is not None else None,
        "phases": phases,
        # phrases in >= 90% of the run's responses, left out of semantic_entropy_excl_format (hicra.dynamics.metrics)
        "format_phrases": fmt,
        "final": {c: _clean(last[c]) for c in METRIC_COLUMNS if c in df},
        "skipped": [str(p) for p in skipped],
        # converted foreign logs name their steps (model / checkpoint)
        "step_labels": (info.get("config") or {}).get("steps") if info.get("algorithm") == "converted" else None,
        "notes": notes,
    }
    # metrics and summary together, before the report: a report that fails leaves the two consistent
    write_metrics(df, out_dir)
    write_json(out_dir / "summary.json", _json_safe(summary))
    if report:
        from hicra.dynamics.report import write_report

        examples = _examples(run_dir, int(df["step"].iloc[0]), int(last["step"]),
                             labels=labels if isinstance(labels, dict) else None)
        write_report(out_dir, summary, df, examples=examples, tagger=tagger)
    summary["_metrics"] = df  # for callers in Python (not written)
    return summary


def read_phases(run_dir: str | os.PathLike) -> dict | None:
    """`summary.json["phases"]` of an analysed run directory in the v2 shape (`upgrade_phases`: a v1 summary's
    consolidation end becomes None, since v1 never tested the order); None when the run has no summary.json.
    InputError (one line) for a summary that is not a JSON object or whose "phases" is not an object."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    phases = read_json(path, "summary.json").get("phases") or {}
    if not isinstance(phases, dict):
        raise InputError("'phases' is not an object", path=str(path), field="phases")
    return upgrade_phases(phases)


def _current_rules(config: PhaseConfig | None) -> PhaseConfig:
    """`config` (default PhaseConfig()), which must carry today's rules version: the metrics computed here draw the
    reference class as today's version does (`hicra.dynamics.metrics.REFERENCE_DRAW`), and older rules on them
    would be a verdict of neither version. ValueError otherwise."""
    config = config or PhaseConfig()
    if config.version != PhaseConfig().version:
        raise ValueError(f"phase verdict rules v{config.version} read only the curves of summaries made by that "
                         f"version; metrics computed now draw the reference class as v{PhaseConfig().version} does")
    return config


def pool_runs(summaries: Sequence[dict], out_dir: str | os.PathLike,
              phase_config: PhaseConfig | None = None) -> dict:
    """Pool analysed runs (seeds): `pooled_summary.json` with the pooled verdict and intervals."""
    try:
        pooled = detect_phases_pooled([s["_metrics"] for s in summaries], _current_rules(phase_config))
    except ValueError as exc:  # e.g. runs that share no steps: one line, the per-run outputs stay
        raise InputError(f"cannot pool the runs: {exc}", field="RUN_DIR") from None
    out = {"runs": [s["run"]["run_id"] for s in summaries], "phases": pooled}
    write_json(Path(out_dir) / "pooled_summary.json", _json_safe(out))
    return out


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return _clean(obj)
