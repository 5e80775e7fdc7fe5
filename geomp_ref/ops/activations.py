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
:func:`activate` is the forward of a dense layer's activation for blocks: ``(z + b, f(z + b),
f'(z + b))``, keeping the derivative so that the backward is one multiplication.

Every function takes ``backend=`` (``"numpy"``, the reference; ``"numba"``: one fused pass per
call, :mod:`geomp_ref.backends.numba_elementwise`, within a few ulp of the reference; ``"cuda"``
computes these on the host with the reference).
"""

from __future__ import annotations

import math

import numpy as np

from .. import backends as _backends
from .._validate import as_float64, cotangent

_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

__all__ = [
    "silu", "silu_vjp", "softplus", "softplus_vjp", "shifted_softplus", "shifted_softplus_vjp",
    "sigmoid", "sigmoid_vjp", "tanh", "tanh_vjp", "relu", "relu_vjp", "identity", "identity_vjp",
    "gelu", "gelu_vjp", "activate", "derivative", "get", "NAMES", "LN2", "LN2_PYG",
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


def _kernels(backend: str):
    """The backend module for ``backend`` when it is not the NumPy reference, else None."""
    if backend == "numpy":
        return None
    be = _backends.get(backend)
    return be if hasattr(be, "activation") else None


def sigmoid(x, *, backend: str = "numpy"):
    """Logistic function ``1 / (1 + e^-x)``, evaluated sign-split so neither branch overflows."""
    x = _x(x)
    be = _kernels(backend)
    if be is not None:
        return be.activation("sigmoid", x)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_vjp(x, grad_y, *, backend: str = "numpy"):
    """``grad_y * s (1 - s)`` with ``s = sigmoid(x)``."""
    x, grad_y = _xg(x, grad_y, "sigmoid_vjp")
    be = _kernels(backend)
    if be is not None:
        return be.activation_vjp("sigmoid", x, grad_y)
    s = sigmoid(x)
    return grad_y * s * (1.0 - s)


def softplus(x, threshold: float | None = None, *, backend: str = "numpy"):
    """``log(1 + e^x)``; with ``threshold`` (torch's default is 20) returns ``x`` above it."""
    x = _x(x)
    be = _kernels(backend)
    if be is not None:
        return be.activation("softplus", x, threshold=threshold)
    y = np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
    if threshold is not None:
        y = np.where(x > threshold, x, y)
    return y


def softplus_vjp(x, grad_y, threshold: float | None = None, *, backend: str = "numpy"):
    """``grad_y * sigmoid(x)`` (``grad_y`` itself above ``threshold`` when given)."""
    x, grad_y = _xg(x, grad_y, "softplus_vjp")
    be = _kernels(backend)
    if be is not None:
        return be.activation_vjp("softplus", x, grad_y, threshold=threshold)
    d = sigmoid(x)
    if threshold is not None:
        d = np.where(x > threshold, 1.0, d)
    return grad_y * d


def shifted_softplus(x, shift: float = LN2, threshold: float | None = None, *,
                     backend: str = "numpy"):
    """``softplus(x) - ln 2`` (SchNet's ssp); zero at zero.

    With the exact shift, ``log1p(expm1(x) / 2)`` is used for ``x <= 1``: it equals
    ``log((1 + e^x) / 2)`` without the cancellation of ``softplus(x) - ln 2`` near 0 (full relative
    accuracy there). Any other ``shift`` (e.g. ``LN2_PYG``) is subtracted literally.
    """
    x = _x(x)
    be = _kernels(backend)
    if be is not None:
        return be.activation("shifted_softplus", x, shift=float(shift), threshold=threshold)
    y = softplus(x, threshold) - shift
    if shift == LN2:
        small = x <= 1.0
        y = np.where(small, np.log1p(np.expm1(np.minimum(x, 1.0)) / 2.0), y)
    return y


def shifted_softplus_vjp(x, grad_y, shift: float = LN2, threshold: float | None = None, *,
                         backend: str = "numpy"):
    """Same as :func:`softplus_vjp` (the shift is a constant); ``shift`` is accepted so the
    signature mirrors :func:`shifted_softplus`."""
    x, grad_y = _xg(x, grad_y, "shifted_softplus_vjp")
    return softplus_vjp(x, grad_y, threshold, backend=backend)


def silu(x, *, backend: str = "numpy"):
    """SiLU (swish) ``x * sigmoid(x)``."""
    x = _x(x)
    be = _kernels(backend)
    if be is not None:
        return be.activation("silu", x)
    return x * sigmoid(x)


def silu_vjp(x, grad_y, *, backend: str = "numpy"):
    """``grad_y * s (1 + x (1 - s))`` with ``s = sigmoid(x)``."""
    x, grad_y = _xg(x, grad_y, "silu_vjp")
    be = _kernels(backend)
    if be is not None:
        return be.activation_vjp("silu", x, grad_y)
    s = sigmoid(x)
    return grad_y * (s * (1.0 + x * (1.0 - s)))


def tanh(x, *, backend: str = "numpy"):
    """Hyperbolic tangent."""
    be = _kernels(backend)
    if be is not None:
        return be.activation("tanh", _x(x))
    return np.tanh(_x(x))


def tanh_vjp(x, grad_y, *, backend: str = "numpy"):
    """``grad_y * (1 - tanh(x)^2)``."""
    x, grad_y = _xg(x, grad_y, "tanh_vjp")
    be = _kernels(backend)
    if be is not None:
        return be.activation_vjp("tanh", x, grad_y)
    t = np.tanh(x)
    return grad_y * (1.0 - t * t)


def relu(x, *, backend: str = "numpy"):
    """``max(x, 0)`` (``backend`` is checked; one NumPy pass on every backend)."""
    _kernels(backend)  # one NumPy pass is already optimal; the name is still checked
    return np.maximum(_x(x), 0.0)


def relu_vjp(x, grad_y, *, backend: str = "numpy"):
    """``grad_y * [x > 0]``: the subgradient 0 is taken at ``x = 0`` (torch's choice)."""
    _kernels(backend)
    x, grad_y = _xg(x, grad_y, "relu_vjp")
    return grad_y * (x > 0)


def identity(x, *, backend: str = "numpy"):
    """``x`` as float64 (checked like every other activation)."""
    _kernels(backend)
    return _x(x)


def identity_vjp(x, grad_y, *, backend: str = "numpy"):
    """``grad_y`` (after checking that it has the shape of ``x``)."""
    _kernels(backend)
    x, grad_y = _xg(x, grad_y, "identity_vjp")
    return grad_y


def gelu(x, *, backend: str = "numpy"):
    r"""Exact (erf) GELU :math:`x\,\Phi(x)`, :math:`\Phi` the standard normal CDF (torch's
    ``nn.GELU()`` default, not the tanh approximation).

    :math:`\Phi(x) = \tfrac12 \operatorname{erfc}(-x/\sqrt2)`: for negative ``x`` this keeps full
    relative accuracy where ``(1 + erf(x/√2))/2`` would cancel (GELU(-10) ~ -7.6e-23, not 0);
    the relative error stays within a few ``(1 + x²)`` ulp, the conditioning of Φ in that tail.
    """
    x = _x(x)
    be = _kernels(backend)
    if be is not None:
        return be.activation("gelu", x)
    from scipy.special import erfc  # imported here: scipy.special is slow to import

    return x * (0.5 * erfc(-x * _SQRT1_2))


def gelu_vjp(x, grad_y, *, backend: str = "numpy"):
    r"""``grad_y * (Φ(x) + x φ(x))``, :math:`\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}`."""
    x, grad_y = _xg(x, grad_y, "gelu_vjp")
    be = _kernels(backend)
    if be is not None:
        return be.activation_vjp("gelu", x, grad_y)
    from scipy.special import erfc

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


def derivative(name: str, z, shift: float = LN2, threshold: float | None = None):
    """:math:`f'(z)` of the activation ``name`` (NumPy reference; the forms of the module table)."""
    z = as_float64(z, "z")
    if name in ("sigmoid", "silu", "swish"):
        s = sigmoid(z)
        return s * (1.0 - s) if name == "sigmoid" else s * (1.0 + z * (1.0 - s))
    if name == "tanh":
        t = np.tanh(z)
        return 1.0 - t * t
    if name in ("softplus", "shifted_softplus", "ssp"):
        d = sigmoid(z)
        return d if threshold is None else np.where(z > threshold, 1.0, d)
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "identity":
        return np.ones_like(z)
    get(name)  # unknown names raise here
    return gelu_vjp(z, np.ones_like(z))


def activate(name: str, z, b=None, *, shift: float = LN2, threshold: float | None = None,
             backend: str = "numpy"):
    r"""``(z_b, y, dy)`` with :math:`z_b = z + b`, :math:`y = f(z_b)`, :math:`dy = f'(z_b)`.

    The forward of ``y = f(x W + b)`` given ``z = x W``: a block keeps ``dy`` in its cache and its
    backward is :math:`\bar z = \bar y \odot dy`, nothing recomputed. ``shift``/``threshold``
    apply to the softplus family. On the numba backend the three arrays come from one pass.

    Parameters
    ----------
    z : array_like, shape (..., C)
    b : array_like, shape (C,), optional
    """
    get(name)
    z = as_float64(z, "z")
    if b is not None:
        b = as_float64(b, "b", ndim=1)
        if z.ndim == 0 or b.shape != (z.shape[-1],):
            raise ValueError(f"activate: b must have shape ({z.shape[-1] if z.ndim else 1},) "
                             f"(the last axis of z {z.shape}); got {b.shape}")
    be = _kernels(backend)
    if be is not None:
        return be.activation_with_grad(name, z, b, shift=float(shift), threshold=threshold)
    zb = z if b is None else z + b
    f = _TABLE[name][0]
    opts = {}
    if name in ("softplus",):
        opts = {"threshold": threshold}
    elif name in ("shifted_softplus", "ssp"):
        opts = {"shift": shift, "threshold": threshold}
    return zb, f(zb, **opts), derivative(name, zb, shift, threshold)


def get(name: str):
    """``(f, f_vjp)`` for an activation name (see the module table)."""
    try:
        return _TABLE[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {NAMES}; got {name!r}") from None
