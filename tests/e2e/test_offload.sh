#!/bin/bash
# NVMe offload through the CLI: a 2-rank ZeRO-3 bf16 run with its optimizer states and fp32
# masters spilled (io_uring) saves a checkpoint; the run resumes on 1 rank (resharded 2 -> 1, the
# thread-pool fallback) with the same losses as an uninterrupted in-memory run; peak RSS with
# offload is below the in-memory run's by about what was spilled; the spill files are gone after
# each run; with offload_param too the losses are the same. Bad conditions: a missing nvme_path, a stale directory of the same job id (left
# alone), a file system too small for the spill files (an 1 MiB tmpfs; skipped without mount
# rights), and a write failing mid-step (fault injection: the job stops naming the file, the last
# checkpoint is intact and loads). Usage: test_offload.sh DEEPMPI MPIEXEC
set -uo pipefail
BIN=$1 MPIEXEC=$2
work=$(mktemp -d -t deepmpi-offload.XXXXXX)
mkdir -p "$work/nvme" "$work/small"
cleanup() { umount "$work/small" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -n 8 "$work"/*.txt; exit 1; }
cfg() {  # cfg FILE STAGE NVME_PATH|"" 
  local off=""
  [ -n "$3" ] && off=", \"sub_group_size\": 200000, \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$3\", \"buffer_count\": 3}"
  echo "{\"train_batch_size\": 8, \"train_micro_batch_size_per_gpu\": 2, \"bf16\": {\"enabled\": true},
         \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.001}},
         \"zero_optimization\": {\"stage\": $2$off}}" > "$1"
}
# the model: GPT-2 geometry small enough for CI (4 layers x 256)
model=(--num-layers 4 --hidden-size 256 --num-attention-heads 4 --vocab-size 4096)
train() { local np=$1; shift; OMP_NUM_THREADS=1 "$MPIEXEC" -np "$np" "$BIN" train "${model[@]}" --seq-length 64 "$@"; }
loss_at() { sed -n "s/^step *$2\/.*loss \([0-9.]*\).*/\1/p" "$1" | head -1; }

cfg "$work/mem.json" 3 ""
cfg "$work/off.json" 3 "$work/nvme"
train 2 --deepspeed_config "$work/mem.json" --train-iters 8 > "$work/mem.txt" 2>&1 || fail "in-memory run"
DEEPMPI_SPILL_IO=uring train 2 --deepspeed_config "$work/off.json" --train-iters 4 --save "$work/ck" > "$work/off.txt" 2>&1 \
  || fail "offloaded run"
grep -q "NVMe offload (offload_optimizer): fp32 masters .* + optimizer states .* per rank in $work/nvme/deepmpi-" "$work/off.txt" \
  || fail "no offload line in the banner"
grep -q "I/O: io_uring (queue depth 8" "$work/off.txt" || fail "the banner does not name io_uring"
[ -z "$(ls -A "$work/nvme")" ] || fail "spill files left after a clean exit: $(ls -R "$work/nvme")"
for s in 1 2 3 4; do
  [ "$(loss_at "$work/off.txt" $s)" = "$(loss_at "$work/mem.txt" $s)" ] || fail "step $s: offloaded loss $(loss_at "$work/off.txt" $s) != in-memory $(loss_at "$work/mem.txt" $s)"
done
echo "offloaded run (io_uring) = in-memory run, steps 1-4; spill directory removed"

DEEPMPI_SPILL_IO=threads train 1 --deepspeed_config "$work/off.json" --train-iters 8 --load "$work/ck" > "$work/resume.txt" 2>&1 \
  || fail "resume on 1 rank"
grep -q "saved at tp 1 pp 1 dp 2 ZeRO stage 3; now tp 1 pp 1 dp 1 stage 3" "$work/resume.txt" || fail "no resharded load line"
grep -q "I/O: thread pool of 1 pread/pwrite" "$work/resume.txt" || fail "the banner does not name the thread pool"
for s in 5 6 7 8; do
  a=$(loss_at "$work/resume.txt" $s) b=$(loss_at "$work/mem.txt" $s)
  # one rank sums the micro-batches in another order than two: equal to rounding
  python3 -c "import sys; a,b=float('$a'),float('$b'); sys.exit(0 if abs(a-b) <= 2e-3*abs(b) else 1)" \
    || fail "step $s after resharding 2 -> 1: $a vs $b"
done
echo "resumed on 1 rank from the 2-rank offloaded checkpoint: losses of steps 5-8 match"

# peak RSS: the offloaded run holds 12 fewer bytes per parameter partition than the in-memory one
rss() { sed -n 's/.*peak RSS \([0-9.]*\) \(MiB\|GiB\).*/\1 \2/p' "$1" | awk '{print ($2=="GiB") ? $1*1024 : $1}'; }
train 1 --deepspeed_config "$work/mem.json" --train-iters 2 > "$work/rss-mem.txt" 2>&1 || fail "rss in-memory"
train 1 --deepspeed_config "$work/off.json" --train-iters 2 > "$work/rss-off.txt" 2>&1 || fail "rss offload"
python3 - "$(rss "$work/rss-mem.txt")" "$(rss "$work/rss-off.txt")" <<'PY' || fail "peak RSS"
import sys
mem, off = float(sys.argv[1]), float(sys.argv[2])
params = 4 * (12 * 256 * 256 + 13 * 256) + 4096 * 256 + 64 * 256 + 2 * 256  # about 4.2M
spilled = 12 * params / 2**20  # MiB: fp32 masters + two Adam states
print(f"peak RSS: in memory {mem:.0f} MiB, offloaded {off:.0f} MiB, spilled {spilled:.0f} MiB")
sys.exit(0 if off < mem - 0.6 * spilled else 1)
PY

# offload_param as well (stage 3): the same losses on 2 ranks, no parameter partition in memory
sed 's|"buffer_count": 3}|"buffer_count": 3}, "offload_param": {"device": "nvme", "nvme_path": "'"$work/nvme"'"}|' "$work/off.json" > "$work/par.json"
train 2 --deepspeed_config "$work/par.json" --train-iters 4 > "$work/par.txt" 2>&1 || fail "offload_param run"
grep -q "NVMe offload (offload_param): no parameter partition in memory" "$work/par.txt" || fail "no offload_param line"
for s in 1 2 3 4; do
  [ "$(loss_at "$work/par.txt" $s)" = "$(loss_at "$work/mem.txt" $s)" ] || fail "offload_param step $s: $(loss_at "$work/par.txt" $s) != $(loss_at "$work/mem.txt" $s)"
done
grep -q "^  NVMe offload | read [0-9.]* GB | written [0-9.]* GB" "$work/par.txt" || fail "no spill traffic line per step"
[ -z "$(ls -A "$work/nvme")" ] || fail "spill files left after the offload_param run"
sed 's|"offload_optimizer": {[^}]*}|"offload_param": {"device": "nvme", "nvme_path": "'"$work/nvme"'"}|' "$work/off.json" > "$work/paronly.json"
train 1 --deepspeed_config "$work/paronly.json" --train-iters 1 > "$work/paronly.txt" 2>&1 && fail "offload_param without offload_optimizer"
grep -q 'offload_param.device = "nvme" with offload_optimizer.device = "none" .*set offload_optimizer.device to "nvme" as well' "$work/paronly.txt" \
  || fail "offload_param alone: message"
echo "offload_param nvme: in-memory losses on 2 ranks; alone it is refused naming the fix"

# bad conditions
cfg "$work/missing.json" 2 "$work/nope"
train 1 --deepspeed_config "$work/missing.json" --train-iters 1 > "$work/missing.txt" 2>&1 && fail "a missing nvme_path was accepted"
grep -q "offload nvme_path $work/nope does not exist" "$work/missing.txt" || fail "missing nvme_path message"
mkdir -p "$work/nvme/deepmpi-e2e-stale/rank0" && touch "$work/nvme/deepmpi-e2e-stale/rank0/keep"
SLURM_JOB_ID=e2e-stale train 1 --deepspeed_config "$work/off.json" --train-iters 1 > "$work/stale.txt" 2>&1 \
  && fail "a stale spill directory was reused"
grep -q "spill directory $work/nvme/deepmpi-e2e-stale/rank0 already exists" "$work/stale.txt" || fail "stale message"
[ -f "$work/nvme/deepmpi-e2e-stale/rank0/keep" ] || fail "the stale directory was touched"
rm -rf "$work/nvme/deepmpi-e2e-stale"
echo "missing nvme_path and stale spill directory: refused, nothing touched"

# a write fails mid-step (the disk fills): the job stops naming the file; the checkpoint of step 2 is intact
train 1 --deepspeed_config "$work/off.json" --train-iters 2 --save "$work/ck2" > "$work/ck2.txt" 2>&1 || fail "ck2"
DEEPMPI_TEST_SPILL_FAIL=write:200 train 1 --deepspeed_config "$work/off.json" --train-iters 6 --load "$work/ck2" --save "$work/ck2" \
  --save-interval 1 > "$work/midstep.txt" 2>&1 && fail "a failed spill write went unnoticed"
grep -q "No space left on device (the nvme_path file system is full" "$work/midstep.txt" || fail "mid-step message"
[ -z "$(ls -A "$work/nvme")" ] || fail "spill files left after the error"
"$BIN" checkpoint verify "$work/ck2" > "$work/verify.txt" 2>&1 || fail "the last checkpoint is damaged"
echo "a spill write failing mid-step stops the job; $(cat "$work/ck2/latest") intact"

if mount -t tmpfs -o size=1m tmpfs "$work/small" 2>/dev/null; then
  cfg "$work/small.json" 2 "$work/small"
  train 1 --deepspeed_config "$work/small.json" --train-iters 1 > "$work/small.txt" 2>&1 && fail "spill files larger than the disk"
  grep -q "cannot allocate the spill file $work/small/deepmpi-.*No space left on device - the file system of nvme_path is full" "$work/small.txt" \
    || fail "full-disk message"
  grep -q "^step" "$work/small.txt" && fail "training started on a disk too small for its spill files"
  echo "a file system too small for the spill files: refused at start-up"
else
  echo "note: cannot mount tmpfs here: the too-small file system case is not run"
fi
echo PASS
