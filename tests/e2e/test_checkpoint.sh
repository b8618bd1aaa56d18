#!/bin/bash
# Checkpoints through the CLI, each run a new process (label e2e):
#  1. resume: 9 steps straight == 3 steps + save, then the same command with --train-iters 9
#     (--load defaults to --save): the same losses, step numbers and final checkpoint, exactly
#     (every stage and precision: test_checkpoint_resume.sh); the same with --async-save
#  2. kill -9 of one rank while global_step6 is being written: global_step3 and `latest` stay
#     intact, the incomplete global_step6.tmp is reported and ignored, and the resumed run ends
#     with the same losses as the straight one
#  3. inspect / verify (also in parallel) / export; h5py reads the parameters and they equal the
#     exported safetensors and HDF5 files; a damaged copy fails verify
#  4. errors: --load of a missing directory, a model of another shape
# Usage: test_checkpoint.sh DEEPMPI MPIEXEC
set -uo pipefail
BIN=$1 MPIEXEC=$2
PY=/usr/bin/python3
work=$(mktemp -d -t deepmpi-ckpt.XXXXXX)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.txt; do echo "== $f"; tail -n 15 "$f"; done; exit 1; }
cat > "$work/ds.json" <<'JSON'
{"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2,
 "zero_optimization": {"stage": 2}, "bf16": {"enabled": true}, "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 0.003, "weight_decay": 0.1}},
 "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 4, "warmup_max_lr": 0.003}}}
JSON
train() {  # train OUT METRICS [flags...]
  local out=$1 metrics=$2; shift 2
  OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --seq-length 32 --deepspeed-config "$work/ds.json" \
    --metrics-file "$metrics" "$@" > "$out" 2>&1
}
# losses by step from metrics files, compared exactly
same_losses() {
  "$PY" - "$@" <<'PY'
import json, sys
ref = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r}
got = {}
for f in sys.argv[2:]:
    for r in map(json.loads, open(f)):
        if "loss" in r: got[r["step"]] = r["loss"]
assert sorted(got) == sorted(ref), (sorted(got), sorted(ref))
bad = [s for s in ref if ref[s] != got[s]]
assert not bad, [(s, ref[s], got[s]) for s in bad]
print("losses of steps %d-%d identical" % (min(ref), max(ref)))
PY
}

# ---- 1. resume ----
train "$work/straight.txt" "$work/straight.jsonl" --train-iters 9 --save "$work/straight" || fail "straight run"
train "$work/a.txt" "$work/a.jsonl" --train-iters 3 --save "$work/ck" || fail "first half"
grep -q "no checkpoint in $work/ck yet: starting from step 0" "$work/a.txt" || fail "fresh start message"
[ "$(cat "$work/ck/latest")" = global_step3 ] || fail "latest after the first half"
train "$work/b.txt" "$work/b.jsonl" --train-iters 9 --save "$work/ck" || fail "second half"
grep -q "loaded checkpoint $work/ck/global_step3/checkpoint.h5 (step 3" "$work/b.txt" || fail "no load message"
grep -q "^step      4/9 |" "$work/b.txt" || fail "the resumed run must log step 4 first"
same_losses "$work/straight.jsonl" "$work/a.jsonl" "$work/b.jsonl" || fail "resumed losses differ"
"$PY" - "$work/straight/global_step9/checkpoint.h5" "$work/ck/global_step9/checkpoint.h5" <<'PY' || fail "final states differ"
import h5py, numpy as np, sys
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
names = []
a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
assert len(names) == 3 * 28, len(names)
bad = [n for n in names if not np.array_equal(a[n][()], b[n][()])]
assert not bad, bad
for k in ("global_steps", "applied_steps", "global_samples", "lr_scheduler"):
    assert a.attrs[k] == b.attrs[k], k
