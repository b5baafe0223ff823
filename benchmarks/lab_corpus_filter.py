"""What the warm start's length filter takes out of its corpus, by strategy and problem size.

    python benchmarks/lab_corpus_filter.py [--preset quick] [--warm-start-seed 0] [--series show_count=1] --tokenizer DIR

Builds the preset's warm-start corpus (`hicra.lab.sft.build_corpus`, the same draws as the warm start), tokenizes
each trace with the tokenizer in DIR (a warm-start directory; `hicra.lab.sft.response_ids`, as the warm start counts) and counts, per family, executed strategy (the
checker's label), hinted or not, and for series whether the problem has >= 9 terms, the traces kept and those
dropped for being longer than `max_response_tokens`. Prints the counts and, for unhinted series traces of >= 9
terms, one-by-one's share before and after the filter: how far the filter moves the corpus's strategy prior on
long series away from the problem-blind one it was drawn from (docs/lab.md, outcome of (z1), (z2)).
Multi-part traces are counted by their whole label; their series parts are not split out.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    from dataclasses import replace

    from transformers import AutoTokenizer

    from hicra.lab.presets import get_preset, narrowed_tasks, parse_universe
    from hicra.lab.sft import HINT, build_corpus, response_ids

    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--warm-start-seed", type=int, default=0)
    ap.add_argument("--series", help="series task-spec keys, e.g. show_count=1")
    ap.add_argument("--tokenizer", required=True, help="a warm-start directory (its tokenizer)")
    args = ap.parse_args()
    ws, _ = get_preset(args.preset, warm_start_seed=args.warm_start_seed)
    if args.series:
        ws = replace(ws, tasks=narrowed_tasks(parse_universe(args.series), base=ws.tasks))
    task = ws.task_mix()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    kept, dropped = Counter(), Counter()
    for problem, text in build_corpus(task, ws.n_train, ws.knobs(), ws.seed, ws.strategy_hints):
        size = ("9+ terms" if problem.data["n"] >= 9 else "2-8 terms") if problem.family == "series" else ""
        label = (problem.family, task.check(problem, text).strategy or "unparsed",
                 "hinted" if HINT in problem.question else "unhinted", size)
        (dropped if len(response_ids(tok, text)) > ws.max_response_tokens else kept)[label] += 1
    print(f"{ws.n_train} traces, {sum(dropped.values())} longer than {ws.max_response_tokens} tokens dropped")
    print(f"{'family':<8}{'strategy':<24}{'prompt':<10}{'size':<11}{'kept':>6}{'dropped':>9}")
    for label in sorted(set(kept) | set(dropped)):
        print(f"{label[0]:<8}{label[1]:<24}{label[2]:<10}{label[3]:<11}{kept[label]:>6}{dropped[label]:>9}")
    for hinted in ("unhinted", "hinted"):
        rows = {s: (kept[("series", s, hinted, "9+ terms")], dropped[("series", s, hinted, "9+ terms")])
                for s in ("one-by-one", "pairing", "middle")}
        before = sum(k + d for k, d in rows.values())
        after = sum(k for k, _ in rows.values())
        if before and after:
            print(f"{hinted} series traces of 9+ terms: one-by-one {sum(rows['one-by-one']) / before:.1%} of "
                  f"{before} before the filter, {rows['one-by-one'][0] / after:.1%} of {after} after")


if __name__ == "__main__":
    main()
