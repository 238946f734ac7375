#!/usr/bin/env bash
# The device check (docs/benchmarks.md § GPU): install what the GPU machine lacks from wheels carried in .whl/
# (faiss-cpu, opacus, monai, nibabel, pydicom, lpips; see bench/gpu_check.py), register the plugins' entry points,
# then run bench/gpu_check.py. Usage: bash bench/gpu_check.sh OUT_DIR [gpu_check.py options]
set -uo pipefail
out=${1:?usage: bench/gpu_check.sh OUT_DIR [options]}; shift
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
# entry points (cmraudit.generators) for `cmraudit run`: an editable install with no dependencies and no index
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$out.pip.log" 2>&1 \
  || echo "gpu_check: editable install failed (see $out.pip.log); quick_run will fail"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
export PYTHONUNBUFFERED=1
python3 bench/gpu_check.py --out "$out" "$@"
