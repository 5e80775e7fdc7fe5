r"""Convolution of node features with a learned linear map of a per-edge basis: PONITA's ``Conv``.

.. math::

    out_i = \sum_{j \in N(i)} \kappa_{ij} \cdot f_j + b, \qquad
    \kappa_{ij} = s\, k(\mathrm{basis}_{ij}),

with ``mixing`` ``"depthwise"`` (PONITA ``groups = C``: :math:`\kappa_{ij} \odot f_j`,
``C_in = C_out``), ``"full"`` (PONITA ``groups = 1``: a (C_out, C_in) matrix per edge, read
row-major from :math:`C_{out} C_{in}` kernel outputs; the published code fails there because
``out_channels`` is never set) or ``"linear"`` (depthwise, then :math:`y W + b`). The basis is
computed once per forward and shared by every layer in PONITA's point-cloud model (kernel MLP of
the distances or point-cloud invariants times the polynomial window); :math:`s` is the fixed factor
``kernel_scale``: PONITA's first training call multiplies its kernel weight by
:math:`\mathrm{std}(f)/\mathrm{std}(y)` *after* computing that call's output
(:meth:`BasisConv.calibration_scales`); a callibrated module already holds the re-scaled weight.

Backward (reverse line order): the aggregation's VJP (fused kernel on the reversed graph, or a
gather at the receivers and a scatter at the senders for ``"full"``), then the kernel's VJP, whose
coordinate cotangent is the basis gradient (sum it over the layers that share the basis).
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
    check_positive,
    edge_array,
    grad_out,
    node_array,
)
from ..graph import Graph
from ..ops import dense, scatter
from .base import Block, check_backend, check_params, linear_init
from .group_conv import check_kernel_spec
from .kernels import MLPKernel

__all__ = ["BasisConv", "BasisConvCache"]


class BasisConvCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, C_in)
    kernel: tuple  # the kernel spec's cache
    kappa: np.ndarray  # (E, K)
    y: np.ndarray  # (N, C_y), before W / b


@dataclass(frozen=True)
class BasisConv(Block):
    r"""Convolution of node features with a linear map of a per-edge basis (PONITA's ``Conv``).

    Parameters
    ----------
    in_channels, out_channels : int
    basis_dim : int
    mixing : {"depthwise", "full", "linear"}
        Module docstring; ``"depthwise"`` needs ``in_channels == out_channels``.
    bias : bool
    kernel : kernel spec or None
        Maps the basis (B) to K = C_in values (C_out * C_in for ``"full"``); default PONITA's
        ``MLPKernel(B, K, hidden=(), bias=False)``.
    kernel_scale : float
        A fixed factor on the kernel (PONITA's calibration).
    backend : str

    Params: ``{"kernel": ..., "W": (C_in, C_out) ("linear"), "b": (C_out,) (bias)}``.

    ``forward(params, graph, f, basis)``: ``f`` (N, C_in), ``basis`` (E, B) -> (N, C_out).
    """

    in_channels: int
    out_channels: int
    basis_dim: int
    mixing: str = "depthwise"
    bias: bool = True
    kernel: object = None
    kernel_scale: float = 1.0
    backend: str = "numpy"

    def __post_init__(self):
        o = "BasisConv"
        C = check_int(self.in_channels, f"{o}.in_channels", minimum=1)
        Co = check_int(self.out_channels, f"{o}.out_channels", minimum=1)
        B = check_int(self.basis_dim, f"{o}.basis_dim", minimum=1)
        check_choice(self.mixing, f"{o}.mixing", ("depthwise", "full", "linear"))
        if self.mixing == "depthwise" and C != Co:
            raise ValueError(
                f"{o}.mixing='depthwise' needs in_channels == out_channels; got {C} and {Co}"
            )
        check_bool(self.bias, f"{o}.bias")
        check_positive(self.kernel_scale, f"{o}.kernel_scale")
        check_backend(self.backend, o)
        K = C * Co if self.mixing == "full" else C
        if self.kernel is None:
            object.__setattr__(self, "kernel", MLPKernel(B, K, hidden=(), bias=False))
        check_kernel_spec(self.kernel, f"{o}.kernel", B, K)

    def param_shapes(self) -> dict:
        shapes = {"kernel": self.kernel.param_shapes()}
        if self.mixing == "linear":
            shapes["W"] = (self.in_channels, self.out_channels)
        if self.bias:
            shapes["b"] = (self.out_channels,)
        return shapes

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        params = {"kernel": self.kernel.init(rng)}
        # the bias bound follows torch.nn.Linear(C_in, C_out) in every mixing mode
        W, b = linear_init(rng, self.in_channels, self.out_channels, bias=self.bias)
        if self.mixing == "linear":
            params["W"] = W
        if self.bias:
            params["b"] = b
        return params

    def forward(self, params, graph, f, basis):
        check_params(params, self.param_shapes(), "BasisConv", exact=True)
        check_graph(graph)
        f = node_array(f, "f", graph, self.in_channels)
        basis = edge_array(basis, "basis", graph, self.basis_dim)
        C, E = self.in_channels, graph.num_edges
        k, kernel_cache = self.kernel.forward(params["kernel"], basis)
        kappa = self.kernel_scale * k
        if self.mixing == "full":
            m = np.einsum("edc,ec->ed", kappa.reshape(E, self.out_channels, C), f[graph.src])
            y = scatter.aggregate(graph, m, backend=self.backend)
        else:
            y = scatter.weighted_aggregate(graph, f, kappa, backend=self.backend)
        b = params.get("b") if self.bias else None
        if self.mixing == "linear":
            out = dense.linear(y, params["W"], b)
        else:
            out = y + b if b is not None else y.copy()
        return out, BasisConvCache(graph, f, kernel_cache, kappa, y)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, BasisConvCache, "BasisConv")
        graph, f, kernel_cache, kappa, y = cache
        g = grad_out(grad_out_, (graph.num_nodes, self.out_channels), "BasisConv")
        N, C, E = graph.num_nodes, self.in_channels, graph.num_edges
        grads = {}
        b = params.get("b") if self.bias else None
        # reverses out = y W + b (or y + b)
        if self.mixing == "linear":
            grad_y, grads["W"], grad_b = dense.linear_vjp(y, params["W"], b, g)
        else:
            grad_y, grad_b = g, g.sum(axis=0)
        if self.bias:
            grads["b"] = grad_b
        if self.mixing == "full":
            # reverses y = aggregate(m): a gather at the receivers
            grad_m = scatter.gather(grad_y, graph.dst)
            # reverses m[e, d] = sum_c kappa[e, d, c] f[src, c]
            grad_kappa = np.einsum("ed,ec->edc", grad_m, f[graph.src])
            grad_kappa = grad_kappa.reshape(E, self.out_channels * C)
            grad_f_src = np.einsum("edc,ed->ec", kappa.reshape(E, self.out_channels, C), grad_m)
            grad_f = scatter.scatter_sum(grad_f_src, graph.src, N, backend=self.backend)
        else:
            # reverses y = weighted_aggregate(f, kappa)
            grad_f, grad_kappa = scatter.weighted_aggregate_vjp(
                graph, f, kappa, grad_y, backend=self.backend
            )
        # reverses kappa = s k(basis)
        grads["kernel"], (grad_basis,) = self.kernel.backward(
            params["kernel"], kernel_cache, self.kernel_scale * grad_kappa
        )
        return grads, (grad_f, grad_basis)

    def calibration_scales(self, cache) -> float:
        r"""PONITA's first-training-call factor :math:`\mathrm{std}(f)/\mathrm{std}(y)` (unbiased,
        ``y`` before W and b); use it as ``kernel_scale``."""
        check_cache(cache, BasisConvCache, "BasisConv")
        return float(np.std(cache.f, ddof=1)) / float(np.std(cache.y, ddof=1))
