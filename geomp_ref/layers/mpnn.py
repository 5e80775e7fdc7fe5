r"""Gilmer's MPNN and the geometric MPNNs of the lecture.

**MPNN** (Gilmer et al. 2017, "Neural Message Passing for Quantum Chemistry", eqs. 1-3 with the
edge network of §5.1, GRU update and set2set readout):

.. math::

    h^0_i = \rho(f_i W_{in} + b_{in}),\qquad
    e_{ij} = [a_{ij},\ \lVert x_j - x_i \rVert],

    c^t_i = \mathrm{NNConv}(h^{t-1}, e)_i\ \ (\text{then ReLU in PyG mode}),\qquad
    h^t_i = \mathrm{GRU}(c^t_i, h^{t-1}_i),\ t = 1..T \text{ (weights tied)},

    y_b = W_2^T \mathrm{ReLU}(W_1^T\, \mathrm{Set2Set}(h^T)_b + b_1) + b_2 .

``mode="paper"``: sum aggregation, no activation after the convolution, softmax without epsilon.
``mode="pyg"``: PyG's ``examples/qm9_nn_conv.py`` — mean aggregation, ReLU after NNConv, and
PyG's softmax epsilon 1e-16 in Set2Set. Everything is E(3)-invariant because positions enter
only through distances.

**DistanceMPNN** (invariant): :math:`m_{ij} = \phi_m(f_i, f_j, \lVert x_j - x_i\rVert^2)`,
:math:`f'_i = \phi_f(f_i, \sum_j m_{ij})`.

**RelativePositionMPNN**: :math:`m_{ij} = \phi_m(f_i, f_j, x_j - x_i)` — translation-invariant
but *not* rotation-equivariant: the lecture's counter-example (its tests assert that rotation
equivariance fails).

Conventions: edge_index row 0 = sender j, row 1 = receiver i; ``x_j - x_i = pos[src] - pos[dst]``.
Derivations: ``derivations/mpnn.py`` (GRU, LSTM, Set2Set, NNConv).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_rng,
    check_bool,
    check_cache,
    check_choice,
    check_graph,
    check_int,
    edge_array,
    node_array,
    positions,
)
from .._validate import grad_out as _grad_out
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import activations, dense, geometry, scatter
from ..params import tree_map2, zeros_like
from .base import Block, check_backend, check_optional, check_params, linear_init
from .mlp import MLP
from .nnconv import NNConv
from .recurrent import GRUCell
from .set2set import Set2Set

__all__ = ["MPNN", "DistanceMPNN", "MPNNCache", "PairMPNNCache", "RelativePositionMPNN"]


# --- MPNN ---------------------------------------------------------------------------------


class MPNNCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, node_in)
    edge_vec: np.ndarray  # (E, D) x_j - x_i
    z_in: np.ndarray  # (N, H) f W_in + b_in
    conv: tuple  # NNConvCache per step
    conv_pre: tuple  # NNConv output per step (before the PyG-mode ReLU)
    gru: tuple  # GRUCellCache per step
    set2set: object  # Set2SetCache
    head: object  # MLPCache


@dataclass(frozen=True)
class MPNN(Block):
    r"""Gilmer's MPNN: ``forward(params, graph, f, pos, edge_attr=None) -> (y, cache)``, ``y`` (B,
    out_channels).

    Parameters
    ----------
    node_in : int
        Width of the input node features ``f`` (>= 1).
    edge_in : int
        Width of the given edge features ``edge_attr`` (>= 0; 0 means ``edge_attr=None``); the
        distance is appended when ``use_distance``.
    hidden : int
    steps : int
        Message-passing steps T (weights tied across steps; 0 allowed).
    edge_hidden : int
        Hidden width of the edge network.
    set2set_steps : int
    out_channels : int
    mode : {"paper", "pyg"}
    use_distance : bool
        Append :math:`\lVert x_j - x_i \rVert` to the edge features (otherwise ``pos`` is unused
        and its gradient is zero).
    backend : str

    Params: ``{"W_in": (node_in, H), "b_in": (H,), "conv": NNConv params, "gru": GRUCell params,
    "set2set": Set2Set params, "head": MLP(2H -> H -> out, ReLU) params}``. ``backward(params,
    cache, grad_y) -> (grads, (grad_f, grad_pos, grad_edge_attr))`` (``grad_edge_attr`` is None
    when ``edge_in == 0``).
    """

    node_in: int
    edge_in: int
    hidden: int = 16
    steps: int = 3
    edge_hidden: int = 32
    set2set_steps: int = 3
    out_channels: int = 1
    mode: str = "paper"
    use_distance: bool = True
    backend: str = "numpy"

    def __post_init__(self):
        for name in ("node_in", "hidden", "edge_hidden", "set2set_steps", "out_channels"):
            check_int(getattr(self, name), f"MPNN.{name}", minimum=1)
        check_int(self.edge_in, "MPNN.edge_in", minimum=0)
        check_int(self.steps, "MPNN.steps", minimum=0)
        check_choice(self.mode, "MPNN.mode", ("paper", "pyg"))
        check_bool(self.use_distance, "MPNN.use_distance")
        if self.edge_in + int(self.use_distance) < 1:
            raise ValueError("MPNN.edge_in must be >= 1 when use_distance=False (the edge network "
                             "needs at least one edge feature)")
        check_backend(self.backend, "MPNN")
        H = self.hidden
        children = {
            "conv": NNConv(H, H, self.edge_in + int(self.use_distance), self.edge_hidden,
                           "mean" if self.mode == "pyg" else "sum", self.backend),
            "gru": GRUCell(H, H),
            "set2set": Set2Set(H, self.set2set_steps, 1e-16 if self.mode == "pyg" else 0.0),
            "head": MLP((2 * H, H, self.out_channels), "relu"),
        }
        for name, child in children.items():
            object.__setattr__(self, name, child)

    def param_shapes(self) -> dict:
        return {
            "W_in": (self.node_in, self.hidden),
            "b_in": (self.hidden,),
            "conv": self.conv.param_shapes(),
            "gru": self.gru.param_shapes(),
            "set2set": self.set2set.param_shapes(),
            "head": self.head.param_shapes(),
        }

    def init(self, rng):
        rng = as_rng(rng, "rng")
        W, b = linear_init(rng, self.node_in, self.hidden, name="MPNN.node_in x hidden")
        return {
            "W_in": W,
            "b_in": b,
            "conv": self.conv.init(rng),
            "gru": self.gru.init(rng),
            "set2set": self.set2set.init(rng),
            "head": self.head.init(rng),
        }

    def forward(self, params, graph, f, pos, edge_attr=None):
        check_params(params, self.param_shapes(), "MPNN", exact=True)
        check_graph(graph)
        f = node_array(f, "f", graph, self.node_in)
        pos = positions(pos, graph)
        check_optional(edge_attr, "edge_attr", self.edge_in > 0, "edge_in > 0", "MPNN")
        edge_vec = edge_vectors(graph, pos)
        parts = []
        if edge_attr is not None:
            parts.append(edge_array(edge_attr, "edge_attr", graph, self.edge_in))
        if self.use_distance:
            parts.append(geometry.edge_length(edge_vec, name="pos")[:, None])  # raises on d = 0
        e = np.concatenate(parts, axis=1)
        z_in = dense.linear(f, params["W_in"], params["b_in"])
        h = activations.relu(z_in)
        convs, pres, grus = [], [], []
        for _ in range(self.steps):
            c, cc = self.conv.forward(params["conv"], graph, h, e)
            pres.append(c)
            if self.mode == "pyg":
                c = activations.relu(c)
            h, gc = self.gru.forward(params["gru"], c, h)
            convs.append(cc)
            grus.append(gc)
        s, sc = self.set2set.forward(params["set2set"], graph, h)
        y, hc = self.head.forward(params["head"], s)
        cache = MPNNCache(graph, f, edge_vec, z_in, tuple(convs), tuple(pres), tuple(grus), sc, hc)
        return y, cache

    def backward(self, params, cache: MPNNCache, grad_out):
        check_cache(cache, MPNNCache, "MPNN")
        graph = cache.graph
        g_y = _grad_out(grad_out, (graph.num_graphs, self.out_channels), "MPNN")
        # reverses y = head(s) and s = Set2Set(h)
        grad_head, (grad_s,) = self.head.backward(params["head"], cache.head, g_y)
        grad_s2s, (grad_h,) = self.set2set.backward(params["set2set"], cache.set2set, grad_s)
        grad_conv, grad_gru = zeros_like(params["conv"]), zeros_like(params["gru"])
        grad_e = np.zeros((graph.num_edges, self.edge_in + int(self.use_distance)))
        for t in reversed(range(self.steps)):
            # reverses h = GRU(c, h)
            gg, (grad_c, grad_h) = self.gru.backward(params["gru"], cache.gru[t], grad_h)
            if self.mode == "pyg":
                grad_c = activations.relu_vjp(cache.conv_pre[t], grad_c)
            # reverses c = NNConv(h, e)
            gc, (grad_h_conv, grad_e_t) = self.conv.backward(params["conv"], cache.conv[t], grad_c)
            grad_h = grad_h + grad_h_conv
            grad_e = grad_e + grad_e_t
            grad_conv = tree_map2(np.add, grad_conv, gc)
            grad_gru = tree_map2(np.add, grad_gru, gg)
        # reverses h0 = relu(f W_in + b_in)
        grad_z = activations.relu_vjp(cache.z_in, grad_h)
        grad_f, grad_W, grad_b = dense.linear_vjp(cache.f, params["W_in"], params["b_in"], grad_z)
        # reverses e = [edge_attr, |x_j - x_i|] and edge_vec = x_j - x_i
        grad_edge_attr = grad_e[:, : self.edge_in] if self.edge_in else None
        if self.use_distance:
            grad_vec = geometry.edge_length_vjp(cache.edge_vec, grad_e[:, self.edge_in], name="pos")
            grad_pos = edge_vectors_vjp(graph, grad_vec)
        else:
            grad_pos = np.zeros((graph.num_nodes, cache.edge_vec.shape[1]))
        grads = {"W_in": grad_W, "b_in": grad_b, "conv": grad_conv, "gru": grad_gru,
                 "set2set": grad_s2s, "head": grad_head}
        return grads, (grad_f, grad_pos, grad_edge_attr)


# --- pairwise-MLP MPNNs --------------------------------------------------------------------


class PairMPNNCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, C)
    edge_vec: np.ndarray  # (E, D) x_j - x_i
    msg: object  # MLPCache of phi_m
    agg: np.ndarray  # (N, H) sum of messages
    upd: object  # MLPCache of phi_f


@dataclass(frozen=True)
class _PairMPNN(Block):
    r"""Shared body: :math:`m_{ij} = \phi_m([f_i, f_j, a_{ij}])`,
    :math:`f'_i = \phi_f([f_i, \sum_j m_{ij}])`.

    ``phi_m`` = MLP(2C + A -> H -> H, activation after both layers), ``phi_f`` = MLP(C + H -> H ->
    out_channels). Subclasses define the geometric edge attribute :math:`a_{ij}` and its VJP.
    Params: ``{"phi_m": MLP params, "phi_f": MLP params}``; ``forward(params, graph, f, pos) ->
    (f', cache)``; ``backward -> (grads, (grad_f, grad_pos))``.
    """

    in_channels: int
    hidden: int = 16
    out_channels: int = 8
    activation: str = "silu"
    dim: int = 3
    backend: str = "numpy"

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("in_channels", "hidden", "out_channels", "dim"):
            check_int(getattr(self, name), f"{owner}.{name}", minimum=1)
        check_choice(self.activation, f"{owner}.activation", activations.NAMES)
        check_backend(self.backend, owner)
        C, H = self.in_channels, self.hidden
        phi_m = MLP((2 * C + self._attr_dim(), H, H), self.activation, activate_last=True)
        object.__setattr__(self, "phi_m", phi_m)
        object.__setattr__(self, "phi_f", MLP((C + H, H, self.out_channels), self.activation))

    def _attr_dim(self) -> int:
        raise NotImplementedError

    def _attr(self, edge_vec):
        raise NotImplementedError

    def _attr_vjp(self, edge_vec, grad_a):
        raise NotImplementedError

    def param_shapes(self) -> dict:
        return {"phi_m": self.phi_m.param_shapes(), "phi_f": self.phi_f.param_shapes()}

    def init(self, rng):
        rng = as_rng(rng, "rng")
        return {"phi_m": self.phi_m.init(rng), "phi_f": self.phi_f.init(rng)}

    def forward(self, params, graph, f, pos):
        owner = type(self).__name__
        check_params(params, self.param_shapes(), owner, exact=True)
        check_graph(graph)
        f = node_array(f, "f", graph, self.in_channels)
        pos = positions(pos, graph, self.dim)
        edge_vec = edge_vectors(graph, pos)
        a_ij = self._attr(edge_vec)
        x_ij = np.concatenate([f[graph.dst], f[graph.src], a_ij], axis=1)
        m_ij, msg_cache = self.phi_m.forward(params["phi_m"], x_ij)
        agg = scatter.aggregate(graph, m_ij, backend=self.backend)
        out, upd_cache = self.phi_f.forward(params["phi_f"], np.concatenate([f, agg], axis=1))
        return out, PairMPNNCache(graph, f, edge_vec, msg_cache, agg, upd_cache)

    def backward(self, params, cache: PairMPNNCache, grad_out):
        owner = type(self).__name__
        check_cache(cache, PairMPNNCache, owner)
        graph = cache.graph
        g = _grad_out(grad_out, (graph.num_nodes, self.out_channels), owner)
        C = self.in_channels
        # reverses out = phi_f([f, agg])
        grad_upd, (grad_u,) = self.phi_f.backward(params["phi_f"], cache.upd, g)
        grad_f = grad_u[:, :C].copy()
        grad_agg = grad_u[:, C:]
        # reverses agg = sum_j m_ij
        grad_m = scatter.aggregate_vjp(graph, None, grad_agg)
        # reverses m_ij = phi_m([f_i, f_j, a_ij])
        grad_msg, (grad_x,) = self.phi_m.backward(params["phi_m"], cache.msg, grad_m)
        grad_f += scatter.scatter_sum(grad_x[:, :C], graph.dst, graph.num_nodes,
                                      backend=self.backend)
        grad_f += scatter.scatter_sum(grad_x[:, C:2 * C], graph.src, graph.num_nodes,
                                      backend=self.backend)
        # reverses a_ij = attr(x_j - x_i)
        grad_vec = self._attr_vjp(cache.edge_vec, grad_x[:, 2 * C:])
        grad_pos = edge_vectors_vjp(graph, grad_vec)
        return {"phi_m": grad_msg, "phi_f": grad_upd}, (grad_f, grad_pos)


@dataclass(frozen=True)
class DistanceMPNN(_PairMPNN):
    r"""Invariant MPNN on squared distances, :math:`a_{ij} = \lVert x_j - x_i \rVert^2`
    (E(n)-invariant).

    ``forward(params, graph, f, pos) -> f_out`` of shape (N, out_channels). Raises ``ValueError``
    naming ``pos`` when a squared distance exceeds the float64 range (``|x_j - x_i|`` above
    ~1.3e154).
    """

    def _attr_dim(self):
        return 1

    def _attr(self, edge_vec):
        return geometry.edge_sqlength(edge_vec, name="pos")[:, None]  # raises on overflow

    def _attr_vjp(self, edge_vec, grad_a):
        return geometry.edge_sqlength_vjp(edge_vec, grad_a[:, 0], name="pos")


@dataclass(frozen=True)
class RelativePositionMPNN(_PairMPNN):
    r"""MPNN on raw relative positions, :math:`a_{ij} = x_j - x_i`: translation-invariant only.

    Kept as the lecture's counter-example: an MLP of :math:`x_j - x_i` is not rotation-equivariant,
    and the tests assert that the rotation check fails.
    """

    def _attr_dim(self):
        return self.dim

    def _attr(self, edge_vec):
        return edge_vec

    def _attr_vjp(self, edge_vec, grad_a):
        return grad_a
