r"""SE(2): planar rigid motions as 3×3 homogeneous matrices, tangent ``τ = (ρ₁, ρ₂, θ)``.

.. math::

    \mathrm{Exp}(\rho, \theta) = \begin{bmatrix} R(\theta) & V(\theta)\rho \\ 0 & 1
    \end{bmatrix}, \quad V(\theta) = A(\theta) I + \theta B(\theta) J, \quad
    V^{-1} = H(\tfrac\theta2) I - \tfrac\theta2 J, \quad J = \begin{bmatrix}0&-1\\1&0\end{bmatrix}

    J_r = \begin{bmatrix} A & \theta B & \rho_1\theta C - \rho_2 B \\
    -\theta B & A & \rho_1 B + \rho_2 \theta C \\ 0 & 0 & 1 \end{bmatrix}, \qquad
    J_l(\tau) = J_r(-\tau)

(Solà's SE(2) Jacobians with the third column written through ``B`` and ``C`` so nothing cancels.)
Inverses: ``[[M⁻¹, −M⁻¹ m], [0, 1]]`` with ``M⁻¹ = V(∓θ)⁻¹ = H I ± (θ/2) J``.
``Ad_g = [[R, (t₂, −t₁)ᵀ], [0, 1]]``. Log: ``θ`` as SO(2) (principal, ``(−π, π]``), ``ρ = V⁻¹ t``;
``H(π/2) = 0`` exactly, so ``θ = π`` is regular. ``V⁻¹`` is singular at ``θ = 2πk, k ≠ 0``.

Conventions: translation first, right perturbations; see :mod:`geomp_ref.lie`.
Any finite tangent is accepted: ``A``, ``B``, ``C`` stay finite and accurate for every angle
(:mod:`geomp_ref.lie._series`), and ``Jr⁻¹``/``Jl⁻¹`` refuse ``|θ|`` within rounding of ``2πk``
(k ≠ 0), where ``V`` is singular.

References: Solà et al., arXiv:1812.01537, §C (eqs. 156-164).
"""

from __future__ import annotations

import sys as _sys

import numpy as np

from .._validate import as_float64
from . import _generic as _g
from . import so2 as _so2
from ._series import A, B, C, H

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
_DIM = 2
_HOMOGENEOUS = True


def _hat(tau):
    out = np.zeros(tau.shape[:-1] + (3, 3))
    out[..., :2, :2] = _so2._hat(tau[..., 2])
    out[..., :2, 2] = tau[..., :2]
    return out


def _hat_T(M):
    return np.concatenate([M[..., :2, 2], _so2._hat_T(M[..., :2, :2])[..., None]], axis=-1)


def _metric_solve(w):
    return np.concatenate([w[..., :2], 0.5 * w[..., 2:]], axis=-1)


def _tmatvec(J, v):
    return np.einsum("...ji,...j->...i", J, v)


def _exp(tau):
    r1, r2, th = tau[..., 0], tau[..., 1], tau[..., 2]
    a, tb = A(th), th * B(th)
    out = np.zeros(tau.shape[:-1] + (3, 3))
    out[..., :2, :2] = _so2._exp(th)
    out[..., 0, 2] = a * r1 - tb * r2
    out[..., 1, 2] = tb * r1 + a * r2
    out[..., 2, 2] = 1.0
    return out


def _log(g):
    th = _so2._log(g[..., :2, :2])
    h = 0.5 * th
    hh = H(h)
    t1, t2 = g[..., 0, 2], g[..., 1, 2]
    return np.stack([hh * t1 + h * t2, -h * t1 + hh * t2, th], axis=-1)


def _compose(a, b):
    return a @ b


def _inverse(g):
    return _g.inverse_core(_self, g)


def _jr(tau):
    r1, r2, th = tau[..., 0], tau[..., 1], tau[..., 2]
    a, b, c = A(th), B(th), C(th)
    out = np.zeros(tau.shape[:-1] + (3, 3))
    out[..., 0, 0] = a
    out[..., 0, 1] = th * b
    out[..., 1, 0] = -th * b
    out[..., 1, 1] = a
    out[..., 0, 2] = r1 * th * c - r2 * b
    out[..., 1, 2] = r1 * b + r2 * th * c
    out[..., 2, 2] = 1.0
    return out


def _jl(tau):
    return _jr(-tau)


def _jr_inv(tau):
    th = tau[..., 2]
    h = 0.5 * th
    hh = H(h)
    Mi = np.zeros(tau.shape[:-1] + (2, 2))  # (V(−θ))⁻¹ = H I + (θ/2) J
    Mi[..., 0, 0] = hh
    Mi[..., 0, 1] = -h
    Mi[..., 1, 0] = h
    Mi[..., 1, 1] = hh
    m = _jr(tau)[..., :2, 2]
    out = np.zeros(tau.shape[:-1] + (3, 3))
    out[..., :2, :2] = Mi
    out[..., :2, 2] = -np.einsum("...ij,...j->...i", Mi, m)
    out[..., 2, 2] = 1.0
    return out


def _jl_inv(tau):
    return _jr_inv(-tau)


