r"""How the Numba CPU kernels are compiled and how many threads they use.

Threading arrangement (issue 11). NumPy's matrix products run in OpenBLAS's own thread pool,
Numba's ``prange`` loops in Numba's (the OpenMP layer on Linux). On a 2-core machine the two pools
take turns, and each keeps its cores busy for a while after its call returns: OpenBLAS's worker
polls for new work (``sched_yield`` loop, measured ~30 ms of CPU after every product on the dev
box), the OpenMP workers spin at the barrier (GNU OpenMP spins ~300 000 iterations before it
sleeps). A parallel Numba kernel started right after a product, or a product started right after
a parallel kernel, shares a core with the other pool's spinning thread: the issue measured the same
BLAS calls 3-10x slower after a parallel Numba kernel had run, and a tiny parallel launch on a
busy machine costs 20-500 µs against 2 µs for a serial call.

So the Numba backend uses its thread pool only for large work and leaves both cores to BLAS
otherwise:

* every kernel exists twice, compiled from the same source: a serial twin (plain loops) and a
  parallel twin (``prange``); :func:`launch` runs the serial one unless the call's work (elements
  times channels) reaches :data:`PARALLEL_MIN_WORK` and Numba has more than one thread;
* the default :data:`PARALLEL_MIN_WORK` (``2**23``) keeps every kernel of a whole model on the
  benchmark sizes (SchNet with 39k edges x 128 channels, EGNN, SEGNN) serial, so after a product
  no Numba worker is woken and after a kernel no Numba worker spins; the large aggregations of
  ``benchmarks/aggregate.py`` (E = 1e6) still run on every core. Set the environment variable
  ``GEOMP_REF_NUMBA_PARALLEL_MIN`` (an int, read at import) or assign
  ``geomp_ref.backends._nbjit.PARALLEL_MIN_WORK`` to move the threshold;
  ``numba.set_num_threads(1)`` makes everything serial.

Both twins run the same arithmetic in the same order (each output element is written by exactly
one iteration), so results do not depend on the twin or the thread count.

Compilation: ``cache=True`` (the twins get distinct qualified names, so their cache files do not
collide) and ``error_model="numpy"``: Numba's default Python error model checks every division for
zero, a branch that stops LLVM's vectorizer.
"""

from __future__ import annotations

import os
import types

import numba
from numba import njit

__all__ = ["PARALLEL_MIN_WORK", "launch", "twins"]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return max(int(raw), 0)
    except ValueError:
        raise ValueError(f"{name} must be an integer number of elements; got {raw!r}") from None


#: Work (elements x channels) from which the parallel twin runs (see the module docstring).
PARALLEL_MIN_WORK = _env_int("GEOMP_REF_NUMBA_PARALLEL_MIN", 1 << 23)


def twins(fn, *, contract: bool = False):
    """``(serial, parallel)`` Numba dispatchers compiled from the plain function ``fn``.

    ``contract=True`` lets LLVM fuse ``a * b + c`` into one FMA (``fastmath={"contract"}``, no
    other fast-math license: no reassociation, no assumptions about NaN or inf). It shortens the
    polynomial evaluations of the elementwise kernels; kernels promised bit-identical to NumPy
    (the sums) leave it off, since a fused product is rounded once instead of twice.
    """
    fm = {"contract"} if contract else False
    par = njit(parallel=True, cache=True, error_model="numpy", fastmath=fm)(fn)
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + "_serial"
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    ser = njit(cache=True, error_model="numpy", fastmath=fm)(copy)
    return ser, par


def launch(pair, work: int, *args):
    """Run the serial twin of ``pair`` below :data:`PARALLEL_MIN_WORK`, else the parallel one."""
    serial, parallel = pair
    # numba.get_num_threads() costs ~5-10 µs, so it is asked only when the work is large
    if work < PARALLEL_MIN_WORK or numba.get_num_threads() == 1:
        return serial(*args)
    return parallel(*args)
