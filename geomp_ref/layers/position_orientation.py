r"""Convolution on position-orientation space :math:`\mathbb{R}^3 \times S^2` (and
:math:`\mathbb{R}^2 \times S^1`): PONITA's separable fibre-bundle convolution.

Every node carries a signal on a fixed grid of orientations :math:`o_1, \dots, o_G` (unit vectors),
``f`` of shape (N, G, C). For the edge j -> i with :math:`x_{ij} = x_j - x_i` (``edge_vec``, the
library's sign) and grid orientation :math:`o` the pair invariants (Bekkers et al. 2024;
variants_spec §9) are

.. math::

    \mathrm{inv1}_{ij}(o) = x_{ij} \cdot o, \qquad
    \mathrm{inv2}_{ij}(o) = \lVert x_{ij} - (x_{ij}\cdot o)\, o \rVert \ (D = 3), \qquad
    \mathrm{inv2}_{ij}(o) = o_1 x_{ij,2} - o_2 x_{ij,1} \ (D = 2,\ \text{signed}),

and the fibre attribute is the raw dot product :math:`A_{kl} = o_k \cdot o_l` (PONITA's code; the
paper's angle is :math:`\arccos A_{kl}`). The layer is PONITA's separable, depthwise convolution
followed by a channel mixing:

.. math::

    \kappa_{ij}(o) &= \mathrm{MLP}_s\big(\mathrm{inv1}_{ij}(o), \mathrm{inv2}_{ij}(o)\big)
        \in \mathbb{R}^{C_{in}}, \qquad
    y1_i(o) = \sum_{j \in N(i)} \kappa_{ij}(o) \odot f_j(o), \\
    \kappa^f_{kl} &= \mathrm{MLP}_f(A_{kl}) \in \mathbb{R}^{C_{in}}, \qquad
    y2_i(o_l) = \frac1G \sum_k \kappa^f_{kl} \odot y1_i(o_k), \qquad
    out_i(o) = y2_i(o)\, W + b .

``pool=True`` returns the grid mean :math:`\frac1G \sum_o out_i(o)` (N, C_out) instead.
There is no first-call rescaling of the kernels (PONITA's "callibrate" step is data-dependent
state; here params are exactly what ``init`` returned).

Symmetry (what is exact, what is not)
-------------------------------------
* ``inv1``, ``inv2`` (3D) and ``A`` are invariant under :math:`x \mapsto Qx + t`,
  :math:`o \mapsto Qo`
  for every :math:`Q \in O(3)`; the 2D ``inv2`` is invariant under SO(2) only (reflections flip its
  sign). Passing the grid ``ori`` as an input and transforming it with the positions therefore
  gives an output that is **exactly** E(3)-invariant (SE(2) in 2D), grid index by grid index.
* With the grid held fixed, a rotation that maps the grid onto itself (the octahedron / icosahedron
  grids under their rotation groups, the uniform S^1 grid under its cyclic group) permutes the grid
  axis of the output exactly. For other rotations the equivariance of ``out`` and the invariance of
  the pooled output hold only approximately; the error shrinks with G (benchmarks/
  group_conv_equivariance.py prints it). Translations and node relabelling are always exact.

Singular points: ``inv2`` (3D) is a norm, not differentiable where :math:`x_{ij} \parallel o`
(including self-loops, :math:`x_{ij} = 0`); its VJP uses the zero subgradient there.

Backward (reverse line order; proof: ``derivations/position_orientation.py``), with
:math:`u = r / \lVert r \rVert`, :math:`r = x - \mathrm{inv1}\, o` and
:math:`a = \overline{\mathrm{inv1}} - \overline{\mathrm{inv2}}\,(u\cdot o)`:
:math:`\bar x \mathrel{+}= a\, o + \overline{\mathrm{inv2}}\, u`,
:math:`\bar o \mathrel{+}= a\, x - \overline{\mathrm{inv2}}\,\mathrm{inv1}\, u`,
:math:`\bar o \mathrel{+}= (\bar A + \bar A^T)\, o`; the aggregation's VJP is the fused kernel on
the reversed graph (:func:`geomp_ref.ops.weighted_aggregate_vjp`).

References
----------
E. J. Bekkers, S. Vadgama, R. D. Hesselink, P. A. van der Linden, D. W. Romero, "Fast, Expressive
SE(n) Equivariant Networks through Weight-Sharing in Position-Orientation Space", ICLR 2024.
"""

