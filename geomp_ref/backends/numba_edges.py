r"""Fused Numba kernels for edge filters (SchNet's cfconv) and the edge-vector VJP.

.. math::

    \mathrm{filter\_aggregate}(f, w, s)_i = \sum_{e:\, dst_e = i} (w_e s_e) \odot f_{src_e},

with a filter :math:`w` (E, C) and a scale :math:`s` (E,) per edge (the cutoff), without forming
the (E, C) product :math:`w s` or the messages. Its VJP, in one call:

.. math::

    \bar f_j = \sum_{e:\, src_e = j} (w_e s_e) \odot \bar o_{dst_e}, \qquad
    p_e = \bar o_{dst_e} \odot f_{src_e}, \qquad
    \bar w_e = p_e s_e, \qquad \bar s_e = \langle p_e, w_e \rangle .

``edge_pair_sum(graph, a, b, r, w)`` is :math:`a_{dst_e} + b_{src_e} + r_e w` (E, C), the first
product of an edge network on ``[h_i, h_j, r]`` split by node (EGNN), in one pass with the
rounding of the NumPy sequence ``a[dst] + b[src]``, then ``+ r w``.

``edge_vectors_vjp(graph, g)`` is the adjoint of :math:`x_{src} - x_{dst}`: node n receives
:math:`\sum_{e: src_e = n} g_e - \sum_{e: dst_e = n} g_e`.

With ``pairs`` (a graph where every edge j -> i has a reverse i -> j, and a filter that depends
only on the unordered pair, as SchNet's does through the distance) ``w`` and ``s`` hold one row per
pair and both edges of a pair read it; the VJP then sums the two edges' contributions into the
pair's row.

Bit-identity with the NumPy reference (:mod:`geomp_ref.ops.edge_filters`): each output row is
owned by one iteration and summed from 0.0 over its CSR segment in increasing edge id, the order of
``np.add.at``; the products are rounded as the reference rounds them (``(w s) f``, no FMA). So
``filter_aggregate``, :math:`\bar f`, :math:`\bar w` and ``edge_vectors_vjp`` are bit-identical to
it; :math:`\bar s` is a sum over channels, summed sequentially here and pairwise by NumPy (a few
ulp apart). Serial or parallel twins as in :mod:`geomp_ref.backends._nbjit`.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from . import _checks as C
from ._nbjit import launch, twins

__all__ = ["edge_pair_sum", "edge_vectors_vjp", "filter_aggregate", "filter_aggregate_vjp"]


def _filter_csr(f, w, s, row, other, perm, ptr, out):
    """``out[i] = sum_{p in segment i} (w[r] s[r]) * f[other[e]]``, ``e = perm[p]``,
    ``r = row[e]`` (the filter row of edge e: e itself, or its pair)."""
    n = out.shape[0]
    c = out.shape[1]
    for i in prange(n):
        o = out[i]
        for k in range(c):
            o[k] = 0
        p = ptr[i]
        b = ptr[i + 1]
        while p + 4 <= b:
            e0, e1, e2, e3 = perm[p], perm[p + 1], perm[p + 2], perm[p + 3]
            r0, r1, r2, r3 = row[e0], row[e1], row[e2], row[e3]
            s0, s1, s2, s3 = s[r0], s[r1], s[r2], s[r3]
            w0, w1, w2, w3 = w[r0], w[r1], w[r2], w[r3]
            f0, f1, f2, f3 = f[other[e0]], f[other[e1]], f[other[e2]], f[other[e3]]
            for k in range(c):
                o[k] = ((((o[k] + (w0[k] * s0) * f0[k]) + (w1[k] * s1) * f1[k])
                         + (w2[k] * s2) * f2[k]) + (w3[k] * s3) * f3[k])
            p += 4
        while p < b:
            e = perm[p]
            r = row[e]
            se = s[r]
            we = w[r]
            fs = f[other[e]]
            for k in range(c):
                o[k] += (we[k] * se) * fs[k]
            p += 1


def _filter_rows(f, w, s, g, src, dst, first, second, g_w, g_s):
    """Per filter row r (edge ``first[r]``, and ``second[r]`` unless it is -1):
    ``p = g[dst] * f[src]`` per edge, ``g_w[r] = sum p s[r]``, ``g_s[r] = sum <p, w[r]>``."""
    c = w.shape[1]
    for r in prange(w.shape[0]):
        e = first[r]
        ge = g[dst[e]]
        fe = f[src[e]]
        wr = w[r]
        sr = s[r]
        acc = 0.0
        for k in range(c):
            pk = ge[k] * fe[k]
            g_w[r, k] = pk * sr
            acc += pk * wr[k]
        e2 = second[r]
        if e2 >= 0:
            ge = g[dst[e2]]
            fe = f[src[e2]]
            for k in range(c):
                pk = ge[k] * fe[k]
                g_w[r, k] += pk * sr
                acc += pk * wr[k]
        g_s[r] = acc


def _node_diff(g, src_perm, src_ptr, dst_perm, dst_ptr, out):
    """``out[n] = sum_{src_e = n} g_e - sum_{dst_e = n} g_e``, sources first, in edge order."""
    c = out.shape[1]
    for n in prange(out.shape[0]):
        row = out[n]
        for k in range(c):
            row[k] = 0
        for p in range(src_ptr[n], src_ptr[n + 1]):
            ge = g[src_perm[p]]
            for k in range(c):
                row[k] += ge[k]
        for p in range(dst_ptr[n], dst_ptr[n + 1]):
            ge = g[dst_perm[p]]
            for k in range(c):
                row[k] += -ge[k]


def _pair_sum(a, b, r, w, src, dst, out):
    """``out[e] = (a[dst[e]] + b[src[e]]) + r[e] * w`` (two roundings per addition, no FMA)."""
    c = out.shape[1]
    for e in prange(out.shape[0]):
        ad = a[dst[e]]
        bs = b[src[e]]
        re = r[e]
        o = out[e]
        for k in range(c):
            o[k] = (ad[k] + bs[k]) + re * w[k]


_K_PAIR_SUM = twins(_pair_sum)
_K_FILTER = twins(_filter_csr)
_K_FILTER_ROWS = twins(_filter_rows)
_K_NODE_DIFF = twins(_node_diff)


def _operands(graph, f, w, s, pairs):
    graph = C.graph(graph)
    f = C.float_array(f, "f")
    w = C.float_array(w, "w")
    s = C.float_array(s, "s")
    n, e = graph.num_nodes, graph.num_edges
    rows = e if pairs is None else pairs.first.shape[0]
    if f.ndim != 2 or f.shape[0] != n:
        raise ValueError(f"f must have shape (num_nodes, C) = ({n}, C); got {f.shape}")
    if w.shape != (rows, f.shape[1]):
        raise ValueError(f"w must have shape ({rows}, {f.shape[1]}) (one filter row per "
                         f"{'edge' if pairs is None else 'edge pair'}); got {w.shape}")
    if s.shape != (rows,):
        raise ValueError(f"s must have shape ({rows},); got {s.shape}")
    if not (f.dtype == w.dtype == s.dtype):
        raise TypeError(f"f, w and s must share one dtype; got {f.dtype}, {w.dtype}, {s.dtype}")
    if pairs is None:
        ident = np.arange(e, dtype=np.int64)
        return graph, f, w, s, ident, ident, np.full(e, -1, dtype=np.int64)
    if pairs.row.shape != (e,):
        raise ValueError(f"pairs do not belong to this graph ({e} edges)")
    return graph, f, w, s, pairs.row, pairs.first, pairs.second


def filter_aggregate(graph, f, w, s, pairs=None, *, out=None):
    """``out_i = sum_{e into i} (w_r s_r) * f[src_e]``, shape (N, C), ``r`` the filter row of e.

    ``w`` (E, C) and ``s`` (E,) hold one row per edge, or with ``pairs``
    (:class:`geomp_ref.ops.edge_filters.EdgePairs`) one row per pair of reverse edges.
    """
    graph, f, w, s, row, _, _ = _operands(graph, f, w, s, pairs)
    res = C.out_array(out, f.shape, f.dtype)
    launch(_K_FILTER, graph.num_edges * f.shape[1], f, w, s, row, graph.edge_index[0],
           graph.dst_perm, graph.dst_ptr, res)
    return res


def filter_aggregate_vjp(graph, f, w, s, grad_out, pairs=None):
    """VJP of :func:`filter_aggregate`: ``(grad_f, grad_w, grad_s)`` (rows as ``w`` and ``s``)."""
    graph, f, w, s, row, first, second = _operands(graph, f, w, s, pairs)
    g = C.float_array(grad_out, "grad_out")
    if g.shape != f.shape or g.dtype != f.dtype:
        raise ValueError(f"grad_out must have the shape and dtype of f {f.shape} {f.dtype}; "
                         f"got {g.shape} {g.dtype}")
    src, dst = graph.edge_index[0], graph.edge_index[1]
    work = graph.num_edges * f.shape[1]
    g_f = np.empty_like(f)
    launch(_K_FILTER, work, g, w, s, row, dst, graph.src_perm, graph.src_ptr, g_f)
    g_w = np.empty_like(w)
    g_s = np.empty_like(s)
    launch(_K_FILTER_ROWS, work, f, w, s, g, src, dst, first, second, g_w, g_s)
    return g_f, g_w, g_s


def edge_pair_sum(graph, a, b, r, w):
    """``a[dst_e] + b[src_e] + r_e * w``, shape (E, C): ``a``, ``b`` (N, C), ``r`` (E,), ``w``
    (C,), one dtype."""
    graph = C.graph(graph)
    a, b = C.float_array(a, "a"), C.float_array(b, "b")
    r, w = C.float_array(r, "r"), C.float_array(w, "w")
    n, e = graph.num_nodes, graph.num_edges
    if a.ndim != 2 or a.shape[0] != n or b.shape != a.shape:
        raise ValueError(f"a and b must have shape (num_nodes, C) = ({n}, C); got {a.shape}, "
                         f"{b.shape}")
    if r.shape != (e,) or w.shape != (a.shape[1],):
        raise ValueError(f"r must have shape ({e},) and w ({a.shape[1]},); got {r.shape}, "
                         f"{w.shape}")
    if not (a.dtype == b.dtype == r.dtype == w.dtype):
        raise TypeError(f"a, b, r and w must share one dtype; got {a.dtype}, {b.dtype}, "
                        f"{r.dtype}, {w.dtype}")
    out = np.empty((e, a.shape[1]), a.dtype)
    launch(_K_PAIR_SUM, out.size, a, b, r, w, graph.edge_index[0], graph.edge_index[1], out)
    return out


def edge_vectors_vjp(graph, grad_edge_vec):
    """Adjoint of ``pos[src] - pos[dst]``: shape (N, D), bit-identical to the NumPy reference."""
    graph = C.graph(graph)
    g = C.float_array(grad_edge_vec, "grad_edge_vec")
    if g.ndim != 2 or g.shape[0] != graph.num_edges:
        raise ValueError(f"grad_edge_vec must have shape (num_edges, D) = ({graph.num_edges}, D);"
                         f" got {g.shape}")
    out = np.empty((graph.num_nodes, g.shape[1]), g.dtype)
    launch(_K_NODE_DIFF, g.size, g, graph.src_perm, graph.src_ptr, graph.dst_perm,
           graph.dst_ptr, out)
    return out
