r"""SE(3): rigid motions as 4×4 homogeneous matrices, tangent ``τ = (ρ, ω) ∈ R⁶``, translation
first.

.. math::

    \mathrm{Exp}(\rho, \omega) = \begin{bmatrix} \mathrm{Exp}_{SO3}(\omega) & V(\omega)\rho \\
    0 & 1\end{bmatrix}, \qquad V = J_l^{SO3}(\omega) = I + B[\omega]_\times + C[\omega]_\times^2

    \mathrm{Log}: \ \omega = \mathrm{Log}_{SO3}(R), \quad
    \rho = V^{-1} t = (I - \tfrac12[\omega]_\times + D[\omega]_\times^2)\, t

    J_l(\tau) = \begin{bmatrix} J_l(\omega) & Q(\rho,\omega) \\ 0 & J_l(\omega)\end{bmatrix},
    \quad J_r(\tau) = J_l(-\tau), \quad
    J_l^{-1}(\tau) = \begin{bmatrix} J_l^{-1} & -J_l^{-1} Q J_l^{-1} \\ 0 & J_l^{-1}\end{bmatrix}

    Q = \tfrac12 P + C\,(KP + PK + KPK) + E\,(K^2P + PK^2 - 3KPK) + F\,(KPK^2 + K^2PK),
    \quad P = [\rho]_\times,\ K = [\omega]_\times

(Barfoot's ``Q``; ``C, E, F`` by series below 3.25, so nothing cancels near 0.)
``Ad_g = [[R, [t]× R], [0, R]]``.

Notes: ``exp`` never reduces ``ω`` (reducing it changes the translation whenever ``|ω| ≥ π``);
for ``|ω| > 1e8`` the rotation and ``V`` use the unit-axis forms of :mod:`geomp_ref.lie.so3` and
``Q`` folds the powers of ``θ`` into its coefficients (``θC, θ²C, θ²E, θ³F``), so any finite
twist has a finite Exp and Jacobians. ``Jr⁻¹``/``Jl⁻¹`` refuse ``|ω|`` within rounding of
``2πk`` (k ≥ 1), where they do not exist.
At ``|ω| = π`` the two twins ``±ω`` give different, equally valid ``ρ`` (``V⁻¹(−ω) ≠ V⁻¹(ω)``):
compare group elements there, not twists. Perturbations on the right; see :mod:`geomp_ref.lie`.

References: Solà et al., arXiv:1812.01537, §D (eqs. 169-180); Barfoot, "State Estimation for
Robotics" (2017), eqs. (7.83)-(7.86).
"""

from __future__ import annotations

import sys as _sys

import numpy as np

from .._validate import as_float64
from . import _generic as _g
from . import _unit_axis as _ua
from . import so3 as _so3
from ._series import C, E, F

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

DOF = 6
TOL = 1e-9
_DIM = 3
_HOMOGENEOUS = True


# ---------------------------------------------------------------- private core (no validation)


def _hat(tau):
    out = np.zeros(tau.shape[:-1] + (4, 4))
    out[..., :3, :3] = _so3._hat(tau[..., 3:])
    out[..., :3, 3] = tau[..., :3]
    return out


def _hat_T(M):
    return np.concatenate([M[..., :3, 3], _so3._hat_T(M[..., :3, :3])], axis=-1)


def _metric_solve(w):
    return np.concatenate([w[..., :3], 0.5 * w[..., 3:]], axis=-1)


def _tmatvec(J, v):
    return np.einsum("...ji,...j->...i", J, v)


def _exp(tau):
    rho, w = tau[..., :3], tau[..., 3:]
    out = np.zeros(tau.shape[:-1] + (4, 4))
    out[..., :3, :3] = _so3._exp(w)
    out[..., :3, 3] = np.einsum("...ij,...j->...i", _so3._jl(w), rho)
    out[..., 3, 3] = 1.0
    return out


def _log(g):
    w = _so3._log(g[..., :3, :3])
    rho = np.einsum("...ij,...j->...i", _so3._jl_inv(w), g[..., :3, 3])
    return np.concatenate([rho, w], axis=-1)


def _compose(a, b):
    return a @ b


def _inverse(g):
    return _g.inverse_core(_self, g)


def _Q_terms(P, K):
    """``(KP + PK, KPK, K²P + PK² − 3KPK, 2 KPK²)`` (``KPK² = K²PK``, checked in
    ``derivations/se3.py``; ``PK = (KP)ᵀ`` and ``PK² = −(K²P)ᵀ`` since P, K are skew)."""
    KP = K @ P
    KPK = KP @ K
    K2P = K @ KP
    KPK2 = KPK @ K
    KPt = np.swapaxes(KP, -1, -2)
    PK2 = -np.swapaxes(K2P, -1, -2)
    return KP + KPt, KPK, K2P + PK2 - 3.0 * KPK, 2.0 * KPK2


