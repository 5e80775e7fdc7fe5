r"""PointConv: a point convolution whose kernel is an MLP of the relative position.

.. math::

    a_{ij} = x_j - x_i \ (\texttt{kernel\_input="relative"}) \quad\text{or}\quad
    a_{ij} = \lVert x_j - x_i \rVert \ (\texttt{"distance"}),

    k_{ij} = \mathrm{MLP}_k(a_{ij}) \in \mathbb{R}^C, \qquad
    \mathrm{agg}_i = \sum_j k_{ij} \odot f_j, \qquad
    f'_i = \phi_f(\mathrm{agg}_i) = \mathrm{agg}_i W_f + b_f .

The kernel is depthwise (one weight per edge and channel), so the sum is the fused kernel
:func:`geomp_ref.ops.scatter.weighted_aggregate` on the chosen backend; the channel mixing is in
:math:`\phi_f`. ``MLP_k`` follows LieConv's WeightNet in applying the activation after its last
layer too (``activate_last=True``).

Symmetry: the relative kernel sees :math:`x_j - x_i`, which is translation-invariant but rotates
with the input, so the layer is only T(3)-equivariant (case group ``"T3"``; rotation tests must
*fail* by far). The distance kernel is E(3)-invariant.

Sign convention: :math:`x_j - x_i` (sender minus receiver, README "Conventions"); mfinzi/LieConv's
PointConv feeds :math:`x_i - x_j` (variants_spec §3), so its kernel corresponds to ours composed
with :math:`a \mapsto -a`.

Backward: :math:`\bar k_{ij} = \bar{\mathrm{agg}}_i \odot f_j`, :math:`\bar f_j = \sum_i k_{ij}
\odot \bar{\mathrm{agg}}_i` (the same fused kernel on the reversed graph), then the MLP's VJP and
:func:`geomp_ref.graph.edge_vectors_vjp` (distance kernel: through :math:`a/\lVert a \rVert` first).
The pieces are proven in ``derivations/gather_scatter.py`` and ``derivations/dense_activations.py``.

References: W. Wu, Z. Qi, L. Fuxin, "PointConv: Deep convolutional networks on 3D point clouds",
CVPR 2019, eq. (2); M. Finzi et al., "Generalizing convolutional neural networks for equivariance to
Lie groups on arbitrary continuous data" (LieConv), ICML 2020, §4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64, check_int
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import dense, geometry, scatter
from .base import Block, check_backend, check_params
from .mlp import MLP, MLPCache

__all__ = ["PointConv", "PointConvCache"]


class PointConvCache(NamedTuple):
    edge_vec: np.ndarray  # (E, D) x_j - x_i
    a_ij: np.ndarray  # (E, D) or (E, 1) kernel input
    k_ij: np.ndarray  # (E, C) kernel values
    kernel: MLPCache
    f: np.ndarray  # (N, C)
    agg: np.ndarray  # (N, C)
    graph: Graph


@dataclass(frozen=True)
class PointConv(Block):
    r"""Point convolution :math:`f'_i = \phi_f(\sum_j \mathrm{MLP}_k(a_{ij}) \odot f_j)`.

    Parameters
    ----------
    in_channels : int
        C.
    out_channels : int
        Output width of :math:`\phi_f`.
    kernel_hidden : tuple of int
        Hidden widths of the kernel MLP (LieConv's WeightNet uses (32, 32)).
    kernel_input : {"relative", "distance"}
        :math:`x_j - x_i` (T(3) only) or :math:`\lVert x_j - x_i \rVert` (E(3)-invariant).
    activation : str
        Kernel MLP activation (``"silu"`` = LieConv's swish).
    dim : int
        Spatial dimension D.
    backend : str

    Params: ``{"kernel": MLP params (D or 1 -> ... -> C), "W_f": (C, C_out), "b_f": (C_out,)}``.
    ``forward(params, graph, f, pos) -> (f', cache)``; ``backward -> (grads, (grad_f, grad_pos))``.

    Raises
    ------
    ValueError
        ``kernel_input="distance"`` with an edge joining coincident points (the distance has no
        derivative there; the relative kernel accepts them, self-loops included); wrong shapes.
    """

    in_channels: int
    out_channels: int
    kernel_hidden: tuple = (16, 16)
    kernel_input: str = "relative"
    activation: str = "silu"
    dim: int = 3
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.in_channels, "PointConv.in_channels", minimum=1)
        check_int(self.out_channels, "PointConv.out_channels", minimum=1)
        check_int(self.dim, "PointConv.dim", minimum=1)
        if self.kernel_input not in ("relative", "distance"):
            raise ValueError(
                "PointConv.kernel_input must be 'relative' or 'distance'; "
                f"got {self.kernel_input!r}"
            )
        object.__setattr__(self, "kernel_hidden", tuple(int(h) for h in self.kernel_hidden))
        check_backend(self.backend, "PointConv")
        _ = self.kernel  # validates sizes and activation

    @property
    def kernel(self) -> MLP:
        d_in = self.dim if self.kernel_input == "relative" else 1
        return MLP(
            (d_in, *self.kernel_hidden, self.in_channels), self.activation, activate_last=True
        )

    def _shapes(self):
        return {
            "kernel": self.kernel._shapes(),
            "W_f": (self.in_channels, self.out_channels),
            "b_f": (self.out_channels,),
        }

    def init(self, rng: np.random.Generator) -> dict:
        bound = 1.0 / np.sqrt(self.in_channels)
        return {
            "kernel": self.kernel.init(rng),
            "W_f": rng.uniform(-bound, bound, size=(self.in_channels, self.out_channels)),
            "b_f": rng.uniform(-bound, bound, size=(self.out_channels,)),
        }

    def forward(self, params, graph, f, pos):
        if not isinstance(graph, Graph):
            raise TypeError(
                f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
            )
        check_params(params, self._shapes(), "PointConv")
        f = as_float64(f, "f", ndim=2)
        if f.shape != (graph.num_nodes, self.in_channels):
            raise ValueError(
                f"f must have shape (num_nodes, {self.in_channels}) = "
                f"({graph.num_nodes}, {self.in_channels}); got {f.shape}"
            )
        pos = as_float64(pos, "pos", ndim=2)
        if pos.shape != (graph.num_nodes, self.dim):
            raise ValueError(
                f"pos must have shape (num_nodes, {self.dim}) = ({graph.num_nodes}, {self.dim}); "
                f"got {pos.shape}"
            )
        edge_vec = edge_vectors(graph, pos)  # x_j - x_i
        if self.kernel_input == "relative":
            a_ij = edge_vec
        else:
            a_ij = geometry.edge_length(edge_vec)[:, None]  # raises on coincident endpoints
        k_ij, kcache = self.kernel.forward(params["kernel"], a_ij)
        agg = scatter.weighted_aggregate(graph, f, k_ij, backend=self.backend)
        out = dense.linear(agg, params["W_f"], params["b_f"])
        return out, PointConvCache(edge_vec, a_ij, k_ij, kcache, f, agg, graph)

    def backward(self, params, cache: PointConvCache, grad_out):
        g = np.asarray(grad_out, dtype=np.float64)
        g_agg, gW, gb = dense.linear_vjp(
            cache.agg, params["W_f"], params["b_f"], g
        )  # out = agg W + b
        g_f, g_k = scatter.weighted_aggregate_vjp(
            cache.graph, cache.f, cache.k_ij, g_agg, backend=self.backend
        )  # agg = sum_j k_ij f_j
        g_kernel, (g_a,) = self.kernel.backward(params["kernel"], cache.kernel, g_k)  # k = MLP(a)
        if self.kernel_input == "relative":
            g_vec = g_a  # a_ij = edge_vec
        else:
            g_vec = geometry.edge_length_vjp(cache.edge_vec, g_a[:, 0])  # a_ij = |edge_vec|
        g_pos = edge_vectors_vjp(cache.graph, g_vec)
        return {"kernel": g_kernel, "W_f": gW, "b_f": gb}, (g_f, g_pos)
