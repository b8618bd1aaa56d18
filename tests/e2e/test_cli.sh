#!/bin/bash
# End-to-end: the deepmpi CLI under mpirun. Usage: test_cli.sh DEEPMPI MPIEXEC SOURCE_DIR
set -euo pipefail
BIN=$1 MPIEXEC=$2 SRC=$3
work=$(mktemp -d -t deepmpi-e2e.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
run1() { OMP_NUM_THREADS=2 "$MPIEXEC" -np 1 --bind-to none "$BIN" "$@"; }

"$BIN" --version | grep -q '^deepmpi [0-9]' || fail "--version"

# 1. mock-data training with a metrics file: one JSON object per logged step, loss finite
run1 train --model tiny --mock-data --deepspeed_config "$SRC/examples/ds_config.json" --train-iters 4 \
  --metrics-file "$work/m.jsonl" > "$work/out.txt"
grep -q 'step      4/4 | loss' "$work/out.txt" || fail "no step line"
grep -q 'tokens/s' "$work/out.txt" && grep -q 'MFU' "$work/out.txt" || fail "no throughput columns"
[ "$(wc -l < "$work/m.jsonl")" = 5 ] || fail "metrics file should have 4 step lines and a summary"
/usr/bin/python3 - "$work/m.jsonl" <<'PY' || fail "metrics records"
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
summary = recs.pop()
assert summary["summary"] is True and summary["steps"] == 4 and summary["dp"] == 1, summary
assert summary["params_bytes"] > 0 and summary["peak_rss_bytes_max_rank"] > summary["params_bytes"], summary
keys = {"step", "loss", "lr", "grad_norm", "step_ms", "tokens_per_s", "tflops", "mfu"}
assert all(keys <= set(r) for r in recs), recs[0].keys()
assert [r["step"] for r in recs] == [1, 2, 3, 4]
assert all(math.isfinite(r["loss"]) and r["tokens_per_s"] > 0 for r in recs)
PY

# 2. data prepare (deepmpi and Megatron formats) and training on the result
for i in $(seq 200); do echo "line $i: the quick brown fox jumps over the lazy dog"; done > "$work/a.txt"
printf 'second document\n%.0s' $(seq 100) > "$work/b.txt"
"$BIN" data prepare --input "$work/a.txt" "$work/b.txt" --output "$work/corpus" | grep -q 'wrote' || fail "prepare"
"$BIN" data prepare --input "$work/a.txt" --output "$work/mega" --format megatron | grep -q MMIDIDX || fail "prepare megatron"
if "$BIN" data prepare --input "$work/a.txt" --output "$work/corpus" 2> "$work/err.txt"; then fail "overwrite allowed"; fi
grep -q 'refusing to overwrite' "$work/err.txt" || fail "overwrite message"
for p in corpus mega; do
  run1 train --model tiny --data-path "$work/$p" --train-iters 2 --seq-length 32 > "$work/out.txt" || fail "train on $p"
  grep -q 'step      2/2' "$work/out.txt" || fail "train on $p: no steps"
done

# 3. user errors: one clear line, non-zero exit
expect_error() {  # expect_error PATTERN ARGS...
  local pat=$1; shift
  if run1 "$@" > "$work/out.txt" 2>&1; then fail "expected failure: $*"; fi
  grep -q -- "$pat" "$work/out.txt" || { cat "$work/out.txt"; fail "missing '$pat' for: $*"; }
}
expect_error "did you mean --model" train --modle tiny
expect_error "did you mean 'gpt2-124m'" train --model gpt2-124
echo '{"train_micro_batch_size_per_gpu": 2, "optimzer": {}, "zero_optimization": {"stage": 1}}' > "$work/bad.json"
expect_error "did you mean 'optimizer'" train --deepspeed_config "$work/bad.json"
echo '{"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 2}, "fp16": {"enabled": true, "fp16_master_weights_and_grads": true}}' > "$work/stage1.json"
expect_error 'not supported yet: fp16.fp16_master_weights_and_grads = true' train --deepspeed_config "$work/stage1.json"
# a valid config this build cannot train: printed resolved, refused items listed, exit status 3
rc=0; "$BIN" config check "$work/stage1.json" > "$work/out.txt" 2> "$work/err.txt" || rc=$?
[ "$rc" = 3 ] || fail "config check of a valid config this build cannot train must exit 3 (got $rc)"
grep -q '"stage": 2' "$work/out.txt" || fail "config check prints the resolved config"
grep -q '  - not supported yet: fp16.fp16_master_weights_and_grads = true' "$work/err.txt" || { cat "$work/err.txt"; fail "config check lists the refused key"; }
expect_error "no such dataset" train --data-path "$work/missing"
expect_error "must be divisible" train --hidden-size 100 --num-attention-heads 3
# 2 ranks, ZeRO stage 2 (the README's main job): one log (rank 0), the same losses as stage 0
for st in 0 2; do
  OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" train --model tiny --train-iters 3 --deepspeed_config "$SRC/examples/ds_config_zero$st.json" \
    > "$work/np2_$st.txt" 2>&1 || { cat "$work/np2_$st.txt"; fail "2-rank stage $st"; }
  [ "$(grep -c '^step ' "$work/np2_$st.txt")" = 3 ] || { cat "$work/np2_$st.txt"; fail "2-rank stage $st: rank 0 alone logs 3 steps"; }
  grep -q "ZeRO stage $st over dp 2" "$work/np2_$st.txt" || { cat "$work/np2_$st.txt"; fail "stage $st banner"; }
done
[ "$(grep '^step' "$work/np2_0.txt" | cut -d'|' -f2)" = "$(grep '^step' "$work/np2_2.txt" | cut -d'|' -f2)" ] \
  || { paste "$work/np2_0.txt" "$work/np2_2.txt"; fail "stage 2 and stage 0 log the same losses (4 decimals)"; }
# 4. launcher variables are only a cross-check: a mismatch is reported, MPI's answer is used
RANK=5 WORLD_SIZE=9 run1 train --model tiny --train-iters 1 > "$work/out.txt" 2>&1 || fail "train with RANK=5"
grep -q "RANK=5 disagrees with MPI (0); using MPI's value" "$work/out.txt" || { cat "$work/out.txt"; fail "RANK cross-check"; }
grep -q "WORLD_SIZE=9 disagrees with MPI (1)" "$work/out.txt" || fail "WORLD_SIZE cross-check"
grep -q 'step      1/1' "$work/out.txt" || fail "training with mismatched launcher variables"

# 5. comms logger from the ds_config: the summary table at the end of the run (all_reduces over every
#    training rank, group world: 16 bytes, the loss and the stop flag, each of the 2 steps; 8 bytes, the
#    peak RSS, MAX over the ranks, at the end)
echo '{"train_micro_batch_size_per_gpu": 2, "comms_logger": {"enabled": true, "prof_all": true}}' > "$work/cl.json"
run1 train --deepspeed_config "$work/cl.json" --train-iters 2 > "$work/out.txt" || fail "comms logger run"
grep -q "comms summary" "$work/out.txt" && grep -qE "^all_reduce +world +1 +16 +2 " "$work/out.txt" \
  && grep -qE "^all_reduce +world +1 +8 +1 " "$work/out.txt" || { cat "$work/out.txt"; fail "comms summary"; }
# wall_clock_breakdown / memory_breakdown / steps_per_print from the ds_config
echo '{"train_micro_batch_size_per_gpu": 2, "wall_clock_breakdown": true, "memory_breakdown": true, "steps_per_print": 2}' > "$work/wc.json"
run1 train --deepspeed_config "$work/wc.json" --train-iters 4 > "$work/out.txt" || fail "breakdown run"
grep -qE "^  time \(ms\) \| forward [0-9.]+ \| backward [0-9.]+ \| clip \+ optimizer step" "$work/out.txt" \
  && grep -qE "^  memory \| params [0-9.]+ MiB \| grads [0-9.]+ MiB \| fp32 masters 0 B \| optimizer states" "$work/out.txt" || { cat "$work/out.txt"; fail "breakdowns"; }
[ "$(grep -c '^step ' "$work/out.txt")" = 2 ] || { cat "$work/out.txt"; fail "steps_per_print 2 over 4 steps logs 2 lines"; }
# deepmpi report: the job's view (2 ranks on one node), machine-readable
OMP_NUM_THREADS=1 "$MPIEXEC" -np 2 "$BIN" report --json > "$work/report.json" || fail "deepmpi report"
/usr/bin/python3 - "$work/report.json" <<'PY' || { cat "$work/report.json"; fail "report contents"; }
import json, sys
r = json.load(open(sys.argv[1]))   # rank 0 alone prints: one JSON object
assert r["mpi"]["world_size"] == 2 and r["mpi"]["ranks_per_node"] == 2, r["mpi"]
assert "Open MPI" in r["mpi"]["library"] or "MPICH" in r["mpi"]["library"], r["mpi"]
assert r["hdf5"]["parallel"] is True, r["hdf5"]
assert r["deepmpi"]["version"] and r["gemm"]["default_backend"] in r["gemm"]["backends"], r
flags = open("/proc/cpuinfo").read().split("\nflags")[1].split("\n")[0].split()
assert r["cpu"]["avx512f"] == ("avx512f" in flags) and r["cpu"]["amx_bf16"] == ("amx_bf16" in flags), r["cpu"]
assert r["peak"]["sgemm_gflops"] > 0 and r["peak"]["bf16_gemm_gflops"] > 0, r["peak"]
assert r["scratch"]["node_local_scratch"] and r["slurm"]["in_allocation"] in (True, False), r
PY
# 6. config check / defaults
echo '{"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4, "optimizer": {"type": "Lion"},
  "scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 5e3}}}' > "$work/ok.json"
"$BIN" config check "$work/ok.json" --data-parallel-size 4 > "$work/out.txt" || fail "config check of a valid file"
/usr/bin/python3 - "$work/out.txt" <<'PY' || fail "config check output"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["gradient_accumulation_steps"] == 4, c          # 64 // 4 // 4
assert c["optimizer"]["params"]["betas"] == [0.9, 0.999], c
assert c["scheduler"]["params"]["cos_min_ratio"] == 0.0001, c
assert c["gradient_clipping"] == 1.0, c
PY
if "$BIN" config check "$work/bad.json" > "$work/out.txt" 2>&1; then fail "config check accepted a bad file"; fi
grep -q "1 error in the ds_config" "$work/out.txt" && grep -q "did you mean 'optimizer'" "$work/out.txt" \
  || { cat "$work/out.txt"; fail "config check errors"; }
"$BIN" config defaults > "$work/defaults.txt" || fail "config defaults"
grep -qE '^gradient_clipping +1.0 +# 0.0 \(off\) before DeepSpeed 0.19.3' "$work/defaults.txt" || fail "config defaults table"
"$BIN" config defaults --markdown | diff -q - "$SRC/docs/ds-config-defaults.md" > /dev/null || fail "docs/ds-config-defaults.md is stale"
# "auto" resolved from Megatron-style flags, the way the HF Trainer fills it in
echo '{"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_clipping": "auto",
  "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto"}}}' > "$work/hf.json"
