r"""Numba CPU kernels: loops over receiver CSR segments (``prange``), no atomics.

The same kernels as :mod:`geomp_ref.backends.numpy_backend`, with the same signatures:

.. math::

    \mathrm{scatter\_sum}(v, idx)_k = \sum_{r:\, idx_r = k} v_r, \qquad
    \mathrm{aggregate}(m)_i = \sum_{e:\, dst_e = i} m_e, \qquad
    \mathrm{weighted\_aggregate}(f, w)_i = \sum_{e:\, dst_e = i} w_e \odot f_{src_e},

    \mathrm{edge\_product}(g, f)_e = g_{dst_e} \odot f_{src_e}.

Determinism and bit-identity. Each output row (segment) is owned by exactly one thread
(``prange`` over segments) and summed sequentially, starting from 0.0, over the segment's edges in
increasing edge id (the stable CSR of ``graph.dst_perm`` / ``dst_ptr``, or a stable counting sort of
``index`` for :func:`scatter_sum`). That is the order of ``np.add.at`` in the NumPy reference, so
float64 (and float32) results are bit-identical to it and do not depend on the thread count.
Products are rounded before they are added: Numba compiles without fast-math, so LLVM does not
contract ``w * f + acc`` into a fused multiply-add (the tests check bit-identity on FMA hardware).

Conventions: ``src = edge_index[0]`` (sender j), ``dst = edge_index[1]`` (receiver i); see
:mod:`geomp_ref.graph`. Inputs keep their dtype (float32 or float64); outputs are allocated with
NumPy outside the jitted code, or passed in through ``out=`` (C-contiguous, writeable, the right
shape and dtype), which the segment kernels overwrite completely (no zeroing needed).

Validation is cheap and happens before any kernel runs: dtypes, shapes and lengths here; index
ranges for :func:`scatter_sum` inside the counting-sort pass, which writes nothing before every
index has been checked. A :class:`~geomp_ref.graph.Graph` sealed by
:func:`~geomp_ref.graph.make_graph` is trusted in O(1): its arrays are read-only and cannot be made
writeable, so its indices are still the range-checked ones. Any other ``Graph`` (hand-built, or
changed with ``_replace``) is range-checked in full first, so the kernels never read out of bounds.

Threads: every kernel has a serial and a parallel twin compiled from the same loop; the parallel
one runs only for large work (:mod:`geomp_ref.backends._nbjit` explains why: Numba's and
OpenBLAS's thread pools otherwise slow each other down), and both give the same bits. This module
also re-exports the fused kernels of :mod:`geomp_ref.backends.numba_elementwise` and
:mod:`geomp_ref.backends.numba_edges`.

Compiled code is cached (``cache=True``) under ``NUMBA_CACHE_DIR``; when the user has not set it,
this module points it at ``~/.cache/geomp_ref/numba`` (outside the source tree) before importing
Numba. ``NUMBA_DISABLE_JIT=1`` runs the kernels as plain Python for debugging.
"""

from __future__ import annotations

import os

if not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(
        os.path.expanduser("~"), ".cache", "geomp_ref", "numba"
    )

import numba
import numpy as np
from numba import njit, prange

from . import _checks as C
from ._nbjit import launch, twins
from .numba_edges import (
    edge_pair_sum,
    edge_vectors_vjp,
    filter_aggregate,
    filter_aggregate_vjp,
)
from .numba_elementwise import (
    activation,
    activation_vjp,
    activation_with_grad,
    bessel_rbf,
    bessel_rbf_vjp,
    cosine_cutoff,
    cosine_cutoff_vjp,
    gaussian_rbf,
    gaussian_rbf_vjp,
    polynomial_cutoff,
    polynomial_cutoff_vjp,
)
from .numba_tp import gate_scale, gate_scale_vjp, tp_couple, tp_couple_vjp

if not numba.config.CACHE_DIR:  # numba was imported before us: its config missed the variable
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

