#!/bin/bash
# Installs what is missing and builds the release preset (build/release). Used by
# quickstart.sh and test.sh; safe to run again (incremental).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# --require-all (scripts/test.sh, so CI): every optional dependency must be found, or the configure
# step stops (a build that silently lost oneDNN cannot pass).
args=()
if [ "${1:-}" = --require-all ]; then
  args=(-DDEEPMPI_REQUIRE_DNNL=ON -DDEEPMPI_REQUIRE_GTEST=ON -DDEEPMPI_REQUIRE_BENCHMARK=ON -DDEEPMPI_REQUIRE_URING=ON)
fi
cmake --preset release "${args[@]}" > /dev/null
cmake --build --preset release
