r"""Gather / scatter primitives and graph aggregations, each with its hand-derived VJP.

Equations (``src`` = sender j, ``dst`` = receiver i; README "Conventions"):

.. math::

    \mathrm{gather}(x, idx)_r = x_{idx_r}, \qquad
    \mathrm{scatter\_sum}(v, idx)_k = \sum_{r:\, idx_r = k} v_r, \qquad
    \mathrm{aggregate}(m)_i = \sum_{e:\, dst_e = i} m_e,

    \mathrm{weighted\_aggregate}(f, w)_i = \sum_{e:\, dst_e = i} w_e \odot f_{src_e}.

Gather and scatter-sum are adjoint linear maps
(:math:`\langle Gx, y\rangle = \langle x, G^T y\rangle`), so each one's VJP is the other;
aggregation's VJP is a gather at the receivers, and the fused weighted aggregation's VJP is the
same kernel on the reversed graph plus the edge-product kernel:

.. math::

    \bar f = \mathrm{weighted\_aggregate}(\mathrm{reverse}(G), \bar{out}, w), \qquad
    \bar w_e = \bar{out}_{dst_e} \odot f_{src_e}.

Proofs and SymPy checks: ``derivations/gather_scatter.py``.

Every function takes ``backend=`` (``"numpy"``, ``"numba"``, ``"cuda"``; see
:mod:`geomp_ref.backends`). Inputs are validated once here, then handed to the kernel.
"""

from __future__ import annotations

import numpy as np

from .. import backends as _backends
from .._validate import (
    as_float64,
    as_index,
    check_alloc,
    check_graph,
    check_int,
    check_nonnegative,
    cotangent,
)
from ..graph import Graph

__all__ = [
    "gather",
    "gather_vjp",
    "scatter_sum",
    "scatter_sum_vjp",
    "scatter_mean",
    "scatter_mean_vjp",
    "scatter_max",
    "scatter_max_vjp",
    "scatter_softmax",
    "scatter_softmax_vjp",
    "aggregate",
    "aggregate_vjp",
    "aggregate_mean",
    "aggregate_mean_vjp",
    "weighted_aggregate",
    "weighted_aggregate_vjp",
    "edge_product",
]


def _rows(x, name: str, rows: int, rows_name: str, finite: bool = True) -> np.ndarray:
    # Backends keep float32 as float32 for direct callers; everything else goes to float64.
    if isinstance(x, np.ndarray) and x.dtype == np.float32:
        arr = np.ascontiguousarray(x)
        if finite and arr.size and not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf; clean the data first")
    else:
        arr = as_float64(x, name, finite=finite)
    if arr.ndim == 0 or arr.shape[0] != rows:
        raise ValueError(f"{name} must have {rows_name} = {rows} rows; got shape {arr.shape}")
    return arr


def _segments(index, num_segments: int, tail=()) -> tuple[np.ndarray, int]:
    """Checked ``(index, num_segments)``; the (num_segments, *tail) output must fit in memory."""
    num_segments = check_int(num_segments, "num_segments")
    check_alloc((num_segments,) + tuple(tail), "num_segments")
    return as_index(index, "index", size=num_segments, size_name="num_segments"), num_segments


def _out_shape(rows: int, like) -> tuple:
    """``(rows, *like.shape[1:])``, or ``(rows, ...)`` when the forward input was not kept."""
    return (rows, ...) if like is None else (rows,) + tuple(np.shape(like)[1:])


# --- gather ------------------------------------------------------------------------------------


def gather(x, index) -> np.ndarray:
    """Rows of ``x`` picked by ``index``: ``out[r] = x[index[r]]``."""
    x = as_float64(x, "x", ndim=None)
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (rows to gather)")
    index = as_index(index, "index", size=x.shape[0], size_name="len(x)")
    return x[index]


