r"""Gated recurrent cells (PyTorch gate conventions) with hand-derived VJPs.

GRU (gate order r, z, n as ``torch.nn.GRU``; note that r multiplies :math:`W_{hn} h + b_{hn}`,
not h, unlike Cho et al.):

.. math::

    r = \sigma(a^x_r + a^h_r),\quad z = \sigma(a^x_z + a^h_z),\quad
    n = \tanh(a^x_n + r \odot a^h_n),\quad h' = (1 - z) \odot n + z \odot h,

with :math:`a^x = x W_x + b_x`, :math:`a^h = h W_h + b_h` (each (.., 3C), blocks [r | z | n]).

LSTM (gate order i, f, g, o as ``torch.nn.LSTM``):

.. math::

    a = x W_x + b_x + h W_h + b_h,\quad i, f, o = \sigma(a_{i,f,o}),\ g = \tanh(a_g),\quad
    c' = f \odot c + i \odot g,\quad h' = o \odot \tanh c'.

Weights are stored (in, out): ``W_x = weight_ih.T``, ``W_h = weight_hh.T``, ``b_x = bias_ih``,
``b_h = bias_hh`` of torch. Inputs are 2-D: ``x`` (B, in), ``h`` and ``c`` (B, C) with the same
number B of rows. Derivations and SymPy checks: ``derivations/mpnn.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64, as_rng, check_alloc, check_cache, check_int, check_shape
from .._validate import grad_out as _grad_out
from .._validate import grad_outs as _grad_outs
from ..ops.activations import sigmoid
from .base import Block, check_params

__all__ = ["GRUCell", "GRUCellCache", "LSTMCell", "LSTMCellCache"]


def _check_sizes(owner, in_channels, channels):
    check_int(in_channels, f"{owner}.in_channels", minimum=1)
    check_int(channels, f"{owner}.channels", minimum=1)


def _draw(rng, shapes, owner):
    """torch's RNN init ``U(-1/sqrt(C), 1/sqrt(C))`` for every array, sizes checked first."""
    for name, s in shapes.items():
        check_alloc(s, f"{owner}.{name} (from in_channels and channels)")
    k = 1.0 / np.sqrt(shapes["W_h"][0])
    return {name: rng.uniform(-k, k, size=s) for name, s in shapes.items()}


def _rows(x, name, width, rows=None):
    """``x`` as float64 of shape (rows, width) (any number of rows when ``rows`` is None)."""
    x = as_float64(x, name, ndim=2)
    if rows is not None and x.shape[0] != rows:
        raise ValueError(
            f"{name} must have one row per row of x: shape ({rows}, {width}); got {x.shape}"
        )
    check_shape(x, (rows, width), name)
    return x


class GRUCellCache(NamedTuple):
    x: np.ndarray
    h: np.ndarray
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    a_hn: np.ndarray


@dataclass(frozen=True)
class GRUCell(Block):
    """GRU cell ``h' = GRU(x, h)``; params ``W_x`` (in, 3C), ``W_h`` (C, 3C), ``b_x``, ``b_h``
    (3C,)."""

    in_channels: int
    channels: int

    def __post_init__(self):
        _check_sizes("GRUCell", self.in_channels, self.channels)

    def param_shapes(self):
        c3 = 3 * self.channels
        return {"W_x": (self.in_channels, c3), "W_h": (self.channels, c3), "b_x": (c3,),
                "b_h": (c3,)}

    def init(self, rng):
        return _draw(as_rng(rng, "rng"), self.param_shapes(), type(self).__name__)

    def forward(self, params, x, h):
        check_params(params, self.param_shapes(), "GRUCell", exact=True)
        x = _rows(x, "x", self.in_channels)
        h = _rows(h, "h", self.channels, x.shape[0])
        C = self.channels
        ax = x @ params["W_x"] + params["b_x"]
        ah = h @ params["W_h"] + params["b_h"]
        r = sigmoid(ax[:, :C] + ah[:, :C])
        z = sigmoid(ax[:, C:2 * C] + ah[:, C:2 * C])
        a_hn = ah[:, 2 * C:]
        n = np.tanh(ax[:, 2 * C:] + r * a_hn)
        h_new = (1.0 - z) * n + z * h
        return h_new, GRUCellCache(x, h, r, z, n, a_hn)

    def backward(self, params, cache: GRUCellCache, grad_out):
        check_cache(cache, GRUCellCache, "GRUCell")
        x, h, r, z, n, a_hn = cache
        g = _grad_out(grad_out, h.shape, "GRUCell")
        # reverses h' = (1 - z) n + z h
        grad_n = g * (1.0 - z)
        grad_z = g * (h - n)
        grad_h = g * z
        # reverses n = tanh(a_xn + r a_hn)
        grad_npre = grad_n * (1.0 - n * n)
        grad_r = grad_npre * a_hn
        grad_ahn = grad_npre * r
        # reverses r = sigmoid(.), z = sigmoid(.)
        grad_rpre = grad_r * r * (1.0 - r)
        grad_zpre = grad_z * z * (1.0 - z)
        grad_ax = np.concatenate([grad_rpre, grad_zpre, grad_npre], axis=1)
        grad_ah = np.concatenate([grad_rpre, grad_zpre, grad_ahn], axis=1)
        # reverses a_x = x W_x + b_x and a_h = h W_h + b_h
        grads = {"W_x": x.T @ grad_ax, "b_x": grad_ax.sum(0), "W_h": h.T @ grad_ah,
                 "b_h": grad_ah.sum(0)}
        grad_x = grad_ax @ params["W_x"].T
        grad_h = grad_h + grad_ah @ params["W_h"].T
        return grads, (grad_x, grad_h)


