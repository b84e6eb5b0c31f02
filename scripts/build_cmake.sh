#!/usr/bin/env bash
# Build the ops with CMake into a shared library for torch.ops.load_library.
# Usage: scripts/build_cmake.sh [BUILD_DIR] [extra cmake args...]   (PYTHON selects the interpreter)
# With a CUDA build of torch, torch's CMake config needs the CUDA toolkit (CUDA_HOME) and, when
# the toolkit lacks it, the NVRTC library shipped by the nvidia pip packages; both are found here.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build-cmake}"
shift || true
PYTHON="${PYTHON:-.venv/bin/python}"
read -r PREFIX TORCH_CUDA < <("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path, torch.version.cuda or "none")')
ARGS=(-DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release)
if command -v ninja >/dev/null 2>&1 || [ -x "$(dirname "$PYTHON")/ninja" ]; then
  ARGS+=(-G Ninja -DCMAKE_MAKE_PROGRAM="$(command -v ninja || echo "$(dirname "$PYTHON")/ninja")")
fi
if [ "$TORCH_CUDA" != "none" ]; then
  CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
  export PATH="$CUDA_HOME/bin:$PATH" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
  ARGS+=(-DCUDAToolkit_ROOT="$CUDA_HOME")
  if ! ls "$CUDA_HOME"/lib64/libnvrtc.so* >/dev/null 2>&1; then
    NVRTC=$("$PYTHON" - <<'PY'
import glob, os, nvidia
roots = [os.path.dirname(p) for p in nvidia.__path__]
hits = sorted(h for r in roots for h in glob.glob(os.path.join(r, "nvidia", "*", "lib", "libnvrtc.so.*")) if "builtins" not in h and ".alt." not in h)
print(hits[0] if hits else "")
PY
)
    [ -n "$NVRTC" ] && ARGS+=(-DCUDA_nvrtc_LIBRARY="$NVRTC")
  fi
fi
CMAKE="$(dirname "$PYTHON")/cmake"
[ -x "$CMAKE" ] || CMAKE=cmake
"$CMAKE" -S . -B "$BUILD_DIR" "${ARGS[@]}" "$@"
"$CMAKE" --build "$BUILD_DIR" --parallel "${MAX_JOBS:-2}"
echo "built $BUILD_DIR/libsmartfrz_ops.so"
