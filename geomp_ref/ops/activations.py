r"""Pointwise activations and their derivatives, evaluated stably in float64.

====================  ==================================  ======================================
name                  :math:`f(x)`                        :math:`f'(x)`
====================  ==================================  ======================================
``silu``              :math:`x\,\sigma(x)`                :math:`\sigma(x)(1 + x(1-\sigma(x)))`
``softplus``          :math:`\log(1+e^x)`                 :math:`\sigma(x)`
``shifted_softplus``  :math:`\log(1+e^x) - \ln 2`         :math:`\sigma(x)`
``sigmoid``           :math:`\sigma(x) = 1/(1+e^{-x})`    :math:`\sigma(x)(1-\sigma(x))`
``tanh``              :math:`\tanh x`                     :math:`1 - \tanh^2 x`
``relu``              :math:`\max(x, 0)`                  :math:`[x > 0]` (subgradient 0 at 0)
``identity``          :math:`x`                           :math:`1`
``gelu``              :math:`x\,\Phi(x)`                  :math:`\Phi(x) + x\,\varphi(x)`
====================  ==================================  ======================================

``softplus`` uses :math:`\max(x,0) + \log1p(e^{-|x|})` (no overflow, full relative accuracy);
``sigmoid`` uses the sign-split form so neither branch overflows. ``shifted_softplus`` subtracts
``ln 2`` as the correctly rounded float64 constant (PyG's float32-born value is available as
``LN2_PYG`` for cross-checks, see README). Derivations: ``derivations/dense_activations.py``.

Each ``f_vjp(x, grad_y)`` returns ``grad_x = f'(x) * grad_y``. :func:`get` maps a name to the pair.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import as_float64, cotangent

_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

__all__ = [
    "silu", "silu_vjp", "softplus", "softplus_vjp", "shifted_softplus", "shifted_softplus_vjp",
    "sigmoid", "sigmoid_vjp", "tanh", "tanh_vjp", "relu", "relu_vjp", "identity", "identity_vjp",
    "gelu", "gelu_vjp", "get", "NAMES", "LN2", "LN2_PYG",
]

LN2 = math.log(2.0)  # correctly rounded: 0.6931471805599453
#: PyG's SchNet computes ln 2 as a float32 tensor and reads it back as a float64 number, so its
#: shift is ``float(np.float32(log 2))`` = 0.6931471824645996, 1.9e-9 above the exact value.
LN2_PYG = float(np.float32(math.log(2.0)))


def _x(x) -> np.ndarray:
    return as_float64(x, "x")


def _xg(x, grad_y, op: str):
    """``x`` and its cotangent ``grad_y`` (which must have the shape of ``x``) as float64."""
    x = _x(x)
    return x, cotangent(grad_y, x.shape, op, "grad_y")


def sigmoid(x):
    x = _x(x)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_vjp(x, grad_y):
    x, grad_y = _xg(x, grad_y, "sigmoid_vjp")
    s = sigmoid(x)
    return grad_y * s * (1.0 - s)


def softplus(x, threshold: float | None = None):
    """``log(1 + e^x)``; with ``threshold`` (torch's default is 20) returns ``x`` above it."""
    x = _x(x)
    y = np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
    if threshold is not None:
        y = np.where(x > threshold, x, y)
    return y


def softplus_vjp(x, grad_y, threshold: float | None = None):
    x, grad_y = _xg(x, grad_y, "softplus_vjp")
    d = sigmoid(x)
    if threshold is not None:
        d = np.where(x > threshold, 1.0, d)
    return grad_y * d


def shifted_softplus(x, shift: float = LN2, threshold: float | None = None):
    """``softplus(x) - ln 2`` (SchNet's ssp); zero at zero.

    With the exact shift, ``log1p(expm1(x) / 2)`` is used for ``x <= 1``: it equals
    ``log((1 + e^x) / 2)`` without the cancellation of ``softplus(x) - ln 2`` near 0 (full relative
    accuracy there). Any other ``shift`` (e.g. ``LN2_PYG``) is subtracted literally.
    """
    x = _x(x)
    y = softplus(x, threshold) - shift
    if shift == LN2:
        small = x <= 1.0
        y = np.where(small, np.log1p(np.expm1(np.minimum(x, 1.0)) / 2.0), y)
    return y


def shifted_softplus_vjp(x, grad_y, shift: float = LN2, threshold: float | None = None):
    x, grad_y = _xg(x, grad_y, "shifted_softplus_vjp")
    return softplus_vjp(x, grad_y, threshold)


def silu(x):
    x = _x(x)
    return x * sigmoid(x)


def silu_vjp(x, grad_y):
    x, grad_y = _xg(x, grad_y, "silu_vjp")
    s = sigmoid(x)
    return grad_y * (s * (1.0 + x * (1.0 - s)))


def tanh(x):
    return np.tanh(_x(x))


def tanh_vjp(x, grad_y):
    x, grad_y = _xg(x, grad_y, "tanh_vjp")
    t = np.tanh(x)
    return grad_y * (1.0 - t * t)


def relu(x):
    return np.maximum(_x(x), 0.0)


def relu_vjp(x, grad_y):
    x, grad_y = _xg(x, grad_y, "relu_vjp")
    return grad_y * (x > 0)


def identity(x):
    return _x(x)


def identity_vjp(x, grad_y):
    x, grad_y = _xg(x, grad_y, "identity_vjp")
    return grad_y


def gelu(x):
    r"""Exact (erf) GELU :math:`x\,\Phi(x)`, :math:`\Phi` the standard normal CDF (torch's
    ``nn.GELU()`` default, not the tanh approximation).

    :math:`\Phi(x) = \tfrac12 \operatorname{erfc}(-x/\sqrt2)`: for negative ``x`` this keeps full
    relative accuracy where ``(1 + erf(x/√2))/2`` would cancel (GELU(-10) ~ -7.6e-23, not 0);
    the relative error stays within a few ``(1 + x²)`` ulp, the conditioning of Φ in that tail.
    """
    from scipy.special import erfc  # imported here: scipy.special is slow to import

    x = _x(x)
    return x * (0.5 * erfc(-x * _SQRT1_2))


def gelu_vjp(x, grad_y):
    r"""``grad_y * (Φ(x) + x φ(x))``, :math:`\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}`."""
    from scipy.special import erfc

    x, grad_y = _xg(x, grad_y, "gelu_vjp")
    d = 0.5 * erfc(-x * _SQRT1_2) + x * np.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return grad_y * d


_TABLE = {
    "silu": (silu, silu_vjp),
    "swish": (silu, silu_vjp),
    "softplus": (softplus, softplus_vjp),
    "shifted_softplus": (shifted_softplus, shifted_softplus_vjp),
    "ssp": (shifted_softplus, shifted_softplus_vjp),
    "sigmoid": (sigmoid, sigmoid_vjp),
    "tanh": (tanh, tanh_vjp),
    "relu": (relu, relu_vjp),
    "identity": (identity, identity_vjp),
    "gelu": (gelu, gelu_vjp),
}
NAMES = tuple(_TABLE)


def get(name: str):
    """``(f, f_vjp)`` for an activation name (see the module table)."""
    try:
        return _TABLE[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {NAMES}; got {name!r}") from None
