"""Can a shift in the mix of response lengths alone read as execution consolidating? Runs of
`hicra.dynamics.synthetic.make_length_mix_run` (nothing planted: each kind of response as likely at every step, the
likelier kind growing) analysed with `hicra analyze`'s code, one line per seed: the verdict and order, whether the
pooled (token-weighted) execution test fires, the response-weighted test beside it
(`evidence.execution_response_weighted`), and the range of `rel_ppl_execution_rw`.

    python benchmarks/length_mix.py [N_SEEDS] [--seed-offset K] [--planted]

`--planted`: runs of `make_synthetic_run` instead (execution's tokens become likelier in every response: a real
consolidation, which the check should not flag). The last line counts the seeds whose pooled test fires and those
the response-weighted check flags. Each seed takes about a second.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n_seeds", nargs="?", type=int, default=3)
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument("--planted", action="store_true", help="make_synthetic_run's planted consolidation instead")
    args = ap.parse_args()

    from collections import Counter

    import pandas as pd

    from hicra.dynamics.analyze import analyze_run
    from hicra.dynamics.synthetic import make_length_mix_run, make_synthetic_run

    fired = flagged = 0
    orders: Counter = Counter()
    for seed in range(args.seed_offset, args.seed_offset + args.n_seeds):
        with tempfile.TemporaryDirectory() as tmp:
            (make_synthetic_run if args.planted else make_length_mix_run)(tmp, seed=seed)
            summary = analyze_run(tmp, tmp, report=False)
            rw = pd.read_parquet(os.path.join(tmp, "metrics.parquet"))["rel_ppl_execution_rw"]
        phases = summary["phases"]
        pooled = phases["evidence"].get("consolidation", {}).get("execution", {}).get("detected", False)
        check = phases["evidence"].get("execution_response_weighted")
        orders[phases["order"]] += 1
        fired += bool(pooled)
        flagged += bool(check and check.get("tested") and not check.get("consolidates"))
        print(f"seed {seed}: verdict {phases['verdict']}, order {phases['order']}; pooled execution test "
              f"{'fires' if pooled else 'does not fire'}; response-weighted: "
              + (f"consolidates {check['consolidates']} (p {check['p_value']:.3g})" if check else "not run")
              + f"; rel_ppl_execution_rw {rw.min():.3f}-{rw.max():.3f}")
    print(f"{args.n_seeds} seeds: order " + ", ".join(f"{k} {v}" for k, v in orders.most_common())
          + f"; the pooled execution test fires in {fired}; the response-weighted check flags {flagged} of them")


if __name__ == "__main__":
    main()
