"""Speed and memory of `hicra analyze` on a synthetic run.

Builds a synthetic run directory (`hicra.dynamics.synthetic`: strategic-gram phrases from the "paper" lexicon
between runs of execution words; ~5.5% planning tokens, close to the paper's 2-5%), then analyses it in a child
process (metrics + phase verdict + report, exactly `analyze_run`) and prints tokens per second and the child's
peak resident memory (and tokens per CPU-second, which other jobs on a shared machine do not distort). The floor is 1M tokens/s on one CPU core for a 10M-token run; a 20M-token run must stay under
2 GB RSS (`--tokens 20000000`).

    python benchmarks/analyze.py [--tokens 10000000] [--steps 50] [--keep DIR]

Last line: `tokens_per_s: X`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
from hicra.dynamics.analyze import analyze_run
t, c = time.perf_counter(), time.process_time()
s = analyze_run(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
                  "tokens": s["n_tokens"], "verdict": s["phases"]["verdict"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--keep", help="build the run here and keep it (default: a temp folder)")
    args = ap.parse_args()

    from hicra.dynamics.synthetic import make_synthetic_run

    segments, exec_len, group = 4, 60, 8
    per_response = segments * (exec_len + 3.5)
    prompts = max(1, round(args.tokens / (args.steps * group * per_response)))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        run, out = root / "run", root / "out"
        t = time.perf_counter()
        if not (run / "rollouts").is_dir():
            make_synthetic_run(run, steps=args.steps, prompts=prompts, group=group, segments=segments,
                               exec_len=exec_len, seed=0)
        print(f"built synthetic run: {args.steps} steps x {prompts * group} responses in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        res = subprocess.run([sys.executable, "-c", CHILD, str(run), str(out)], capture_output=True, text=True,
                             check=True)
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        info = json.loads(res.stdout.strip().splitlines()[-1])
        rate = info["tokens"] / info["seconds"]
        print(f"tokens: {info['tokens']}")
        print(f"analyze seconds: {info['seconds']:.2f} (metrics + phases + report), verdict {info['verdict']}")
        print(f"peak_rss_mb: {max(peak_kb, before) / 1024:.0f}")
        # wall clock is what a user waits; CPU time shows the cost when other jobs share the cores
        print(f"cpu_tokens_per_s: {info['tokens'] / info['cpu_seconds']:.0f}")
        print(f"tokens_per_s: {rate:.0f}")


if __name__ == "__main__":
    main()
