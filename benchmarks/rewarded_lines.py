"""What the rewarded rollouts of lab runs hold, line by line: the check behind the lab issue's floor "no rewarded
response contains a wrong computation line", read from the runs' own rollout files.

    python benchmarks/rewarded_lines.py RUN [RUN ...]

RUN is a `hicra lab` run directory (its `rollouts/`). For each run, and summed over all of them, it prints:
- rollouts and rewarded rollouts (reward > 0);
- rewarded rollouts holding a wrong computation line (`hicra.lab.tasks.base.wrong_lines`: `X op Y = Z` with Z not
  X op Y);
- rewarded rollouts holding a malformed line (`malformed_lines`: a line with `=` that is not exactly one
  computation, e.g. `16-5=11=11` or `-23*40=920`), which the checker rewarded before session 54 and marks as an
  execution error since;
- rewarded rollouts whose `strategy` is null (the parser did not recognise the strategy), per family (the prefix of
  `prompt_id`).
The first malformed line of up to --examples rewarded rollouts is printed. Nothing is recomputed but the line
checks; the rewards are the ones the run's checker gave. A path without rollouts is a one-line error (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def count_run(run_dir: Path) -> tuple[Counter, list[str]]:
    """Counts of one run's rollouts (keys as printed) and the first malformed line of each malformed rewarded one."""
    from hicra.dynamics.records import iter_steps
    from hicra.lab.tasks.base import malformed_lines, wrong_lines

    counts: Counter = Counter()
    examples: list[str] = []
    columns = ["prompt_id", "response", "reward", "strategy"]
    for _, table in iter_steps(run_dir, columns=columns, validate=False):
        for pid, text, reward, strategy in zip(*(table.column(c).to_pylist() for c in columns), strict=True):
            counts["rollouts"] += 1
            if not reward or reward <= 0:
                continue
            counts["rewarded"] += 1
            counts["rewarded, wrong line"] += bool(wrong_lines(text))
            bad = malformed_lines(text)
            if bad:
                counts["rewarded, malformed line"] += 1
                examples.append(bad[0])
            if strategy is None:
                counts[f"rewarded, strategy null, {str(pid).split(':')[0]}"] += 1
    return counts, examples


def main(argv: list[str] | None = None) -> int:
    from hicra.errors import InputError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    ap.add_argument("--examples", type=int, default=5, help="malformed lines to print (default 5)")
    args = ap.parse_args(argv)
    total: Counter = Counter()
    examples: list[str] = []
    try:
        for run in args.runs:
            counts, found = count_run(run)
            total.update(counts)
            examples += found
            print(f"{run}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    except InputError as exc:
        print(f"rewarded_lines: error: {exc}", file=sys.stderr)
        return 2
    print(f"all {len(args.runs)} runs: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
    for line in examples[: args.examples]:
        print(f"  malformed: {line!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
