#!/bin/bash
# One reference test: dump_model writes one deepmpi forward + backward, torch_reference.py checks
# the loss and every parameter gradient against its own PyTorch model.
# Usage: run_reference.sh DUMP_MODEL TORCH_REFERENCE_PY DIR [--expect-mismatch TENSOR] [dump_model args...]
#   DIR receives the dump (kept for inspection). --expect-mismatch TENSOR: the checker's self-test,
#   the dump is made with DEEPMPI_REF_PERTURB=TENSOR and the test passes only when exactly that
#   tensor is reported as a mismatch.
# The interpreter: $DEEPMPI_TORCH_PYTHON when set (only that one), else the first of
# /usr/bin/python3 (Debian's, where python3-torch installs) and python3 that imports torch and
# numpy. Exit 77 (ctest: SKIPPED) when none does.
set -uo pipefail
[ $# -ge 3 ] || { echo "usage: $0 DUMP_MODEL TORCH_REFERENCE_PY DIR [--expect-mismatch TENSOR] [dump args...]" >&2; exit 2; }
dump=$1 checker=$2 dir=$3
shift 3
expect=()
if [ "${1:-}" = --expect-mismatch ]; then
  [ $# -ge 2 ] || { echo "run_reference: --expect-mismatch needs a tensor name" >&2; exit 2; }
  export DEEPMPI_REF_PERTURB=$2
  expect=(--expect-mismatch "$2")
  shift 2
fi

py=""
tried=()
candidates=(/usr/bin/python3 python3)
[ -n "${DEEPMPI_TORCH_PYTHON:-}" ] && candidates=("$DEEPMPI_TORCH_PYTHON")  # that one only
for cand in "${candidates[@]}"; do
  command -v "$cand" > /dev/null 2>&1 || continue
  tried+=("$cand")
  if "$cand" -c "import torch, numpy" > /dev/null 2>&1; then
    py=$cand
    break
  fi
done
if [ -z "$py" ]; then
  echo "run_reference: SKIPPED: no Python with torch and numpy (tried: ${tried[*]:-none}); install python3-torch" \
       "(scripts/install-deps.sh --tests) or set DEEPMPI_TORCH_PYTHON"
  exit 77
fi

rm -rf "$dir"
"$dump" --out "$dir" "$@"
rc=$?
[ $rc -eq 0 ] || exit $rc
"$py" "$checker" "$dir" "${expect[@]}"
