#!/usr/bin/env bash
# The main job (README): set up the environment and build, then run the whole pipeline end to end
# at smoke scale: collect traces, fit the predictor, train with and without the freezer.
# Arguments go to `python -m smartfrz.pipeline` (e.g. --out DIR, --preset default, --bench full).
set -euo pipefail
cd "$(dirname "$0")/.."
# No GPU visible: build the CPU kernels only (minutes less); the test command keeps compiling the CUDA ones.
if [ -z "${SMARTFRZ_CUDA:-}" ] && ! nvidia-smi -L 2> /dev/null | grep -q "^GPU"; then
  export SMARTFRZ_CUDA=0
fi
scripts/setup_env.sh
.venv/bin/python -m smartfrz.pipeline "$@"
