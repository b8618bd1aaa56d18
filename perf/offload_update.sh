#!/bin/bash
# The ZeRO-3 NVMe update during the last backward against the update left to the next forward,
# side by side in one run on one binary (DEEPMPI_OFFLOAD_UPDATE=after / backward), alternating:
# gpt2-124m bf16 ZeRO-3 on 2 ranks x 1 thread, seq 128, without gradient clipping and the bf16
# overflow check (where the update in the backward applies), in memory / offload_optimizer nvme /
# + offload_param nvme. Per run: the median step ms over steps 2..STEPS, the median I/O wait, the
# mean GB read and written per step per rank, and the sub-groups each step updated in the backward.
# Usage: perf/offload_update.sh [NVME_DIR] [GB] [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
NVME=${1:-$PWD/build/nvme-bench} GB=${2:-4} STEPS=${3:-6} ROUNDS=${4:-3}
BIN=${BIN:-build/release/deepmpi}
source scripts/mpi-env.sh
mkdir -p "$NVME"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; NVME_DIR $NVME: $(df -T "$NVME" | awk 'NR==2 {print $2 " on " $1}')"
cfg() {  # cfg none|opt|both
  local off=""
  [ "$1" != none ] && off=", \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$NVME\", \"buffer_count\": 4}"
  [ "$1" = both ] && off="$off, \"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"$NVME\", \"buffer_count\": 5}"
  cat > "$tmp/$1.json" <<JSON
{"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": $((GB / 2)), "gradient_clipping": 0,
 "bf16": {"enabled": true, "check_grad_overflow": false},
 "zero_optimization": {"stage": 3, "sub_group_size": 10000000$off},
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "weight_decay": 0.1}}}
JSON
}
for v in none opt both; do cfg $v; done
echo "gpt2-124m bf16 ZeRO-3, 2 ranks x 1 thread, seq 128, global batch $GB, gradient_clipping 0, $STEPS steps"
echo
echo "| round | variant | update | step ms | I/O wait ms | GB read/step/rank | GB written/step/rank | sub-groups updated in the backward, per step | last loss |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  for run in none:- opt:after opt:backward both:after both:backward; do
    v=${run%:*} mode=${run#*:}
    rm -f "$tmp/m.jsonl"
    DEEPMPI_OFFLOAD_UPDATE=$([ "$mode" = after ] && echo after || echo backward) OMP_NUM_THREADS=1 \
      mpirun -np 2 --bind-to none "$BIN" train --model gpt2-124m --seq-length 128 --deepspeed_config "$tmp/$v.json" \
      --train-iters "$STEPS" --metrics-file "$tmp/m.jsonl" > "$tmp/out.txt" 2>&1 || { tail -5 "$tmp/out.txt"; exit 1; }
    /usr/bin/python3 - "$tmp/m.jsonl" "$r" "$v" "$mode" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
s = [x for x in rows if "step_ms" in x][1:]
med = lambda k: st.median([x.get(k, 0) for x in s])
mean = lambda k: st.mean([x.get(k, 0) for x in s]) / 1e9
print("| %s | %s | %s | %.0f | %.0f | %.3f | %.3f | %s | %.4f |" % (sys.argv[2], sys.argv[3], sys.argv[4], med("step_ms"), med("spill_wait_ms"),
      mean("spill_read_bytes"), mean("spill_write_bytes"), " ".join("%d" % x.get("spill_in_backward_subgroups", 0) for x in s), s[-1]["loss"]))
PY
  done
done
