r"""Regular group convolutions on a rotation grid: the lifting layer and the group layer.

A rotation grid :math:`\{R_1, \dots, R_G\} \subset SO(D)` (``rotation_grid(name)``) carries
signals ``f`` of shape (N, G, C): ``f[n, k]`` is the value at the pose :math:`(R_k, x_n)`. With
:math:`x_{ij} = x_j - x_i` (``edge_vec``, the library's sign; sender j, receiver i):

.. math::

    \text{lifting:}\quad out_i(R_k) &=
        \Big(\sum_{j} \kappa\big(R_k^{-1} x_{ij}\big) \odot f_j\Big) W + b,
    \\
    \text{group:}\quad out_i(R_k) &= \Big(\sum_{j} \kappa\big(R_k^{-1} x_{ij}\big) \odot
        \frac1G \sum_l \kappa^f\big(R_k^{-1} R_l\big) \odot f_j(R_l)\Big) W + b,

with :math:`\kappa = \mathrm{MLP}_s : \mathbb{R}^D \to \mathbb{R}^{C_{in}}` and
:math:`\kappa^f = \mathrm{MLP}_f` on the entries of the relative rotation (a D x D matrix,
flattened). The group kernel :math:`k(v, h) = \kappa(v) \odot \kappa^f(h)` is separable and
depthwise, followed by the channel mixing ``W`` (the structure of PONITA's fibre-bundle
convolution, variants_spec §7, §9, with :math:`S^2` replaced by a grid on SO(D)); it is a special
case of the general :math:`k(R_i^{-1}(x_j - x_i), R_i^{-1} R_j)`.

Symmetry
--------
For a rotation :math:`Q` in the grid's own group (``"SO2_<n>"``: the cyclic group
:math:`C_m` for every m dividing n; ``"SO3_tetra"`` / ``"SO3_octa"`` / ``"SO3_icosa"``: the
tetrahedral (12), octahedral (24), icosahedral (60) rotation groups) and any translation ``t``:
:math:`out'(R_k) = out(Q^{-1} R_k)` exactly, where the inputs transform the same way
(positions :math:`x \mapsto Qx + t`; grid signals permuted by :math:`f'(R_k) = f(Q^{-1} R_k)`, the
kind ``"grid:<name>"``). For continuous rotations there is no exact permutation; the invariance
error of the grid mean shrinks with G (``benchmarks/group_conv_equivariance.py``).

Backward (reverse line order; proof: ``derivations/group_conv.py``):
:math:`\bar v_{k} = \mathrm{MLP}_s^T(\bar\kappa)`, :math:`\bar x_{ij} = \sum_k R_k \bar v_{k}`, then
``edge_vectors_vjp``; the aggregation's VJP is the fused kernel on the reversed graph;
:math:`\bar f_j(R_l) = \frac1G \sum_k \kappa^f(R_k^{-1}R_l) \odot \bar h_j(R_k)`.

References
----------
T. Cohen, M. Welling, "Group Equivariant Convolutional Networks", ICML 2016;
E. J. Bekkers et al., "Fast, Expressive SE(n) Equivariant Networks through Weight-Sharing in
Position-Orientation Space", ICLR 2024.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..lie import grids
from ..ops import dense, scatter
from .base import Block, check_backend, check_params
from .mlp import MLP, MLPCache

__all__ = [
    "GroupConv",
    "GroupConvCache",
    "LiftingConv",
    "LiftingConvCache",
    "grid_permutation",
    "rotation_grid",
]


def rotation_grid(name: str) -> np.ndarray:
    """Rotation grid by name, shape (G, D, D).

    ``"SO2_<n>"``: rotations by ``2 pi k / n``, k = 0..n-1 (:func:`geomp_ref.lie.grids.so2_grid`);
    ``"SO3_tetra"``, ``"SO3_octa"``, ``"SO3_icosa"``: the polyhedral rotation groups (12, 24, 60
    elements, identity first; :func:`geomp_ref.lie.grids.so3_polyhedral`).
    """
    if not isinstance(name, str):
        raise TypeError(
            f"grid must be a str such as 'SO2_8' or 'SO3_octa'; got {type(name).__name__}"
        )
    m = re.fullmatch(r"SO2_(\d+)", name)
    if m and int(m.group(1)) >= 1:
        t = grids.so2_grid(int(m.group(1)))
        c, s = np.cos(t), np.sin(t)
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], axis=1)
    m = re.fullmatch(r"SO3_(tetra|octa|icosa)", name)
    if m:
        return grids.so3_polyhedral(m.group(1))
    raise ValueError(
        f"grid must be 'SO2_<n>' (n >= 1), 'SO3_tetra', 'SO3_octa' or 'SO3_icosa'; got {name!r}"
    )


def grid_permutation(elements: np.ndarray, Q: np.ndarray, *, tol: float = 1e-9) -> np.ndarray:
    r"""Index map of the left action: ``perm[k]`` = index of :math:`Q^{-1} e_k` in ``elements``.

    ``elements`` (G, D, D) rotations or (G, D) directions. A signal transforms as
    ``f'[:, k] = f[:, perm[k]]`` (:math:`f'(e) = f(Q^{-1} e)`). Raises ``ValueError`` if ``Q`` does
    not map the grid onto itself (within ``tol``).
    """
    e = np.asarray(elements, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    moved = np.einsum("ba,gb...->ga...", Q, e)  # Q^T e_k
    d = np.abs(moved.reshape(len(e), 1, -1) - e.reshape(1, len(e), -1)).max(axis=-1)
    perm = np.argmin(d, axis=1)
    if d[np.arange(len(e)), perm].max() > tol or len(set(perm.tolist())) != len(e):
        raise ValueError(
            "Q is not a symmetry of the grid: the grid axis cannot be permuted "
            "exactly (use a rotation of the grid's own group)"
        )
    return perm


# --- layers -----------------------------------------------------------------------------------


def _check_common(layer, graph, pos):
    if not isinstance(graph, Graph):
        raise TypeError(
            f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
        )
    pos = as_float64(pos, "pos", ndim=2)
    if pos.shape != (graph.num_nodes, layer.dim):
        raise ValueError(
            f"pos must have shape (num_nodes, {layer.dim}) = "
            f"({graph.num_nodes}, {layer.dim}); got {pos.shape}"
        )
    return pos


def _post_init(layer, owner):
    for name in ("in_channels", "out_channels", "hidden"):
        v = getattr(layer, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{owner}.{name} must be an int >= 1; got {v!r}")
    try:
        R = rotation_grid(layer.grid)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{owner}.grid: {exc}") from None
    check_backend(layer.backend, owner)
    object.__setattr__(layer, "_R", R)


def _rotate_in(R, edge_vec):
    """``v[e, k] = R_k^T x_e`` (E, G, D)."""
    return np.einsum("kab,ea->ekb", R, edge_vec)


def _rotate_in_vjp(R, grad_v):
    """Reverses ``v[e, k] = R_k^T x_e``: ``grad_x[e] = sum_k R_k grad_v[e, k]``."""
    return np.einsum("kab,ekb->ea", R, grad_v)


class LiftingConvCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, C_in)
    edge_vec: np.ndarray  # (E, D)
    v: np.ndarray  # (E, G, D) = R_k^T x_ij
    kappa: np.ndarray  # (E, G, C_in)
    spatial: MLPCache
    h: np.ndarray  # (N, G, C_in) = f repeated over the grid
    y: np.ndarray  # (N, G, C_in)


@dataclass(frozen=True)
class LiftingConv(Block):
    r"""Lifting convolution :math:`\mathbb{R}^D \to \mathbb{R}^D \rtimes` grid.

    Parameters
    ----------
    in_channels, out_channels : int
    grid : str
        See :func:`rotation_grid`; ``dim`` follows from it.
    hidden : int
        Width of the kernel MLP ``D -> hidden -> hidden -> C_in``.
    activation : str
    backend : str

    ``forward(params, graph, f, pos)``: ``f`` (N, C_in), ``pos`` (N, D) -> (N, G, C_out).
    Params: ``{"spatial": MLP, "W": (C_in, C_out), "b": (C_out,)}``.
    """

    in_channels: int
    out_channels: int
    grid: str = "SO2_8"
    hidden: int = 16
    activation: str = "silu"
    backend: str = "numpy"

    def __post_init__(self):
        _post_init(self, "LiftingConv")

    @property
    def rotations(self) -> np.ndarray:
        return self._R.copy()

    @property
    def dim(self) -> int:
        return int(self._R.shape[-1])

    @property
    def spatial_net(self) -> MLP:
        return MLP((self.dim, self.hidden, self.hidden, self.in_channels), self.activation)

    def init(self, rng: np.random.Generator) -> dict:
        k = 1.0 / np.sqrt(self.in_channels)
        return {
            "spatial": self.spatial_net.init(rng),
            "W": rng.uniform(-k, k, size=(self.in_channels, self.out_channels)),
            "b": rng.uniform(-k, k, size=(self.out_channels,)),
        }

    def forward(self, params, graph, f, pos):
        check_params(
            params,
            {"W": (self.in_channels, self.out_channels), "b": (self.out_channels,)},
            "LiftingConv",
        )
        pos = _check_common(self, graph, pos)
        f = as_float64(f, "f", ndim=2)
        if f.shape != (graph.num_nodes, self.in_channels):
            raise ValueError(
                f"f must have shape (num_nodes, in_channels) = "
                f"({graph.num_nodes}, {self.in_channels}); got {f.shape}"
            )
        R = self._R
        N, G, C, E = graph.num_nodes, R.shape[0], self.in_channels, graph.num_edges
        edge_vec = edge_vectors(graph, pos)
        v = _rotate_in(R, edge_vec)
        kappa, spatial_cache = self.spatial_net.forward(params["spatial"], v)
        h = np.broadcast_to(f[:, None, :], (N, G, C))
        y = scatter.weighted_aggregate(
            graph, h.reshape(N, G * C), kappa.reshape(E, G * C), backend=self.backend
        ).reshape(N, G, C)
        out = dense.linear(y, params["W"], params["b"])
        return out, LiftingConvCache(graph, f, edge_vec, v, kappa, spatial_cache, h, y)

    def backward(self, params, cache: LiftingConvCache, grad_out):
        graph, _f, _edge_vec, _v, kappa, sc, h, y = cache
        N, G, C = h.shape
        E = graph.num_edges
        # reverses out = y W + b
        grad_y, grad_W, grad_b = dense.linear_vjp(y, params["W"], params["b"], grad_out)
        # reverses y = weighted_aggregate(h, kappa)
        grad_h, grad_kappa = scatter.weighted_aggregate_vjp(
            graph,
            h.reshape(N, G * C),
            kappa.reshape(E, G * C),
            grad_y.reshape(N, G * C),
            backend=self.backend,
        )
        # reverses h = f repeated over the grid
        grad_f = grad_h.reshape(N, G, C).sum(axis=1)
        # reverses kappa = MLP_s(v) and v = R_k^T x_ij
        grad_spatial, (grad_v,) = self.spatial_net.backward(
            params["spatial"], sc, grad_kappa.reshape(E, G, C)
        )
        grad_ev = _rotate_in_vjp(self._R, grad_v)
        # reverses edge_vec = pos[src] - pos[dst]
        grad_pos = edge_vectors_vjp(graph, grad_ev) if E else np.zeros((N, self.dim))
        return {"spatial": grad_spatial, "W": grad_W, "b": grad_b}, (grad_f, grad_pos)


class GroupConvCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, G, C_in)
    edge_vec: np.ndarray  # (E, D)
    v: np.ndarray  # (E, G, D)
    kappa: np.ndarray  # (E, G, C_in)
    spatial: MLPCache
    kappa_f: np.ndarray  # (G, G, C_in) = MLP_f(R_k^T R_l)
    fiber: MLPCache
    h: np.ndarray  # (N, G, C_in)
    y: np.ndarray  # (N, G, C_in)


@dataclass(frozen=True)
class GroupConv(Block):
    r"""Group convolution on :math:`\mathbb{R}^D \rtimes` grid (separable kernel).

    Parameters as :class:`LiftingConv`, plus the fibre MLP ``D*D -> hidden -> C_in`` on the
    flattened relative rotation :math:`R_k^T R_l`.

    ``forward(params, graph, f, pos)``: ``f`` (N, G, C_in), ``pos`` (N, D) -> (N, G, C_out).
    Params: ``{"spatial": MLP, "fiber": MLP, "W": (C_in, C_out), "b": (C_out,)}``.
    """

    in_channels: int
    out_channels: int
    grid: str = "SO2_8"
    hidden: int = 16
    activation: str = "silu"
    backend: str = "numpy"

    def __post_init__(self):
        _post_init(self, "GroupConv")
        R = self._R
        object.__setattr__(
            self, "_rel", np.einsum("kab,lac->klbc", R, R).reshape(R.shape[0], R.shape[0], -1)
        )

    rotations = LiftingConv.rotations
    dim = LiftingConv.dim
    spatial_net = LiftingConv.spatial_net

    @property
    def fiber_net(self) -> MLP:
        return MLP((self.dim * self.dim, self.hidden, self.in_channels), self.activation)

    def init(self, rng: np.random.Generator) -> dict:
        k = 1.0 / np.sqrt(self.in_channels)
        return {
            "spatial": self.spatial_net.init(rng),
            "fiber": self.fiber_net.init(rng),
            "W": rng.uniform(-k, k, size=(self.in_channels, self.out_channels)),
            "b": rng.uniform(-k, k, size=(self.out_channels,)),
        }

    def forward(self, params, graph, f, pos):
        check_params(
            params,
            {"W": (self.in_channels, self.out_channels), "b": (self.out_channels,)},
            "GroupConv",
        )
        pos = _check_common(self, graph, pos)
        R = self._R
        N, G, C, E = graph.num_nodes, R.shape[0], self.in_channels, graph.num_edges
        f = as_float64(f, "f", ndim=3)
        if f.shape != (N, G, C):
            raise ValueError(
                f"f must have shape (num_nodes, G, in_channels) = ({N}, {G}, {C}); got {f.shape}"
            )
        edge_vec = edge_vectors(graph, pos)
        v = _rotate_in(R, edge_vec)
        kappa, spatial_cache = self.spatial_net.forward(params["spatial"], v)
        kappa_f, fiber_cache = self.fiber_net.forward(params["fiber"], self._rel)
        h = np.einsum("klc,nlc->nkc", kappa_f, f) / G
        y = scatter.weighted_aggregate(
            graph, h.reshape(N, G * C), kappa.reshape(E, G * C), backend=self.backend
        ).reshape(N, G, C)
        out = dense.linear(y, params["W"], params["b"])
        return out, GroupConvCache(
            graph, f, edge_vec, v, kappa, spatial_cache, kappa_f, fiber_cache, h, y
        )

    def backward(self, params, cache: GroupConvCache, grad_out):
        graph, f, _edge_vec, _v, kappa, sc, kappa_f, fc, h, y = cache
        N, G, C = f.shape
        E = graph.num_edges
        # reverses out = y W + b
        grad_y, grad_W, grad_b = dense.linear_vjp(y, params["W"], params["b"], grad_out)
        # reverses y = weighted_aggregate(h, kappa)
        grad_h, grad_kappa = scatter.weighted_aggregate_vjp(
            graph,
            h.reshape(N, G * C),
            kappa.reshape(E, G * C),
            grad_y.reshape(N, G * C),
            backend=self.backend,
        )
        grad_h = grad_h.reshape(N, G, C)
        # reverses h = (1/G) sum_l kappa_f[k, l] f[l]
        grad_f = np.einsum("klc,nkc->nlc", kappa_f, grad_h) / G
        grad_kappa_f = np.einsum("nkc,nlc->klc", grad_h, f) / G
        # reverses kappa_f = MLP_f(R_k^T R_l) (a constant input: only params get gradients)
        grad_fiber, _ = self.fiber_net.backward(params["fiber"], fc, grad_kappa_f)
        # reverses kappa = MLP_s(v) and v = R_k^T x_ij
        grad_spatial, (grad_v,) = self.spatial_net.backward(
            params["spatial"], sc, grad_kappa.reshape(E, G, C)
        )
        grad_ev = _rotate_in_vjp(self._R, grad_v)
        # reverses edge_vec = pos[src] - pos[dst]
        grad_pos = edge_vectors_vjp(graph, grad_ev) if E else np.zeros((N, self.dim))
        grads = {"spatial": grad_spatial, "fiber": grad_fiber, "W": grad_W, "b": grad_b}
        return grads, (grad_f, grad_pos)
