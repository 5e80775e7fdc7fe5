r"""LieConv's and PointConv's forward on their padded ``(coordinates, values, mask)`` triple.

mfinzi/LieConv passes point clouds through its layers as a triple of padded arrays: coordinates,
values (B, n, C) and a boolean mask (B, n) that marks the real points (the rest is padding). Its
``LieConv`` layer takes as coordinates the lifted pairs ``abq_pairs`` (B, n, n, d), where
``abq_pairs[b, i, j]`` is the embedding of the pair (query i, neighbour j); its ``PointConv``
takes positions ``xyz`` (B, n, D) and uses :math:`x_i - x_j` (query minus neighbour). Both return
the triple again: the coordinates unchanged, new values that are exactly 0 at padded points, and
the mask.

:class:`LieConvTriple` is that forward on an explicit graph over the B n points (node
``b n + i``): for every edge j -> i it hands the pair coordinate to a
:class:`~geomp_ref.layers.lieconv.LieConv` with ``kernel_input="given"``

.. math::

    a_{ij} = \texttt{pairs}[b, i, j] \quad\text{or}\quad a_{ij} = x_{b,i} - x_{b,j},

and zeroes the rows of padded points. Which edges exist (LieConv's ball, PointConv's nearest
neighbours) is the graph's business: :mod:`geomp_ref.interop.lieconv` builds it from the peer
module's own distance.

Backward (reverse line order): the zeroing passes the cotangent of real rows only; the LieConv
block gives the parameter, value and per-edge coordinate gradients; the per-edge gradients are
added back at ``[b, i, j]`` (pairs) or at :math:`+x_i, -x_j` (positions), on top of the cotangent
of the coordinates the forward returns unchanged. The mask is not differentiable (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_float64,
    as_rng,
    check_cache,
    check_choice,
    check_graph,
    check_params,
    check_shape,
    grad_outs,
)
from ..graph import Graph
from ..layers.base import Block
from ..layers.lieconv import LieConv, LieConvCache
from ..ops import scatter

__all__ = ["LieConvTriple", "LieConvTripleCache"]


class LieConvTripleCache(NamedTuple):
    conv: LieConvCache  # the LieConv block's cache (its graph is the forward's graph)
    coords_shape: tuple  # shape of the coordinates input
    mask: np.ndarray  # (B, n) bool
    y: np.ndarray  # (B n, C_out) the LieConv output before padded rows are zeroed


def _mask(mask, graph: Graph) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(
            f"mask must be a boolean array (B, n) (True = real point); got dtype {arr.dtype}"
        )
    if arr.ndim != 2 or arr.shape[0] * arr.shape[1] != graph.num_nodes:
        raise ValueError(
            f"mask must have shape (B, n) with B * n = graph.num_nodes = {graph.num_nodes}; "
            f"got {arr.shape}"
        )
    return arr.copy()


@dataclass(frozen=True)
class LieConvTriple(Block):
    r"""LieConv's layer on its padded triple (see the module docstring).

    Parameters
    ----------
    conv : LieConv
        With ``kernel_input="given"`` (``aggr="lieconv_mean"`` for LieConv's ``mean=True``,
        ``"sum"`` otherwise). Its ``kernel.in_dim`` is the width of a pair coordinate.
    coords : {"pairs", "positions"}
        ``"pairs"``: the first input is LieConv's ``abq_pairs`` (B, n, n, d) and edge j -> i reads
        ``pairs[b, i, j]``. ``"positions"``: it is PointConv's ``xyz`` (B, n, d) and edge j -> i
        reads :math:`x_{b,i} - x_{b,j}`.

    ``forward(params, graph, coords, values, mask) -> ((coords, out, mask), cache)``: ``values``
    (B, n, C_in) float, ``mask`` (B, n) bool; ``graph`` has B n nodes (node ``b n + i``), edges
    only inside one b and never from a padded point. ``out`` (B, n, C_out) is 0 at padded points.
    ``backward -> (grads, (grad_coords, grad_values, None))``. Params: ``{"conv": LieConv
    params}``.
    """

    conv: LieConv
    coords: str = "pairs"

    def __post_init__(self):
        if not isinstance(self.conv, LieConv):
            raise TypeError(
                f"LieConvTriple.conv must be a LieConv spec; got {type(self.conv).__name__}"
            )
        if self.conv.kernel_input != "given":
            raise ValueError(
                "LieConvTriple.conv.kernel_input must be 'given' (the triple carries the pair "
                f"coordinates); got {self.conv.kernel_input!r}"
            )
        check_choice(self.coords, "LieConvTriple.coords", ("pairs", "positions"))

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def param_shapes(self) -> dict:
        return {"conv": self.conv.param_shapes()}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {"conv": self.conv.init(rng)}

    def _edges(self, graph: Graph, B: int, n: int, mask: np.ndarray):
        """``(rows, i, j)``: receiver node, and query / neighbour index inside its batch element."""
        dst, src = graph.dst, graph.src
        if n and np.any(dst // n != src // n):
            k = int(np.argmax(dst // n != src // n))
            raise ValueError(
                f"graph edge {k} ({src[k]} -> {dst[k]}) joins two batch elements (node b*n + i "
                f"with n = {n}); LieConv's neighbourhoods stay inside one point cloud"
            )
        flat = mask.reshape(-1)
        if np.any(~flat[src]):
            k = int(np.argmax(~flat[src]))
            raise ValueError(
                f"graph edge {k} starts at padded point {src[k]} (mask False); padded points "
                "are never neighbours"
            )
        return dst, dst % max(n, 1), src % max(n, 1)

    def _coords(self, coords, B: int, n: int) -> np.ndarray:
        d = self.conv.kernel.in_dim
        if self.coords == "pairs":
            arr = as_float64(coords, "pairs", ndim=4)
            check_shape(arr, (B, n, n, d), "pairs")
        else:
            arr = as_float64(coords, "xyz", ndim=3)
            check_shape(arr, (B, n, d), "xyz")
        return arr

    def forward(self, params, graph, coords, values, mask):
        check_params(params, self.param_shapes(), "LieConvTriple", exact=True)
        check_graph(graph)
        mask = _mask(mask, graph)
        B, n = mask.shape
        values = as_float64(values, "values", ndim=3)
        check_shape(values, (B, n, self.in_channels), "values")
        coords = self._coords(coords, B, n)
        rows, i, j = self._edges(graph, B, n, mask)
        b = rows // max(n, 1)
        a = coords[b, i, j] if self.coords == "pairs" else coords[b, i] - coords[b, j]
        f = values.reshape(B * n, self.in_channels)
        y, conv = self.conv.forward(params["conv"], graph, f, None, a)
        out = np.where(mask.reshape(-1, 1), y, 0.0).reshape(B, n, self.out_channels)
        cache = LieConvTripleCache(conv, coords.shape, mask, y)
        return (coords.copy(), out, mask.copy()), cache

    def backward(self, params, cache, grad_out_):
        check_cache(cache, LieConvTripleCache, "LieConvTriple")
        conv, coords_shape, mask, _y = cache
        B, n = mask.shape
        shapes = (coords_shape, (B, n, self.out_channels), (B, n))
        g_coords, g_out, _ = grad_outs(grad_out_, shapes, "LieConvTriple")
        # reverses out = where(mask, y, 0)
        g_y = np.where(mask.reshape(-1, 1), g_out.reshape(B * n, self.out_channels), 0.0)
        # reverses y = LieConv(f, a)
        grads, (g_f, _, g_a) = self.conv.backward(params["conv"], conv, g_y)
        # reverses a = pairs[b, i, j] / x_i - x_j (on top of the coordinates passed through)
        rows, _, j = self._edges(conv.graph, B, n, mask)
        d = g_a.shape[1]
        if self.coords == "pairs":
            # edge j -> i read row (b n + i) n + j of the flattened pairs
            grad_a = scatter.scatter_sum(g_a, rows * n + j, B * n * n).reshape(B, n, n, d)
        else:
            grad_a = scatter.scatter_sum(g_a, rows, B * n) - scatter.scatter_sum(
                g_a, conv.graph.src, B * n)
            grad_a = grad_a.reshape(B, n, d)
        grad_coords = g_coords + grad_a
        return {"conv": grads}, (grad_coords, g_f.reshape(B, n, self.in_channels), None)
