"""`hicra eval`: grade existing responses, a benchmark's own gold solutions, or samples from a local model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = """\
Three modes, each writing OUT/results.json (per item `correct`: booleans in response order; pass@1 and pass@k
per benchmark and overall) and, as a run directory, OUT/run.json + OUT/rollouts/ for `hicra analyze`:
  hicra eval --responses FILE.jsonl --out DIR     grade existing responses (lines: id, problem, answer,
                                                 responses: list of str; rename fields with --*-field)
  hicra eval --model DIR --bench math500,gsm8k --n 4 --k 4 --out DIR      sample and grade
  hicra eval --gold --bench math500 --out DIR     grade each benchmark's own gold solution (grader check)
Benchmarks: math500, aime24, amc23, minerva_math, olympiadbench, gsm8k (read from --data-dir, default
$HICRA_SHARED_DATA, else ../shared/data), or any FILE.jsonl with --problem-field/--answer-field/--id-field/
--answer-from."""


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="grade math responses with math-verify; pass@1 and pass@k",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--responses", metavar="FILE", help="JSONL of existing responses to grade (no model)")
    src.add_argument("--model", metavar="DIR", help="local Hugging Face model directory to sample from")
    src.add_argument("--gold", action="store_true", help="grade the benchmarks' own gold solutions")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--bench", metavar="NAME[,NAME]", help="benchmarks for --model / --gold")
    p.add_argument("--data-dir", metavar="DIR", help="data root (default: $HICRA_SHARED_DATA, else ../shared/data)")
    p.add_argument("--limit", type=int, help="first L problems of each benchmark")
    p.add_argument("--n", type=int, default=1, help="samples per problem (default 1)")
    p.add_argument("--k", type=int, help="k of pass@k (default: n, or the responses per line)")
    p.add_argument("--engine", choices=["auto", "transformers", "vllm"], default="auto",
                   help="generation engine (auto: vLLM when installed, else transformers)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--batch-size", type=int, default=8, help="transformers generation batch size")
    p.add_argument("--seed", type=int, default=0)
    for field in ("id", "problem", "answer", "responses"):
        p.add_argument(f"--{field}-field", default=field, metavar="NAME",
                       help=f"field holding the {field} in --responses or a --bench FILE.jsonl (default '{field}')")
    p.add_argument("--solution-field", metavar="NAME", help="worked-solution field of a --bench FILE.jsonl (--gold)")
    p.add_argument("--answer-from", choices=["field", "boxed", "gsm8k", "list"], default="field",
                   help="how a --bench FILE.jsonl holds its gold answer: the answer field as is, the last \\boxed{} "
                        "in it, the text after '####' in it, or a list (default: field)")
    p.add_argument("--tokenizer", metavar="DIR",
                   help="with --responses: tokenizer to fill the rollout rows' token ids (for `hicra analyze`)")
    p.set_defaults(func=run)


def _benches(args) -> list[str]:
    from hicra.errors import InputError

    if not args.bench:
        raise InputError("--bench is required with --model and --gold", field="bench")
    return [b.strip() for b in args.bench.split(",") if b.strip()]


def _fields(args) -> dict:
    return {"problem": args.problem_field, "answer": args.answer_field, "id": args.id_field,
            "solution": args.solution_field, "answer_from": args.answer_from}


def _tokenize(items: list[dict], tokenizer_dir: str) -> None:
    """Fill `token_ids` of graded responses (no generation logprobs: those stay unknown)."""
    from hicra.fileio import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    for it in items:
        it["token_ids"] = [tok(r, add_special_tokens=False)["input_ids"] for r in it["responses"]]


def _check_out(out: Path) -> None:
    """InputError unless `out` is new, empty of rollouts, or an earlier evaluation's folder (one step, run.json's
    algorithm "eval": this evaluation replaces it whole). Another run's rollouts would stay beside this evaluation's
    step 0, under this evaluation's run.json (as `hicra convert` refuses)."""
    from hicra.dynamics.records import list_rollout_files, read_run_info
    from hicra.errors import InputError

    if not (out / "rollouts").is_dir() or not list_rollout_files(out):
        return
    try:
        earlier_eval = read_run_info(out).get("algorithm") == "eval"
    except InputError:
        earlier_eval = False
    if not earlier_eval or {step for step, _, _ in list_rollout_files(out)} != {0}:
        raise InputError("already holds another run's rollouts; evaluate into a new folder", path=str(out),
                         field="out")


def run(args) -> int:
    from hicra import evaluation as ev
    from hicra.errors import InputError

    for name in ("n", "k", "limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError("must be >= 1", field=name)
    if Path(args.out).exists() and not Path(args.out).is_dir():  # before any grading or generation
        raise InputError("exists and is not a directory", path=str(args.out), field="out")
    _check_out(Path(args.out))
    info = {"run_id": f"eval-{args.seed}", "algorithm": "eval", "alpha": None, "seed": args.seed,
            "model": args.model, "task": None, "lexicon": None, "config": {k: v for k, v in vars(args).items()
                                                                        if k != "func"}}
    if args.responses:
        items = ev.read_responses_file(args.responses, args.id_field, args.problem_field, args.answer_field,
                                       args.responses_field)
        k = args.k if args.k is not None else min(len(it["responses"]) for it in items)
        short = next((it for it in items if k > len(it["responses"])), None)
        if short is not None:
            raise InputError(f"--k {k} exceeds its {len(short['responses'])} responses (problem id {short['id']!r})",
                             path=str(args.responses), row=short["line"], field=args.responses_field)
        if args.tokenizer:  # before grading, so that a bad tokenizer fails fast
            _tokenize(items, args.tokenizer)
            info["tokenizer"] = str(Path(args.tokenizer).resolve())  # so `hicra analyze` can tag planning tokens
        results = ev.grade_items(items, k=k)
        info["task"] = str(args.responses)
    elif args.gold:
        items = []
        for bench in _benches(args):
            name, spec = ev.resolve_bench(bench, _fields(args))
            for it in ev.load_benchmark(name, args.data_dir, args.limit, spec=spec):
                if it["solution"] is not None:  # benchmarks without worked solutions have nothing to grade
                    items.append({**it, "responses": [it["solution"]]})
        if not items:
            raise InputError("no worked solutions to grade in these benchmarks (pass --solution-field for a "
                             "JSONL file)", field="bench")
        results = ev.grade_items(items, k=1)
        info["task"] = args.bench
    else:
        items, results = ev.evaluate_model(
            args.model, _benches(args), n=args.n, k=args.k, limit=args.limit, data_dir=args.data_dir,
            engine=args.engine, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
            top_p=args.top_p, seed=args.seed, fields=_fields(args),
            batch_size=args.batch_size)
        info["task"] = args.bench
        if Path(args.model).is_dir():  # a local model's tokenizer, for `hicra analyze` (a hub id is never fetched)
            info["tokenizer"] = str(Path(args.model).resolve())
    ev.write_results(args.out, items, results, info)
    summary = {name: {key: s[key] for key in ("n_items", "pass@1", "pass@k")}
               for name, s in results["benchmarks"].items()}
    print(json.dumps({"k": results["k"], "pass@1": results["pass@1"], "pass@k": results["pass@k"],
                      "benchmarks": summary}, indent=1), file=sys.stdout)
    return 0
