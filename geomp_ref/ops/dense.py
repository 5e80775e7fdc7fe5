r"""Affine map :math:`y = x W + b` with weights stored (in, out), and its VJP.

.. math::

    \bar x = \bar y W^T, \qquad \bar W = x^T \bar y, \qquad \bar b = \textstyle\sum_{rows} \bar y .

Leading dimensions of ``x`` are batch dimensions. Proof: ``derivations/dense_activations.py``.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_float64, check_bool, cotangent

__all__ = ["linear", "linear_vjp"]


def _operands(x, W, b):
    x = as_float64(x, "x")
    W = as_float64(W, "W", ndim=2)
    if x.ndim == 0 or x.shape[-1] != W.shape[0]:
        raise ValueError(
            f"linear: x must have shape (..., in) with in = W.shape[0] = {W.shape[0]} "
            f"(W is stored (in, out)); got x {x.shape}, W {W.shape}")
    if b is not None:
        b = as_float64(b, "b")
        if b.shape != (W.shape[1],):
            raise ValueError(f"linear: b must have shape (out,) = ({W.shape[1]},); got {b.shape}")
    return x, W, b


def linear(x, W, b=None) -> np.ndarray:
    """``y = x @ W + b``; ``x`` (..., in), ``W`` (in, out), ``b`` (out,) or None."""
    x, W, b = _operands(x, W, b)
    y = x @ W
    if b is not None:
        y = y + b
    return y


def linear_vjp(x, W, b, grad_y, *, param_grads: bool = True):
    """VJP of :func:`linear`: ``(grad_x, grad_W, grad_b)`` (``grad_b`` is None when ``b`` is None).

    ``grad_y`` must have the output's shape ``(..., out)``. ``param_grads=False`` forms
    ``grad_x`` alone (the same product, so the same bits) and returns ``(grad_x, None, None)``:
    the input-only backward of a block whose weight gradients are not wanted (forces).
    """
    param_grads = check_bool(param_grads, "param_grads")
    x, W, b = _operands(x, W, b)
    grad_y = cotangent(grad_y, x.shape[:-1] + (W.shape[1],), "linear_vjp", "grad_y")
    grad_x = grad_y @ W.T  # reverses y = x @ W
    if not param_grads:
        return grad_x, None, None
    x2 = x.reshape(-1, x.shape[-1])
    g2 = grad_y.reshape(-1, grad_y.shape[-1])
    grad_W = x2.T @ g2
    grad_b = None if b is None else g2.sum(axis=0)
    return grad_x, grad_W, grad_b
