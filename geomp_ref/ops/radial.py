r"""Radial bases and smooth cutoffs of an edge length :math:`d`, with VJPs w.r.t. :math:`d`.

Gaussian basis (SchNet): :math:`e_k(d) = \exp(-\gamma (d - \mu_k)^2)`,
:math:`e_k'(d) = -2\gamma (d - \mu_k) e_k(d)`.

Bessel basis (DimeNet): :math:`b_n(d) = \sqrt{2/c}\, \sin(n \pi d / c) / d`, :math:`n = 1..K`;
at :math:`d \to 0` the limit :math:`\sqrt{2/c}\, n\pi/c` is used (series below ``d < 1e-4 c``:
:math:`\sin(a d)/d = a(1 - (ad)^2/6 + (ad)^4/120)`, whose truncation error is far below an ulp there).

Cosine cutoff: :math:`C(d) = \tfrac12(\cos(\pi d/c) + 1)` for :math:`d < c`, else 0.

Polynomial cutoff (DimeNet envelope, order p): with :math:`u = d/c < 1`,
:math:`C(u) = 1 - \tfrac{(p+1)(p+2)}{2} u^p + p(p+2) u^{p+1} - \tfrac{p(p+1)}{2} u^{p+2}`, else 0.

Derivations: ``derivations/dense_activations.py``.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_int, check_positive

__all__ = [
    "gaussian_rbf", "gaussian_rbf_vjp", "gaussian_centers",
    "bessel_rbf", "bessel_rbf_vjp",
    "cosine_cutoff", "cosine_cutoff_vjp",
    "polynomial_cutoff", "polynomial_cutoff_vjp",
]


def gaussian_centers(start: float, stop: float, num: int):
    """``(mu, gamma)`` as SchNet: ``mu = linspace(start, stop, num)``, ``gamma = 0.5 / delta^2``."""
    num = check_int(num, "num", minimum=2)
    mu = np.linspace(float(start), float(stop), num)
    delta = (float(stop) - float(start)) / (num - 1)
    return mu, 0.5 / delta**2


def gaussian_rbf(d, mu, gamma: float):
    """``exp(-gamma (d - mu_k)^2)``: shape (*d.shape, K)."""
    d = np.asarray(d, dtype=np.float64)[..., None]
    return np.exp(-gamma * (d - mu) ** 2)


def gaussian_rbf_vjp(d, mu, gamma: float, grad_out):
    d1 = np.asarray(d, dtype=np.float64)[..., None]
    e = np.exp(-gamma * (d1 - mu) ** 2)
    return np.sum(grad_out * (-2.0 * gamma) * (d1 - mu) * e, axis=-1)


def bessel_rbf(d, num: int, cutoff: float):
    """``sqrt(2/c) sin(n pi d / c) / d`` for n = 1..num: shape (*d.shape, num)."""
    num = check_int(num, "num", minimum=1)
    c = check_positive(cutoff, "cutoff")
    d = np.asarray(d, dtype=np.float64)[..., None]
    a = np.arange(1, num + 1) * np.pi / c
    small = d < 1e-4 * c
    ds = np.where(small, 1.0, d)
    ad2 = (a * d) ** 2
    series = a * (1.0 - ad2 / 6.0 + ad2 * ad2 / 120.0)
    return np.sqrt(2.0 / c) * np.where(small, series, np.sin(a * ds) / ds)


def bessel_rbf_vjp(d, num: int, cutoff: float, grad_out):
    c = float(cutoff)
    d = np.asarray(d, dtype=np.float64)[..., None]
    a = np.arange(1, num + 1) * np.pi / c
    small = d < 1e-4 * c
    ds = np.where(small, 1.0, d)
    # d/dd sin(a d)/d = (a d cos(a d) - sin(a d)) / d^2 ; series: a (-(a^2) d/3 + a^4 d^3/30)
    exact = (a * ds * np.cos(a * ds) - np.sin(a * ds)) / ds**2
    series = a * (-(a**2) * d / 3.0 + a**4 * d**3 / 30.0)
    deriv = np.sqrt(2.0 / c) * np.where(small, series, exact)
    return np.sum(grad_out * deriv, axis=-1)


def cosine_cutoff(d, cutoff: float):
    c = check_positive(cutoff, "cutoff")
    d = np.asarray(d, dtype=np.float64)
    return np.where(d < c, 0.5 * (np.cos(np.pi * d / c) + 1.0), 0.0)


def cosine_cutoff_vjp(d, cutoff: float, grad_out):
    c = float(cutoff)
    d = np.asarray(d, dtype=np.float64)
    return grad_out * np.where(d < c, -0.5 * np.pi / c * np.sin(np.pi * d / c), 0.0)


def polynomial_cutoff(d, cutoff: float, p: int = 6):
    c = check_positive(cutoff, "cutoff")
    p = check_int(p, "p", minimum=1)
    u = np.asarray(d, dtype=np.float64) / c
    val = (1.0 - (p + 1) * (p + 2) / 2.0 * u**p + p * (p + 2) * u ** (p + 1)
           - p * (p + 1) / 2.0 * u ** (p + 2))
    return np.where(u < 1.0, val, 0.0)


def polynomial_cutoff_vjp(d, cutoff: float, grad_out, p: int = 6):
    c = float(cutoff)
    u = np.asarray(d, dtype=np.float64) / c
    der = (-(p + 1) * (p + 2) / 2.0 * p * u ** (p - 1) + p * (p + 2) * (p + 1) * u**p
           - p * (p + 1) / 2.0 * (p + 2) * u ** (p + 1)) / c
    return grad_out * np.where(u < 1.0, der, 0.0)
