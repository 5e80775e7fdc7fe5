r"""SchNet's continuous-filter convolution and interaction block (PyG's ``CFConv`` and
``InteractionBlock``).

Edge geometry (edge_index row 0 = sender j, row 1 = receiver i): :math:`d_{ij} = \lVert x_j - x_i
\rVert` from :func:`geomp_ref.ops.geometry.edge_length` (scaled, so positions of any finite size
give finite lengths), Gaussian expansion :math:`e_k(d)`, cosine cutoff
:math:`C(d) = \tfrac12(\cos(\pi d / r_c) + 1)` for :math:`d < r_c` (0 beyond) and shifted softplus
ssp; the constants are described in :mod:`geomp_ref.layers.schnet_constants`.

**CFConv**:

.. math::

    W_{ij} = \big(\mathrm{ssp}(e(d_{ij}) W_0 + b_0) W_1 + b_1\big)\, C(d_{ij}), \qquad
    y = f\, W_{in}, \qquad
    \mathrm{agg}_i = \sum_{j} y_j \odot W_{ij}, \qquad
    f'_i = \mathrm{agg}_i W_{out} + b_{out}.

The sum is the fused kernel :func:`geomp_ref.ops.scatter.weighted_aggregate` on the chosen backend
(no (E, F) message array). **SchNetInteraction**: :math:`v = \mathrm{ssp}(\mathrm{CFConv}(h)) W + b`
(the residual :math:`h \leftarrow h + v` lives in :class:`geomp_ref.layers.schnet.SchNet`, as in
PyG).

Backward (reverse order; proof ``derivations/schnet.py``): with :math:`\bar W_{ij}` the edge
product :math:`\bar{\mathrm{agg}}_i \odot y_j`,
:math:`\bar C_{ij} = \langle \bar W_{ij}, \tilde W_{ij}\rangle`,
:math:`\bar d_{ij} = \langle \bar e_{ij}, e'(d_{ij})\rangle + \bar C_{ij} C'(d_{ij})` and
:math:`\bar x_j \mathrel{+}= \bar d_{ij} (x_j - x_i)/d_{ij}`, :math:`\bar x_i \mathrel{-}= \ldots`.
Edges at or beyond the cutoff have :math:`C = C' = 0`, so their filter gets no cotangent; their
Gaussian term is skipped rather than multiplied by zero, so huge distances (say 1e200, where
:math:`e'` would be ``0 * inf``) give exact zeros instead of NaN.

Reference: K. T. Schütt et al., "SchNet: A continuous-filter convolutional neural network for
modeling quantum interactions", NeurIPS 2017, eqs. (1)-(5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_rng, check_cache, check_graph, check_int, check_positive, node_array
from .._validate import grad_out as _grad_out
from .._validate import positions as _positions
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import activations, dense, geometry, radial, scatter
from .base import Block, check_backend, check_params, linear_init
from .schnet_constants import SchNetConstants, resolve_constants

__all__ = ["CFConv", "CFConvCache", "SchNetInteraction", "SchNetInteractionCache"]


class CFConvCache(NamedTuple):
    graph: Graph
    edge_vec: np.ndarray  # (E, 3) x_j - x_i
    d: np.ndarray  # (E,) |x_j - x_i|
    e: np.ndarray  # (E, G) Gaussian expansion
    z1: np.ndarray  # (E, F) first filter layer, pre-activation
    s1: np.ndarray  # (E, F) ssp(z1)
    w_raw: np.ndarray  # (E, F) filter before the cutoff
    c: np.ndarray  # (E,) cosine cutoff
    w_ij: np.ndarray  # (E, F) filter
    f: np.ndarray  # (N, H) input features
    y: np.ndarray  # (N, F) f W_in
    agg: np.ndarray  # (N, F)


@dataclass(frozen=True)
class CFConv(Block):
    r"""Continuous-filter convolution, :math:`f'_i = \mathrm{Lin}_{out}(\sum_j W_{ij} \odot y_j)`.

    Parameters
    ----------
    in_channels, out_channels : int
        H (input width) and output width.
    num_filters : int
        F, the filter width.
    num_rbf : int
        G >= 2, number of Gaussians (PyG default 50).
    cutoff : float
        :math:`r_c > 0` (PyG default 10.0); edges with :math:`d \ge r_c` contribute 0.
    constants : {"exact", "pyg"} or SchNetConstants
        See :mod:`geomp_ref.layers.schnet_constants`.
    backend : str
        Backend of the fused aggregation (``"numpy"``, ``"numba"``, ``"cuda"``).

    Params: ``{"W_in": (H, F), "filter": {"W0": (G, F), "b0": (F,), "W1": (F, F), "b1": (F,)},
    "W_out": (F, H_out), "b_out": (H_out,)}`` (PyG: ``lin1``, ``nn[0]``, ``nn[2]``, ``lin2``, with
    weights transposed).

    ``forward(params, graph, f, pos) -> (f', CFConvCache)``; ``backward`` returns
    ``(grad_params, (grad_f, grad_pos))``.

    Raises
    ------
    ValueError
        On coincident points joined by an edge (the distance has no derivative there), wrong shapes,
        non-finite input.

    Notes
    -----
    E(3)-invariant, permutation-equivariant.
    """

    in_channels: int
    out_channels: int
    num_filters: int
    num_rbf: int = 50
    cutoff: float = 10.0
    constants: object = "exact"
    backend: str = "numpy"

    def __post_init__(self):
        for name in ("in_channels", "out_channels", "num_filters"):
            check_int(getattr(self, name), f"CFConv.{name}", minimum=1)
        check_int(self.num_rbf, "CFConv.num_rbf", minimum=2)
        object.__setattr__(self, "cutoff", check_positive(self.cutoff, "CFConv.cutoff"))
        k = resolve_constants(self.constants, self.cutoff, self.num_rbf, "CFConv")
        check_backend(self.backend, "CFConv")
        object.__setattr__(self, "consts", k)

    def param_shapes(self) -> dict:
        H, F, G, O = self.in_channels, self.num_filters, self.num_rbf, self.out_channels
        return {
            "W_in": (H, F),
            "filter": {"W0": (G, F), "b0": (F,), "W1": (F, F), "b1": (F,)},
            "W_out": (F, O),
            "b_out": (O,),
        }

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        H, F, G, O = self.in_channels, self.num_filters, self.num_rbf, self.out_channels
        W0, b0 = linear_init(rng, G, F, name="CFConv.num_rbf x num_filters")
        W1, b1 = linear_init(rng, F, F, name="CFConv.num_filters")
        W_in, _ = linear_init(rng, H, F, bias=False, name="CFConv.in_channels x num_filters")
        W_out, b_out = linear_init(rng, F, O, name="CFConv.num_filters x out_channels")
        return {
            "W_in": W_in,
            "filter": {"W0": W0, "b0": b0, "W1": W1, "b1": b1},
            "W_out": W_out,
            "b_out": b_out,
        }

    def forward(self, params, graph, f, pos):
        check_params(params, self.param_shapes(), "CFConv", exact=True)
        check_graph(graph)
        f = node_array(f, "f", graph, self.in_channels)
        pos = _positions(pos, graph, 3)
        k: SchNetConstants = self.consts
        ssp = activations.shifted_softplus
        p = params["filter"]
        edge_vec = edge_vectors(graph, pos)  # x_j - x_i
        d = geometry.edge_length(edge_vec, name="pos")  # raises on coincident endpoints
        with np.errstate(over="ignore"):  # (d - mu)^2 = inf for huge d: exp(-inf) = 0, exact
            e = radial.gaussian_rbf(d, np.asarray(k.offsets), k.gamma)
        z1 = dense.linear(e, p["W0"], p["b0"])
        s1 = ssp(z1, k.shift, k.softplus_threshold)
        w_raw = dense.linear(s1, p["W1"], p["b1"])
        c = radial.cosine_cutoff(d, self.cutoff)
        w_ij = w_raw * c[:, None]
        y = dense.linear(f, params["W_in"])
        agg = scatter.weighted_aggregate(graph, y, w_ij, backend=self.backend)
        out = dense.linear(agg, params["W_out"], params["b_out"])
        return out, CFConvCache(graph, edge_vec, d, e, z1, s1, w_raw, c, w_ij, f, y, agg)

    def backward(self, params, cache: CFConvCache, grad_out):
        check_cache(cache, CFConvCache, "CFConv")
        graph = cache.graph
        g = _grad_out(grad_out, (graph.num_nodes, self.out_channels), "CFConv")
        k: SchNetConstants = self.consts
        p = params["filter"]
        # out = agg W_out + b_out
        g_agg, gW_out, gb_out = dense.linear_vjp(cache.agg, params["W_out"], params["b_out"], g)
        # agg = weighted_aggregate(y, w_ij)
        g_y, g_w = scatter.weighted_aggregate_vjp(
            graph, cache.y, cache.w_ij, g_agg, backend=self.backend
        )
        # y = f W_in
        g_f, gW_in, _ = dense.linear_vjp(cache.f, params["W_in"], None, g_y)
        # w_ij = w_raw * c
        g_c = np.sum(g_w * cache.w_raw, axis=1)
        g_raw = g_w * cache.c[:, None]
        # c = C(d)
        g_d = radial.cosine_cutoff_vjp(cache.d, self.cutoff, g_c)
        # w_raw = s1 W1 + b1 ; s1 = ssp(z1) ; z1 = e W0 + b0
        g_s1, gW1, gb1 = dense.linear_vjp(cache.s1, p["W1"], p["b1"], g_raw)
        g_z1 = activations.shifted_softplus_vjp(cache.z1, g_s1, k.shift, k.softplus_threshold)
        g_e, gW0, gb0 = dense.linear_vjp(cache.e, p["W0"], p["b0"], g_z1)
        # e = gaussian_rbf(d): only edges inside the cutoff carry a cotangent (C = 0 beyond)
        inside = cache.d < self.cutoff
        g_d[inside] += radial.gaussian_rbf_vjp(
            cache.d[inside], np.asarray(k.offsets), k.gamma, g_e[inside]
        )
        # d = |edge_vec| ; edge_vec = x_j - x_i
        g_vec = geometry.edge_length_vjp(cache.edge_vec, g_d, name="pos")
        grads = {
            "W_in": gW_in,
            "filter": {"W0": gW0, "b0": gb0, "W1": gW1, "b1": gb1},
            "W_out": gW_out,
            "b_out": gb_out,
        }
        return grads, (g_f, edge_vectors_vjp(graph, g_vec))


# --- interaction block ------------------------------------------------------------------------


class SchNetInteractionCache(NamedTuple):
    conv: CFConvCache
    u: np.ndarray  # (N, H) CFConv output
    s: np.ndarray  # (N, H) ssp(u)


@dataclass(frozen=True)
class SchNetInteraction(Block):
    r"""PyG's ``InteractionBlock``: :math:`v = \mathrm{ssp}(\mathrm{CFConv}(h))\, W + b`.

    Parameters
    ----------
    hidden : int
        H (CFConv maps H -> H).
    num_filters, num_rbf, cutoff, constants, backend
        As :class:`CFConv`.

    Params: ``{"conv": CFConv params, "W": (H, H), "b": (H,)}`` (PyG: ``conv``, ``lin``).
    ``forward(params, graph, h, pos) -> (v, cache)``; ``backward -> (grads, (grad_h, grad_pos))``.
    The residual is in :class:`geomp_ref.layers.schnet.SchNet`.
    """

    hidden: int
    num_filters: int
    num_rbf: int = 50
    cutoff: float = 10.0
    constants: object = "exact"
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.hidden, "SchNetInteraction.hidden", minimum=1)
        check_int(self.num_filters, "SchNetInteraction.num_filters", minimum=1)
        conv = CFConv(self.hidden, self.hidden, self.num_filters, self.num_rbf, self.cutoff,
                      self.constants, self.backend)
        object.__setattr__(self, "conv", conv)

    def param_shapes(self) -> dict:
        H = self.hidden
        return {"conv": self.conv.param_shapes(), "W": (H, H), "b": (H,)}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        W, b = linear_init(rng, self.hidden, self.hidden, name="SchNetInteraction.hidden")
        return {"conv": self.conv.init(rng), "W": W, "b": b}

    def forward(self, params, graph, h, pos):
        check_params(params, self.param_shapes(), "SchNetInteraction", exact=True)
        check_graph(graph)
        h = node_array(h, "h", graph, self.hidden)
        pos = _positions(pos, graph, 3)
        k = self.conv.consts
        u, conv_cache = self.conv.forward(params["conv"], graph, h, pos)
        s = activations.shifted_softplus(u, k.shift, k.softplus_threshold)
        v = dense.linear(s, params["W"], params["b"])
        return v, SchNetInteractionCache(conv_cache, u, s)

    def backward(self, params, cache: SchNetInteractionCache, grad_out):
        check_cache(cache, SchNetInteractionCache, "SchNetInteraction")
        g = _grad_out(grad_out, cache.u.shape, "SchNetInteraction")
        k = self.conv.consts
        # v = s W + b
        g_s, gW, gb = dense.linear_vjp(cache.s, params["W"], params["b"], g)
        # s = ssp(u)
        g_u = activations.shifted_softplus_vjp(cache.u, g_s, k.shift, k.softplus_threshold)
        # u = CFConv(h, pos)
        g_conv, (g_h, g_pos) = self.conv.backward(params["conv"], cache.conv, g_u)
        return {"conv": g_conv, "W": gW, "b": gb}, (g_h, g_pos)