PY
echo "resume: 3 + 6 steps in two processes == 9 steps; final parameters and optimizer states identical"
# --async-save: the writes go on in a background thread while training continues; same results
train "$work/as.txt" "$work/as.jsonl" --train-iters 9 --save "$work/as" --save-interval 2 --async-save || fail "async save run"
grep -q "checkpoint global_step2: a snapshot of .* per rank is being copied and written in the background" "$work/as.txt" || fail "async message"
grep -q "training waited [0-9.]* ms for the snapshot)" "$work/as.txt" || fail "async save report"
same_losses "$work/straight.jsonl" "$work/as.jsonl" || fail "losses with --async-save differ"
for t in 2 4 6 8 9; do [ -f "$work/as/global_step$t/checkpoint.h5" ] || fail "async: global_step$t missing"; done
"$BIN" checkpoint export "$work/as" --output "$work/as.safetensors" > /dev/null || fail "async export"
"$BIN" checkpoint export "$work/straight" --output "$work/st.safetensors" > /dev/null || fail "straight export"
"$PY" - "$work/as/global_step4/checkpoint.h5" "$work/ck/global_step3/checkpoint.h5" "$work/as.safetensors" "$work/st.safetensors" <<'PY' || fail "async checkpoints"
import h5py, sys
a = h5py.File(sys.argv[1], "r"); assert a.attrs["global_steps"] == 4
# the last two files hold the same tensors; only the header's source path differs
x, y = open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()
nx, ny = int.from_bytes(x[:8], "little"), int.from_bytes(y[:8], "little")
assert x[8 + nx:] == y[8 + ny:], "final parameters with --async-save differ"
PY
"$BIN" checkpoint verify "$work/as" --tag global_step4 > /dev/null || fail "async global_step4 does not verify"
echo "async save: checkpoints written in the background verify; training results identical"

# ---- 2. kill -9 during a save ----
export DEEPMPI_TEST_SAVE_DELAY=global_step6:60000
train "$work/k.txt" "$work/k.jsonl" --train-iters 9 --save "$work/kk" --save-interval 3 &
job=$!
for _ in $(seq 300); do [ -f "$work/kk/global_step6.tmp/checkpoint.h5" ] && break; sleep 0.1; done
[ -f "$work/kk/global_step6.tmp/checkpoint.h5" ] || fail "the save of step 6 did not start"
victim=""
for p in $(pgrep -f "$BIN train --model tiny"); do
  tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -q "^DEEPMPI_TEST_SAVE_DELAY=" || continue
  tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$p
done
[ -n "$victim" ] || fail "cannot find rank 1"
kill -9 "$victim"
for _ in $(seq 300); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
kill -0 "$job" 2>/dev/null && { pkill -9 -f "$work/kk"; fail "the job did not end after a rank was killed"; }
wait "$job" && fail "a job with a killed rank exited 0"
unset DEEPMPI_TEST_SAVE_DELAY
[ "$(cat "$work/kk/latest")" = global_step3 ] || fail "latest must still name global_step3"
[ -d "$work/kk/global_step6" ] && fail "global_step6 must not exist"
"$BIN" checkpoint verify "$work/kk" > "$work/v.txt" || fail "global_step3 damaged by the crash"
train "$work/k2.txt" "$work/k2.jsonl" --train-iters 9 --save "$work/kk" --save-interval 3 || fail "resume after the crash"
grep -q "removing $work/kk/global_step6.tmp: an incomplete save" "$work/k2.txt" || fail "the incomplete save was not reported (and removed) at start"
grep -q "loaded checkpoint $work/kk/global_step3/checkpoint.h5 (step 3" "$work/k2.txt" || fail "did not resume from step 3"
same_losses "$work/straight.jsonl" "$work/a.jsonl" "$work/k2.jsonl" || fail "losses after the crash differ"
[ "$(cat "$work/kk/latest")" = global_step9 ] && [ ! -e "$work/kk/global_step6.tmp" ] || fail "state after the resumed run"
echo "kill -9 during a save: previous checkpoint intact, incomplete save ignored, resumed run identical"

