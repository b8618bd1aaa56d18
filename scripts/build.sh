#!/bin/bash
# Installs what is missing and builds the release preset (build/release). Used by
# quickstart.sh and test.sh; safe to run again (incremental).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake --preset release > /dev/null
cmake --build --preset release
