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
PyG's softmax epsilon 1e-16 in Set2Set (see reference: variants_spec §1). Everything is
E(3)-invariant because positions enter only through distances.

**DistanceMPNN** (invariant): :math:`m_{ij} = \phi_m(f_i, f_j, \lVert x_j - x_i\rVert^2)`,
:math:`f'_i = \phi_f(f_i, \sum_j m_{ij})`.

**RelativePositionMPNN**: :math:`m_{ij} = \phi_m(f_i, f_j, x_j - x_i)` — translation-invariant
but *not* rotation-equivariant: the lecture's counter-example (its tests assert that rotation
equivariance fails).

Conventions: edge_index row 0 = sender j, row 1 = receiver i; ``x_j - x_i = pos[src] - pos[dst]``
(README "Conventions"). Derivations: ``derivations/mpnn.py`` (GRU, LSTM, Set2Set, NNConv).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import activations, dense, geometry, scatter
from ..params import tree_map2, zeros_like
from .base import Block, check_backend, check_params
from .mlp import MLP
from .nnconv import NNConv
from .recurrent import GRUCell
from .set2set import Set2Set

__all__ = ["MPNN", "MPNNCache", "DistanceMPNN", "RelativePositionMPNN", "PairMPNNCache"]


def _check_graph_inputs(graph, f, pos, channels: int, owner: str):
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}")
    f = as_float64(f, "f", ndim=2)
    if f.shape != (graph.num_nodes, channels):
        raise ValueError(f"f must have shape (num_nodes, {channels}) = ({graph.num_nodes}, {channels}) "
                         f"for {owner}; got {f.shape}")
    pos = as_float64(pos, "pos", ndim=2)
    if pos.shape[0] != graph.num_nodes:
        raise ValueError(f"pos must have shape (num_nodes, D) = ({graph.num_nodes}, D); got {pos.shape}")
    return f, pos


# --- MPNN ---------------------------------------------------------------------------------


class MPNNCache(NamedTuple):
    graph: Graph
    f: np.ndarray
    edge_vec: np.ndarray
    z_in: np.ndarray
    conv: tuple
    conv_pre: tuple
    gru: tuple
    set2set: object
    head: object