from __future__ import annotations

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
    "PositionOrientationConv",
    "PositionOrientationConvCache",
    "orientation_grid",
    "pair_invariants",
    "pair_invariants_vjp",
]


def _icosahedron() -> np.ndarray:
    p = (1.0 + np.sqrt(5.0)) / 2.0
    v = []
    # cyclic permutations of (0, +-phi, +-1): the orientation whose symmetry group is
    # geomp_ref.lie.grids.so3_polyhedral("icosa")
    for a in (-1.0, 1.0):
        for b in (-p, p):
            v += [(0.0, b, a), (b, a, 0.0), (a, 0.0, b)]
    v = np.array(v)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def orientation_grid(name: str, num: int | None = None) -> np.ndarray:
    """Deterministic orientation grid, shape (G, D).

    ``name``: ``"uniform"`` (S^1, ``num`` angles ``2 pi k / num``), ``"fibonacci"`` (S^2, ``num``
    points, :func:`geomp_ref.lie.grids.sphere_fibonacci`), ``"octahedron"`` (S^2, 6 vertices
    +-e_i), ``"icosahedron"`` (S^2, 12 vertices).
    """
    if name == "uniform":
        if num is None or num < 1:
            raise ValueError(f"num must be >= 1 for the uniform S^1 grid; got {num!r}")
        t = 2.0 * np.pi * np.arange(num) / num
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if name == "fibonacci":
        if num is None:
            raise ValueError("num must be given for the fibonacci grid")
        return grids.sphere_fibonacci(num)
    if name == "octahedron":
        return np.concatenate([np.eye(3), -np.eye(3)])
    if name == "icosahedron":
        return _icosahedron()
    raise ValueError(
        "grid must be one of 'uniform' (2D), 'fibonacci', 'octahedron', 'icosahedron'; "
        f"got {name!r}"
    )


# --- pair invariants (primitive pair) ---------------------------------------------------------


def pair_invariants(edge_vec, ori):
    r"""PONITA's invariants ``(inv1, inv2)`` for every edge and grid orientation, each (E, G).

    ``edge_vec`` (E, D) = :math:`x_j - x_i`; ``ori`` (G, D). D = 3: ``inv2`` is the norm of the
    component orthogonal to ``o``; D = 2: the signed ``o_1 x_2 - o_2 x_1``.
    """
    x = np.asarray(edge_vec, dtype=np.float64)
    o = np.asarray(ori, dtype=np.float64)
    inv1 = x @ o.T
    if o.shape[1] == 2:
        inv2 = np.outer(x[:, 1], o[:, 0]) - np.outer(x[:, 0], o[:, 1])
    else:
        r = x[:, None, :] - inv1[:, :, None] * o[None, :, :]
        inv2 = np.sqrt(np.sum(r * r, axis=-1))
    return inv1, inv2


def pair_invariants_vjp(edge_vec, ori, grad_inv1, grad_inv2):
    """VJP of :func:`pair_invariants`: ``(grad_edge_vec, grad_ori)``; zero subgradient of the norm
    where ``inv2 = 0`` (3D)."""
    x = np.asarray(edge_vec, dtype=np.float64)
    o = np.asarray(ori, dtype=np.float64)
    g1 = np.asarray(grad_inv1, dtype=np.float64)
    g2 = np.asarray(grad_inv2, dtype=np.float64)
    # reverses inv1 = x . o
    grad_x = g1 @ o
    grad_o = g1.T @ x
    if o.shape[1] == 2:
        # reverses inv2 = o_1 x_2 - o_2 x_1
        grad_x = grad_x + np.stack([-(g2 @ o[:, 1]), g2 @ o[:, 0]], axis=1)
        grad_o = grad_o + np.stack([g2.T @ x[:, 1], -(g2.T @ x[:, 0])], axis=1)
        return grad_x, grad_o
    inv1 = x @ o.T
    r = x[:, None, :] - inv1[:, :, None] * o[None, :, :]
    nrm = np.sqrt(np.sum(r * r, axis=-1))
    safe = np.where(nrm > 0, nrm, 1.0)
    u = np.where((nrm > 0)[..., None], r / safe[..., None], 0.0)  # d|r|/dr, 0 at r = 0
    # reverses inv2 = |x - inv1 o| (inv1's share folded into a = -g2 (u . o))
    uo = np.einsum("egd,gd->eg", u, o)
    a = -g2 * uo
    grad_x = grad_x + a @ o + np.einsum("eg,egd->ed", g2, u)
    grad_o = grad_o + a.T @ x - np.einsum("eg,eg,egd->gd", g2, inv1, u)
    return grad_x, grad_o


