r"""Kernel bases computed once and shared by several convolutions (PONITA's model structure).

:class:`PositionOrientationBasis`
---------------------------------
PONITA evaluates its kernel networks once per forward pass and hands the result, a *basis*, to
every convolution layer; each layer only applies its own linear map
(``Linear(B, K, bias=False)``, the default kernel of
:class:`~geomp_ref.layers.position_orientation.PositionOrientationConv` with
``basis_dim = B``). For the edge j -> i, grid orientations :math:`o_k, o_l` and
:math:`x_{ij} = x_j - x_i`:

.. math::

    \mathrm{basis}_{ij}(o) = k\big(P(\mathrm{inv1}_{ij}(o), \mathrm{inv2}_{ij}(o))\big)\;
        w(\lVert x_{ij} \rVert), \qquad
    \mathrm{fiber\_basis}_{kl} = k^f\big(P(o_k \cdot o_l)\big),

with :math:`P` the polynomial features of degree ``degree``
(:func:`~geomp_ref.layers.position_orientation_ops.polynomial_features`), PONITA's kernels
:math:`k = \mathrm{GELU} \circ \mathrm{Lin} \circ \mathrm{GELU} \circ \mathrm{Lin}` (``MLPKernel(P,
B, hidden=(hidden,), activation="gelu", activate_last=True)``) and the window :math:`w(d) = 1 -
28u^6 + 48u^7 - 21u^8` for :math:`u = d/r < 1`, 0 beyond (DimeNet's polynomial envelope of order
6, :func:`geomp_ref.ops.radial.polynomial_cutoff`; :math:`w = 1` without ``radius``).
With ``separable=False`` the basis is one array (E, G, G, B) of
:math:`P(\mathrm{inv1}(o_k), \mathrm{inv2}(o_k), o_k \cdot o_l)`, windowed per edge (PONITA's
model never builds a non-separable basis; its window broadcast would not line up there).

A model that shares the basis runs this block once, passes ``basis`` and ``fiber_basis`` to every
layer, **sums** the layers' input gradients for them and hands the sums to :meth:`backward`
(``tests/layers/test_position_orientation.py`` checks such a stack against finite differences).

Backward (reverse line order): the window's product rule (:math:`w'(u) = -\tfrac12 p(p+1)(p+2)
u^{p-1}(1-u)^2 / r`, zero at :math:`d = 0`, so self-loops contribute nothing through
:math:`\lVert x_{ij}\rVert`), the kernels' VJPs, :func:`polynomial_features_vjp`, then the pair
invariants' VJP.

PONITA's ``Conv`` on plain node features with such a basis is
:class:`geomp_ref.layers.basis_conv.BasisConv`.
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
    check_graph,
    check_int,
    check_positive,
    check_shape,
    grad_out,
    grad_outs,
    positions,
)
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import activations, radial
from ..ops.geometry import edge_length, edge_length_vjp
from .base import Block, check_params
from .group_conv import check_kernel_spec
from .kernels import MLPKernel
from .position_orientation_ops import (
    apply_kernel,
    apply_kernel_vjp,
    bundle_coords,
    bundle_coords_vjp,
    polynomial_features,
    polynomial_features_size,
    polynomial_features_vjp,
    validate_grid,
)

__all__ = [
    "PositionOrientationBasis",
    "PositionOrientationBasisCache",
]


class _WindowCache(NamedTuple):
    d: np.ndarray  # (E,) edge lengths
    w: np.ndarray  # (E,) window values


class _FiberBasisCache(NamedTuple):
    zf: np.ndarray  # (G, G, 1) fibre attribute A
    fiber_kernel: tuple  # the fibre kernel spec's cache


class PositionOrientationBasisCache(NamedTuple):
    graph: Graph
    ori_given: bool
    ori: np.ndarray  # (G, D)
    edge_vec: np.ndarray  # (E, D)
    z: np.ndarray  # (E, G, 2) or (E, G, G, 3) invariants
    kernel: tuple  # the spatial kernel spec's cache
    raw: np.ndarray  # kernel output before the window
    window: _WindowCache | None  # None without radius
    fiber: _FiberBasisCache | None  # None when not separable
    out_shapes: tuple


@dataclass(frozen=True)
class PositionOrientationBasis(Block):
    r"""PONITA's kernel bases on :math:`\mathbb{R}^D \times S^{D-1}`, computed once per forward.

    Parameters
    ----------
    basis_dim : int
        B, the width of the bases.
    dim, grid, num_ori :
        As :class:`~geomp_ref.layers.position_orientation.PositionOrientationConv`.
    hidden : int
        Hidden width of the default kernels (PONITA's ``hidden_dim``).
    degree : int
        Degree of the polynomial features (PONITA's default 3).
    radius : float or None
        Radius of the window; None: no window (PONITA's ``radius=None``).
    activation : str
        Activation of the default kernels (PONITA: ``"gelu"``).
    separable : bool
    kernel, fiber_kernel : kernel spec or None
        Maps of the polynomial features (size ``n + ... + n^degree``, n = 2, or 3 when not
        separable; 1 for the fibre) to B values; default
        ``MLPKernel(P, B, hidden=(hidden,), activation=activation, activate_last=True)``.

    Params: ``{"kernel": ..., "fiber_kernel": ...}`` (no fibre kernel when not separable).

    ``forward(params, graph, pos, ori=None)`` -> ``(basis (E, G, B), fiber_basis (G, G, B))``
    when separable, ``basis (E, G, G, B)`` otherwise; ``ori`` (G, D) overrides the spec's grid.
    """

    basis_dim: int
    dim: int = 3
    grid: str = "fibonacci"
    num_ori: int = 12
    hidden: int = 16
    degree: int = 3
    radius: float | None = None
    activation: str = "gelu"
    separable: bool = True
    kernel: object = None
    fiber_kernel: object = None

    def __post_init__(self):
        o = "PositionOrientationBasis"
        B = check_int(self.basis_dim, f"{o}.basis_dim", minimum=1)
        object.__setattr__(self, "_ori", validate_grid(o, self.dim, self.grid, self.num_ori))
        check_int(self.hidden, f"{o}.hidden", minimum=1)
        check_int(self.degree, f"{o}.degree", minimum=1, maximum=8)
        if self.radius is not None:
            check_positive(self.radius, f"{o}.radius")
        check_choice(self.activation, f"{o}.activation", activations.NAMES)
        check_bool(self.separable, f"{o}.separable")
        P = polynomial_features_size(2 if self.separable else 3, self.degree)
        if self.kernel is None:
            spec = MLPKernel(P, B, (self.hidden,), self.activation, activate_last=True)
            object.__setattr__(self, "kernel", spec)
        check_kernel_spec(self.kernel, f"{o}.kernel", P, B)
        if not self.separable:
            if self.fiber_kernel is not None:
                raise ValueError(f"{o}.fiber_kernel must be None when separable=False")
            return
        Pf = polynomial_features_size(1, self.degree)
        if self.fiber_kernel is None:
            spec = MLPKernel(Pf, B, (self.hidden,), self.activation, activate_last=True)
            object.__setattr__(self, "fiber_kernel", spec)
        check_kernel_spec(self.fiber_kernel, f"{o}.fiber_kernel", Pf, B)

    @property
    def ori(self) -> np.ndarray:
        """The spec's orientation grid, shape (G, D) (a copy)."""
        return self._ori.copy()

    def param_shapes(self) -> dict:
        shapes = {"kernel": self.kernel.param_shapes()}
        if self.separable:
            shapes["fiber_kernel"] = self.fiber_kernel.param_shapes()
        return shapes

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        params = {"kernel": self.kernel.init(rng)}
        if self.separable:
            params["fiber_kernel"] = self.fiber_kernel.init(rng)
        return params

    def _apply(self, spec, params, z):
        """``k(P(z))`` over the leading axes of ``z``."""
        return apply_kernel(spec, params, polynomial_features(z, self.degree))

    def _apply_vjp(self, spec, params, cache, z, grad_k):
        grads, grad_feats = apply_kernel_vjp(spec, params, cache, grad_k)
        return grads, polynomial_features_vjp(z, self.degree, grad_feats)

    def forward(self, params, graph, pos, ori=None):
        owner = "PositionOrientationBasis"
        check_params(params, self.param_shapes(), owner, exact=True)
        check_graph(graph)
        pos = positions(pos, graph, self.dim)
        G = self._ori.shape[0]
        ori_given = ori is not None
        if ori_given:
            ori = as_float64(ori, "ori", ndim=2)
            check_shape(ori, (G, self.dim), "ori")
        else:
            ori = self._ori
        E = graph.num_edges
        edge_vec = edge_vectors(graph, pos)
        z, zf = bundle_coords(edge_vec, ori, self.separable)
        raw, kernel_cache = self._apply(self.kernel, params["kernel"], z)
        window = None
        basis = raw.copy()  # the output never aliases the cache
        if self.radius is not None:
            d = edge_length(edge_vec, allow_zero=True)
            w = radial.polynomial_cutoff(d, self.radius)
            basis = raw * w.reshape((E,) + (1,) * (raw.ndim - 1))
            window = _WindowCache(d, w)
        out = basis
        fiber = None
        if self.separable:
            fiber_basis, fiber_cache = self._apply(self.fiber_kernel, params["fiber_kernel"], zf)
            fiber = _FiberBasisCache(zf, fiber_cache)
            out = (basis, fiber_basis)
        shapes = tuple(o.shape for o in out) if self.separable else (out.shape,)
        cache = PositionOrientationBasisCache(
            graph, ori_given, ori, edge_vec, z, kernel_cache, raw, window, fiber, shapes
        )
        return out, cache

    def backward(self, params, cache, grad_out_):
        owner = "PositionOrientationBasis"
        check_cache(cache, PositionOrientationBasisCache, owner)
        if self.separable:
            g_basis, g_fiber = grad_outs(grad_out_, cache.out_shapes, owner)
        else:
            g_basis, g_fiber = grad_out(grad_out_, cache.out_shapes[0], owner), None
        graph, ori, edge_vec, z, raw = cache.graph, cache.ori, cache.edge_vec, cache.z, cache.raw
        E = z.shape[0]
        grads = {}
        grad_zf = None
        if self.separable:
            # reverses fiber_basis = k_f(P(zf))
            grads["fiber_kernel"], grad_zf = self._apply_vjp(
                self.fiber_kernel, params["fiber_kernel"], cache.fiber.fiber_kernel,
                cache.fiber.zf, g_fiber,
            )
        grad_ev = np.zeros_like(edge_vec)
        grad_raw = g_basis
        if cache.window is not None:
            d, w = cache.window
            # reverses basis = raw * w(d)
            axes = tuple(range(1, raw.ndim))
            grad_raw = g_basis * w.reshape((E,) + (1,) * (raw.ndim - 1))
            grad_d = radial.polynomial_cutoff_vjp(d, self.radius, np.sum(g_basis * raw, axis=axes))
            # reverses d = |edge_vec| (w'(0) = 0: zero-length edges get no gradient here)
            nz = d > 0
            grad_ev[nz] = edge_length_vjp(edge_vec[nz], grad_d[nz])
        # reverses raw = k(P(z))
        grads["kernel"], grad_z = self._apply_vjp(
            self.kernel, params["kernel"], cache.kernel, z, grad_raw
        )
        # reverses (z, zf) = bundle_coords(edge_vec, ori)
        gx, grad_ori = bundle_coords_vjp(edge_vec, ori, grad_z, grad_zf)
        # reverses edge_vec = pos[src] - pos[dst]
        grad_pos = edge_vectors_vjp(graph, grad_ev + gx)
        return grads, (grad_pos, grad_ori if cache.ori_given else None)