def _Q_normal(rho, w, theta):
    t1, t2, t3, t4 = _Q_terms(_so3._hat(rho), _so3._hat(w))
    c = C(theta)[..., None, None]
    e = E(theta)[..., None, None]
    f = F(theta)[..., None, None]
    return 0.5 * _so3._hat(rho) + c * (t1 + t2) + e * t3 + f * t4


def _Q_big(rho, k, th):
    """Q with ``K = θ[k]×``: the powers of θ are folded into the coefficients."""
    t1, t2, t3, t4 = _Q_terms(_so3._hat(rho), _so3._hat(k))
    c1, c2, e2, f3 = _ua.q_coeffs(th)  # θC, θ²C, θ²E, θ³F
    col = (slice(None), None, None)
    return 0.5 * _so3._hat(rho) + c1[col] * t1 + c2[col] * t2 + e2[col] * t3 + f3[col] * t4


def _Q(rho, w):
    theta = _ua.norm(w)
    big = theta > _ua.BIG
    if not np.any(big):
        return _Q_normal(rho, w, theta)
    keep = ~big[..., None]
    out = _Q_normal(np.where(keep, rho, 0.0), np.where(keep, w, 0.0), np.where(big, 0.0, theta))
    th = theta[big]
    out[big] = _Q_big(rho[big], w[big] / th[:, None], th)
    return out


def _jl(tau):
    rho, w = tau[..., :3], tau[..., 3:]
    J = _so3._jl(w)
    out = np.zeros(tau.shape[:-1] + (6, 6))
    out[..., :3, :3] = J
    out[..., 3:, 3:] = J
    out[..., :3, 3:] = _Q(rho, w)
    return out


def _jr(tau):
    return _jl(-tau)


def _jl_inv(tau):
    rho, w = tau[..., :3], tau[..., 3:]
    Ji = _so3._jl_inv(w)
    out = np.zeros(tau.shape[:-1] + (6, 6))
    out[..., :3, :3] = Ji
    out[..., 3:, 3:] = Ji
    out[..., :3, 3:] = -Ji @ _Q(rho, w) @ Ji
    return out


def _jr_inv(tau):
    return _jl_inv(-tau)


def _check_tangent(tau, name):
    return _g.check_tangent(tau, name, 6)


def _check_element(g, name, tol):
    return _g.check_element(g, name, 3, True, tol)


# ---------------------------------------------------------------- public API


@_g.guarded
def exp(tau):
    r"""Exponential map ``g = Exp(ρ, ω)``.

    Parameters
    ----------
    tau : ndarray, shape (..., 6), float64
        Twists ``(ρ, ω)``, translation part first.

    Returns
    -------
    g : ndarray, shape (..., 4, 4), float64
        Homogeneous matrices ``[[Exp(ω), V(ω) ρ], [0, 1]]``.
    """
    return _exp(_check_tangent(tau, "tau"))


@_g.guarded
def log(g, *, tol: float = TOL):
    r"""Principal logarithm ``(ρ, ω) = Log(g)``, ``|ω| ∈ [0, π]``; shape (..., 4, 4) -> (..., 6).

    Raises ``ValueError`` naming ``g`` for a non-homogeneous matrix (last row not ``[0, 0, 0, 1]``
    within ``tol``), a non-orthogonal or reflecting rotation block, or NaN/inf.
    """
    return _log(_check_element(g, "g", tol))


@_g.guarded
def hat(tau):
    r"""``hat(ρ, ω) = [[[ω]×, ρ], [0, 0]]``; shape (..., 6) -> (..., 4, 4)."""
    return _hat(_check_tangent(tau, "tau"))


@_g.guarded
def vee(X):
    r"""Inverse of :func:`hat`: ``(X[:3, 3], vee_so3(X[:3, :3]))`` (skew part of the block)."""
    X = as_float64(X, "X")
    if X.ndim < 2 or X.shape[-2:] != (4, 4):
        raise ValueError(f"X must have shape (..., 4, 4); got {X.shape}")
    return np.concatenate([X[..., :3, 3], 0.5 * _so3._hat_T(X[..., :3, :3])], axis=-1)


@_g.guarded
def compose(a, b, *, tol: float = TOL):
    """Group product ``a b``."""
    return _compose(*_g.check_pair(_self, a, "a", b, "b", tol))


@_g.guarded
def inverse(g, *, tol: float = TOL):
    """Group inverse ``[[Rᵀ, −Rᵀ t], [0, 1]]``."""
    return _inverse(_check_element(g, "g", tol))


