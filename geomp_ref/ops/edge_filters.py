r"""Continuous-filter aggregation with a per-edge scale, and the edge-vector VJP, per backend.

.. math::

    \mathrm{filter\_aggregate}(f, w, s)_i = \sum_{e:\, dst_e = i} (w_e s_e) \odot f_{src_e}

is SchNet's cfconv sum with the cutoff :math:`s_e = C(d_e)` applied to the filter :math:`w_e`
(E, C). The NumPy reference forms :math:`w_e s_e` and calls
:func:`geomp_ref.ops.scatter.weighted_aggregate`; the numba backend fuses everything
(:mod:`geomp_ref.backends.numba_edges`) and never materialises the (E, C) product. The VJP follows
from the product rule and the adjoint of the weighted aggregation
(:mod:`geomp_ref.ops.scatter`):

.. math::

    \bar f = \mathrm{weighted\_aggregate}(\mathrm{reverse}(G), \bar o, w s), \qquad
    p_e = \bar o_{dst_e} \odot f_{src_e}, \qquad \bar w_e = p_e s_e, \qquad
    \bar s_e = \langle p_e, w_e \rangle .

:func:`edge_pairs` matches every edge with its reverse (one filter row per pair; the numba
kernels take the pairing and read the pair's row from both edges). :func:`edge_vectors_vjp` is
:func:`geomp_ref.graph.edge_vectors_vjp` (the adjoint of :math:`x_{src} - x_{dst}`) on the
chosen backend; the numba kernel sums in the same order and is bit-identical to it. Backends
without these kernels (``"cuda"``) use the reference on the host.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from .. import backends as _backends
from .._validate import check_graph, cotangent, edge_array, node_array
from ..graph import edge_vectors_vjp as _edge_vectors_vjp_ref

__all__ = ["EdgePairs", "edge_pairs", "edge_vectors_vjp", "filter_aggregate",
           "filter_aggregate_vjp"]


class EdgePairs(NamedTuple):
    """Reverse-edge pairing of a symmetric graph (see :func:`edge_pairs`)."""

    row: np.ndarray  # (E,) the pair of every edge
    first: np.ndarray  # (U,) the edge j -> i with j < i of every pair
    second: np.ndarray  # (U,) its reverse i -> j


_PAIRS: dict = {}  # id(edge_index) -> (weakref to edge_index, EdgePairs or None)


def edge_pairs(graph) -> EdgePairs | None:
    r"""Match every edge j -> i with a reverse edge i -> j, or None if the graph is not symmetric.

    A function of the unordered pair :math:`\{i, j\}` (SchNet's filter depends on the distance
    only) then needs one evaluation per pair, ``U = E / 2``. Repeated edges pair in order (the k-th
    copy of j -> i with the k-th copy of i -> j); a graph with a self-loop, or with an edge whose
    reverse is missing, gives None. The result is remembered for the graph's (read-only) edge array
    while that array lives, so a model that applies several layers to one graph pairs it once.
    """
    graph = check_graph(graph)
    ei = graph.edge_index
    hit = _PAIRS.get(id(ei))
    if hit is not None and hit[0]() is ei:
        return hit[1]
    res = _pair_up(np.asarray(ei[0]), np.asarray(ei[1]), graph.num_nodes)
    key = id(ei)
    _PAIRS[key] = (weakref.ref(ei, _forget(key)), res)
    return res


def _forget(key: int):
    def callback(_ref):
        _PAIRS.pop(key, None)

    return callback


def _pair_up(src, dst, n) -> EdgePairs | None:
    e = src.shape[0]
    if e == 0 or e % 2 or np.any(src == dst):
        return None
    up = src < dst
    f_idx, b_idx = np.flatnonzero(up), np.flatnonzero(~up)
    if f_idx.shape[0] != b_idx.shape[0]:
        return None
    key = np.minimum(src, dst) * np.int64(n) + np.maximum(src, dst)
    fo = f_idx[np.argsort(key[f_idx], kind="stable")]
    bo = b_idx[np.argsort(key[b_idx], kind="stable")]
    if not np.array_equal(key[fo], key[bo]):
        return None
    row = np.empty(e, dtype=np.int64)
    row[fo] = np.arange(fo.shape[0])
    row[bo] = np.arange(bo.shape[0])
    for a in (row, fo, bo):
        a.flags.writeable = False
    return EdgePairs(row, fo, bo)


def _fused(backend: str):
    if backend == "numpy":
        return None
    be = _backends.get(backend)
    return be if hasattr(be, "filter_aggregate") else None


def _operands(graph, f, w, s):
    graph = check_graph(graph)
    f = node_array(f, "f", graph, ndim=2)
    w = edge_array(w, "w", graph, f.shape[1])
    s = edge_array(s, "s", graph, ndim=1)
    return graph, f, w, s


def filter_aggregate(graph, f, w, s, *, backend: str = "numpy") -> np.ndarray:
    """``out_i = sum_{e into i} (w_e s_e) * f[src_e]``, shape (N, C).

    Parameters
    ----------
    graph : Graph
    f : array_like, shape (N, C)
    w : array_like, shape (E, C)
        Filter per edge and channel.
    s : array_like, shape (E,)
        Scale per edge (e.g. a cutoff).
    """
    graph, f, w, s = _operands(graph, f, w, s)
    be = _fused(backend)
    if be is not None:
        return be.filter_aggregate(graph, f, w, s)
    return _backends.get(backend).weighted_aggregate(graph, f, w * s[:, None])


def filter_aggregate_vjp(graph, f, w, s, grad_out, *, backend: str = "numpy"):
    """VJP of :func:`filter_aggregate`: ``(grad_f (N, C), grad_w (E, C), grad_s (E,))``."""
    graph, f, w, s = _operands(graph, f, w, s)
    g = cotangent(grad_out, f.shape, "filter_aggregate_vjp")
    be = _fused(backend)
    if be is not None:
        return be.filter_aggregate_vjp(graph, f, w, s, g)
    be = _backends.get(backend)
    ws = w * s[:, None]
    grad_f = be.weighted_aggregate(graph.reverse(), g, ws)  # reverses out_i += ws_e f[src_e]
    p = be.edge_product(graph, g, f)  # reverses the product with f[src_e]
    return grad_f, p * s[:, None], np.sum(p * w, axis=1)


def edge_vectors_vjp(graph, grad_edge_vec, *, backend: str = "numpy") -> np.ndarray:
    """Adjoint of ``pos[src] - pos[dst]``, shape (N, D): senders get ``+g``, receivers ``-g``."""
    graph = check_graph(graph)
    be = _fused(backend)
    if be is None:
        return _edge_vectors_vjp_ref(graph, grad_edge_vec)
    g = edge_array(grad_edge_vec, "grad_edge_vec", graph, ndim=2)
    return be.edge_vectors_vjp(graph, g)
