r"""Radial bases and smooth cutoffs of an edge length :math:`d`, with VJPs w.r.t. :math:`d`.

Gaussian basis (SchNet): :math:`e_k(d) = \exp(-\gamma (d - \mu_k)^2)`,
:math:`e_k'(d) = -2\gamma (d - \mu_k) e_k(d)`.

Bessel basis (DimeNet): :math:`b_n(d) = \sqrt{2/c}\, \sin(n \pi d / c) / d`, :math:`n = 1..K`;
at :math:`d = 0` the limit :math:`\sqrt{2/c}\, n\pi/c` is used; the derivative
:math:`a^2\,\mathrm{sinc}'(a d)` is summed from its Taylor series for :math:`a d < 1`, where the
closed form would cancel.

Cosine cutoff: :math:`C(d) = \tfrac12(\cos(\pi d/c) + 1)` for :math:`d < c`, else 0.

Polynomial cutoff (DimeNet envelope, order p): with :math:`u = d/c < 1`,
:math:`C(u) = 1 - \tfrac{(p+1)(p+2)}{2} u^p + p(p+2) u^{p+1} - \tfrac{p(p+1)}{2} u^{p+2}`, else 0.

Derivations: ``derivations/dense_activations.py``.

Every function takes ``backend=`` (``"numpy"``, the reference; ``"numba"``: one fused pass,
:mod:`geomp_ref.backends.numba_elementwise`, within a few ulp; ``"cuda"`` computes these on the
host with the reference). :func:`gaussian_rbf_vjp` accepts the forward's values (``value=``) so
that the backward reads them instead of recomputing the exponentials.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backends as _backends
from .._validate import as_float64, check_int, check_positive, cotangent

__all__ = [
    "gaussian_rbf", "gaussian_rbf_vjp", "gaussian_centers",
    "bessel_rbf", "bessel_rbf_vjp",
    "cosine_cutoff", "cosine_cutoff_vjp",
    "polynomial_cutoff", "polynomial_cutoff_vjp",
]


def _kernels(backend: str):
    """The backend module when it has the fused radial kernels, else None (NumPy reference)."""
    if backend == "numpy":
        return None
    be = _backends.get(backend)
    return be if hasattr(be, "gaussian_rbf") else None


def _distances(d) -> np.ndarray:
    return as_float64(d, "d")


def _gaussian(d, mu, gamma):
    d = _distances(d)
    mu = as_float64(mu, "mu", ndim=1)
    gamma = check_positive(gamma, "gamma")
    return d, mu, gamma


def gaussian_centers(start: float, stop: float, num: int):
    """``(mu, gamma)`` as SchNet: ``mu = linspace(start, stop, num)``, ``gamma = 0.5 / delta^2``."""
    num = check_int(num, "num", minimum=2)
    start, stop = float(as_float64(start, "start", ndim=0)), float(as_float64(stop, "stop", ndim=0))
    if not stop > start:
        raise ValueError(f"stop must be > start; got start={start}, stop={stop}")
    mu = np.linspace(float(start), float(stop), num)
    delta = (float(stop) - float(start)) / (num - 1)
    return mu, 0.5 / delta**2


def gaussian_rbf(d, mu, gamma: float, *, backend: str = "numpy"):
    """``exp(-gamma (d - mu_k)^2)``: shape (*d.shape, K)."""
    d, mu, gamma = _gaussian(d, mu, gamma)
    be = _kernels(backend)
    if be is not None:
        return be.gaussian_rbf(d, mu, gamma)
    return np.exp(-gamma * (d[..., None] - mu) ** 2)


def gaussian_rbf_vjp(d, mu, gamma: float, grad_out, *, value=None, backend: str = "numpy"):
    """VJP w.r.t. ``d``, shape ``d.shape``; ``value`` = the forward's output (reused if given)."""
    d, mu, gamma = _gaussian(d, mu, gamma)
    grad_out = cotangent(grad_out, d.shape + mu.shape, "gaussian_rbf_vjp")
    if value is not None:
        value = as_float64(value, "value")
        if value.shape != grad_out.shape:
            raise ValueError(f"value must be gaussian_rbf's output, shape {grad_out.shape}; "
                             f"got {value.shape}")
    be = _kernels(backend)
    if be is not None:
        return be.gaussian_rbf_vjp(d, mu, gamma, grad_out, value)
    d1 = d[..., None]
    e = value if value is not None else np.exp(-gamma * (d1 - mu) ** 2)
    return np.sum(grad_out * (-2.0 * gamma) * (d1 - mu) * e, axis=-1)


def _sinc_and_derivative(t):
    """``sin(t)/t`` and its derivative ``(t cos t - sin t)/t^2`` for ``t >= 0``, to a few ulps.

    The value needs no series (``sin`` is relatively accurate and only ``t = 0`` is special). The
    derivative cancels for small ``t``; below ``t = 1`` it is summed from its Taylor series
    ``sum_{k>=1} (-1)^k 2k t^(2k-1) / (2k+1)!``, 10 terms (the first omitted term is below
    ``1/21! < 2e-20`` relative at ``t = 1``); above, the closed form loses at most a factor ~3.
    """
    safe = np.where(t > 0, t, 1.0)
    val = np.where(t > 0, np.sin(safe) / safe, 1.0)
    exact = (safe * np.cos(safe) - np.sin(safe)) / safe**2
    t2 = t * t
    series = np.zeros_like(t)
    for k in range(10, 0, -1):  # Horner in t^2
        coef = (-1) ** k * 2 * k / math.factorial(2 * k + 1)
        series = series * t2 + coef
    series = series * t
    return val, np.where(t < 1.0, series, exact)


