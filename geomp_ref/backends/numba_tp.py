r"""Fused Numba kernels of the steerable layers: the coupling step of weights-first tensor
products, and the gate's scaling of gated irreps.

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

The gate (:class:`geomp_ref.o3.Gate`) multiplies each gated irrep copy (``d = 2l + 1``
components) by its gate; ``runs`` (R, 5) lists runs of consecutive copies of one size:
columns ``lo:hi`` of ``y``, gates ``c:c + n``, ``n`` copies of ``d`` components:

.. math::

    o_{c', m} = y_{c', m}\, a_{c'}, \qquad
    \bar y_{c', m} = \bar o_{c', m}\, a_{c'}, \qquad
    \bar a_{c'} = \sum_m \bar o_{c', m}\, y_{c', m},

one product per element as NumPy rounds it (``gate_scale`` and :math:`\bar y` bit-identical to
the broadcast products), :math:`\bar a` summed over ``m`` in increasing order (the order of
NumPy's reduction over that axis, up to the sign of a zero sum).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._nbjit import launch, twins

__all__ = ["gate_scale", "gate_scale_vjp", "tp_couple", "tp_couple_vjp"]


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


def _gate_scale(y, a, runs, out):
    for z in prange(y.shape[0]):
        yz, az, oz = y[z], a[z], out[z]
        for r in range(runs.shape[0]):
            lo, c, n, d = runs[r, 0], runs[r, 2], runs[r, 3], runs[r, 4]
            for j in range(n):
                g = az[c + j]
                base = lo + j * d
                for m in range(d):
                    oz[base + m] = yz[base + m] * g


def _gate_scale_vjp(go, y, a, runs, gy, ga):
    for z in prange(y.shape[0]):
        goz, yz, az, gyz, gaz = go[z], y[z], a[z], gy[z], ga[z]
        for r in range(runs.shape[0]):
            lo, c, n, d = runs[r, 0], runs[r, 2], runs[r, 3], runs[r, 4]
            for j in range(n):
                g = az[c + j]
                base = lo + j * d
                s = goz[base] * yz[base]
                gyz[base] = goz[base] * g
                for m in range(1, d):
                    s += goz[base + m] * yz[base + m]
                    gyz[base + m] = goz[base + m] * g
                gaz[c + j] = s


_K_COUPLE = twins(_couple)
_K_COUPLE_VJP = twins(_couple_vjp)
_K_GATE = twins(_gate_scale)
_K_GATE_VJP = twins(_gate_scale_vjp)


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


def _gate_operands(y, a, runs):
    for arr, n in ((y, "y"), (a, "a")):
        if arr.dtype != np.float64 or arr.ndim != 2 or not arr.flags.c_contiguous:
            raise TypeError(f"{n} must be a C-contiguous 2-d float64 array")
    runs = np.ascontiguousarray(runs, dtype=np.int64)
    if a.shape[0] != y.shape[0] or runs.ndim != 2 or runs.shape[1] != 5:
        raise ValueError(f"y (Z, dim_y), a (Z, num_gates) and runs (R, 5) do not fit: "
                         f"{y.shape}, {a.shape}, {runs.shape}")
    if runs.size and (runs[:, 1].max() > y.shape[1] or (runs[:, 2] + runs[:, 3]).max()
                      > a.shape[1] or runs.min() < 0
                      or np.any(runs[:, 0] + runs[:, 3] * runs[:, 4] != runs[:, 1])):
        raise ValueError("runs must hold (lo, hi, c, n, d) with hi = lo + n d inside y and "
                         "c + n inside a")
    return runs


def gate_scale(y, a, runs):
    """``out`` with every gated copy of ``y`` times its gate ``a[:, copy]`` (module
    docstring)."""
    runs = _gate_operands(y, a, runs)
    out = np.empty_like(y)
    if runs.size:
        covered = np.zeros(y.shape[1], bool)
        for lo, hi, *_ in runs:
            covered[lo:hi] = True
        if not covered.all():  # columns outside every run pass through unchanged
            out[:, ~covered] = y[:, ~covered]
    else:
        out[...] = y
    launch(_K_GATE, y.size, y, a, runs, out)
    return out


def gate_scale_vjp(go, y, a, runs):
    """``(grad_y, grad_a)`` of :func:`gate_scale` for the cotangent ``go`` of its output."""
    runs = _gate_operands(y, a, runs)
    if go.shape != y.shape or go.dtype != np.float64 or not go.flags.c_contiguous:
        raise ValueError(f"go must be a C-contiguous float64 array of shape {y.shape}")
    gy = go.copy()  # columns outside every run: the identity
    ga = np.zeros_like(a)
    launch(_K_GATE_VJP, y.size, go, y, a, runs, gy, ga)
    return gy, ga
