#!/usr/bin/env bash
# GPU check for streamseg's compiled inference (issue 4): parity vs eager FP32 and per-stage latency
# for every backend available with CUDA (torch, compiled, onnxruntime-gpu, tensorrt) at FP32/FP16,
# for the paper model (ResNet101, mask112) and the small model (the same checks as tests/test_parity.py).
# Writes $OUT/gpu_check.json (benchmarks/results/ when OUT is unset). Budget: under 8 minutes.
# Needs: a CUDA GPU, torch/torchvision, numpy, opencv; uses onnxruntime, tensorrt, av, pytest if present.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$PWD/benchmarks/results}"; export OUT
mkdir -p "$OUT"
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); nothing to check" >&2
  exit 3
fi
"$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "gpu", torch.cuda.get_device_name(0))'
# the Python part stops starting new steps after GPU_CHECK_BUDGET_S (330 s) and saves JSON after each step
timeout 470 "$PY" benchmarks/gpu_check.py; rc=$?
[ $rc -eq 124 ] && echo "gpu_check: stopped by the 470 s limit; partial JSON in $OUT/gpu_check.json"
echo "gpu_check: exit $rc (0 = every available backend matched eager FP32)"
exit $rc
