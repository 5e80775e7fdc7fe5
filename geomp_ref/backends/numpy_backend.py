r"""NumPy reference kernels (the oracle for the other backends).

Every sum runs sequentially in increasing edge (or row) order starting from 0.0 (``np.add.at`` is
unbuffered and sequential), which is the same order as the CSR kernels' walk over a stable-sorted
segment, so a faithful CSR kernel agrees with these bit for bit.

Called directly, these functions check what they are given as the other backends do: values must
be float32 or float64 (integers are refused rather than summed as integers), index arrays are
range-checked (a negative index never wraps around to the end), and a graph that
:func:`~geomp_ref.graph.make_graph` did not seal is range-checked in full.
"""

from __future__ import annotations

import numpy as np

from . import _checks as C

__all__ = [
    "scatter_sum",
    "scatter_mean",
    "scatter_max",
    "aggregate",
    "weighted_aggregate",
    "edge_product",
]


def _segments(values, index, num_segments):
    values = C.float_array(values, "values")
    num_segments = C.num_segments(num_segments, "num_segments", values.shape[1:])
    index = C.index_array(index, "index", values.shape[0])
    C.in_range(index, "index", num_segments)
    return values, index, num_segments


def _sum(values, index, num_segments):
    out = np.zeros((num_segments,) + values.shape[1:], dtype=values.dtype)
    np.add.at(out, index, values)
    return out


def scatter_sum(values, index, num_segments):
    """``out[k] = sum_{r: index[r] = k} values[r]``, shape (num_segments, *values.shape[1:]).

    Parameters
    ----------
    values : ndarray, shape (R, ...), float32 or float64
    index : ndarray, shape (R,), integer, each in [0, num_segments)
    num_segments : int
    """
    return _sum(*_segments(values, index, num_segments))


def scatter_mean(values, index, num_segments):
    """Segment mean; empty segments give 0."""
    values, index, num_segments = _segments(values, index, num_segments)
    s = _sum(values, index, num_segments)
    cnt = np.bincount(index, minlength=num_segments).astype(values.dtype)
    cnt = np.maximum(cnt, 1).reshape((num_segments,) + (1,) * (values.ndim - 1))
    return s / cnt


def scatter_max(values, index, num_segments):
    """Segment max and the row that attains it (first in row order; -1 and 0.0 when empty)."""
    values, index, num_segments = _segments(values, index, num_segments)
    tail = values.shape[1:]
    out = np.zeros((num_segments,) + tail, dtype=values.dtype)
    arg = np.full((num_segments,) + tail, -1, dtype=np.int64)
    if values.shape[0] == 0:
        return out, arg
    order = np.argsort(index, kind="stable")
    sidx = index[order]
    starts = np.searchsorted(sidx, np.arange(num_segments), side="left")
    stops = np.searchsorted(sidx, np.arange(num_segments), side="right")
    for k in range(num_segments):
        a, b = starts[k], stops[k]
        if a == b:
            continue
        rows = order[a:b]
        block = values[rows]
        j = np.argmax(block, axis=0)  # first occurrence of the max
        out[k] = np.take_along_axis(block, j[None], axis=0)[0]
        arg[k] = rows[j]
    return out, arg


def aggregate(graph, m):
    """Sum of per-edge messages at their receivers, shape (N, *m.shape[1:])."""
    graph = C.graph(graph)
    m = C.float_array(m, "m")
    C.edge_rows(m, "m", graph)
    return _sum(m, graph.edge_index[1], graph.num_nodes)


def weighted_aggregate(graph, f, w):
    """``out_i = sum_{e into i} w_e * f[src_e]``; ``f`` (N, C), ``w`` of shape (E,) or (E, C)."""
    graph = C.graph(graph)
    f = C.float_array(f, "f")
    w = C.float_array(w, "w")
    C.weighted_operands(graph, f, w)
    src = graph.edge_index[0]
    wf = w[:, None] * f[src] if w.ndim == 1 else w * f[src]
    return _sum(wf, graph.edge_index[1], graph.num_nodes)


def edge_product(graph, g, f):
    """``p_e = g[dst_e] * f[src_e]``, shape (E, C)."""
    graph = C.graph(graph)
    g = C.float_array(g, "g")
    f = C.float_array(f, "f")
    C.product_operands(graph, g, f)
    return g[graph.edge_index[1]] * f[graph.edge_index[0]]
