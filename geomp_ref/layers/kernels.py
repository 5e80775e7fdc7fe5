r"""Kernel specs: blocks that map relative coordinates to kernel values, shared by the convolutions.

A continuous convolution evaluates a learned kernel :math:`k : \mathbb{R}^{d} \to \mathbb{R}^{K}`
at one relative coordinate per edge (a relative position :math:`x_j - x_i`, a distance, a Lie
algebra element :math:`\mathrm{Log}(g_i^{-1} g_j)`, ...). A kernel spec is a frozen dataclass
following the block convention:

* ``param_shapes()``, ``init(rng)``;
* ``forward(params, coords) -> (k, cache)`` with ``coords`` (M, in_dim) and ``k`` (M, out_dim);
* ``backward(params, cache, grad_out) -> (grad_params, (grad_coords,))``, ``grad_out`` being the
  cotangent of ``k``.

Specs
-----
:class:`MLPKernel`
    A dense network on the coordinates (PointConv's and LieConv's kernel). ``activate_last=True``
    applies the activation after the last layer too, as LieConv's ``WeightNet`` does (swish after
    every one of its three linear layers).
:class:`RadialKernel`
    For distances (``in_dim = 1``): a radial basis (Gaussian or Bessel) times a smooth cutoff,
    then a dense network.
:class:`BSplineKernel`
    Cardinal B-splines of degree n on a regular grid of centres (Bekkers' B-spline CNNs on Lie
    groups): a learned coefficient per centre and output channel; defined in
    :mod:`geomp_ref.layers.bspline` and re-exported here.

A convolution holds its kernel spec as a field (``PointConv.kernel``, ``LieConv.kernel``) and its
kernel params live under ``params["kernel"]``.
"""

from __future__ import annotations

import dataclasses
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
    check_params,
    check_positive,
    check_shape,
    grad_out,
)
from ..ops import activations, radial
from .base import Block, check_backend
from .bspline import BSplineKernel, BSplineKernelCache, cardinal_bspline
from .mlp import MLP, MLPCache
from .tfn_radial import (
    gaussian_embedding,
    gaussian_embedding_vjp,
    smooth_cutoff,
    smooth_cutoff_vjp,
)

__all__ = [
    "BSplineKernel",
    "BSplineKernelCache",
    "MLPKernel",
    "MLPKernelCache",
    "RadialKernel",
    "RadialKernelCache",
    "cardinal_bspline",
    "check_kernel",
    "is_kernel_spec",
    "resolve_kernel",
    "with_backend",
]

KERNEL_SPECS: tuple = ()  # filled at the end of the module


def is_kernel_spec(obj) -> bool:
    """Whether ``obj`` is one of the kernel specs of this module."""
    return isinstance(obj, KERNEL_SPECS)


