r"""Pieces of the position-orientation convolutions, each with its VJP: pair invariants, polynomial
features, and the two grid contractions.

Pair invariants (Bekkers et al. 2024)
-------------------------------------
For a relative position :math:`x = x_j - x_i` (sender j, receiver i; the library's sign, what
PONITA's ``pos[edge_index[0]] - pos[edge_index[1]]`` computes) and an orientation :math:`o`:

.. math::

    \mathrm{inv1} = x \cdot o, \qquad
    \mathrm{inv2} = \lVert x - (x\cdot o)\, o \rVert \ (D = 3), \qquad
    \mathrm{inv2} = o_1 x_2 - o_2 x_1 \ (D = 2,\ \text{signed}).

* :func:`pair_invariants` evaluates them for every edge and every orientation of a shared grid
  (PONITA's fibre-bundle invariants; the fibre attribute is the raw dot product
  :math:`A_{kl} = o_k \cdot o_l`, not the paper's angle :math:`\arccos A_{kl}`).
* :func:`point_cloud_invariants` evaluates ``(inv1, inv2, o_j · o_i)`` per edge with the receiver's
  own orientation :math:`o_i` in inv1/inv2 (PONITA's position-orientation point cloud, where every
  node carries one orientation).

The 3D ``inv2`` is a norm, not differentiable where :math:`x \parallel o` (self-loops included,
:math:`x = 0`); the VJPs use the zero subgradient there. The 3D invariants are O(3)-invariant; the
2D ``inv2`` is SO(2)-invariant only (a reflection flips its sign).

VJPs (proof and SymPy check: ``derivations/position_orientation.py``), with
:math:`r = x - \mathrm{inv1}\, o`, :math:`u = r/\lVert r\rVert` and
:math:`a = \overline{\mathrm{inv1}} - \overline{\mathrm{inv2}}\,(u\cdot o)`:
:math:`\bar x = a\, o + \overline{\mathrm{inv2}}\, u`,
:math:`\bar o = a\, x - \overline{\mathrm{inv2}}\,\mathrm{inv1}\, u` (valid for any, also
non-unit, :math:`o`, which is what finite differences perturb).

Polynomial features
-------------------
:func:`polynomial_features` maps :math:`z \in \mathbb{R}^n` to the concatenation
:math:`[z, z \otimes z, \dots, z^{\otimes d}]`, each tensor power flattened row-major
(:math:`(z^{\otimes k})_{a n + j} = (z^{\otimes (k-1)})_a z_j`), of length
:math:`n + n^2 + \dots + n^d` (PONITA's ``PolynomialFeatures(degree)``: 2 invariants at degree 3
give 14 features, 1 fibre attribute gives 3). Its VJP runs the recursion backwards:
:math:`\bar P_{k-1} \mathrel{+}= \bar P_k z`, :math:`\bar z \mathrel{+}= \bar P_k^T P_{k-1}`.

:func:`apply_kernel` evaluates a kernel spec of :mod:`geomp_ref.layers.kernels` (which takes
(M, in_dim) rows) on coordinates with any leading axes, times a fixed scale.

Grid contractions
-----------------
:func:`fiber_mix` is the separable layer's convolution over the fibre,
:math:`y_{n,l} = \frac1G \sum_k \kappa^f_{kl} \odot y1_{n,k}` (depthwise) or
:math:`y_{n,l,d} = \frac1G \sum_{k,c} \kappa^f_{k,l,d,c}\, y1_{n,k,c}` (``full``:
:math:`\kappa^f` has :math:`C_{out} C_{in}` channels read as (C_out, C_in), row-major).
:func:`bundle_messages` is the non-separable layer's message,
:math:`m_{e,l} = \sum_k \kappa_{e,k,l} \odot f_{e,k}` (or the same with a (C_out, C_in) matrix
per entry). Both are bilinear: each VJP contracts the cotangent with the other factor.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_float64, check_alloc, check_choice, check_int
from ..lie.grids import orientation_grid

__all__ = [
    "apply_kernel",
    "apply_kernel_vjp",
    "bundle_coords",
    "bundle_coords_vjp",
    "bundle_messages",
    "bundle_messages_vjp",
    "fiber_mix",
    "fiber_mix_vjp",
    "pair_invariants",
    "pair_invariants_vjp",
    "point_cloud_invariants",
    "point_cloud_invariants_vjp",
    "polynomial_features",
    "polynomial_features_size",
    "polynomial_features_vjp",
    "validate_grid",
]


# --- invariants of (x, o), broadcast over leading axes ------------------------------------------


def _inv(x, o):
    """``(inv1, inv2)`` for broadcastable ``x`` (..., D) and ``o`` (..., D)."""
    inv1 = np.sum(x * o, axis=-1)
    if x.shape[-1] == 2:
        return inv1, o[..., 0] * x[..., 1] - o[..., 1] * x[..., 0]
    r = x - inv1[..., None] * o
    return inv1, np.sqrt(np.sum(r * r, axis=-1))


def _inv_vjp(x, o, g1, g2):
    """``(grad_x, grad_o)`` of ``<g1, inv1> + <g2, inv2>``, both of the broadcast shape."""
    # reverses inv1 = x . o
    grad_x = g1[..., None] * o
    grad_o = g1[..., None] * x
    if x.shape[-1] == 2:
        # reverses inv2 = o_1 x_2 - o_2 x_1
        rot_o = np.stack([-o[..., 1], o[..., 0]], axis=-1)
        rot_x = np.stack([x[..., 1], -x[..., 0]], axis=-1)
        return grad_x + g2[..., None] * rot_o, grad_o + g2[..., None] * rot_x
    inv1 = np.sum(x * o, axis=-1)
    r = x - inv1[..., None] * o
    nrm = np.sqrt(np.sum(r * r, axis=-1))
    safe = np.where(nrm > 0, nrm, 1.0)
    u = np.where((nrm > 0)[..., None], r / safe[..., None], 0.0)  # d|r|/dr, 0 at r = 0
    # reverses inv2 = |x - inv1 o| (inv1's share folded into a = -g2 (u . o))
    a = -g2 * np.sum(u * o, axis=-1)
    grad_x = grad_x + a[..., None] * o + g2[..., None] * u
    grad_o = grad_o + a[..., None] * x - (g2 * inv1)[..., None] * u
    return grad_x, grad_o


def _vectors(x, name, dim=None):
    arr = as_float64(x, name, ndim=2)
    if arr.shape[1] not in (2, 3) or (dim is not None and arr.shape[1] != dim):
        want = dim if dim is not None else "2 or 3"
        raise ValueError(f"{name} must have shape (n, D) with D = {want}; got {arr.shape}")
    return arr


def pair_invariants(edge_vec, ori):
    r"""``(inv1, inv2)`` for every edge and grid orientation, each of shape (E, G).

    Parameters
    ----------
    edge_vec : ndarray, shape (E, D)
        :math:`x_j - x_i`, D = 2 or 3.
    ori : ndarray, shape (G, D)
        The orientation grid (unit vectors in the layers; any vectors are accepted).
    """
    x = _vectors(edge_vec, "edge_vec")
    o = _vectors(ori, "ori", x.shape[1])
    return _inv(x[:, None, :], o[None, :, :])


def pair_invariants_vjp(edge_vec, ori, grad_inv1, grad_inv2):
    """VJP of :func:`pair_invariants`: ``(grad_edge_vec (E, D), grad_ori (G, D))``."""
    x = _vectors(edge_vec, "edge_vec")
    o = _vectors(ori, "ori", x.shape[1])
    shape = (x.shape[0], o.shape[0])
    g1 = np.broadcast_to(as_float64(grad_inv1, "grad_inv1"), shape)
    g2 = np.broadcast_to(as_float64(grad_inv2, "grad_inv2"), shape)
    gx, go = _inv_vjp(x[:, None, :], o[None, :, :], g1, g2)
    return gx.sum(axis=1), go.sum(axis=0)


def bundle_coords(edge_vec, ori, separable: bool = True):
    r"""Kernel coordinates of a fibre-bundle layer: ``(coords, fiber_coords)``.

    Separable: ``coords`` (E, G, 2) = ``(inv1, inv2)`` and ``fiber_coords`` (G, G, 1) = ``A``.
    Otherwise ``coords`` (E, G, G, 3) = ``(inv1[e, k], inv2[e, k], A[k, l])`` (the invariants
    along the summed orientation :math:`o_k`, as PONITA) and ``fiber_coords`` None.
    """
    inv1, inv2 = pair_invariants(edge_vec, ori)
    A = ori @ ori.T
    if separable:
        return np.stack([inv1, inv2], axis=-1), A[..., None]
    E, G = inv1.shape
    check_alloc((E, G, G, 3), "graph and grid sizes")
    parts = (inv1[:, :, None], inv2[:, :, None], A[None])
    return np.stack([np.broadcast_to(a, (E, G, G)) for a in parts], axis=-1), None


def bundle_coords_vjp(edge_vec, ori, grad_coords, grad_fiber_coords=None):
    """VJP of :func:`bundle_coords`: ``(grad_edge_vec, grad_ori)``; ``grad_fiber_coords`` None
    (non-separable, or a fibre part without gradient) adds nothing."""
    ori = as_float64(ori, "ori", ndim=2)
    G = ori.shape[0]
    if grad_coords.ndim == 3:
        g1, g2 = grad_coords[..., 0], grad_coords[..., 1]
        grad_A = np.zeros((G, G))
    else:
        g1, g2 = grad_coords[..., 0].sum(axis=2), grad_coords[..., 1].sum(axis=2)
        grad_A = grad_coords[..., 2].sum(axis=0)
    if grad_fiber_coords is not None:
        grad_A = grad_A + grad_fiber_coords[..., 0]
    # reverses (inv1, inv2) = pair_invariants(edge_vec, ori)
    grad_ev, grad_ori = pair_invariants_vjp(edge_vec, ori, g1, g2)
    # reverses A = ori ori^T
    return grad_ev, grad_ori + (grad_A + grad_A.T) @ ori


def validate_grid(owner: str, dim, grid, num_ori) -> np.ndarray:
    """Check a block's ``dim``/``grid``/``num_ori`` fields (errors name them); return the grid."""
    check_choice(dim, f"{owner}.dim", (2, 3))
    check_choice(grid, f"{owner}.grid", ("uniform",) if dim == 2 else _S2_GRIDS)
    check_int(num_ori, f"{owner}.num_ori", minimum=1)
    return orientation_grid(grid, num_ori)