def bessel_rbf(d, num: int, cutoff: float, *, backend: str = "numpy"):
    """``sqrt(2/c) sin(n pi d / c) / d`` for n = 1..num: shape (*d.shape, num)."""
    num = check_int(num, "num", minimum=1)
    c = check_positive(cutoff, "cutoff")
    be = _kernels(backend)
    if be is not None:
        return be.bessel_rbf(_distances(d), num, c)
    d = _distances(d)[..., None]
    a = np.arange(1, num + 1) * np.pi / c
    val, _ = _sinc_and_derivative(a * d)
    return np.sqrt(2.0 / c) * a * val


def bessel_rbf_vjp(d, num: int, cutoff: float, grad_out, *, backend: str = "numpy"):
    """VJP of :func:`bessel_rbf` w.r.t. ``d``, shape ``d.shape``: ``sum_n grad_out[..., n]
    sqrt(2/c) a_n^2 sinc'(a_n d)`` with ``a_n = n pi / c`` (series near ``d = 0``)."""
    num = check_int(num, "num", minimum=1)
    c = check_positive(cutoff, "cutoff")
    d = _distances(d)
    grad_out = cotangent(grad_out, d.shape + (num,), "bessel_rbf_vjp")
    be = _kernels(backend)
    if be is not None:
        return be.bessel_rbf_vjp(d, num, c, grad_out)
    d = d[..., None]
    a = np.arange(1, num + 1) * np.pi / c
    _, dval = _sinc_and_derivative(a * d)
    # d/dd [a sinc(a d)] = a^2 sinc'(a d)
    return np.sum(grad_out * np.sqrt(2.0 / c) * a * a * dval, axis=-1)


def cosine_cutoff(d, cutoff: float, *, backend: str = "numpy"):
    """``0.5 (cos(pi d / c) + 1)`` for ``d < c``, else 0; shape ``d.shape``."""
    c = check_positive(cutoff, "cutoff")
    d = _distances(d)
    be = _kernels(backend)
    if be is not None:
        return be.cosine_cutoff(d, c)
    return np.where(d < c, 0.5 * (np.cos(np.pi * d / c) + 1.0), 0.0)


def cosine_cutoff_vjp(d, cutoff: float, grad_out, *, backend: str = "numpy"):
    """VJP w.r.t. ``d``: ``grad_out * (-pi / (2c)) sin(pi d / c)`` for ``d < c``, else 0."""
    c = check_positive(cutoff, "cutoff")
    d = _distances(d)
    grad_out = cotangent(grad_out, d.shape, "cosine_cutoff_vjp")
    be = _kernels(backend)
    if be is not None:
        return be.cosine_cutoff_vjp(d, c, grad_out)
    return grad_out * np.where(d < c, -0.5 * np.pi / c * np.sin(np.pi * d / c), 0.0)


def polynomial_cutoff(d, cutoff: float, p: int = 6, *, backend: str = "numpy"):
    """DimeNet's envelope of order ``p`` in ``u = d / c`` (module docstring) for ``u < 1``, else
    0; shape ``d.shape``. Value 1 and ``p - 1`` vanishing derivatives at 0, ``C(1) = C'(1) =
    C''(1) = 0``."""
    c = check_positive(cutoff, "cutoff")
    p = check_int(p, "p", minimum=1)
    be = _kernels(backend)
    if be is not None:
        return be.polynomial_cutoff(_distances(d), c, p)
    u = _distances(d) / c
    val = (1.0 - (p + 1) * (p + 2) / 2.0 * u**p + p * (p + 2) * u ** (p + 1)
           - p * (p + 1) / 2.0 * u ** (p + 2))
    return np.where(u < 1.0, val, 0.0)


def polynomial_cutoff_vjp(d, cutoff: float, grad_out, p: int = 6, *, backend: str = "numpy"):
    """VJP of :func:`polynomial_cutoff` w.r.t. ``d``: ``grad_out * C'(u) / c`` for ``u < 1``,
    else 0."""
    c = check_positive(cutoff, "cutoff")
    p = check_int(p, "p", minimum=1)
    d = _distances(d)
    grad_out = cotangent(grad_out, d.shape, "polynomial_cutoff_vjp")
    be = _kernels(backend)
    if be is not None:
        return be.polynomial_cutoff_vjp(d, c, grad_out, p)
    u = d / c
    der = (-(p + 1) * (p + 2) / 2.0 * p * u ** (p - 1) + p * (p + 2) * (p + 1) * u**p
           - p * (p + 1) / 2.0 * (p + 2) * u ** (p + 1)) / c
    return grad_out * np.where(u < 1.0, der, 0.0)