def gather_vjp(x, index, grad_out, *, backend: str = "numpy"):
    """VJP of :func:`gather` w.r.t. ``x``: scatter-sum of ``grad_out`` onto ``index``.

    Returns ``(grad_x, None)``.
    """
    x = as_float64(x, "x")  # only its shape is used, but junk is refused all the same
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (rows to gather)")
    num = x.shape[0]
    index = as_index(index, "index", size=num, size_name="len(x)")
    g = cotangent(grad_out, (index.shape[0],) + tuple(np.shape(x)[1:]), "gather_vjp",
                  keep_float32=True)
    return scatter_sum(g, index, num, backend=backend), None


# --- scatter -----------------------------------------------------------------------------------


def scatter_sum(values, index, num_segments: int, *, backend: str = "numpy") -> np.ndarray:
    """Segment sum: ``out[k] = sum_{r: index[r] = k} values[r]``, empty segments give 0."""
    index, num_segments = _segments(index, num_segments, np.shape(values)[1:])
    values = _rows(values, "values", index.shape[0], "len(index)")
    return _backends.get(backend).scatter_sum(values, index, num_segments)


def scatter_sum_vjp(values, index, num_segments: int, grad_out, *, backend: str = "numpy"):
    """VJP of :func:`scatter_sum`: ``grad_values = grad_out[index]``; ``(grad_values, None)``.

    ``values`` is only used for its shape and may be ``None``.
    """
    index, num_segments = _segments(index, num_segments)
    if values is not None:
        values = _rows(values, "values", index.shape[0], "len(index)")
    g = cotangent(grad_out, _out_shape(num_segments, values), "scatter_sum_vjp", keep_float32=True)
    return g[index], None


def scatter_mean(values, index, num_segments: int, *, backend: str = "numpy") -> np.ndarray:
    """Segment mean (count clamped to >= 1, so empty segments give 0)."""
    index, num_segments = _segments(index, num_segments, np.shape(values)[1:])
    values = _rows(values, "values", index.shape[0], "len(index)")
    return _backends.get(backend).scatter_mean(values, index, num_segments)


def scatter_mean_vjp(values, index, num_segments: int, grad_out, *, backend: str = "numpy"):
    """VJP of :func:`scatter_mean`: ``grad_values[r] = grad_out[index[r]] / count[index[r]]``.

    ``values`` is only used for its shape and may be ``None``.
    """
    index, num_segments = _segments(index, num_segments)
    if values is not None:
        values = _rows(values, "values", index.shape[0], "len(index)")
    g = cotangent(grad_out, _out_shape(num_segments, values), "scatter_mean_vjp", keep_float32=True)
    cnt = np.maximum(np.bincount(index, minlength=num_segments), 1).astype(g.dtype)
    return (g / cnt.reshape((-1,) + (1,) * (g.ndim - 1)))[index], None


def scatter_max(values, index, num_segments: int, *, backend: str = "numpy"):
    """Segment max per column, and the row attaining it.

    Returns ``(out, argmax)``; empty segments give 0.0 and argmax -1. Ties pick the first row in
    row order, which defines the subgradient used by :func:`scatter_max_vjp`.
    """
    index, num_segments = _segments(index, num_segments, np.shape(values)[1:])
    values = _rows(values, "values", index.shape[0], "len(index)")
    return _backends.get(backend).scatter_max(values, index, num_segments)


def scatter_max_vjp(values, index, num_segments: int, grad_out, *, backend: str = "numpy"):
    """VJP of :func:`scatter_max`: the whole cotangent goes to the selected row (subgradient)."""
    values = as_float64(values, "values")
    _, arg = scatter_max(values, index, num_segments, backend=backend)
    g = cotangent(grad_out, arg.shape, "scatter_max_vjp")
    grad = np.zeros_like(values)
    if values.shape[0] == 0:
        return grad, None
    cols = np.indices(arg.shape[1:]).reshape(len(arg.shape[1:]), -1) if arg.ndim > 1 else None
    for k in range(num_segments):
        if arg.ndim == 1:
            if arg[k] >= 0:
                grad[arg[k]] += g[k]
        else:
            rows = arg[k].reshape(-1)
            keep = rows >= 0
            flat_g = g[k].reshape(-1)
            grad[(rows[keep],) + tuple(c[keep] for c in cols)] += flat_g[keep]
    return grad, None


