#!/usr/bin/env bash
# One prepared sweep for a lent 16-core GPU machine (2026-11-30), run from the repository root with the CPU-trained
# preset warm starts of seeds 0 and 1 carried in .sweep/cache. Two parts at once, everything in the background,
# then whatever finished is packed into $OUT before the deadline:
#   RL:  11 quick-preset GRPO runs (benchmarks/lab_demo.py, one process and one torch thread each) that vary the
#        RL sampling temperature, learning rate, KL and batch, to find settings with greedy held-out gains;
#   SFT: warm starts trained on the GPU (benchmarks/lab_warm_start.py --device cuda; evaluation on the CPU): the
#        preset recipe at warm-start seeds 0-4 (the spread over seeds) and cheaper recipes (fewer epochs,
#        larger batch, half the corpus) for the cold-start time budget. Mining is skipped (--lexicon-from): the
#        SFT does not depend on the lexicon, and the embedding model is not on that machine.
# Results: benchmarks/sweeps/2026-11-30-device/ (the logs and run files that came back) and docs/lab.md.
set -u
DEADLINE=${DEADLINE:-470}
export PYTHONPATH=src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUTDIR=${OUT:-/tmp/sweep_out}
R=$OUTDIR/logs
W=/tmp/sweep_work
mkdir -p "$R" "$W"
C=.sweep/cache
start=$(date +%s)
{ nproc; $PY -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.is_available())"; } \
    > "$R/env.txt" 2>&1
DEV=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
STEPS=${STEPS:-}  # smoke tests here set a few steps
rl() {  # name, then lab_demo flags
    local name=$1; shift
    $PY benchmarks/lab_demo.py --cache $C --out $W/rl/$name --jobs 1 ${STEPS:+--steps $STEPS} "$@" \
        > "$R/rl_$name.txt" 2>&1 &
}
rl base_s3      --pairs 0:3
rl t07_lr2e-5   --pairs 0:0 --temperature 0.7
rl t07_lr5e-5   --pairs 0:0 --temperature 0.7 --lr 0.00005
rl t07_lr1e-4   --pairs 0:0 --temperature 0.7 --lr 0.0001
rl t05_lr5e-5   --pairs 0:0 --temperature 0.5 --lr 0.00005
rl t1_lr5e-5    --pairs 0:0 --lr 0.00005
rl t1_lr1e-4_kl --pairs 0:0 --lr 0.0001 --kl 0.05
rl t07_lr1e-4_kl --pairs 0:0 --temperature 0.7 --lr 0.0001 --kl 0.05
rl t07_lr5e-5_s1 --pairs 0:1 --temperature 0.7 --lr 0.00005
rl ws1_base     --pairs 1:0
rl ws1_t07_lr5e-5 --pairs 1:0 --temperature 0.7 --lr 0.00005

NTRAIN=${NTRAIN:-}
EVAL=${EVAL:-"--n-eval 256 --n-probe 64"}
sft() {  # name, then lab_warm_start flags
    local name=$1; shift
    $PY benchmarks/lab_warm_start.py --device "$DEV" --cache $W/sft --lexicon-from $C/warmstart-bd5e038b06ce29b9 \
        $EVAL ${NTRAIN:+--n-train $NTRAIN} "$@" > "$R/sft_$name.txt" 2>&1
}
( sft preset_ws0 --seeds 0; sft ep4_ws0 --seeds 0 --epochs 4 ) &
( sft preset_ws1 --seeds 1; sft ep3_lr25_ws0 --seeds 0 --epochs 3 --lr 0.0025 ) &
( sft preset_ws2 --seeds 2; sft b32_lr2e-3_ws0 --seeds 0 --batch-size 32 --lr 0.002 ) &
( sft preset_ws3 --seeds 3; sft half_ws0 --seeds 0 --n-train ${HALF:-4000} ) &
( sft preset_ws4 --seeds 4; sft 3m_ep3_ws0 --seeds 0 --size 3m --epochs 3 ) &

while [ $(( $(date +%s) - start )) -lt "$DEADLINE" ] && [ -n "$(jobs -r)" ]; do sleep 2; done
echo "elapsed $(( $(date +%s) - start )) s; still running: $(jobs -r | wc -l)" > "$R/done.txt"
# pack what exists (finished or not): per RL run its curves and logs, per warm start its json
( cd $W && find . \( -name eval.json -o -name eval_curve.jsonl -o -name probes.jsonl -o -name train_log.jsonl \
    -o -name warm_start.json \) -print0 | tar czf "$OUTDIR/runs.tgz" --null -T - ) 2>> "$R/done.txt"
tar czf "$OUTDIR/logs.tgz" -C "$OUTDIR" logs
pkill -f "benchmarks/lab_(demo|warm_start).py" 2>/dev/null
exit 0
