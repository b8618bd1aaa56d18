#!/bin/bash
# The job scripts under real Slurm on this machine: starts munge, slurmctld and slurmd (a private
# slurm.conf, spool, state and logs in a temporary directory; ../shared/reference/platform-notes.md),
# submits jobs/deepmpi-1node.sbatch and jobs/deepmpi-nnodes.sbatch with `sbatch --wait`, checks
# their output and metrics, runs `srun -n 2 deepmpi report`, and stops the daemons it started by
# PID. Skips (exit 77) with the reason when Slurm cannot be started here (not root, not installed).
# Usage: test_slurm.sh DEEPMPI SOURCE_DIR
set -uo pipefail
BIN=$(readlink -f "$1") SRC=$(readlink -f "$2")
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [ -n "${work:-}" ] && tail -20 "$work/slurmctld.log" "$work/slurmd.log" 2>/dev/null; exit 1; }
[ "$(id -u)" = 0 ] || skip "starting slurmctld/slurmd/munged needs root"
for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged sbatch srun sinfo; do
  command -v "$b" > /dev/null || skip "$b is not installed (scripts/install-deps.sh installs slurmctld slurmd slurm-client munge)"
done
[ -r /etc/munge/munge.key ] || skip "no /etc/munge/munge.key"
work=$(mktemp -d /tmp/deepmpi-slurm.XXXXXX)
chmod 755 "$work"
started=()
cleanup() {
  for pidfile in "${started[@]}"; do
    [ -r "$pidfile" ] && kill "$(cat "$pidfile")" 2> /dev/null
  done
  sleep 1
  for pidfile in "${started[@]}"; do
    [ -r "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2> /dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
export SLURM_CONF=$work/slurm.conf
mkdir -p "$work/spool" "$work/state" "$work/runs"
cat > "$SLURM_CONF" <<CONF
ClusterName=deepmpitest
SlurmctldHost=localhost
SlurmctldPort=$((16817 + RANDOM % 1000))
SlurmdPort=$((17818 + RANDOM % 1000))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmdSpoolDir=$work/spool
StateSaveLocation=$work/state
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
# munge: reuse a running daemon, else start one (and stop it at the end)
if ! pgrep -x munged > /dev/null; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/deepmpi-test.pid || skip "munged does not start here"
  started+=(/run/munge/deepmpi-test.pid)
fi
/usr/sbin/slurmctld -f "$SLURM_CONF" || skip "slurmctld does not start here"
started+=("$work/slurmctld.pid")
/usr/sbin/slurmd -f "$SLURM_CONF" -N localhost || skip "slurmd does not start here"
started+=("$work/slurmd.pid")
for _ in $(seq 30); do
  sinfo -h -o %T 2> /dev/null | grep -q idle && break
  sleep 1
done
sinfo -h -o %T | grep -q idle || skip "the Slurm node did not become idle in 30 s"
export PATH=$(dirname "$BIN"):$PATH OMP_NUM_THREADS=1
# 1. the one-node template: 2 ranks, ZeRO stage 2 (the example config from the source tree)
cd "$work/runs"
MODEL=tiny TRAIN_ITERS=3 SAVE_INTERVAL=2 RUN_DIR=$work/runs/one CKPT_DIR=$work/ck DS_CONFIG=$SRC/examples/ds_config_zero2.json \
  timeout 300 sbatch --wait --output="$work/runs/one.out" "$SRC/jobs/deepmpi-1node.sbatch" > /dev/null \
  || { cat "$work/runs/one.out"; fail "the one-node job failed"; }
grep -q "ZeRO stage 2 over dp 2" "$work/runs/one.out" && grep -q "^step      3/3 | loss" "$work/runs/one.out" \
  || { cat "$work/runs/one.out"; fail "one-node job output"; }
[ "$(grep -c '"summary"' "$work/runs/one/metrics.jsonl")" = 1 ] || fail "one-node metrics"
[ "$(cat "$work/ck/latest")" = global_step3 ] && [ -f "$work/ck/global_step2/checkpoint.h5" ] \
  || { ls -R "$work/ck"; fail "one-node checkpoints (global_step2, global_step3, latest)"; }
deepmpi checkpoint verify "$work/ck" > /dev/null || fail "the one-node job's checkpoint does not verify"
# 2. the N-node template (one node here: --nodes=1 overrides its 2), run from the source tree: it
#    resumes from the first job's checkpoint up to the total of 5 steps
cd "$SRC"
MODEL=tiny TRAIN_ITERS=5 RUN_DIR=$work/runs/n CKPT_DIR=$work/ck timeout 300 sbatch --wait --nodes=1 \
  --output="$work/runs/n.out" jobs/deepmpi-nnodes.sbatch > /dev/null || { cat "$work/runs/n.out"; fail "the N-node job failed"; }
grep -q "loaded checkpoint $work/ck/global_step3/checkpoint.h5 (step 3" "$work/runs/n.out" \
  && grep -q "^step      4/5 | loss" "$work/runs/n.out" && grep -q "^step      5/5 | loss" "$work/runs/n.out" \
  || { cat "$work/runs/n.out"; fail "N-node job output (resume from global_step3)"; }
[ "$(cat "$work/ck/latest")" = global_step5 ] || fail "the N-node job did not save global_step5"
# 3. Slurm's signal to a running job's ranks (what --signal=USR1@120 does before the time limit):
#    every rank stops after the same step, the job saves and exits 0
MODEL=tiny TRAIN_ITERS=1000000 RUN_DIR=$work/runs/sig CKPT_DIR=$work/cksig DS_CONFIG=$SRC/examples/ds_config_zero2.json \
  timeout 300 sbatch --wait --output="$work/runs/sig.out" "$SRC/jobs/deepmpi-1node.sbatch" --log-interval 20 > "$work/sig.id" &
sbjob=$!
for _ in $(seq 300); do grep -q "^step" "$work/runs/sig.out" 2>/dev/null && break; sleep 0.2; done
jobid=$(squeue -h -o %i | head -1)
[ -n "$jobid" ] || fail "the signal job is not running"
scancel --signal=USR1 "$jobid" || fail "scancel --signal=USR1"
wait "$sbjob" || { cat "$work/runs/sig.out"; fail "the signalled job did not exit 0"; }
grep -q "every rank stopped after step [0-9]* of 1000000 and saved $work/cksig/global_step" "$work/runs/sig.out" \
  || { cat "$work/runs/sig.out"; fail "no save at the signal"; }
deepmpi checkpoint verify "$work/cksig" > /dev/null || fail "the checkpoint saved at the signal does not verify"
# 3. srun alone: the job's view from deepmpi report
srun -n 2 deepmpi report --json --no-peak > "$work/report.json" 2>&1 || { cat "$work/report.json"; fail "srun deepmpi report"; }
/usr/bin/python3 -c "
import json, sys
r = json.load(open('$work/report.json'))
assert r['mpi']['world_size'] == 2 and r['slurm']['in_allocation'] is True, r
" || { cat "$work/report.json"; fail "report under srun"; }
echo "slurm: one-node and N-node templates ran under sbatch (the second resumed from the first's checkpoint)," \
  "a job signalled with scancel --signal=USR1 saved and exited 0, srun deepmpi report saw 2 ranks in the allocation"
