r"""The Radial Field layer with velocity (Köhler, Klein, Noé 2019, as in vgsatorras/egnn
``models/gcl.py`` ``GCL_rf_vel``; the "Radial Field" row of the N-body table).

For every edge j -> i (receiver i = ``dst``, sender j = ``src``):

.. math::

    \Delta_{ij} = x_i - x_j, \qquad d_{ij} = \lVert \Delta_{ij} \rVert, \qquad
    m_{ij} = \Delta_{ij}\, \tanh\big(\phi([d_{ij}, a_{ij}])\big),

    x'_i = x_i + C\, \mathrm{mean}_{j \to i}\, m_{ij} + v_i\, \phi_v(s_i),

with :math:`\phi` = Lin(1 + A -> H) -> act -> Lin(H -> 1, no bias), :math:`\phi_v` = Lin(1 -> H)
-> act -> Lin(H -> 1), ``s`` the given per-node speed input (the N-body model passes
:math:`\lVert v_i \rVert`), and the mean over the incoming edges (0 for isolated nodes). The
update is E(n)-equivariant: :math:`x` a position, :math:`v` a vector, :math:`s` and :math:`a`
invariant.

The distance comes from :func:`geomp_ref.ops.geometry.edge_length` (scaled, so huge coordinates
give finite lengths). It has no derivative where two joined points coincide, so the layer raises
there (torch's ``sqrt`` gives a NaN gradient).

Torch names, weights transposed to (in, out): ``phi`` = ``phi.0`` (``W0, b0``) / ``phi.2``
(``W1``, no bias, xavier-uniform with gain 0.001 at init), ``phi_v`` = ``coord_mlp_vel.0`` /
``coord_mlp_vel.2``. The torch forward is ``(x, vel_norm, vel, edge_index, edge_attr) -> (x',
edge_attr)``; this block's inputs are ``(x, v_norm, v, edge_attr)`` and it returns ``x'``.

Backward: reverse order of the forward lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_rng,
    check_cache,
    check_choice,
    check_graph,
    check_int,
    check_positive,
    edge_array,
    node_array,
    positions,
)
from .._validate import grad_out as _grad_out
from ..graph import Graph, edge_vectors
from ..ops import activations, edge_filters, geometry, scatter
from .base import Block, check_backend, check_optional, check_params, check_real
from .mlp import MLP, MLPCache

__all__ = ["RadialFieldLayer", "RadialFieldLayerCache"]


class RadialFieldLayerCache(NamedTuple):
    graph: Graph
    diff: np.ndarray  # (E, D) x_i - x_j
    phi: MLPCache
    e: np.ndarray  # (E, 1) tanh(phi([d, a]))
    phi_v: MLPCache
    pv: np.ndarray  # (N, 1) phi_v(s)
    v: np.ndarray  # (N, D)


@dataclass(frozen=True)
class RadialFieldLayer(Block):
    r"""``forward(params, graph, x, v_norm, v, edge_attr=None) -> (x', cache)``.

    Parameters
    ----------
    hidden : int
        H (torch ``nf``, default 64).
    edge_features : int
        A, width of ``edge_attr`` (0: ``edge_attr=None``; the N-body model uses 2).
    activation : str
        torch's default is LeakyReLU(0.2), which the oracle does not have; ``RF_vel`` passes SiLU.
    coords_weight : float
        C.
    coord_init_gain : float
        xavier-uniform gain of :math:`\phi`'s last layer in :meth:`init` (torch: 0.001).
    backend : str

    Params: ``{"phi": MLP(1+A, H, 1; last without bias), "phi_v": MLP(1, H, 1)}``.
    ``backward(params, cache, grad_x') -> (grads, (grad_x, grad_v_norm, grad_v,
    grad_edge_attr))``.
    """

    hidden: int = 64
    edge_features: int = 0
    activation: str = "silu"
    coords_weight: float = 1.0
    coord_init_gain: float = 0.001
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.hidden, "RadialFieldLayer.hidden", minimum=1)
        check_int(self.edge_features, "RadialFieldLayer.edge_features", minimum=0)
        check_choice(self.activation, "RadialFieldLayer.activation", activations.NAMES)
        object.__setattr__(self, "coords_weight",
                           check_real(self.coords_weight, "RadialFieldLayer.coords_weight"))
        check_positive(self.coord_init_gain, "RadialFieldLayer.coord_init_gain")
        check_backend(self.backend, "RadialFieldLayer")
        H, act = self.hidden, self.activation
        object.__setattr__(self, "phi", MLP((1 + self.edge_features, H, 1), act,
                                            bias=(True, False), backend=self.backend))
        object.__setattr__(self, "phi_v", MLP((1, H, 1), act, backend=self.backend))

    def param_shapes(self) -> dict:
        return {"phi": self.phi.param_shapes(), "phi_v": self.phi_v.param_shapes()}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        H = self.hidden
        p = {"phi": self.phi.init(rng), "phi_v": self.phi_v.init(rng)}
        bound = self.coord_init_gain * np.sqrt(6.0 / (H + 1))  # xavier-uniform, fan (H, 1)
        p["phi"]["W1"] = rng.uniform(-bound, bound, (H, 1))
        return p

    def forward(self, params, graph, x, v_norm, v, edge_attr=None):
        check_params(params, self.param_shapes(), "RadialFieldLayer", exact=True)
        check_graph(graph)
        x = positions(x, graph, name="x")
        v_norm = node_array(v_norm, "v_norm", graph, 1)
        v = node_array(v, "v", graph, x.shape[1])
        check_optional(edge_attr, "edge_attr", self.edge_features > 0, "edge_features > 0",
                       "RadialFieldLayer")
        diff = -edge_vectors(graph, x)  # x_i - x_j
        d = geometry.edge_length(diff, name="x")  # raises on coincident endpoints
        parts = [d[:, None]]
        if edge_attr is not None:
            parts.append(edge_array(edge_attr, "edge_attr", graph, self.edge_features))
        z, c_phi = self.phi.forward(params["phi"], np.concatenate(parts, axis=1))
        e = np.tanh(z)
        m = diff * e
        agg = scatter.aggregate_mean(graph, m, backend=self.backend)
        pv, c_v = self.phi_v.forward(params["phi_v"], v_norm)
        x_new = x + self.coords_weight * agg + v * pv
        return x_new, RadialFieldLayerCache(graph, diff, c_phi, e, c_v, pv, v)

    def backward(self, params, cache: RadialFieldLayerCache, grad_out):
        check_cache(cache, RadialFieldLayerCache, "RadialFieldLayer")
        graph = cache.graph
        g = _grad_out(grad_out, cache.v.shape, "RadialFieldLayer")
        # x_new = x + C agg + v * pv
        g_x = g.copy()
        g_v = g * cache.pv
        g_pv = np.sum(g * cache.v, axis=1, keepdims=True)
        g_phi_v, (g_vn,) = self.phi_v.backward(params["phi_v"], cache.phi_v, g_pv)
        # agg = mean_j m_ij
        g_m = scatter.aggregate_mean_vjp(graph, None, self.coords_weight * g)
        # m = diff * e ; e = tanh(z)
        g_diff = g_m * cache.e
        g_z = np.sum(g_m * cache.diff, axis=1, keepdims=True) * (1.0 - cache.e * cache.e)
        # z = phi([d, a])
        g_phi, (g_in,) = self.phi.backward(params["phi"], cache.phi, g_z)
        g_a = g_in[:, 1:] if self.edge_features else None
        # d = |diff|
        g_diff += geometry.edge_length_vjp(cache.diff, g_in[:, 0], name="x")
        # diff = -edge_vec
        g_x += edge_filters.edge_vectors_vjp(graph, -g_diff, backend=self.backend)
        return {"phi": g_phi, "phi_v": g_phi_v}, (g_x, g_vn, g_v, g_a)