# --- the layer --------------------------------------------------------------------------------


class PositionOrientationConvCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, G, C_in)
    ori: np.ndarray  # (G, D)
    ori_given: bool
    edge_vec: np.ndarray  # (E, D)
    a_ij: np.ndarray  # (E, G, 2) = (inv1, inv2)
    kappa: np.ndarray  # (E, G, C_in)
    spatial: MLPCache
    A: np.ndarray  # (G, G)
    kappa_f: np.ndarray  # (G, G, C_in)
    fiber: MLPCache
    y1: np.ndarray  # (N, G, C_in)
    y2: np.ndarray  # (N, G, C_in)


@dataclass(frozen=True)
class PositionOrientationConv(Block):
    r"""Separable convolution on :math:`\mathbb{R}^D \times S^{D-1}` (PONITA's FiberBundleConv).

    Parameters
    ----------
    in_channels, out_channels : int
    dim : int
        3 (:math:`\mathbb{R}^3 \times S^2`) or 2 (:math:`\mathbb{R}^2 \times S^1`).
    grid : str
        ``"fibonacci"``, ``"octahedron"``, ``"icosahedron"`` (dim 3) or ``"uniform"`` (dim 2).
    num_ori : int
        Grid size for ``"fibonacci"`` / ``"uniform"`` (ignored by the polyhedral grids).
    hidden : int
        Width of the two kernel MLPs.
    activation : str
    pool : bool
        Return the grid mean (N, C_out) instead of the grid signal (N, G, C_out).
    backend : str

    Params: ``{"spatial": MLP(2 -> hidden -> hidden -> C_in), "fiber": MLP(1 -> hidden -> C_in),
    "W": (C_in, C_out), "b": (C_out,)}``.

    ``forward(params, graph, f, pos, ori=None)``: ``f`` (N, G, C_in), ``pos`` (N, D); ``ori``
    (G, D) overrides the spec's grid (pass it to rotate the grid with the data; then ``backward``
    also returns its gradient: ``grad_inputs = (grad_f, grad_pos[, grad_ori])``).
    """

    in_channels: int
    out_channels: int
    dim: int = 3
    grid: str = "fibonacci"
    num_ori: int = 12
    hidden: int = 16
    activation: str = "silu"
    pool: bool = False
    backend: str = "numpy"

    def __post_init__(self):
        for name in ("in_channels", "out_channels", "num_ori", "hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"PositionOrientationConv.{name} must be an int >= 1; got {v!r}")
        if self.dim not in (2, 3):
            raise ValueError(f"PositionOrientationConv.dim must be 2 or 3; got {self.dim!r}")
        ok = ("uniform",) if self.dim == 2 else ("fibonacci", "octahedron", "icosahedron")
        if self.grid not in ok:
            raise ValueError(
                f"PositionOrientationConv.grid must be one of {ok} for dim "
                f"{self.dim}; got {self.grid!r}"
            )
        check_backend(self.backend, "PositionOrientationConv")
        object.__setattr__(self, "_ori", orientation_grid(self.grid, self.num_ori))

    @property
    def ori(self) -> np.ndarray:
        """The spec's orientation grid, shape (G, D) (a copy)."""
        return self._ori.copy()

    @property
    def spatial_net(self) -> MLP:
        return MLP((2, self.hidden, self.hidden, self.in_channels), self.activation)

    @property
    def fiber_net(self) -> MLP:
        return MLP((1, self.hidden, self.in_channels), self.activation)

    def init(self, rng: np.random.Generator) -> dict:
        k = 1.0 / np.sqrt(self.in_channels)
        return {
            "spatial": self.spatial_net.init(rng),
            "fiber": self.fiber_net.init(rng),
            "W": rng.uniform(-k, k, size=(self.in_channels, self.out_channels)),
            "b": rng.uniform(-k, k, size=(self.out_channels,)),
        }

    def _check_inputs(self, graph, f, pos, ori):
        if not isinstance(graph, Graph):
            raise TypeError(
                f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
            )
        if ori is None:
            ori = self._ori
        else:
            ori = as_float64(ori, "ori", ndim=2)
            if ori.shape[1] != self.dim or ori.shape[0] < 1:
                raise ValueError(f"ori must have shape (G, {self.dim}); got {ori.shape}")
        G = ori.shape[0]
        f = as_float64(f, "f", ndim=3)
        if f.shape != (graph.num_nodes, G, self.in_channels):
            raise ValueError(
                f"f must have shape (num_nodes, G, in_channels) = "
                f"({graph.num_nodes}, {G}, {self.in_channels}); got {f.shape}"
            )
        pos = as_float64(pos, "pos", ndim=2)
        if pos.shape != (graph.num_nodes, self.dim):
            raise ValueError(f"pos must have shape (num_nodes, {self.dim}); got {pos.shape}")
        return f, pos, ori

    def forward(self, params, graph, f, pos, ori=None):
        check_params(
            params,
            {"W": (self.in_channels, self.out_channels), "b": (self.out_channels,)},
            "PositionOrientationConv",
        )
        ori_given = ori is not None
        f, pos, ori = self._check_inputs(graph, f, pos, ori)
        N, G, C = f.shape
        E = graph.num_edges
        edge_vec = edge_vectors(graph, pos)
        inv1, inv2 = pair_invariants(edge_vec, ori)
        a_ij = np.stack([inv1, inv2], axis=-1)
        kappa, spatial_cache = self.spatial_net.forward(params["spatial"], a_ij)
        A = ori @ ori.T
        kappa_f, fiber_cache = self.fiber_net.forward(params["fiber"], A[..., None])
        y1 = scatter.weighted_aggregate(
            graph, f.reshape(N, G * C), kappa.reshape(E, G * C), backend=self.backend
        ).reshape(N, G, C)
        y2 = np.einsum("nkc,klc->nlc", y1, kappa_f) / G
        out = dense.linear(y2, params["W"], params["b"])
        if self.pool:
            out = out.mean(axis=1)
        cache = PositionOrientationConvCache(
            graph,
            f,
            ori,
            ori_given,
            edge_vec,
            a_ij,
            kappa,
            spatial_cache,
            A,
            kappa_f,
            fiber_cache,
            y1,
            y2,
        )
        return out, cache

    def backward(self, params, cache: PositionOrientationConvCache, grad_out):
        graph, f, ori, ori_given, edge_vec, _a_ij, kappa, sc, _A, kappa_f, fc, y1, y2 = cache
        N, G, C = f.shape
        E = graph.num_edges
        g = np.asarray(grad_out, dtype=np.float64)
        if self.pool:
            # reverses out = mean over the grid
            g = np.broadcast_to(g[:, None, :] / G, (N, G, self.out_channels))
        # reverses out = y2 W + b
        grad_y2, grad_W, grad_b = dense.linear_vjp(y2, params["W"], params["b"], g)
        # reverses y2 = (1/G) sum_k kappa_f[k, l] y1[k]
        grad_y1 = np.einsum("nlc,klc->nkc", grad_y2, kappa_f) / G
        grad_kappa_f = np.einsum("nkc,nlc->klc", y1, grad_y2) / G
        # reverses y1 = weighted_aggregate(f, kappa)
        grad_f, grad_kappa = scatter.weighted_aggregate_vjp(
            graph,
            f.reshape(N, G * C),
            kappa.reshape(E, G * C),
            grad_y1.reshape(N, G * C),
            backend=self.backend,
        )
        grad_f = grad_f.reshape(N, G, C)
        grad_kappa = grad_kappa.reshape(E, G, C)
        # reverses kappa_f = MLP_f(A) and kappa = MLP_s(a_ij)
        grad_fiber, (grad_A,) = self.fiber_net.backward(params["fiber"], fc, grad_kappa_f)
        grad_spatial, (grad_a,) = self.spatial_net.backward(params["spatial"], sc, grad_kappa)
        grad_A = grad_A[..., 0]
        # reverses (inv1, inv2) = pair_invariants(edge_vec, ori) and A = ori ori^T
        grad_ev, grad_ori = pair_invariants_vjp(edge_vec, ori, grad_a[..., 0], grad_a[..., 1])
        grad_ori = grad_ori + (grad_A + grad_A.T) @ ori
        # reverses edge_vec = pos[src] - pos[dst]
        grad_pos = edge_vectors_vjp(graph, grad_ev) if E else np.zeros((N, self.dim))
        grads = {"spatial": grad_spatial, "fiber": grad_fiber, "W": grad_W, "b": grad_b}
        if ori_given:
            return grads, (grad_f, grad_pos, grad_ori)
        return grads, (grad_f, grad_pos)
