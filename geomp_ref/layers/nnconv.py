r"""Edge-conditioned convolution (Gilmer's edge network; PyG ``NNConv``).

.. math::

    \Theta_{ij} = \mathrm{reshape}_{C_{in} \times C_{out}}\big(\mathrm{MLP}_e(e_{ij})\big), \quad
    m_{ij} = h_j^T \Theta_{ij}, \quad
    out_i = \mathrm{AGG}_{j \to i}\, m_{ij} + h_i W_{root} + b .

Gilmer's :math:`A(e_{ij}) = \Theta_{ij}^T`; the reshape is row-major (C_in, C_out) as in PyG.
AGG is ``"sum"`` (the paper) or ``"mean"`` (PyG's QM9 example). :math:`\mathrm{MLP}_e` is
Lin(edge_dim -> edge_hidden) -> ReLU -> Lin(edge_hidden -> C_in C_out), the network PyG's QM9
example passes as ``nn``.

Backward: :math:`\bar m = \mathrm{AGG}^T(\bar{out})`, :math:`\bar\Theta_{ij} = h_j \bar m_{ij}^T`,
:math:`\bar h_j \mathrel{+}= \Theta_{ij} \bar m_{ij}` (summed at senders), root term by the
linear VJP.
Derivation: ``derivations/mpnn.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_rng,
    check_alloc,
    check_cache,
    check_choice,
    check_graph,
    check_int,
    edge_array,
    node_array,
)
from .._validate import grad_out as _grad_out
from ..graph import Graph
from ..ops import dense, scatter
from .base import Block, check_backend, check_params, linear_init
from .mlp import MLP, MLPCache

__all__ = ["NNConv", "NNConvCache"]


class NNConvCache(NamedTuple):
    graph: Graph
    h: np.ndarray  # (N, C_in)
    theta: np.ndarray  # (E, C_in, C_out) per-edge matrices
    edge_net: MLPCache


@dataclass(frozen=True)
class NNConv(Block):
    """Edge-network convolution ``forward(params, graph, h, edge_attr) -> (out, cache)``.

    Parameters
    ----------
    in_channels, out_channels : int
        C_in (width of ``h``) and C_out.
    edge_dim : int
        Width of ``edge_attr``.
    edge_hidden : int
        Hidden width of the edge network.
    aggr : {"sum", "mean"}
    backend : str

    Params: ``{"edge_net": MLP(edge_dim, edge_hidden, C_in C_out) params, "W_root": (C_in, C_out),
    "b": (C_out,)}`` (PyG 2.x: ``nn[0]``, ``nn[2]``, ``lin.weight.T``, ``bias``).
    ``backward(params, cache, grad_out) -> (grads, (grad_h, grad_edge_attr))``.
    """

    in_channels: int
    out_channels: int
    edge_dim: int
    edge_hidden: int = 128
    aggr: str = "sum"
    backend: str = "numpy"

    def __post_init__(self):
        for name in ("in_channels", "out_channels", "edge_dim", "edge_hidden"):
            check_int(getattr(self, name), f"NNConv.{name}", minimum=1)
        check_choice(self.aggr, "NNConv.aggr", ("sum", "mean"))
        check_backend(self.backend, "NNConv")
        net = MLP((self.edge_dim, self.edge_hidden, self.in_channels * self.out_channels), "relu")
        object.__setattr__(self, "edge_net", net)

    def param_shapes(self) -> dict:
        return {
            "edge_net": self.edge_net.param_shapes(),
            "W_root": (self.in_channels, self.out_channels),
            "b": (self.out_channels,),
        }

    def init(self, rng):
        rng = as_rng(rng, "rng")
        net = self.edge_net.init(rng)
        W, b = linear_init(rng, self.in_channels, self.out_channels,
                           name="NNConv.in_channels x out_channels")
        return {"edge_net": net, "W_root": W, "b": b}

    def forward(self, params, graph, h, edge_attr):
        check_params(params, self.param_shapes(), "NNConv", exact=True)
        check_graph(graph)
        h = node_array(h, "h", graph, self.in_channels)
        edge_attr = edge_array(edge_attr, "edge_attr", graph, self.edge_dim)
        check_alloc((graph.num_edges, self.in_channels, self.out_channels),
                    "NNConv (num_edges x in_channels x out_channels)")
        theta_flat, net_cache = self.edge_net.forward(params["edge_net"], edge_attr)
        theta = theta_flat.reshape(-1, self.in_channels, self.out_channels)
        m = np.einsum("ea,eab->eb", h[graph.src], theta)
        agg_fn = scatter.aggregate if self.aggr == "sum" else scatter.aggregate_mean
        root = dense.linear(h, params["W_root"], params["b"])
        out = agg_fn(graph, m, backend=self.backend) + root
        return out, NNConvCache(graph, h, theta, net_cache)

    def backward(self, params, cache: NNConvCache, grad_out):
        check_cache(cache, NNConvCache, "NNConv")
        graph, h, theta, net_cache = cache
        g = _grad_out(grad_out, (graph.num_nodes, self.out_channels), "NNConv")
        # reverses out = AGG m + h W_root + b
        grad_h, grad_W, grad_b = dense.linear_vjp(h, params["W_root"], params["b"], g)
        vjp = scatter.aggregate_vjp if self.aggr == "sum" else scatter.aggregate_mean_vjp
        grad_m = vjp(graph, None, g)
        # reverses m_ij = h_j^T Theta_ij
        grad_theta = np.einsum("ea,eb->eab", h[graph.src], grad_m)
        grad_hj = np.einsum("eab,eb->ea", theta, grad_m)
        grad_h = grad_h + scatter.scatter_sum(grad_hj, graph.src, graph.num_nodes,
                                              backend=self.backend)
        # reverses Theta = reshape(edge_net(edge_attr))
        grad_net, (grad_edge_attr,) = self.edge_net.backward(
            params["edge_net"], net_cache, grad_theta.reshape(graph.num_edges, -1)
        )
        return {"edge_net": grad_net, "W_root": grad_W, "b": grad_b}, (grad_h, grad_edge_attr)
