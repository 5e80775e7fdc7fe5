r"""Cardinal B-spline kernels on :math:`\mathbb{R}^d` and on Lie algebras (Bekkers, ICLR 2020).

The centred cardinal B-spline of degree n is built by repeated convolution with the box:

.. math::

    B_0 = \mathbb{1}_{[-\frac12, \frac12)}, \qquad B_n = B_{n-1} * B_0, \qquad
    \operatorname{supp} B_n = [-\tfrac{n+1}{2}, \tfrac{n+1}{2}],

a piecewise polynomial of degree n with knots at the half-integers (n odd: the integers), of
class :math:`C^{n-1}`, positive inside its support, with integer shifts that sum to one
(:math:`\sum_{i \in \mathbb{Z}} B_n(u - i) = 1`) and derivative
:math:`B_n'(t) = B_{n-1}(t + \tfrac12) - B_{n-1}(t - \tfrac12)`. On the piece
:math:`x = t + \tfrac{n+1}{2} \in [j, j + 1)` the truncated-power formula

.. math::

    B_n(t) = \frac{1}{n!} \sum_{k=0}^{j} (-1)^k \binom{n+1}{k} (x - k)^n

is expanded exactly (rational arithmetic) in the local variable :math:`s = x - j \in [0, 1)`; the
float64 coefficients of each piece are evaluated by Horner's rule in s, so no cancellation occurs
(``derivations/bspline.py`` checks these pieces against SymPy's convolution integrals).

The kernel (one output channel per column of the coefficient table):

.. math::

    k_c(x) = \sum_{i} c_{i, c} \prod_{a=1}^{d} B_n\Big(\frac{x_a - x_{i, a}}{s_a}\Big),
    \qquad x_{i, a} = -e_a + i_a s_a, \quad s_a = \frac{2 e_a}{n_a - 1},

with centres on the regular grid of ``grid_size`` points per axis spanning
:math:`[-e_a, e_a]` (``extent``). Only centres within :math:`(n+1) s_a / 2` of x on every axis
contribute: per axis at most n+1 of them, so each row costs :math:`(n+1)^d` terms whatever the
grid size. Outside :math:`[-e_a - (n+1)s_a/2,\ e_a + (n+1)s_a/2]` the kernel is exactly 0: it has
compact support, like a kernel with a cutoff.

Backward: :math:`\bar c_{i, c} = \sum_m w_{m,i} \bar k_{m, c}` (a scatter of the weights
:math:`w_{m,i} = \prod_a B_n(u_{m,a} - i_a)`, :math:`u = (x + e)/s`) and
:math:`\bar x_{m,a} = \frac{1}{s_a} \sum_i \big(\sum_c c_{i,c} \bar k_{m,c}\big)
B_n'(u_{m,a} - i_a) \prod_{b \ne a} B_n(u_{m,b} - i_b)`. For degree 0 the coordinate gradient is
0 (the kernel is piecewise constant); for degree 1 it jumps at the knots; degree >= 2 gives a
continuous gradient (use degree 3 for finite-difference checks).

On a Lie group the coordinates are :math:`\xi_{ij} = \mathrm{Log}(g_i^{-1} g_j)` (SE(2):
:math:`(\rho_1, \rho_2, \theta)`, SE(3): :math:`(\rho, \omega)`); a per-axis ``extent`` such as
``(2, 2, pi)`` covers the principal angle range.

References
----------
E. J. Bekkers, "B-Spline CNNs on Lie Groups", ICLR 2020; M. Unser, "Splines: a perfect fit for
signal and image processing", IEEE Signal Processing Magazine 16(6), 1999.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_float64,
    as_rng,
    check_alloc,
    check_cache,
    check_int,
    check_params,
    check_positive,
    check_shape,
    grad_out,
)
from .base import Block

__all__ = [
    "MAX_DEGREE",
    "BSplineKernel",
    "BSplineKernelCache",
    "cardinal_bspline",
    "cardinal_bspline_derivative",
]

#: Highest degree served: the piece coefficients stay below 1 in magnitude up to here.
MAX_DEGREE = 9
_CHUNK = 1 << 21  # elements of the (rows, terms, channels) gather done at once


@functools.cache
def _pieces(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 coefficients of every piece of :math:`B_n` and of :math:`B_n'` in ``s``.

    Row j holds the coefficients (power 0 first) on :math:`x = t + (n+1)/2 \\in [j, j+1)`.
    """
    rows, drows = [], []
    for j in range(n + 1):
        a = [Fraction(0)] * (n + 1)
        for k in range(j + 1):
            sign = (-1) ** k * math.comb(n + 1, k)
            for m in range(n + 1):  # (s + j - k)^n expanded in s
                a[m] += sign * math.comb(n, m) * Fraction(j - k) ** (n - m)
        a = [v / math.factorial(n) for v in a]
        rows.append([float(v) for v in a])
        drows.append([float((m + 1) * a[m + 1]) for m in range(n)] + [0.0])
    table, dtable = np.array(rows), np.array(drows)
    table.setflags(write=False)  # cached: shared by every caller
    dtable.setflags(write=False)
    return table, dtable