"$BIN" config check "$work/hf.json" --micro-batch-size 2 --global-batch-size 8 --clip-grad 0.5 --lr 3e-4 \
  --weight-decay 0.05 --data-parallel-size 2 > "$work/out.txt" || { cat "$work/out.txt"; fail "auto resolution"; }
grep -q '"gradient_accumulation_steps": 2' "$work/out.txt" && grep -q '"lr": 0.0003' "$work/out.txt" || fail "auto values"
if "$BIN" config check "$work/hf.json" > "$work/out.txt" 2>&1; then fail "unresolved auto accepted"; fi
grep -q 'gradient_clipping: "auto" cannot be resolved: pass --clip-grad' "$work/out.txt" || { cat "$work/out.txt"; fail "auto error"; }
run1 train --deepspeed_config "$work/hf.json" --micro-batch-size 2 --clip-grad 1 --lr 1e-3 --weight-decay 0 \
  --train-iters 2 > "$work/out.txt" || { cat "$work/out.txt"; fail "train with auto"; }
# 7. real users' ds_config files (issue 18)
# hjson (comments, trailing commas), keys at values that ask for nothing, "auto" DeepSpeed drops,
# top-level keys DeepSpeed ignores: exit 0, with warnings; --strict makes the unknown keys errors
printf '// HF-style template\n{"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", # per rank\n "zero_optimization": {"stage": 3, "memory_efficient_linear": false, "reduce_bucket_size": "auto",\n   "offload_param": {"device": "none", "buffer_size": "auto"}, "zero_hpz_partition_size": 1},\n "compile": {"deepcompile": false}, "_comment": "x", "log": {"level": "info"},\n}\n' > "$work/hf2.json"
rc=0; "$BIN" config check "$work/hf2.json" --micro-batch-size 2 --model small > "$work/out.txt" 2> "$work/err.txt" || rc=$?
[ "$rc" = 0 ] || { cat "$work/err.txt"; fail "an HF-style hjson template must pass config check (got $rc)"; }
grep -q '"reduce_bucket_size": 147456' "$work/out.txt" || fail "--model small resolves reduce_bucket_size auto to 384^2"
grep -q 'warning: log: unknown top-level key; ignored, as DeepSpeed does' "$work/err.txt" || { cat "$work/err.txt"; fail "log warning"; }
grep -q 'moe' "$work/err.txt" && { cat "$work/err.txt"; fail "the message for log suggests moe"; }
rc=0; "$BIN" config check "$work/hf2.json" --micro-batch-size 2 --strict > /dev/null 2> "$work/err.txt" || rc=$?
[ "$rc" = 1 ] && grep -q '_comment: unknown key (--strict' "$work/err.txt" || { cat "$work/err.txt"; fail "--strict (rc $rc)"; }
# errors and the not-implemented list in one pass: exit 1, both listed
echo '{"train_batch_size": 10, "train_micro_batch_size_per_gpu": 4, "optimizer": {"type": "AdamW", "params": {"lr": "auto"}},
  "curriculum_learning": {"enabled": true}}' > "$work/mixed.json"
