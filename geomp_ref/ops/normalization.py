r"""Layer normalisation over the last axis (torch's ``nn.LayerNorm(C)``) and its VJP.

For each row :math:`x \in \mathbb R^C` (every leading index is a row):

.. math::

    \mu = \tfrac1C \textstyle\sum_c x_c, \qquad
    v = \tfrac1C \textstyle\sum_c (x_c - \mu)^2, \qquad
    r = (v + \varepsilon)^{-1/2}, \qquad
    \hat x = (x - \mu)\, r, \qquad
    y = \hat x \odot \gamma + \beta .

The variance is the biased one (divided by C), as torch's; :math:`\varepsilon` (default
``1e-5``, torch's) keeps a constant row finite: there :math:`\hat x = 0` and :math:`y = \beta`.

VJP, with :math:`\bar{\hat x} = \bar y \odot \gamma` and row means
:math:`\langle\cdot\rangle`:

.. math::

    \bar x = r\,\big(\bar{\hat x} - \langle \bar{\hat x} \rangle
             - \hat x\, \langle \bar{\hat x} \odot \hat x \rangle\big), \qquad
    \bar\gamma = \textstyle\sum_{rows} \bar y \odot \hat x, \qquad
    \bar\beta = \textstyle\sum_{rows} \bar y .

Proof: ``derivations/dense_activations.py`` (section 6), where SymPy differentiates the forward
expression. ``\hat x`` and :math:`r` are recomputed in the VJP (Rule A: cheap intermediates are
not cached). Used by the radial networks and the norm nonlinearity of the SE(3)-Transformer
family's TFN.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_float64, check_positive, cotangent

__all__ = ["layer_norm", "layer_norm_vjp"]


def _operands(x, gamma, beta, eps):
    x = as_float64(x, "x")
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"layer_norm: x must have shape (..., C) with C >= 1; got {x.shape}")
    c = x.shape[-1]
    if gamma is not None:
        gamma = as_float64(gamma, "gamma")
        if gamma.shape != (c,):
            raise ValueError(f"layer_norm: gamma must have shape (C,) with C = x.shape[-1] = {c}; "
                             f"got {gamma.shape}")
    if beta is not None:
        beta = as_float64(beta, "beta")
        if beta.shape != (c,):
            raise ValueError(f"layer_norm: beta must have shape (C,) with C = x.shape[-1] = {c}; "
                             f"got {beta.shape}")
    return x, gamma, beta, check_positive(eps, "eps")


def _normalised(x, eps):
    """``(x_hat, r)``: the centred, scaled rows and ``r = 1/sqrt(var + eps)`` per row."""
    xc = x - x.mean(axis=-1, keepdims=True)
    r = 1.0 / np.sqrt(np.mean(xc * xc, axis=-1, keepdims=True) + eps)
    return xc * r, r


def layer_norm(x, gamma=None, beta=None, *, eps: float = 1e-5) -> np.ndarray:
    """``y = (x - mean) / sqrt(var + eps) * gamma + beta`` over the last axis of ``x`` (..., C).

    ``gamma``, ``beta``: (C,) or None (no scale, no shift).
    """
    x, gamma, beta, eps = _operands(x, gamma, beta, eps)
    y, _ = _normalised(x, eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def layer_norm_vjp(x, gamma, beta, grad_y, *, eps: float = 1e-5):
    """``(grad_x, grad_gamma, grad_beta)`` of :func:`layer_norm` (None for an absent gamma or
    beta); ``grad_y`` has the shape of ``x``."""
    x, gamma, beta, eps = _operands(x, gamma, beta, eps)
    g = cotangent(grad_y, x.shape, "layer_norm_vjp", "grad_y")
    x_hat, r = _normalised(x, eps)
    rows = (-1, x.shape[-1])
    g_beta = None if beta is None else g.reshape(rows).sum(axis=0)
    g_gamma = None if gamma is None else (g * x_hat).reshape(rows).sum(axis=0)
    g_hat = g if gamma is None else g * gamma  # reverses y = x_hat gamma + beta
    # reverses x_hat = (x - mean) r: the mean and r are functions of x too
    g_x = r * (g_hat - g_hat.mean(axis=-1, keepdims=True)
               - x_hat * np.mean(g_hat * x_hat, axis=-1, keepdims=True))
    return g_x, g_gamma, g_beta
