#!/bin/bash
# Data parallelism side by side on one machine, in one run: deepmpi on 2 MPI ranks (ZeRO stage
# 0, then stage 1) against PyTorch DistributedDataParallel (gloo), then DDP +
# ZeroRedundancyOptimizer, 2 processes x 1 thread each, alternating, REPS times; prints the
# medians and the ratios. Usage: perf/compare_ddp.sh [MODEL] [SEQ] [MICRO_BATCH] [STEPS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-small} SEQ=${2:-256} MB=${3:-2} STEPS=${4:-8} REPS=${5:-3}
source scripts/mpi-env.sh
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "needs python3-torch (apt-get install python3-torch)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for st in 0 1; do
  cat > "$tmp/z$st.json" <<JSON
{"train_micro_batch_size_per_gpu": $MB, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
 "zero_optimization": {"stage": $st},
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}}}
JSON
done
declare -A ours theirs
for r in $(seq "$REPS"); do
  for st in 0 1; do
    line=$(OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none build/release/deepmpi train --model "$MODEL" \
           --seq-length "$SEQ" --deepspeed_config "$tmp/z$st.json" --train-iters "$STEPS" | grep '^done:')
    echo "deepmpi stage $st rep $r: $line"
    ours[$st]+="$(echo "$line" | sed -E 's/.* \| ([0-9.]+) tokens\/s .*/\1/') "
    par=$([ $st = 0 ] && echo ddp || echo zero1)
    line=$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 /usr/bin/python3 perf/pytorch_gpt2.py --model "$MODEL" \
           --seq-length "$SEQ" --micro-batch "$MB" --steps "$STEPS" --threads 1 --procs 2 --parallel $par | grep '^pytorch')
    echo "pytorch $par rep $r: $line"
    theirs[$st]+="$(echo "$line" | sed -E 's/.* \| ([0-9.]+) tokens\/s .*/\1/') "
  done
done
med() { printf '%s\n' $@ | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "| model | seq | micro-batch per rank | ranks x threads | deepmpi | tokens/s | PyTorch | tokens/s | ratio |"
echo "|---|---|---|---|---|---|---|---|---|"
for st in 0 1; do
  o=$(med ${ours[$st]}) t=$(med ${theirs[$st]})
  name=$([ $st = 0 ] && echo "DDP" || echo "DDP + ZeroRedundancyOptimizer")
  echo "| $MODEL | $SEQ | $MB | 2 x 1 | stage $st | $o | $name | $t | $(awk -v a="$o" -v b="$t" 'BEGIN {printf "%.2fx", a/b}') |"
done
