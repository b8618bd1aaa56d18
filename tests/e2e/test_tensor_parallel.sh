#!/bin/bash
# Tensor parallelism from the command line (issue 15): a run at --tensor-model-parallel-size 2
# (and with --sequence-parallel) logs the same losses as one rank; its checkpoint resumes at tp 1 on 2 ranks (dp 2) and `deepmpi
# generate` (one rank) samples from it; tensor_parallel.autotp_size in a ds_config means the
# same; the inputs a user can get wrong are refused with a message naming the flag.
# Usage: test_tensor_parallel.sh DEEPMPI MPIEXEC
set -uo pipefail
BIN=$1 MPIEXEC=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; grep -v "^step" "$work/out.txt" 2>/dev/null | head -30; exit 1; }
run() {  # run NP ARGS... (--seq-length 32 unless given)
  local np=$1; shift
  local seq=(--seq-length 32)
  [[ " $* " == *" --seq-length "* ]] && seq=()
  OMP_NUM_THREADS=1 timeout -k 5 120 "$MPIEXEC" -np "$np" "$BIN" train --model tiny "${seq[@]}" --peak-tflops 1 "$@" \
    > "$work/out.txt" 2>&1
}
losses() { grep '^step' "$work/out.txt" | sed -E 's/.*loss ([0-9.]+).*/\1/' | tr '\n' ' '; }
cat > "$work/ds.json" <<JSON
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2, "zero_optimization": {"stage": 1},
 "optimizer": {"type": "AdamW", "params": {"lr": 3e-3}}}
JSON
run 1 --deepspeed_config "$work/ds.json" --train-iters 6 || fail "one rank"
one=$(losses)
run 2 --deepspeed_config "$work/ds.json" --train-iters 6 --tensor-model-parallel-size 2 --save "$work/ck" || fail "tp 2"
tp=$(losses)
grep -q "tensor parallel 2" "$work/out.txt" || fail "the banner does not say tensor parallel 2"
[ "$one" = "$tp" ] || fail "tp 2 logged other losses than one rank: '$tp' vs '$one'"
echo "tp 2 logged the losses of one rank (4 decimals): $tp"
run 2 --deepspeed_config "$work/ds.json" --train-iters 6 --tensor-model-parallel-size 2 --sequence-parallel \
  || fail "tp 2 + sequence parallelism"
grep -q "tensor parallel 2 + sequence parallel" "$work/out.txt" || fail "the banner does not say sequence parallel"
[ "$(losses)" = "$one" ] || fail "tp 2 + sp logged other losses than one rank: '$(losses)' vs '$one'"
run 2 --deepspeed_config "$work/ds.json" --train-iters 6 --tensor-model-parallel-size 2 --sequence-parallel \
  --recompute-granularity full --recompute-method uniform --recompute-num-layers 1 || fail "tp 2 + sp + full recompute"
[ "$(losses)" = "$one" ] || fail "tp 2 + sp + full recompute logged other losses than one rank: '$(losses)' vs '$one'"
sed 's/"zero_optimization"/"activation_checkpointing": {"partition_activations": true}, "zero_optimization"/' "$work/ds.json" \
  > "$work/ds_pa.json"
run 2 --deepspeed_config "$work/ds_pa.json" --train-iters 6 --tensor-model-parallel-size 2 || fail "partition_activations"
grep -q "tensor parallel 2 + sequence parallel" "$work/out.txt" && [ "$(losses)" = "$one" ] \
  || fail "partition_activations at tp 2 is not the sequence-parallel split with one rank's losses: $(losses)"
echo "tp 2, tp 2 + sequence parallelism (also as partition_activations), and that with full recompute: one rank's losses"
# the same from the ds_config
sed 's/"zero_optimization"/"tensor_parallel": {"autotp_size": 2}, "zero_optimization"/' "$work/ds.json" > "$work/ds_tp.json"
run 2 --deepspeed_config "$work/ds_tp.json" --train-iters 6 || fail "autotp_size 2"
[ "$(losses)" = "$one" ] && grep -q "tensor parallel 2" "$work/out.txt" || fail "autotp_size 2 is not tp 2: $(losses)"
# resume the tp 2 checkpoint at tp 1 on 2 ranks (dp 2, GAS 1: the same global batch), 2 more steps
cat > "$work/ds_dp.json" <<JSON
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "zero_optimization": {"stage": 2},
 "optimizer": {"type": "AdamW", "params": {"lr": 3e-3}}}
JSON
run 2 --deepspeed_config "$work/ds_dp.json" --train-iters 8 --load "$work/ck" || fail "resume at tp 1 x dp 2"
grep -q "saved at tp 2 pp 1 dp 1 ZeRO stage 1; now tp 1 pp 1 dp 2 stage 2" "$work/out.txt" || fail "the load line"
resumed=$(losses)
run 1 --deepspeed_config "$work/ds.json" --train-iters 8 || fail "one rank, 8 steps"
[ "$resumed" = "$(losses | cut -d' ' -f7-)" ] || fail "resumed losses '$resumed' are not one rank's steps 7-8 '$(losses)'"
echo "resumed at tp 1 x dp 2: steps 7-8 $resumed as one rank's"
OMP_NUM_THREADS=1 "$BIN" generate --load "$work/ck" --max-new-tokens 8 --prompt-tokens 1,2,3 > "$work/out.txt" 2>&1 \
  || fail "generate from the tp 2 checkpoint"
# refused, with the flag named
expect() {  # expect NP PATTERN ARGS...
  local np=$1 pat=$2; shift 2
  if run "$np" "$@"; then fail "expected a refusal: $*"; fi
  grep -q -- "$pat" "$work/out.txt" || fail "the message for '$*' does not say: $pat"
}
expect 2 "tensor-model-parallel-size 3 must divide the 2 ranks" --tensor-model-parallel-size 3 --train-iters 1
expect 2 "tensor-model-parallel-size 2 must divide --num-attention-heads (3)" --tensor-model-parallel-size 2 \
  --num-attention-heads 3 --hidden-size 96 --train-iters 1
expect 2 "autotp_size 2 in the ds_config contradicts --tensor-model-parallel-size 1" --deepspeed_config "$work/ds_tp.json" \
  --tensor-model-parallel-size 1 --train-iters 1
expect 2 "the tp ranks: --seq-length 33 must be a multiple of --tensor-model-parallel-size 2" --tensor-model-parallel-size 2 \
  --sequence-parallel --seq-length 33 --train-iters 1
echo "refused: a tp that does not divide the ranks or the heads, a contradicting autotp_size, a sequence that does not split"
