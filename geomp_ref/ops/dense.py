r"""Affine map :math:`y = x W + b` with weights stored (in, out), and its VJP.

.. math::

    \bar x = \bar y W^T, \qquad \bar W = x^T \bar y, \qquad \bar b = \textstyle\sum_{rows} \bar y .

Leading dimensions of ``x`` are batch dimensions. Proof: ``derivations/dense_activations.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear", "linear_vjp"]


def linear(x, W, b=None) -> np.ndarray:
    """``y = x @ W + b``; ``x`` (..., in), ``W`` (in, out), ``b`` (out,) or None."""
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or x.shape[-1] != W.shape[0]:
        raise ValueError(f"linear: x (..., {x.shape[-1] if x.ndim else '?'}) does not match W {W.shape} (in, out)")
    y = x @ W
    if b is not None:
        y = y + b
    return y


def linear_vjp(x, W, b, grad_y):
    """VJP of :func:`linear`: ``(grad_x, grad_W, grad_b)`` (``grad_b`` is None when ``b`` is None)."""
    x = np.asarray(x, dtype=np.float64)
    grad_y = np.asarray(grad_y, dtype=np.float64)
    grad_x = grad_y @ W.T  # reverses y = x @ W
    x2 = x.reshape(-1, x.shape[-1])
    g2 = grad_y.reshape(-1, grad_y.shape[-1])
    grad_W = x2.T @ g2
    grad_b = None if b is None else g2.sum(axis=0)
    return grad_x, grad_W, grad_b
