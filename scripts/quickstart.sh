#!/bin/bash
# README command 1: install what is missing, build (release preset), and train the `tiny`
# model on mock data on 2 MPI ranks with ZeRO stage 2, printing loss, tokens/s and MFU per step.
# NP=1 (or any rank count) and DS_CONFIG=examples/ds_config_zero{0,1,2,3}.json change the layout.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
source scripts/mpi-env.sh
exec mpirun -np "${NP:-2}" --bind-to none build/release/deepmpi train --model tiny --mock-data \
  --deepspeed_config "${DS_CONFIG:-examples/ds_config_zero2.json}" --train-iters "${TRAIN_ITERS:-50}" "$@"