_S2_GRIDS = ("fibonacci", "octahedron", "icosahedron")


def point_cloud_invariants(edge_vec, ori_src, ori_dst):
    r"""Per-edge ``(x·o_i, inv2(x, o_i), o_j·o_i)``, shape (E, 3), for one orientation per node.

    ``edge_vec`` (E, D) = :math:`x_j - x_i`; ``ori_src`` (E, D) = :math:`o_j` and ``ori_dst``
    (E, D) = :math:`o_i`, the orientations at the sender and the receiver of each edge.
    """
    x = _vectors(edge_vec, "edge_vec")
    os_ = _vectors(ori_src, "ori_src", x.shape[1])
    od = _vectors(ori_dst, "ori_dst", x.shape[1])
    if not (len(os_) == len(od) == len(x)):
        raise ValueError(
            f"edge_vec, ori_src and ori_dst must have one row per edge; got {len(x)}, "
            f"{len(os_)}, {len(od)}"
        )
    inv1, inv2 = _inv(x, od)
    return np.stack([inv1, inv2, np.sum(os_ * od, axis=-1)], axis=-1)


def point_cloud_invariants_vjp(edge_vec, ori_src, ori_dst, grad_out):
    """VJP of :func:`point_cloud_invariants`: ``(grad_edge_vec, grad_ori_src, grad_ori_dst)``."""
    x = _vectors(edge_vec, "edge_vec")
    os_ = _vectors(ori_src, "ori_src", x.shape[1])
    od = _vectors(ori_dst, "ori_dst", x.shape[1])
    g = as_float64(grad_out, "grad_out", ndim=2)
    if g.shape != (len(x), 3):
        raise ValueError(f"grad_out must have shape ({len(x)}, 3); got {g.shape}")
    # reverses inv3 = o_j . o_i
    grad_os = g[:, 2:3] * od
    grad_od = g[:, 2:3] * os_
    # reverses (inv1, inv2) of (x, o_i)
    grad_x, g_od = _inv_vjp(x, od, g[:, 0], g[:, 1])
    return grad_x, grad_os, grad_od + g_od


