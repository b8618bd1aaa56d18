#!/bin/bash
# deepmpi without Slurm: mpirun over a hostfile (one line per node: `node01 slots=2`).
# Usage: jobs/deepmpi-hostfile.sh HOSTFILE RANKS [deepmpi train flags...]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 HOSTFILE RANKS [deepmpi train flags...]" >&2; exit 2; }
hostfile=$1 ranks=$2
shift 2
[ -r "$hostfile" ] || { echo "$0: cannot read hostfile '$hostfile'" >&2; exit 2; }
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "$0: RANKS must be a positive integer (got '$ranks')" >&2; exit 2; }
command -v deepmpi > /dev/null || { echo "$0: deepmpi is not on PATH; 'module load deepmpi' first" >&2; exit 2; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec mpirun -hostfile "$hostfile" -np "$ranks" --map-by slot --bind-to core -x OMP_NUM_THREADS -x PATH -x LD_LIBRARY_PATH \
  deepmpi train "$@"
