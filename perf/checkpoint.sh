#!/bin/bash
# Checkpoint save/load bandwidth for a model with its AdamW states on 1, 2, 4 ranks, next to the
# disk's direct-I/O write/read bandwidth measured in the same run (dd oflag/iflag=direct), and the
# training time a save costs, synchronous and with --async-save.
#   save = from the start of the save to `latest` replaced: write (metadata through parallel
#          HDF5, data with direct I/O), fdatasync, read-back verification of every checksum,
#          rename (durable and verified); "write" is the first part alone
#   load = resolve the tag, checksum pass over this rank's share, read into the live state,
#          all-gather; "cold" after dropping the page cache (needs root)
# Usage: perf/checkpoint.sh [MODEL=gpt2-124m] [RANKS="1 2 4"] [REPS=3] [DIR=build/perf-ckpt-tmp]
# PART=bandwidth or PART=stall runs one of the two tables.
# DEEPMPI_CHECKPOINT_IO=mpiio measures HDF5's collective MPI-IO transfers instead.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-gpt2-124m} RANKS=${2:-1 2 4} REPS=${3:-3} DIR=${4:-$PWD/build/perf-ckpt-tmp}
BIN=$PWD/build/release/deepmpi
source scripts/mpi-env.sh
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
cfg=$DIR/ds.json
echo '{"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "zero_optimization": {"stage": 2},
 "optimizer": {"type": "AdamW", "params": {"lr": 1e-4}}}' > "$cfg"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2> /dev/null && echo yes || echo no; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
dd_bw() { awk '/copied/ {t=$(NF-3); print $1/t/1e9}'; }  # GB/s from dd's summary line
train() { local np=$1; shift; mpiexec -n "$np" --oversubscribe "$BIN" train --model "$MODEL" --seq-length 64 \
            --deepspeed-config "$cfg" --peak-tflops 1 "$@" 2>&1; }
echo "# checkpoint bandwidth: $MODEL, AdamW (params + exp_avg + exp_avg_sq, fp32), ZeRO stage 2, data path ${DEEPMPI_CHECKPOINT_IO:-posix}"
echo "# $(date -u +%F) $(nproc) cores; $DIR on $(df --output=source,fstype "$DIR" | tail -1 | tr -s ' ')"
echo "# medians of $REPS; dd: 1 GiB, bs 16 MiB, direct I/O, measured before each save"
PART=${PART:-all}
if [ "$PART" != stall ]; then
echo "| ranks | checkpoint | save s | save GB/s | write GB/s | load s cold | load GB/s cold | load GB/s warm | dd write GB/s | dd read GB/s | save / dd write |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for np in $RANKS; do
  saves=() writes=() loads=() warm=() ddw=() ddr=() bytes=0 cold=no
  for rep in $(seq "$REPS"); do
    rm -rf "$DIR/ck" "$DIR/dd.bin"
    ddw+=("$(dd if=/dev/zero of="$DIR/dd.bin" bs=16M count=64 oflag=direct 2>&1 | dd_bw)")
    ddr+=("$(dd if="$DIR/dd.bin" of=/dev/null bs=16M iflag=direct 2>&1 | dd_bw)")
    rm -f "$DIR/dd.bin"
    out=$(train "$np" --train-iters 1 --save "$DIR/ck" --no-load) || { echo "$out" | tail -5; exit 1; }
    line=$(echo "$out" | grep "saved checkpoint")
    bytes=$(stat -c %s "$DIR/ck/global_step1/checkpoint.h5")
    saves+=("$(echo "$line" | sed -n 's/.*: .* in \([0-9.]*\) s (write.*/\1/p')")
    writes+=("$(echo "$line" | sed -n 's/.*= \([0-9.]*\) GB\/s.*/\1/p')")
    cold=$(drop)
    out=$(train "$np" --train-iters 1 --load "$DIR/ck") || { echo "$out" | tail -5; exit 1; }
    loads+=("$(echo "$out" | sed -n 's/.*loaded checkpoint.*) in \([0-9.]*\) s (.*/\1/p')")
    out=$(train "$np" --train-iters 1 --load "$DIR/ck") || { echo "$out" | tail -5; exit 1; }
    warm+=("$(echo "$out" | sed -n 's/.*loaded checkpoint.*) in \([0-9.]*\) s (.*/\1/p')")
  done
  s=$(printf "%s\n" "${saves[@]}" | median) w=$(printf "%s\n" "${writes[@]}" | median)
  l=$(printf "%s\n" "${loads[@]}" | median) lw=$(printf "%s\n" "${warm[@]}" | median)
  dw=$(printf "%s\n" "${ddw[@]}" | median) dr=$(printf "%s\n" "${ddr[@]}" | median)
  awk -v np="$np" -v b="$bytes" -v s="$s" -v w="$w" -v l="$l" -v lw="$lw" -v dw="$dw" -v dr="$dr" -v cold="$cold" 'BEGIN {
    printf "| %d | %.2f GB | %.2f | %.2f | %.2f | %.2f%s | %.2f | %.2f | %.2f | %.2f | %.0f%% |\n",
      np, b/1e9, s, b/s/1e9, w, l, (cold == "yes" ? "" : " (cache not dropped)"), b/l/1e9, b/lw/1e9, dw, dr, 100*b/s/1e9/dw }'
