r"""Fused elementwise Numba kernels: activations with their derivatives, radial bases, cutoffs.

One pass over the data replaces the several NumPy passes (and temporaries) of the reference in
:mod:`geomp_ref.ops.activations` and :mod:`geomp_ref.ops.radial`; the transcendental functions come
from :mod:`geomp_ref.backends._nbmath`, which vectorize. Results agree with the NumPy reference to a
few ulp per element (the reference's own ``np.exp``/``np.log1p`` are not correctly rounded either);
``tests/backends/test_fused_kernels.py`` checks every kernel against it, in float64 and float32.

Kernels:

* :func:`activation` ``(name, x) -> f(x)``; :func:`activation_vjp` ``(name, x, g) -> g f'(x)``;
* :func:`activation_with_grad` ``(name, z, b) -> (z + b, f(z + b), f'(z + b))``: the forward of a
  dense layer's activation, adding the bias in the same pass and keeping the derivative for the
  backward (``g_z = g_y * f'``, one multiplication, nothing recomputed);
* :func:`gaussian_rbf`, :func:`gaussian_rbf_vjp` (reads the forward's values when given),
  :func:`cosine_cutoff`, :func:`cosine_cutoff_vjp`, :func:`polynomial_cutoff`,
  :func:`polynomial_cutoff_vjp`, :func:`bessel_rbf`, :func:`bessel_rbf_vjp`.

Activation names and options are those of :mod:`geomp_ref.ops.activations` (``shift`` and
``threshold`` for the softplus family). Inputs are float32 or float64 arrays (float32 is computed
in float64 and rounded once); outputs keep the input dtype. The callers in :mod:`geomp_ref.ops`
validate shapes and finiteness first; the wrappers here only check dtypes and contiguity.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import _checks as C
from ._nbjit import launch, twins
from ._nbmath import LN2, exp, log1p, sigmoid, ssp_sigmoid, tanh

__all__ = [
    "activation",
    "activation_vjp",
    "activation_with_grad",
    "bessel_rbf",
    "bessel_rbf_vjp",
    "cosine_cutoff",
    "cosine_cutoff_vjp",
    "gaussian_rbf",
    "gaussian_rbf_vjp",
    "polynomial_cutoff",
    "polynomial_cutoff_vjp",
]

_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_NAMES = {"identity": "identity", "relu": "relu", "sigmoid": "sigmoid", "silu": "silu",
          "swish": "silu", "tanh": "tanh", "softplus": "softplus", "shifted_softplus": "ssp",
          "ssp": "ssp", "gelu": "gelu"}


def _canonical(name: str) -> str:
    try:
        return _NAMES[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {tuple(_NAMES)}; got {name!r}") from None


# --- kernels: one per activation, so that each loop is branch-free and vectorizes --------------
# Every kernel reads the flat pre-activation z (the bias already added) and writes f(z) and f'(z),
# in the evaluation order of the NumPy reference. ``prange``: the parallel twin splits the range,
# the serial twin loops.


def _fwd_sigmoid(z, y, d):
    for i in prange(z.shape[0]):
        s = sigmoid(np.float64(z[i]))
        y[i] = s
        d[i] = s * (1.0 - s)


def _fwd_silu(z, y, d):
    for i in prange(z.shape[0]):
        v = np.float64(z[i])
        s = sigmoid(v)
        y[i] = v * s
        d[i] = s * (1.0 + v * (1.0 - s))


def _fwd_tanh(z, y, d):
    for i in prange(z.shape[0]):
        t = tanh(np.float64(z[i]))
        y[i] = t
        d[i] = 1.0 - t * t


def _fwd_softplus(z, y, d, shift, thr):
    """softplus(v) - shift (v itself above ``thr``); derivative sigmoid(v) (1 above ``thr``)."""
    for i in prange(z.shape[0]):
        v = np.float64(z[i])
        e = exp(-abs(v))
        s = 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)
        sp = max(v, 0.0) + log1p(e)
        y[i] = (v if v > thr else sp) - shift
        d[i] = 1.0 if v > thr else s


def _fwd_ssp_exact(z, y, d, thr):
    """Shifted softplus with the exact ln 2: ``log1p(expm1(v) / 2)`` for v <= 1 (no
    cancellation near 0), ``softplus(v) - ln 2`` above (``v - ln 2`` above ``thr``)."""
    for i in prange(z.shape[0]):
        v = np.float64(z[i])
        a, s = ssp_sigmoid(v)
        y[i] = v - LN2 if v > thr else a
        d[i] = 1.0 if v > thr else s


def _fwd_gelu(z, y, d):
    for i in prange(z.shape[0]):
        v = np.float64(z[i])
        phi = 0.5 * math.erfc(-v * _SQRT1_2)
        y[i] = v * phi
        d[i] = phi + v * exp(-0.5 * v * v) * _INV_SQRT_2PI


_K_FWD = {name: twins(fn, contract=True) for name, fn in (
    ("sigmoid", _fwd_sigmoid), ("silu", _fwd_silu), ("tanh", _fwd_tanh),
    ("softplus", _fwd_softplus), ("ssp_exact", _fwd_ssp_exact), ("gelu", _fwd_gelu))}


def _flat(x, name):
    x = C.float_array(x, name)
    return x, x.reshape(-1)


def _run_fwd(name, z, y, d, shift, threshold):
    """Fill ``y = f(z)`` and ``d = f'(z)`` (flat arrays) for the canonical activation ``name``."""
    thr = math.inf if threshold is None else float(threshold)
    if name == "identity":  # one NumPy pass each is already optimal
        np.copyto(y, z)
        d.fill(1.0)
        return
    if name == "relu":
        np.maximum(z, 0.0, out=y)
        np.greater(z, 0.0, out=d, casting="unsafe")
        return
    if name == "softplus":
        args, key = (0.0, thr), "softplus"
    elif name == "ssp":
        exact = float(shift) == LN2
        args, key = ((thr,), "ssp_exact") if exact else ((float(shift), thr), "softplus")
    else:
        args, key = (), name
    launch(_K_FWD[key], z.size, z, y, d, *args)


