r"""SO(3): rotations of R³ as 3×3 matrices, tangent ``ω ∈ R³`` (rotation vector).

.. math::

    \mathrm{Exp}(\omega) = I + A(\theta)[\omega]_\times + B(\theta)[\omega]_\times^2, \quad
    \theta = |\omega| \qquad \text{(Rodrigues)}

    J_l(\omega) = I + B[\omega]_\times + C[\omega]_\times^2, \quad
    J_r(\omega) = J_l(-\omega) = J_l(\omega)^T

    J_l^{-1}(\omega) = I - \tfrac12[\omega]_\times + D[\omega]_\times^2, \quad
    J_r^{-1}(\omega) = I + \tfrac12[\omega]_\times + D[\omega]_\times^2

with ``A, B, C, D`` from :mod:`geomp_ref.lie._series` (half-angle ``B``, series for ``C, D``).

**Log** (principal, angle in ``[0, π]``): ``s = vee((R − Rᵀ)/2) = sin θ k``, ``c = (tr R − 1)/2``,
``θ = atan2(|s|, c)`` (never ``acos``, which loses √eps at 0 and near π). For ``c ≥ 0``:
``ω = (θ/|s|) s``. For ``c < 0`` the axis comes from the symmetric part
``S = (R + Rᵀ)/2 − c I = (1 − c) k kᵀ`` (column of the largest diagonal entry, normalised), which
keeps full accuracy up to π; the skew part only fixes the sign (``k·s ≥ 0``). Within ~1e-15 of π
that sign is rounding noise: both twins ``±πk`` are the same rotation; when ``s·k == 0`` exactly
the pivot column's sign (positive pivot entry) is kept, so the result is deterministic.

**Any finite tangent.** ``θ = |ω|`` is formed with a rescaled norm when ``ω ωᵀ`` would overflow
(``|ω| ≳ 1.3e154``). Beyond ``θ = 1e8`` the formulas switch to exact rewrites in the unit axis
``k = ω/θ`` (``[ω]× = θ[k]×``), so nothing multiplies two huge numbers:

    Exp = I + sin θ [k]× + 2 sin²(θ/2) [k]×²,
    Jl = I + (2 sin²(θ/2)/θ) [k]× + (1 − sin θ/θ) [k]×²,
    Jl⁻¹ = I − (θ/2)[k]× + (1 − (θ/2) cot(θ/2)) [k]×²;

the sines and cosines reduce θ modulo 2π exactly (NumPy's argument reduction), so the rotation
is as accurate as the float64 angle allows, while below 1e8 nothing changes. ``Jr⁻¹``/``Jl⁻¹`` do
not exist at ``|ω| = 2πk`` (k ≥ 1): angles within 8 ulps of such a point are refused with a
``ValueError`` (:func:`geomp_ref.lie._generic.check_invertible`), as is every angle beyond ~1.1e15.
Near ``|ω| = 2πk`` (k ≥ 1) ``log(exp(ω))`` is limited by forming ``|ω|`` in float64 (error up to
``~4 ulp(|ω|) / dist(|ω|, 2πk)`` relative), an inherent float64 limit that is not worked around.

Conventions: perturbations on the right, ``R ⊕ δ = R Exp(δ)``; "the" Jacobian is ``Jr``; see
:mod:`geomp_ref.lie`.

References: Solà, Deray, Atchuthan, arXiv:1812.01537, §A (eqs. 143-146).
"""

from __future__ import annotations

import sys as _sys

import numpy as np

from .._validate import as_float64
from . import _generic as _g
from . import _unit_axis as _ua
from ._series import A, B, C, D

__all__ = [
    "DOF",
    "TOL",
    "act",
    "act_vjp",
    "adjoint",
    "between",
    "compose",
    "compose_vjp",
    "exp",
    "exp_vjp",
    "hat",
    "identity",
    "inverse",
    "left_jacobian",
    "left_jacobian_inverse",
    "log",
    "log_vjp",
    "random",
    "relative_log",
    "relative_log_vjp",
    "right_jacobian",
    "right_jacobian_inverse",
    "rminus",
    "rplus",
    "vee",
]

