#!/usr/bin/env bash
# make gpu-check: tools/gpu_check.py on a machine with CUDA (docs/gpu.md), after installing the
# wheels that `make gpu-wheels` put in .whl/ (the GPU image lacks them and reaches no index).
# Without CUDA: one line, exit 0. Extra arguments go to tools/gpu_check.py (--only, --deadline).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "gpu-check: no CUDA device here ($PYTHON: no torch, or torch.cuda.is_available() is false); nothing to do"
  exit 0
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec "$PYTHON" tools/gpu_check.py --out "${OUT:-gpu_check_out}" "$@"
