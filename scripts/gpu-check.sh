#!/usr/bin/env bash
# On a GPU machine: the CUDA half of the spec suite (the `backend` fixture's cuda
# parameters, and every other test named for CUDA) and the GPU bench section
# (scripts/gpu_bench.py: each family's CUDA path against its peer on the same GPU).
# Writes target/gpu-check/{spec.txt,bench.md}. Without a CUDA device (no
# nvidia-smi, or torch sees none) it says so and exits 0.
#
# Uses the ferrops importable by PYTHON (default: python3); build it first, e.g.
# `maturin develop --release` or `pip install target/ci/dist/ferrops-*.whl`.
# GPU_CHECK_TIMEOUT bounds each stage (seconds, default 480).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
OUT=${GPU_CHECK_OUT:-$ROOT/target/gpu-check}
LIMIT=${GPU_CHECK_TIMEOUT:-480}
mkdir -p "$OUT"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
	echo "gpu-check: no NVIDIA GPU here (nvidia-smi absent or sees none); skipped"
	exit 0
fi
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
	echo "gpu-check: torch is missing or has no CUDA here; skipped"
	exit 0
fi
nvidia-smi -L | tee "$OUT/gpu.txt"
"$PYTHON" -m ferrops.cli info | tee -a "$OUT/gpu.txt"

status=0
echo "== CUDA spec tests"
# -k cuda: the backend fixture's cuda parameters ([cuda] / [cuda-...] ids) and
# tests named for CUDA; they run only where torch sees the device.
timeout "$LIMIT" "$PYTHON" -m pytest spec_tests -k cuda -q -p no:cacheprovider -rfEs 2>&1 |
	tee "$OUT/spec.txt" || status=1

echo "== GPU bench"
timeout "$LIMIT" "$PYTHON" scripts/gpu_bench.py --device cuda --out "$OUT/bench.md" || status=1

echo "gpu-check: results in $OUT (status $status)"
exit "$status"
