#!/bin/bash
# Slurm's warning signal reaching one rank only: SIGUSR1 (then SIGTERM) to rank 1 of a 2-rank
# training with --save; every rank must stop after the same step, save a checkpoint of that step,
# and the job must exit 0 with the message, well before its step count. The same command (with
# a smaller total) then resumes from that checkpoint by itself. Usage: test_stop_signal.sh DEEPMPI MPIEXEC
set -uo pipefail
BIN=$1 MPIEXEC=$2
work=$(mktemp -d)
trap 'rm -rf "$work"; pkill -9 -f "$BIN train --model tiny --train-iters 100000" 2>/dev/null' EXIT
fail() { echo "FAIL: $*"; grep -v "^step" "$work/out.txt" 2>/dev/null | head -30; exit 1; }
for sig in USR1 TERM; do
  ck=$work/ck-$sig
  OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --train-iters 100000 --log-interval 50 --save "$ck" \
    > "$work/out.txt" 2>&1 &
  job=$!
  for _ in $(seq 100); do grep -q "^step" "$work/out.txt" 2>/dev/null && break; sleep 0.2; done
  grep -q "^step" "$work/out.txt" || fail "$sig: training did not start"
  rank1=""
  for p in $(pgrep -f "$BIN train --model tiny --train-iters 100000"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && rank1=$p
  done
  [ -n "$rank1" ] || fail "$sig: cannot find rank 1"
  kill -s "$sig" "$rank1"
  for _ in $(seq 150); do kill -0 "$job" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$job" 2>/dev/null && fail "$sig: the job did not stop within 30 s of the signal"
  wait "$job"; rc=$?
  [ "$rc" = 0 ] || fail "$sig: exit status $rc (expected 0)"
  grep -q "a stop signal (SIGUSR1/SIGTERM) reached the job; every rank stopped after step [0-9]* of 100000" "$work/out.txt" \
    || fail "$sig: no stop message"
  last=$(grep "^step" "$work/out.txt" | tail -1 | awk '{print $2}')
  stopped=$(sed -n 's/.*every rank stopped after step \([0-9]*\) of.*/\1/p' "$work/out.txt")
  [ "$last" = "$stopped/100000" ] || fail "$sig: the last logged step ($last) is not the stop step ($stopped)"
  grep -q "^done: $stopped steps" "$work/out.txt" || fail "$sig: the summary does not count $stopped steps"
  grep -q "and saved $ck/global_step$stopped; the same command resumes" "$work/out.txt" || fail "$sig: no save message"
  [ "$(cat "$ck/latest")" = "global_step$stopped" ] || fail "$sig: latest is not global_step$stopped"
  "$BIN" checkpoint verify "$ck" > /dev/null || fail "$sig: the checkpoint saved at the stop does not verify"
  total=$((stopped + 2))
  OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --train-iters $total --save "$ck" > "$work/out.txt" 2>&1 \
    || fail "$sig: the resumed run failed"
  grep -q "loaded checkpoint $ck/global_step$stopped/checkpoint.h5 (step $stopped" "$work/out.txt" || fail "$sig: no resume"
  [ "$(grep -c "^step" "$work/out.txt")" = 2 ] && grep -q "^step *$total/$total |" "$work/out.txt" \
    || fail "$sig: the resumed run should train steps $((stopped + 1))-$total"
  echo "stop signal $sig to rank 1: both ranks stopped after step $stopped, saved it, exited 0; the rerun resumed there"
done
