"""Verbs `hicra anchors` (counterfactual sentence importance) and `hicra graphs` (hidden-state reasoning graphs)
over the model snapshots of a run directory. Heavy imports happen inside the functions."""

from __future__ import annotations

import os

from hicra.errors import InputError


def _steps(text: str | None) -> list[int] | None:
    """`--steps` as typed ("10,20,50"); checked in `_check` so that a bad value is one line, not the usage."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"expected steps like 10,20,50, got {text!r}", field="--steps") from None
    if not values or any(v < 0 for v in values):
        raise InputError(f"expected non-negative integers like 10,20,50, got {text!r}", field="--steps")
    return values


def _common(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--steps", metavar="S[,S]", help="checkpoint steps (default: every "
                   "checkpoints/step_NNNNNN/ snapshot)")
    p.add_argument("--n", type=int, default=32, help="held-out problems, the first N in the run's order (default 32)")
    p.add_argument("--max-new-tokens", type=int, help="response budget in tokens (default: the run config's)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: the run config's, else 1)")
    p.add_argument("--split", choices=("lines", "sentences"), default="lines",
                   help="sentence split: lines (lab responses, default) or sentences (free text)")
    p.add_argument("--batch-size", type=int, default=256, help="sequences per sampling batch (default 256)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the intervals (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed (default 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the run config's, else 1)")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default) or cuda[:N]; tokens are "
                   "drawn on the CPU from the same seeds either way")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no per-step lines")


def register(subparsers) -> None:
    a = subparsers.add_parser(
        "anchors", help="counterfactual sentence importance over a run's checkpoints",
        description="For each checkpoint: one response per held-out problem, split into sentences; for each "
        "sentence, K continuations keeping it vs K whose regenerated sentence differs; importance = accuracy "
        "difference, plus the total-variation distance of the final answers; by sentence class (answer / "
        "planning / execution / other) with bootstrap intervals over problems. Writes anchors.parquet, anchors.json, anchors.png and a "
        "report.html section in RUN_DIR (docs/mechanistic.md).")
    _common(a)
    a.add_argument("--k", type=int, default=8, help="continuations per arm (default 8)")
    a.add_argument("--max-tries", type=int, default=4, help="draws allowed per resampled continuation (default 4)")
    a.add_argument("--round", type=int, dest="round_size", help="adaptive rounds: continuations added per arm "
                   "and round (default K/2)")
    a.add_argument("--no-adaptive", action="store_true", help="always K per arm (no early stopping)")
    a.add_argument("--differ", choices=("meaning", "text"), default="meaning",
                   help="a regenerated sentence counts as different when its meaning differs (default; for lab "
                        "runs a paraphrase of the same strategic move is the same sentence) or when its text does")
    a.add_argument("--level", type=float, default=0.95, help="interval level for stopping and summaries (0.95)")
    a.set_defaults(func=run_anchors_cmd)

    g = subparsers.add_parser(
        "graphs", help="hidden-state reasoning graphs (cycles, diameter, small-world) over a run's checkpoints",
        description="For each checkpoint: sample responses, take the hidden state at each sentence end, cluster "
        "all sentences with k-means, read each response as a walk over clusters; per response cycles (revisits) "
        "and diameter, per checkpoint the small-world index omega of the pooled graph. Writes graphs.parquet, "
        "graphs.json, graphs.png and a report.html section in RUN_DIR (docs/mechanistic.md).")
    _common(g)
    g.add_argument("--layer", type=int, default=-1, help="hidden_states index: 0 = embeddings, -1 = last (default)")
    g.add_argument("--samples", type=int, default=2, help="responses per problem (default 2)")
    g.add_argument("--clusters", type=int, default=16, help="k of k-means (default 16)")
    g.add_argument("--niter", type=int, default=1, help="omega: rewirings per edge (default 1)")
    g.add_argument("--nrand", type=int, default=2, help="omega: random/lattice reference graphs (default 2)")
    g.add_argument("--omega-boot", type=int, default=100,
                   help="omega's interval: bootstrap replicates resampling problems, ~0.1 s each (default 100; "
                        "0: no interval)")
    g.set_defaults(func=run_graphs_cmd)


def _at_least_1(args, names) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"must be >= 1, got {value}", field="--" + name.replace("_", "-"))


def _check(args) -> None:
    """The flags common to both verbs, named as typed; `--steps` becomes a list. `--threads`, `--max-new-tokens`
    and `--temperature` are checked where the run config's defaults are resolved (`run._sampling`), for the
    Python API too."""
    _at_least_1(args, ("n", "batch_size", "n_boot"))
    if args.seed < 0:
        raise InputError(f"must be >= 0, got {args.seed}", field="--seed")
    args.steps = _steps(args.steps)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_anchors_cmd(args) -> int:
    _check(args)
    _at_least_1(args, ("k", "max_tries"))
    if args.round_size is not None and not 1 <= args.round_size <= args.k:
        raise InputError(f"must be in [1, --k = {args.k}], got {args.round_size}", field="--round")
    if not 0 < args.level < 1:
        raise InputError(f"must be in (0, 1), got {args.level}", field="--level")
    from hicra.mechanistic.anchors import AnchorsConfig
    from hicra.mechanistic.run import run_anchors

    cfg = AnchorsConfig(k=args.k, max_tries=args.max_tries, round_size=args.round_size,
                        adaptive=not args.no_adaptive, level=args.level, split=args.split, seed=args.seed,
                        differ=args.differ)
    run_anchors(args.run_dir, args.steps, args.n, cfg, args.max_new_tokens, args.temperature, args.batch_size,
                args.n_boot, args.threads, progress=not args.quiet, log=(lambda *_: None) if args.quiet else print,
                device=args.device)
    return 0


def run_graphs_cmd(args) -> int:
    _check(args)
    _at_least_1(args, ("samples", "clusters", "niter", "nrand"))
    if args.omega_boot < 0:
        raise InputError(f"must be >= 0, got {args.omega_boot}", field="--omega-boot")
    from hicra.mechanistic.graphs import GraphsConfig
    from hicra.mechanistic.run import run_graphs

    cfg = GraphsConfig(samples=args.samples, clusters=args.clusters, layer=args.layer, niter=args.niter,
                       nrand=args.nrand, omega_boot=args.omega_boot, split=args.split,
                       batch_size=min(args.batch_size, 64), seed=args.seed)
    run_graphs(args.run_dir, args.steps, args.n, cfg, args.max_new_tokens, args.temperature, args.batch_size,
               args.n_boot, args.threads, progress=not args.quiet, log=(lambda *_: None) if args.quiet else print,
               device=args.device)
    return 0
