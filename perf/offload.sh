#!/bin/bash
# ZeRO-Infinity NVMe offload on 2 ranks, same machine, same run (results/offload-2ranks.md):
#  1. the disk: dd with direct I/O (oflag=direct / iflag=direct) on NVME_DIR's file system, and
#     spill_bench (io_uring and the thread pool) streaming sub-groups as the optimizer does,
#     alternating, REPS times: the spill bandwidth as a fraction of dd's;
#  2. cost on a model that fits, per global batch in GB (a list: "4 16"): MODEL, bf16, ZeRO-3, in memory / offload_optimizer nvme /
#     offload_optimizer + offload_param nvme, alternating REPS times: tokens/s, step ms, peak RSS per
#     rank, bytes spilled per step, and the overlap ratio step / max(compute, I/O) where compute
#     is the in-memory step and I/O the bytes both ranks moved over dd's bandwidths;
#  3. capacity (CAP_MODEL, default gpt2-1.5b; "none" skips it): refused in memory by the memory
#     check, trained with both offloads, DeepSpeed's memory knobs lowered: stage3_max_reuse_distance
#     5e7 (the units kept gathered from the forward to the backward; the default 1e9 keeps 2 GB of
#     bf16 gathers), sub_group_size 5e6, offload_param.buffer_count 3, and full activation
#     recompute (as ZeRO-Infinity runs use activation checkpointing); peak RSS per rank and the
#     loss per step.
# Usage: perf/offload.sh [NVME_DIR] [MODEL] [SEQ] [GB] [STEPS] [REPS] [CAP_MODEL] [CAP_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
NVME=${1:-$PWD/build/nvme-bench} MODEL=${2:-gpt2-124m} SEQ=${3:-128} GB=${4:-4} STEPS=${5:-4} REPS=${6:-2}
CAP=${7:-gpt2-1.5b} CAP_STEPS=${8:-3}
# CLIP=0: no gradient clipping and no bf16 overflow check, so the ZeRO-3 update runs during the
# last backward (README "NVMe offload"); UPDATE=after keeps it after the backward even then
CLIP=${CLIP:-1.0}
export DEEPMPI_OFFLOAD_UPDATE=${UPDATE:-backward}
BIN=${BIN:-build/release/deepmpi}
SPILL_BENCH=${SPILL_BENCH:-build/release/perf/spill_bench}
PY=/usr/bin/python3
source scripts/mpi-env.sh
mkdir -p "$NVME"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$NVME"/dd.$$' EXIT
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(free -g | awk '/^Mem:/ {print $2}') GiB memory"
echo "NVME_DIR $NVME: $(df -T "$NVME" | awk 'NR==2 {print $2 " on " $1 ", " int($5/1e6) " GB free"}')"
echo

# ---- 1. the disk
ddrate() {  # ddrate write|read: GB/s of 2 GiB with direct I/O
  local out
  if [ "$1" = write ]; then out=$(dd if=/dev/zero of="$NVME/dd.$$" bs=4M count=512 oflag=direct conv=fsync 2>&1)
  else out=$(dd if="$NVME/dd.$$" of=/dev/null bs=4M iflag=direct 2>&1); fi
  echo "$out" | tail -1 | awk -F', ' '{split($1, b, " "); split($3, t, " "); printf "%.3f", b[1] / t[1] / 1e9}'
}
declare -a ddw ddr sbw sbr sbrw stw str strw
for r in $(seq "$REPS"); do
  ddw+=("$(ddrate write)"); ddr+=("$(ddrate read)"); rm -f "$NVME/dd.$$"
  for be in uring threads; do
    out=$("$SPILL_BENCH" --dir "$NVME" --gib 2 --backend "$be" --reps 1)
    [ "$r" = 1 ] && echo "$out" | head -1
    w=$(echo "$out" | awk -F'|' '/^\| write/ {print $3}'); rd=$(echo "$out" | awk -F'|' '/^\| read \(/ {print $3}')
    rw=$(echo "$out" | awk -F'|' '/^\| read \+/ {print $3}')
    if [ "$be" = uring ]; then sbw+=("$w"); sbr+=("$rd"); sbrw+=("$rw"); else stw+=("$w"); str+=("$rd"); strw+=("$rw"); fi
  done
