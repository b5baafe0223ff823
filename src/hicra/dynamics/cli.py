"""Verbs `hicra analyze` (metrics, phase verdict, report for run directories) and `hicra convert` (foreign logs ->
run directory). Heavy imports happen inside the functions so `hicra --help` stays fast."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hicra.errors import InputError


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,4,8, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("k must be >= 1")
    return values


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.2,0.3, got {text!r}") from None
    if not values or any(not 0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError("top-q values must be in (0, 1)")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help="metrics, phase verdict and report for run directories",
        description="Analyse run directories (DESIGN.md schema): write metrics.parquet/.csv, summary.json, "
        "dynamics.png and report.html. Inputs are never modified; outputs are written atomically. With several "
        "run directories (seeds), each is analysed and a pooled verdict is written to OUT/pooled_summary.json. "
        "A bad rollout row is an error (exit code 2) naming the file, the row, counted from 1 ('FILE, row N "
        "(1-based)', as hicra convert names a Parquet row), and the field.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the run directory; with several runs, "
                   "required: one sub-folder per run)")
    p.add_argument("--lexicon", help="preset name or lexicon JSON (default: run.json's, else 'paper')")
    p.add_argument("--tokenizer", metavar="DIR", help="local HF tokenizer to recompute absent planning masks "
                   "(default: run.json's 'tokenizer')")
    p.add_argument("--skip-invalid", action="store_true", help="skip bad rows/files, analyse the rest and list "
                   "what was skipped")
    p.add_argument("--k", type=_ints, action="append", default=[], metavar="K[,K]",
                   help="extra pass@k values (pass@k with k = group size is always computed)")
    p.add_argument("--top-q", type=_floats, default=[0.2, 0.3], metavar="Q[,Q]",
                   help="top-entropy shares for fork-token overlap (default 0.2,0.3)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--n-boot", type=int, default=999, help="bootstrap resamples (default 999)")
    p.add_argument("--no-report", action="store_true", help="skip dynamics.png and report.html")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_analyze)

    c = subparsers.add_parser(
        "convert", help="turn foreign logs into a run directory",
        description="Convert foreign logs into a run directory that `hicra analyze` reads.")
    csub = c.add_subparsers(dest="kind", metavar="KIND", required=True)
    r = csub.add_parser(
        "responses", help="responses with correctness labels (JSONL/Parquet files or folders) -> one step per "
        "model/checkpoint/training step",
        description="Flat rows {prompt, response, correct, model} or nested per-model objects (GSM8K "
        "model_solutions.jsonl); --preset verl reads verl's rollout dump (trainer.rollout_data_dir: input, output, "
        "score, step, acc), --preset trl TRL's completions log (OUTPUT_DIR/completions/*.parquet). Field names may "
        "hold {step} (the row's step value). Rows without an id are grouped by prompt text. Without --tokenizer, "
        "tokens are a regex word proxy (\\w+|[^\\w\\s]); log-probs and entropies are left unknown. A bad row is an "
        "error (exit code 2) naming the file, the row and the field; rows count from 1: a JSONL row is its line, "
        "'FILE:N', a Parquet row 'FILE, row N (1-based)', as hicra analyze names a row.",
        epilog="Example (a chat transcript whose response follows a line 'assistant', correctness under "
        "'<step>_correct'): hicra convert responses original/ --out run --response-field output "
        "--response-after assistant --correct-field '{step}_correct' --prompt-field problem --step-field step")
    r.add_argument("file", nargs="+", metavar="FILE_OR_DIR", help=".jsonl/.parquet files, or folders of them")
    r.add_argument("--out", required=True, metavar="RUN_DIR")
    r.add_argument("--lexicon", default="paper", help="preset name or lexicon JSON (default paper)")
    r.add_argument("--tokenizer", metavar="DIR", help="local HF tokenizer (default: regex word proxy)")
    r.add_argument("--preset", choices=["verl", "trl"], help="field map of a trainer's log: verl (output, input, "
                   "step, acc, score) or trl (completion, prompt, step, accuracy_reward >= 1)")
    r.add_argument("--response-field", metavar="NAME", help="field holding the response (default: response, "
                   "solution or completion)")
    r.add_argument("--correct-field", metavar="NAME", help="field holding the correctness label (default: correct "
                   "or is_correct)")
    r.add_argument("--score-field", metavar="NAME", help="numeric score field: the reward column, and with "
                   "--reward-threshold the correctness")
    r.add_argument("--reward-threshold", type=float, metavar="T", help="correct iff score >= T (instead of a "
                   "correctness field)")
    r.add_argument("--prompt-field", metavar="NAME", help="field holding the prompt (default: prompt, question or "
                   "problem); rows without an id are grouped by it")
    r.add_argument("--id-field", metavar="NAME", help="field holding the prompt id (default: prompt_id or id)")
    r.add_argument("--step-field", help="flat rows: field naming the model/checkpoint/step (default: the "
                   "preset's, else the first of model, step and checkpoint the rows hold); when named, every row "
                   "must have it. Steps are sorted by value when all are numbers, by the numbers in the names "
                   "when the names differ only in them (ckpt-50, ckpt-100), else kept in order of first "
                   "appearance; the rule used is printed")
    r.add_argument("--strategy-field", metavar="NAME", help="flat rows: field holding the strategy the response "
                   "executed (a string, strategies joined by '+', or a list of strings; null when unknown): written "
                   "to the rollouts' strategy column, so exploration is tested on strategy labels; when named, every "
                   "row must have it")
    r.add_argument("--response-after", metavar="LINE", help="the response is what follows the first line reading "
                   "exactly LINE in the response field (e.g. 'assistant' in a chat transcript)")
    r.add_argument("--models", help="comma-separated subset of models to keep")
    r.add_argument("--limit", type=int, metavar="N", help="read only the first N rows (N >= 1)")
    r.add_argument("--analyze", action="store_true", help="run `hicra analyze` on the result")
    r.add_argument("--quiet", action="store_true", help="no progress bar (the steps written are still listed)")
    r.set_defaults(func=run_convert)


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def _interval(iv) -> str:
    """[lo, hi] with null bounds (+-infinity in the JSON) written as -inf / +inf."""
    if not iv:
        return "n/a"
    lo, hi = iv
    return f"[{'-inf' if lo is None else f'{lo:.4g}'}, {'+inf' if hi is None else f'{hi:.4g}'}]"


def _order_line(ph: dict) -> str:
    o = ph["evidence"].get("order", {})
    taus = ", ".join(f"{k} {_fmt(o.get(k))} {_interval((o.get('intervals') or {}).get(k))}"
                     for k in ("tau_exec", "tau_plan", "tau_ref") if o.get(k) is not None)
    return f"order {ph['order']}" + (f" ({taus})" if taus else "")


def _exploration_line(ph: dict, unit: str = "step") -> str:
    e = ph["exploration"]
    if not e.get("tested"):
        return f"exploration ({e.get('measure') or 'no measure'}) not tested"
    return (f"exploration ({e['measure']}) {'detected' if e['detected'] else 'not detected'}: slope "
            f"{_fmt(e['slope'])} per {unit} {_interval(e['interval'])}")


def _print_summary(summary: dict, out: Path) -> None:
    from hicra.dynamics.report import confidence_text

    ph = summary["phases"]
    print(f"{summary['run']['run_id']}: {summary['steps']} steps, {summary['n_responses']} responses, "
          f"{summary['n_tokens']} tokens")
    print(f"  verdict: {ph['verdict']} (confidence {confidence_text(ph)}); consolidation end: "
          f"{_fmt(ph['consolidation_end_step'])}; exploration onset: {_fmt(ph['exploration_onset_step'])}")
    # a converted run's steps are checkpoint indices (steps taken at any spacing, read as evenly spaced)
    unit = "checkpoint" if summary.get("step_labels") else "step"
    print(f"  {_order_line(ph)}; {_exploration_line(ph, unit)}")
    ev = ph["evidence"]
    print(f"  {ev.get('summary', ev.get('reason', ''))}")
    for note in summary.get("notes", []):
        print(f"  note: {note}")
    print(f"  wrote {out}/metrics.parquet, metrics.csv, summary.json"
          + ("" if summary.get("_no_report") else ", dynamics.png, report.html"))


def run_analyze(args) -> int:
    from hicra.dynamics.analyze import analyze_run, pool_runs
    from hicra.dynamics.phases import PhaseConfig
    from hicra.dynamics.report import confidence_text

    if len(args.run_dirs) > 1 and not args.out:
        raise InputError("several run directories need --out DIR", field="--out")
    names = [Path(r).resolve().name for r in args.run_dirs]
    if len(args.run_dirs) > 1 and len(set(names)) < len(names):  # OUT/NAME would hold two runs' outputs
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"run directories share a folder name ({', '.join(twice)}): their outputs would "
                         "overwrite each other under --out", field="RUN_DIR")
    if not 99 <= args.n_boot <= 100_000:
        raise InputError(f"--n-boot must be between 99 and 100000, got {args.n_boot}", field="--n-boot")
    for run_dir in args.run_dirs:  # every input checked before any work, so nothing is half-written
        if not Path(run_dir).is_dir():
            raise InputError("not a directory", path=str(run_dir))
    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {args.seed}", field="--seed")
    config = PhaseConfig(n_boot=args.n_boot, seed=args.seed)
    ks = sorted({k for group in args.k for k in group})
    summaries = []
    for run_dir in args.run_dirs:
        run_dir = Path(run_dir)  # checked to be a directory above
        if args.out is None:
            out = run_dir
        elif len(args.run_dirs) == 1:
            out = Path(args.out)
        else:
            out = Path(args.out) / run_dir.resolve().name
        summary = analyze_run(run_dir, out, lexicon=args.lexicon, tokenizer=args.tokenizer, ks=ks,
                              quantiles=args.top_q, skip_invalid=args.skip_invalid, phase_config=config,
                              report=not args.no_report, progress=not args.quiet)
        summary["_no_report"] = args.no_report
        if summary["skipped"]:
            print(f"hicra analyze: skipped {len(summary['skipped'])} invalid input(s) in {run_dir}:",
                  file=sys.stderr)
            for s in summary["skipped"]:
                print(f"  {s}", file=sys.stderr)
        _print_summary(summary, out)
        summaries.append(summary)
    if len(summaries) > 1:
        pooled = pool_runs(summaries, args.out, config)
        ph = pooled["phases"]
        shared = ph["evidence"].get("shared_steps") or {}
        if shared and any(n != shared["n"] for n in shared["per_run"]):
            print(f"hicra analyze: the runs have {shared['per_run']} steps; pooled on the {shared['n']} steps all "
                  f"share ({shared['first']:g}-{shared['last']:g})", file=sys.stderr)
        ev = ph["evidence"]
        source = ev.get("consolidation_end_interval_source")
        print(f"pooled over {len(summaries)} runs: {ph['verdict']} (confidence {confidence_text(ph)}); "
              f"consolidation end {_fmt(ph['consolidation_end_step'])}, interval "
              f"{_interval(ev.get('consolidation_end_interval_over_runs'))}"
              + (f" (from {source})" if source else "") + f"; wrote {args.out}/pooled_summary.json")
        print(f"  {_order_line(ph)}; {_exploration_line(ph)}")
        caution = (ev.get("order") or {}).get("caution")
        if caution:
            print(f"  note: the pooled order carries a caution: {caution}")
    return 0


def run_convert(args) -> int:
    from hicra.dynamics.convert import convert_responses

    models = [m for m in args.models.split(",") if m] if args.models else None
    result = convert_responses(args.file, args.out, lexicon=args.lexicon, tokenizer=args.tokenizer,
                               preset=args.preset, response_field=args.response_field,
                               correct_field=args.correct_field, score_field=args.score_field,
                               reward_threshold=args.reward_threshold, prompt_field=args.prompt_field,
                               id_field=args.id_field, step_field=args.step_field,
                               response_after=args.response_after, models=models, limit=args.limit,
                               progress=not args.quiet, strategy_field=args.strategy_field)
    if result["skipped"]:  # a folder's other files and subfolders: not read, and said so
        names = ", ".join(result["skipped"][:5]) + (", ..." if len(result["skipped"]) > 5 else "")
        print(f"not read ({len(result['skipped'])}: not .jsonl or .parquet files): {names}")
    if result["unfinished"]:  # a log still being written: its last line has no end yet
        print(f"left out {result['unfinished']}: an unfinished last line (no line end, not JSON), as a log still "
              "being written has; convert again when it is complete")
    if result["unscored"]:  # TRL rows whose reward function returned None: no verdict, no row
        print(f"left out {len(result['unscored'])} row(s) whose score is NaN in TRL's log (the reward function "
              f"returned None), e.g. {result['unscored'][0]}")
    for name, earlier in result["repeated"].items():
        print(f"note: step {name} holds the same completions as step {earlier}, row for row"
              + (" (TRL logs its last generation batch at each logging step, so a batch that serves several "
                 "optimizer steps is logged at each: remove the later file to read it once)"
                 if args.preset == "trl" else ""))
    for step, name in result["steps"].items():
        print(f"step {step}: {name} ({result['rows'][name]} responses)")
    sizes = result["group_sizes"]
    if len(set(sizes.values())) > 1:  # e.g. evaluation batches among training ones
        listed = [f"{name} ({size})" for name, size in sizes.items()]
        why = {"trl": "; TRL's log keeps the last completions of training and evaluation alike, so with evaluation "
                      "during training a step can hold evaluation completions",
               "verl": "; a folder of verl's validation dumps is another run than its rollout dumps"}
        print("note: the steps differ in samples per prompt (step (most common number)): "
              f"{', '.join(listed[:8])}" + (", ..." if len(listed) > 8 else "") + why.get(args.preset, ""))
    rule = {"numeric": "by value", "numbers in the names": "by the numbers in their names",
            "first appearance": "in order of first appearance in the input (the names carry no common numbering)",
            "one step": ""}[result["step_order"]]
    if rule:
        print(f"steps ordered {rule}; each step is a checkpoint index, and `hicra analyze` treats the checkpoints "
              "as evenly spaced (trends are per checkpoint, not per training step)")
    print(f"wrote run directory {args.out}")
    if args.analyze:
        from hicra.dynamics.analyze import analyze_run

        summary = analyze_run(args.out, args.out, progress=not args.quiet)
        _print_summary(summary, Path(args.out))
    return 0
