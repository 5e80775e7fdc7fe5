r"""PointConv: a point convolution whose kernel is a function of the relative position.

.. math::

    a_{ij} = x_j - x_i \ (\texttt{kernel\_input="relative"}) \quad\text{or}\quad
    a_{ij} = \lVert x_j - x_i \rVert \ (\texttt{"distance"}),

    k_{ij} = k(a_{ij}) \in \mathbb{R}^C, \qquad
    \mathrm{agg}_i = \sum_j k_{ij} \odot f_j, \qquad
    f'_i = \phi_f(\mathrm{agg}_i) = \mathrm{agg}_i W_f + b_f .

The kernel :math:`k` is a kernel spec (:mod:`geomp_ref.layers.kernels`) with ``out_dim = C``:
by default an MLP ``D (or 1) -> 16 -> 16 -> C`` that, like LieConv's WeightNet, applies its
activation after the last layer too; a :class:`~geomp_ref.layers.kernels.BSplineKernel` gives
Bekkers' B-spline kernels on :math:`\mathbb{R}^D`. The kernel is depthwise (one weight per edge
and channel), so the sum is the fused kernel :func:`geomp_ref.ops.scatter.weighted_aggregate` on
the chosen backend; the channel mixing is in :math:`\phi_f`.

Symmetry: the relative kernel sees :math:`x_j - x_i`, which is translation-invariant but rotates
with the input, so the layer is only T(3)-equivariant (case group ``"T3"``; rotation tests must
*fail* by far). The distance kernel is E(3)-invariant.

Sign convention: :math:`x_j - x_i` (sender minus receiver, ``docs/conventions.rst``). The PointConv
of mfinzi/LieConv feeds ``query - neighbour`` :math:`= x_i - x_j` to its kernel, so its kernel
corresponds to ours composed with :math:`a \mapsto -a` (negate the first layer's weights).

Backward: :math:`\bar k_{ij} = \bar{\mathrm{agg}}_i \odot f_j`, :math:`\bar f_j = \sum_i k_{ij}
\odot \bar{\mathrm{agg}}_i` (the same fused kernel on the reversed graph), then the kernel spec's
VJP and :func:`geomp_ref.graph.edge_vectors_vjp` (distance kernel: through
:math:`a/\lVert a \rVert` first). The pieces are proven in ``derivations/gather_scatter.py``,
``derivations/dense_activations.py`` and ``derivations/bspline.py``.

References: W. Wu, Z. Qi, L. Fuxin, "PointConv: Deep convolutional networks on 3D point clouds",
CVPR 2019, eq. (2); M. Finzi et al., "Generalizing convolutional neural networks for equivariance to
Lie groups on arbitrary continuous data" (LieConv), ICML 2020, §4; E. J. Bekkers, "B-Spline CNNs
on Lie groups", ICLR 2020.
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
    check_params,
    grad_out,
    node_array,
    positions,
)
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import dense, geometry, scatter
from .base import Block, check_backend
from .kernels import resolve_kernel, with_backend

__all__ = ["PointConv", "PointConvCache"]

_DEFAULT_KERNEL = {"kernel_hidden": (16, 16), "activation": "silu", "activate_last": True}


class PointConvCache(NamedTuple):
    edge_vec: np.ndarray  # (E, D) x_j - x_i
    a_ij: np.ndarray  # (E, D) or (E, 1) kernel input
    k_ij: np.ndarray  # (E, C) kernel values
    kernel: tuple  # the kernel spec's cache
    f: np.ndarray  # (N, C)
    agg: np.ndarray  # (N, C)
    graph: Graph


@dataclass(frozen=True)
class PointConv(Block):
    r"""Point convolution :math:`f'_i = \phi_f(\sum_j k(a_{ij}) \odot f_j)`.

    Parameters
    ----------
    in_channels : int
        C.
    out_channels : int
        Output width of :math:`\phi_f`.
    kernel_hidden : tuple of int, optional
        Hidden widths of the default kernel MLP (``None``: (16, 16)).
    kernel_input : {"relative", "distance"}
        :math:`x_j - x_i` (T(3) only) or :math:`\lVert x_j - x_i \rVert` (E(3)-invariant).
    activation : str, optional
        Activation of the default kernel MLP (``None``: ``"silu"``, LieConv's swish).
    dim : int
        Spatial dimension D.
    backend : str
    kernel : kernel spec, optional
        Any spec of :mod:`geomp_ref.layers.kernels` with ``in_dim`` D (relative) or 1 (distance)
        and ``out_dim`` C. Leave ``kernel_hidden`` and ``activation`` as ``None`` when given.

    Params: ``{"kernel": kernel params, "W_f": (C, C_out), "b_f": (C_out,)}``.
    ``forward(params, graph, f, pos) -> (f', cache)``; ``backward -> (grads, (grad_f, grad_pos))``.

    Raises
    ------
    ValueError
        ``kernel_input="distance"`` with an edge joining coincident points (the distance has no
        derivative there; the relative kernel accepts them, self-loops included); wrong shapes.
    """

    in_channels: int
    out_channels: int
    kernel_hidden: tuple | None = None
    kernel_input: str = "relative"
    activation: str | None = None
    dim: int = 3
    backend: str = "numpy"
    kernel: object = None

    def __post_init__(self):
        check_int(self.in_channels, "PointConv.in_channels", minimum=1)
        check_int(self.out_channels, "PointConv.out_channels", minimum=1)
        check_int(self.dim, "PointConv.dim", minimum=1)
        check_choice(self.kernel_input, "PointConv.kernel_input", ("relative", "distance"))
        check_backend(self.backend, "PointConv")
        options = {"kernel_hidden": self.kernel_hidden, "activation": self.activation}
        spec = resolve_kernel(
            "PointConv", self.kernel, options, _DEFAULT_KERNEL,
            in_dim=self.dim if self.kernel_input == "relative" else 1, out_dim=self.in_channels,
        )
        object.__setattr__(self, "kernel", with_backend(spec, self.backend))  # one backend field
        if self.kernel_hidden is not None:
            object.__setattr__(self, "kernel_hidden", tuple(self.kernel_hidden))

    def param_shapes(self) -> dict:
        return {
            "kernel": self.kernel.param_shapes(),
            "W_f": (self.in_channels, self.out_channels),
            "b_f": (self.out_channels,),
        }

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        bound = 1.0 / np.sqrt(self.in_channels)
        return {
            "kernel": self.kernel.init(rng),
            "W_f": rng.uniform(-bound, bound, size=(self.in_channels, self.out_channels)),
            "b_f": rng.uniform(-bound, bound, size=(self.out_channels,)),
        }

    def forward(self, params, graph, f, pos):
        check_params(params, self.param_shapes(), "PointConv", exact=True)
        check_graph(graph)
        f = node_array(f, "f", graph, self.in_channels)
        pos = positions(pos, graph, self.dim)
        edge_vec = edge_vectors(graph, pos)  # x_j - x_i
        if self.kernel_input == "relative":
            a_ij = edge_vec
        else:
            a_ij = geometry.edge_length(edge_vec)[:, None]  # raises on coincident endpoints
        k_ij, kcache = self.kernel.forward(params["kernel"], a_ij)
        agg = scatter.weighted_aggregate(graph, f, k_ij, backend=self.backend)
        out = dense.linear(agg, params["W_f"], params["b_f"])
        return out, PointConvCache(edge_vec, a_ij, k_ij, kcache, f, agg, graph)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, PointConvCache, "PointConv")
        g = grad_out(grad_out_, (cache.graph.num_nodes, self.out_channels), "PointConv")
        # reverses out = agg W + b
        g_agg, gW, gb = dense.linear_vjp(cache.agg, params["W_f"], params["b_f"], g)
        # reverses agg = sum_j k_ij f_j
        g_f, g_k = scatter.weighted_aggregate_vjp(
            cache.graph, cache.f, cache.k_ij, g_agg, backend=self.backend
        )
        # reverses k = kernel(a)
        g_kernel, (g_a,) = self.kernel.backward(params["kernel"], cache.kernel, g_k)
        # reverses a_ij = edge_vec or |edge_vec|, then edge_vec = x_j - x_i
        if self.kernel_input == "relative":
            g_vec = g_a
        else:
            g_vec = geometry.edge_length_vjp(cache.edge_vec, g_a[:, 0])
        g_pos = edge_vectors_vjp(cache.graph, g_vec)
        return {"kernel": g_kernel, "W_f": gW, "b_f": gb}, (g_f, g_pos)
