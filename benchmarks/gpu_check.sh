#!/usr/bin/env bash
# The GPU check, on a machine with a CUDA GPU: build the CUDA kernels, run every needs_cuda test (the
# op tests parametrised over cuda hold the kernels to their pure-PyTorch twins), then time the ops on
# the GPU against their twins.
#   PYTHON=.venv/bin/python benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export FORCE_CUDA=1 CIRCUITS_VISION_REQUIRE_EXT=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')"
"$PY" setup.py -q build_ext --inplace
"$PY" -m pytest -q -m needs_cuda -rs
"$PY" benchmarks/image_pipeline.py
"$PY" benchmarks/expanded_weights.py --device cuda
