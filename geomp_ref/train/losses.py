r"""Losses with their gradients.

``mse_loss`` is torch's ``nn.MSELoss()`` (reduction ``"mean"``): the mean of the squared
differences over all elements, :math:`L = \frac{1}{K} \sum_k (p_k - t_k)^2`, with
:math:`\partial L / \partial p_k = 2 (p_k - t_k) / K`.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_float64

__all__ = ["mse_loss"]


def mse_loss(pred, target):
    """Mean squared error over all elements and its gradient with respect to ``pred``.

    Parameters
    ----------
    pred, target : array_like, same shape (at least one element)

    Returns
    -------
    loss : float
    grad : ndarray, shape of ``pred``
    """
    pred = as_float64(pred, "pred")
    target = as_float64(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape; got {pred.shape} and "
                         f"{target.shape}")
    if pred.size == 0:
        raise ValueError("mse_loss needs at least one element (the mean of nothing is undefined)")
    diff = pred - target
    count = diff.size
    return float(np.sum(diff * diff) / count), diff * (2.0 / count)
