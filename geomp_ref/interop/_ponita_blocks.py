r"""Small graph-free blocks for the pieces of PONITA's kernel bases that are modules of their own.

PONITA builds its kernel bases from three modules (ebekkers/ponita, ``ponita/nn/embedding.py``,
``ponita/utils/windowing.py`` and ``ponita/models/ponita.py``):

* ``PolynomialFeatures(degree)``: :math:`z \mapsto [z, z \otimes z, \dots, z^{\otimes d}]`,
  each power flattened row-major -> :class:`PolynomialFeaturesMap`;
* ``PolynomialCutoff(r_max, p)``: the window :math:`1 - \tfrac{(p+1)(p+2)}{2} u^p + p(p+2)
  u^{p+1} - \tfrac{p(p+1)}{2} u^{p+2}` for :math:`u = x / r_{max} < 1`, 0 beyond, and 1
  everywhere when ``r_max`` is None -> :class:`PolynomialWindow`;
* the basis network ``Sequential(PolynomialFeatures, Linear, GELU, Linear, GELU)`` ->
  :class:`KernelBasisNet` (the polynomial features, then a dense network with the activation
  after every layer).

Each acts on the last axis and keeps any leading axes, like the torch modules, so
``forward(params, z)`` takes the same array the module takes. The shared-basis block of a whole
layer stack is :class:`geomp_ref.layers.position_orientation_basis.PositionOrientationBasis`;
these blocks exist so that each PONITA module can be compared on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_float64,
    as_rng,
    check_bool,
    check_cache,
    check_choice,
    check_int,
    check_positive,
    grad_out,
)
from ..layers.base import Block, check_params
from ..layers.kernels import MLPKernel
from ..layers.position_orientation_ops import (
    apply_kernel,
    apply_kernel_vjp,
    polynomial_features,
    polynomial_features_size,
    polynomial_features_vjp,
)
from ..ops import activations, radial

__all__ = [
    "KernelBasisNet",
    "KernelBasisNetCache",
    "PolynomialFeaturesMap",
    "PolynomialFeaturesMapCache",
    "PolynomialWindow",
    "PolynomialWindowCache",
]


def _last_axis(z, name: str, width: int | None, owner: str) -> np.ndarray:
    """``z`` as float64 with a last axis (of ``width`` entries when given)."""
    z = as_float64(z, name)
    if z.ndim == 0 or (width is not None and z.shape[-1] != width):
        want = "n" if width is None else str(width)
        raise ValueError(f"{name} must have shape (..., {want}) for {owner}; got {z.shape}")
    return z


# --- polynomial features ------------------------------------------------------------------------


class PolynomialFeaturesMapCache(NamedTuple):
    z: np.ndarray  # (..., n)
    out_shape: tuple


@dataclass(frozen=True)
class PolynomialFeaturesMap(Block):
    r"""``forward(params, z) -> P(z)``: polynomial features of degree ``degree`` on the last axis.

    ``z`` (..., n) -> (..., n + n^2 + ... + n^degree); no params (``{}``).
    """

    degree: int

    def __post_init__(self):
        check_int(self.degree, "PolynomialFeaturesMap.degree", minimum=1)

    def param_shapes(self) -> dict:
        return {}

    def init(self, rng) -> dict:
        as_rng(rng, "rng")
        return {}

    def forward(self, params, z):
        check_params(params, {}, "PolynomialFeaturesMap", exact=True)
        z = _last_axis(z, "z", None, "PolynomialFeaturesMap")
        out = polynomial_features(z, self.degree)
        return out, PolynomialFeaturesMapCache(z, out.shape)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, PolynomialFeaturesMapCache, "PolynomialFeaturesMap")
        g = grad_out(grad_out_, cache.out_shape, "PolynomialFeaturesMap")
        # reverses out = P(z)
        return {}, (polynomial_features_vjp(cache.z, self.degree, g),)


# --- the radial window --------------------------------------------------------------------------


class PolynomialWindowCache(NamedTuple):
    d: np.ndarray  # any shape


@dataclass(frozen=True)
class PolynomialWindow(Block):
    r"""``forward(params, d) -> w(d)``, elementwise: DimeNet's polynomial envelope of order ``p``
    on ``[0, radius)``, 0 beyond; ``radius=None`` gives 1 everywhere (and a zero gradient).
    No params."""

    radius: float | None
    p: int = 6

    def __post_init__(self):
        if self.radius is not None:
            check_positive(self.radius, "PolynomialWindow.radius")
        check_int(self.p, "PolynomialWindow.p", minimum=1)

    def param_shapes(self) -> dict:
        return {}

    def init(self, rng) -> dict:
        as_rng(rng, "rng")
        return {}

    def forward(self, params, d):
        check_params(params, {}, "PolynomialWindow", exact=True)
        d = as_float64(d, "d")
        if self.radius is None:
            return np.ones_like(d), PolynomialWindowCache(d)
        return radial.polynomial_cutoff(d, self.radius, self.p), PolynomialWindowCache(d)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, PolynomialWindowCache, "PolynomialWindow")
        g = grad_out(grad_out_, cache.d.shape, "PolynomialWindow")
        if self.radius is None:
            return {}, (np.zeros_like(cache.d),)
        # reverses w = envelope(d / radius)
        return {}, (radial.polynomial_cutoff_vjp(cache.d, self.radius, g, self.p),)


# --- the basis network ------------------------------------------------------------------------


class KernelBasisNetCache(NamedTuple):
    z: np.ndarray  # (..., n)
    kernel: tuple  # the MLPKernel cache, rows flattened over the leading axes
    out_shape: tuple


@dataclass(frozen=True)
class KernelBasisNet(Block):
    r"""PONITA's basis network ``k(P(z))``: polynomial features, then a dense network.

    Parameters
    ----------
    in_dim : int
        n, the number of invariants on the last axis of ``z``.
    degree : int
    hidden : tuple of int
        Hidden widths (PONITA: ``(hidden_dim,)``).
    basis_dim : int
    activation : str
        PONITA: ``"gelu"`` (exact erf form).
    activate_last : bool
        PONITA applies the activation after the last layer too.
    bias : bool

    Params: ``{"kernel": MLPKernel params}`` (``W0`` (P, h), ``b0``, ``W1`` ...), the layout of
    :class:`~geomp_ref.layers.position_orientation_basis.PositionOrientationBasis`'s kernels.
    ``forward(params, z)``: ``z`` (..., in_dim) -> (..., basis_dim).
    """

    in_dim: int
    degree: int
    hidden: tuple
    basis_dim: int
    activation: str = "gelu"
    activate_last: bool = True
    bias: bool = True

    def __post_init__(self):
        o = "KernelBasisNet"
        n = check_int(self.in_dim, f"{o}.in_dim", minimum=1)
        d = check_int(self.degree, f"{o}.degree", minimum=1)
        check_int(self.basis_dim, f"{o}.basis_dim", minimum=1)
        check_choice(self.activation, f"{o}.activation", activations.NAMES)
        check_bool(self.activate_last, f"{o}.activate_last")
        check_bool(self.bias, f"{o}.bias")
        kernel = MLPKernel(
            polynomial_features_size(n, d), self.basis_dim, self.hidden, self.activation,
            self.activate_last, self.bias,
        )
        object.__setattr__(self, "hidden", kernel.hidden)
        object.__setattr__(self, "kernel", kernel)

    def param_shapes(self) -> dict:
        return {"kernel": self.kernel.param_shapes()}

    def init(self, rng) -> dict:
        return {"kernel": self.kernel.init(as_rng(rng, "rng"))}

    def forward(self, params, z):
        check_params(params, self.param_shapes(), "KernelBasisNet", exact=True)
        z = _last_axis(z, "z", self.in_dim, "KernelBasisNet")
        feats = polynomial_features(z, self.degree)
        k, kernel_cache = apply_kernel(self.kernel, params["kernel"], feats)
        return k, KernelBasisNetCache(z, kernel_cache, k.shape)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, KernelBasisNetCache, "KernelBasisNet")
        g = grad_out(grad_out_, cache.out_shape, "KernelBasisNet")
        # reverses k = MLP(feats)
        grads, grad_feats = apply_kernel_vjp(self.kernel, params["kernel"], cache.kernel, g)
        # reverses feats = P(z)
        return {"kernel": grads}, (polynomial_features_vjp(cache.z, self.degree, grad_feats),)