def scatter_softmax(values, index, num_segments: int, *, eps: float = 0.0) -> np.ndarray:
    r"""Softmax within segments.

    :math:`a_r = e^{v_r - M_k} / (\sum_{s \in k} e^{v_s - M_k} + \epsilon)`.

    ``M_k`` is the segment max (a constant shift, so it carries no gradient); ``eps = 1e-16``
    reproduces PyG's ``softmax`` (used by its Set2Set).
    """
    eps = check_nonnegative(eps, "eps")
    index, num_segments = _segments(index, num_segments, np.shape(values)[1:])
    values = _rows(values, "values", index.shape[0], "len(index)")
    be = _backends.get("numpy")
    mx, _ = be.scatter_max(values, index, num_segments)
    ex = np.exp(values - mx[index])
    den = be.scatter_sum(ex, index, num_segments) + eps
    return ex / den[index]


def scatter_softmax_vjp(values, index, num_segments: int, grad_out, *, eps: float = 0.0):
    r"""VJP of :func:`scatter_softmax` (the true derivative of the function as computed).

    With :math:`e_r = e^{v_r - M_k}`, :math:`s_k = \sum_{r \in k} e_r + \epsilon`,
    :math:`a_r = e_r/s_k`: :math:`\bar v_r = a_r(\bar a_r - \sum_{q \in k} a_q \bar a_q)`, plus,
    when :math:`\epsilon \ne 0`, the term through the shift :math:`M_k = \max_k v` (which then
    changes the function): :math:`\partial a_r / \partial M_k = -a_r \epsilon / s_k`, credited to
    the row that attains the max. PyG detaches :math:`M_k`; with its :math:`\epsilon = 10^{-16}`
    the two differ by a relative :math:`\sim 10^{-16}`.
    """
    eps = check_nonnegative(eps, "eps")
    index, num_segments = _segments(index, num_segments, np.shape(values)[1:])
    values = _rows(values, "values", index.shape[0], "len(index)")
    g = cotangent(grad_out, values.shape, "scatter_softmax_vjp")
    be = _backends.get("numpy")
    mx, arg = be.scatter_max(values, index, num_segments)
    ex = np.exp(values - mx[index])
    s = be.scatter_sum(ex, index, num_segments) + eps
    a = ex / s[index]
    dot = be.scatter_sum(a * g, index, num_segments)
    grad = a * (g - dot[index])
    if eps != 0.0 and values.shape[0]:
        grad_m = -eps / s * dot  # reverses the shift v - M_k
        nonempty = arg >= 0
        np.add.at(grad, arg[nonempty], grad_m[nonempty])
    return grad, None


# --- graph aggregations ------------------------------------------------------------------------


def aggregate(graph: Graph, m, *, backend: str = "numpy") -> np.ndarray:
    """Sum of messages at receivers, ``out_i = sum_{e: dst_e = i} m_e``, shape (N, ...)."""
    graph = check_graph(graph)
    m = _rows(m, "m", graph.num_edges, "num_edges")
    return _backends.get(backend).aggregate(graph, m)


def aggregate_vjp(graph: Graph, m, grad_out, *, backend: str = "numpy") -> np.ndarray:
    """VJP of :func:`aggregate` w.r.t. ``m``: ``grad_m[e] = grad_out[dst_e]``.

    ``m`` is only used for its shape and may be ``None``.
    """
    graph = check_graph(graph)
    if m is not None:
        m = _rows(m, "m", graph.num_edges, "num_edges")
    g = cotangent(grad_out, _out_shape(graph.num_nodes, m), "aggregate_vjp", keep_float32=True)
    return g[graph.dst]


def aggregate_mean(graph: Graph, m, *, backend: str = "numpy") -> np.ndarray:
    """Mean of incoming messages (isolated nodes give 0)."""
    graph = check_graph(graph)
    s = aggregate(graph, m, backend=backend)
    deg = np.maximum(graph.in_degree(), 1).astype(s.dtype)
    return s / deg.reshape((-1,) + (1,) * (s.ndim - 1))