# --- polynomial features -------------------------------------------------------------------------


def polynomial_features_size(n: int, degree: int) -> int:
    """Number of polynomial features of ``n`` inputs: ``n + n² + ... + n^degree``."""
    n = check_int(n, "n", minimum=1)
    degree = check_int(degree, "degree", minimum=1)
    return sum(n**k for k in range(1, degree + 1))


def _powers(z, degree):
    n = z.shape[-1]
    terms = [z]
    for k in range(2, degree + 1):
        prev = terms[-1]
        terms.append((prev[..., :, None] * z[..., None, :]).reshape(z.shape[:-1] + (n**k,)))
    return terms


def polynomial_features(z, degree: int):
    r"""``[z, z⊗z, ..., z^{⊗degree}]`` flattened and concatenated, shape (..., n + ... + n^degree).

    Parameters
    ----------
    z : ndarray, shape (..., n)
    degree : int
        At least 1 (``degree = 1`` returns ``z`` itself).
    """
    z = as_float64(z, "z")
    if z.ndim == 0:
        raise ValueError("z must have shape (..., n); got a scalar")
    degree = check_int(degree, "degree", minimum=1)
    check_alloc(z.shape[:-1] + (polynomial_features_size(z.shape[-1], degree),), "degree")
    return np.concatenate(_powers(z, degree), axis=-1)