@dataclass(frozen=True)
class MPNN(Block):
    """Gilmer's MPNN: ``forward(params, graph, f, pos, edge_attr) -> y`` of shape (B, out_channels).

    Parameters
    ----------
    node_in : int
        Width of the input node features ``f``.
    edge_in : int
        Width of the given edge features ``edge_attr`` (may be 0); the distance is appended when
        ``use_distance``.
    hidden : int
    steps : int
        Message-passing steps T (weights tied across steps).
    edge_hidden : int
        Hidden width of the edge network.
    set2set_steps : int
    out_channels : int
    mode : {"paper", "pyg"}
    use_distance : bool
    backend : str

    Params: ``W_in, b_in, conv (NNConv), gru (GRUCell), set2set, head (MLP 2H -> H -> out, ReLU)``.
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
        if self.mode not in ("paper", "pyg"):
            raise ValueError(f"MPNN.mode must be 'paper' or 'pyg'; got {self.mode!r}")
        if self.edge_in + int(self.use_distance) < 1:
            raise ValueError("MPNN needs edge features: set edge_in >= 1 or use_distance=True")
        check_backend(self.backend, "MPNN")

    @property
    def conv(self) -> NNConv:
        return NNConv(self.hidden, self.hidden, self.edge_in + int(self.use_distance), self.edge_hidden,
                      "mean" if self.mode == "pyg" else "sum", self.backend)

    @property
    def gru(self) -> GRUCell:
        return GRUCell(self.hidden, self.hidden)

    @property
    def set2set(self) -> Set2Set:
        return Set2Set(self.hidden, self.set2set_steps, 1e-16 if self.mode == "pyg" else 0.0)

    @property
    def head(self) -> MLP:
        return MLP((2 * self.hidden, self.hidden, self.out_channels), "relu")

    def init(self, rng):
        k = 1.0 / np.sqrt(self.node_in)
        return {
            "W_in": rng.uniform(-k, k, size=(self.node_in, self.hidden)),
            "b_in": rng.uniform(-k, k, size=(self.hidden,)),
            "conv": self.conv.init(rng),
            "gru": self.gru.init(rng),
            "set2set": self.set2set.init(rng),
            "head": self.head.init(rng),
        }

    def forward(self, params, graph, f, pos, edge_attr):
        check_params(params, {"W_in": (self.node_in, self.hidden), "b_in": (self.hidden,)}, "MPNN")
        f, pos = _check_graph_inputs(graph, f, pos, self.node_in, "MPNN")
        edge_attr = as_float64(edge_attr, "edge_attr", ndim=2)
        if edge_attr.shape != (graph.num_edges, self.edge_in):
            raise ValueError(f"edge_attr must have shape (num_edges, edge_in) = ({graph.num_edges}, "
                             f"{self.edge_in}); got {edge_attr.shape}")
        edge_vec = edge_vectors(graph, pos)
        if self.use_distance:
            e = np.concatenate([edge_attr, geometry.edge_length(edge_vec)[:, None]], axis=1)
        else:
            e = edge_attr
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
        return y, MPNNCache(graph, f, edge_vec, z_in, tuple(convs), tuple(pres), tuple(grus), sc, hc)

    def backward(self, params, cache: MPNNCache, grad_out):
        graph = cache.graph
        grad_head, (grad_s,) = self.head.backward(params["head"], cache.head, grad_out)
        grad_s2s, (grad_h,) = self.set2set.backward(params["set2set"], cache.set2set, grad_s)
        grad_conv = grad_gru = None
        grad_e = 0.0
        for t in reversed(range(self.steps)):
            # reverses h = GRU(c, h)
            gg, (grad_c, grad_h) = self.gru.backward(params["gru"], cache.gru[t], grad_h)
            if self.mode == "pyg":
                grad_c = activations.relu_vjp(cache.conv_pre[t], grad_c)
            # reverses c = NNConv(h, e)
            gc, (grad_h_conv, grad_e_t) = self.conv.backward(params["conv"], cache.conv[t], grad_c)
            grad_h = grad_h + grad_h_conv
            grad_e = grad_e + grad_e_t
            grad_conv = gc if grad_conv is None else tree_map2(np.add, grad_conv, gc)
            grad_gru = gg if grad_gru is None else tree_map2(np.add, grad_gru, gg)
        # reverses h0 = relu(f W_in + b_in)
        grad_z = activations.relu_vjp(cache.z_in, grad_h)
        grad_f, grad_W, grad_b = dense.linear_vjp(cache.f, params["W_in"], params["b_in"], grad_z)
        # reverses e = [edge_attr, |x_j - x_i|] and edge_vec = x_j - x_i
        if isinstance(grad_e, float):
            grad_e = np.zeros((graph.num_edges, self.edge_in + int(self.use_distance)))
        grad_edge_attr = grad_e[:, : self.edge_in]
        if self.use_distance:
            grad_vec = geometry.edge_length_vjp(cache.edge_vec, grad_e[:, self.edge_in])
            grad_pos = edge_vectors_vjp(graph, grad_vec)
        else:
            grad_pos = np.zeros((graph.num_nodes, cache.edge_vec.shape[1]))
        if grad_conv is None:  # steps == 0
            grad_conv = zeros_like(params["conv"])
            grad_gru = zeros_like(params["gru"])
        grads = {"W_in": grad_W, "b_in": grad_b, "conv": grad_conv, "gru": grad_gru,
                 "set2set": grad_s2s, "head": grad_head}
        return grads, (grad_f, grad_pos, grad_edge_attr)


# --- pairwise-MLP MPNNs --------------------------------------------------------------------


class PairMPNNCache(NamedTuple):
    graph: Graph
    f: np.ndarray
    edge_vec: np.ndarray
    msg: object
    agg: np.ndarray
    upd: object


@dataclass(frozen=True)
class _PairMPNN(Block):
    r"""Shared body: :math:`m_{ij} = \phi_m([f_i, f_j, a_{ij}])`, :math:`f'_i = \phi_f([f_i, \sum_j m_{ij}])`.

    ``phi_m`` = MLP(2C + A -> H -> H, activation after both layers), ``phi_f`` = MLP(C + H -> H ->
    out_channels). Subclasses define the geometric edge attribute :math:`a_{ij}` and its VJP.
    """

    in_channels: int
    hidden: int = 16
    out_channels: int = 8
    activation: str = "silu"
    dim: int = 3
    backend: str = "numpy"

    def __post_init__(self):
        check_backend(self.backend, type(self).__name__)
        activations.get(self.activation)
        if self.dim < 1:
            raise ValueError(f"{type(self).__name__}.dim must be >= 1; got {self.dim}")

    def _attr_dim(self) -> int:
        raise NotImplementedError

    def _attr(self, edge_vec):
        raise NotImplementedError

    def _attr_vjp(self, edge_vec, grad_a):
        raise NotImplementedError

    @property
    def phi_m(self) -> MLP:
        C, H = self.in_channels, self.hidden
        return MLP((2 * C + self._attr_dim(), H, H), self.activation, activate_last=True)

    @property
    def phi_f(self) -> MLP:
        return MLP((self.in_channels + self.hidden, self.hidden, self.out_channels), self.activation)

    def init(self, rng):
        return {"phi_m": self.phi_m.init(rng), "phi_f": self.phi_f.init(rng)}

    def forward(self, params, graph, f, pos):
        f, pos = _check_graph_inputs(graph, f, pos, self.in_channels, type(self).__name__)
        if pos.shape[1] != self.dim:
            raise ValueError(f"pos must have shape (num_nodes, {self.dim}); got {pos.shape}")
        edge_vec = edge_vectors(graph, pos)
        a_ij = self._attr(edge_vec)
        x_ij = np.concatenate([f[graph.dst], f[graph.src], a_ij], axis=1)
        m_ij, msg_cache = self.phi_m.forward(params["phi_m"], x_ij)
        agg = scatter.aggregate(graph, m_ij, backend=self.backend)
        out, upd_cache = self.phi_f.forward(params["phi_f"], np.concatenate([f, agg], axis=1))
        return out, PairMPNNCache(graph, f, edge_vec, msg_cache, agg, upd_cache)

    def backward(self, params, cache: PairMPNNCache, grad_out):
        graph = cache.graph
        C = self.in_channels
        # reverses out = phi_f([f, agg])
        grad_upd, (grad_u,) = self.phi_f.backward(params["phi_f"], cache.upd, grad_out)
        grad_f = grad_u[:, :C].copy()
        grad_agg = grad_u[:, C:]
        # reverses agg = sum_j m_ij
        grad_m = scatter.aggregate_vjp(graph, None, grad_agg)
        # reverses m_ij = phi_m([f_i, f_j, a_ij])
        grad_msg, (grad_x,) = self.phi_m.backward(params["phi_m"], cache.msg, grad_m)
        grad_f += scatter.scatter_sum(grad_x[:, :C], graph.dst, graph.num_nodes, backend=self.backend)
        grad_f += scatter.scatter_sum(grad_x[:, C:2 * C], graph.src, graph.num_nodes, backend=self.backend)
        # reverses a_ij = attr(x_j - x_i)
        grad_vec = self._attr_vjp(cache.edge_vec, grad_x[:, 2 * C:])
        grad_pos = edge_vectors_vjp(graph, grad_vec)
        return {"phi_m": grad_msg, "phi_f": grad_upd}, (grad_f, grad_pos)


@dataclass(frozen=True)
class DistanceMPNN(_PairMPNN):
    r"""Invariant MPNN on squared distances, :math:`a_{ij} = \lVert x_j - x_i \rVert^2` (E(n)-invariant).

    ``forward(params, graph, f, pos) -> f_out`` of shape (N, out_channels).
    """

    def _attr_dim(self):
        return 1

    def _attr(self, edge_vec):
        return geometry.edge_sqlength(edge_vec)[:, None]

    def _attr_vjp(self, edge_vec, grad_a):
        return geometry.edge_sqlength_vjp(edge_vec, grad_a[:, 0])


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
