#!/bin/bash
# README command 2 (and what .ci/run calls): install what is missing, build once (release
# preset), run every test (all ctest labels: unit, mpi, e2e). Where nvcc exists, the CUDA/NCCL
# backend is also compiled (preset cuda) and its tests run: without a GPU they report skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --tests
./scripts/build.sh --require-all
source scripts/mpi-env.sh
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc > /dev/null; then
  cmake --preset cuda > /dev/null
  cmake --build --preset cuda --target deepmpi_nccl_tests
  ctest --preset cuda -L nccl --output-on-failure
fi
ctest --preset release --output-on-failure -j2 "$@"