done
DDW=$(med "${ddw[@]}") DDR=$(med "${ddr[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo
echo "| transfer (2 GiB, medians of $REPS) | dd direct GB/s | spill io_uring GB/s | vs dd | spill threads GB/s | vs dd |"
echo "|---|---|---|---|---|---|"
echo "| write | $DDW | $(med "${sbw[@]}") | $(ratio "$(med "${sbw[@]}")" "$DDW") | $(med "${stw[@]}") | $(ratio "$(med "${stw[@]}")" "$DDW") |"
echo "| read | $DDR | $(med "${sbr[@]}") | $(ratio "$(med "${sbr[@]}")" "$DDR") | $(med "${str[@]}") | $(ratio "$(med "${str[@]}")" "$DDR") |"
HM=$(awk -v w="$DDW" -v r="$DDR" 'BEGIN {printf "%.3f", 2 / (1 / w + 1 / r)}')  # read + write of the same bytes
echo "| read + update + write (the optimizer's pass) | $HM (both ways, from dd's) | $(med "${sbrw[@]}") | $(ratio "$(med "${sbrw[@]}")" "$HM") | $(med "${strw[@]}") | $(ratio "$(med "${strw[@]}")" "$HM") |"
echo

# ---- 2. cost on a model that fits
cfg() {  # cfg NAME OFFLOAD(none|opt|both)
  local off=""
  [ "$2" != none ] && off=", \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$NVME\", \"buffer_count\": 4}"
  [ "$2" = both ] && off="$off, \"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"$NVME\", \"buffer_count\": ${PBUF:-5}}"
  cat > "$tmp/$1.json" <<JSON
{"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": ${GAS:-1}, "gradient_clipping": $CLIP,
 "bf16": {"enabled": true$([ "$CLIP" = 0 ] && echo ', "check_grad_overflow": false')},
 "zero_optimization": {"stage": 3, "sub_group_size": ${SUB:-10000000}, "stage3_max_reuse_distance": ${REUSE:-1000000000}$off},
 "optimizer": {"type": "AdamW", "params": {"lr": 6e-4, "weight_decay": 0.1}}}
JSON
  echo "$tmp/$1.json"
}
summ() {  # summ METRICS: "tokens/s step_ms peak_rss_gib read_gb write_gb wait_ms loss_last not_read_gb" (steps after the first; bytes: their mean)
  $PY - "$1" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in rows if "step_ms" in r][1:]
s = [r for r in rows if r.get("summary")][0]
m = lambda k: st.median([r.get(k, 0) for r in steps])
mean = lambda k: st.mean([r.get(k, 0) for r in steps])  # bytes: a step's last writes finish in the next one
print("%.1f %.1f %.2f %.3f %.3f %.1f %.4f %.3f" % (s["median_tokens_per_s"], s["median_step_ms"], s["peak_rss_bytes_max_rank"] / 2**30,
      mean("spill_read_bytes") / 1e9, mean("spill_write_bytes") / 1e9, m("spill_wait_ms"), steps[-1]["loss"],
      mean("spill_cached_bytes") / 1e9))
PY
}
for G in $GB; do
[ "$G" = none ] && continue  # GB "none": the disk and the capacity run only
declare -A res=()
for r in $(seq "$REPS"); do
  for v in none opt both; do
    rm -f "$tmp/m.jsonl"
    OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none "$BIN" train --model "$MODEL" --seq-length "$SEQ" \
      --deepspeed_config "$(GAS=$((G / 2)) cfg "$v" "$v")" --train-iters "$STEPS" --metrics-file "$tmp/m.jsonl" > "$tmp/out.txt" 2>&1 \
      || { cat "$tmp/out.txt"; exit 1; }
    res[$v]="${res[$v]:-}|$(summ "$tmp/m.jsonl")"
    [ "$v" = opt ] && grep -m1 'NVMe offload (offload_optimizer)' "$tmp/out.txt" > "$tmp/spilled.txt" || true
    [ "$v" = opt ] && grep -m1 'memory per rank' "$tmp/out.txt" | grep -o 'spill buffers [^|]*' > "$tmp/bufs.txt" || true
  done