DOF = 3
TOL = 1e-9
_DIM = 3
_HOMOGENEOUS = False
_I3 = np.eye(3)


# ---------------------------------------------------------------- private core (no validation)


def _hat(w):
    out = np.zeros(w.shape[:-1] + (3, 3))
    x, y, z = w[..., 0], w[..., 1], w[..., 2]
    out[..., 0, 1], out[..., 0, 2] = -z, y
    out[..., 1, 0], out[..., 1, 2] = z, -x
    out[..., 2, 0], out[..., 2, 1] = -y, x
    return out


def _hat_T(M):
    # ⟨M, [v]×⟩_F = v · (M21 − M12, M02 − M20, M10 − M01)
    return np.stack(
        [M[..., 2, 1] - M[..., 1, 2], M[..., 0, 2] - M[..., 2, 0], M[..., 1, 0] - M[..., 0, 1]],
        axis=-1,
    )


def _metric_solve(w):
    # ⟨[a]×, [b]×⟩_F = 2 a·b
    return 0.5 * w


def _tmatvec(J, v):
    return np.einsum("...ji,...j->...i", J, v)


_theta = _ua.norm  # |ω| without overflow


def _sq(w, theta):
    """``[ω]×² = ω ωᵀ − θ² I`` (exactly symmetric)."""
    return w[..., :, None] * w[..., None, :] - (theta * theta)[..., None, None] * _I3


def _unit_form(coeffs):
    """``(k, θ) -> I + a [k]× + b [k]×²`` with ``(a, b) = coeffs(θ)`` (:mod:`._unit_axis`)."""

    def form(k, th):
        a, b = coeffs(th)
        K2 = _sq(k, np.ones(k.shape[:-1]))
        return _I3 + a[:, None, None] * _hat(k) + b[:, None, None] * K2

    return form


_exp_big = _unit_form(_ua.exp_coeffs)
_jl_big = _unit_form(_ua.jl_coeffs)
_jl_inv_big = _unit_form(_ua.jl_inv_coeffs)


def _exp(w):
    return _ua.by_angle(
        w,
        lambda w, t: _I3 + A(t)[..., None, None] * _hat(w) + B(t)[..., None, None] * _sq(w, t),
        _exp_big,
    )


def _log(R):
    s = 0.5 * _hat_T(R)
    c = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0)
    ns = np.sqrt(np.sum(s * s, axis=-1))
    theta = np.arctan2(ns, c)
    # c >= 0 (θ <= π/2): the skew part is well conditioned; θ/|s| = θ/sin θ needs only a 0 guard
    pos = ns > 0
    ratio = np.where(pos, theta / np.where(pos, ns, 1.0), 1.0)
    w_small = ratio[..., None] * s
    # c < 0: axis from the symmetric part S = (1 − c) k kᵀ (entries O(1) near π)
    S = 0.5 * (R + np.swapaxes(R, -1, -2)) - c[..., None, None] * _I3
    i = np.argmax(np.diagonal(S, axis1=-2, axis2=-1), axis=-1)
    col = np.take_along_axis(S, i[..., None, None], axis=-1)[..., 0]
    ncol = np.sqrt(np.sum(col * col, axis=-1))
    k = col / np.where(ncol > 0, ncol, 1.0)[..., None]
    sign = np.where(np.sum(k * s, axis=-1) < 0, -1.0, 1.0)
    w_large = (sign * theta)[..., None] * k
    return np.where((c >= 0)[..., None], w_small, w_large)


def _compose(a, b):
    return a @ b


def _inverse(g):
    return _g.inverse_core(_self, g)


def _jl(w):
    return _ua.by_angle(
        w,
        lambda w, t: _I3 + B(t)[..., None, None] * _hat(w) + C(t)[..., None, None] * _sq(w, t),
        _jl_big,
    )