@_g.guarded
def act(g, x, *, tol: float = TOL):
    """Action on points ``y = R x + t``; ``g`` (..., 4, 4), ``x`` (..., 3), broadcast."""
    return _g.act(_self, g, x, tol)


@_g.guarded
def adjoint(g, *, tol: float = TOL):
    """``Ad_g = [[R, [t]× R], [0, R]]`` (``g Exp(δ) = Exp(Ad_g δ) g``); shape (..., 6, 6)."""
    g = _check_element(g, "g", tol)
    R = g[..., :3, :3]
    out = np.zeros(g.shape[:-2] + (6, 6))
    out[..., :3, :3] = R
    out[..., 3:, 3:] = R
    out[..., :3, 3:] = _so3._hat(g[..., :3, 3]) @ R
    return out


def identity():
    """The identity element ``I₄``, shape (4, 4)."""
    return np.eye(4)


@_g.guarded
def random(rng, n: int):
    """``n`` elements: Haar-uniform rotation, translation ``~ N(0, I₃)``; shape (n, 4, 4)."""
    rng, n = _g.rng_and_count(rng, n, (4, 4))
    out = np.zeros((n, 4, 4))
    out[:, :3, :3] = _so3.random(rng, n)
    out[:, :3, 3] = rng.standard_normal((n, 3))
    out[:, 3, 3] = 1.0
    return out


@_g.guarded
def right_jacobian(tau):
    r"""``Jr(τ) = Jl(−τ)``: ``Exp(τ + δ) ≈ Exp(τ) Exp(Jr δ)``; (..., 6) -> (..., 6, 6)."""
    return _jr(_check_tangent(tau, "tau"))


@_g.guarded
def left_jacobian(tau):
    r"""``Jl(τ) = [[Jl(ω), Q(ρ, ω)], [0, Jl(ω)]]``: ``Exp(τ + δ) ≈ Exp(Jl δ) Exp(τ)``."""
    return _jl(_check_tangent(tau, "tau"))


@_g.guarded
def right_jacobian_inverse(tau):
    r"""``Jr⁻¹(τ) = Jl⁻¹(−τ)``."""
    w = _check_tangent(tau, "tau")
    _g.check_invertible(_so3._theta(w[..., 3:]), "tau")
    return _jr_inv(w)


@_g.guarded
def left_jacobian_inverse(tau):
    r"""``Jl⁻¹(τ) = [[Jl⁻¹, −Jl⁻¹ Q Jl⁻¹], [0, Jl⁻¹]]`` (blocks of SO(3) ``Jl⁻¹(ω)``)."""
    w = _check_tangent(tau, "tau")
    _g.check_invertible(_so3._theta(w[..., 3:]), "tau")
    return _jl_inv(w)


@_g.guarded
def exp_vjp(tau, grad_g):
    """VJP of :func:`exp`: ``Jr(τ)ᵀ hatᵀ(gᵀ G)`` (see :mod:`geomp_ref.lie._generic`)."""
    return _g.exp_vjp(_self, tau, grad_g)


@_g.guarded
def log_vjp(g, grad_tau, *, tol: float = TOL):
    """VJP of :func:`log`: the tangent matrix gradient ``g hat(M⁻¹ Jr⁻¹ᵀ γ)``, last row zero."""
    return _g.log_vjp(_self, g, grad_tau, tol)


@_g.guarded
def compose_vjp(a, b, grad_c, *, tol: float = TOL):
    """VJP of :func:`compose`: ``(G bᵀ, aᵀ G)`` (ambient matrix gradients)."""
    return _g.compose_vjp(_self, a, b, grad_c, tol)


@_g.guarded
def act_vjp(g, x, grad_y, *, tol: float = TOL):
    """VJP of :func:`act`: ``grad_g = [[γ xᵀ, γ], [0, 0]]``, ``grad_x = Rᵀ γ``."""
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
    """``ξ_ij = Log(g_i⁻¹ g_j)`` for receiver ``i`` and sender ``j``, shape (..., 6)."""
    return _g.relative_log(_self, g_i, g_j, tol)


@_g.guarded
def relative_log_vjp(g_i, g_j, grad_tau, *, tol: float = TOL):
    """VJP of :func:`relative_log`: ``∂ξ/∂δ_j = Jr⁻¹(ξ)``, ``∂ξ/∂δ_i = −Jl⁻¹(ξ)``.

    Returns tangent matrix gradients ``(G_i, G_j)``; their translation columns are the gradients
    with respect to the positions ``t_i``, ``t_j`` (rotations held fixed). Proof:
    ``derivations/se3.py``.
    """
    return _g.relative_log_vjp(_self, g_i, g_j, grad_tau, tol)


_self = _sys.modules[__name__]
