#!/usr/bin/env bash
# GPU check for issue 6 (one script, < 5 minutes): the backend tests on a real GPU (no simulator)
# and the CUDA aggregation benchmark. Run from the repository root on a machine with an NVIDIA
# GPU and numba, numba-cuda, torch installed:  bash benchmarks/gpu_check.sh
# Logs go to $OUT (default ./gpu_logs): env.log, pytest.log, aggregate_gpu.log.
set -u
OUT="${OUT:-gpu_logs}"
mkdir -p "$OUT"
unset NUMBA_ENABLE_CUDASIM
export PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/geomp_ref_numba_cache}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# numba-cuda 0.30.x still registers an overload for np.row_stack, which NumPy 2.5 removed: the
# first kernel compilation then fails with "module 'numpy' has no attribute 'row_stack'". Where
# that is the case, alias it (for this check only) through a sitecustomize on PYTHONPATH.
if ! python3 -c "import numpy; numpy.row_stack" >/dev/null 2>&1; then
  SHIM="$(mktemp -d)"
  printf 'import numpy\nnumpy.row_stack = numpy.vstack\n' > "$SHIM/sitecustomize.py"
  export PYTHONPATH="$SHIM:$PYTHONPATH"
  echo "note: numpy lacks row_stack; aliased to vstack for numba-cuda (see gpu_check.sh)"
fi

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
  python3 - <<'PY'
import numba, numpy, torch
from numba import cuda
print("numpy", numpy.__version__, "numba", numba.__version__, "torch", torch.__version__)
try:
    import numba_cuda
    print("numba-cuda", numba_cuda.__version__)
except ImportError as exc:
    print("numba-cuda missing:", exc)
print("cuda.is_available()", cuda.is_available())
cuda.detect()
from geomp_ref import backends
print("geomp_ref backends.available():", backends.available())
print("geomp_ref get('cuda'):", backends.get("cuda").__name__)
PY
} > "$OUT/env.log" 2>&1
cat "$OUT/env.log"

set -o pipefail
timeout 170 python3 -m pytest tests/backends -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log"
rc_test=$?
timeout 170 python3 benchmarks/aggregate_gpu.py 2>&1 | tee "$OUT/aggregate_gpu.log"
rc_bench=$?
echo "gpu_check: pytest rc=$rc_test, aggregate_gpu rc=$rc_bench" | tee -a "$OUT/env.log"
[ "$rc_test" -eq 0 ] && [ "$rc_bench" -eq 0 ]
