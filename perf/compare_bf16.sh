#!/bin/bash
# bf16 side by side on one machine, in one run: deepmpi fp32, deepmpi bf16 (GEMMs in bf16 through
# oneDNN's matmul; 16-bit parameters and gradients, fp32 masters) and PyTorch with torch.autocast("cpu", dtype=torch.bfloat16),
# same GPT-2, one rank, alternating, REPS times each; prints the medians and the ratios.
# Usage: perf/compare_bf16.sh [MODEL] [SEQ] [MICRO_BATCH] [STEPS] [REPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-gpt2-124m} SEQ=${2:-256} MB=${3:-2} STEPS=${4:-8} REPS=${5:-3} THREADS=${6:-2}
source scripts/mpi-env.sh
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "needs python3-torch (apt-get install python3-torch)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for prec in fp32 bf16; do
  extra=$([ $prec = bf16 ] && echo ', "bf16": {"enabled": true}' || true)
  cat > "$tmp/$prec.json" <<JSON
{"train_micro_batch_size_per_gpu": $MB, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0$extra,
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}}}
JSON
done
f32=() b16=() pt=()
val() { sed -E 's/.* \| ([0-9.]+) tokens\/s .*/\1/'; }
for r in $(seq "$REPS"); do
  for prec in fp32 bf16; do
    line=$(OMP_NUM_THREADS=$THREADS mpirun -np 1 --bind-to none build/release/deepmpi train --model "$MODEL" \
           --seq-length "$SEQ" --deepspeed_config "$tmp/$prec.json" --train-iters "$STEPS" | grep '^done:')
    echo "deepmpi $prec rep $r: $line"
    if [ $prec = fp32 ]; then f32+=("$(echo "$line" | val)"); else b16+=("$(echo "$line" | val)"); fi
  done
  line=$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS /usr/bin/python3 perf/pytorch_gpt2.py --model "$MODEL" \
         --seq-length "$SEQ" --micro-batch "$MB" --steps "$STEPS" --threads "$THREADS" --bf16 | grep '^pytorch')
  echo "pytorch bf16 autocast rep $r: $line"
  pt+=("$(echo "$line" | val)")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
a=$(med "${f32[@]}") b=$(med "${b16[@]}") c=$(med "${pt[@]}")
echo
echo "| model | seq | micro-batch | threads | deepmpi fp32 | deepmpi bf16 | PyTorch bf16 autocast | bf16 / fp32 | deepmpi bf16 / PyTorch |"
echo "|---|---|---|---|---|---|---|---|---|"
echo "| $MODEL | $SEQ | $MB | $THREADS | $a | $b | $c | $(awk -v x="$b" -v y="$a" 'BEGIN {printf "%.2fx", x/y}') | $(awk -v x="$b" -v y="$c" 'BEGIN {printf "%.2fx", x/y}') |"
