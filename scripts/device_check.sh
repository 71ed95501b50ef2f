#!/usr/bin/env bash
# The GPU check, one prepared run (about 8 minutes with the installs): our R50 train step at
# 1024x1024, batch 8, mixed_bfloat16, with and without XLA; inference latency at batch 1 and
# 8; peak GPU memory; torchvision's Mask R-CNN on the same GPU for the same rows; with
# --breakdown, each stage of our batch-1 inference with its multiply-adds, float32 and
# bfloat16 (about a minute more; without it the run is as before). Writes
# runs/device_check.json and runs/device_check.md (see benchmarks/harness/device_check.py).
#
#   bash scripts/device_check.sh [--no-install] [--dry-run] [device_check options]
#
# --no-install: use the python environment as it is (TensorFlow with GPU support, and torch +
# torchvision for the peer rows, already installed). --dry-run: on the CPU at a tiny size, no
# GPU needed (CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
install=1
dry_run=0
args=()
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    --dry-run) dry_run=1; args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done
python=${PYTHON:-python3}
if [ "$install" = 1 ] && [ "$dry_run" = 0 ]; then
  "$python" -m pip install -q -r requirements.txt "tensorflow[and-cuda]==2.21.*"
  "$python" -c "import torchvision" 2>/dev/null || \
    "$python" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
if [ "$dry_run" = 0 ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
torch_python=()
if "$python" -c "import torchvision" 2>/dev/null; then
  torch_python=(--torch-python "$(command -v "$python")")
fi
PYTHONPATH="$PWD/benchmarks:$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m harness.device_check \
  "${torch_python[@]}" "${args[@]}"
