r"""Huge rotation angles: an overflow-free norm and the unit-axis forms of SO(3) and SE(3).

With :math:`\omega = \theta k` (unit axis k), :math:`[\omega]_\times = \theta [k]_\times` and
:math:`[\omega]_\times^2 = \theta^2 [k]_\times^2`, so a combination
:math:`a I + b [\omega]_\times + c [\omega]_\times^2` equals
:math:`a I + (\theta b) [k]_\times + (\theta^2 c) [k]_\times^2`. The scaled coefficients are
finite for every angle (Jl⁻¹ except at 2πk) and computed without multiplying two huge numbers:

* Exp: :math:`(1, A, B) \to (1,\ \sin\theta,\ 2\sin^2\tfrac\theta2)`;
* Jl: :math:`(1, B, C) \to (1,\ 2\sin^2\tfrac\theta2/\theta,\ 1 - \sin\theta/\theta)`;
* Jl⁻¹: :math:`(1, -\tfrac12, D) \to (1,\ -\tfrac\theta2,\ 1 - \tfrac\theta2\cot\tfrac\theta2)`;

and SE(3)'s Q block takes :math:`(\theta C, \theta^2 C, \theta^2 E, \theta^3 F)`. NumPy's sine
and cosine reduce any finite argument exactly, so these forms are as accurate as the float64
angle allows. The group modules use them beyond :data:`BIG` (1e8), where the ordinary forms
start to square large numbers; below it nothing changes (``derivations/so3.py`` checks the
rewrites symbolically and against mpmath up to 1e300).
"""

from __future__ import annotations

import numpy as np

#: beyond this angle the unit-axis forms are used
BIG = 1e8
_HUGE_ENTRY = 1e150  # |ω_i| above this: ω·ω would overflow, so rescale before the norm


def norm(w):
    """``|ω|`` over the last axis without overflow (rescaled by ``max |ω_i|`` where needed)."""
    with np.errstate(over="ignore"):
        theta = np.sqrt(np.sum(w * w, axis=-1))
    m = np.max(np.abs(w), axis=-1) if w.shape[-1] else np.zeros(w.shape[:-1])
    huge = m > _HUGE_ENTRY
    if np.any(huge):
        ms = np.where(huge, m, 1.0)
        theta = np.where(huge, ms * np.sqrt(np.sum((w / ms[..., None]) ** 2, axis=-1)), theta)
    return theta


def by_angle(w, normal, big_form):
    """``normal(w, θ)`` where ``θ = |w| <= BIG``; ``big_form(k, θ)`` (unit axes k, (n, 3)) beyond.

    The ordinary branch sees zeros in place of the huge rows, so it never overflows.
    """
    theta = norm(w)
    big = theta > BIG
    if not np.any(big):
        return normal(w, theta)
    out = normal(np.where(big[..., None], 0.0, w), np.where(big, 0.0, theta))
    th = theta[big]
    out[big] = big_form(w[big] / th[:, None], th)
    return out


def exp_coeffs(th):
    """``(θA, θ²B) = (sin θ, 2 sin²(θ/2))``."""
    h = np.sin(0.5 * th)
    return np.sin(th), 2.0 * h * h


def jl_coeffs(th):
    """``(θB, θ²C) = (2 sin²(θ/2)/θ, 1 − sin θ/θ)``."""
    h = np.sin(0.5 * th)
    return 2.0 * h * h / th, 1.0 - np.sin(th) / th


def jl_inv_coeffs(th):
    """``(−θ/2, θ²D) = (−θ/2, 1 − (θ/2) cot(θ/2))``; singular at ``θ = 2πk`` (refused upstream)."""
    h = 0.5 * th
    with np.errstate(divide="ignore", invalid="ignore"):
        return -h, 1.0 - h * np.cos(h) / np.sin(h)


def q_coeffs(th):
    """``(θC, θ²C, θ²E, θ³F)`` of SE(3)'s Q block."""
    s, h = np.sin(th), np.sin(0.5 * th)
    c2 = 1.0 - s / th
    return c2 / th, c2, 0.5 - 2.0 * h * h / th / th, 0.5 * (2.0 - 3.0 * s / th + np.cos(th)) / th
