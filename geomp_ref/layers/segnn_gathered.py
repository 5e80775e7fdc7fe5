r"""``O3TensorProduct.forward_gathered`` / ``backward_gathered``: SEGNN's products of gathered
node rows (``self`` is the :class:`~geomp_ref.layers.segnn_blocks.O3TensorProduct`).

The edge rows ``x1 = [h[dst], h[src], s]`` are described by segments instead of being formed;
non-numpy backends evaluate the product weights first (:mod:`geomp_ref.o3._tp_split`): the weight
contraction on node rows, the coupling with ``x2`` per edge, and in the backward the edge
cotangents summed into the nodes before the node-sized products. The numpy backend, and layouts
that do not split, run the literal product on the concatenated rows.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._validate import as_float64, check_cache, check_graph, check_params, edge_array, node_array
from .._validate import grad_out as _grad_out
from ..o3 import _tp_split
from ..ops import scatter
from .base import check_backend

__all__ = ["O3GatheredCache", "backward", "forward"]


class O3GatheredCache(NamedTuple):
    """Cache of :meth:`~geomp_ref.layers.segnn_blocks.O3TensorProduct.forward_gathered`:
    ``split`` the weights-first cache, or None when the product ran on the concatenated rows
    (then ``tp`` holds its cache); ``layout`` the segment kinds and widths; ``rows`` the number
    of edges; ``backend``."""

    graph: Any
    split: Any
    tp: Any
    layout: tuple
    rows: int
    backend: str


def _inputs(self, graph, segments, x2):
    """Checked ``(graph, arrays, layout, x2)``; ``layout`` the segment kinds and widths."""
    graph = check_graph(graph)
    owner = type(self).__name__
    if not isinstance(segments, (list, tuple)) or not segments:
        raise TypeError(f"segments must be a non-empty list of (kind, array) pairs, kind in "
                        f"{_tp_split.KINDS}; got {type(segments).__name__}")
    arrays, layout = [], []
    for n, item in enumerate(segments):
        kind, arr = item
        if kind not in _tp_split.KINDS:
            raise ValueError(f"segments[{n}] kind must be one of {_tp_split.KINDS}; "
                             f"got {kind!r}")
        arr = (edge_array if kind == "edge" else node_array)(arr, f"segments[{n}]", graph,
                                                               ndim=2)
        arrays.append(arr)
        layout.append((kind, arr.shape[1]))
    if sum(w for _, w in layout) != self.irreps_in1.dim:
        raise ValueError(f"segments must have {self.irreps_in1.dim} columns in all "
                         f"({owner}.irreps_in1={self.irreps_in1}); got "
                         f"{[w for _, w in layout]}")
    if self.irreps_in2 is None:
        raise ValueError(f"{owner}.forward_gathered needs irreps_in2 (the edge attribute)")
    x2 = edge_array(x2, "x2", graph, self.irreps_in2.dim)
    return graph, arrays, tuple(layout), x2


def forward(self, params, graph, segments, x2, backend="numpy"):
    """``(z, cache)`` of :meth:`O3TensorProduct.forward_gathered` (``self``: the product)."""
    owner = type(self).__name__
    check_params(params, self.param_shapes(), owner, exact=True)
    check_backend(backend, owner)
    graph, arrays, layout, x2 = _inputs(self, graph, segments, x2)
    pl = None
    if backend != "numpy":
        if layout not in self._plans:
            self._plans[layout] = _tp_split.plan(self.tp, layout)
        pl = self._plans[layout]
    if pl is None:
        x1 = np.concatenate([a[graph.dst] if k == "dst" else a[graph.src] if k == "src"
                             else a for (k, _), a in zip(layout, arrays)], axis=1)
        z, c = self.forward(params, x1, x2)
        return z, O3GatheredCache(graph, None, c, layout, graph.num_edges, backend)
    w = as_float64(params["weight"], "params['weight']")
    out, c = _tp_split.forward(pl, w, graph, arrays, x2, backend)
    out /= self._sqrt_k
    if self.num_bias:
        out[:, self._bias_index()] += as_float64(params["bias"], "params['bias']")
    return out, O3GatheredCache(graph, c, None, layout, graph.num_edges, backend)


def backward(self, params, cache: O3GatheredCache, grad_out):
    """``(grads, (grad per segment, grad_x2))`` of :meth:`O3TensorProduct.backward_gathered`."""
    owner = type(self).__name__
    check_cache(cache, O3GatheredCache, owner)
    if cache.split is None:  # reverses the concatenation of the gathered segments
        grads, (gx1, gx2) = self.backward(params, cache.tp, grad_out)
        gsegs, start = [], 0
        for kind, width in cache.layout:
            part = gx1[:, start:start + width]
            start += width
            if kind != "edge":
                index = cache.graph.dst if kind == "dst" else cache.graph.src
                part = scatter.scatter_sum(part, index, cache.graph.num_nodes,
                                           backend=cache.backend)
            gsegs.append(part)
        return grads, (gsegs, gx2)
    g = _grad_out(grad_out, (cache.rows, self.irreps_out.dim), owner)
    grads = {}
    if self.num_bias:  # reverses `z[:, cols] += b`
        grads["bias"] = g[:, self._bias_index()].sum(axis=0)
    w = as_float64(params["weight"], "params['weight']")
    gw, gsegs, gx2 = _tp_split.backward(self._plans[cache.layout], w, cache.split,
                                        np.ascontiguousarray(g / self._sqrt_k),
                                        cache.backend)
    grads["weight"] = gw
    return grads, (gsegs, gx2)
