r"""Keep freed memory in the process instead of handing it back to the kernel (glibc only).

Why. A float64 array of a few hundred kilobytes or more that NumPy allocates is served by glibc
either from a fresh ``mmap`` or from the top of the heap, and when it is freed glibc returns the
pages to the kernel (``munmap``, or trimming the heap top beyond ``M_TRIM_THRESHOLD``). The next
array of that size then starts on untouched pages, and its first write takes one page fault per
4 KiB page. A model step allocates dozens of such temporaries (edge-sized activations, their
derivatives, products), so the faults can cost as much as the arithmetic: measured on the
2-core development box, the fused SiLU of a 2000 x 64 edge array took 1.9 ms with fresh pages
against 0.7 ms with reused ones, and the whole EGNN N-body training step about 10% less time.

What :func:`tune_allocator` does: two ``mallopt`` calls, ``M_TRIM_THRESHOLD`` (free memory at the
heap top up to this size stays in the process) and ``M_MMAP_THRESHOLD`` (allocations below this
size come from the heap, whose pages are then reused). Setting them also switches off glibc's
dynamic adjustment of both thresholds. The cost: memory freed after a peak stays mapped to the
process (its resident size stays near the peak until it exits), which is the usual trade of a
long-running numerical job. It changes allocation only, never a result.

It is a process-wide setting, so nothing in the library calls it: a script calls it once, at
the start (``benchmarks/models.py`` does, for every method it times, torch included). Where the
C library is not glibc (macOS, Windows, musl) it does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from .._validate import check_int

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
_MMAP_MAX = 32 << 20  # glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB, 64-bit)


def _mallopt():
    """glibc's ``mallopt``, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):  # present in glibc only
        return None
    fn = libc.mallopt
    fn.argtypes = (ctypes.c_int, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def tune_allocator(*, trim_threshold: int = 256 << 20, mmap_threshold: int = 32 << 20) -> bool:
    """Make glibc keep freed memory for reuse; True if both settings took effect.

    Parameters
    ----------
    trim_threshold : int
        Bytes of free memory at the top of the heap that stay in the process (default 256 MiB;
        glibc's own default is 128 KiB, raised dynamically up to 64 MiB).
    mmap_threshold : int
        Allocations of at least this many bytes get their own ``mmap`` (and go back to the
        kernel when freed); smaller ones come from the heap. Default and maximum 32 MiB.

    Returns
    -------
    bool
        False where the C library is not glibc (nothing is changed), or where glibc refused a
        value; True when both ``mallopt`` calls succeeded.

    Raises
    ------
    TypeError, ValueError
        A threshold that is not an int, is negative, or (``mmap_threshold``) exceeds 32 MiB.
    """
    trim = check_int(trim_threshold, "trim_threshold", minimum=0, maximum=2**31 - 1)
    mmap = check_int(mmap_threshold, "mmap_threshold", minimum=0, maximum=_MMAP_MAX)
    fn = _mallopt()
    if fn is None:
        return False
    ok_trim = fn(_M_TRIM_THRESHOLD, trim) == 1
    ok_mmap = fn(_M_MMAP_THRESHOLD, mmap) == 1
    return ok_trim and ok_mmap