rc=0; "$BIN" config check "$work/mixed.json" > /dev/null 2> "$work/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "errors: exit 1 (got $rc)"
grep -q '  - optimizer.params.lr: "auto" cannot be resolved: pass --lr' "$work/err.txt" && grep -q 'batch sizes are inconsistent' "$work/err.txt" \
  && grep -q '  - not supported yet: curriculum_learning.enabled = true' "$work/err.txt" || { cat "$work/err.txt"; fail "one pass"; }
# valid but not implemented, whatever the block: exit 3
echo '{"train_micro_batch_size_per_gpu": 2, "compression_training": {"weight_quantization": {"shared_parameters": {"enabled": true}}}}' > "$work/comp.json"
rc=0; "$BIN" config check "$work/comp.json" > /dev/null 2> "$work/err.txt" || rc=$?
[ "$rc" = 3 ] && grep -q 'compression_training has no top-level "enabled"' "$work/err.txt" || { cat "$work/err.txt"; fail "compression: exit 3 (got $rc)"; }
rc=0; run1 train --deepspeed_config "$work/stage1.json" --train-iters 1 > "$work/out.txt" 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat "$work/out.txt"; fail "train refuses a valid config it cannot train with exit 3 (got $rc)"; }
# files that are not config files: clear errors, no source location, no library id, no crash
clean() { ! grep -qE '\.cpp:[0-9]|json\.exception|--deepspeed_config' "$1"; }
rc=0; "$BIN" config check "$work" > "$work/out.txt" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'is a directory, not a file' "$work/out.txt" && clean "$work/out.txt" || { cat "$work/out.txt"; fail "a directory"; }
printf '{\n "a": 1,\n "b" 2\n}\n' > "$work/syn.json"
rc=0; "$BIN" config check "$work/syn.json" > "$work/out.txt" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "syn.json' line 3, column 6: expected ':' after the key \"b\"" "$work/out.txt" && clean "$work/out.txt" \
  || { cat "$work/out.txt"; fail "parse error"; }