done

fi
[ "$PART" = bandwidth ] && exit 0

# What a save costs training in steady state: 12 steps saving every 4 (after steps 4, 8 and 12);
# the time of steps 2-11 plus the time training waited in the saves after steps 4 and 8 and in
# the commits of background saves (metrics file: step_ms, stall_ms, checkpoint_commit_ms),
# against the same run without saving. The save after the
# last step, which nothing overlaps, is left out. Two layouts: 1 rank x 1 thread (a core left
# for the background writer) and 2 ranks x 1 thread (every core training).
echo
echo "# training time per save ($MODEL, 12 steps, --save-interval 4; medians of $REPS)"
echo "| ranks x threads | mode | steps 2-11 + waits, s | cost per save, ms | in the save call + commit, ms | waited for the snapshot, ms | snapshot copy, ms |"
echo "|---|---|---|---|---|---|---|"
for np in 1 2; do
  base=""
  for mode in none sync async; do
    vals=() calls=() copies=() waits=()
    for rep in $(seq "$REPS"); do
      rm -rf "$DIR/st" "$DIR/m.jsonl"
      flags=(--train-iters 12 --metrics-file "$DIR/m.jsonl")
      [ $mode != none ] && flags+=(--save "$DIR/st" --save-interval 4 --no-load)
      [ $mode = async ] && flags+=(--async-save)
      out=$(OMP_NUM_THREADS=1 train "$np" "${flags[@]}") || { echo "$out" | tail -5; exit 1; }
      read -r t c < <(/usr/bin/python3 - "$DIR/m.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = sum(r["step_ms"] for r in recs if "loss" in r and 2 <= r["step"] <= 11)
saves = [r["stall_ms"] for r in recs if "stall_ms" in r and r["step"] in (4, 8)]
commits = [r["checkpoint_commit_ms"] for r in recs if "checkpoint_commit_ms" in r and r["step"] <= 11]
print((steps + sum(saves) + sum(commits)) / 1e3, (sum(saves) + sum(commits)) / len(saves) if saves else 0)
PY
)
      vals+=("$t") calls+=("$c")
      x=$(echo "$out" | sed -n 's/.*snapshot copy \([0-9.]*\) ms.*/\1/p' | median)
      [ -n "$x" ] && copies+=("$x")
      x=$(echo "$out" | sed -n 's/.*training waited \([0-9.]*\) ms.*/\1/p' | median)
      [ -n "$x" ] && waits+=("$x")
    done
    tot=$(printf "%s\n" "${vals[@]}" | median)
    [ $mode = none ] && base=$tot
    call=$(printf "%s\n" "${calls[@]}" | median)
    cp=-; [ ${#copies[@]} -gt 0 ] && cp=$(printf "%s\n" "${copies[@]}" | median)
    wm=-; [ ${#waits[@]} -gt 0 ] && wm=$(printf "%s\n" "${waits[@]}" | median)
    if [ $mode = none ]; then per=- call=-; else per=$(awk -v a="$tot" -v b="$base" 'BEGIN {printf "%.0f", (a-b)*1000/2}'); fi
    awk -v np="$np" -v m="$mode" -v t="$tot" -v per="$per" -v call="$call" -v wm="$wm" -v cp="$cp" 'BEGIN {
      printf "| %d x 1 | %s | %.2f | %s | %s | %s | %s |\n", np, m, t, per, (call == "-" ? "-" : sprintf("%.0f", call)), wm, cp }'
  done
done
