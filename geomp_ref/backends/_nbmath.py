r"""Scalar float64 math for the Numba kernels, written so that LLVM vectorizes the loops using it.

Numba compiles ``np.exp``, ``np.log1p``, ``np.tanh`` to calls of the C math library, one element
at a time, which LLVM cannot vectorize: measured on the 2-core dev box, a loop of ``np.exp`` in
Numba costs 5-10x NumPy's SIMD ``np.exp``, so a fused kernel built on it loses to several NumPy
passes. The functions here use only arithmetic, comparisons, ``floor`` and a bit cast, which
vectorize (AVX2/AVX-512), so one fused pass is faster than the NumPy passes it replaces.

Accuracy (checked in ``tests/backends/test_fused_kernels.py`` against NumPy over the whole range):

* :func:`exp`: Cody-Waite reduction :math:`x = k \ln 2 + r`, :math:`|r| \le \tfrac12 \ln 2`, with
  :math:`\ln 2` split in two so that :math:`k \ln 2_{hi}` is exact, then the Taylor polynomial of
  degree 13 (truncation below :math:`4 \cdot 10^{-18}` relative); :math:`2^k` is built from its
  bits in two factors, so subnormal results are rounded once. Within 1 ulp of the correctly rounded
  value; overflow gives ``inf``, underflow 0, NaN stays NaN.
* :func:`expm1`: the Taylor series for :math:`|x| < \tfrac12` (no cancellation), ``exp(x) - 1``
  beyond; a few ulp.
* :func:`log1p` for :math:`-\tfrac12 < t \le 1.8` (the activations need :math:`t \le 1`):
  :math:`\log(1+t) = 2\,\mathrm{atanh}(s)`, with :math:`s = t/(2+t)` for
  :math:`t \in [1/\sqrt2 - 1, \sqrt2 - 1]`, and above or below that interval the argument is first
  halved or doubled (:math:`\pm \ln 2`), so :math:`|s| \le 0.1716` and the odd series in :math:`s`
  needs 12 terms; a few ulp.
* :func:`ssp`: :math:`\log((1 + e^x)/2)` as the reference evaluates it (``log1p(expm1(x)/2)`` for
  :math:`x \le 1`, :math:`x + \log(1 + e^{-x}) - \ln 2` above) from one exponential, one
  ``log1p`` and the sigmoid :math:`\sigma(x)` sharing that exponential.
* :func:`tanh`: :math:`\tanh|x| = -u/(2+u)` with :math:`u = \mathrm{expm1}(-2|x|)`, sign restored.

Every function is ``inline="always"``; kernels using them must be compiled with
``error_model="numpy"`` (Numba's default Python error model turns every division into a branch
that checks for zero, which stops the vectorizer). Under ``NUMBA_DISABLE_JIT=1`` the bit cast
falls back to :mod:`struct`, so the kernels still run as Python.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from numba import config, njit, types
from numba.extending import intrinsic

__all__ = ["exp", "expm1", "log1p", "sigmoid", "softplus", "ssp_sigmoid", "tanh", "LN2"]

LN2 = math.log(2.0)
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # low 32 bits zero: k * _LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_ROUND = 6755399441055744.0  # 1.5 * 2**52: (y + _ROUND) - _ROUND rounds y to an integer
_E = tuple(1.0 / math.factorial(k) for k in range(17))  # Taylor coefficients of exp
_SQRT2M1 = math.sqrt(2.0) - 1.0
_SQRTH_M1 = math.sqrt(0.5) - 1.0


if config.DISABLE_JIT:  # pragma: no cover - debugging mode only

    def _pow2(k):
        return struct.unpack("<d", struct.pack("<q", (int(k) + 1023) << 52))[0]

else:

    @intrinsic
    def _bits_as_f64(typingctx, bits):
        """Reinterpret the bits of an int64 as a float64 (LLVM ``bitcast``: free, vectorizes)."""
        from llvmlite import ir

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())

        return types.float64(types.int64), codegen

    @njit(inline="always")
    def _pow2(k):
        """:math:`2^k` for an integer-valued ``k`` in [-1022, 1023]."""
        return _bits_as_f64((np.int64(k) + 1023) << 52)


@njit(inline="always")
def exp(x):
    """:math:`e^x` within 1 ulp (see the module docstring)."""
    # below -745.2 the result rounds to 0: evaluate at 0 instead and select 0 at the end, so that
    # no lane forms an underflowing product (each costs a ~150-cycle microcode assist on x86)
    flush = x <= -745.2
    xc = 0.0 if flush else x
    xc = xc if xc < 709.9 else 709.9
    k = (xc * _LOG2E + _ROUND) - _ROUND
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    p = _E[13]
    p = p * r + _E[12]
    p = p * r + _E[11]
    p = p * r + _E[10]
    p = p * r + _E[9]
    p = p * r + _E[8]
    p = p * r + _E[7]
    p = p * r + _E[6]
    p = p * r + _E[5]
    p = p * r + _E[4]
    p = p * r + _E[3]
    p = p * r + _E[2]
    p = p * r + 1.0
    p = p * r + 1.0
    k1 = np.floor(k * 0.5)  # two factors keep 2**k representable down to the subnormals
    y = (p * _pow2(k1)) * _pow2(k - k1)
    y = 0.0 if flush else y
    return y if x == x else x


@njit(inline="always")
def expm1(x):
    r""":math:`e^x - 1` without cancellation near 0."""
    p = _E[16]
    for j in range(15, 0, -1):
        p = p * x + _E[j]
    small = p * x
    big = exp(x) - 1.0
    return small if abs(x) < 0.5 else big


@njit(inline="always")
def _atanh_series(s):
    r""":math:`2\,\mathrm{atanh}(s) = 2(s + s^3/3 + s^5/5 + \dots)` for :math:`|s| \le 0.1716`."""
    z = s * s
    p = 1.0 / 23.0
    p = p * z + 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    p = p * z + 1.0
    return 2.0 * (s * p)


@njit(inline="always")
def log1p(t):
    r""":math:`\log(1 + t)` for :math:`-\tfrac12 < t \le 1.8` (the range the activations need).

    One division and one series: the reduction is chosen first, then evaluated once.
    """
    two_t = 2.0 * t
    hi = t > _SQRT2M1  # log(2) + log((1 + t) / 2)
    lo = t < _SQRTH_M1  # log(2 (1 + t)) - log(2)
    num = t - 1.0 if hi else (1.0 + two_t if lo else t)
    den = t + 3.0 if hi else (3.0 + two_t if lo else 2.0 + t)
    add = LN2 if hi else (-LN2 if lo else 0.0)
    return _atanh_series(num / den) + add


@njit(inline="always")
def sigmoid(x):
    """:math:`1/(1 + e^{-x})`, each branch free of overflow (as the NumPy reference)."""
    e = exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@njit(inline="always")
def softplus(x):
    r""":math:`\max(x, 0) + \log(1 + e^{-|x|})`."""
    return max(x, 0.0) + log1p(exp(-abs(x)))


@njit(inline="always")
def tanh(x):
    u = expm1(-2.0 * abs(x))
    t = -u / (2.0 + u)
    return t if x >= 0 else -t


@njit(inline="always")
def ssp_sigmoid(x):
    r"""``(log((1 + e^x) / 2), sigmoid(x))`` from one exponential :math:`E = e^{-|x|}`.

    :math:`x \le 1`: ``log1p(expm1(x) / 2)``, with ``expm1`` from its series for :math:`|x| < 0.3`
    and from :math:`E - 1` (:math:`x < 0`) or :math:`1/E - 1` (:math:`x \ge 0`) beyond;
    :math:`x > 1`: :math:`x + \log(1 + E) - \ln 2`.
    """
    big_e = exp(-abs(x))
    p = _E[14]
    for j in range(13, 0, -1):
        p = p * x + _E[j]
    em1 = p * x if abs(x) < 0.3 else (big_e - 1.0 if x < 0 else 1.0 / big_e - 1.0)
    small = x <= 1.0
    y = log1p(em1 / 2.0 if small else big_e) + (0.0 if small else x - LN2)
    s = 1.0 / (1.0 + big_e) if x >= 0 else big_e / (1.0 + big_e)
    return y, s
