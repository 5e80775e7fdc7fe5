r"""Lifting point clouds to poses for LieConv: stabiliser samples, lifted poses and graphs.

A point :math:`x_n \in \mathbb{R}^D` is lifted to S poses :math:`g_{n,s} = (R_{n,s}, x_n) \in
SE(D)`, one per stabiliser sample :math:`R_{n,s}` (the stabiliser of the origin is SO(D): every
rotation maps the origin to itself, so :math:`g_{n,s}` maps the origin to :math:`x_n` whatever
:math:`R_{n,s}`). The samples are explicit inputs drawn from a caller's generator, so nothing is
random inside a layer:

* :func:`stabiliser_samples` draws tangents (SE(2): angles; SE(3): rotation vectors);
* :func:`stabiliser_rotations` maps them to rotations (``Exp``), with its VJP;
* :func:`lift` builds the poses (node-major: row ``n*S + s``), with its VJP;
* :func:`lift_graph` builds the graph on the lifted nodes;
* :func:`so3_orbit_lift` is LieConv's lift of points to SO(3) (orbit label :math:`|p|`), made
  continuous at :math:`\hat p = -e_x`.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_float64, as_rng, check_alloc, check_choice, check_graph, check_int
from ..graph import Graph, make_graph
from ..lie import so2, so3

__all__ = [
    "lift",
    "lift_graph",
    "lift_vjp",
    "so3_orbit_lift",
    "stabiliser_rotations",
    "stabiliser_rotations_vjp",
    "stabiliser_samples",
]

_DIMS = {"SE2": 2, "SE3": 3}


def _group(group, owner: str) -> int:
    check_choice(group, f"{owner}: group", tuple(_DIMS))
    return _DIMS[group]


def stabiliser_samples(rng, group: str, num_points: int, num_samples: int) -> np.ndarray:
    r"""Stabiliser samples as tangents, drawn from ``rng`` (a Generator or an int seed).

    SE2: angles (N, S). LieConv's scheme: the S equally spaced angles ``linspace(-pi, pi,
    S+1)[1:]`` plus one uniform offset per point. With an even S that scheme puts the samples
    s and s + S/2 of every point exactly :math:`\pi` apart, where the principal Log of their
    relative pose switches twin (the kernel input jumps); so for even S each sample also gets an
    independent jitter, uniform in :math:`\pm` a quarter of the spacing: the samples stay
    ordered and stratified, each is still uniform on the circle, and no pair is at :math:`\pi`
    (probability 0). Odd S (no antipodal pairs) keeps LieConv's scheme exactly.

    SE3: rotation vectors (N, S, 3) of Haar-uniform rotations (:func:`geomp_ref.lie.so3.random`);
    a pair at relative angle exactly :math:`\pi` has probability 0.

    Turn them into rotations with :func:`stabiliser_rotations`.
    """
    rng = as_rng(rng, "rng")
    D = _group(group, "stabiliser_samples")
    n = check_int(num_points, "num_points")
    s = check_int(num_samples, "num_samples", minimum=1)
    if D == 2:
        spacing = 2.0 * np.pi / s
        base = -np.pi + spacing * np.arange(1, s + 1)
        angles = base[None, :] + rng.uniform(0.0, 2.0 * np.pi, size=(n, 1))
        if s % 2 == 0:
            angles = angles + rng.uniform(-0.25, 0.25, size=(n, s)) * spacing
        return angles
    if n * s == 0:
        return np.zeros((n, s, 3))
    return so3.log(so3.random(rng, n * s)).reshape(n, s, 3)


def _check_stab(group: str, stab, owner: str) -> np.ndarray:
    D = _group(group, owner)
    if D == 2:
        return as_float64(stab, "stab", ndim=2)
    stab = as_float64(stab, "stab", ndim=3)
    if stab.shape[-1] != 3:
        raise ValueError(f"stab must have shape (N, S, 3) (rotation vectors); got {stab.shape}")
    return stab


def stabiliser_rotations(group: str, stab) -> np.ndarray:
    """``Exp`` of stabiliser tangents: (N, S) angles -> (N, S, 2, 2); (N, S, 3) -> (N, S, 3, 3)."""
    stab = _check_stab(group, stab, "stabiliser_rotations")
    return (so2 if group == "SE2" else so3).exp(stab)


def stabiliser_rotations_vjp(group: str, stab, grad_R) -> np.ndarray:
    """VJP of :func:`stabiliser_rotations` (tangent gradient of ``Exp``), shape of ``stab``."""
    stab = _check_stab(group, stab, "stabiliser_rotations_vjp")
    return (so2 if group == "SE2" else so3).exp_vjp(stab, grad_R)


def _check_lift_args(pos, rotations):
    pos = as_float64(pos, "pos", ndim=2)
    R = as_float64(rotations, "rotations", ndim=4)
    N, D = pos.shape
    if R.shape[0] != N or R.shape[2:] != (D, D):
        raise ValueError(f"rotations must have shape (N, S, {D}, {D}) with N = {N}; got {R.shape}")
    return pos, R


def lift(pos, rotations) -> np.ndarray:
    r"""Poses :math:`g_{n,s} = (R_{n,s}, x_n)`, shape (N * S, D+1, D+1), node-major (row n*S + s).

    ``pos`` (N, D); ``rotations`` (N, S, D, D) (the stabiliser samples of each point).
    """
    pos, R = _check_lift_args(pos, rotations)
    (N, D), S = pos.shape, R.shape[1]
    g = np.zeros((N, S, D + 1, D + 1))
    g[:, :, :D, :D] = R
    g[:, :, :D, D] = pos[:, None, :]
    g[:, :, D, D] = 1.0
    return g.reshape(N * S, D + 1, D + 1)


def lift_vjp(pos, rotations, grad_g):
    """VJP of :func:`lift`: ``(grad_pos, grad_rotations)`` (translation columns summed over samples;
    the rotation blocks of ``grad_g``)."""
    pos, R = _check_lift_args(pos, rotations)
    (N, D), S = pos.shape, R.shape[1]
    G = as_float64(grad_g, "grad_g")
    if G.shape != (N * S, D + 1, D + 1):
        raise ValueError(
            f"grad_g must have the shape of lift(pos, rotations), {(N * S, D + 1, D + 1)}; "
            f"got {G.shape}"
        )
    G = G.reshape(N, S, D + 1, D + 1)
    return G[:, :, :D, D].sum(axis=1), G[:, :, :D, :D].copy()


def lift_graph(graph: Graph, num_samples: int, *, fibre_edges: bool = True) -> Graph:
    """The graph on lifted nodes (node ``n*S + s``): every edge j -> i becomes all S x S edges
    between the lifts of j and of i; ``fibre_edges`` adds all S x S edges among the lifts of each
    point (self-loops included: LieConv's neighbourhood always contains the query and the other
    lifts of the same point)."""
    check_graph(graph)
    S = check_int(num_samples, "num_samples", minimum=1)
    check_alloc((2, graph.num_edges + graph.num_nodes, S, S), "num_samples (S x S edges per edge)")
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
