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
# SANITIZE=0 skips compute-sanitizer (memcheck, racecheck, initcheck over the CUDA op tests; on by
# default, off with --quick).
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
summary() { tail -1 "$1" | sed 's/=//g; s/^ *//; s/ *$//'; }
echo "== GPU tests (log: $LOGS/gpu_tests.log)"
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/ 2>&1 | tee "$LOGS/gpu_tests.log"
gpu_rc=${PIPESTATUS[0]}
echo "== CPU op tests against the same build (log: $LOGS/cpu_tests.log)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_ops.py tests/test_ops_predictor.py 2>&1 | tee "$LOGS/cpu_tests.log"
cpu_rc=${PIPESTATUS[0]}

# Issue 13's GPU checks, each a named pytest selection (all are also part of `-m gpu` above).
declare -A CHECKS=(
  [int8_edge_rows]="tests/test_ops_int8_edges.py"
  [pinned_lifetime]="tests/test_ops_cuda_limits.py::test_freed_pinned_cache_is_not_reused_while_a_kernel_uses_it"
  [large_2_31]="tests/test_ops_cuda_limits.py -k 2_31"
  [compile_pinned_fullgraph]="tests/test_ops_fake.py::test_compile_fullgraph_with_pinned_cache"
  [sync_debug_all_hit]="tests/test_runtime_syncs.py -k cuda"
)
declare -A CHECK_RESULT
for name in int8_edge_rows pinned_lifetime large_2_31 compile_pinned_fullgraph sync_debug_all_hit; do
  # shellcheck disable=SC2086
  "$PY" -m pytest -q -p no:cacheprovider -m gpu ${CHECKS[$name]} >"$LOGS/check_$name.log" 2>&1
  rc=$?
  CHECK_RESULT[$name]="$(summary "$LOGS/check_$name.log") (exit $rc)"
done

# compute-sanitizer over the CUDA op tests: on by default, SANITIZE=0 (or --quick) skips it.
SANITIZE=${SANITIZE:-$([ "$QUICK" = "--quick" ] && echo 0 || echo 1)}
declare -A SAN
for tool in memcheck racecheck initcheck; do SAN[$tool]="not run (SANITIZE=1 to run)"; done
if [ "$SANITIZE" = "1" ] && command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck initcheck; do
    echo "== compute-sanitizer $tool (log: $LOGS/sanitizer_$tool.log)"
    compute-sanitizer --tool "$tool" --error-exitcode 9 "$PY" -m pytest -q -p no:cacheprovider -m gpu \
      tests/test_ops_cuda.py tests/test_ops_int8_edges.py tests/test_ops_predictor.py \
      -k "errors or misaligned or check_false or mixed or bit_for_bit or predictor_logits_cuda" \
      >"$LOGS/sanitizer_$tool.log" 2>&1
    rc=$?
    tail -3 "$LOGS/sanitizer_$tool.log"
    SAN[$tool]=$([ $rc -eq 0 ] && echo "clean" || echo "FAILED (exit $rc)")
  done
elif [ "$SANITIZE" = "1" ]; then
  for tool in memcheck racecheck initcheck; do SAN[$tool]="compute-sanitizer not found"; done
fi

echo "== gather bandwidth against a device-to-device copy (log: $LOGS/bandwidth.txt)"
"$PY" - >"$LOGS/bandwidth.txt" 2>&1 <<'PYEOF'
import torch
import smartfrz.ops as ops
n, d = 1 << 16, 1024
for where in ("device", "host"):
    cache = torch.randn(n, d, device="cuda").half()
    if where == "host":
        cache = cache.cpu().pin_memory()
    scales = torch.ones(n, device=cache.device, pin_memory=where == "host")
    valid = torch.ones(n, dtype=torch.bool, device=cache.device, pin_memory=where == "host")
    idx = torch.randperm(n, device="cuda")
    src = torch.empty(n, d, dtype=torch.half, device="cuda")
    dst = torch.empty_like(src)
    def t(fn, reps=20):
        fn(); torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            fn()
        b.record(); torch.cuda.synchronize()
        return a.elapsed_time(b) / reps / 1e3
    g = t(lambda: ops.cache_gather(cache, scales, valid, idx, torch.half, check=False))
    c = t(lambda: dst.copy_(src))
    gb = 2 * n * d * 2 / 1e9  # bytes read + written
    print(f"| gather fp16 ({where} cache) | {gb / g:.0f} GB/s | d2d copy {gb / c:.0f} GB/s | ratio {c / g:.2f} |")
PYEOF
bw_rc=$?

echo "== kernel benchmark (log: $LOGS/bench.md)"
"$PY" benchmarks/bench_ops.py --device cuda $QUICK 2>&1 | tee "$LOGS/bench.md"
bench_rc=${PIPESTATUS[0]}

echo
echo "## smartfrz GPU check: $("$PY" -c "import torch; print(torch.cuda.get_device_name(), '/ torch', torch.__version__)")"
echo
echo "| step | result |"
echo "|---|---|"
echo "| build (sm_${TORCH_CUDA_ARCH_LIST//./}) | ok in ${build_s} s |"
echo "| GPU tests (pytest -m gpu) | $(summary "$LOGS/gpu_tests.log") (exit $gpu_rc) |"
echo "| CPU op tests (tests/test_ops.py, tests/test_ops_predictor.py) | $(summary "$LOGS/cpu_tests.log") (exit $cpu_rc) |"
for tool in memcheck racecheck initcheck; do echo "| compute-sanitizer $tool | ${SAN[$tool]} |"; done
for name in int8_edge_rows pinned_lifetime large_2_31 compile_pinned_fullgraph sync_debug_all_hit; do
  echo "| $name | ${CHECK_RESULT[$name]} |"
done
echo "| bandwidth | exit $bw_rc, table below |"
echo "| benchmark | exit $bench_rc, table below |"
echo
grep "^|" "$LOGS/bandwidth.txt"
echo
grep "^|" "$LOGS/bench.md"
[ $gpu_rc -eq 0 ] && [ $cpu_rc -eq 0 ] && [ $bench_rc -eq 0 ]
