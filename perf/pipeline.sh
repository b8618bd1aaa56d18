#!/bin/bash
# Pipeline parallelism on 2 ranks against data parallelism, same machine, same global batch (GB
# sequences of SEQ tokens), alternating, REPS runs each; medians over each run's steps after the
# first: dp2 (ZeRO-1, GAS GB/2) against pp2 (1F1B, GAS GB) and pp2 zero-bubble. Prints tokens/s,
# the parameters per rank (the banner's memory report) and peak RSS per rank. Then the bubble per
# schedule with sleeping ranks (perf/pipeline_bubble.cpp) at p = 2 and 4.
# Usage: perf/pipeline.sh [MODEL] [SEQ] [GB] [STEPS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-gpt2-124m} SEQ=${2:-256} GB=${3:-4} STEPS=${4:-4} REPS=${5:-2}
BIN=${BIN:-build/release/deepmpi}
source scripts/mpi-env.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cfg() {  # cfg STAGE GAS
  cat > "$tmp/ds_$1_$2.json" <<JSON
{"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": $2, "gradient_clipping": 1.0,
 "zero_optimization": {"stage": $1}, "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "weight_decay": 0.1}}}
JSON
  echo "$tmp/ds_$1_$2.json"
}
declare -A ds flags=([dp2]="" [pp2]="--pipeline-model-parallel-size 2" [pp2zb]="--pipeline-model-parallel-size 2 --pipeline-schedule zero-bubble")
ds[dp2]=$(cfg 1 $((GB / 2))); ds[pp2]=$(cfg 1 "$GB"); ds[pp2zb]=$(cfg 1 "$GB")
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $MODEL seq $SEQ, global batch $GB, fp32, $STEPS steps, $REPS runs each"
declare -A tps rss params
for r in $(seq "$REPS"); do
  for v in dp2 pp2 pp2zb; do
    # shellcheck disable=SC2086
    out=$(OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none "$BIN" train --model "$MODEL" --seq-length "$SEQ" \
          --deepspeed_config "${ds[$v]}" --train-iters "$STEPS" --peak-tflops 1 ${flags[$v]} 2>&1)
    line=$(echo "$out" | grep '^done:')
    tps[$v]="${tps[$v]:-} $(echo "$line" | sed -E 's/.*ms\/step \| ([0-9]+) tokens\/s.*/\1/')"
    rss[$v]="${rss[$v]:-} $(echo "$line" | sed -E 's/.*peak RSS ([0-9.]+ [KMG]iB).*/\1/' | tr -d ' ')"
    params[$v]=$(echo "$out" | grep 'memory per rank:' | head -1 | sed -E 's/.*params ([0-9.]+ [KMG]*i*B).*/\1/')
  done
done
dp=$(med ${tps[dp2]})
echo
echo "| layout | tokens/s | vs dp2 | params per rank (rank 0) | peak RSS per run (largest rank) |"
echo "|---|---|---|---|---|"
for v in dp2 pp2 pp2zb; do
  t=$(med ${tps[$v]})
  echo "| $v | $t | $(awk -v a="$t" -v b="$dp" 'BEGIN {printf "%.2f", a/b}') | ${params[$v]} | ${rss[$v]} |"
done
echo
for p in 2 4; do mpirun --oversubscribe -np $p build/release/perf/pipeline_bubble --ms 10 --micro "4 8 16" --reps 3; echo; done
