r"""Convolution on position-orientation space :math:`\mathbb{R}^3 \times S^2` (and
:math:`\mathbb{R}^2 \times S^1`): PONITA's fibre-bundle convolution (Bekkers et al., ICLR 2024).

Every node carries a signal on a grid of orientations :math:`o_1, \dots, o_G` (unit vectors,
:func:`geomp_ref.lie.grids.orientation_grid`), ``f`` of shape (N, G, C). For the edge j -> i the
kernel inputs are the pair invariants of :math:`x_{ij} = x_j - x_i` and :math:`o`
(:mod:`geomp_ref.layers.position_orientation_ops`) and the fibre attribute
:math:`A_{kl} = o_k \cdot o_l`, or, with ``basis_dim`` set, kernel bases computed elsewhere
(:class:`~geomp_ref.layers.position_orientation_basis.PositionOrientationBasis`, shared by
several layers) and passed in as inputs.

Separable (default; PONITA's ``separable=True``): a spatial convolution per orientation, then a
convolution over the fibre,

.. math::

    \kappa_{ij}(o) &= s\,k\big(a_{ij}(o)\big), \qquad
    y1_i(o) = \sum_{j \in N(i)} \kappa_{ij}(o) \odot f_j(o), \\
    \kappa^f_{kl} &= s_f\,k^f(b_{kl}), \qquad
    y_i(o_l) = \frac1G \sum_k \kappa^f_{kl} \odot y1_i(o_k),

with :math:`a_{ij}(o) = (\mathrm{inv1}, \mathrm{inv2})` or the given ``basis[e, o]``, and
:math:`b_{kl} = A_{kl}` or ``fiber_basis[k, l]``. Non-separable (``separable=False``): one kernel
on both,
:math:`y_i(o_l) = \sum_{j} \sum_k \kappa_{ij}(o_k, o_l) \odot f_j(o_k)` with
:math:`\kappa_{ij}(o_k, o_l) = s\,k(\mathrm{inv1}_{ij}(o_k), \mathrm{inv2}_{ij}(o_k), A_{kl})` or
``basis[e, k, l]`` (no 1/G).

``mixing`` says how channels meet: ``"linear"`` (the kernels are depthwise, then
:math:`out = y W + b`), ``"depthwise"`` (PONITA ``groups = C``: no W, ``C_in = C_out``,
:math:`out = y + b`), ``"full"`` (PONITA ``groups = 1``: the kernel that carries the fibre
part, :math:`k^f` when separable and :math:`k` otherwise, has :math:`C_{out} C_{in}` outputs read
as a (C_out, C_in) matrix, row-major; :math:`out = y + b`). ``pool=True`` returns the grid mean
:math:`\frac1G \sum_o out_i(o)`, shape (N, C_out). :math:`s, s_f` are the fixed factors
``kernel_scale``, ``fiber_scale`` (default 1).

Differences from PONITA's ``FiberBundleConv`` and model (ebekkers/ponita)
-------------------------------------------------------------------------
* Fibre attribute: PONITA feeds the raw dot product :math:`o_k \cdot o_l`, as here; the paper's
  invariant is the angle :math:`\arccos(o_k \cdot o_l)`.
* Separable: the spatial kernel uses the same grid index at sender and receiver (PONITA's code
  and this layer). Non-separable: PONITA's inv1/inv2 use the *summed* (sender's) orientation
  :math:`o_k`, not the receiver's :math:`o_l`; this layer does the same.
* Self loops: PONITA always adds them (``add_self_loops`` + ``coalesce``, or ``radius_graph(...,
  loop=True)``); this layer uses the graph as given, so build it with self loops to match.
* Grids: PONITA's S¹ grid comes from a float32 ``linspace`` (up to 2.4e-7 off the exact angles)
  and its S² grid from random float32 points of the global torch RNG moved by a noisy repulsion;
  neither is reproducible here, so pass PONITA's grid as ``ori`` (or its bases as inputs).
* Calibration: on its first call in training mode PONITA multiplies its kernel weights by
  :math:`\mathrm{std}(x)/\mathrm{std}(y1)` and the fibre kernel weights by
  :math:`\mathrm{std}(y1)/\mathrm{std}(y)` (unbiased std over all entries), *after* computing
  that call's output, and sets its ``callibrated`` buffer. Here params never change:
  :meth:`PositionOrientationConv.calibration_scales` returns these two factors from a forward
  cache, and a spec with ``kernel_scale``/``fiber_scale`` multiplied by them computes what the
  re-scaled PONITA layer computes (a callibrated PONITA module already holds re-scaled weights:
  take them with scales 1).
* PONITA's layers with ``groups = 1`` fail in the published code (``out_channels`` is never set);
  ``mixing="full"`` implements the evident intent. ``aggr`` other than ``"add"`` is not offered.
* PONITA's model wraps the layer in a ConvNext block (LayerNorm, MLP, layer scale, residual); this
  module is the convolution only.

Symmetry (what is exact, what is not)
-------------------------------------
* ``inv1``, ``inv2`` (3D) and ``A`` are invariant under :math:`x \mapsto Qx + t`,
  :math:`o \mapsto Qo` for every :math:`Q \in O(3)`; the 2D ``inv2`` under SO(2) only. Passing the
  grid ``ori`` as an input and transforming it with the positions therefore gives an output that
  is exactly E(3)-invariant (SE(2) in 2D), grid index by grid index.
* With the grid held fixed, a rotation that maps the grid onto itself (octahedron / icosahedron
  under their rotation groups, the uniform S¹ grid under its cyclic group) permutes the grid axis
  of the output exactly; for other rotations equivariance holds only approximately, with an error
  that shrinks with G (``benchmarks/group_conv_equivariance.py``). Translations and node
  relabelling are always exact.

Backward (reverse line order; proof: ``derivations/position_orientation.py``): the aggregation's
VJP is the fused kernel on the reversed graph; the fibre sum's VJP is its transpose; the kernels'
VJPs give the cotangents of the invariants (then :func:`pair_invariants_vjp` and
:math:`\bar o \mathrel{+}= (\bar A + \bar A^T)\, o`) or of the bases (returned as input gradients,
to be summed over every layer that shares them).
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
    edge_array,
    grad_out,
    node_array,
    positions,
)
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import dense, scatter
from .base import Block, check_backend, check_optional, check_params, linear_init
from .group_conv import check_kernel_spec
from .kernels import MLPKernel
from .position_orientation_ops import (
    apply_kernel,
    apply_kernel_vjp,
    bundle_coords,
    bundle_coords_vjp,
    bundle_messages,
    bundle_messages_vjp,
    fiber_mix,
    fiber_mix_vjp,
    validate_grid,
)

__all__ = [
    "PositionOrientationConv",
    "PositionOrientationConvCache",
    "PositionOrientationFiberCache",
    "PositionOrientationInvariantsCache",
]

_OWNER = "PositionOrientationConv"
_MIXINGS = ("linear", "depthwise", "full")


class PositionOrientationInvariantsCache(NamedTuple):
    """Values of the invariants branch (kernels computed from positions)."""

    ori_given: bool
    ori: np.ndarray  # (G, D)
    edge_vec: np.ndarray  # (E, D)


class PositionOrientationFiberCache(NamedTuple):
    """Values of the separable branch (the convolution over the fibre)."""

    fiber_kernel: tuple  # the fibre kernel spec's cache
    kappa_f: np.ndarray  # (G, G, Kf)
    y1: np.ndarray  # (N, G, C_in)


class PositionOrientationConvCache(NamedTuple):
    graph: Graph
    f: np.ndarray  # (N, G, C_in)
    invariants: PositionOrientationInvariantsCache | None  # None when bases are inputs
    kernel: tuple  # the spatial kernel spec's cache
    kappa: np.ndarray  # (E, G, K) separable, (E, G, G, K) otherwise
    fiber: PositionOrientationFiberCache | None  # None when not separable
    y: np.ndarray  # (N, G, C_y), before W / b
    out_shape: tuple


@dataclass(frozen=True)
class PositionOrientationConv(Block):
    r"""Convolution on :math:`\mathbb{R}^D \times S^{D-1}` (PONITA's FiberBundleConv and more).

    Parameters
    ----------
    in_channels, out_channels : int
    dim : int
        3 (:math:`\mathbb{R}^3 \times S^2`) or 2 (:math:`\mathbb{R}^2 \times S^1`).
    grid : str
        ``"fibonacci"``, ``"octahedron"``, ``"icosahedron"`` (dim 3) or ``"uniform"`` (dim 2).
    num_ori : int
        Grid size for ``"fibonacci"`` / ``"uniform"`` (the polyhedral grids have 6 and 12).
    hidden : int
        Width of the default invariant kernels (spatial ``in -> hidden -> hidden -> K``, fibre
        ``1 -> hidden -> Kf``); unused when ``basis_dim`` is set or kernels are given.
    activation : str
        Activation of the default invariant kernels.
    pool : bool
        Return the grid mean (N, C_out) instead of the grid signal (N, G, C_out).
    backend : str
    separable : bool
        Spatial then fibre convolution (PONITA's default) or one kernel on both.
    mixing : {"linear", "depthwise", "full"}
        How channels mix (module docstring).
    bias : bool
    basis_dim : int or None
        ``None``: kernels of the invariants, computed from ``pos`` (and ``ori``). An int B: the
        kernels take precomputed bases as inputs, ``basis`` (E, G, B) and ``fiber_basis``
        (G, G, B) when separable, ``basis`` (E, G, G, B) otherwise; the default kernels are then
        PONITA's ``Linear(B, K, bias=False)``.
    kernel, fiber_kernel : kernel spec or None
        Specs of :mod:`geomp_ref.layers.kernels` (``None``: the defaults above). ``kernel`` maps
        (inv1, inv2) [+ A when not separable] or the basis to K values, ``fiber_kernel`` maps A or
        the fibre basis to Kf values (separable only). K = C_in, and Kf = C_in, except that
        ``mixing="full"`` makes the fibre-carrying kernel's output C_out * C_in.
    kernel_scale, fiber_scale : float
        Fixed factors on the kernels (PONITA's calibration, see :meth:`calibration_scales`).

    Params: ``{"kernel": ..., "fiber_kernel": ... (separable), "W": (C_in, C_out) (mixing
    "linear"), "b": (C_out,) (bias)}``.

    ``forward(params, graph, f, pos=None, ori=None, basis=None, fiber_basis=None)``: ``f``
    (N, G, C_in); with kernels of the invariants ``pos`` (N, D) is required and ``ori`` (G, D)
    overrides the spec's grid (pass it to rotate the grid with the data); with ``basis_dim`` set
    ``basis`` (and ``fiber_basis`` when separable) are required and ``pos``, ``ori`` must be None.
    ``backward`` returns one gradient per input (None for inputs that were None).
    """

    in_channels: int
    out_channels: int
    dim: int = 3
    grid: str = "fibonacci"
    num_ori: int = 12
    hidden: int = 16
    activation: str = "silu"
    pool: bool = False
    backend: str = "numpy"
    separable: bool = True
    mixing: str = "linear"
    bias: bool = True
    basis_dim: int | None = None
    kernel: object = None
    fiber_kernel: object = None
    kernel_scale: float = 1.0
    fiber_scale: float = 1.0

    def __post_init__(self):
        o = _OWNER
        check_int(self.in_channels, f"{o}.in_channels", minimum=1)
        check_int(self.out_channels, f"{o}.out_channels", minimum=1)
        object.__setattr__(self, "_ori", validate_grid(o, self.dim, self.grid, self.num_ori))
        check_int(self.hidden, f"{o}.hidden", minimum=1)
        check_bool(self.pool, f"{o}.pool")
        check_backend(self.backend, o)
        check_bool(self.separable, f"{o}.separable")
        check_choice(self.mixing, f"{o}.mixing", _MIXINGS)
        if self.mixing == "depthwise" and self.in_channels != self.out_channels:
            raise ValueError(
                f"{o}.mixing='depthwise' needs in_channels == out_channels; got "
                f"{self.in_channels} and {self.out_channels}"
            )
        check_bool(self.bias, f"{o}.bias")
        if self.basis_dim is not None:
            check_int(self.basis_dim, f"{o}.basis_dim", minimum=1)
        check_positive(self.kernel_scale, f"{o}.kernel_scale")
        check_positive(self.fiber_scale, f"{o}.fiber_scale")
        C, Co = self.in_channels, self.out_channels
        full = C * Co if self.mixing == "full" else C
        k_out, f_out = (C, full) if self.separable else (full, None)
        B = self.basis_dim
        k_in = B if B is not None else (2 if self.separable else 3)
        if self.kernel is None:
            spec = (
                MLPKernel(k_in, k_out, hidden=(), bias=False)
                if B is not None
                else MLPKernel(k_in, k_out, (self.hidden, self.hidden), self.activation)
            )
            object.__setattr__(self, "kernel", spec)
        check_kernel_spec(self.kernel, f"{o}.kernel", k_in, k_out)
        if not self.separable:
            if self.fiber_kernel is not None:
                raise ValueError(f"{o}.fiber_kernel must be None when separable=False")
            return
        if self.fiber_kernel is None:
            spec = (
                MLPKernel(B, f_out, hidden=(), bias=False)
                if B is not None
                else MLPKernel(1, f_out, (self.hidden,), self.activation)
            )
            object.__setattr__(self, "fiber_kernel", spec)
        check_kernel_spec(self.fiber_kernel, f"{o}.fiber_kernel", B or 1, f_out)

    @property
    def ori(self) -> np.ndarray:
        """The spec's orientation grid, shape (G, D) (a copy)."""
        return self._ori.copy()

    def param_shapes(self) -> dict:
        shapes = {"kernel": self.kernel.param_shapes()}
        if self.separable:
            shapes["fiber_kernel"] = self.fiber_kernel.param_shapes()
        if self.mixing == "linear":
            shapes["W"] = (self.in_channels, self.out_channels)
        if self.bias:
            shapes["b"] = (self.out_channels,)
        return shapes

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        params = {"kernel": self.kernel.init(rng)}
        if self.separable:
            params["fiber_kernel"] = self.fiber_kernel.init(rng)
        # the bias bound follows torch.nn.Linear(C_in, C_out) in every mixing mode
        W, b = linear_init(rng, self.in_channels, self.out_channels, bias=self.bias)
        if self.mixing == "linear":
            params["W"] = W
        if self.bias:
            params["b"] = b
        return params

    def _inputs(self, graph, f, pos, ori, basis, fiber_basis):
        G, B = self._ori.shape[0], self.basis_dim
        f = node_array(f, "f", graph, (G, self.in_channels))
        if B is None:
            opt = "basis_dim is set"
            check_optional(basis, "basis", False, opt, _OWNER)
            check_optional(fiber_basis, "fiber_basis", False, opt, _OWNER)
            check_optional(pos, "pos", True, "basis_dim=None (kernels of the invariants)", _OWNER)
            pos = positions(pos, graph, self.dim)
            if ori is not None:
                ori = as_float64(ori, "ori", ndim=2)
                check_shape(ori, (G, self.dim), "ori")
            return f, pos, ori, None, None
        opt = "basis_dim=None (kernels of the invariants)"
        check_optional(pos, "pos", False, opt, _OWNER)
        check_optional(ori, "ori", False, opt, _OWNER)
        check_optional(basis, "basis", True, f"basis_dim={B}", _OWNER)
        basis = edge_array(basis, "basis", graph, (G, B) if self.separable else (G, G, B))
        check_optional(fiber_basis, "fiber_basis", self.separable, "separable=True", _OWNER)
        if self.separable:
            fiber_basis = as_float64(fiber_basis, "fiber_basis", ndim=3)
            check_shape(fiber_basis, (G, G, B), "fiber_basis")
        return f, None, None, basis, fiber_basis

    def forward(self, params, graph, f, pos=None, ori=None, basis=None, fiber_basis=None):
        check_params(params, self.param_shapes(), _OWNER, exact=True)
        check_graph(graph)
        f, pos, ori_in, basis, fiber_basis = self._inputs(graph, f, pos, ori, basis, fiber_basis)
        N, G, C = f.shape
        E = graph.num_edges
        invariants = None
        if basis is None:
            ori = self._ori if ori_in is None else ori_in
            edge_vec = edge_vectors(graph, pos)
            coords, fcoords = bundle_coords(edge_vec, ori, self.separable)
            invariants = PositionOrientationInvariantsCache(ori_in is not None, ori, edge_vec)
        else:
            coords, fcoords = basis, fiber_basis
        kappa, kernel_cache = apply_kernel(self.kernel, params["kernel"], coords, self.kernel_scale)
        fiber = None
        if self.separable:
            y1 = scatter.weighted_aggregate(
                graph, f.reshape(N, G * C), kappa.reshape(E, G * C), backend=self.backend
            ).reshape(N, G, C)
            kappa_f, fiber_cache = apply_kernel(
                self.fiber_kernel, params["fiber_kernel"], fcoords, self.fiber_scale
            )
            y = fiber_mix(y1, kappa_f, self.mixing == "full")
            fiber = PositionOrientationFiberCache(fiber_cache, kappa_f, y1)
        else:
            m = bundle_messages(kappa, f[graph.src], self.mixing == "full")
            Cy = m.shape[-1]
            y = scatter.aggregate(graph, m.reshape(E, G * Cy), backend=self.backend)
            y = y.reshape(N, G, Cy)
        b = params.get("b") if self.bias else None
        if self.mixing == "linear":
            out = dense.linear(y, params["W"], b)
        else:
            out = y + b if b is not None else y.copy()
        if self.pool:
            out = out.mean(axis=1)
        cache = PositionOrientationConvCache(
            graph, f, invariants, kernel_cache, kappa, fiber, y, out.shape
        )
        return out, cache

    def backward(self, params, cache, grad_out_):
        check_cache(cache, PositionOrientationConvCache, _OWNER)
        g = grad_out(grad_out_, cache.out_shape, _OWNER)
        graph, f, inv, kernel_cache, kappa, fiber, y = cache[:7]
        N, G, C = f.shape
        E = graph.num_edges
        grads = {}
        if self.pool:
            # reverses out = mean over the grid
            g = np.broadcast_to(g[:, None, :] / G, (N, G, self.out_channels))
        # reverses out = y W + b (or y + b)
        b = params.get("b") if self.bias else None
        if self.mixing == "linear":
            grad_y, grads["W"], grad_b = dense.linear_vjp(y, params["W"], b, g)
        else:
            grad_y, grad_b = g, g.reshape(-1, self.out_channels).sum(axis=0)
        if self.bias:
            grads["b"] = grad_b
        grad_fcoords = None
        if self.separable:
            # reverses y = fiber_mix(y1, kappa_f)
            grad_y1, grad_kappa_f = fiber_mix_vjp(
                fiber.y1, fiber.kappa_f, grad_y, self.mixing == "full"
            )
            # reverses kappa_f = s_f k_f(fcoords)
            grads["fiber_kernel"], grad_fcoords = apply_kernel_vjp(
                self.fiber_kernel, params["fiber_kernel"], fiber.fiber_kernel, grad_kappa_f,
                self.fiber_scale,
            )
            # reverses y1 = weighted_aggregate(f, kappa)
            grad_f, grad_kappa = scatter.weighted_aggregate_vjp(
                graph,
                f.reshape(N, G * C),
                kappa.reshape(E, G * C),
                grad_y1.reshape(N, G * C),
                backend=self.backend,
            )
            grad_f, grad_kappa = grad_f.reshape(N, G, C), grad_kappa.reshape(kappa.shape)
        else:
            # reverses y = aggregate(m): a gather at the receivers
            Cy = grad_y.shape[-1]
            grad_m = scatter.gather(grad_y.reshape(N, G * Cy), graph.dst).reshape(E, G, Cy)
            # reverses m = bundle_messages(kappa, f[src])
            grad_kappa, grad_f_src = bundle_messages_vjp(
                kappa, f[graph.src], grad_m, self.mixing == "full"
            )
            # reverses f_src = f[src]
            grad_f = scatter.scatter_sum(grad_f_src, graph.src, N, backend=self.backend)
        # reverses kappa = s k(coords)
        grads["kernel"], grad_coords = apply_kernel_vjp(
            self.kernel, params["kernel"], kernel_cache, grad_kappa, self.kernel_scale
        )
        if inv is None:
            return grads, (grad_f, None, None, grad_coords, grad_fcoords)
        # reverses (coords, fcoords) = bundle_coords(edge_vec, ori)
        grad_ev, grad_ori = bundle_coords_vjp(inv.edge_vec, inv.ori, grad_coords, grad_fcoords)
        # reverses edge_vec = pos[src] - pos[dst]
        grad_pos = edge_vectors_vjp(graph, grad_ev)
        return grads, (grad_f, grad_pos, grad_ori if inv.ori_given else None, None, None)

    def calibration_scales(self, cache) -> tuple[float, float]:
        r"""PONITA's first-training-call factors from a forward cache: ``(s, s_f)``.

        Separable: :math:`s = \mathrm{std}(f)/\mathrm{std}(y1)`,
        :math:`s_f = \mathrm{std}(y1)/\mathrm{std}(y)`; otherwise
        :math:`s = \mathrm{std}(f)/\mathrm{std}(y)`, :math:`s_f = 1` (unbiased std over all
        entries, as ``torch.Tensor.std``; ``y`` before W and b). The re-scaled layer is
        ``dataclasses.replace(layer, kernel_scale=layer.kernel_scale * s,
        fiber_scale=layer.fiber_scale * s_f)``.
        """
        check_cache(cache, PositionOrientationConvCache, _OWNER)
        std_in = float(np.std(cache.f, ddof=1))
        if self.separable:
            std_1 = float(np.std(cache.fiber.y1, ddof=1))
            return std_in / std_1, std_1 / float(np.std(cache.y, ddof=1))
        return std_in / float(np.std(cache.y, ddof=1)), 1.0
