#!/bin/bash
# Throughput driver: trains each preset for a fixed number of steps on one rank (mock data)
# and prints a Markdown table of tokens/s, TFLOP/s, MFU, step time and peak RSS.
# Usage: perf/throughput.sh [STEPS] [THREADS] [PRESET...]   (default: 10 steps, 2 threads, all presets)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-10} THREADS=${2:-2}
shift $(( $# > 2 ? 2 : $# )) || true
PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(tiny small gpt2-124m)
source scripts/mpi-env.sh
declare -A SEQ=([tiny]=64 [small]=256 [gpt2-124m]=256) MB=([tiny]=8 [small]=4 [gpt2-124m]=2)
echo "| model | seq | micro-batch | threads | tokens/s | TFLOP/s | MFU | ms/step | peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|"
for p in "${PRESETS[@]}"; do
  cfg=$(mktemp --suffix=.json)
  echo "{\"train_micro_batch_size_per_gpu\": ${MB[$p]}, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 6e-4}}}" > "$cfg"
  line=$(OMP_NUM_THREADS=$THREADS mpirun -np 1 --bind-to none build/release/deepmpi train --model "$p" \
         --seq-length "${SEQ[$p]}" --deepspeed_config "$cfg" --train-iters "$STEPS" | grep '^done:')
  rm -f "$cfg"
  echo "$line" | sed -E "s/^done: [0-9]+ steps \| median ([0-9.]+) ms\/step \| ([0-9.]+) tokens\/s \| ([0-9.]+) TFLOP\/s \| MFU ([0-9.]+%) \| peak RSS ([0-9.]+ [KMG]iB).*/| $p | ${SEQ[$p]} | ${MB[$p]} | $THREADS | \2 | \3 | \4 | \1 | \5 |/"
done
