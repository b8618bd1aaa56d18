#!/bin/bash
# Two deepmpi binaries side by side in one run on the NVMe offload configs of perf/offload.sh's
# section 2 (gpt2-124m bf16 ZeRO-3, 2 ranks x 1 thread, seq 128, micro-batch 1, global batch GB,
# sub_group_size 1e7, offload_optimizer buffer_count 4, offload_param buffer_count 5), the
# binaries alternating, ROUNDS rounds: per run the medians of steps 2..STEPS of the step time,
# its forward / backward / optimizer parts (wall_clock_breakdown), the spill bytes and waits.
# The in-memory run (new binary) gives the compute time the overlap ratio is taken against.
# Usage: perf/offload_compare.sh OLD_BINARY NEW_BINARY NVME_DIR [GB] [STEPS] [ROUNDS]
set -euo pipefail
OLD=$1 NEW=$2 NVME=$3 GB=${4:-4} STEPS=${5:-9} ROUNDS=${6:-2}
cd "$(dirname "$0")/.."
source scripts/mpi-env.sh
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cfg() {  # none | opt | both
  local off=""
  [ "$1" != none ] && off=", \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$NVME\", \"buffer_count\": 4}"
  [ "$1" = both ] && off="$off, \"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"$NVME\", \"buffer_count\": 5}"
  cat > "$tmp/$1.json" <<JSON
{"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": $((GB / 2)), "gradient_clipping": 1.0,
 "wall_clock_breakdown": true, "bf16": {"enabled": true},
 "zero_optimization": {"stage": 3, "sub_group_size": 10000000, "stage3_max_reuse_distance": 1000000000$off},
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "weight_decay": 0.1}}}
JSON
  echo "$tmp/$1.json"
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $NVME: $(df -T "$NVME" | awk 'NR == 2 {print $2 " on " $1}')"
echo "gpt2-124m bf16 ZeRO-3, 2 ranks x 1 thread, seq 128, global batch $GB, medians of steps 2..$STEPS"
echo
echo "| round | binary | variant | step ms | forward ms | backward ms | optimizer ms | GB read/step | GB not read | I/O wait ms | sub-groups left to the forward | last loss |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  for v in none opt both; do
    for b in old new; do
      [ "$v" = none ] && [ "$b" = old ] && continue
      bin=$([ "$b" = old ] && echo "$OLD" || echo "$NEW")
      rm -f "$tmp/m.jsonl"
      OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none "$bin" train --model gpt2-124m --seq-length 128 \
        --deepspeed_config "$(cfg "$v")" --train-iters "$STEPS" --metrics-file "$tmp/m.jsonl" > "$tmp/out.txt" 2>&1 \
        || { cat "$tmp/out.txt"; exit 1; }
      $PY - "$tmp/m.jsonl" "$r" "$b" "$v" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
s = [x for x in rows if "step_ms" in x][1:]
m = lambda k: st.median([x.get(k, 0) for x in s])
print("| %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %.3f | %.3f | %.0f | %.0f | %.4f |" % (
    sys.argv[2], sys.argv[3], sys.argv[4], m("step_ms"), m("forward_ms"), m("backward_ms"), m("optimizer_ms"),
    m("spill_read_bytes") / 1e9, m("spill_cached_bytes") / 1e9, m("spill_wait_ms"), m("spill_deferred_subgroups"), s[-1]["loss"]))
PY
    done
  done
done
