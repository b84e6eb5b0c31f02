# Sourced by the setup and test scripts: export CUDA_HOME when a CUDA toolkit is found
# (an explicit CUDA_HOME wins; /usr/local/bin/nvcc may be a shim, so look for real toolkits).
if [ -z "${CUDA_HOME:-}" ]; then
  for candidate in /usr/local/cuda-13.0 /usr/local/cuda; do
    if [ -x "$candidate/bin/nvcc" ]; then export CUDA_HOME="$candidate"; break; fi
  done
fi