def aggregate_mean_vjp(graph: Graph, m, grad_out, *, backend: str = "numpy") -> np.ndarray:
    """VJP of :func:`aggregate_mean`: ``grad_m[e] = grad_out[dst_e] / deg(dst_e)``.

    ``m`` is only used for its shape and may be ``None``.
    """
    graph = check_graph(graph)
    if m is not None:
        m = _rows(m, "m", graph.num_edges, "num_edges")
    g = cotangent(grad_out, _out_shape(graph.num_nodes, m), "aggregate_mean_vjp",
                  keep_float32=True)
    deg = np.maximum(graph.in_degree(), 1).astype(g.dtype)
    return (g / deg.reshape((-1,) + (1,) * (g.ndim - 1)))[graph.dst]


def weighted_aggregate(graph: Graph, f, w, *, backend: str = "numpy") -> np.ndarray:
    """Fused ``out_i = sum_{e into i} w_e * f[src_e]`` without an (E, C) temporary.

    ``f`` (N, C); ``w`` (E,) (one weight per edge) or (E, C) (a filter per edge and channel).
    """
    graph = check_graph(graph)
    f = _rows(f, "f", graph.num_nodes, "num_nodes")
    w = _rows(w, "w", graph.num_edges, "num_edges")
    if f.ndim != 2:
        raise ValueError(f"f must have shape (N, C); got {f.shape}")
    if w.ndim == 2 and w.shape[1] != f.shape[1]:
        raise ValueError(
            f"w must have shape (E,) or (E, C) = ({graph.num_edges}, {f.shape[1]}); got {w.shape}")
    if w.ndim > 2:
        raise ValueError(f"w must have shape (E,) or (E, C); got {w.shape}")
    if w.dtype != f.dtype:
        w = w.astype(np.result_type(w, f))
        f = f.astype(w.dtype)
    return _backends.get(backend).weighted_aggregate(graph, f, w)


def weighted_aggregate_vjp(graph: Graph, f, w, grad_out, *, backend: str = "numpy"):
    """VJP of :func:`weighted_aggregate`: returns ``(grad_f, grad_w)``.

    ``grad_f`` is the same fused kernel on the reversed graph; ``grad_w`` the edge product
    (summed over channels when ``w`` has one weight per edge).
    """
    graph = check_graph(graph)
    f = _rows(f, "f", graph.num_nodes, "num_nodes")
    w = _rows(w, "w", graph.num_edges, "num_edges")
    if f.ndim != 2 or w.ndim > 2 or (w.ndim == 2 and w.shape[1] != f.shape[1]):
        raise ValueError(
            f"f must have shape (N, C) and w (E,) or (E, C); got {f.shape} and {w.shape}")
    g = cotangent(grad_out, f.shape, "weighted_aggregate_vjp", keep_float32=True)
    dtype = np.result_type(f, w, g)
    f, w, g = f.astype(dtype, copy=False), w.astype(dtype, copy=False), g.astype(dtype, copy=False)
    be = _backends.get(backend)
    grad_f = be.weighted_aggregate(graph.reverse(), g, w)  # reverses: out_i += w_e f[src_e]
    p = be.edge_product(graph, g, f)
    grad_w = p.sum(axis=1) if w.ndim == 1 else p
    return grad_f, grad_w


def edge_product(graph: Graph, g, f, *, backend: str = "numpy") -> np.ndarray:
    """``p_e = g[dst_e] * f[src_e]``, shape (E, C): the weight-gradient kernel."""
    graph = check_graph(graph)
    g = _rows(g, "g", graph.num_nodes, "num_nodes")
    f = _rows(f, "f", graph.num_nodes, "num_nodes")
    if g.shape != f.shape or g.ndim != 2:
        raise ValueError(f"g and f must have the same shape (N, C); got {g.shape} and {f.shape}")
    dtype = np.result_type(g, f)
    return _backends.get(backend).edge_product(graph, g.astype(dtype, copy=False),
                                               f.astype(dtype, copy=False))
