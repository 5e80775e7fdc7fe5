r"""e3nn's radial pieces of TFN's point convolution (``gate_points_2101``), with VJPs.

.. math::

    \phi(x) = \tfrac12\big(1 - \cos(2\pi(x-1))\big) \text{ on } [\tfrac12, 1],
    \ 1 \text{ below}, \ 0 \text{ above};\qquad
    e_k(r) = \tfrac{\sqrt{B}}{1.12} \exp\!\big(-((r - \mu_k)/\Delta)^2\big),\quad
    \mu = \mathrm{linspace}(0, r_{max}, B),\ \Delta = \mu_1 - \mu_0,

:math:`\phi'(x) = \pi \sin(2\pi(x - 1))` inside, :math:`e_k'(r) = -2 e_k (r - \mu_k)/\Delta^2`.
Far lengths (up to the float64 range) give exact zeros, and so do their gradients.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["gaussian_embedding", "gaussian_embedding_vjp", "smooth_cutoff", "smooth_cutoff_vjp"]

_SOFT_ONE_HOT_DIV = 1.12  # e3nn's soft_one_hot_linspace 'gaussian' divisor


def smooth_cutoff(x):
    r"""e3nn's ``smooth_cutoff``: 1 for ``x <= 1/2``, ``(1 - cos(2 pi (x - 1)))/2`` up to 1,
    then 0."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # huge x: the branch is masked below
        u = 2.0 * (x - 1.0)
        y = (1.0 - np.cos(np.pi * u)) / 2.0
    return np.where(u > 0, 0.0, np.where(u < -1, 1.0, y))


def smooth_cutoff_vjp(x, grad_y):
    """``grad_y * phi'(x)`` (0 outside ``(1/2, 1)``)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):  # u = inf far away is outside anyway
        u = 2.0 * (x - 1.0)
    inside = (u <= 0) & (u >= -1)
    d = np.pi * np.sin(np.pi * np.where(inside, u, 0.0))
    return grad_y * np.where(inside, d, 0.0)


def gaussian_embedding(r, max_radius: float, num_basis: int):
    r"""e3nn's ``soft_one_hot_linspace(r, 0, max_radius, B, 'gaussian', cutoff=False) *
    sqrt(B)``, shape (E, B)."""
    mu = np.linspace(0.0, max_radius, num_basis)
    step = mu[1] - mu[0]
    with np.errstate(over="ignore"):  # diff^2 = inf far away: exp(-inf) = 0 exactly
        diff = (np.asarray(r, dtype=np.float64)[:, None] - mu) / step
        return np.exp(-diff * diff) / _SOFT_ONE_HOT_DIV * math.sqrt(num_basis)


def gaussian_embedding_vjp(r, max_radius: float, num_basis: int, grad_e):
    """``grad_r`` of :func:`gaussian_embedding`: ``sum_k grad_e_k e_k (-2 diff_k / step)``; a
    Gaussian that underflowed to 0 contributes 0 (never ``0 * inf``)."""
    mu = np.linspace(0.0, max_radius, num_basis)
    step = mu[1] - mu[0]
    with np.errstate(over="ignore", invalid="ignore"):
        diff = (np.asarray(r, dtype=np.float64)[:, None] - mu) / step
        e = np.exp(-diff * diff) / _SOFT_ONE_HOT_DIV * math.sqrt(num_basis)
        d = np.where(e > 0.0, e * (-2.0 * diff / step), 0.0)
    return np.sum(grad_e * d, axis=1)