class LSTMCellCache(NamedTuple):
    x: np.ndarray
    h: np.ndarray
    c: np.ndarray
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    tanh_c_new: np.ndarray


@dataclass(frozen=True)
class LSTMCell(Block):
    """LSTM cell ``(h', c') = LSTM(x, (h, c))``; params ``W_x`` (in, 4C), ``W_h`` (C, 4C),
    ``b_x``, ``b_h`` (4C,)."""

    in_channels: int
    channels: int

    def __post_init__(self):
        _check_sizes("LSTMCell", self.in_channels, self.channels)

    def param_shapes(self):
        c4 = 4 * self.channels
        return {"W_x": (self.in_channels, c4), "W_h": (self.channels, c4), "b_x": (c4,),
                "b_h": (c4,)}

    def init(self, rng):
        return _draw(as_rng(rng, "rng"), self.param_shapes(), type(self).__name__)

    def forward(self, params, x, h, c):
        check_params(params, self.param_shapes(), "LSTMCell", exact=True)
        x = _rows(x, "x", self.in_channels)
        h = _rows(h, "h", self.channels, x.shape[0])
        c = _rows(c, "c", self.channels, x.shape[0])
        C = self.channels
        a = x @ params["W_x"] + params["b_x"] + h @ params["W_h"] + params["b_h"]
        i = sigmoid(a[:, :C])
        f = sigmoid(a[:, C:2 * C])
        g = np.tanh(a[:, 2 * C:3 * C])
        o = sigmoid(a[:, 3 * C:])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        return (h_new, c_new), LSTMCellCache(x, h, c, i, f, g, o, tc)

    def backward(self, params, cache: LSTMCellCache, grad_out):
        check_cache(cache, LSTMCellCache, "LSTMCell")
        x, h, c, i, f, g, o, tc = cache
        grad_h_new, grad_c_new = _grad_outs(grad_out, (h.shape, c.shape), "LSTMCell")
        # reverses h' = o tanh(c')
        grad_o = grad_h_new * tc
        grad_c_tot = grad_c_new + grad_h_new * o * (1.0 - tc * tc)
        # reverses c' = f c + i g
        grad_f = grad_c_tot * c
        grad_c = grad_c_tot * f
        grad_i = grad_c_tot * g
        grad_g = grad_c_tot * i
        # reverses the gate nonlinearities
        grad_a = np.concatenate(
            [grad_i * i * (1 - i), grad_f * f * (1 - f), grad_g * (1 - g * g),
             grad_o * o * (1 - o)],
            axis=1,
        )
        # reverses a = x W_x + b_x + h W_h + b_h
        grads = {"W_x": x.T @ grad_a, "b_x": grad_a.sum(0), "W_h": h.T @ grad_a,
                 "b_h": grad_a.sum(0)}
        return grads, (grad_a @ params["W_x"].T, grad_a @ params["W_h"].T, grad_c)
