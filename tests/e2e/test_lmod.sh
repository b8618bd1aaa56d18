#!/bin/bash
# Modulefiles under Lmod: cmake --install into a temporary prefix, `module use` + `module load
# deepmpi/<version>` (the Lua file, then the Tcl one), then `deepmpi --version`, DEEPMPI_ROOT and a
# 2-rank training run from the loaded module. Skips (exit 77) only when Lmod is not installed.
# Usage: test_lmod.sh BUILD_DIR VERSION
set -uo pipefail
BUILD=$1 VERSION=$2
LMOD_INIT=/usr/share/lmod/lmod/init/bash
if [ ! -r "$LMOD_INIT" ]; then
  echo "SKIP: Lmod is not installed ($LMOD_INIT missing; scripts/install-deps.sh installs the lmod package)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cmake --install "$BUILD" --prefix "$work/prefix" > "$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
source "$LMOD_INIT"
for dir in modulefiles modulefiles-tcl; do
  module purge
  module use "$work/prefix/$dir" || fail "module use $dir"
  module load "deepmpi/$VERSION" 2> "$work/load.txt" || { cat "$work/load.txt"; fail "module load deepmpi/$VERSION ($dir)"; }
  [ "$(command -v deepmpi)" = "$work/prefix/bin/deepmpi" ] || fail "$dir: deepmpi on PATH is $(command -v deepmpi)"
  [ "${DEEPMPI_ROOT:-}" = "$work/prefix" ] || fail "$dir: DEEPMPI_ROOT is '${DEEPMPI_ROOT:-}'"
  case ":$CMAKE_PREFIX_PATH:" in *":$work/prefix:"*) ;; *) fail "$dir: CMAKE_PREFIX_PATH lacks the prefix";; esac
  deepmpi --version | grep -q "^deepmpi $VERSION" || fail "$dir: deepmpi --version"
  module help "deepmpi/$VERSION" > "$work/help.txt" 2>&1
  grep -q "Built with the MPI library: .*MPI standard" "$work/help.txt" || { cat "$work/help.txt"; fail "$dir: module help names the MPI"; }
  OMP_NUM_THREADS=1 mpirun -np 2 deepmpi train --model tiny --train-iters 2 > "$work/train.txt" 2>&1 \
    || { cat "$work/train.txt"; fail "$dir: 2-rank training from the module"; }
  grep -q "^step      2/2 | loss" "$work/train.txt" || { cat "$work/train.txt"; fail "$dir: training log"; }
  echo "lmod: $dir/deepmpi/$VERSION loads, runs deepmpi --version and trains on 2 ranks"
done
module purge
