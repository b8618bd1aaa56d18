#!/bin/bash
# Activation recompute on one rank: the planned activation bytes (`--train-iters 0`) and the
# measured step time and peak RSS, for no recompute, selective (attention probabilities) and full
# (uniform, 1 block per chunk), the variants alternating, REPS runs each; medians of the step
# time over each run's steps after the first. Usage: perf/recompute.sh [MODEL] [SEQ] [MB] [STEPS] [REPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-gpt2-124m} SEQ=${2:-1024} MB=${3:-1} STEPS=${4:-4} REPS=${5:-3} THREADS=${6:-2}
BIN=${BIN:-build/release/deepmpi}
source scripts/mpi-env.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/ds.json" <<JSON
{"train_micro_batch_size_per_gpu": $MB, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "weight_decay": 0.1}}}
JSON
declare -A flags=([none]="" [selective]="--recompute-granularity selective"
                  [full]="--recompute-granularity full --recompute-method uniform --recompute-num-layers 1")
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'); $MODEL seq $SEQ micro-batch $MB, fp32, 1 rank, $THREADS threads, $STEPS steps, $REPS runs each, alternating"
declare -A act ms rss
for v in none selective full; do
  # shellcheck disable=SC2086
  act[$v]=$("$BIN" train --model "$MODEL" --seq-length "$SEQ" --deepspeed_config "$tmp/ds.json" --train-iters 0 ${flags[$v]} 2>&1 \
           | sed -n 's/.*| activations \([0-9.]* [KMG]*i*B\) |.*/\1/p')
done
for r in $(seq "$REPS"); do
  for v in none selective full; do
    # shellcheck disable=SC2086
    line=$(OMP_NUM_THREADS=$THREADS mpirun -np 1 --bind-to none "$BIN" train --model "$MODEL" --seq-length "$SEQ" \
           --deepspeed_config "$tmp/ds.json" --train-iters "$STEPS" ${flags[$v]} 2>&1 | grep '^done:')
    ms[$v]="${ms[$v]:-} $(echo "$line" | sed -E 's/.*median ([0-9.]+) ms\/step.*/\1/')"
    rss[$v]="${rss[$v]:-} $(echo "$line" | sed -E 's/.*peak RSS ([0-9.]+ [KMG]iB).*/\1/' | tr -d ' ')"
  done
done
base=$(med ${ms[none]})
echo
echo "| recompute | activations (planned) | median step ms | vs none | peak RSS per run |"
echo "|---|---|---|---|---|"
for v in none selective full; do
  m=$(med ${ms[$v]})
  echo "| $v | ${act[$v]} | $m | $(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2f", a/b}') | ${rss[$v]} |"
done