def activation_with_grad(name: str, z, b=None, *, shift: float = LN2,
                         threshold: float | None = None, overwrite: bool = False):
    """``(z + b, f(z + b), f'(z + b))``; ``z`` (..., C), ``b`` (C,) or None.

    The bias is added by one NumPy pass (in place with ``overwrite=True``, which needs a writeable
    C-contiguous ``z`` the caller owns, e.g. a fresh matrix product), then one fused pass over the
    flat array evaluates both outputs (a flat loop vectorizes for any width, even 1).
    """
    name = _canonical(name)
    z = C.float_array(z, "z")
    own = overwrite and z.flags.writeable
    if b is not None:
        b = C.float_array(b, "b")
        c = z.shape[-1] if z.ndim else 1
        if b.shape != (c,):
            raise ValueError(f"b must have shape ({c},) (the last axis of z); got {b.shape}")
        zb = np.add(z, b, out=z if own else None, dtype=z.dtype, casting="same_kind")
    else:
        zb = z
    y, d = np.empty_like(zb), np.empty_like(zb)
    _run_fwd(name, zb.reshape(-1), y.reshape(-1), d.reshape(-1), shift, threshold)
    return zb, y, d


def activation(name: str, x, *, shift: float = LN2, threshold: float | None = None):
    """``f(x)`` elementwise, shape and dtype of ``x`` (the forward kernel, derivative dropped)."""
    return activation_with_grad(name, x, shift=shift, threshold=threshold)[1]


def activation_vjp(name: str, x, grad_y, *, shift: float = LN2, threshold: float | None = None):
    """``grad_y * f'(x)``."""
    x = C.float_array(x, "x")
    g = C.float_array(grad_y, "grad_y")
    if g.shape != x.shape:
        raise ValueError(f"grad_y must have the shape of x {x.shape}; got {g.shape}")
    return g * activation_with_grad(name, x, shift=shift, threshold=threshold)[2]


# --- radial bases and cutoffs ------------------------------------------------------------------


def _gauss(d, mu, gamma, out):
    ng = -gamma
    for i in prange(d.shape[0]):
        di = np.float64(d[i])
        for k in range(mu.shape[0]):
            t = di - mu[k]
            out[i, k] = exp(ng * (t * t))


def _gauss_vjp(d, mu, gamma, g, e, have_e, out):
    c = -2.0 * gamma
    for i in prange(d.shape[0]):
        di = np.float64(d[i])
        acc = 0.0
        for k in range(mu.shape[0]):
            t = di - mu[k]
            ek = np.float64(e[i, k]) if have_e else exp(-gamma * (t * t))
            acc += ((g[i, k] * c) * t) * ek
        out[i] = acc


def _cos_cut(d, cutoff, out):
    for i in prange(d.shape[0]):
        di = np.float64(d[i])
        out[i] = 0.5 * (math.cos(math.pi * di / cutoff) + 1.0) if di < cutoff else 0.0


def _cos_cut_vjp(d, cutoff, g, out):
    c = -0.5 * math.pi / cutoff
    for i in prange(d.shape[0]):
        di = np.float64(d[i])
        out[i] = g[i] * (c * math.sin(math.pi * di / cutoff) if di < cutoff else 0.0)


def _poly_cut(d, cutoff, p, out):
    a = (p + 1) * (p + 2) / 2.0
    b = p * (p + 2.0)
    c = p * (p + 1) / 2.0
    for i in prange(d.shape[0]):
        u = np.float64(d[i]) / cutoff
        up = u**p
        val = 1.0 - a * up + b * (up * u) - c * (up * u * u)
        out[i] = val if u < 1.0 else 0.0


def _poly_cut_vjp(d, cutoff, p, g, out):
    a = -(p + 1) * (p + 2) / 2.0 * p
    b = p * (p + 2) * (p + 1.0)
    c = p * (p + 1) / 2.0 * (p + 2)
    for i in prange(d.shape[0]):
        u = np.float64(d[i]) / cutoff
        um = u ** (p - 1)
        der = (a * um + b * (um * u) - c * (um * u * u)) / cutoff
        out[i] = g[i] * (der if u < 1.0 else 0.0)


