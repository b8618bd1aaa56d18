#!/bin/bash
# Installs the Debian packages deepmpi needs when they are missing (ocl-icd-opencl-dev: oneDNN's
# CMake package needs OpenCL's, and libdnnl-dev only recommends it). Idempotent; prints nothing
# when everything is already there. Needs root (or sudo) only when something is missing.
# --tests adds what only some tests use: Lmod, gnuplot, and Slurm + munge (the job-script test
# starts its own daemons; Debian's packages start nothing without systemd), and python3-torch
# (the PyTorch reference tests, tests/reference), and debootstrap (the fresh-machine test,
# tests/fresh). Those are best effort: where they cannot be
# installed, the tests that need them report themselves skipped.
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config git
      libopenmpi-dev openmpi-bin
      libhdf5-openmpi-dev hdf5-tools
      libopenblas-dev nlohmann-json3-dev libdnnl-dev ocl-icd-opencl-dev liburing-dev
      libgtest-dev libbenchmark-dev
      python3 python3-numpy python3-h5py)
optional=()
[ "${1:-}" = --tests ] && optional=(lmod gnuplot-nox slurmctld slurmd slurm-client munge python3-torch debootstrap)
missing_of() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
mapfile -t missing < <(missing_of "${pkgs[@]}")
mapfile -t missing_opt < <(missing_of "${optional[@]}")
[ ${#missing[@]} -eq 0 ] && [ ${#missing_opt[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo > /dev/null; then
    if [ ${#missing[@]} -gt 0 ]; then
      echo "install-deps: missing packages (${missing[*]}); run as root or install them" >&2
      exit 1
    fi
    echo "install-deps: note: test-only packages missing (${missing_opt[*]}); the tests needing them will be skipped"
    exit 0
  fi
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]} ${missing_opt[*]}"
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
if [ ${#missing_opt[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${missing_opt[@]}" > /dev/null \
    || echo "install-deps: note: could not install ${missing_opt[*]}; the tests needing them will be skipped"
fi
