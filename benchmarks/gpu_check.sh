#!/usr/bin/env bash
# GPU check for issue 21: the one prepared command that measures streamseg's CUDA path in under 8
# minutes: for the bundled model and the paper's R101 mask112, parity and the stage table per backend
# and precision; `streamseg file` on a 3000-frame clip looping the demo (first start, cached start);
# the live replay; two training epochs. benchmarks/gpu_check.py says what each step measures.
# Writes $OUT/gpu_check.json after every step (benchmarks/results/ when OUT is unset), ends with a
# plain table. Exit 0; 1 when a parity check failed; 3 without CUDA; 124 when the time limit cut it.
# Needs: torch/torchvision, numpy, opencv; PyAV for the clip steps: where `import av` fails and
# .whl/ holds wheels (the av wheel for this Python), they are installed into a temporary folder first.
# GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1: the CPU smoke mode of tests/test_gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-$PWD/benchmarks/results}"; export OUT
mkdir -p "$OUT"
if [ "${GPU_CHECK_DEVICE:-cuda}" != cpu ]; then
  if ! "$PY" -c 'import sys, torch, torchvision
ok = torch.cuda.is_available()
ok and print("torch", torch.__version__, "torchvision", torchvision.__version__, "gpu", torch.cuda.get_device_name(0))
sys.exit(0 if ok else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); nothing to check" >&2
    exit 3
  fi
fi
if ! "$PY" -c 'import av' 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  SITE="$(mktemp -d /tmp/gpu-check-site.XXXXXX)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:$SITE" && echo "gpu_check: installed .whl/ into $SITE"
fi
# the Python part starts a step only while GPU_CHECK_BUDGET_S (420 s) leaves the time it may take
timeout -k 10 "${GPU_CHECK_LIMIT_S:-460}" "$PY" benchmarks/gpu_check.py; rc=$?
[ $rc -eq 124 ] && echo "gpu_check: stopped by the ${GPU_CHECK_LIMIT_S:-460} s limit; partial JSON in $OUT/gpu_check.json"
echo "gpu_check: exit $rc (0: every parity check passed; 1: one failed; see $OUT/gpu_check.json)"
exit $rc
