#!/bin/bash
# Throughput and peak RSS of two deepmpi binaries side by side in one run (the previous commit's and
# this one's): gpt2-124m at 1 rank in fp32 and bf16, and at 2 ranks with ZeRO stages 0-3, the
# binaries alternating, REPS runs each; prints the medians, the ratio new/old and the peak RSS.
# Usage: perf/regression.sh OLD_BINARY NEW_BINARY [MODEL] [SEQ] [STEPS] [REPS]
set -euo pipefail
OLD=$1 NEW=$2 MODEL=${3:-gpt2-124m} SEQ=${4:-256} STEPS=${5:-6} REPS=${6:-3}
cd "$(dirname "$0")/.."
source scripts/mpi-env.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
config() {  # stage precision micro-batch
  local extra=""
  [ "$2" = bf16 ] && extra=', "bf16": {"enabled": true}'
  cat > "$tmp/c_$1_$2.json" <<JSON
{"train_micro_batch_size_per_gpu": $3, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
 "zero_optimization": {"stage": $1}$extra,
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "weight_decay": 0.1}}}
JSON
  echo "$tmp/c_$1_$2.json"
}
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'); $MODEL seq $SEQ, $STEPS steps (medians after the first), $REPS runs each, alternating"
echo
echo "| run | old tokens/s | new tokens/s | new/old | old peak RSS | new peak RSS |"
echo "|---|---|---|---|---|---|"
run_case() {  # label np stage precision micro-batch threads
  local cfg; cfg=$(config "$3" "$4" "$5")
  local o=() n=() ro=() rn=()
  for r in $(seq "$REPS"); do
    for which in old new; do
      local bin=$OLD; [ $which = new ] && bin=$NEW
      line=$(OMP_NUM_THREADS=$6 mpirun -np "$2" --bind-to none "$bin" train --model "$MODEL" --seq-length "$SEQ" \
             --deepspeed_config "$cfg" --train-iters "$STEPS" 2>&1 | grep '^done:')
      tps=$(echo "$line" | sed -E 's/.* \| ([0-9.]+) tokens\/s .*/\1/')
      rss=$(echo "$line" | sed -E 's/.*peak RSS ([0-9.]+ [KMG]iB).*/\1/')
      if [ $which = old ]; then o+=("$tps"); ro+=("$rss"); else n+=("$tps"); rn+=("$rss"); fi
    done
  done
  local a b; a=$(med "${o[@]}") b=$(med "${n[@]}")
  echo "| $1 | $a | $b | $(awk -v x="$b" -v y="$a" 'BEGIN {printf "%.3f", x/y}') | ${ro[*]} | ${rn[*]} |"
}
run_case "1 rank fp32" 1 0 fp32 2 2
run_case "1 rank bf16" 1 0 bf16 2 2
for stage in 0 1 2 3; do run_case "2 ranks ZeRO-$stage fp32" 2 "$stage" fp32 1 1; done
