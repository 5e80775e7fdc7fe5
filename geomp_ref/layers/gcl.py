r"""The non-equivariant graph convolutional layer of the EGNN paper's baselines (vgsatorras/egnn
``models/gcl.py`` ``GCL``; the "GNN" row of the N-body table).

For every edge j -> i (receiver i = ``dst``, sender j = ``src``):

.. math::

    m_{ij} = \phi_e([h_i, h_j, a_{ij}]) \quad [\times\ \sigma(\phi_{att}(|h_i - h_j|))\ \
    (\texttt{attention})], \qquad
    h'_i = \phi_h([h_i, \textstyle\sum_j m_{ij}]) \ [+\ h_i\ \ (\texttt{recurrent})],

with :math:`\phi_e` = Lin -> act -> Lin -> act, :math:`\phi_h` = Lin -> act -> Lin,
:math:`\phi_{att}` = Lin -> act -> Lin(-> 1) then a sigmoid, and :math:`|\cdot|` elementwise. The
derivative of :math:`|u|` at :math:`u = 0` is taken as 0 (torch's ``sign(0)``). Positions never
enter: nothing here is equivariant beyond node permutations.

Torch names, weights transposed to (in, out): ``phi_e`` = ``edge_mlp.0`` / ``edge_mlp.2``,
``phi_att`` = ``att_mlp.0`` / ``att_mlp.2``, ``phi_h`` = ``node_mlp.0`` / ``node_mlp.2``. The
torch layer returns ``(h', m)``; this block returns ``h'`` (the messages are in the cache).

Backward: reverse order of the forward lines (node MLP, the sum's gather, attention, edge MLP and
its gathers' scatters).
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
)
from .._validate import grad_out as _grad_out
from ..graph import Graph
from ..ops import activations, scatter
from .base import Block, check_backend, check_optional, check_params
from .mlp import MLP, MLPCache

__all__ = ["GCL", "GCLAttentionCache", "GCLCache", "GCLStackParams"]


class GCLAttentionCache(NamedTuple):
    m_raw: np.ndarray  # (E, H) phi_e output
    diff: np.ndarray  # (E, C) h_i - h_j
    phi_att: MLPCache
    att: np.ndarray  # (E, 1) sigmoid(phi_att(|h_i - h_j|))


class GCLCache(NamedTuple):
    graph: Graph
    phi_e: MLPCache
    attention: GCLAttentionCache | None
    phi_h: MLPCache


@dataclass(frozen=True)
class GCL(Block):
    r"""``forward(params, graph, h, edge_attr=None) -> (h', cache)``.

    Parameters
    ----------
    in_features : int
        C, width of h.
    hidden : int
        H, width of the messages and hidden layers.
    out_features : int, optional
        Width of h' (default ``in_features``; must equal it when ``recurrent``).
    edge_features : int
        Width of ``edge_attr`` (0: ``edge_attr=None``).
    activation : str
        torch's default ``act_fn`` is ReLU; the N-body GNN passes SiLU.
    attention : bool
    recurrent : bool
        Residual :math:`h' = h + \phi_h(\cdot)` (the torch flag's name; no GRU is involved).
    bias : bool
        Biases in every linear layer (torch ``bias``).
    backend : str

    Params: ``{"phi_e": MLP(2C+A, H, H), "phi_h": MLP(C+H, H, out)}`` plus
    ``"phi_att": MLP(C, H, 1)`` with attention. ``backward(params, cache, grad_h') -> (grads,
    (grad_h, grad_edge_attr))``.
    """

    in_features: int
    hidden: int
    out_features: int | None = None
    edge_features: int = 0
    activation: str = "relu"
    attention: bool = False
    recurrent: bool = True
    bias: bool = True
    backend: str = "numpy"

    def __post_init__(self):
        set_ = object.__setattr__
        check_int(self.in_features, "GCL.in_features", minimum=1)
        check_int(self.hidden, "GCL.hidden", minimum=1)
        if self.out_features is None:
            set_(self, "out_features", self.in_features)
        check_int(self.out_features, "GCL.out_features", minimum=1)
        check_int(self.edge_features, "GCL.edge_features", minimum=0)
        check_choice(self.activation, "GCL.activation", activations.NAMES)
        for name in ("attention", "recurrent", "bias"):
            check_bool(getattr(self, name), f"GCL.{name}")
        if self.recurrent and self.out_features != self.in_features:
            raise ValueError(
                "GCL.out_features must equal in_features when recurrent=True (residual); got "
                f"{self.out_features} != {self.in_features}"
            )
        check_backend(self.backend, "GCL")
        C, H, act, be = self.in_features, self.hidden, self.activation, self.backend
        set_(self, "phi_e", MLP((2 * C + self.edge_features, H, H), act, True, self.bias, be))
        set_(self, "phi_att",
             MLP((C, H, 1), act, False, self.bias, be) if self.attention else None)
        set_(self, "phi_h", MLP((C + H, H, self.out_features), act, False, self.bias, be))

    def _children(self):
        names = ("phi_e", "phi_att", "phi_h")
        return [(n, getattr(self, n)) for n in names if getattr(self, n) is not None]

    def param_shapes(self) -> dict:
        return {name: child.param_shapes() for name, child in self._children()}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {name: child.init(rng) for name, child in self._children()}

    def forward(self, params, graph, h, edge_attr=None):
        check_params(params, self.param_shapes(), "GCL", exact=True)
        check_graph(graph)
        h = node_array(h, "h", graph, self.in_features)
        check_optional(edge_attr, "edge_attr", self.edge_features > 0, "edge_features > 0", "GCL")
        parts = [h[graph.dst], h[graph.src]]
        if edge_attr is not None:
            parts.append(edge_array(edge_attr, "edge_attr", graph, self.edge_features))
        m, c_e = self.phi_e.forward(params["phi_e"], np.concatenate(parts, axis=1))
        c_att = None
        if self.attention:
            diff = h[graph.dst] - h[graph.src]
            logit, c_phi = self.phi_att.forward(params["phi_att"], np.abs(diff))
            att = activations.sigmoid(logit)
            c_att = GCLAttentionCache(m, diff, c_phi, att)
            m = m * att
        agg = scatter.aggregate(graph, m, backend=self.backend)
        out, c_h = self.phi_h.forward(params["phi_h"], np.concatenate([h, agg], axis=1))
        if self.recurrent:
            out = out + h
        return out, GCLCache(graph, c_e, c_att, c_h)

    def backward(self, params, cache: GCLCache, grad_out):
        check_cache(cache, GCLCache, "GCL")
        graph = cache.graph
        N, C = graph.num_nodes, self.in_features
        g = _grad_out(grad_out, (N, self.out_features), "GCL")
        grads = {}
        # out = phi_h([h, agg]) (+ h)
        grads["phi_h"], (g_in,) = self.phi_h.backward(params["phi_h"], cache.phi_h, g)
        g_h = g_in[:, :C] + (g if self.recurrent else 0.0)
        # agg = sum_j m_ij: gather at the receivers
        g_m = g_in[:, C:][graph.dst]
        if self.attention:
            c = cache.attention
            # m = m_raw * att ; att = sigmoid(phi_att(|h_i - h_j|))
            g_att = np.sum(g_m * c.m_raw, axis=1, keepdims=True)
            g_m = g_m * c.att
            g_logit = g_att * c.att * (1.0 - c.att)
            grads["phi_att"], (g_abs,) = self.phi_att.backward(params["phi_att"], c.phi_att,
                                                               g_logit)
            g_diff = g_abs * np.sign(c.diff)
            g_h += scatter.aggregate(graph, g_diff, backend=self.backend)  # at receivers
            g_h -= scatter.aggregate(graph.reverse(), g_diff, backend=self.backend)  # senders
        # m_raw = phi_e([h_i, h_j, a])
        grads["phi_e"], (g_e,) = self.phi_e.backward(params["phi_e"], cache.phi_e, g_m)
        # h_i = h[dst], h_j = h[src]: sums at receivers and senders (the graph's own CSR orders)
        g_h += scatter.aggregate(graph, g_e[:, :C], backend=self.backend)
        g_h += scatter.aggregate(graph.reverse(), g_e[:, C:2 * C], backend=self.backend)
        g_a = g_e[:, 2 * C:] if self.edge_features else None
        return grads, (g_h, g_a)


class GCLStackParams:
    """Params of an ``embedding -> num_layers x layer -> decoder`` network (the N-body GNN and
    the published ``GNN``): ``{"embedding", "layers": {"0", ...}, "decoder"}``, drawn in that
    order. Mixed into blocks that set ``embedding``, ``layer``, ``num_layers`` and ``decoder``."""

    def param_shapes(self) -> dict:
        return {
            "embedding": self.embedding.param_shapes(),
            "layers": {str(k): self.layer.param_shapes() for k in range(self.num_layers)},
            "decoder": self.decoder.param_shapes(),
        }

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {
            "embedding": self.embedding.init(rng),
            "layers": {str(k): self.layer.init(rng) for k in range(self.num_layers)},
            "decoder": self.decoder.init(rng),
        }
