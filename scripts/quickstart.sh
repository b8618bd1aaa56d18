#!/bin/bash
# README command 1: install what is missing, build (release preset), and train the `tiny`
# model on mock data under mpirun, printing loss, tokens/s and MFU per step.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
source scripts/mpi-env.sh
exec mpirun -np 1 --bind-to none build/release/deepmpi train --model tiny --mock-data \
  --deepspeed_config examples/ds_config.json --train-iters "${TRAIN_ITERS:-50}" "$@"