__all__ = [
    "activation",
    "activation_vjp",
    "activation_with_grad",
    "aggregate",
    "bessel_rbf",
    "bessel_rbf_vjp",
    "cosine_cutoff",
    "cosine_cutoff_vjp",
    "edge_pair_sum",
    "edge_product",
    "edge_vectors_vjp",
    "filter_aggregate",
    "filter_aggregate_vjp",
    "gate_scale",
    "gate_scale_vjp",
    "gaussian_rbf",
    "gaussian_rbf_vjp",
    "is_available",
    "polynomial_cutoff",
    "polynomial_cutoff_vjp",
    "scatter_max",
    "scatter_mean",
    "scatter_sum",
    "tp_couple",
    "tp_couple_vjp",
    "unavailable_reason",
    "weighted_aggregate",
]

def is_available() -> bool:
    """Always True once this module imported (Numba is a core dependency)."""
    return True


def unavailable_reason() -> str:
    return ""


# --- kernels (plain loops; the caller allocates) ------------------------------------------------


@njit(cache=True)
def _counting_csr(index, num_segments, ptr, perm):
    """Stable CSR of ``index`` (a counting sort). Returns the first bad position, or -1.

    The range check completes before anything is written to ``perm``.
    """
    n = index.shape[0]
    for s in range(num_segments + 1):
        ptr[s] = 0
    for r in range(n):
        k = index[r]
        if k < 0 or k >= num_segments:
            return r
        ptr[k + 1] += 1
    for s in range(num_segments):
        ptr[s + 1] += ptr[s]
    fill = ptr[:-1].copy()
    for r in range(n):
        k = index[r]
        perm[fill[k]] = r
        fill[k] += 1
    return -1


def _csr_sum(values, perm, ptr, out, mean):
    """``out[i] = sum_{p in ptr[i]:ptr[i+1]} values[perm[p]]`` (optionally divided by the count).

    For C >= 32 four edges are combined per sweep over the row, ``((row + v0) + v1) + v2) + v3``
    per channel: the same order as one edge at a time (bit-identical), with four row reads in
    flight, which pays on random receivers (measured 1.3-1.5x at C = 64). Short rows keep the
    one-edge loop, which vectorizes better there.
    """
    n = out.shape[0]
    c = out.shape[1]
    for i in prange(n):
        row = out[i]
        for k in range(c):
            row[k] = 0
        p = ptr[i]
        b = ptr[i + 1]
        if c >= 32:
            while p + 4 <= b:
                v0 = values[perm[p]]
                v1 = values[perm[p + 1]]
                v2 = values[perm[p + 2]]
                v3 = values[perm[p + 3]]
                for k in range(c):
                    row[k] = (((row[k] + v0[k]) + v1[k]) + v2[k]) + v3[k]
                p += 4
        while p < b:
            v = values[perm[p]]
            for k in range(c):
                row[k] += v[k]
            p += 1
        cnt = b - ptr[i]
        if mean and cnt > 1:
            # int count: the quotient is formed in float64 and rounded once to the output
            # dtype, which equals the float32 quotient (53 >= 2 * 24 + 2 bits, no double-rounding)
            for k in range(c):
                row[k] = row[k] / cnt


def _csr_max(values, perm, ptr, out, arg):
    """Segment max per column; first row attaining it (strict ``>``); 0.0 and -1 when empty."""
    n = out.shape[0]
    c = out.shape[1]
    for i in prange(n):
        a = ptr[i]
        b = ptr[i + 1]
        if a == b:
            for k in range(c):
                out[i, k] = 0
                arg[i, k] = -1
            continue
        r0 = perm[a]
        for k in range(c):
            out[i, k] = values[r0, k]
            arg[i, k] = r0
        for p in range(a + 1, b):
            r = perm[p]
            for k in range(c):
                if values[r, k] > out[i, k]:
                    out[i, k] = values[r, k]
                    arg[i, k] = r


