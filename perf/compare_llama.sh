#!/bin/bash
# The LLaMA composition side by side on one machine, in one run: deepmpi (--model llama-*) and the same
# model in eager PyTorch (perf/pytorch_llama.py), one rank, alternating, REPS times each, fp32 or
# bf16 (PRECISION=bf16: deepmpi's 16-bit parameters and bf16 GEMMs; PyTorch's autocast).
# Usage: perf/compare_llama.sh [MODEL] [SEQ] [MICRO_BATCH] [STEPS] [REPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-llama-125m} SEQ=${2:-256} MB=${3:-2} STEPS=${4:-6} REPS=${5:-3} THREADS=${6:-2} PRECISION=${PRECISION:-fp32}
source scripts/mpi-env.sh
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "needs python3-torch (apt-get install python3-torch)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
extra=$([ "$PRECISION" = bf16 ] && echo ', "bf16": {"enabled": true}' || true)
cat > "$tmp/ds.json" <<JSON
{"train_micro_batch_size_per_gpu": $MB, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0$extra,
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}}}
JSON
val() { sed -E 's/.* \| ([0-9.]+) tokens\/s .*/\1/'; }
dm=() pt=()
for r in $(seq "$REPS"); do
  line=$(OMP_NUM_THREADS=$THREADS mpirun -np 1 --bind-to none build/release/deepmpi train --model "$MODEL" \
         --seq-length "$SEQ" --deepspeed_config "$tmp/ds.json" --train-iters "$STEPS" | grep '^done:')
  echo "deepmpi $PRECISION rep $r: $line"
  dm+=("$(echo "$line" | val)")
  line=$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS /usr/bin/python3 perf/pytorch_llama.py --model "$MODEL" \
         --seq-length "$SEQ" --micro-batch "$MB" --steps "$STEPS" --threads "$THREADS" $([ "$PRECISION" = bf16 ] && echo --bf16) | grep '^pytorch')
  echo "pytorch rep $r: $line"
  pt+=("$(echo "$line" | val)")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
a=$(med "${dm[@]}") c=$(med "${pt[@]}")
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p')"
echo "| model | precision | seq | micro-batch | threads | deepmpi tokens/s | PyTorch tokens/s | deepmpi / PyTorch |"
echo "|---|---|---|---|---|---|---|---|"
echo "| $MODEL | $PRECISION | $SEQ | $MB | $THREADS | $a | $c | $(awk -v x="$a" -v y="$c" 'BEGIN {printf "%.2fx", x/y}') |"