# ---- 3. tools ----
"$BIN" checkpoint inspect "$work/ck" > "$work/i.txt" || fail "inspect"
grep -q "tags: \[\"global_step3\",\"global_step9\"\]" "$work/i.txt" || fail "inspect tags"
grep -q "global_steps       9" "$work/i.txt" && grep -q '"zero_stage":2' "$work/i.txt" || fail "inspect step/topology"
grep -q "every checksum matches" "$work/i.txt" || fail "inspect checksum status"
"$BIN" checkpoint inspect "$work/ck" --tag global_step3 --json | "$PY" -c '
import json, sys; d = json.load(sys.stdin)
assert d["tag"] == "global_step3" and d["global_steps"] == 3 and d["checksum_mismatches"] == 0, d
assert all(x["checksum"] == "ok" for x in d["datasets"]) and len(d["datasets"]) == 3 * 28' || fail "inspect --json"
OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" checkpoint verify "$work/ck" > "$work/v2.txt" || fail "parallel verify"
grep -q "all checksums match" "$work/v2.txt" || fail "verify message"
"$BIN" checkpoint export "$work/ck" --output "$work/resumed.safetensors" > /dev/null || fail "export"
"$BIN" checkpoint export "$work/ck" --output "$work/w.h5" --format hdf5 > /dev/null || fail "export hdf5"
"$BIN" checkpoint export "$work/ck" --output "$work/w16.safetensors" --dtype bf16 > /dev/null || fail "export bf16"
mkdir "$work/shards"
"$BIN" checkpoint export "$work/ck" --output "$work/shards/model.safetensors" --max-shard-size 300KB > "$work/e.txt" || fail "sharded export"
"$PY" - "$work" <<'PY' || fail "h5py read-back"
import h5py, json, numpy as np, struct, sys, os
w = sys.argv[1]
def safetensors(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); data = b[8 + n:]; out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, e = v["data_offsets"]
        if v["dtype"] == "F32": x = np.frombuffer(data[a:e], dtype="<f4")
        else: x = (np.frombuffer(data[a:e], dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        out[k] = x.reshape(v["shape"])
    return out
ck = h5py.File(os.path.join(w, "ck/global_step9/checkpoint.h5"), "r")
assert ck.attrs["format"] == b"deepmpi.checkpoint" or ck.attrs["format"] == "deepmpi.checkpoint"
params = {k: ck["params"][k][()] for k in ck["params"]}
assert len(params) == 28 and params["wte"].shape == (512, 128)
st = safetensors(os.path.join(w, "resumed.safetensors"))
h5 = h5py.File(os.path.join(w, "w.h5"), "r")
idx = json.load(open(os.path.join(w, "shards/model.safetensors.index.json")))
shards = {}
for f in set(idx["weight_map"].values()): shards.update(safetensors(os.path.join(w, "shards", f)))
bf = safetensors(os.path.join(w, "w16.safetensors"))
for k, v in params.items():
    assert v.dtype == np.float32
    assert np.array_equal(v, st[k]) and np.array_equal(v, h5[k][()]) and np.array_equal(v, shards[k]), k
    # bf16: round to nearest, relative error at most 2^-8
    assert np.all(np.abs(bf[k] - v) <= np.abs(v) * 2.0 ** -8 + 1e-38), k
assert len(set(idx["weight_map"].values())) > 1 and idx["metadata"]["total_size"] == sum(v.nbytes for v in params.values())
print("h5py: %d parameters equal the safetensors/HDF5/sharded exports" % len(params))
PY
mkdir -p "$work/bad/global_step9" && cp "$work/ck/global_step9/checkpoint.h5" "$work/bad/global_step9/"
echo global_step9 > "$work/bad/latest"
size=$(stat -c %s "$work/bad/global_step9/checkpoint.h5")
printf '\x55\xaa' | dd of="$work/bad/global_step9/checkpoint.h5" bs=1 seek=$((size * 3 / 5)) conv=notrunc status=none
"$BIN" checkpoint verify "$work/bad" > "$work/v3.txt" && fail "verify passed a damaged file"
grep -q "^MISMATCH /" "$work/v3.txt" || fail "verify did not name the damaged dataset"
train "$work/bad.txt" /dev/null --train-iters 12 --load "$work/bad" && fail "training loaded a damaged checkpoint"
grep -q "is damaged: the checksum (crc32c) of /" "$work/bad.txt" || fail "load error for the damaged file"
echo "tools: inspect, verify (1 and 2 ranks), export (safetensors fp32/bf16/sharded, hdf5) checked with h5py"

# ---- 4. errors ----
train "$work/e1.txt" /dev/null --train-iters 4 --load "$work/none" && fail "--load of a missing directory"
grep -q "checkpoint directory $work/none does not exist" "$work/e1.txt" || fail "missing directory message"
OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --seq-length 32 --num-layers 3 --deepspeed-config "$work/ds.json" \
  --train-iters 12 --load "$work/ck" > "$work/e2.txt" 2>&1 && fail "a model of another shape was loaded"
grep -q "holds a different model: --num-layers 2 (this run: 3)" "$work/e2.txt" || fail "model mismatch message"
echo "errors: missing directory, other model shape"
