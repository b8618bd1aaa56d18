#!/bin/bash
# Side by side on one machine, in one run: deepmpi and eager PyTorch (Debian's python3-torch)
# train the same GPT-2 for the same steps, alternating, REPS times each; prints the medians
# and the ratio. Usage: perf/compare_pytorch.sh [MODEL] [SEQ] [MICRO_BATCH] [STEPS] [REPS] [THREADS]
# Needs: build/release/deepmpi (./scripts/test.sh or the quickstart builds it), python3-torch.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-gpt2-124m} SEQ=${2:-256} MB=${3:-2} STEPS=${4:-8} REPS=${5:-3} THREADS=${6:-2}
source scripts/mpi-env.sh
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "needs python3-torch (apt-get install python3-torch)"; exit 1; }
cfg=$(mktemp --suffix=.json)
trap 'rm -f "$cfg"' EXIT
cat > "$cfg" <<JSON
{"train_micro_batch_size_per_gpu": $MB, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}}}
JSON
ours=() theirs=()
for r in $(seq "$REPS"); do
  line=$(OMP_NUM_THREADS=$THREADS mpirun -np 1 --bind-to none build/release/deepmpi train --model "$MODEL" \
         --seq-length "$SEQ" --deepspeed_config "$cfg" --train-iters "$STEPS" | grep '^done:')
  echo "deepmpi rep $r: $line"
  ours+=("$(echo "$line" | sed -E 's/.* \| ([0-9.]+) tokens\/s .*/\1/')")
  # PyTorch gets the same passive OpenMP wait policy deepmpi sets for itself (it is faster too).
  line=$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS /usr/bin/python3 perf/pytorch_gpt2.py --model "$MODEL" --seq-length "$SEQ" \
         --micro-batch "$MB" --steps "$STEPS" --threads "$THREADS" | grep '^pytorch:')
  echo "pytorch rep $r: $line"
  theirs+=("$(echo "$line" | sed -E 's/.* \| ([0-9.]+) tokens\/s .*/\1/')")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
o=$(med "${ours[@]}") t=$(med "${theirs[@]}")
echo
echo "| model | seq | micro-batch | threads | deepmpi tokens/s | PyTorch tokens/s | ratio |"
echo "|---|---|---|---|---|---|---|"
echo "| $MODEL | $SEQ | $MB | $THREADS | $o | $t | $(awk -v a="$o" -v b="$t" 'BEGIN {printf "%.2fx", a/b}') |"
