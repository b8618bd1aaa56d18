#!/bin/bash
# README command 2 (and what .ci/run calls): install what is missing, build once (release
# preset), run every test: unit, mpi and e2e labels.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake --preset release > /dev/null
cmake --build --preset release
source scripts/mpi-env.sh
ctest --preset release --output-on-failure -j2 "$@"
