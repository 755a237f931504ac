#!/usr/bin/env bash
# The GPU path in under 5 minutes, on a machine with CUDA (e.g. when `device` lends one):
# fit() throughput of xresnet1d101 in fp32 and bf16, a 1-process DDP run over NCCL under torchrun,
# and batch prediction. Prints one "gpu_check:" line per measurement; exits 2 without CUDA.
#   bash benchmarks/gpu_check.sh [--compile]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
python benchmarks/gpu_check.py train "$@"
torchrun --standalone --nproc_per_node=1 benchmarks/gpu_check.py ddp
python benchmarks/gpu_check.py predict
echo "gpu_check: done in $(( $(date +%s) - start )) s"