def polynomial_features_vjp(z, degree: int, grad_out):
    """VJP of :func:`polynomial_features`: ``grad_z`` of the shape of ``z``."""
    z = as_float64(z, "z")
    degree = check_int(degree, "degree", minimum=1)
    n = z.shape[-1]
    g = as_float64(grad_out, "grad_out")
    want = z.shape[:-1] + (polynomial_features_size(n, degree),)
    if g.shape != want:
        raise ValueError(f"grad_out must have shape {want}; got {g.shape}")
    terms = _powers(z, degree)
    stops = np.cumsum([n**k for k in range(1, degree + 1)])
    pieces = np.split(g, stops[:-1], axis=-1)
    grad_z = np.zeros_like(z)
    carry = np.zeros_like(pieces[-1])
    for k in range(degree - 1, 0, -1):
        # reverses P_{k+1}[a n + j] = P_k[a] z[j]
        gk = (pieces[k] + carry).reshape(z.shape[:-1] + (n**k, n))
        grad_z = grad_z + np.einsum("...aj,...a->...j", gk, terms[k - 1])
        carry = np.einsum("...aj,...j->...a", gk, z)
    # reverses P_1 = z
    return grad_z + pieces[0] + carry


# --- grid contractions ---------------------------------------------------------------------------


def fiber_mix(y1, kappa_f, full: bool = False):
    """Separable fibre convolution: ``y1`` (N, G, C), ``kappa_f`` (G, G, C) or, ``full``,
    (G, G, C_out * C) -> ``y`` (N, G, C) or (N, G, C_out)."""
    G, C = y1.shape[1:]
    if full:
        kf = kappa_f.reshape(G, G, -1, C)
        return np.einsum("nkc,kldc->nld", y1, kf) / G
    return np.einsum("nkc,klc->nlc", y1, kappa_f) / G


def fiber_mix_vjp(y1, kappa_f, grad_y, full: bool = False):
    """VJP of :func:`fiber_mix`: ``(grad_y1, grad_kappa_f)``."""
    G, C = y1.shape[1:]
    if full:
        kf = kappa_f.reshape(G, G, -1, C)
        grad_y1 = np.einsum("nld,kldc->nkc", grad_y, kf) / G
        return grad_y1, (np.einsum("nkc,nld->kldc", y1, grad_y) / G).reshape(kappa_f.shape)
    return (
        np.einsum("nlc,klc->nkc", grad_y, kappa_f) / G,
        np.einsum("nkc,nlc->klc", y1, grad_y) / G,
    )


def bundle_messages(kappa, f_src, full: bool = False):
    """Non-separable message: ``kappa`` (E, G, G, C) or, ``full``, (E, G, G, C_out * C);
    ``f_src`` (E, G, C) -> ``m`` (E, G, C) or (E, G, C_out)."""
    E, G, C = f_src.shape
    if full:
        kk = kappa.reshape(E, G, G, kappa.shape[-1] // C, C)
        return np.einsum("ekldc,ekc->eld", kk, f_src)
    return np.einsum("eklc,ekc->elc", kappa, f_src)


def bundle_messages_vjp(kappa, f_src, grad_m, full: bool = False):
    """VJP of :func:`bundle_messages`: ``(grad_kappa, grad_f_src)``."""
    E, G, C = f_src.shape
    if full:
        kk = kappa.reshape(E, G, G, kappa.shape[-1] // C, C)
        grad_kappa = np.einsum("ekc,eld->ekldc", f_src, grad_m).reshape(kappa.shape)
        return grad_kappa, np.einsum("ekldc,eld->ekc", kk, grad_m)
    return np.einsum("ekc,elc->eklc", f_src, grad_m), np.einsum("eklc,elc->ekc", kappa, grad_m)


# --- kernels on coordinates with leading axes ----------------------------------------------------


def apply_kernel(spec, params, coords, scale: float = 1.0):
    """``scale * spec(coords)`` for ``coords`` (..., in_dim) -> (..., out_dim); ``(k, cache)``."""
    check_alloc(coords.shape[:-1] + (spec.out_dim,), "graph and grid sizes")
    k, cache = spec.forward(params, coords.reshape(-1, coords.shape[-1]))
    return scale * k.reshape(coords.shape[:-1] + (spec.out_dim,)), cache


def apply_kernel_vjp(spec, params, cache, grad_k, scale: float = 1.0):
    """VJP of :func:`apply_kernel`: ``(grad_params, grad_coords)`` (coords' leading axes are
    those of ``grad_k``)."""
    grads, (grad_coords,) = spec.backward(params, cache, scale * grad_k.reshape(-1, spec.out_dim))
    return grads, grad_coords.reshape(grad_k.shape[:-1] + (spec.in_dim,))