done
col() { echo "${res[$1]}" | tr '|' '\n' | awk -v c="$2" 'NF {print $c}'; }
MEM_MS=$(med $(col none 2))
echo "$MODEL, bf16, ZeRO-3, 2 ranks x 1 thread, seq $SEQ, global batch $G, gradient_clipping $CLIP, update $DEEPMPI_OFFLOAD_UPDATE where it applies, $STEPS steps (medians of steps 2..$STEPS, bytes their mean, then medians of $REPS runs)"
echo
echo "| variant | tokens/s | vs in memory | step ms | peak RSS/rank | GB read/step/rank | GB not read (in the buffers) | GB written/step/rank | I/O wait ms | I/O ms at dd's rates (2 ranks) | step / max(compute, I/O) | last loss |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
MEM_TPS=$(med $(col none 1))
for v in none opt both; do
  t=$(med $(col "$v" 1)) ms=$(med $(col "$v" 2)) rd=$(med $(col "$v" 4)) wr=$(med $(col "$v" 5))
  io=$(awk -v r="$rd" -v w="$wr" -v R="$DDR" -v W="$DDW" 'BEGIN {printf "%.0f", 2 * (r / R + w / W) * 1e3}')
  ov=$(awk -v s="$ms" -v c="$MEM_MS" -v i="$io" 'BEGIN {m = c > i ? c : i; printf "%.2f", s / m}')
  name=$([ "$v" = none ] && echo "in memory" || ([ "$v" = opt ] && echo "offload_optimizer nvme" || echo "offload_optimizer + offload_param nvme"))
  echo "| $name | $t | $(ratio "$t" "$MEM_TPS") | $ms | $(med $(col "$v" 3)) GiB | $rd | $(med $(col "$v" 8)) | $wr | $(med $(col "$v" 6)) | $io | $ov | $(col "$v" 7 | tail -1) |"
done
echo
# what the buffers hold against what is spilled: the reads they save (each stream starts with the
# sub-groups the last one ended with) grow with that fraction
echo "offload_optimizer: $(cat "$tmp/bufs.txt") per rank (sub_group_size ${SUB:-10000000} x buffer_count 4 x arrays);$(sed 's/^ *NVMe offload (offload_optimizer)://' "$tmp/spilled.txt")"
echo
done

# ---- 3. capacity
[ "$CAP" = none ] && exit 0
need=$($PY -c "print(int(1.6e9 * 12 * 1.1 / 1e9))")
free=$(df -B1 "$NVME" | awk 'NR==2 {print int($4 / 1e9)}')
if [ "$free" -lt "$need" ]; then
  echo "capacity run skipped: $free GB free in $NVME, about $need GB needed for $CAP's spilled masters and Adam states"
  exit 0
fi
echo "capacity: $CAP, bf16, ZeRO-3, 2 ranks, seq $SEQ, micro-batch 1, $CAP_STEPS steps, full recompute"
echo '$ deepmpi train (in memory)'
rc=0; OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none "$BIN" train --model "$CAP" --seq-length "$SEQ" \
  --deepspeed_config "$(cfg capnone none)" --train-iters 1 > "$tmp/out.txt" 2>&1 || rc=$?
grep -m1 'not enough memory' "$tmp/out.txt" | cut -c1-1400; echo "(exit status $rc)"
echo '$ deepmpi train (offload_optimizer + offload_param nvme)'
rm -f "$tmp/m.jsonl"
OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none "$BIN" train --model "$CAP" --seq-length "$SEQ" \
  --deepspeed_config "$(SUB=5000000 REUSE=50000000 PBUF=3 cfg capboth both)" --train-iters "$CAP_STEPS" --log-interval 1 --metrics-file "$tmp/m.jsonl" \
  --recompute-granularity full --recompute-method uniform \
  > "$tmp/out.txt" 2>&1 || { cat "$tmp/out.txt"; exit 1; }
grep -E '^  (parameters|memory per rank|NVMe offload|    I/O)|^step |^  NVMe offload \||^done:' "$tmp/out.txt"
read -r _ ms _ rd wr _ _ <<< "$(summ "$tmp/m.jsonl")"
io=$(awk -v r="$rd" -v w="$wr" -v R="$DDR" -v W="$DDW" 'BEGIN {printf "%.0f", 2 * (r / R + w / W) * 1e3}')
echo "capacity: median step $ms ms; I/O at dd's rates $io ms (2 ranks x ($rd GB read / $DDR GB/s + $wr GB written / $DDW GB/s)); step / I/O $(ratio "$ms" "$io")"