def _csr_weighted_edge(f, w, src, perm, ptr, out):
    """``out[i] = sum_e w[e] * f[src[e]]`` with one scalar weight per edge.

    Four edges per sweep over the row, products added in edge order (bit-identical to one at a
    time); each product is rounded before it is added (no fast-math, so no FMA contraction).
    """
    n = out.shape[0]
    c = out.shape[1]
    for i in prange(n):
        row = out[i]
        for k in range(c):
            row[k] = 0
        p = ptr[i]
        b = ptr[i + 1]
        while p + 4 <= b:
            e0, e1, e2, e3 = perm[p], perm[p + 1], perm[p + 2], perm[p + 3]
            w0, w1, w2, w3 = w[e0], w[e1], w[e2], w[e3]
            f0, f1, f2, f3 = f[src[e0]], f[src[e1]], f[src[e2]], f[src[e3]]
            for k in range(c):
                row[k] = (((row[k] + w0 * f0[k]) + w1 * f1[k]) + w2 * f2[k]) + w3 * f3[k]
            p += 4
        while p < b:
            e = perm[p]
            we = w[e]
            fs = f[src[e]]
            for k in range(c):
                row[k] += we * fs[k]
            p += 1


def _csr_weighted_channel(f, w, src, perm, ptr, out):
    """``out[i, k] = sum_e w[e, k] * f[src[e], k]`` (a filter per edge and channel).

    Same four-edge sweep as :func:`_csr_weighted_edge` (measured 1.1-1.6x over one edge at a
    time on this 2-core box, sorted and random receivers).
    """
    n = out.shape[0]
    c = out.shape[1]
    for i in prange(n):
        row = out[i]
        for k in range(c):
            row[k] = 0
        p = ptr[i]
        b = ptr[i + 1]
        while p + 4 <= b:
            e0, e1, e2, e3 = perm[p], perm[p + 1], perm[p + 2], perm[p + 3]
            w0, w1, w2, w3 = w[e0], w[e1], w[e2], w[e3]
            f0, f1, f2, f3 = f[src[e0]], f[src[e1]], f[src[e2]], f[src[e3]]
            for k in range(c):
                row[k] = (((row[k] + w0[k] * f0[k]) + w1[k] * f1[k]) + w2[k] * f2[k]) + w3[
                    k
                ] * f3[k]
            p += 4
        while p < b:
            e = perm[p]
            we = w[e]
            fs = f[src[e]]
            for k in range(c):
                row[k] += we[k] * fs[k]
            p += 1


def _edge_product(g, f, src, dst, out):
    for e in prange(out.shape[0]):
        gd = g[dst[e]]
        fs = f[src[e]]
        for k in range(out.shape[1]):
            out[e, k] = gd[k] * fs[k]


_K_SUM = twins(_csr_sum)
_K_MAX = twins(_csr_max)
_K_W_EDGE = twins(_csr_weighted_edge)
_K_W_CHANNEL = twins(_csr_weighted_channel)
_K_EDGE_PRODUCT = twins(_edge_product)


# --- validation (shared with the NumPy backend: backends/_checks.py) ---------------------------


def _segments(values, index, num_segments):
    values = C.float_array(values, "values")
    num_segments = C.num_segments(num_segments, "num_segments", values.shape[1:])
    index = C.index_array(index, "index", values.shape[0])
    ptr = np.empty(num_segments + 1, dtype=np.int64)
    perm = np.empty(index.shape[0], dtype=np.int64)
    bad = _counting_csr(index, num_segments, ptr, perm)
    if bad >= 0:
        raise ValueError(
            f"index holds {int(index[bad])} at position {bad}, out of range for "
            f"num_segments={num_segments}; indices must satisfy 0 <= index < num_segments"
        )
    return values, ptr, perm, num_segments


# --- public kernels ----------------------------------------------------------------------------


