#!/bin/bash
# An error on one rank ends the whole job (issue 19, item 1): an exception on rank 0 only and on
# rank 1 only, at start-up, at group creation, at load, mid-training, at save and at the end
# (DEEPMPI_FAULT, base/error.hpp), and a real one: a metrics file in a folder that does not exist,
# which only rank 0 opens. Each job must end within seconds (the comm timeout is 120 s, so no case
# may wait for it), print the failing rank's message exactly once, and exit non-zero; a fault at
# save leaves the checkpoint that was there intact. Usage: test_failure.sh DEEPMPI MPIEXEC
set -uo pipefail
BIN=$1 MPIEXEC=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; grep -v "^step" "$work/out.txt" 2>/dev/null | head -30; exit 1; }
# run_job LABEL ARGS...: the 2-rank job under a 60 s limit; sets rc and secs
run_job() {
  local label=$1; shift
  local t0; t0=$(date +%s%N)
  OMP_NUM_THREADS=1 timeout -k 5 60 "$MPIEXEC" -np 2 "$BIN" train --model tiny --seq-length 32 --comm-timeout 120 "$@" \
    > "$work/out.txt" 2>&1
  rc=$?
  secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
  [ "$rc" -ne 0 ] || fail "$label: the job exited 0"
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "$label: the job hung until the test's 60 s limit"
  [ "$secs" -lt 30 ] || fail "$label: took $secs s"
  grep -q "HANG" "$work/out.txt" && fail "$label: ended by the hang report, not by the error"
  return 0
}
# the base: a checkpoint at step 2 that the load cases resume from
OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --seq-length 32 --train-iters 2 --save "$work/ck" \
  > "$work/out.txt" 2>&1 || fail "the base run"
cp -a "$work/ck" "$work/ck0"
for point in startup groups load step4 save exit; do
  for rank in 0 1; do
    export DEEPMPI_FAULT="$point:$rank"
    run_job "$point on rank $rank" --train-iters 6 --save "$work/ck"  # resumes from step 2, trains 3-6, saves
    unset DEEPMPI_FAULT
    n=$(grep -c "deepmpi: error: injected fault at '$point' on world rank $rank" "$work/out.txt")
    [ "$n" = 1 ] || fail "$point on rank $rank: the failing rank's message was printed $n times (want 1)"
    if [ "$point" = save ]; then  # the checkpoint that was there is still the current one, and sound
      grep -qx global_step2 "$work/ck/latest" || fail "save on rank $rank: latest moved ($(cat "$work/ck/latest"))"
      "$BIN" checkpoint verify "$work/ck" > /dev/null 2>&1 || fail "save on rank $rank: the previous checkpoint does not verify"
    fi
    echo "fault at $point on rank $rank: the job ended after $secs s with rc $rc, the message printed once"
    rm -rf "$work/ck" && cp -a "$work/ck0" "$work/ck"
  done
done
# a real error on rank 0 only (it alone opens the metrics file): the issue's report hung forever
run_job "metrics file" --train-iters 5 --metrics-file "$work/no/such/dir/m.jsonl"
n=$(grep -c "deepmpi: error: .*$work/no/such/dir/m.jsonl" "$work/out.txt")
[ "$n" = 1 ] || fail "metrics file: the message naming the file was printed $n times (want 1)"
echo "metrics file in a missing folder: the job ended after $secs s with rc $rc, the message printed once"
echo "e2e failure paths: all checks passed"
