#!/usr/bin/env bash
# Multi-GPU check: bench/gpu_check.sh with one process per GPU under torchrun (every GPU that
# nvidia-smi lists unless NPROC says otherwise). Compare with NPROC=1 for the scaling factor.
#
#   bash bench/gpu_check_ddp.sh [WORKDIR]
#   NPROC=4 BATCH=64 WORKERS=8 EPOCHS=3 bash bench/gpu_check_ddp.sh /scratch/ak-check
set -euo pipefail
NPROC=${NPROC:-$(nvidia-smi -L | wc -l)} exec bash "$(dirname "$0")/gpu_check.sh" "$@"