def _hidden(value, name: str) -> tuple:
    """A tuple of hidden widths (ints >= 1); a list is accepted, anything else refused."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a tuple of ints (hidden widths); got {value!r}")
    return tuple(check_int(h, f"{name}[{k}]", minimum=1) for k, h in enumerate(value))


def _coords(coords, in_dim: int) -> np.ndarray:
    arr = as_float64(coords, "coords", ndim=2)
    check_shape(arr, (None, in_dim), "coords")
    return arr


def _mlp_shapes(sizes: tuple, bias: bool) -> dict:
    shapes = {}
    for k in range(len(sizes) - 1):
        shapes[f"W{k}"] = (sizes[k], sizes[k + 1])
        if bias:
            shapes[f"b{k}"] = (sizes[k + 1],)
    return shapes


# --- MLP on the coordinates ---------------------------------------------------------------------


class MLPKernelCache(NamedTuple):
    net: MLPCache  # the dense network's cache
    k: np.ndarray  # (M, out_dim)


@dataclass(frozen=True)
class MLPKernel(Block):
    r"""Kernel :math:`k(a) = \mathrm{MLP}(a)`, ``in_dim -> hidden -> out_dim``.

    Parameters
    ----------
    in_dim, out_dim : int
    hidden : tuple of int
        Hidden widths (may be empty: one affine map).
    activation : str
        A name of :data:`geomp_ref.ops.activations.NAMES` (``"silu"`` is LieConv's swish).
    activate_last : bool
        Apply the activation after the last layer too (LieConv's ``WeightNet`` does).
    bias : bool
        Affine layers (default) or linear ones.
    backend : str
        Backend of the network's activations (:class:`~geomp_ref.layers.mlp.MLP`); a layer
        holding the kernel sets it to its own backend.

    Params are the network's: ``{"W0": (in_dim, h0), "b0": (h0,), ..., "W<L>": (h_last,
    out_dim), "b<L>": (out_dim,)}``, weights stored (in, out), initialised like
    ``torch.nn.Linear`` (uniform in :math:`\pm 1/\sqrt{\text{fan-in}}`).
    """

    in_dim: int
    out_dim: int
    hidden: tuple = (32, 32)
    activation: str = "silu"
    activate_last: bool = False
    bias: bool = True
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.in_dim, "MLPKernel.in_dim", minimum=1)
        check_int(self.out_dim, "MLPKernel.out_dim", minimum=1)
        object.__setattr__(self, "hidden", _hidden(self.hidden, "MLPKernel.hidden"))
        check_choice(self.activation, "MLPKernel.activation", activations.NAMES)
        check_bool(self.activate_last, "MLPKernel.activate_last")
        check_bool(self.bias, "MLPKernel.bias")
        sizes = (int(self.in_dim), *self.hidden, int(self.out_dim))
        check_backend(self.backend, "MLPKernel")
        object.__setattr__(self, "_net", MLP(sizes, self.activation, self.activate_last, self.bias,
                                             self.backend))

    def param_shapes(self) -> dict:
        return _mlp_shapes(self._net.sizes, self.bias)

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return self._net.init(rng)

    def forward(self, params, coords):
        check_params(params, self.param_shapes(), "MLPKernel", exact=True)
        coords = _coords(coords, self.in_dim)
        k, net = self._net.forward(params, coords)
        return k, MLPKernelCache(net, k)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, MLPKernelCache, "MLPKernel")
        g = grad_out(grad_out_, cache.k.shape, "MLPKernel")
        # reverses k = MLP(coords)
        grads, (grad_coords,) = self._net.backward(params, cache.net, g)
        return grads, (grad_coords,)


# --- radial basis x cutoff -> MLP ------------------------------------------------------------


class RadialKernelCache(NamedTuple):
    d: np.ndarray  # (M,) distances
    e: np.ndarray  # (M, num_basis) radial basis
    c: np.ndarray  # (M,) cutoff envelope
    net: MLPCache
    k: np.ndarray  # (M, out_dim)
    k_raw: np.ndarray | None = None  # (M, out_dim) MLP(e) before the envelope ("output" mode)


_BASES = ("gaussian", "e3nn_gaussian", "bessel")
_ENVELOPES = ("cosine", "polynomial", "smooth", "none")
_ENVELOPE_AT = ("input", "output")


@dataclass(frozen=True)
class RadialKernel(Block):
    r"""Kernel of a distance: :math:`k(d) = \mathrm{MLP}\big(e(d)\, C(d)\big)` (``in_dim = 1``), or
    :math:`\mathrm{MLP}(e(d))\, C(d)` with ``envelope_at="output"``.

    Parameters
    ----------
    out_dim : int
    num_basis : int
        Number of radial functions :math:`e_1 .. e_B`.
    cutoff : float
        The radius c of the basis and of the envelope.
    basis : {"gaussian", "e3nn_gaussian", "bessel"}
        ``"gaussian"``: :math:`\exp(-\gamma (d - \mu_b)^2)` with centres ``linspace(0, c, B)``
        and :math:`\gamma = 1/(2\Delta^2)`, :math:`\Delta` the centre spacing (SchNet; needs
        ``B >= 2``); ``"e3nn_gaussian"``: e3nn's
        :math:`\tfrac{\sqrt B}{1.12} \exp(-((d - \mu_b)/\Delta)^2)` on the same centres (the
        radial embedding of TFN's convolution, :func:`geomp_ref.layers.tfn.gaussian_embedding`;
        needs ``B >= 2``); ``"bessel"``: :math:`\sqrt{2/c}\, \sin(b\pi d/c)/d` (DimeNet).
    hidden : tuple of int
        Hidden widths of the network ``B -> hidden -> out_dim``.
    activation : str
    activate_last : bool
    bias : bool
        With ``bias=False``, an activation with :math:`\sigma(0) = 0` and an envelope, the kernel
        vanishes at and beyond the cutoff; with biases it tends to ``MLP(0)`` there.
    envelope : {"cosine", "polynomial", "smooth", "none"}
        :math:`C(d)`: :math:`\tfrac12(\cos(\pi d/c) + 1)` below c, the DimeNet polynomial of
        order 6, e3nn's smooth cutoff :math:`\phi(d/c)` (1 up to :math:`c/2`, then
        :math:`\tfrac12(1 - \cos(2\pi(d/c - 1)))`, 0 from c on;
        :func:`geomp_ref.layers.tfn.smooth_cutoff`), or 1.
    envelope_at : {"input", "output"}
        Where :math:`C` multiplies: the basis before the network (``"input"``, the default) or the
        network's output (``"output"``: SchNet's filter :math:`W(d) = \mathrm{MLP}(e(d))\,C(d)`
        and TFN's :math:`\phi(r/r_{max})\,R(e(r))`, which is what makes CFConv and a scalar
        TFNConv point convolutions with this kernel; see ``derivations/special_cases.py``).

    ``coords`` are distances, shape (M, 1), each ``>= 0``. Params: the network's, as
    :class:`MLPKernel`.
    """

    out_dim: int
    num_basis: int
    cutoff: float
    basis: str = "gaussian"
    hidden: tuple = (32,)
    activation: str = "silu"
    activate_last: bool = False
    bias: bool = True
    envelope: str = "cosine"
    envelope_at: str = "input"

    in_dim = 1

    def __post_init__(self):
        check_int(self.out_dim, "RadialKernel.out_dim", minimum=1)
        check_choice(self.basis, "RadialKernel.basis", _BASES)
        lo = 1 if self.basis == "bessel" else 2
        check_int(self.num_basis, "RadialKernel.num_basis", minimum=lo)
        object.__setattr__(self, "cutoff", check_positive(self.cutoff, "RadialKernel.cutoff"))
        object.__setattr__(self, "hidden", _hidden(self.hidden, "RadialKernel.hidden"))
        check_choice(self.activation, "RadialKernel.activation", activations.NAMES)
        check_bool(self.activate_last, "RadialKernel.activate_last")
        check_bool(self.bias, "RadialKernel.bias")
        check_choice(self.envelope, "RadialKernel.envelope", _ENVELOPES)
        check_choice(self.envelope_at, "RadialKernel.envelope_at", _ENVELOPE_AT)
        sizes = (int(self.num_basis), *self.hidden, int(self.out_dim))
        object.__setattr__(self, "_net", MLP(sizes, self.activation, self.activate_last, self.bias))

    def param_shapes(self) -> dict:
        return _mlp_shapes(self._net.sizes, self.bias)

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return self._net.init(rng)

    def _basis(self, d):
        if self.basis == "gaussian":
            mu, gamma = radial.gaussian_centers(0.0, self.cutoff, self.num_basis)
            return radial.gaussian_rbf(d, mu, gamma)
        if self.basis == "e3nn_gaussian":
            return gaussian_embedding(d, self.cutoff, self.num_basis)
        return radial.bessel_rbf(d, self.num_basis, self.cutoff)

    def _basis_vjp(self, d, g):
        if self.basis == "gaussian":
            mu, gamma = radial.gaussian_centers(0.0, self.cutoff, self.num_basis)
            return radial.gaussian_rbf_vjp(d, mu, gamma, g)
        if self.basis == "e3nn_gaussian":
            return gaussian_embedding_vjp(d, self.cutoff, self.num_basis, g)
        return radial.bessel_rbf_vjp(d, self.num_basis, self.cutoff, g)

    def _envelope(self, d):
        if self.envelope == "cosine":
            return radial.cosine_cutoff(d, self.cutoff)
        if self.envelope == "polynomial":
            return radial.polynomial_cutoff(d, self.cutoff)
        if self.envelope == "smooth":
            return smooth_cutoff(d / self.cutoff)
        return np.ones_like(d)

    def _envelope_vjp(self, d, g):
        if self.envelope == "cosine":
            return radial.cosine_cutoff_vjp(d, self.cutoff, g)
        if self.envelope == "polynomial":
            return radial.polynomial_cutoff_vjp(d, self.cutoff, g)
        if self.envelope == "smooth":
            return smooth_cutoff_vjp(d / self.cutoff, g) / self.cutoff
        return np.zeros_like(d)

    def forward(self, params, coords):
        check_params(params, self.param_shapes(), "RadialKernel", exact=True)
        coords = _coords(coords, 1)
        d = coords[:, 0]
        if d.size and d.min() < 0:
            raise ValueError(
                f"coords of RadialKernel must be distances >= 0; got {d.min():.3g} at row "
                f"{int(np.argmin(d))}"
            )
        with np.errstate(over="ignore"):  # (d - mu)^2 = inf for huge d: exp(-inf) = 0, exact
            e = self._basis(d)
        c = self._envelope(d)
        if self.envelope_at == "output":
            k_raw, net = self._net.forward(params, e)
            k = k_raw * c[:, None]
            return k, RadialKernelCache(d, e, c, net, k, k_raw)
        k, net = self._net.forward(params, e * c[:, None])
        return k, RadialKernelCache(d, e, c, net, k)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, RadialKernelCache, "RadialKernel")
        g = grad_out(grad_out_, cache.k.shape, "RadialKernel")
        if self.envelope_at == "output":
            return self._backward_output(params, cache, g)
        # reverses k = MLP(e * c)
        grads, (g_x,) = self._net.backward(params, cache.net, g)
        # reverses the product e * c
        g_e = g_x * cache.c[:, None]
        g_c = np.sum(g_x * cache.e, axis=1)
        # reverses c = C(d) and e = basis(d)
        g_d = self._envelope_vjp(cache.d, g_c) + self._basis_vjp(cache.d, g_e)
        return grads, (g_d[:, None],)

    def _backward_output(self, params, cache, g):
        """Backward of ``k = MLP(e) * c`` (``envelope_at="output"``)."""
        if cache.k_raw is None:
            raise ValueError("RadialKernel.backward: the cache has no k_raw; it does not come from "
                             "forward with envelope_at='output'")
        # reverses k = k_raw * c
        g_raw = g * cache.c[:, None]
        g_c = np.sum(g * cache.k_raw, axis=1)
        # reverses k_raw = MLP(e)
        grads, (g_e,) = self._net.backward(params, cache.net, g_raw)
        # reverses c = C(d) and e = basis(d); where the envelope is 0 the basis gets no
        # cotangent, so a Gaussian's 0 * inf far beyond the cutoff never forms a NaN
        g_d = self._envelope_vjp(cache.d, g_c)
        live = cache.c != 0.0
        g_d[live] += self._basis_vjp(cache.d[live], g_e[live])
        return grads, (g_d[:, None],)


KERNEL_SPECS = (MLPKernel, RadialKernel, BSplineKernel)


def check_kernel(kernel, name: str, *, in_dim: int | None = None, out_dim: int | None = None):
    """Return ``kernel`` if it is a kernel spec with the given ``in_dim`` / ``out_dim``.

    Any object with ``in_dim``, ``out_dim``, ``param_shapes``, ``init``, ``forward`` and
    ``backward`` is accepted (a user's own spec works too); the error names ``name`` (e.g.
    ``"PointConv.kernel"``) and says which size the layer needs.
    """
    needed = ("in_dim", "out_dim", "param_shapes", "init", "forward", "backward")
    if not all(hasattr(kernel, a) for a in needed):
        raise TypeError(
            f"{name} must be a kernel spec (MLPKernel, RadialKernel, BSplineKernel from "
            f"geomp_ref.layers.kernels, or an object with {needed}); got {type(kernel).__name__}"
        )
    for attr, want in (("in_dim", in_dim), ("out_dim", out_dim)):
        if want is not None and getattr(kernel, attr) != want:
            raise ValueError(
                f"{name}.{attr} must be {want} for this layer; got {getattr(kernel, attr)}"
            )
    return kernel


#: a layer's historical kernel options -> the MLPKernel field each one sets
_MLP_OPTIONS = {"kernel_hidden": "hidden", "kernel_channels": "out_dim",
                "activation": "activation", "activate_last": "activate_last"}


def with_backend(spec, backend: str):
    """``spec`` with its activations on ``backend`` (kernels without a ``backend`` field as is).

    Layers call this on their kernel so that one ``backend`` field drives the whole layer; the
    kernel's values do not depend on it (the backends agree to rounding)."""
    if getattr(spec, "backend", backend) == backend:
        return spec
    return dataclasses.replace(spec, backend=backend)


