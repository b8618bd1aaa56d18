#!/bin/bash
# Hang diagnostics: one rank skips a collective; the job must end within the timeout with a
# message naming the collective and the rank that did not arrive. Usage: test_hang.sh PROG MPIEXEC
set -uo pipefail
PROG=$1 MPIEXEC=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
DEEPMPI_COMM_TIMEOUT=3 timeout 120 "$MPIEXEC" -n 3 "$PROG" 1 > "$out" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$out"
fail() { echo "FAIL: $*"; exit 1; }
[ "$rc" -ne 0 ] || fail "the job exited 0 although rank 1 skipped a collective"
[ "$rc" -ne 124 ] || fail "the job hung until the test's own 120 s timeout"
[ "$elapsed" -lt 60 ] || fail "took ${elapsed} s (timeout was 3 s)"
grep -q "HANG on world rank" "$out" || fail "no hang report"
grep -q "in all_reduce #2 on group 'world'" "$out" || fail "report does not name the collective and its sequence number"
grep -q "group rank 1 (world rank 1) has not arrived" "$out" || fail "report does not name the missing rank"
grep -q "group rank 0 (world rank 0) has not arrived" "$out" && fail "rank 0 wrongly reported missing"
grep -q "group rank 2 (world rank 2) has not arrived" "$out" && fail "rank 2 wrongly reported missing"
echo "hang test (finished rank): job ended after ${elapsed} s with rc ${rc} and named the missing rank"

# Second case: the rank that skipped is computing (no MPI calls, no watchdog thread): it cannot
# answer, and the abort must still end the job, computing rank included.
start=$(date +%s)
DEEPMPI_COMM_TIMEOUT=3 timeout 120 "$MPIEXEC" -n 3 "$PROG" 1 compute > "$out" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$out"
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "compute case: rc $rc"
[ "$elapsed" -lt 45 ] || fail "compute case took ${elapsed} s (the skipping rank computes for 60 s: the job was not ended)"
grep -q "group rank 1 (world rank 1) has not arrived: no answer (it finished, crashed, is computing" "$out" \
  || fail "compute case: report does not name rank 1"
echo "hang test (computing rank): job ended after ${elapsed} s with rc ${rc} and named the missing rank"
