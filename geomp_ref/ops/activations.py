r"""Pointwise activations and their derivatives, evaluated stably in float64.

================  ==========================================  ========================================
name              :math:`f(x)`                                :math:`f'(x)`
================  ==========================================  ========================================
``silu``          :math:`x\,\sigma(x)`                        :math:`\sigma(x)(1 + x(1-\sigma(x)))`
``softplus``      :math:`\log(1+e^x)`                         :math:`\sigma(x)`
``shifted_softplus`` :math:`\log(1+e^x) - \ln 2`              :math:`\sigma(x)`
``sigmoid``       :math:`\sigma(x) = 1/(1+e^{-x})`            :math:`\sigma(x)(1-\sigma(x))`
``tanh``          :math:`\tanh x`                             :math:`1 - \tanh^2 x`
``relu``          :math:`\max(x, 0)`                          :math:`[x > 0]` (subgradient 0 at 0)
``identity``      :math:`x`                                   :math:`1`
================  ==========================================  ========================================

``softplus`` uses :math:`\max(x,0) + \log1p(e^{-|x|})` (no overflow, full relative accuracy);
``sigmoid`` uses the sign-split form so neither branch overflows. ``shifted_softplus`` subtracts
``ln 2`` as the correctly rounded float64 constant (PyG's float32-born value is available as
``LN2_PYG`` for cross-checks, see README). Derivations: ``derivations/dense_activations.py``.

Each ``f_vjp(x, grad_y)`` returns ``grad_x = f'(x) * grad_y``. :func:`get` maps a name to the pair.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "silu", "silu_vjp", "softplus", "softplus_vjp", "shifted_softplus", "shifted_softplus_vjp",
    "sigmoid", "sigmoid_vjp", "tanh", "tanh_vjp", "relu", "relu_vjp", "identity", "identity_vjp",
    "get", "NAMES", "LN2", "LN2_PYG",
]

LN2 = math.log(2.0)  # correctly rounded: 0.6931471805599453
#: PyG computes ln 2 as a float32 tensor and reads it back (variants_spec.md §3).
LN2_PYG = float(np.float32(math.log(2.0)))


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_vjp(x, grad_y):
    s = sigmoid(x)
    return grad_y * s * (1.0 - s)


def softplus(x, threshold: float | None = None):
    """``log(1 + e^x)``; with ``threshold`` (torch's default is 20) returns ``x`` above it."""
    x = np.asarray(x, dtype=np.float64)
    y = np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
    if threshold is not None:
        y = np.where(x > threshold, x, y)
    return y


def softplus_vjp(x, grad_y, threshold: float | None = None):
    d = sigmoid(x)
    if threshold is not None:
        d = np.where(np.asarray(x) > threshold, 1.0, d)
    return grad_y * d


def shifted_softplus(x, shift: float = LN2, threshold: float | None = None):
    """``softplus(x) - ln 2`` (SchNet's ssp); zero at zero.

    With the exact shift, ``log1p(expm1(x) / 2)`` is used for ``x <= 1``: it equals
    ``log((1 + e^x) / 2)`` without the cancellation of ``softplus(x) - ln 2`` near 0 (full relative
    accuracy there). Any other ``shift`` (e.g. ``LN2_PYG``) is subtracted literally.
    """
    x = np.asarray(x, dtype=np.float64)
    y = softplus(x, threshold) - shift
    if shift == LN2:
        small = x <= 1.0
        y = np.where(small, np.log1p(np.expm1(np.minimum(x, 1.0)) / 2.0), y)
    return y


def shifted_softplus_vjp(x, grad_y, shift: float = LN2, threshold: float | None = None):
    return softplus_vjp(x, grad_y, threshold)


def silu(x):
    x = np.asarray(x, dtype=np.float64)
    return x * sigmoid(x)


def silu_vjp(x, grad_y):
    x = np.asarray(x, dtype=np.float64)
    s = sigmoid(x)
    return grad_y * (s * (1.0 + x * (1.0 - s)))


def tanh(x):
    return np.tanh(np.asarray(x, dtype=np.float64))


def tanh_vjp(x, grad_y):
    t = np.tanh(np.asarray(x, dtype=np.float64))
    return grad_y * (1.0 - t * t)


def relu(x):
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def relu_vjp(x, grad_y):
    return grad_y * (np.asarray(x) > 0)


def identity(x):
    return np.asarray(x, dtype=np.float64)


def identity_vjp(x, grad_y):
    return np.asarray(grad_y, dtype=np.float64)


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
}
NAMES = tuple(_TABLE)


def get(name: str):
    """``(f, f_vjp)`` for an activation name (see the module table)."""
    try:
        return _TABLE[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {NAMES}; got {name!r}") from None
