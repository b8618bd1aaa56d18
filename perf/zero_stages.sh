#!/bin/bash
# ZeRO stages side by side: trains the `small` model (seq 256, micro-batch 2 per rank, AdamW,
# mock data) for each rank count x stage, one OpenMP thread per rank, and prints a Markdown
# table: tokens/s, step ms, peak RSS (largest rank), model-state bytes per rank (params + grads +
# optimizer states, from the memory report: sizes of the live allocations), and each stage's
# ratio to stage 0 at the same rank count. Rank counts above the core count oversubscribe.
# PRECISION=bf16|fp16 trains in that precision (16-bit params and grads, fp32 masters; default fp32).
# Usage: [PRECISION=bf16] perf/zero_stages.sh [STEPS] [MODEL] [RANKS...]   (default: 8 steps, small, 1 2 4)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-8} MODEL=${2:-small}
shift $(( $# > 2 ? 2 : $# )) || true
RANKS=("$@")
PRECISION=${PRECISION:-fp32}
case $PRECISION in
  fp32) prec="" ;;
  bf16|fp16) prec=", \"$PRECISION\": {\"enabled\": true}" ;;
  *) echo "PRECISION must be fp32, bf16 or fp16 (got '$PRECISION')" >&2; exit 2 ;;
esac
[ ${#RANKS[@]} -eq 0 ] && RANKS=(1 2 4)
source scripts/mpi-env.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "precision: $PRECISION"
echo "| ranks | stage | tokens/s | tokens/s per rank | step ms | peak RSS (MiB) | model states per rank (MiB) | tokens/s vs stage 0 | model states vs stage 0 |"
echo "|---|---|---|---|---|---|---|---|---|"
for np in "${RANKS[@]}"; do
  for st in 0 1 2 3; do
    cfg="$tmp/z$st.json"
    echo "{\"train_micro_batch_size_per_gpu\": 2, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 6e-4}},
      \"zero_optimization\": {\"stage\": $st, \"stage3_param_persistence_threshold\": 1e4}$prec}" > "$cfg"
    OMP_NUM_THREADS=1 mpirun -np "$np" --bind-to none build/release/deepmpi train --model "$MODEL" --seq-length 256 \
      --deepspeed_config "$cfg" --train-iters "$STEPS" --peak-tflops 0.2 --metrics-file "$tmp/m_${np}_$st.jsonl" > /dev/null
  done
  /usr/bin/python3 - "$tmp" "$np" <<'PY'
import json, sys
tmp, np = sys.argv[1], int(sys.argv[2])
rows = {}
for st in range(4):
    s = [json.loads(l) for l in open(f"{tmp}/m_{np}_{st}.jsonl") if '"summary"' in l][-1]
    states = s["params_bytes"] + s["grads_bytes"] + s["masters_bytes"] + s["optimizer_states_bytes"]
    rows[st] = (s["median_tokens_per_s"], s["median_step_ms"], s["peak_rss_bytes_max_rank"], states)
t0, m0 = rows[0][0], rows[0][3]
for st, (tps, ms, rss, states) in rows.items():
    print(f"| {np} | {st} | {tps:.0f} | {tps/np:.0f} | {ms:.1f} | {rss/2**20:.1f} | {states/2**20:.2f} | {tps/t0:.3f} | {states/m0:.3f} |")
PY
done
