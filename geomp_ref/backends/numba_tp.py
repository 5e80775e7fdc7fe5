r"""Fused Numba kernels for the coupling step of weights-first tensor products.

With the weight contraction done first (:mod:`geomp_ref.o3._tp_split`), what is left per sample
of a key (paths sharing the ``x2`` block, the output block and the input degree) is

.. math::

    z_{w,k} \mathrel{+}= \sum_i Y_{i,w}\; t_{i,k}, \qquad
    \bar Y_{i,w} \mathrel{+}= \sum_k \bar z_{w,k}\, t_{i,k}, \qquad
    \bar t_{i,k} = \sum_w Y_{i,w}\, \bar z_{w,k},

``Y`` (Z, d1, mo), ``t`` (Z, d1, do), ``z`` and its cotangent (Z, mo, do), all C-contiguous. In
NumPy these are stacks of (mo x d1)(d1 x do) products, one per sample, which ``np.matmul`` runs at
a fraction of the machine's speed; here one pass over the samples, the innermost loop running
over the contiguous ``w`` so that it vectorizes. ``z`` accumulates one ``i`` after the other, the
sums over ``k`` and ``w`` run in increasing order (no FMA), so serial and parallel twins agree bit
for bit (:mod:`geomp_ref.backends._nbjit`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._nbjit import launch, twins

__all__ = ["tp_couple", "tp_couple_vjp"]


def _couple(Y, t, out):
    d1, mo, do = Y.shape[1], Y.shape[2], t.shape[2]
    for z in prange(Y.shape[0]):
        yz, tz, oz = Y[z], t[z], out[z]
        for i in range(d1):
            yi = yz[i]
            for k in range(do):
                tk = tz[i, k]
                for w in range(mo):
                    oz[w, k] += yi[w] * tk


def _couple_vjp(Y, t, g, gY, gt):
    d1, mo, do = Y.shape[1], Y.shape[2], t.shape[2]
    for z in prange(Y.shape[0]):
        yz, tz, gz, gyz, gtz = Y[z], t[z], g[z], gY[z], gt[z]
        for i in range(d1):
            yi, gyi = yz[i], gyz[i]
            for k in range(do):
                tk = tz[i, k]
                acc = 0.0
                for w in range(mo):
                    gv = gz[w, k]
                    gyi[w] += gv * tk
                    acc += yi[w] * gv
                gtz[i, k] = acc


_K_COUPLE = twins(_couple)
_K_COUPLE_VJP = twins(_couple_vjp)


def _check(Y, t, zs, name):
    for a, n in ((Y, "Y"), (t, "t"), (zs, name)):
        if a.dtype != np.float64 or a.ndim != 3 or not a.flags.c_contiguous:
            raise TypeError(f"{n} must be a C-contiguous 3-d float64 array")
    z, d1, mo = Y.shape
    if t.shape[:2] != (z, d1) or zs.shape != (z, mo, t.shape[2]):
        raise ValueError(f"Y (Z, d1, mo), t (Z, d1, do) and {name} (Z, mo, do) do not fit: "
                         f"{Y.shape}, {t.shape}, {zs.shape}")


def tp_couple(Y, t, out):
    """``out[z, w, k] += sum_i Y[z, i, w] t[z, i, k]`` in place (module docstring)."""
    _check(Y, t, out, "out")
    launch(_K_COUPLE, out.size, Y, t, out)


def tp_couple_vjp(Y, t, g, gY):
    """Adds the cotangent of ``Y`` into ``gY`` and returns that of ``t`` (Z, d1, do), for the
    cotangent ``g`` (Z, mo, do) of :func:`tp_couple`'s output."""
    _check(Y, t, g, "g")
    if gY.shape != Y.shape or gY.dtype != np.float64 or not gY.flags.c_contiguous:
        raise ValueError(f"gY must be a C-contiguous float64 array of shape {Y.shape}")
    gt = np.empty_like(t)
    launch(_K_COUPLE_VJP, g.size, Y, t, g, gY, gt)
    return gt
