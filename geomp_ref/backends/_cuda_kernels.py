r"""The numba.cuda kernels of :mod:`geomp_ref.backends.numba_cuda`, one set per float dtype.

One thread per (row, channel): the thread walks its row's CSR segment sequentially, in increasing
edge id, accumulating from 0.0 in the input dtype, and writes the result once. Products use
libdevice's ``__nv_dmul_rn`` / ``__nv_fmul_rn`` (PTX ``mul.rn``, never fused into an FMA), so
float64 sums are bit-identical to the NumPy reference; under the simulator a plain product is used
(Python does not contract).

Every index a kernel reads (CSR pointers, permutation entries, sender and receiver ids) is compared
with the bounds of the array it addresses first. A bad index sets ``err[0] = 1`` and the thread
stops; the host raises after the launch. Host graphs are validated before they reach the GPU, so
this guards device-resident graphs (:func:`~geomp_ref.backends.numba_cuda.to_device`), whose
memory the caller could overwrite; the two comparisons cost nothing next to the memory traffic.
"""

from __future__ import annotations

import numpy as np
from numba import cuda
from numba.core import config as _config

SIM = bool(_config.ENABLE_CUDASIM)

if SIM:

    @cuda.jit(device=True)
    def _plain_mul(a, b):
        return a * b


def build(dtype) -> dict:
    """The kernels for ``dtype`` (float32 or float64), keyed by operation."""
    dt = np.float32 if dtype == np.float32 else np.float64
    if SIM:
        mul = _plain_mul
    else:
        from numba.cuda import libdevice

        mul = libdevice.fmul_rn if dt is np.float32 else libdevice.dmul_rn

    @cuda.jit
    def csr_sum(values, perm, ptr, out, mean, err):
        n = out.shape[0]
        c = out.shape[1]
        t = cuda.blockIdx.x * np.int64(cuda.blockDim.x) + cuda.threadIdx.x
        if t >= n * c:
            return
        i = t // c
        k = t - i * c
        a = ptr[i]
        b = ptr[i + 1]
        if a < 0 or b < a or b > perm.shape[0]:
            err[0] = 1
            return
        acc = dt(0)
        for p in range(a, b):
            r = perm[p]
            if r < 0 or r >= values.shape[0]:
                err[0] = 1
                return
            acc += values[r, k]
        if mean and b - a > 1:
            out[i, k] = acc / (b - a)  # float64 quotient rounded once: equals the dtype's quotient
        else:
            out[i, k] = acc

    @cuda.jit
    def csr_max(values, perm, ptr, out, arg, err):
        n = out.shape[0]
        c = out.shape[1]
        t = cuda.blockIdx.x * np.int64(cuda.blockDim.x) + cuda.threadIdx.x
        if t >= n * c:
            return
        i = t // c
        k = t - i * c
        a = ptr[i]
        b = ptr[i + 1]
        if a < 0 or b < a or b > perm.shape[0]:
            err[0] = 1
            return
        if a == b:
            out[i, k] = dt(0)
            arg[i, k] = -1
            return
        best_r = -1
        best = dt(0)
        for p in range(a, b):
            r = perm[p]
            if r < 0 or r >= values.shape[0]:
                err[0] = 1
                return
            v = values[r, k]
            if best_r < 0 or v > best:  # strict: ties keep the first row, as np.argmax does
                best = v
                best_r = r
        out[i, k] = best
        arg[i, k] = best_r

    @cuda.jit
    def csr_weighted(f, w, edge_index, perm, ptr, out, per_channel, err):
        n = out.shape[0]
        c = out.shape[1]
        t = cuda.blockIdx.x * np.int64(cuda.blockDim.x) + cuda.threadIdx.x
        if t >= n * c:
            return
        i = t // c
        k = t - i * c
        a = ptr[i]
        b = ptr[i + 1]
        if a < 0 or b < a or b > perm.shape[0]:
            err[0] = 1
            return
        acc = dt(0)
        for p in range(a, b):
            e = perm[p]
            if e < 0 or e >= w.shape[0]:
                err[0] = 1
                return
            s = edge_index[0, e]
            if s < 0 or s >= f.shape[0]:
                err[0] = 1
                return
            if per_channel:
                acc += mul(w[e, k], f[s, k])
            else:
                acc += mul(w[e, 0], f[s, k])
        out[i, k] = acc

    @cuda.jit
    def edge_prod(g, f, edge_index, out, err):
        n = out.shape[0]
        c = out.shape[1]
        t = cuda.blockIdx.x * np.int64(cuda.blockDim.x) + cuda.threadIdx.x
        if t >= n * c:
            return
        e = t // c
        k = t - e * c
        s = edge_index[0, e]
        d = edge_index[1, e]
        if s < 0 or s >= f.shape[0] or d < 0 or d >= g.shape[0]:
            err[0] = 1
            return
        out[e, k] = g[d, k] * f[s, k]

    return {"sum": csr_sum, "max": csr_max, "weighted": csr_weighted, "edge_product": edge_prod}
