#!/usr/bin/env bash
# GPU check (one script, about 5 minutes): run from the repository root on a machine with an NVIDIA
# GPU and numba, numba-cuda, torch, e3nn, torch_geometric installed:  bash benchmarks/gpu_check.sh
#   1. the backend tests on the real GPU (no simulator): every CUDA kernel against NumPy;
#   2. `geomp-ref verify --backends numpy,numba,cuda`: every registered layer with the cuda backend;
#   3. benchmarks/aggregate_gpu.py: the CUDA aggregation kernels against torch on the same card;
#   4. benchmarks/models.py --device cuda: whole models, ours (numba on the host CPUs, and the
#      cuda backend) against torch float64 on the GPU.
# Logs go to $OUT (default ./gpu_logs): env.log, pytest.log, verify.log, aggregate_gpu.log,
# models_gpu.log. Each step has its own time limit; the script goes on after a failed step.
set -u
OUT="${OUT:-gpu_logs}"
mkdir -p "$OUT"
unset NUMBA_ENABLE_CUDASIM
export PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/geomp_ref_numba_cache}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
  nproc
  python3 - <<'PY'
import numba, numpy, scipy, torch
print("numpy", numpy.__version__, "scipy", scipy.__version__, "numba", numba.__version__,
      "torch", torch.__version__)
for name in ("numba_cuda", "e3nn", "torch_geometric"):
    try:
        mod = __import__(name)
        print(name, getattr(mod, "__version__", "?"))
    except ImportError as exc:
        print(name, "missing:", exc)
PY
  # Does this numba-cuda compile a kernel against this NumPy without help? (numba-cuda 0.30.x
  # registers an overload for np.row_stack, which NumPy 2.5 removed.)
  python3 - <<'PY'
import numpy as np
from numba import cuda
try:
    @cuda.jit
    def k(a):
        a[cuda.grid(1)] += 1.0
    x = cuda.to_device(np.zeros(32))
    k[1, 32](x)
    print("plain numba-cuda kernel compile: OK", x.copy_to_host()[:2])
except Exception as exc:  # noqa: BLE001
    print("plain numba-cuda kernel compile: FAILED:", type(exc).__name__, str(exc)[:200])
PY
} > "$OUT/env.log" 2>&1

# Where NumPy lacks row_stack, alias it for this check only (a sitecustomize on PYTHONPATH); the
# library itself never patches NumPy, and the `cuda` extra pins a NumPy that still has it.
if ! python3 -c "import numpy; numpy.row_stack" >/dev/null 2>&1; then
  SHIM="$(mktemp -d)"
  printf 'import numpy\nnumpy.row_stack = numpy.vstack\n' > "$SHIM/sitecustomize.py"
  export PYTHONPATH="$SHIM:$PYTHONPATH"
  echo "note: numpy lacks row_stack; aliased to vstack for numba-cuda (see gpu_check.sh)" \
    >> "$OUT/env.log"
fi
python3 -c "from geomp_ref import backends; print('backends.available():', backends.available())" \
  >> "$OUT/env.log" 2>&1
cat "$OUT/env.log"

set -o pipefail
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
  local name="$1" limit="$2"
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=$?
  echo "gpu_check: $name rc=$rc in $((SECONDS - t0)) s" | tee -a "$OUT/env.log"
  return $rc
}
ok=0
step pytest 110 python3 -m pytest tests/backends -q -p no:cacheprovider -x || ok=1
step verify 150 python3 -m geomp_ref.cli verify --backends numpy,numba,cuda --molecules 1 || ok=1
step aggregate_gpu 80 python3 benchmarks/aggregate_gpu.py --repeats 7 || ok=1
step models_gpu 210 python3 benchmarks/models.py --device cuda --threads "$(nproc)" --rounds 5 \
  || ok=1
exit $ok
