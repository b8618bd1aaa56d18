#!/bin/bash
# Attribute checksums (issue 19, item 2): a tiny checkpoint, then tests/e2e/checkpoint_damage.py
# edits and flips its bytes (attributes included); none may load silently.
# Usage: test_checkpoint_damage.sh DEEPMPI MPIEXEC
set -euo pipefail
BIN=$1 MPIEXEC=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 -c "import h5py, numpy" 2> /dev/null || { echo "SKIPPED: needs python3-h5py and python3-numpy"; exit 77; }
OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --seq-length 32 --train-iters 3 --save "$work/ck" > "$work/out.txt" 2>&1 \
  || { cat "$work/out.txt"; echo "FAIL: could not write the checkpoint"; exit 1; }
FLIPS=${FLIPS:-30} /usr/bin/python3 "$(dirname "$0")/checkpoint_damage.py" "$BIN" "$work/ck"