/usr/bin/python3 -c 'import sys; n = 1000000; sys.stdout.write("{\"zero_optimization\": " + "[" * n + "]" * n + "}")' > "$work/deep.json"
rc=0; "$BIN" config check "$work/deep.json" > "$work/out.txt" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'nested deeper than 64 levels' "$work/out.txt" || { head -c 500 "$work/out.txt"; fail "1,000,000-deep arrays (rc $rc)"; }
# no optimizer block: the optimizer and schedule come from Megatron's flags, with its formulas
echo '{"train_micro_batch_size_per_gpu": 2}' > "$work/noopt.json"
run1 train --deepspeed_config "$work/noopt.json" --train-iters 4 --lr 1e-3 --min-lr 1e-4 --lr-decay-style linear \
  --lr-warmup-iters 2 --metrics-file "$work/m2.jsonl" > "$work/out.txt" || { cat "$work/out.txt"; fail "Megatron flags"; }
grep -q 'optimizer and schedule from: optimizer AdamW from Megatron flags' "$work/out.txt" || { cat "$work/out.txt"; fail "banner source"; }
/usr/bin/python3 - "$work/m2.jsonl" <<'PY' || fail "Megatron's linear schedule in the log"
import json, sys
lrs = [r["lr"] for r in map(json.loads, open(sys.argv[1])) if "lr" in r]
# warmup 0 -> 1e-3 over 2 iterations, then linear to 1e-4 at iteration 4 (Megatron: iteration k runs at k - 1)
want = [0.0, 0.5e-3, 1e-3, 1e-4 + 0.5 * 0.9e-3]
assert len(lrs) == 4 and all(abs(a - b) < 1e-9 for a, b in zip(lrs, want)), lrs
PY
run1 train --deepspeed_config "$work/noopt.json" --train-iters 1 > "$work/out.txt" 2>&1 || fail "no block, no flags"
grep -q "optimizer and schedule from: optimizer AdamW at DeepSpeed's defaults" "$work/out.txt" \
  && grep -q 'warning: no "optimizer" block and no optimizer flag' "$work/out.txt" || { cat "$work/out.txt"; fail "the default must be said"; }
