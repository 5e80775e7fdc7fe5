r"""LieConv on SE(2) and SE(3): a kernel on the Lie algebra of the relative pose.

Nodes carry poses :math:`g_n = (R_n, x_n) \in SE(D)` (homogeneous (D+1, D+1) matrices) and
features :math:`f_n`. For the edge j -> i (sender j, receiver i) the layer computes (Finzi et al.
2020, the LieConv layer, with the lecture's sign)

.. math::

    \xi_{ij} &= \mathrm{Log}(g_i^{-1} g_j) \in \mathbb{R}^{d}
        \quad (d = 3: (\rho_1, \rho_2, \theta);\ d = 6: (\rho, \omega)), \\
    k_{ij} &= \mathrm{MLP}_k(\xi_{ij}) \in \mathbb{R}^K, \qquad
    m_{ij} = \mathrm{vec}(k_{ij} \otimes f_j) \in \mathbb{R}^{K C_{in}}, \\
    out_i &= \Big(\mathrm{AGG}_{j \to i}\, m_{ij}\Big) W + b,
        \qquad \mathrm{AGG} \in \{\text{mean}, \text{sum}\},

i.e. LieConv's WeightNet (``MLP_k``) plus its "PointConv trick" (the K kernel channels are
contracted with the features by one dense map ``W`` of shape (K C_in, C_out)).

**Sign.** LieConv's code forms ``pair[i, j] = log(exp(-a_j) exp(a_i)) = Log(g_j^{-1} g_i)`` (for
T(3) that is :math:`x_i - x_j`). Here :math:`\xi_{ij} = \mathrm{Log}(g_i^{-1} g_j) =
-\mathrm{pair}[i, j]` (the same sign as ``edge_vec`` = :math:`x_j - x_i`); a LieConv kernel ``k``
corresponds to ours as :math:`k_{ours}(\xi) = k_{LieConv}(-\xi)` (variants_spec §8.2, §12).

**Symmetry.** :math:`(Tg_i)^{-1}(Tg_j) = g_i^{-1} g_j` for every :math:`T \in SE(D)`, so the output
is exactly invariant under the left action on the poses (kind ``"pose"``); features are
``"node_scalar"``. For point clouds (:class:`LiftedLieConv`) the poses come from a lift
:math:`x \mapsto (R, x)` with stabiliser samples R; the output is exactly invariant when the samples
are transformed with the input (:math:`R \mapsto QR`) and invariant only in distribution otherwise.

**Singular points.** Log is principal (rotation angle in :math:`(-\pi, \pi]` / :math:`[0, \pi]`):
:math:`\xi` jumps at relative rotation angle :math:`\pi`, so the layer is continuous there only if
the kernel is invariant under the twin map (LieConv shares this). Near angle 0 nothing is singular
(:mod:`geomp_ref.lie` evaluates the series branches). Stabiliser grids with an even number of
equally spaced angles put within-fibre pairs exactly at :math:`\pi`: use odd counts or random
offsets.

Backward (reverse line order; proof ``derivations/lieconv.py``):
:math:`\bar m = \mathrm{AGG}^T(\bar{out}\, W^T)`, :math:`\bar k_{ij} = \bar m_{ij} f_j`,
:math:`\bar f_j \mathrel{+}= \bar m_{ij}^T k_{ij}`, :math:`\bar\xi = \mathrm{MLP}_k^T(\bar k)`,
and the pairwise-log VJP
(:func:`geomp_ref.lie.se3.relative_log_vjp`): right-trivialised gradients
:math:`J_r^{-1}(\xi)^T \bar\xi` at j and :math:`-J_l^{-1}(\xi)^T \bar\xi` at i, returned as tangent
matrix gradients (their translation columns are :math:`\partial L/\partial x` with R held fixed).

References
----------
M. Finzi, S. Stanton, P. Izmailov, A. G. Wilson, "Generalizing Convolutional Neural Networks for
Equivariance to Lie Groups on Arbitrary Continuous Data", ICML 2020 (code: mfinzi/LieConv).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64, check_int
from ..graph import Graph, make_graph
from ..ops import dense, scatter
from .base import Block, check_backend, check_params
from .mlp import MLP, MLPCache

__all__ = [
    "LieConv",
    "LieConvCache",
    "LiftedLieConv",
    "LiftedLieConvCache",
    "lift",
    "lift_graph",
    "lift_vjp",
    "so3_orbit_lift",
    "stabiliser_rotations",
    "stabiliser_rotations_vjp",
    "stabiliser_samples",
]

_GROUPS = {"SE2": (2, 3), "SE3": (3, 6)}  # name -> (D, algebra dimension)
_POSE_TOL = 1e-9


def _lie(group: str):
    return importlib.import_module(f"geomp_ref.lie.{group.lower()}")


def _check_group(group, owner):
    if group not in _GROUPS:
        raise ValueError(f"{owner}.group must be 'SE2' or 'SE3'; got {group!r}")


def _check_poses(g, D: int, num: int, name: str = "g") -> np.ndarray:
    g = as_float64(g, name, ndim=3)
    if g.shape != (num, D + 1, D + 1):
        raise ValueError(
            f"{name} must have shape (num_nodes, {D + 1}, {D + 1}) = "
            f"({num}, {D + 1}, {D + 1}) (homogeneous SE({D}) poses); got {g.shape}"
        )
    if num:
        last = np.zeros(D + 1)
        last[-1] = 1.0
        R = g[:, :D, :D]
        orth = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(D)).max()
        if np.abs(g[:, D, :] - last).max() > _POSE_TOL or orth > _POSE_TOL:
            raise ValueError(
                f"{name} must hold SE({D}) matrices [[R, x], [0, 1]] with R orthogonal "
                f"(max |R^T R - I| = {orth:.3g}); re-orthonormalize R"
            )
        if (np.linalg.det(R) < 0).any():
            raise ValueError(f"{name} holds a reflection (det R = -1); poses must be in SE({D})")
    return g


# --- the layer on poses -----------------------------------------------------------------------


class LieConvCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, C_in)
    g: np.ndarray  # (N, D+1, D+1)
    xi: np.ndarray  # (E, d) = Log(g_i^-1 g_j)
    k_ij: np.ndarray  # (E, K)
    kernel: MLPCache
    f_j: np.ndarray  # (E, C_in)
    agg: np.ndarray  # (N, K * C_in)


@dataclass(frozen=True)
class LieConv(Block):
    r"""Lie group convolution, :math:`\mathrm{AGG}_j\, k(\mathrm{Log}(g_i^{-1}g_j)) \otimes f_j`
    contracted by ``W``.

    Parameters
    ----------
    group : str
        ``"SE2"`` or ``"SE3"``.
    in_channels, out_channels : int
    kernel_hidden : tuple of int
        Hidden widths of the kernel MLP (LieConv's WeightNet: 32, 32).
    kernel_channels : int
        K, the WeightNet's output width (LieConv: 16).
    aggr : str
        ``"mean"`` (LieConv; isolated receivers give ``b``) or ``"sum"``.
    activation : str
    backend : str

    ``forward(params, graph, f, g)``: ``f`` (N, C_in), ``g`` (N, D+1, D+1) -> (N, C_out).
    Params: ``{"kernel": MLP(d -> hidden -> K), "W": (K * C_in, C_out), "b": (C_out,)}``.
    """

    group: str
    in_channels: int
    out_channels: int
    kernel_hidden: tuple = (32, 32)
    kernel_channels: int = 16
    aggr: str = "mean"
    activation: str = "silu"
    backend: str = "numpy"

    def __post_init__(self):
        _check_group(self.group, type(self).__name__)
        for name in ("in_channels", "out_channels", "kernel_channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be an int >= 1; got {v!r}")
        object.__setattr__(self, "kernel_hidden", tuple(int(h) for h in self.kernel_hidden))
        if self.aggr not in ("mean", "sum"):
            raise ValueError(
                f"{type(self).__name__}.aggr must be 'mean' or 'sum'; got {self.aggr!r}"
            )
        check_backend(self.backend, type(self).__name__)

    @property
    def dim(self) -> int:
        return _GROUPS[self.group][0]

    @property
    def kernel_net(self) -> MLP:
        d = _GROUPS[self.group][1]
        return MLP((d, *self.kernel_hidden, self.kernel_channels), self.activation)

    def _shapes(self):
        return {
            "W": (self.kernel_channels * self.in_channels, self.out_channels),
            "b": (self.out_channels,),
        }

    def init(self, rng: np.random.Generator) -> dict:
        fan = self.kernel_channels * self.in_channels
        k = 1.0 / np.sqrt(fan)
        return {
            "kernel": self.kernel_net.init(rng),
            "W": rng.uniform(-k, k, size=(fan, self.out_channels)),
            "b": rng.uniform(-k, k, size=(self.out_channels,)),
        }

    def forward(self, params, graph, f, g):
        check_params(params, self._shapes(), type(self).__name__)
        if not isinstance(graph, Graph):
            raise TypeError(
                f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
            )
        N, E = graph.num_nodes, graph.num_edges
        f = as_float64(f, "f", ndim=2)
        if f.shape != (N, self.in_channels):
            raise ValueError(
                f"f must have shape (num_nodes, in_channels) = ({N}, "
                f"{self.in_channels}); got {f.shape}"
            )
        g = _check_poses(g, self.dim, N)
        d = _GROUPS[self.group][1]
        if E:
            xi = _lie(self.group).relative_log(g[graph.dst], g[graph.src])
        else:
            xi = np.zeros((0, d))
        k_ij, kernel_cache = self.kernel_net.forward(params["kernel"], xi)
        f_j = f[graph.src]
        m_ij = (k_ij[:, :, None] * f_j[:, None, :]).reshape(E, self.kernel_channels * f.shape[1])
        agg_fn = scatter.aggregate_mean if self.aggr == "mean" else scatter.aggregate
        agg = agg_fn(graph, m_ij, backend=self.backend)
        out = dense.linear(agg, params["W"], params["b"])
        return out, LieConvCache(graph, f, g, xi, k_ij, kernel_cache, f_j, agg)

    def backward(self, params, cache: LieConvCache, grad_out):
        graph, _f, g, _xi, k_ij, kc, f_j, agg = cache
        N, E = graph.num_nodes, graph.num_edges
        C, K = self.in_channels, self.kernel_channels
        # reverses out = agg W + b
        grad_agg, grad_W, grad_b = dense.linear_vjp(agg, params["W"], params["b"], grad_out)
        # reverses agg = AGG_{j -> i} m_ij
        vjp = scatter.aggregate_mean_vjp if self.aggr == "mean" else scatter.aggregate_vjp
        grad_m = vjp(graph, None, grad_agg, backend=self.backend).reshape(E, K, C)
        # reverses m_ij = k_ij (x) f_j and f_j = f[src]
        grad_k = np.einsum("ekc,ec->ek", grad_m, f_j)
        grad_fj = np.einsum("ekc,ek->ec", grad_m, k_ij)
        grad_f = scatter.scatter_sum(grad_fj, graph.src, N, backend=self.backend)
        # reverses k_ij = MLP_k(xi)
        grad_kernel, (grad_xi,) = self.kernel_net.backward(params["kernel"], kc, grad_k)
        # reverses xi = Log(g_i^-1 g_j) (tangent matrix gradients, summed at receivers/senders)
        grad_g = np.zeros_like(g)
        if E:
            gi, gj = _lie(self.group).relative_log_vjp(g[graph.dst], g[graph.src], grad_xi)
            np.add.at(grad_g, graph.dst, gi)
            np.add.at(grad_g, graph.src, gj)
        return {"kernel": grad_kernel, "W": grad_W, "b": grad_b}, (grad_f, grad_g)


# --- lifting points to poses ------------------------------------------------------------------


def stabiliser_samples(
    rng: np.random.Generator, group: str, num_points: int, num_samples: int
) -> np.ndarray:
    r"""Stabiliser samples as tangents, drawn from ``rng`` (no hidden randomness).

    SE2: angles (N, S): LieConv's ``linspace(-pi, pi, S+1)[1:]`` plus one uniform offset per point.
    SE3: rotation vectors (N, S, 3) of Haar-uniform rotations (:func:`geomp_ref.lie.so3.random`).
    Turn them into rotations with :func:`stabiliser_rotations`.
    """
    _check_group(group, "stabiliser_samples")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    n = check_int(num_points, "num_points")
    s = check_int(num_samples, "num_samples", minimum=1)
    if group == "SE2":
        base = np.linspace(-np.pi, np.pi, s + 1)[1:]
        return base[None, :] + rng.uniform(0.0, 2.0 * np.pi, size=(n, 1))
    so3 = importlib.import_module("geomp_ref.lie.so3")
    R = so3.random(rng, n * s) if n * s else np.zeros((0, 3, 3))
    return (so3.log(R) if n * s else np.zeros((0, 3))).reshape(n, s, 3)


def stabiliser_rotations(group: str, stab) -> np.ndarray:
    """``Exp`` of stabiliser tangents: (N, S) angles -> (N, S, 2, 2); (N, S, 3) -> (N, S, 3, 3)."""
    _check_group(group, "stabiliser_rotations")
    if group == "SE2":
        stab = as_float64(stab, "stab", ndim=2)
        return importlib.import_module("geomp_ref.lie.so2").exp(stab)
    stab = as_float64(stab, "stab", ndim=3)
    if stab.shape[-1] != 3:
        raise ValueError(f"stab must have shape (N, S, 3) (rotation vectors); got {stab.shape}")
    return importlib.import_module("geomp_ref.lie.so3").exp(stab)


def stabiliser_rotations_vjp(group: str, stab, grad_R) -> np.ndarray:
    """VJP of :func:`stabiliser_rotations` (tangent gradient of ``Exp``)."""
    mod = "so2" if group == "SE2" else "so3"
    return importlib.import_module(f"geomp_ref.lie.{mod}").exp_vjp(stab, grad_R)


def lift(pos, rotations) -> np.ndarray:
    r"""Poses :math:`g_{n,s} = (R_{n,s}, x_n)`, shape (N * S, D+1, D+1), node-major (row n*S + s).

    ``pos`` (N, D); ``rotations`` (N, S, D, D) (the stabiliser samples of each point).
    """
    pos = as_float64(pos, "pos", ndim=2)
    R = as_float64(rotations, "rotations", ndim=4)
    N, D = pos.shape
    if R.shape[0] != N or R.shape[2:] != (D, D):
        raise ValueError(f"rotations must have shape (N, S, {D}, {D}) with N = {N}; got {R.shape}")
    S = R.shape[1]
    g = np.zeros((N, S, D + 1, D + 1))
    g[:, :, :D, :D] = R
    g[:, :, :D, D] = pos[:, None, :]
    g[:, :, D, D] = 1.0
    return g.reshape(N * S, D + 1, D + 1)


def lift_vjp(pos, rotations, grad_g):
    """VJP of :func:`lift`: ``(grad_pos, grad_rotations)`` (translation columns summed over samples;
    the rotation blocks of ``grad_g``)."""
    N, D = np.shape(pos)
    S = np.shape(rotations)[1]
    G = np.asarray(grad_g, dtype=np.float64).reshape(N, S, D + 1, D + 1)
    return G[:, :, :D, D].sum(axis=1), G[:, :, :D, :D].copy()


def lift_graph(graph: Graph, num_samples: int, *, fibre_edges: bool = True) -> Graph:
    """The graph on lifted nodes (node ``n*S + s``): every edge j -> i becomes all S x S edges
    between the lifts of j and of i; ``fibre_edges`` adds all S x S edges among the lifts of each
    point (self-loops included: LieConv's neighbourhood always contains the query and the other
    lifts of the same point)."""
    if not isinstance(graph, Graph):
        raise TypeError(
            f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
        )
    S = check_int(num_samples, "num_samples", minimum=1)
    s_src = np.tile(np.arange(S), S)  # s' (sender sample), fast axis
    s_dst = np.repeat(np.arange(S), S)  # s (receiver sample)
    src = (graph.src[:, None] * S + s_src[None, :]).ravel()
    dst = (graph.dst[:, None] * S + s_dst[None, :]).ravel()
    if fibre_edges:
        n = np.arange(graph.num_nodes)
        src = np.concatenate([src, (n[:, None] * S + s_src[None, :]).ravel()])
        dst = np.concatenate([dst, (n[:, None] * S + s_dst[None, :]).ravel()])
    ei = np.stack([src, dst]).astype(np.int64).reshape(2, -1)
    return make_graph(ei, graph.num_nodes * S, np.repeat(graph.batch, S), graph.num_graphs)


def so3_orbit_lift(pos):
    r"""LieConv's SO(3) lift of points in :math:`\mathbb{R}^3 \setminus \{0\}`: a rotation
    :math:`R_p` with :math:`R_p e_x = \hat p` and the orbit label :math:`q = |p|`.

    LieConv builds :math:`R_p = \mathrm{Exp}(\hat e_x \times \hat p \cdot \angle / \sin\angle)`,
    which degenerates at :math:`\hat p = -e_x` (it returns the identity, the wrong orbit point).
    Here :math:`R_p` is the minimal rotation :math:`e_x \to \hat p` when :math:`\hat p_x \ge 0` and
    :math:`M_{-e_x \to \hat p}\, \mathrm{diag}(-1, -1, 1)` (a half turn about :math:`e_z`, then the
    minimal rotation from :math:`-e_x`) otherwise, so every direction, :math:`-e_x` included, gets a
    smooth-in-a-neighbourhood lift with :math:`R_p e_x = \hat p` exactly up to rounding
    (:math:`R_{-e_x} = \mathrm{diag}(-1, -1, 1)`). Multiply on the right by rotations about
    :math:`e_x` (the stabiliser of :math:`e_x`) for the other lifts.

    Returns ``(R, q)``: (N, 3, 3) and (N,). Raises ``ValueError`` naming ``pos`` for a point at
    the origin (its orbit is a single point; no direction).
    """
    pos = as_float64(pos, "pos", ndim=2)
    if pos.shape[1] != 3:
        raise ValueError(f"pos must have shape (N, 3); got {pos.shape}")
    q = np.linalg.norm(pos, axis=1)
    if (q == 0).any():
        raise ValueError(
            f"pos holds a point at the origin (row {int(np.argmin(q))}): its SO(3) "
            "orbit has no direction to lift; move it or drop it"
        )
    p = pos / q[:, None]
    flip = p[:, 0] < 0
    a = np.where(flip[:, None], -1.0, 1.0) * np.array([1.0, 0.0, 0.0])  # start: +e_x or -e_x
    v = np.cross(a, p)
    c = np.einsum("nd,nd->n", a, p)  # >= 0 by the choice of a, so 1 + c >= 1
    K = np.zeros((len(p), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    K = K - np.swapaxes(K, 1, 2)
    M = np.eye(3) + K + (K @ K) / (1.0 + c)[:, None, None]  # Rodrigues for a -> p
    R = np.where(flip[:, None, None], M @ np.diag([-1.0, -1.0, 1.0]), M)
    return R, q


# --- the point-cloud layer: lift, convolve, pool ----------------------------------------------


class LiftedLieConvCache(NamedTuple):
    graph: Graph  # the lifted graph
    pos: np.ndarray
    stab: np.ndarray
    rotations: np.ndarray  # (N, S, D, D)
    conv: LieConvCache
    num_samples: int


@dataclass(frozen=True)
class LiftedLieConv(LieConv):
    r"""LieConv on a point cloud: lift, convolve on the lifted graph, average over the samples.

    .. math::

        g_{n,s} = (\mathrm{Exp}(\sigma_{n,s}), x_n), \qquad
        out_n = \frac1S \sum_s \mathrm{LieConv}(f_{\text{lift}}, g)_{n,s},

    with stabiliser tangents :math:`\sigma` (from :func:`stabiliser_samples`; an explicit input, so
    nothing is random inside). ``forward(params, graph, f, pos, stab)``: ``f`` (N, C_in), ``pos``
    (N, D), ``stab`` (N, S) angles (SE2) or (N, S, 3) rotation vectors (SE3) -> (N, C_out).
    Exactly invariant under :math:`x \mapsto Qx + t` when :math:`\mathrm{Exp}(\sigma) \mapsto Q
    \mathrm{Exp}(\sigma)` (kind ``"stabiliser:SE2"`` / ``"stabiliser:SE3"``). Params as
    :class:`LieConv`. ``grad_inputs = (grad_f, grad_pos, grad_stab)``.
    """

    fibre_edges: bool = True

    def forward(self, params, graph, f, pos, stab):
        if not isinstance(graph, Graph):
            raise TypeError(
                f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
            )
        N, D = graph.num_nodes, self.dim
        pos = as_float64(pos, "pos", ndim=2)
        if pos.shape != (N, D):
            raise ValueError(f"pos must have shape (num_nodes, {D}) = ({N}, {D}); got {pos.shape}")
        stab = as_float64(stab, "stab", ndim=2 if self.group == "SE2" else 3)
        if stab.shape[0] != N or stab.shape[1] < 1:
            raise ValueError(
                f"stab must have shape ({N}, S{'' if D == 2 else ', 3'}) with S >= 1 "
                f"(stabiliser samples per point); got {stab.shape}"
            )
        f = as_float64(f, "f", ndim=2)
        S = stab.shape[1]
        rotations = stabiliser_rotations(self.group, stab)
        g = lift(pos, rotations)
        lgraph = lift_graph(graph, S, fibre_edges=self.fibre_edges)
        out_l, conv_cache = LieConv.forward(self, params, lgraph, np.repeat(f, S, axis=0), g)
        out = out_l.reshape(N, S, self.out_channels).mean(axis=1)
        return out, LiftedLieConvCache(lgraph, pos, stab, rotations, conv_cache, S)

    def backward(self, params, cache: LiftedLieConvCache, grad_out):
        _lgraph, pos, stab, rotations, conv_cache, S = cache
        N = pos.shape[0]
        # reverses out = mean over samples
        grad_l = np.repeat(np.asarray(grad_out, dtype=np.float64) / S, S, axis=0)
        # reverses out_l = LieConv(f repeated, g)
        grads, (grad_fl, grad_g) = LieConv.backward(self, params, conv_cache, grad_l)
        grad_f = grad_fl.reshape(N, S, self.in_channels).sum(axis=1)
        # reverses g = lift(pos, rotations) and rotations = Exp(stab)
        grad_pos, grad_R = lift_vjp(pos, rotations, grad_g)
        grad_stab = stabiliser_rotations_vjp(self.group, stab, grad_R)
        return grads, (grad_f, grad_pos, grad_stab)