@njit(inline="always")
def _sinc_pair(t):
    """``sin(t)/t`` and its derivative for ``t >= 0`` (series below 1, as the reference)."""
    if t > 0:
        s, co = math.sin(t), math.cos(t)
        val = s / t
        exact = (t * co - s) / (t * t)
    else:
        val, exact = 1.0, 0.0
    t2 = t * t
    series = 0.0
    for k in range(10, 0, -1):
        series = series * t2 + _SINC_COEF[k]
    return val, (series * t if t < 1.0 else exact)


def _bessel(d, a, scale, out):
    for i in prange(d.shape[0]):
        di = np.float64(d[i])
        for k in range(a.shape[0]):
            val, _ = _sinc_pair(a[k] * di)
            out[i, k] = scale * a[k] * val


def _bessel_vjp(d, a, scale, g, out):
    for i in prange(d.shape[0]):
        di = np.float64(d[i])
        acc = 0.0
        for k in range(a.shape[0]):
            _, dv = _sinc_pair(a[k] * di)
            acc += g[i, k] * scale * a[k] * a[k] * dv
        out[i] = acc


_SINC_COEF = tuple([0.0] + [(-1) ** k * 2 * k / math.factorial(2 * k + 1) for k in range(1, 11)])
_K_GAUSS, _K_GAUSS_VJP = twins(_gauss, contract=True), twins(_gauss_vjp, contract=True)
_K_COS, _K_COS_VJP = twins(_cos_cut, contract=True), twins(_cos_cut_vjp, contract=True)
_K_POLY, _K_POLY_VJP = twins(_poly_cut, contract=True), twins(_poly_cut_vjp, contract=True)
_K_BESSEL, _K_BESSEL_VJP = twins(_bessel, contract=True), twins(_bessel_vjp, contract=True)


def _dist(d):
    d, flat = _flat(d, "d")
    return d, flat


def gaussian_rbf(d, mu, gamma: float):
    """``exp(-gamma (d - mu_k)^2)``, shape (*d.shape, K)."""
    d, flat = _dist(d)
    mu = np.ascontiguousarray(mu, dtype=np.float64)
    out = np.empty(d.shape + mu.shape, d.dtype)
    launch(_K_GAUSS, out.size, flat, mu, float(gamma), out.reshape(flat.size, mu.shape[0]))
    return out


def gaussian_rbf_vjp(d, mu, gamma: float, grad_out, value=None):
    """``sum_k grad_out_k (-2 gamma)(d - mu_k) e_k``; ``value`` = the forward's ``e`` (reused)."""
    d, flat = _dist(d)
    mu = np.ascontiguousarray(mu, dtype=np.float64)
    k = mu.shape[0]
    g = C.float_array(grad_out, "grad_out").reshape(flat.size, k)
    e = g if value is None else C.float_array(value, "value").reshape(flat.size, k)
    out = np.empty(d.shape, np.result_type(d, g))
    launch(_K_GAUSS_VJP, g.size, flat, mu, float(gamma), g, e, value is not None,
           out.reshape(-1))
    return out


def cosine_cutoff(d, cutoff: float):
    d, flat = _dist(d)
    out = np.empty_like(d)
    launch(_K_COS, flat.size, flat, float(cutoff), out.reshape(-1))
    return out


def cosine_cutoff_vjp(d, cutoff: float, grad_out):
    d, flat = _dist(d)
    g = C.float_array(grad_out, "grad_out").reshape(-1)
    out = np.empty(d.shape, np.result_type(d, g))
    launch(_K_COS_VJP, flat.size, flat, float(cutoff), g, out.reshape(-1))
    return out


def polynomial_cutoff(d, cutoff: float, p: int = 6):
    d, flat = _dist(d)
    out = np.empty_like(d)
    launch(_K_POLY, flat.size, flat, float(cutoff), int(p), out.reshape(-1))
    return out


def polynomial_cutoff_vjp(d, cutoff: float, grad_out, p: int = 6):
    d, flat = _dist(d)
    g = C.float_array(grad_out, "grad_out").reshape(-1)
    out = np.empty(d.shape, np.result_type(d, g))
    launch(_K_POLY_VJP, flat.size, flat, float(cutoff), int(p), g, out.reshape(-1))
    return out


def _bessel_consts(num, cutoff):
    a = np.arange(1, num + 1) * np.pi / cutoff
    return a, math.sqrt(2.0 / cutoff)


def bessel_rbf(d, num: int, cutoff: float):
    d, flat = _dist(d)
    a, scale = _bessel_consts(num, cutoff)
    out = np.empty(d.shape + (num,), d.dtype)
    launch(_K_BESSEL, out.size, flat, a, scale, out.reshape(flat.size, num))
    return out


def bessel_rbf_vjp(d, num: int, cutoff: float, grad_out):
    d, flat = _dist(d)
    a, scale = _bessel_consts(num, cutoff)
    g = C.float_array(grad_out, "grad_out").reshape(flat.size, num)
    out = np.empty(d.shape, np.result_type(d, g))
    launch(_K_BESSEL_VJP, g.size, flat, a, scale, g, out.reshape(-1))
    return out
