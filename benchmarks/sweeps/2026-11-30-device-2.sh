#!/usr/bin/env bash
# The second call of the 2026-11-30 device sweep, run on the same (still warm) machine right after
# 2026-11-30-device.sh, whose GPU-trained warm starts of seeds 2-4 it reuses from /tmp/sweep_work/sft: GRPO at RL
# temperature 0.7 and lr 2e-5 over more (warm-start seed, RL seed) pairs, and HICRA at the same settings.
# (As run, its last line was `pkill -f benchmarks/lab_demo.py`, which also matched the calling shell and ended the
# call before it printed; the files below had been packed by then. Here the pattern cannot match this script.)
set -u
export PYTHONPATH=src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
W=/tmp/sweep_work; OUTDIR=${OUT:-/tmp/sweep_out}; L=$OUTDIR/logs2; mkdir -p "$L"; s=$(date +%s)
rl() { n=$1; c=$2; shift 2; python3 benchmarks/lab_demo.py --cache "$c" --out $W/rl2/$n --jobs 1 --temperature 0.7 \
    --lr 0.00002 "$@" > "$L/$n.txt" 2>&1 & }
C=.sweep/cache; G=$W/sft
rl g_0_1 $C --pairs 0:1; rl g_0_2 $C --pairs 0:2; rl g_1_1 $C --pairs 1:1; rl g_1_2 $C --pairs 1:2
rl g_2_0 $G --pairs 2:0; rl g_3_0 $G --pairs 3:0; rl g_4_0 $G --pairs 4:0
rl h_0_0 $C --pairs 0:0 --algo hicra; rl h_0_1 $C --pairs 0:1 --algo hicra; rl h_1_0 $C --pairs 1:0 --algo hicra
rl h_2_0 $G --pairs 2:0 --algo hicra
rl g_1_0 $C --pairs 1:0
while [ $(( $(date +%s) - s )) -lt 400 ] && [ -n "$(jobs -r)" ]; do sleep 2; done
echo "elapsed $(( $(date +%s) - s ))" > "$L/done.txt"
(cd $W && find rl2 \( -name eval.json -o -name eval_curve.jsonl -o -name probes.jsonl -o -name train_log.jsonl \) \
    -print0 | tar czf "$OUTDIR/runs2.tgz" --null -T -)
tar czf "$OUTDIR/logs2.tgz" -C "$OUTDIR" logs2
pkill -f "lab_[d]emo.py"
