r"""SO(2): planar rotations as 2×2 matrices, tangent an angle ``θ`` of shape ``(...)``.

.. math::

    \mathrm{Exp}(\theta) = \begin{bmatrix}\cos\theta & -\sin\theta\\ \sin\theta & \cos\theta
    \end{bmatrix}, \qquad
    \mathrm{Log}(R) = \operatorname{atan2}(R_{10} - R_{01},\ R_{00} + R_{11}) \in (-\pi, \pi]

The group is commutative, so ``Ad = Jr = Jl = Jr⁻¹ = Jl⁻¹ = 1``; these are returned as arrays of
ones with the batch shape of the input (tangents are scalars, so the 1×1 "matrices" are scalars).
Log uses both pairs of entries, which is robust to slightly non-orthogonal input, and never reduces
``mod 2π`` (which would lose relative accuracy for small negative angles). ``−π`` is returned only
for a negative-zero sine part; either twin ``±π`` is the same rotation.

Conventions: see :mod:`geomp_ref.lie`. References: Solà et al., arXiv:1812.01537, §A.
"""

from __future__ import annotations

import sys as _sys

import numpy as np

from .._validate import as_float64
from . import _generic as _g

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

DOF = 1
TOL = 1e-9
_DIM = 2
_HOMOGENEOUS = False
_J = np.array([[0.0, -1.0], [1.0, 0.0]])


def _hat(theta):
    return theta[..., None, None] * _J


def _hat_T(M):
    # ⟨M, θ J⟩_F = θ (M10 − M01)
    return M[..., 1, 0] - M[..., 0, 1]


def _metric_solve(w):
    return 0.5 * w  # ⟨θ₁J, θ₂J⟩_F = 2 θ₁θ₂


def _tmatvec(J, v):
    return J * v


def _exp(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _log(R):
    return np.arctan2(R[..., 1, 0] - R[..., 0, 1], R[..., 0, 0] + R[..., 1, 1])


def _compose(a, b):
    return a @ b


def _inverse(g):
    return _g.inverse_core(_self, g)


def _ones(theta):
    return np.ones(np.shape(theta))


_jr = _jl = _jr_inv = _jl_inv = _ones


def _check_tangent(theta, name):
    return _g.check_tangent(theta, name, None)


def _check_element(R, name, tol):
    return _g.check_element(R, name, 2, False, tol)


@_g.guarded
def exp(tau):
    """Rotation matrix of angle ``θ``; shape (...) -> (..., 2, 2). No reduction of ``θ``."""
    return _exp(_check_tangent(tau, "tau"))


@_g.guarded
def log(g, *, tol: float = TOL):
    """Principal angle in ``(−π, π]`` of rotation matrices (..., 2, 2) -> (...).

    Raises ``ValueError`` naming ``g`` if it is not a rotation within ``tol`` (or has NaN/inf).
    """
    return _log(_check_element(g, "g", tol))


@_g.guarded
def hat(tau):
    """``θ J = [[0, −θ], [θ, 0]]``; shape (...) -> (..., 2, 2)."""
    return _hat(_check_tangent(tau, "tau"))


@_g.guarded
def vee(X):
    """Inverse of :func:`hat`: ``(X10 − X01)/2``; shape (..., 2, 2) -> (...)."""
    X = as_float64(X, "X")
    if X.ndim < 2 or X.shape[-2:] != (2, 2):
        raise ValueError(f"X must have shape (..., 2, 2); got {X.shape}")
    return 0.5 * _hat_T(X)


@_g.guarded
def compose(a, b, *, tol: float = TOL):
    """Group product ``a b``."""
    return _compose(*_g.check_pair(_self, a, "a", b, "b", tol))


@_g.guarded
def inverse(g, *, tol: float = TOL):
    """Group inverse ``Rᵀ``."""
    return _inverse(_check_element(g, "g", tol))


@_g.guarded
def act(g, x, *, tol: float = TOL):
    """Action on points ``y = R x``; ``g`` (..., 2, 2), ``x`` (..., 2)."""
    return _g.act(_self, g, x, tol)


@_g.guarded
def adjoint(g, *, tol: float = TOL):
    """``Ad = 1`` (commutative group); shape (...)."""
    return _ones(_check_element(g, "g", tol)[..., 0, 0])


def identity():
    """``I₂``, shape (2, 2)."""
    return np.eye(2)


@_g.guarded
def random(rng, n: int):
    """``n`` uniform rotations (angle ``~ U[−π, π)``), shape (n, 2, 2)."""
    rng, n = _g.rng_and_count(rng, n, (2, 2))
    return _exp(rng.uniform(-np.pi, np.pi, n))


@_g.guarded
def right_jacobian(tau):
    """``Jr = 1``, shape of ``tau``."""
    return _ones(_check_tangent(tau, "tau"))


@_g.guarded
def left_jacobian(tau):
    """``Jl = 1``, shape of ``tau``."""
    return _ones(_check_tangent(tau, "tau"))


@_g.guarded
def right_jacobian_inverse(tau):
    """``Jr⁻¹ = 1``, shape of ``tau``."""
    return _ones(_check_tangent(tau, "tau"))


@_g.guarded
def left_jacobian_inverse(tau):
    """``Jl⁻¹ = 1``, shape of ``tau``."""
    return _ones(_check_tangent(tau, "tau"))


@_g.guarded
def exp_vjp(tau, grad_g):
    """VJP of :func:`exp`: ``⟨G, R J⟩ = hatᵀ(Rᵀ G)``."""
    return _g.exp_vjp(_self, tau, grad_g)


@_g.guarded
def log_vjp(g, grad_tau, *, tol: float = TOL):
    """VJP of :func:`log`: the tangent matrix gradient ``½ γ R J``."""
    return _g.log_vjp(_self, g, grad_tau, tol)


@_g.guarded
def compose_vjp(a, b, grad_c, *, tol: float = TOL):
    """VJP of :func:`compose`: ``(G bᵀ, aᵀ G)``."""
    return _g.compose_vjp(_self, a, b, grad_c, tol)


@_g.guarded
def act_vjp(g, x, grad_y, *, tol: float = TOL):
    """VJP of :func:`act`: ``(γ xᵀ, Rᵀ γ)``."""
    return _g.act_vjp(_self, g, x, grad_y, tol)


@_g.guarded
def rplus(g, tau, *, tol: float = TOL):
    """``g ⊕ θ = g Exp(θ)``."""
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
    """``ξ_ij = Log(g_i⁻¹ g_j)``, shape (...)."""
    return _g.relative_log(_self, g_i, g_j, tol)


@_g.guarded
def relative_log_vjp(g_i, g_j, grad_tau, *, tol: float = TOL):
    """VJP of :func:`relative_log` (``∂ξ/∂θ_j = 1``, ``∂ξ/∂θ_i = −1``); matrix gradients."""
    return _g.relative_log_vjp(_self, g_i, g_j, grad_tau, tol)


_self = _sys.modules[__name__]