def _jr(w):
    return _jl(-w)


def _jl_inv(w):
    return _ua.by_angle(
        w, lambda w, t: _I3 - 0.5 * _hat(w) + D(t)[..., None, None] * _sq(w, t), _jl_inv_big
    )


def _jr_inv(w):
    return _jl_inv(-w)


def _check_tangent(w, name):
    return _g.check_tangent(w, name, 3)


def _check_element(R, name, tol):
    return _g.check_element(R, name, 3, False, tol)


def _quat_to_matrix(q):
    """Unit quaternions ``(w, x, y, z)`` (..., 4) to rotation matrices."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


# ---------------------------------------------------------------- public API


@_g.guarded
def exp(tau):
    r"""Exponential map ``R = Exp(ω)`` (Rodrigues), batched.

    Parameters
    ----------
    tau : ndarray, shape (..., 3), float64
        Rotation vectors ``ω`` (any length; no reduction to ``[0, π]``).

    Returns
    -------
    R : ndarray, shape (..., 3, 3), float64

    Notes
    -----
    ``exp(0) = I``; ``exp(-ω) = exp(ω)ᵀ``; max entry error ≤ 1e-15 for ``|ω| ≤ 10``
    (tests/lie/test_lie_accuracy.py). VJP: :func:`exp_vjp`.
    """
    return _exp(_check_tangent(tau, "tau"))


@_g.guarded
def log(g, *, tol: float = TOL):
    r"""Principal logarithm ``ω = Log(R)``, ``|ω| ∈ [0, π]`` (see the module docstring).

    Parameters
    ----------
    g : ndarray, shape (..., 3, 3), float64
        Rotation matrices (``max |RᵀR − I| <= tol``, ``det R = +1``).
    tol : float
        Orthogonality tolerance of the input check.

    Returns
    -------
    tau : ndarray, shape (..., 3)

    Raises
    ------
    ValueError
        If ``g`` is not a batch of rotation matrices within ``tol`` or holds NaN/inf.
    """
    return _log(_check_element(g, "g", tol))


@_g.guarded
def hat(tau):
    r"""``[ω]×``: the skew matrix with ``[ω]× x = ω × x``; shape (..., 3) -> (..., 3, 3)."""
    return _hat(_check_tangent(tau, "tau"))


@_g.guarded
def vee(X):
    r"""Inverse of :func:`hat` on skew matrices: the vector of the skew part ``(X − Xᵀ)/2``."""
    X = as_float64(X, "X")
    if X.ndim < 2 or X.shape[-2:] != (3, 3):
        raise ValueError(f"X must have shape (..., 3, 3); got {X.shape}")
    return 0.5 * _hat_T(X)


@_g.guarded
def compose(a, b, *, tol: float = TOL):
    """Group product ``a b`` (matrix product, broadcast over leading axes)."""
    return _compose(*_g.check_pair(_self, a, "a", b, "b", tol))


@_g.guarded
def inverse(g, *, tol: float = TOL):
    """Group inverse ``Rᵀ``."""
    return _inverse(_check_element(g, "g", tol))


@_g.guarded
def act(g, x, *, tol: float = TOL):
    """Action on points ``y = R x``; ``g`` (..., 3, 3), ``x`` (..., 3), broadcast."""
    return _g.act(_self, g, x, tol)


@_g.guarded
def adjoint(g, *, tol: float = TOL):
    """Adjoint matrix ``Ad_R = R`` (``R Exp(δ) = Exp(Ad_R δ) R``); shape (..., 3, 3)."""
    return _check_element(g, "g", tol).copy()


def identity():
    """The identity element ``I₃``, shape (3, 3)."""
    return np.eye(3)


@_g.guarded
def random(rng, n: int):
    """``n`` Haar-uniform rotations (normalised Gaussian quaternions), shape (n, 3, 3)."""
    rng, n = _g.rng_and_count(rng, n, (3, 3))
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return _quat_to_matrix(q)


@_g.guarded
def right_jacobian(tau):
    r"""``Jr(ω) = I − B[ω]× + C[ω]×²``: ``Exp(ω + δ) ≈ Exp(ω) Exp(Jr δ)``;
    (..., 3) -> (..., 3, 3)."""
    return _jr(_check_tangent(tau, "tau"))


@_g.guarded
def left_jacobian(tau):
    r"""``Jl(ω) = I + B[ω]× + C[ω]×²``: ``Exp(ω + δ) ≈ Exp(Jl δ) Exp(ω)``."""
    return _jl(_check_tangent(tau, "tau"))


@_g.guarded
def right_jacobian_inverse(tau):
    r"""``Jr⁻¹(ω) = I + ½[ω]× + D[ω]×²`` (singular only at ``|ω| = 2πk, k ≥ 1``)."""
    w = _check_tangent(tau, "tau")
    _g.check_invertible(_theta(w), "tau")
    return _jr_inv(w)


@_g.guarded
def left_jacobian_inverse(tau):
    r"""``Jl⁻¹(ω) = I − ½[ω]× + D[ω]×²``."""
    w = _check_tangent(tau, "tau")
    _g.check_invertible(_theta(w), "tau")
    return _jl_inv(w)


@_g.guarded
def exp_vjp(tau, grad_g):
    """VJP of :func:`exp`: ``Jr(ω)ᵀ hatᵀ(Rᵀ G)`` (see :mod:`geomp_ref.lie._generic`)."""
    return _g.exp_vjp(_self, tau, grad_g)


@_g.guarded
def log_vjp(g, grad_tau, *, tol: float = TOL):
    """VJP of :func:`log`: the tangent matrix gradient ``½ R [Jr⁻¹(ω)ᵀ γ]×``."""
    return _g.log_vjp(_self, g, grad_tau, tol)


@_g.guarded
def compose_vjp(a, b, grad_c, *, tol: float = TOL):
    """VJP of :func:`compose`: ``(G bᵀ, aᵀ G)`` (ambient matrix gradients)."""
    return _g.compose_vjp(_self, a, b, grad_c, tol)


@_g.guarded
def act_vjp(g, x, grad_y, *, tol: float = TOL):
    """VJP of :func:`act`: ``(γ xᵀ, Rᵀ γ)`` summed over broadcast axes."""
    return _g.act_vjp(_self, g, x, grad_y, tol)


@_g.guarded
def rplus(g, tau, *, tol: float = TOL):
    """``g ⊕ τ = g Exp(τ)``."""
    return _g.rplus(_self, g, tau, tol)


@_g.guarded
def rminus(y, x, *, tol: float = TOL):
    """``y ⊖ x = Log(x⁻¹ y)``."""
    return _g.rminus(_self, y, x, tol)


@_g.guarded
def between(a, b, *, tol: float = TOL):
    """``a⁻¹ b``."""
    return _g.between(_self, a, b, tol)


@_g.guarded
def relative_log(g_i, g_j, *, tol: float = TOL):
    """``ξ_ij = Log(g_i⁻¹ g_j)`` for receiver ``i`` and sender ``j``, shape (..., 3)."""
    return _g.relative_log(_self, g_i, g_j, tol)


@_g.guarded
def relative_log_vjp(g_i, g_j, grad_tau, *, tol: float = TOL):
    """VJP of :func:`relative_log`: tangent matrix gradients ``(G_i, G_j)``.

    ``∂ξ/∂δ_j = Jr⁻¹(ξ)``, ``∂ξ/∂δ_i = −Jl⁻¹(ξ)`` (right perturbations), proved in
    ``derivations/so3.py``.
    """
    return _g.relative_log_vjp(_self, g_i, g_j, grad_tau, tol)


_self = _sys.modules[__name__]
