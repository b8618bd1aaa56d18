#!/bin/bash
# Resume is bit-exact across processes for every ZeRO stage and precision (label e2e): for
# stages 0-3 x fp32/bf16/fp16, 20 steps straight against 10 steps + save in one process and
# 10 more after loading in a new process (--load defaults to --save): the losses of all 20 steps
# and every dataset of the final checkpoints (parameters and optimizer states) identical, the
# fp16 loss-scaler state included. Usage: test_checkpoint_resume.sh DEEPMPI MPIEXEC
set -uo pipefail
BIN=$1 MPIEXEC=$2
PY=/usr/bin/python3
work=$(mktemp -d -t deepmpi-resume.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.txt; do echo "== $f"; tail -n 8 "$f"; done; exit 1; }
train() {  # train CONFIG OUT METRICS [flags...]
  local cfg=$1 out=$2 metrics=$3; shift 3
  OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --seq-length 32 --deepspeed-config "$cfg" \
    --peak-tflops 1 --metrics-file "$metrics" "$@" > "$out" 2>&1
}
for stage in 0 1 2 3; do
  for prec in fp32 bf16 fp16; do
    id=s$stage-$prec cfg=$work/$id.json
    case $prec in
      fp32) p='' ;;
      bf16) p='"bf16": {"enabled": true},' ;;
      # starts high enough to overflow and skip steps before the save
      fp16) p='"fp16": {"enabled": true, "initial_scale_power": 24, "hysteresis": 1, "loss_scale_window": 4},' ;;
    esac
    cat > "$cfg" <<JSON
{"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2, $p
 "zero_optimization": {"stage": $stage}, "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 0.003, "weight_decay": 0.1}},
 "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 5, "warmup_max_lr": 0.003}}}
JSON
    train "$cfg" "$work/$id-a.txt" "$work/$id-a.jsonl" --train-iters 20 --save "$work/$id-straight" || fail "$id straight"
    train "$cfg" "$work/$id-b.txt" "$work/$id-b.jsonl" --train-iters 10 --save "$work/$id-ck" || fail "$id first 10"
    train "$cfg" "$work/$id-c.txt" "$work/$id-c.jsonl" --train-iters 20 --save "$work/$id-ck" || fail "$id last 10"
    grep -q "loaded checkpoint $work/$id-ck/global_step10/checkpoint.h5 (step 10" "$work/$id-c.txt" || fail "$id: no resume"
    "$PY" - "$work" "$id" "$prec" <<'PY' || fail "$id: the resumed run differs"
import h5py, json, numpy as np, sys, os
w, id_, prec = sys.argv[1:]
def losses(*files):
    out = {}
    for f in files:
        for r in map(json.loads, open(os.path.join(w, f))):
            if "loss" in r: out[r["step"]] = (r["loss"], r["loss_scale"], r["skipped"])
    return out
a, b = losses(id_ + "-a.jsonl"), losses(id_ + "-b.jsonl", id_ + "-c.jsonl")
assert sorted(a) == list(range(1, 21)) and sorted(b) == sorted(a), (sorted(a), sorted(b))
bad = [s for s in a if a[s] != b[s]]
assert not bad, [(s, a[s], b[s]) for s in bad]
if prec == "fp16":
    assert any(a[s][2] for s in range(1, 11)), "no skipped step before the save"
x = h5py.File(os.path.join(w, id_ + "-straight/global_step20/checkpoint.h5"), "r")
y = h5py.File(os.path.join(w, id_ + "-ck/global_step20/checkpoint.h5"), "r")
names = []
x.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
assert len(names) == 3 * 28
diff = [n for n in names if not np.array_equal(x[n][()], y[n][()])]
assert not diff, diff
for k in ("global_steps", "skipped_steps", "micro_steps", "applied_steps", "global_samples", "lr_scheduler"):
    assert x.attrs[k] == y.attrs[k], k
if prec == "fp16":
    assert x.attrs["loss_scaler"] == y.attrs["loss_scaler"]
PY
    echo "ZeRO stage $stage $prec: 10 + 10 steps in two processes == 20 steps (losses, parameters, optimizer states)"
  done
done
