"""Does a lab policy's one-by-one stop at the last term? Greedy responses (RL's token budget) on the held-out
series problems among the first `--n-eval`, those the checker parses as one-by-one, counted by number of terms n:
right, cut at the budget, and *ran past b* (a term line `t+d=z` with z beyond the last term b, or, without
written terms, a total line adding a term beyond b); with the stop check (`stop_check`), how many of its distance
lines are wrong.

    python benchmarks/lab_stops.py [--model WS_DIR | --preset quick --warm-start-seed 0] [--n-eval 256]

Why: under the session-18 presets, some warm-start seeds write one-by-one past the last term until the budget cuts
them, which decided their greedy accuracy (docs/lab.md, "A local stop for one-by-one").
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def ran_past(problem, lines) -> bool:
    """Whether a one-by-one response's computation lines (x, op, y, z) reach a term beyond the last term b."""
    a, d, b = (problem.data[k] for k in ("a", "d", "b"))
    written = any(op == "+" and d in (x, y) and z > b for x, op, y, z in lines)
    in_head = any(op == "+" and y > b and (y - a) % d == 0 for x, op, y, z in lines)
    return written or in_head


def main() -> None:
    from lab_errors import greedy_heldout, policy_args  # benchmarks/ is on sys.path when run as a script

    from hicra.lab.tasks.base import apply_op, computation_lines

    ap = argparse.ArgumentParser()
    policy_args(ap)
    args = ap.parse_args()
    model_dir, ws, task, problems, texts, cuts = greedy_heldout(args, family="series")
    counts: Counter = Counter()
    for p, text, cut in zip(problems, texts, cuts, strict=True):
        r = task.check(p, text)
        n = p.data["n"]
        counts[(n, "series")] += 1
        if r.strategy != "one-by-one":
            continue
        counts[(n, "one-by-one")] += 1
        counts[(n, "right")] += r.correct
        counts[(n, "cut")] += cut
        lines = computation_lines(text)
        counts[(n, "ran past b")] += ran_past(p, lines)
        distances = [(x, op, y, z) for x, op, y, z in lines if op == "-"]  # the stop check's lines, if any
        counts[(n, "distance lines")] += len(distances)
        counts[(n, "wrong")] += sum(apply_op(x, op, y) != z for x, op, y, z in distances)
    print(f"model {model_dir}; greedy at RL's token budget, held-out series problems of the first "
          f"{args.n_eval}")
    cols = ("series", "one-by-one", "right", "cut", "ran past b")
    print(f"{'n':>4}" + "".join(f"{c:>12}" for c in cols))
    for n in sorted({n for n, _ in counts}):
        print(f"{n:>4}" + "".join(f"{counts[(n, c)]:>12}" for c in cols))
    tot: Counter = Counter()
    for (_, k), v in counts.items():
        tot[k] += v
    print(f"{'all':>4}" + "".join(f"{tot[c]:>12}" for c in cols))
    if tot["one-by-one"]:
        print(f"one-by-one responses that ran past b: {tot['ran past b'] / tot['one-by-one']:.1%}; "
              f"cut: {tot['cut'] / tot['one-by-one']:.1%}; right: {tot['right'] / tot['one-by-one']:.1%}")
    if tot["distance lines"]:
        print(f"distance lines (stop check) wrong: {tot['wrong']} of {tot['distance lines']} "
              f"({tot['wrong'] / tot['distance lines']:.1%})")


if __name__ == "__main__":
    main()
