#!/usr/bin/env bash
# The one script to run on a GPU machine: build smartfrz's extension there against that machine's
# own torch and CUDA, run the GPU tests (and the CPU op tests against the same build), run the
# kernel benchmark, and print a short markdown table.
#
#   bash scripts/gpu_check.sh            # full benchmark
#   bash scripts/gpu_check.sh --quick    # short benchmark
#
# Environment: PYTHON (default python3), TORCH_CUDA_ARCH_LIST (default: the visible GPU's),
# MAX_JOBS (default: all cores), OUT (logs go there; default /tmp/smartfrz_gpu_check),
# SANITIZE=1 also runs a subset of the GPU tests under compute-sanitizer memcheck (slow).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
QUICK=${1:-}
LOGS=${OUT:-/tmp/smartfrz_gpu_check}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device is visible to $PY" >&2
  exit 1
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'on', torch.cuda.get_device_name())"
ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export SMARTFRZ_CUDA=1

echo "== build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, log: $LOGS/build.log)"
start=$(date +%s)
if ! "$PY" setup.py build_ext --inplace >"$LOGS/build.log" 2>&1; then
  tail -40 "$LOGS/build.log"
  echo "gpu_check: the build failed" >&2
  exit 1
fi
build_s=$(($(date +%s) - start))
grep -iE "warning" "$LOGS/build.log" | grep -v "UserWarning\|SetuptoolsDeprecationWarning" | head -20
"$PY" -c "import smartfrz.ops as o; print(o.backends())" | tee "$LOGS/backends.txt"

export SMARTFRZ_ALLOW_REFERENCE=0  # the op tests fail where an op is served by the reference
echo "== GPU tests (log: $LOGS/gpu_tests.log)"
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/ 2>&1 | tee "$LOGS/gpu_tests.log"
gpu_rc=${PIPESTATUS[0]}
echo "== CPU op tests against the same build (log: $LOGS/cpu_tests.log)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_ops.py 2>&1 | tee "$LOGS/cpu_tests.log"
cpu_rc=${PIPESTATUS[0]}

san="not run (SANITIZE=1 to run)"
if [ "${SANITIZE:-0}" = "1" ]; then
  echo "== compute-sanitizer memcheck on a subset of the GPU tests (log: $LOGS/sanitizer.log)"
  compute-sanitizer --tool memcheck --error-exitcode 9 "$PY" -m pytest -q -p no:cacheprovider -m gpu \
    tests/test_ops_cuda.py -k "errors or misaligned or check_false or mixed" >"$LOGS/sanitizer.log" 2>&1
  san_rc=$?
  tail -5 "$LOGS/sanitizer.log"
  san=$([ $san_rc -eq 0 ] && echo "clean" || echo "FAILED (exit $san_rc)")
fi

echo "== kernel benchmark (log: $LOGS/bench.md)"
"$PY" benchmarks/bench_ops.py --device cuda $QUICK 2>&1 | tee "$LOGS/bench.md"
bench_rc=${PIPESTATUS[0]}

summary() { tail -1 "$1" | sed 's/=//g; s/^ *//; s/ *$//'; }
echo
echo "## smartfrz GPU check: $("$PY" -c "import torch; print(torch.cuda.get_device_name(), '/ torch', torch.__version__)")"
echo
echo "| step | result |"
echo "|---|---|"
echo "| build (sm_${TORCH_CUDA_ARCH_LIST//./}) | ok in ${build_s} s |"
echo "| GPU tests (pytest -m gpu) | $(summary "$LOGS/gpu_tests.log") (exit $gpu_rc) |"
echo "| CPU op tests (tests/test_ops.py) | $(summary "$LOGS/cpu_tests.log") (exit $cpu_rc) |"
echo "| compute-sanitizer memcheck | $san |"
echo "| benchmark | exit $bench_rc, table below |"
echo
grep "^|" "$LOGS/bench.md"
[ $gpu_rc -eq 0 ] && [ $cpu_rc -eq 0 ] && [ $bench_rc -eq 0 ]
