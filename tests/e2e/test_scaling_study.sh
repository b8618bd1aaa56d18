#!/bin/bash
# jobs/scaling-study on this machine (mpirun): a small sweep writes the Markdown table, the CSV
# and the PNG; bad sweep settings fail with a message naming the setting.
# Usage: test_scaling_study.sh DEEPMPI SOURCE_DIR
set -uo pipefail
BIN=$1 SRC=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v gnuplot > /dev/null || { echo "SKIP: gnuplot is not installed (scripts/install-deps.sh --tests installs gnuplot-nox)"; exit 77; }
printf 'ranks: 1 2\nstages: 0 2   # a comment\nmodels: tiny\nsteps: 5\n' > "$work/sweep.txt"
OMP_NUM_THREADS=1 "$SRC/jobs/scaling-study" --sweep "$work/sweep.txt" --steps 2 --deepmpi "$BIN" --out "$work/out" \
  > "$work/log.txt" 2>&1 || { cat "$work/log.txt"; fail "scaling study"; }
for f in scaling.md scaling.csv scaling.png; do [ -s "$work/out/$f" ] || fail "no $f"; done
head -c 8 "$work/out/scaling.png" | od -An -c | grep -q "P   N   G" || fail "scaling.png is not a PNG"
/usr/bin/python3 - "$work/out/scaling.csv" <<'PY' || fail "scaling.csv contents"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [(r["stage"], r["ranks"]) for r in rows] == [("0", "1"), ("0", "2"), ("2", "1"), ("2", "2")], rows
for r in rows:
    assert float(r["tokens_per_s"]) > 0 and float(r["peak_rss_mib"]) > 0, r
    per_rank = float(r["tokens_per_s"]) / int(r["ranks"])
    assert abs(per_rank - float(r["tokens_per_s_per_rank"])) <= 1e-3 * per_rank, r
base = {r["stage"]: float(r["tokens_per_s_per_rank"]) for r in rows if r["ranks"] == "1"}
for r in rows:
    expect = float(r["tokens_per_s_per_rank"]) / base[r["stage"]]
    assert abs(float(r["efficiency"]) - expect) < 1e-3, r
PY
grep -q "steps: 2\|--steps 2" "$work/out/scaling.md" || fail "the table names the command that made it"
# the flag overrode the sweep file's 5 steps: each run has 2 step records + the summary
[ "$(wc -l < "$work/out/runs/tiny_zero0_np1.jsonl")" = 3 ] || fail "--steps did not override the sweep file"
if "$SRC/jobs/scaling-study" --stages "0 5" --deepmpi "$BIN" --out "$work/bad" > "$work/bad.txt" 2>&1; then fail "stage 5 accepted"; fi
grep -q "stages: '5' is not a ZeRO stage" "$work/bad.txt" || { cat "$work/bad.txt"; fail "bad stage message"; }
if "$SRC/jobs/scaling-study" --sweep "$work/missing.txt" > "$work/bad.txt" 2>&1; then fail "missing sweep file accepted"; fi
grep -q "cannot read sweep file" "$work/bad.txt" || fail "missing sweep file message"
echo "scaling study: table, CSV and PNG written; bad settings rejected"
