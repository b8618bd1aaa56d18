#!/bin/bash
# --save on a read-only file system and on a full one (tmpfs mounts made by the test; skipped,
# exit 77, where mounting is not allowed). Read-only: refused at start-up, before training.
# Full: the save that does not fit is refused before writing anything, naming the sizes, and
# the earlier checkpoint and `latest` stay intact. Usage: test_checkpoint_disk.sh DEEPMPI MPIEXEC
set -uo pipefail
BIN=$1 MPIEXEC=$2
work=$(mktemp -d -t deepmpi-disk.XXXXXX)
mkdir -p "$work/ro" "$work/full"
cleanup() { umount "$work/ro" 2>/dev/null; umount "$work/full" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -n 5 "$work"/*.txt; exit 1; }
if ! mount -t tmpfs -o ro,size=1m tmpfs "$work/ro" 2>/dev/null || ! mount -t tmpfs -o size=8m tmpfs "$work/full" 2>/dev/null; then
  echo "SKIP: cannot mount tmpfs here (needs root / CAP_SYS_ADMIN)"; exit 77
fi
train() { OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --seq-length 32 "$@"; }

train --train-iters 4 --save "$work/ro/ck" > "$work/ro.txt" 2>&1 && fail "saving to a read-only file system succeeded"
grep -q -- "--save $work/ro/ck: cannot create the directory: Read-only file system" "$work/ro.txt" || fail "read-only message"
grep -q "^step" "$work/ro.txt" && fail "training started before the read-only --save was refused"
echo "read-only --save: refused before training"

# one checkpoint (5.4 MiB) fits in 8 MiB, the second does not
train --train-iters 4 --save "$work/full/ck" --save-interval 2 > "$work/full.txt" 2>&1 && fail "a save into a full file system succeeded"
grep -q "not enough space for checkpoint global_step4 in $work/full/ck: it needs" "$work/full.txt" || fail "full-disk message"
[ "$(cat "$work/full/ck/latest")" = global_step2 ] || fail "latest must still name global_step2"
ls "$work/full/ck" | grep -q "global_step4" && fail "a partial global_step4 was left"
"$BIN" checkpoint verify "$work/full/ck" > "$work/v.txt" || fail "global_step2 damaged"
echo "full file system: the save that does not fit is refused; global_step2 intact"
