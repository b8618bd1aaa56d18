#!/bin/bash
# README command 1: install what is missing, build (release preset), and train a small GPT-2
# (`tiny`, byte-level vocabulary of 257) on real text every Debian machine has, the licence texts
# in /usr/share/common-licenses (prepared once into build/release/quickstart/ with
# `deepmpi data prepare`), on 2 MPI ranks with ZeRO stage 2, printing loss, tokens/s and MFU; it
# saves a checkpoint and ends with text sampled from it by `deepmpi generate`.
#   NP=1 (or any rank count), DS_CONFIG=<ds_config.json>, TRAIN_ITERS=<steps>, and
#   MOCK=1 (random tokens, for benchmarks) change that; more arguments go to `deepmpi train`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
source scripts/mpi-env.sh
bin=build/release/deepmpi work=build/release/quickstart
if [ "${MOCK:-0}" = 1 ]; then
  exec mpirun -np "${NP:-2}" --bind-to none "$bin" train --model tiny --mock-data \
    --deepspeed_config "${DS_CONFIG:-examples/ds_config_zero2.json}" --train-iters "${TRAIN_ITERS:-50}" "$@"
fi
corpus=/usr/share/common-licenses
[ -d "$corpus" ] || { echo "quickstart: $corpus is missing (Debian's base-files has it); run MOCK=1 $0 for random tokens" >&2; exit 1; }
if [ ! -f "$work/licenses.tokens" ]; then
  mkdir -p "$work"
  "$bin" data prepare --input "$corpus" --output "$work/licenses"
fi
rm -rf "$work/checkpoints"  # this script's own checkpoint of the last run, replaced by this one
mpirun -np "${NP:-2}" --bind-to none "$bin" train --model tiny --vocab-size 257 --data-path "$work/licenses" \
  --deepspeed_config "${DS_CONFIG:-examples/ds_config_quickstart.json}" --train-iters "${TRAIN_ITERS:-3000}" \
  --save "$work/checkpoints" "$@"
echo
echo "sample from the trained model (deepmpi generate --load $work/checkpoints):"
"$bin" generate --load "$work/checkpoints" --prompt "This License" --max-new-tokens 200 --temperature 0.6 --seed 1