def resolve_kernel(owner: str, kernel, options: dict, defaults: dict, *, in_dim: int | None,
                   out_dim: int | None = None, default_in_dim: int | None = None):
    """The kernel spec of a layer that also takes the older MLP-kernel options.

    ``options`` maps the layer's option names (``kernel_hidden``, ``kernel_channels``,
    ``activation``, ``activate_last``) to the values given (``None`` = not given). Without a
    ``kernel`` they build ``MLPKernel`` (missing ones from ``defaults``); with a ``kernel`` any
    option given must describe that kernel (so ``dataclasses.replace`` on a built layer works), or
    the error names the contradiction. ``in_dim`` / ``out_dim`` are what the layer needs of the
    kernel (``None``: anything); ``default_in_dim`` the input width of the default kernel.
    """
    given = {k: v for k, v in options.items() if v is not None}
    for name, value in given.items():
        field = f"{owner}.{name}"
        if name == "kernel_hidden":
            given[name] = _hidden(value, field)
        elif name == "kernel_channels":
            check_int(value, field, minimum=1)
        elif name == "activation":
            check_choice(value, field, activations.NAMES)
        else:
            check_bool(value, field)
    if kernel is None:
        kwargs = {_MLP_OPTIONS[k]: v for k, v in {**defaults, **given}.items()}
        if out_dim is not None:
            kwargs["out_dim"] = out_dim
        return MLPKernel(in_dim if in_dim is not None else default_in_dim, **kwargs)
    check_kernel(kernel, f"{owner}.kernel", in_dim=in_dim, out_dim=out_dim)
    if given and not isinstance(kernel, MLPKernel):
        raise ValueError(
            f"{owner}.{min(given)} describes the default MLP kernel; with "
            f"kernel={type(kernel).__name__}(...) leave {sorted(options)} as None"
        )
    for name, value in given.items():
        have = getattr(kernel, _MLP_OPTIONS[name])
        if value != have:
            raise ValueError(
                f"{owner}.{name}={value!r} contradicts {owner}.kernel (which has "
                f"{_MLP_OPTIONS[name]}={have!r}); pass either kernel or the kernel options"
            )
    return kernel