def _check_tangent(tau, name):
    return _g.check_tangent(tau, name, 3)


def _check_element(g, name, tol):
    return _g.check_element(g, name, 2, True, tol)


@_g.guarded
def exp(tau):
    """Exponential map; ``tau`` (..., 3) = ``(ρ₁, ρ₂, θ)`` -> (..., 3, 3). No reduction of ``θ``."""
    return _exp(_check_tangent(tau, "tau"))


@_g.guarded
def log(g, *, tol: float = TOL):
    """Principal logarithm (``θ ∈ (−π, π]``); (..., 3, 3) -> (..., 3).

    Raises ``ValueError`` naming ``g`` for a non-homogeneous matrix, a non-rotation block
    (within ``tol``) or NaN/inf.
    """
    return _log(_check_element(g, "g", tol))


@_g.guarded
def hat(tau):
    """``[[θ J, ρ], [0, 0]]``; (..., 3) -> (..., 3, 3)."""
    return _hat(_check_tangent(tau, "tau"))


@_g.guarded
def vee(X):
    """Inverse of :func:`hat`: ``(X02, X12, (X10 − X01)/2)``."""
    X = as_float64(X, "X")
    if X.ndim < 2 or X.shape[-2:] != (3, 3):
        raise ValueError(f"X must have shape (..., 3, 3); got {X.shape}")
    return np.concatenate([X[..., :2, 2], 0.5 * _so2._hat_T(X[..., :2, :2])[..., None]], -1)


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
    """Action on points ``y = R x + t``; ``g`` (..., 3, 3), ``x`` (..., 2)."""
    return _g.act(_self, g, x, tol)


@_g.guarded
def adjoint(g, *, tol: float = TOL):
    """``Ad_g = [[R, (t₂, −t₁)ᵀ], [0, 1]]``; shape (..., 3, 3)."""
    g = _check_element(g, "g", tol)
    out = np.zeros(g.shape[:-2] + (3, 3))
    out[..., :2, :2] = g[..., :2, :2]
    out[..., 0, 2] = g[..., 1, 2]
    out[..., 1, 2] = -g[..., 0, 2]
    out[..., 2, 2] = 1.0
    return out


def identity():
    """``I₃``, shape (3, 3)."""
    return np.eye(3)


@_g.guarded
def random(rng, n: int):
    """``n`` elements: angle ``~ U[−π, π)``, translation ``~ N(0, I₂)``; shape (n, 3, 3)."""
    rng, n = _g.rng_and_count(rng, n, (3, 3))
    out = np.zeros((n, 3, 3))
    out[:, :2, :2] = _so2._exp(rng.uniform(-np.pi, np.pi, n))
    out[:, :2, 2] = rng.standard_normal((n, 2))
    out[:, 2, 2] = 1.0
    return out


@_g.guarded
def right_jacobian(tau):
    """``Jr(τ)`` (module docstring); (..., 3) -> (..., 3, 3)."""
    return _jr(_check_tangent(tau, "tau"))


@_g.guarded
def left_jacobian(tau):
    """``Jl(τ) = Jr(−τ)``."""
    return _jl(_check_tangent(tau, "tau"))


@_g.guarded
def right_jacobian_inverse(tau):
    """``Jr⁻¹(τ)`` via ``V(−θ)⁻¹ = H(θ/2) I + (θ/2) J``."""
    w = _check_tangent(tau, "tau")
    _g.check_invertible(np.abs(w[..., 2]), "tau")
    return _jr_inv(w)


@_g.guarded
def left_jacobian_inverse(tau):
    """``Jl⁻¹(τ) = Jr⁻¹(−τ)``."""
    w = _check_tangent(tau, "tau")
    _g.check_invertible(np.abs(w[..., 2]), "tau")
    return _jl_inv(w)


@_g.guarded
def exp_vjp(tau, grad_g):
    """VJP of :func:`exp`: ``Jr(τ)ᵀ hatᵀ(gᵀ G)``."""
    return _g.exp_vjp(_self, tau, grad_g)


@_g.guarded
def log_vjp(g, grad_tau, *, tol: float = TOL):
    """VJP of :func:`log`: the tangent matrix gradient ``g hat(M⁻¹ Jr⁻¹ᵀ γ)``, last row zero."""
    return _g.log_vjp(_self, g, grad_tau, tol)


@_g.guarded
def compose_vjp(a, b, grad_c, *, tol: float = TOL):
    """VJP of :func:`compose`: ``(G bᵀ, aᵀ G)``."""
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
    """``ξ_ij = Log(g_i⁻¹ g_j)``, shape (..., 3)."""
    return _g.relative_log(_self, g_i, g_j, tol)


@_g.guarded
def relative_log_vjp(g_i, g_j, grad_tau, *, tol: float = TOL):
    """VJP of :func:`relative_log`: ``∂ξ/∂δ_j = Jr⁻¹(ξ)``, ``∂ξ/∂δ_i = −Jl⁻¹(ξ)``.

    Proof: ``derivations/so2_se2.py``.
    """
    return _g.relative_log_vjp(_self, g_i, g_j, grad_tau, tol)


_self = _sys.modules[__name__]
