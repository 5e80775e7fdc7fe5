r"""Regular group convolutions on a rotation grid: the lifting layer and the group layer.

A rotation grid :math:`\{R_1, \dots, R_G\} \subset SO(D)`
(:func:`geomp_ref.lie.grids.rotation_grid`) carries signals ``f`` of shape (N, G, C): ``f[n, k]``
is the value at the pose :math:`(R_k, x_n)`. With
:math:`x_{ij} = x_j - x_i` (``edge_vec``, the library's sign; sender j, receiver i):

.. math::

    \text{lifting:}\quad out_i(R_k) &=
        \Big(\sum_{j} \kappa\big(R_k^{-1} x_{ij}\big) \odot f_j\Big) W + b,
    \\
    \text{group:}\quad out_i(R_k) &= \Big(\sum_{j} \kappa\big(R_k^{-1} x_{ij}\big) \odot
        \frac1G \sum_l \kappa^f\big(R_k^{-1} R_l\big) \odot f_j(R_l)\Big) W + b,

with :math:`\kappa : \mathbb{R}^D \to \mathbb{R}^{C_{in}}` the spatial kernel (the ``kernel``
field, a spec of :mod:`geomp_ref.layers.kernels`; default an MLP ``D -> hidden -> hidden ->
C_in``) and :math:`\kappa^f : \mathbb{R}^{D^2} \to \mathbb{R}^{C_{in}}` the fibre kernel on the
entries of the relative rotation (``fiber_kernel``; the D x D matrix flattened row-major; default
an MLP ``D*D -> hidden -> C_in``). The group kernel :math:`k(v, h) = \kappa(v) \odot \kappa^f(h)`
is separable and depthwise, followed by the channel mixing ``W``: the structure of PONITA's
separable fibre-bundle convolution with :math:`S^2` replaced by a grid on SO(D), and a special
case of the general :math:`k(R_i^{-1}(x_j - x_i), R_i^{-1} R_j)`. A B-spline kernel
(``BSplineKernel(in_dim=D, ...)``) gives Bekkers' B-spline group convolution.

Symmetry
--------
For a rotation :math:`Q` in the grid's own group (``"SO2_<n>"``: the cyclic group
:math:`C_m` for every m dividing n; ``"SO3_tetra"`` / ``"SO3_octa"`` / ``"SO3_icosa"``: the
tetrahedral (12), octahedral (24), icosahedral (60) rotation groups) and any translation ``t``:
:math:`out'(R_k) = out(Q^{-1} R_k)` exactly, where the inputs transform the same way
(positions :math:`x \mapsto Qx + t`; grid signals permuted by :math:`f'(R_k) = f(Q^{-1} R_k)`,
:func:`geomp_ref.lie.grids.grid_permutation`, the kind ``"grid:<name>"``). For continuous
rotations there is no exact permutation; the invariance error of the grid mean shrinks with G
(``benchmarks/group_conv_equivariance.py``).

Backward (reverse line order; proof: ``derivations/group_conv.py``):
:math:`\bar v_{k} = \kappa^T(\bar\kappa)` (the kernel's VJP),
:math:`\bar x_{ij} = \sum_k R_k \bar v_{k}`, then ``edge_vectors_vjp``; the aggregation's VJP
is the fused kernel on the reversed graph;
:math:`\bar f_j(R_l) = \frac1G \sum_k \kappa^f(R_k^{-1}R_l) \odot \bar h_j(R_k)`.

References
----------
T. Cohen, M. Welling, "Group Equivariant Convolutional Networks", ICML 2016;
E. J. Bekkers et al., "Fast, Expressive SE(n) Equivariant Networks through Weight-Sharing in
Position-Orientation Space", ICLR 2024.
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
    grad_out,
    node_array,
    positions,
)
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..lie.grids import rotation_grid
from ..ops import activations, dense, scatter
from .base import Block, check_backend, check_params, linear_init
from .kernels import MLPKernel, is_kernel_spec

__all__ = [
    "GroupConv",
    "GroupConvCache",
    "LiftingConv",
    "LiftingConvCache",
    "check_kernel_spec",
]


def check_kernel_spec(spec, name: str, in_dim: int, out_dim: int) -> None:
    """Refuse anything but a kernel spec of :mod:`geomp_ref.layers.kernels` of these sizes."""
    if not is_kernel_spec(spec):
        raise TypeError(
            f"{name} must be a kernel spec of geomp_ref.layers.kernels (MLPKernel, RadialKernel, "
            f"BSplineKernel); got {type(spec).__name__}"
        )
    if (spec.in_dim, spec.out_dim) != (in_dim, out_dim):
        raise ValueError(
            f"{name} must map {in_dim} coordinates to {out_dim} values here; got a spec with "
            f"in_dim={spec.in_dim}, out_dim={spec.out_dim}"
        )


def _post_init(layer, owner: str, fiber: bool) -> None:
    """Validate the shared fields; build the grid and the default kernels."""
    C = check_int(layer.in_channels, f"{owner}.in_channels", minimum=1)
    check_int(layer.out_channels, f"{owner}.out_channels", minimum=1)
    try:
        R = rotation_grid(layer.grid)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{owner}.grid: {exc}") from None
    check_int(layer.hidden, f"{owner}.hidden", minimum=1)
    check_choice(layer.activation, f"{owner}.activation", activations.NAMES)
    check_backend(layer.backend, owner)
    object.__setattr__(layer, "_R", R)
    D = R.shape[-1]
    if layer.kernel is None:
        spec = MLPKernel(D, C, (layer.hidden, layer.hidden), layer.activation)
        object.__setattr__(layer, "kernel", spec)
    check_kernel_spec(layer.kernel, f"{owner}.kernel", D, C)
    if not fiber:
        return
    if layer.fiber_kernel is None:
        spec = MLPKernel(D * D, C, (layer.hidden,), layer.activation)
        object.__setattr__(layer, "fiber_kernel", spec)
    check_kernel_spec(layer.fiber_kernel, f"{owner}.fiber_kernel", D * D, C)
    # the fibre kernel's constant input: the relative rotations R_k^T R_l, flattened row-major
    object.__setattr__(layer, "_rel", np.einsum("kab,lac->klbc", R, R).reshape(-1, D * D))


def _init(layer, rng, fiber: bool) -> dict:
    rng = as_rng(rng, "rng")
    params = {"kernel": layer.kernel.init(rng)}
    if fiber:
        params["fiber_kernel"] = layer.fiber_kernel.init(rng)
    params["W"], params["b"] = linear_init(rng, layer.in_channels, layer.out_channels)
    return params


def _spatial(layer, params, graph, pos):
    """``kappa = k(v)`` (E, G, C_in) with ``v[e, k] = R_k^T x_e`` (E, G, D)."""
    R = layer._R
    G, D = R.shape[0], R.shape[-1]
    E = graph.num_edges
    edge_vec = edge_vectors(graph, pos)
    v = np.einsum("kab,ea->ekb", R, edge_vec)
    kappa, kernel_cache = layer.kernel.forward(params["kernel"], v.reshape(E * G, D))
    return kappa.reshape(E, G, layer.kernel.out_dim), kernel_cache


def _spatial_vjp(layer, params, graph, kernel_cache, grad_kappa):
    """Reverses ``kappa = k(v)``, ``v = R_k^T x`` and ``edge_vec = pos[src] - pos[dst]``."""
    R = layer._R
    E, G = grad_kappa.shape[:2]
    # reverses kappa = k(v)
    grad_kernel, (grad_v,) = layer.kernel.backward(
        params["kernel"], kernel_cache, grad_kappa.reshape(E * G, layer.kernel.out_dim)
    )
    # reverses v[e, k] = R_k^T x_e
    grad_ev = np.einsum("kab,ekb->ea", R, grad_v.reshape(E, G, R.shape[-1]))
    # reverses edge_vec = pos[src] - pos[dst]
    return grad_kernel, edge_vectors_vjp(graph, grad_ev)


def _aggregate(layer, graph, h, kappa):
    N, G, C = h.shape
    E = graph.num_edges
    return scatter.weighted_aggregate(
        graph, h.reshape(N, G * C), kappa.reshape(E, G * C), backend=layer.backend
    ).reshape(N, G, C)


def _aggregate_vjp(layer, graph, h, kappa, grad_y):
    N, G, C = h.shape
    E = graph.num_edges
    grad_h, grad_kappa = scatter.weighted_aggregate_vjp(
        graph, h.reshape(N, G * C), kappa.reshape(E, G * C), grad_y.reshape(N, G * C),
        backend=layer.backend,
    )
    return grad_h.reshape(N, G, C), grad_kappa.reshape(E, G, C)


class LiftingConvCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, C_in)
    kernel: tuple  # the spatial kernel spec's cache
    kappa: np.ndarray  # (E, G, C_in) = k(R_k^T x_ij)
    h: np.ndarray  # (N, G, C_in) = f repeated over the grid
    y: np.ndarray  # (N, G, C_in)


@dataclass(frozen=True)
class LiftingConv(Block):
    r"""Lifting convolution :math:`\mathbb{R}^D \to \mathbb{R}^D \rtimes` grid.

    Parameters
    ----------
    in_channels, out_channels : int
    grid : str
        :func:`geomp_ref.lie.grids.rotation_grid` name; ``dim`` follows from it.
    hidden : int
        Width of the default kernel ``D -> hidden -> hidden -> C_in``.
    activation : str
        Activation of the default kernel.
    backend : str
    kernel : kernel spec or None
        A spec of :mod:`geomp_ref.layers.kernels` mapping D coordinates to C_in values
        (``None``: ``MLPKernel(D, C_in, (hidden, hidden), activation)``).

    ``forward(params, graph, f, pos)``: ``f`` (N, C_in), ``pos`` (N, D) -> (N, G, C_out).
    Params: ``{"kernel": ..., "W": (C_in, C_out), "b": (C_out,)}``.
    """

    in_channels: int
    out_channels: int
    grid: str = "SO2_8"
    hidden: int = 16
    activation: str = "silu"
    backend: str = "numpy"
    kernel: object = None

    def __post_init__(self):
        _post_init(self, "LiftingConv", fiber=False)

    @property
    def rotations(self) -> np.ndarray:
        """The grid, shape (G, D, D) (a copy)."""
        return self._R.copy()

    @property
    def dim(self) -> int:
        return int(self._R.shape[-1])

    def param_shapes(self) -> dict:
        C, Co = self.in_channels, self.out_channels
        return {"kernel": self.kernel.param_shapes(), "W": (C, Co), "b": (Co,)}

    def init(self, rng) -> dict:
        return _init(self, rng, fiber=False)

    def forward(self, params, graph, f, pos):
        check_params(params, self.param_shapes(), "LiftingConv", exact=True)
        check_graph(graph)
        f = node_array(f, "f", graph, self.in_channels)
        pos = positions(pos, graph, self.dim)
        G, C = self._R.shape[0], self.in_channels
        kappa, kernel_cache = _spatial(self, params, graph, pos)
        h = np.broadcast_to(f[:, None, :], (graph.num_nodes, G, C))
        y = _aggregate(self, graph, h, kappa)
        out = dense.linear(y, params["W"], params["b"])
        return out, LiftingConvCache(graph, f, kernel_cache, kappa, h, y)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, LiftingConvCache, "LiftingConv")
        graph, _f, kernel_cache, kappa, h, y = cache
        g = grad_out(grad_out_, y.shape[:2] + (self.out_channels,), "LiftingConv")
        # reverses out = y W + b
        grad_y, grad_W, grad_b = dense.linear_vjp(y, params["W"], params["b"], g)
        # reverses y = weighted_aggregate(h, kappa)
        grad_h, grad_kappa = _aggregate_vjp(self, graph, h, kappa, grad_y)
        # reverses h = f repeated over the grid
        grad_f = grad_h.sum(axis=1)
        # reverses kappa = k(R_k^T x_ij) and edge_vec
        grad_kernel, grad_pos = _spatial_vjp(self, params, graph, kernel_cache, grad_kappa)
        return {"kernel": grad_kernel, "W": grad_W, "b": grad_b}, (grad_f, grad_pos)


class GroupConvCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, G, C_in)
    kernel: tuple  # the spatial kernel spec's cache
    kappa: np.ndarray  # (E, G, C_in)
    fiber_kernel: tuple  # the fibre kernel spec's cache
    kappa_f: np.ndarray  # (G, G, C_in) = k_f(R_k^T R_l)
    h: np.ndarray  # (N, G, C_in)
    y: np.ndarray  # (N, G, C_in)


@dataclass(frozen=True)
class GroupConv(Block):
    r"""Group convolution on :math:`\mathbb{R}^D \rtimes` grid (separable kernel).

    Parameters as :class:`LiftingConv`, plus ``fiber_kernel``: a kernel spec mapping the D*D
    entries of the relative rotation :math:`R_k^T R_l` to C_in values (``None``:
    ``MLPKernel(D*D, C_in, (hidden,), activation)``).

    ``forward(params, graph, f, pos)``: ``f`` (N, G, C_in), ``pos`` (N, D) -> (N, G, C_out).
    Params: ``{"kernel": ..., "fiber_kernel": ..., "W": (C_in, C_out), "b": (C_out,)}``.
    """

    in_channels: int
    out_channels: int
    grid: str = "SO2_8"
    hidden: int = 16
    activation: str = "silu"
    backend: str = "numpy"
    kernel: object = None
    fiber_kernel: object = None

    def __post_init__(self):
        _post_init(self, "GroupConv", fiber=True)

    rotations = LiftingConv.rotations
    dim = LiftingConv.dim

    def param_shapes(self) -> dict:
        C, Co = self.in_channels, self.out_channels
        return {
            "kernel": self.kernel.param_shapes(),
            "fiber_kernel": self.fiber_kernel.param_shapes(),
            "W": (C, Co),
            "b": (Co,),
        }

    def init(self, rng) -> dict:
        return _init(self, rng, fiber=True)

    def forward(self, params, graph, f, pos):
        check_params(params, self.param_shapes(), "GroupConv", exact=True)
        check_graph(graph)
        G, C = self._R.shape[0], self.in_channels
        f = node_array(f, "f", graph, (G, C))
        pos = positions(pos, graph, self.dim)
        kappa, kernel_cache = _spatial(self, params, graph, pos)
        kappa_f, fiber_cache = self.fiber_kernel.forward(params["fiber_kernel"], self._rel)
        kappa_f = kappa_f.reshape(G, G, C)
        h = np.einsum("klc,nlc->nkc", kappa_f, f) / G
        y = _aggregate(self, graph, h, kappa)
        out = dense.linear(y, params["W"], params["b"])
        return out, GroupConvCache(graph, f, kernel_cache, kappa, fiber_cache, kappa_f, h, y)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, GroupConvCache, "GroupConv")
        graph, f, kernel_cache, kappa, fiber_cache, kappa_f, h, y = cache
        N, G, C = f.shape
        g = grad_out(grad_out_, (N, G, self.out_channels), "GroupConv")
        # reverses out = y W + b
        grad_y, grad_W, grad_b = dense.linear_vjp(y, params["W"], params["b"], g)
        # reverses y = weighted_aggregate(h, kappa)
        grad_h, grad_kappa = _aggregate_vjp(self, graph, h, kappa, grad_y)
        # reverses h = (1/G) sum_l kappa_f[k, l] f[l]
        grad_f = np.einsum("klc,nkc->nlc", kappa_f, grad_h) / G
        grad_kappa_f = np.einsum("nkc,nlc->klc", grad_h, f) / G
        # reverses kappa_f = k_f(R_k^T R_l) (a constant input: only params get gradients)
        grad_fiber, _ = self.fiber_kernel.backward(
            params["fiber_kernel"], fiber_cache, grad_kappa_f.reshape(G * G, C)
        )
        # reverses kappa = k(R_k^T x_ij) and edge_vec
        grad_kernel, grad_pos = _spatial_vjp(self, params, graph, kernel_cache, grad_kappa)
        grads = {"kernel": grad_kernel, "fiber_kernel": grad_fiber, "W": grad_W, "b": grad_b}
        return grads, (grad_f, grad_pos)
