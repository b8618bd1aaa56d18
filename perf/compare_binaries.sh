#!/bin/bash
# Bit-identity of two deepmpi binaries: the same training run (2 ranks, ZeRO stages 0-3 x
# fp32/bf16/fp16, gradient accumulation 2) with each, then the per-step losses and gradient norms
# (JSON doubles, round-trip exact) and every saved parameter and optimizer state (h5diff, exact)
# are compared. Usage: [SEQ=32] perf/compare_binaries.sh OLD_BINARY NEW_BINARY [MODEL] [STEPS] [NP]
set -euo pipefail
OLD=$1 NEW=$2 MODEL=${3:-tiny} STEPS=${4:-8} NP=${5:-2} SEQ=${SEQ:-32}
cd "$(dirname "$0")/.."
source scripts/mpi-env.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for stage in 0 1 2 3; do
  for prec in fp32 bf16 fp16; do
    cfg=$work/ds_${stage}_${prec}.json
    extra=""
    [ "$prec" = bf16 ] && extra=', "bf16": {"enabled": true}'
    [ "$prec" = fp16 ] && extra=', "fp16": {"enabled": true, "initial_scale_power": 12}'
    cat > "$cfg" <<JSON
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2, "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "weight_decay": 0.01}},
 "zero_optimization": {"stage": $stage, "stage3_param_persistence_threshold": 0}$extra}
JSON
    for which in old new; do
      bin=$OLD; [ $which = new ] && bin=$NEW
      OMP_NUM_THREADS=1 mpirun -np "$NP" --bind-to none "$bin" train --model "$MODEL" --seq-length "$SEQ" \
        --deepspeed_config "$cfg" --train-iters "$STEPS" --metrics-file "$work/$which.jsonl" \
        --save "$work/ck_$which" --no-load > "$work/$which.log" 2>&1 || { cat "$work/$which.log"; exit 1; }
      grep '"loss"' "$work/$which.jsonl" | /usr/bin/python3 -c 'import sys, json
for l in sys.stdin:
    r = json.loads(l); print(repr(r["loss"]), repr(r["grad_norm"]))' > "$work/$which.curve"
    done
    f_old=$work/ck_old/global_step$STEPS/checkpoint.h5 f_new=$work/ck_new/global_step$STEPS/checkpoint.h5
    if cmp -s "$work/old.curve" "$work/new.curve" && h5diff -q "$f_old" "$f_new" /params /params &&
       h5diff -q "$f_old" "$f_new" /optim /optim; then
      echo "stage $stage $prec: bit-identical ($STEPS steps: losses, grad norms, every parameter and optimizer state); last loss $(tail -1 "$work/new.curve" | cut -d' ' -f1)"
    else
      echo "stage $stage $prec: DIFFERENT"; paste "$work/old.curve" "$work/new.curve" | head -5; status=1
    fi
    rm -rf "$work"/ck_* "$work"/*.jsonl
  done
done
exit $status
