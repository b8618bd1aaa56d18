#!/bin/bash
# cmake --install of the build into a temporary prefix, then: the installed binary runs, and a
# downstream project finds the package (find_package(DeepMPI)), links DeepMPI::deepmpi and runs.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$1 SRC=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cmake --install "$BUILD" --prefix "$work/prefix" > "$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
for f in bin/deepmpi lib/libdeepmpi_engine.a lib/libdeepmpi_base.a lib/cmake/DeepMPI/DeepMPIConfig.cmake include/deepmpi/src/engine/trainer.hpp \
         include/deepmpi/deepmpi/version.hpp; do
  [ -e "$work/prefix/$f" ] || fail "missing $f in the installed tree"
done
"$work/prefix/bin/deepmpi" --version | grep -q "^deepmpi 0\." || fail "installed deepmpi --version"
cmake -S "$SRC/tests/e2e/downstream" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE="${DOWNSTREAM_BUILD_TYPE:-Release}" -DCMAKE_CXX_FLAGS="${DOWNSTREAM_CXX_FLAGS:-}" \
  -DCMAKE_EXE_LINKER_FLAGS="${DOWNSTREAM_LINK_FLAGS:-}" > "$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "downstream configure"; }
cmake --build "$work/build" > "$work/build.log" 2>&1 || { cat "$work/build.log"; fail "downstream build"; }
out=$("$work/build/downstream")
echo "$out"
# 32 = MBS x 2 x 4 -> MBS 4; tiny: 2 layers, d 128, vocab 512, 64 positions (12 d^2 + 13 d per block)
expect=$(( 512*128 + 64*128 + 2*(12*128*128 + 13*128) + 2*128 ))
echo "$out" | grep -q "micro batch 4, tiny has $expect parameters" || fail "downstream output (expected $expect parameters)"
echo "install test: installed tree complete, downstream project built against DeepMPI::deepmpi and ran"