# --train-iters 0 --save writes the initial checkpoint; data prepare creates its output folder
run1 train --train-iters 0 --save "$work/ck0" > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; fail "train-iters 0"; }
[ -f "$work/ck0/global_step0/checkpoint.h5" ] && grep -q global_step0 "$work/ck0/latest" || { cat "$work/out.txt"; fail "initial checkpoint"; }
"$BIN" data prepare --input "$work/a.txt" --output "$work/new/dir/corpus" > /dev/null || fail "prepare into a new folder"
[ -f "$work/new/dir/corpus.tokens" ] || fail "data prepare creates the output folder"
# a folder as --input: its files in name order, each one document (a.txt then b.txt: the same tokens
# as the two files named); an empty folder is an error naming it
mkdir -p "$work/texts" "$work/empty"
cp "$work/b.txt" "$work/texts/2.txt" && cp "$work/a.txt" "$work/texts/1.txt"
"$BIN" data prepare --input "$work/texts" --output "$work/fromdir" | grep -q 'from 2 files' || fail "prepare from a folder"
cmp "$work/fromdir.tokens" "$work/corpus.tokens" || fail "a folder must give the tokens of its files in name order"
if "$BIN" data prepare --input "$work/empty" --output "$work/none" 2> "$work/err.txt"; then fail "empty folder accepted"; fi
grep -q "the --input folder '$work/empty' has no files" "$work/err.txt" || { cat "$work/err.txt"; fail "empty folder message"; }
echo "e2e cli: all checks passed"