def _horner(coeffs: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``sum_m coeffs[..., m] s^m``: ``coeffs`` (..., n+1) broadcast against ``s``."""
    out = np.zeros(np.broadcast_shapes(coeffs.shape[:-1], s.shape)) + coeffs[..., -1]
    for m in range(coeffs.shape[-1] - 2, -1, -1):
        out = out * s + coeffs[..., m]
    return out


def _piece(j, s, n: int, deriv: bool):
    """:math:`B_n` (or :math:`B_n'`) on piece ``j`` at local variable ``s`` in [0, 1].

    The pieces of the right half (``2j > n``) are evaluated as the mirror image of the left half,
    :math:`P_j(s) = P_{n-j}(1 - s)`, so every value is computed from the outer knot of its side:
    expanding :math:`(1 - s)^n/n!` in powers of ``s`` would cancel catastrophically near the right
    end of the support, while :math:`P_0(s) = s^n/n!` is exact to the last bit.
    """
    table = _pieces(n)[1 if deriv else 0]
    mirror = 2 * j > n
    jj = np.where(mirror, n - j, j)
    ss = np.where(mirror, 1.0 - s, s)
    vals = _horner(table[jj], ss)
    return np.where(mirror, -vals, vals) if deriv else vals


def _check_degree(degree, name="degree") -> int:
    return check_int(degree, name, minimum=0, maximum=MAX_DEGREE)


def _eval(t, degree: int, deriv: bool) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    half = 0.5 * (degree + 1)
    # degree >= 1: B_n is even and continuous, so evaluate at -|t|: then x = half - |t| is the
    # exact distance to the nearer end of the support wherever the value is small
    tt = -np.abs(t) if degree >= 1 else t
    x = tt + half
    # the support is half-open, [-half, half): t = +half (x = 0 after the reflection) is outside
    inside = (x >= 0) & (x < degree + 1) & ~((x == 0) & (t > 0))
    xs = np.where(inside, x, 0.0)
    j = np.minimum(np.floor(xs).astype(np.int64), degree)
    vals = np.where(inside, _piece(j, xs - j, degree, deriv), 0.0)
    return np.where(t > 0, -vals, vals) if (deriv and degree >= 1) else vals


def cardinal_bspline(t, degree: int) -> np.ndarray:
    r"""The centred cardinal B-spline :math:`B_n(t)`, elementwise (0 outside its support)."""
    n = _check_degree(degree)
    t = as_float64(t, "t")
    return _eval(t, n, False)


def cardinal_bspline_derivative(t, degree: int) -> np.ndarray:
    r""":math:`B_n'(t)` (one-sided from the right at the knots, where degree <= 1 jumps)."""
    n = _check_degree(degree)
    t = as_float64(t, "t")
    return _eval(t, n, True)


def _per_axis(value, name: str, in_dim: int, convert) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != in_dim:
            raise ValueError(f"{name} must be a number or a tuple of {in_dim} (one per axis); "
                             f"got {value!r}")
        return tuple(convert(v, f"{name}[{a}]") for a, v in enumerate(value))
    return (convert(value, name),) * in_dim


# --- the kernel -----------------------------------------------------------------------------


class BSplineKernelCache(NamedTuple):
    B: np.ndarray  # (M, d, n+1) per-axis B-spline values of the contributing centres
    dB: np.ndarray  # (M, d, n+1) their derivatives (w.r.t. u)
    idx: np.ndarray  # (M, L) flat index of each contributing centre (L = (n+1)^d; 0 if outside)
    w: np.ndarray  # (M, L) tensor-product weights (0 for centres outside the grid)
    k: np.ndarray  # (M, out_dim)


@dataclass(frozen=True)
class BSplineKernel(Block):
    r"""Kernel :math:`k(x) = \sum_i c_i \prod_a B_n((x_a - x_{i,a})/s_a)` on a regular grid.

    Parameters
    ----------
    in_dim : int
        d, the coordinate dimension (2 or 3 for relative positions, 3 for the Lie algebra of
        SE(2), 6 for SE(3)).
    out_dim : int
        Output channels (one coefficient per centre and channel).
    degree : int
        n, in ``[0, MAX_DEGREE]``; 3 (cubic, :math:`C^2`) is the usual choice.
    grid_size : int or tuple of int
        Centres per axis (>= 2), one value for every axis or one per axis.
    extent : float or tuple of float
        :math:`e_a > 0`: the centres span :math:`[-e_a, e_a]` on axis a.

    Params: ``{"coeffs": (num_centres, out_dim)}`` with the centres in row-major order of the
    grid (axis 0 slowest), initialised standard normal. ``forward(params, coords)``: ``coords``
    (M, in_dim) -> (M, out_dim).

    Raises
    ------
    ValueError
        A grid whose coefficient table, or a batch whose :math:`M (n+1)^d` terms, cannot fit in
        memory (named before allocating).
    """

    in_dim: int
    out_dim: int
    degree: int = 3
    grid_size: int | tuple = 5
    extent: float | tuple = 1.0

    def __post_init__(self):
        d = check_int(self.in_dim, "BSplineKernel.in_dim", minimum=1)
        check_int(self.out_dim, "BSplineKernel.out_dim", minimum=1)
        _check_degree(self.degree, "BSplineKernel.degree")
        sizes = _per_axis(self.grid_size, "BSplineKernel.grid_size", d,
                          lambda v, nm: check_int(v, nm, minimum=2))
        ext = _per_axis(self.extent, "BSplineKernel.extent", d, check_positive)
        object.__setattr__(self, "grid_size", sizes if isinstance(self.grid_size, (tuple, list))
                           else sizes[0])
        object.__setattr__(self, "extent", ext if isinstance(self.extent, (tuple, list))
                           else ext[0])
        check_alloc((math.prod(sizes), self.out_dim), "BSplineKernel.grid_size")
        check_alloc(((self.degree + 1) ** d,), "BSplineKernel.degree")
        object.__setattr__(self, "_sizes", sizes)
        object.__setattr__(self, "_extent", np.array(ext))
        spacing = np.array([2.0 * e / (n - 1) for e, n in zip(ext, sizes)])
        if not np.all(np.isfinite(spacing)):
            raise ValueError(f"BSplineKernel.extent is too large for a finite spacing; got {ext}")
        object.__setattr__(self, "_spacing", spacing)

    @property
    def num_centres(self) -> int:
        return math.prod(self._sizes)

    def centres(self) -> np.ndarray:
        """The grid centres, shape (num_centres, in_dim), in the order of the coefficient rows."""
        axes = [-e + np.arange(n) * s for e, n, s in zip(self._extent, self._sizes, self._spacing)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)

    def param_shapes(self) -> dict:
        return {"coeffs": (self.num_centres, self.out_dim)}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {"coeffs": rng.standard_normal((self.num_centres, self.out_dim))}

    def _local(self, coords):
        """Per-axis candidate centres (n+1 per axis) and their B-spline values and slopes."""
        n = self.degree
        sizes = np.array(self._sizes)
        with np.errstate(over="ignore"):  # |coords| near the float64 limit: u = +-inf, clipped
            u = (coords + self._extent) / self._spacing
        # far outside the grid every candidate is out of range: clipping keeps the ints small
        u = np.clip(u, -(n + 2.0), sizes + (n + 1.0))
        v = u - 0.5 * (n + 1)
        fl = np.floor(v)
        r = v - fl  # in [0, 1): the local variable of every candidate's piece
        o = np.arange(n + 1)
        idx = fl.astype(np.int64)[..., None] + 1 + o  # (M, d, n+1)
        # candidate o sits on piece n - o, at the same local variable r
        B = _piece(n - o, r[..., None], n, False)
        dB = _piece(n - o, r[..., None], n, True)
        valid = (idx >= 0) & (idx < sizes[:, None])
        return np.where(valid, idx, 0), np.where(valid, B, 0.0), np.where(valid, dB, 0.0)

    def _tensor(self, factors):
        """Row-wise outer product of per-axis factors (M, n+1) -> (M, (n+1)^d), axis 0 slowest."""
        out = factors[0]
        for f in factors[1:]:
            out = (out[:, :, None] * f[:, None, :]).reshape(len(out), out.shape[1] * f.shape[1])
        return out

    def _gather_dot(self, coeffs, idx, w):
        """``sum_l w[m, l] coeffs[idx[m, l]]`` in chunks of rows (bounded memory)."""
        M, L = idx.shape
        out = np.zeros((M, coeffs.shape[1]))
        step = max(1, _CHUNK // max(1, L * coeffs.shape[1]))
        for a in range(0, M, step):
            out[a:a + step] = np.einsum("ml,mlc->mc", w[a:a + step], coeffs[idx[a:a + step]])
        return out

    def forward(self, params, coords):
        check_params(params, self.param_shapes(), "BSplineKernel", exact=True)
        coords = as_float64(coords, "coords", ndim=2)
        check_shape(coords, (None, self.in_dim), "coords")
        M, d = coords.shape
        n1 = self.degree + 1
        check_alloc((M, n1**d), "coords (rows x (degree+1)^in_dim terms)")
        idx_a, B, dB = self._local(coords)
        strides = np.cumprod((1,) + self._sizes[:0:-1])[::-1]  # row-major strides
        # flat index of each combination: an outer *sum* of the per-axis parts, axis 0 slowest
        idx = idx_a[:, 0, :] * strides[0]
        for a in range(1, d):
            idx = idx[:, :, None] + idx_a[:, a, None, :] * strides[a]
            idx = idx.reshape(M, idx.shape[1] * n1)
        w = self._tensor([B[:, a, :] for a in range(d)])
        k = self._gather_dot(params["coeffs"], idx, w)
        return k, BSplineKernelCache(B, dB, idx, w, k)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, BSplineKernelCache, "BSplineKernel")
        g = grad_out(grad_out_, cache.k.shape, "BSplineKernel")
        B, dB, idx, w, _k = cache
        coeffs = params["coeffs"]
        M, d = B.shape[0], B.shape[1]
        # reverses k = sum_l w c[idx]: the coefficient gradient scatters w g to the centres
        flat = idx.ravel()
        grad_c = np.stack(
            [np.bincount(flat, weights=(w * g[:, c:c + 1]).ravel(), minlength=self.num_centres)
             for c in range(self.out_dim)], axis=1,
        ) if M else np.zeros_like(coeffs)
        # reverses w = prod_a B(u_a - i_a) and u = (x + e)/s: the coordinate gradient
        G = np.zeros(idx.shape)  # G[m, l] = sum_c coeffs[idx[m, l], c] g[m, c]
        step = max(1, _CHUNK // max(1, idx.shape[1] * self.out_dim))
        for a in range(0, M, step):
            G[a:a + step] = np.einsum("mlc,mc->ml", coeffs[idx[a:a + step]], g[a:a + step])
        grad_x = np.zeros((M, d))
        for a in range(d):
            dw = self._tensor([dB[:, b, :] if b == a else B[:, b, :] for b in range(d)])
            grad_x[:, a] = np.sum(G * dw, axis=1) / self._spacing[a]
        return {"coeffs": grad_c}, (grad_x,)
