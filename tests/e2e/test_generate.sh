#!/bin/bash
# deepmpi generate (label e2e): from checkpoints saved at every ZeRO stage on 2 ranks, greedy and
# sampled generation run on one rank; the same seed gives the same text, and checkpoints of stages
# that train bit-identically (0 and 1; 2 and 3) but were written in other pieces generate the same text.
# Bad input gets one clear line. Usage: test_generate.sh DEEPMPI MPIEXEC
set -uo pipefail
BIN=$1 MPIEXEC=$2
work=$(mktemp -d -t deepmpi-generate.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.txt; do echo "== $f"; tail -n 6 "$f"; done; exit 1; }
gen() {  # gen CKPT OUT [flags...]: the generated ids (the line between the --- markers)
  local ck=$1 out=$2; shift 2
  OMP_NUM_THREADS=1 "$BIN" generate --load "$ck" --prompt-tokens 5,17,33,2 --max-new-tokens 24 "$@" > "$out" 2>&1 ||
    fail "generate from $ck $*"
  sed -n '/^---$/,/^---$/p' "$out" | sed -n 2p
}
for stage in 0 1 2 3; do
  cat > "$work/s$stage.json" <<JSON
{"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": $stage},
 "optimizer": {"type": "AdamW", "params": {"lr": 0.01}}}
JSON
  OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --seq-length 32 --deepspeed-config "$work/s$stage.json" \
    --train-iters 4 --peak-tflops 1 --save "$work/ck$stage" > "$work/train$stage.txt" 2>&1 || fail "train stage $stage"
  greedy=$(gen "$work/ck$stage" "$work/g$stage.txt" --temperature 0)
  [ "$(echo "$greedy" | tr ',' '\n' | wc -l)" -eq 28 ] || fail "stage $stage: expected 4 prompt + 24 new ids, got '$greedy'"
  [[ $greedy == 5,17,33,2,* ]] || fail "stage $stage: the output does not start with the prompt: $greedy"
  grep -q "tokens/s (KV cache)" "$work/g$stage.txt" || fail "stage $stage: no tokens/s line"
  a=$(gen "$work/ck$stage" "$work/a$stage.txt" --temperature 1 --top-k 50 --top-p 0.9 --seed 7)
  b=$(gen "$work/ck$stage" "$work/b$stage.txt" --temperature 1 --top-k 50 --top-p 0.9 --seed 7)
  [ "$a" = "$b" ] || fail "stage $stage: the same seed gave different text"
  echo "$greedy $a" > "$work/greedy$stage"
  echo "stage $stage: greedy $greedy"
done
# ZeRO stages 0 and 1 train bit-identically, and so do 2 and 3 (the same reductions): their checkpoints,
# written in different pieces by different ranks (stage 0: a balanced share of every tensor;
# stages 1-3: each rank its chunks), must generate the same text
[ "$(cat "$work/greedy0")" = "$(cat "$work/greedy1")" ] || fail "stages 0 and 1 generate different text"
[ "$(cat "$work/greedy2")" = "$(cat "$work/greedy3")" ] || fail "stages 2 and 3 generate different text"
# bad input
OMP_NUM_THREADS=1 "$BIN" generate --load "$work/nothing" > "$work/bad1.txt" 2>&1 && fail "a missing directory was accepted"
grep -q "does not exist" "$work/bad1.txt" || fail "missing directory message: $(cat "$work/bad1.txt")"
OMP_NUM_THREADS=1 "$BIN" generate --load "$work/ck0" --prompt "hello" > "$work/bad2.txt" 2>&1 && fail "--prompt with a 512 vocabulary"
grep -q "give --prompt-tokens" "$work/bad2.txt" || fail "vocabulary message: $(cat "$work/bad2.txt")"
OMP_NUM_THREADS=1 "$BIN" generate --load "$work/ck0" --prompt-tokens 1,x > "$work/bad3.txt" 2>&1 && fail "a bad token id"
grep -q "is not a token id" "$work/bad3.txt" || fail "token id message: $(cat "$work/bad3.txt")"
OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" generate --load "$work/ck0" > "$work/bad4.txt" 2>&1 && fail "2 ranks"
grep -q "runs on one rank" "$work/bad4.txt" || fail "rank message: $(cat "$work/bad4.txt")"
echo "generate test: every ZeRO stage's checkpoint generates, deterministically, whatever pieces wrote it"
