#!/usr/bin/env bash
# The test command (README, CI): set up the environment and build, lint, build the CMake library,
# then run the whole test suite against the native kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
source scripts/cuda_env.sh
# With a CUDA torch and a toolkit, both builds compile the CUDA kernels and the tests insist on them;
# without, CUDA ops (on a GPU) are served by the reference, and the CUDA tests are told so.
CMAKE_CUDA=OFF
export SMARTFRZ_ALLOW_REFERENCE=cuda
if [ -n "${CUDA_HOME:-}" ] && [ "${SMARTFRZ_CUDA:-1}" != "0" ] \
   && .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)"; then
  SMARTFRZ_ALLOW_REFERENCE=0
  CMAKE_CUDA=ON
fi
echo "== cmake build (SMARTFRZ_CUDA=$CMAKE_CUDA)"
PYTHON=.venv/bin/python scripts/build_cmake.sh build-cmake -DSMARTFRZ_CUDA="$CMAKE_CUDA" > build-cmake.log 2>&1 \
  || { tail -50 build-cmake.log; exit 1; }
grep -E "^\[[0-9]+/[0-9]+\] Building" build-cmake.log | sed -E 's/ -.*//' || true
tail -1 build-cmake.log
# SMARTFRZ_CI=1: a test skipped for a missing optional package fails (requirements-dev installs them all).
export SMARTFRZ_CI=1 SMARTFRZ_CMAKE_BUILD_DIR="$PWD/build-cmake"
echo "== pytest"
.venv/bin/python -m pytest -q -ra "$@"
