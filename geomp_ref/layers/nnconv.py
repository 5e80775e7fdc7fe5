r"""Edge-conditioned convolution (Gilmer's edge network; PyG ``NNConv``).

.. math::

    \Theta_{ij} = \mathrm{reshape}_{C_{in} \times C_{out}}\big(\mathrm{MLP}_e(e_{ij})\big), \quad
    m_{ij} = h_j^T \Theta_{ij}, \quad
    out_i = \mathrm{AGG}_{j \to i}\, m_{ij} + h_i W_{root} + b .

Gilmer's :math:`A(e_{ij}) = \Theta_{ij}^T`; the reshape is row-major (C_in, C_out) as in PyG.
AGG is ``"sum"`` (the paper) or ``"mean"`` (PyG's QM9 example).

Backward: :math:`\bar m = \mathrm{AGG}^T(\bar{out})`, :math:`\bar\Theta_{ij} = h_j \bar m_{ij}^T`,
:math:`\bar h_j \mathrel{+}= \Theta_{ij} \bar m_{ij}` (summed at senders), root term by the linear VJP.
Derivation: ``derivations/mpnn.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..ops import dense, scatter
from .base import Block, check_backend, check_params
from .mlp import MLP, MLPCache

__all__ = ["NNConv", "NNConvCache"]


class NNConvCache(NamedTuple):
    graph: object
    h: np.ndarray
    edge_attr: np.ndarray
    theta: np.ndarray  # (E, C_in, C_out)
    edge_net: MLPCache


@dataclass(frozen=True)
class NNConv(Block):
    """Edge-network convolution; params ``{"edge_net": MLP, "W_root": (C_in, C_out), "b": (C_out,)}``."""

    in_channels: int
    out_channels: int
    edge_dim: int
    edge_hidden: int = 128
    aggr: str = "sum"
    backend: str = "numpy"

    def __post_init__(self):
        if self.aggr not in ("sum", "mean"):
            raise ValueError(f"NNConv.aggr must be 'sum' or 'mean'; got {self.aggr!r}")
        check_backend(self.backend, "NNConv")

    @property
    def edge_net(self) -> MLP:
        return MLP((self.edge_dim, self.edge_hidden, self.in_channels * self.out_channels), "relu")

    def init(self, rng):
        k = 1.0 / np.sqrt(self.in_channels)
        return {
            "edge_net": self.edge_net.init(rng),
            "W_root": rng.uniform(-k, k, size=(self.in_channels, self.out_channels)),
            "b": rng.uniform(-k, k, size=(self.out_channels,)),
        }

    def forward(self, params, graph, h, edge_attr):
        check_params(params, {"W_root": (self.in_channels, self.out_channels), "b": (self.out_channels,)}, "NNConv")
        theta_flat, net_cache = self.edge_net.forward(params["edge_net"], edge_attr)
        theta = theta_flat.reshape(-1, self.in_channels, self.out_channels)
        m = np.einsum("ea,eab->eb", h[graph.src], theta)
        agg_fn = scatter.aggregate if self.aggr == "sum" else scatter.aggregate_mean
        out = agg_fn(graph, m, backend=self.backend) + dense.linear(h, params["W_root"], params["b"])
        return out, NNConvCache(graph, h, edge_attr, theta, net_cache)

    def backward(self, params, cache: NNConvCache, grad_out):
        graph, h, _, theta, net_cache = cache
        # reverses out = AGG m + h W_root + b
        grad_h, grad_W, grad_b = dense.linear_vjp(h, params["W_root"], params["b"], grad_out)
        vjp = scatter.aggregate_vjp if self.aggr == "sum" else scatter.aggregate_mean_vjp
        grad_m = vjp(graph, None, grad_out)
        # reverses m_ij = h_j^T Theta_ij
        grad_theta = np.einsum("ea,eb->eab", h[graph.src], grad_m)
        grad_hj = np.einsum("eab,eb->ea", theta, grad_m)
        grad_h = grad_h + scatter.scatter_sum(grad_hj, graph.src, graph.num_nodes, backend=self.backend)
        grad_net, (grad_edge_attr,) = self.edge_net.backward(
            params["edge_net"], net_cache, grad_theta.reshape(graph.num_edges, -1)
        )
        return {"edge_net": grad_net, "W_root": grad_W, "b": grad_b}, (grad_h, grad_edge_attr)