def scatter_sum(values, index, num_segments, *, out=None):
    """``out[k] = sum_{r: index[r] = k} values[r]``, shape (num_segments, *values.shape[1:]).

    Rows are summed in increasing row order from 0.0 (bit-identical to the NumPy backend).

    Parameters
    ----------
    values : ndarray, shape (R, ...), float32 or float64
    index : ndarray, shape (R,), integer, each in [0, num_segments)
    num_segments : int
    out : ndarray, optional
        C-contiguous, writeable, shape (num_segments, *values.shape[1:]), dtype of ``values``.

    Raises
    ------
    TypeError, ValueError
        Wrong dtype, mismatched lengths, out-of-range index, bad ``out`` (before any write).
    """
    values, ptr, perm, n = _segments(values, index, num_segments)
    res = C.out_array(out, (n,) + values.shape[1:], values.dtype)
    launch(_K_SUM, values.size, C.as_2d(values), perm, ptr, C.as_2d(res), False)
    return res


def scatter_mean(values, index, num_segments, *, out=None):
    """Segment mean (sum divided by the count; empty segments give 0)."""
    values, ptr, perm, n = _segments(values, index, num_segments)
    res = C.out_array(out, (n,) + values.shape[1:], values.dtype)
    launch(_K_SUM, values.size, C.as_2d(values), perm, ptr, C.as_2d(res), True)
    return res


def scatter_max(values, index, num_segments, *, out=None):
    """Segment max per column and the first row attaining it; empty segments give 0.0 and -1.

    ``out`` is an optional pair ``(out_values, out_argmax)`` (argmax int64).
    """
    values, ptr, perm, n = _segments(values, index, num_segments)
    shape = (n,) + values.shape[1:]
    if out is None:
        res, arg = np.empty(shape, values.dtype), np.empty(shape, np.int64)
    else:
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError("out must be a pair (out_values, out_argmax) for scatter_max")
        res = C.out_array(out[0], shape, values.dtype, "out[0]")
        arg = C.out_array(out[1], shape, np.dtype(np.int64), "out[1]")
    launch(_K_MAX, values.size, C.as_2d(values), perm, ptr, C.as_2d(res), C.as_2d(arg))
    return res, arg


def aggregate(graph, m, *, out=None):
    """Sum of per-edge messages at their receivers, ``out_i = sum_{e: dst_e = i} m_e``.

    Parameters
    ----------
    graph : Graph
    m : ndarray, shape (E, ...), float32 or float64, in the order of ``graph.edge_index``
    out : ndarray, optional, shape (N, *m.shape[1:])
    """
    graph = C.graph(graph)
    m = C.float_array(m, "m")
    C.edge_rows(m, "m", graph)
    res = C.out_array(out, (graph.num_nodes,) + m.shape[1:], m.dtype)
    launch(_K_SUM, m.size, C.as_2d(m), graph.dst_perm, graph.dst_ptr, C.as_2d(res), False)
    return res


def weighted_aggregate(graph, f, w, *, out=None):
    """Fused ``out_i = sum_{e: dst_e = i} w_e * f[src_e]`` without an (E, C) temporary.

    Parameters
    ----------
    graph : Graph
    f : ndarray, shape (N, C), float32 or float64
    w : ndarray, shape (E,) or (E, C), same dtype as ``f``
    out : ndarray, optional, shape (N, C)
    """
    graph = C.graph(graph)
    f = C.float_array(f, "f")
    w = C.float_array(w, "w")
    C.weighted_operands(graph, f, w)
    res = C.out_array(out, f.shape, f.dtype)
    kernel = _K_W_EDGE if w.ndim == 1 else _K_W_CHANNEL
    launch(kernel, graph.num_edges * f.shape[1], f, w, graph.edge_index[0], graph.dst_perm,
           graph.dst_ptr, res)
    return res


def edge_product(graph, g, f, *, out=None):
    """``p_e = g[dst_e] * f[src_e]``, shape (E, C): the weight-gradient kernel."""
    graph = C.graph(graph)
    g = C.float_array(g, "g")
    f = C.float_array(f, "f")
    C.product_operands(graph, g, f)
    res = C.out_array(out, (graph.num_edges, f.shape[1]), f.dtype)
    launch(_K_EDGE_PRODUCT, res.size, g, f, graph.edge_index[0], graph.edge_index[1], res)
    return res
