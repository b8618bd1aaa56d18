#!/bin/bash
# Tensor parallelism on 2 ranks against data parallelism and one rank, same machine, same global
# batch (GB sequences of SEQ tokens), the variants alternating, REPS runs each; medians over each
# run's steps after the first:
#   one   1 rank x 2 threads, GAS = GB
#   dp2   2 ranks x 1 thread, ZeRO-1, GAS = GB / 2
#   tp2   2 ranks x 1 thread, --tensor-model-parallel-size 2 (dp 1), GAS = GB
#   tp2sp the same with --sequence-parallel (the same bytes, as all-gathers and reduce-scatters)
# Prints tokens/s, step time (tp2 against dp2: the target is at most 1.25x), the bytes per rank of
# parameters and activations (from the banner's memory report) and peak RSS, and the bytes each
# moves per step and rank (closed forms: tp, per micro-batch B T C (2 + 4 L) + 2 B T floats and a
# double, per step a double; dp ZeRO-1, a reduce-scatter of the gradients and an all-gather of the
# parameters, 2 x 4 x N bytes of messages).
# Usage: perf/tensor_parallel.sh [MODEL] [SEQ] [GB] [STEPS] [REPS]
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
 "zero_optimization": {"stage": $1},
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "weight_decay": 0.1}}}
JSON
  echo "$tmp/ds_$1_$2.json"
}
declare -A np=([one]=1 [dp2]=2 [tp2]=2 [tp2sp]=2) th=([one]=2 [dp2]=1 [tp2]=1 [tp2sp]=1) ds \
  flags=([one]="" [dp2]="" [tp2]="--tensor-model-parallel-size 2" [tp2sp]="--tensor-model-parallel-size 2 --sequence-parallel")
ds[one]=$(cfg 0 "$GB"); ds[dp2]=$(cfg 1 $((GB / 2))); ds[tp2]=$(cfg 0 "$GB"); ds[tp2sp]=$(cfg 0 "$GB")
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'); $MODEL seq $SEQ, global batch $GB, fp32, $STEPS steps, $REPS runs each, alternating"
declare -A ms tps rss params acts
for r in $(seq "$REPS"); do
  for v in one dp2 tp2 tp2sp; do
    # shellcheck disable=SC2086
    out=$(OMP_NUM_THREADS=${th[$v]} mpirun -np "${np[$v]}" --bind-to none "$BIN" train --model "$MODEL" --seq-length "$SEQ" \
          --deepspeed_config "${ds[$v]}" --train-iters "$STEPS" --peak-tflops 1 ${flags[$v]} 2>&1)
    line=$(echo "$out" | grep '^done:')
    ms[$v]="${ms[$v]:-} $(echo "$line" | sed -E 's/.*median ([0-9.]+) ms\/step.*/\1/')"
    tps[$v]="${tps[$v]:-} $(echo "$line" | sed -E 's/.*ms\/step \| ([0-9]+) tokens\/s.*/\1/')"
    rss[$v]="${rss[$v]:-} $(echo "$line" | sed -E 's/.*peak RSS ([0-9.]+ [KMG]iB).*/\1/' | tr -d ' ')"
    mem=$(echo "$out" | grep 'memory per rank:' | head -1)
    params[$v]=$(echo "$mem" | sed -E 's/.*params ([0-9.]+ [KMG]*i*B).*/\1/')
    acts[$v]=$(echo "$mem" | sed -E 's/.*activations ([0-9.]+ [KMG]*i*B).*/\1/')
  done
done
geom=$("$BIN" train --model "$MODEL" --seq-length "$SEQ" --train-iters 0 2>&1 | sed -n 's/^deepmpi train: //p' | head -1)
L=$(echo "$geom" | sed -E 's/.*layers=([0-9]+).*/\1/'); C=$(echo "$geom" | sed -E 's/.*hidden=([0-9]+).*/\1/')
N=$("$BIN" train --model "$MODEL" --seq-length "$SEQ" --train-iters 0 2>&1 | sed -n 's/.*parameters \([0-9]*\) .*/\1/p' | head -1)
tp_bytes=$(awk -v b="$SEQ" -v c="$C" -v l="$L" -v g="$GB" 'BEGIN {printf "%.1f", (g * (4 * (b * c * (2 + 4 * l) + 2 * b) + 8) + 8) / 2^20}')
dp_bytes=$(awk -v n="$N" 'BEGIN {printf "%.1f", 2 * 4 * n / 2^20}')
dp=$(med ${ms[dp2]})
echo
echo "| layout | tokens/s | median step ms | vs dp2 | params per rank | activations per rank | MiB moved per step and rank | peak RSS per run |"
echo "|---|---|---|---|---|---|---|---|"
for v in one dp2 tp2 tp2sp; do
  m=$(med ${ms[$v]})
  moved=$([[ $v = tp2* ]] && echo "$tp_bytes (tp)" || ([ $v = dp2 ] && echo "$dp_bytes (dp)" || echo 0))
  echo "| $v | $(med ${tps[$v]}) | $m | $(awk -v a="$m" -v b="$dp" 'BEGIN {printf "%.2f", a/b}') | ${params[$v]} | ${acts[$v]} | $moved | ${rss[$v]} |"
done
