#!/bin/bash
# Installs the Debian packages deepmpi needs when they are missing. Idempotent; prints nothing
# when everything is already there. Needs root (or sudo) only when something is missing.
# --tests adds what only the tests use: Lmod, gnuplot, and Slurm + munge (the job-script test
# starts its own daemons; Debian's packages start nothing without systemd).
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config git
      libopenmpi-dev openmpi-bin
      libhdf5-openmpi-dev hdf5-tools
      libopenblas-dev nlohmann-json3-dev libdnnl-dev
      libgtest-dev libbenchmark-dev
      python3 python3-numpy)
if [ "${1:-}" = --tests ]; then
  pkgs+=(lmod gnuplot-nox slurmctld slurmd slurm-client munge)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: missing packages (${missing[*]}); run as root or install them" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
