#!/bin/bash
# README command 2 (and what .ci/run calls): install what is missing, build once (release
# preset), run every test (all ctest labels).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
source scripts/mpi-env.sh
ctest --preset release --output-on-failure -j2 "$@"
