r"""PONITA on the charged N-body task: the fibre-bundle network of Bekkers et al. (ICLR 2024) on
:math:`\mathbb{R}^3 \times S^2`, built from library blocks.

It follows the N-body signature of :mod:`geomp_ref.models.nbody`:
``forward(params, graph, x, v, charges, ori=None) -> (x_pred, cache)``; ``ori`` (G, 3)
replaces the fixed orientation grid (pass the grid rotated with the data and the model is
exactly E(3)-equivariant; with the fixed grid it is equivariant only approximately, as PONITA).

The published configuration (ebekkers/ponita ``main_nbody.py``: ``PonitaFiberBundle`` with 16
orientations, hidden width 128, basis width 256, polynomial degree 3, 5 layers, widening 4,
layer scale 1e-6, a read-out after every layer). For node i with position :math:`x_i`,
velocity :math:`v_i`, charge :math:`q_i` and grid orientations :math:`o_1 \dots o_G`:

.. math::

    f^0_i(o) &= [q_i,\ v_i \cdot o]\, W_{emb} \qquad (\text{lift: } 2 \to C,\ \text{no bias}),\\
    (\beta, \beta^f) &= \mathrm{PositionOrientationBasis}(x)
        \qquad (\text{shared by all layers}),\\
    f^{k+1} &= f^k + \gamma_k \odot \mathrm{MLP}_k\big(\mathrm{LN}_k(
        \mathrm{Conv}_k(f^k; \beta, \beta^f))\big) \qquad (\text{ConvNext block}),\\
    r_i(o) &= \frac1L \sum_{k=1}^{L} f^k_i(o)\, w_k + c_k, \qquad
    \hat x_i = x_i + \frac1G \sum_o r_i(o)\, o,

with :class:`~geomp_ref.layers.position_orientation_basis.PositionOrientationBasis` (GELU
kernels of the polynomial features of the pair invariants and of :math:`o_k \cdot o_l`),
:class:`~geomp_ref.layers.position_orientation.PositionOrientationConv` (separable, depthwise,
kernels ``Linear(B, C)`` of the bases, zero-initialised bias), layer normalisation (eps 1e-5), the
MLP ``C -> 4C -> C`` with exact GELU, and the layer scale :math:`\gamma_k` (initialised to 1e-6
in every channel). Messages run on the input graph **plus one self loop per node** (PONITA
always adds them; self loops already in the graph are not doubled).

Calibration. PONITA rescales each convolution's kernel weights on its first call in training
mode (spatial by :math:`\mathrm{std}(f)/\mathrm{std}(y1)`, fibre by
:math:`\mathrm{std}(y1)/\mathrm{std}(y)`). :meth:`NBodyPONITA.calibrate` returns the parameters
so rescaled, from one forward pass on a batch; it changes the stored weights (not a fixed
factor), so that Adam then moves them as it moves PONITA's.

Differences from the published model, on purpose:

* the orientation grid: PONITA draws random float32 points with the global torch RNG and
  spreads them by a noisy repulsion; here the grid is the deterministic Fibonacci grid of
  :func:`geomp_ref.lie.grids.orientation_grid` (16 points), so runs are reproducible;
* everything in float64.

Backward: reverses the forward line by line; the layers' basis gradients are summed and handed
to the basis block once; positions receive the basis block's gradient plus the direct
:math:`\hat x = x + \dots` term; with ``ori`` given, the grid's gradient collects the lift, the
bases and the read-out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._validate import (
    as_float64,
    as_rng,
    check_bool,
    check_cache,
    check_int,
    check_positive,
    check_shape,
)
from .._validate import grad_out as _grad_out
from ..graph import Graph, make_graph
from ..layers.base import Block, check_backend, check_params, linear_init
from ..layers.mlp import MLP
from ..layers.position_orientation import PositionOrientationConv
from ..layers.position_orientation_basis import PositionOrientationBasis
from ..ops import dense
from ..ops.normalization import layer_norm, layer_norm_vjp
from . import nbody_features as F

__all__ = ["NBodyPONITA", "NBodyPONITACache", "with_self_loops"]

_O = "NBodyPONITA"


def with_self_loops(graph: Graph) -> Graph:
    """``graph`` with exactly one self loop per node: its other edges in their order, then the
    loops of the nodes that had none (PONITA's ``coalesce(add_self_loops(...))`` up to edge
    order, which changes only the order of the sums)."""
    src, dst = graph.edge_index
    has = np.zeros(graph.num_nodes, dtype=bool)
    has[src[src == dst]] = True
    missing = np.flatnonzero(~has)
    ei = np.concatenate([graph.edge_index, np.stack([missing, missing])], axis=1)
    # keep one copy of each node's loop when the input had several
    loops = ei[0] == ei[1]
    _, first = np.unique(ei[0][loops], return_index=True)
    keep = ~loops
    keep[np.flatnonzero(loops)[first]] = True
    return make_graph(ei[:, keep], graph.num_nodes, graph.batch, graph.num_graphs)


class _LayerCache(NamedTuple):
    conv: Any
    y: np.ndarray  # conv output (N, G, C)
    mlp: Any
    z: np.ndarray  # MLP output (N * G, C)


class NBodyPONITACache(NamedTuple):
    graph: Graph  # the graph with self loops
    x: np.ndarray
    v: np.ndarray
    ori: np.ndarray
    ori_given: bool
    f0: np.ndarray  # lifted input (N, G, 2)
    basis: Any
    h: tuple  # f^0 .. f^L, (N, G, C)
    layers: tuple
    readout: np.ndarray  # (N, G, 1)


@dataclass(frozen=True)
class NBodyPONITA(Block):
    r"""PONITA (fibre-bundle mode, :math:`\mathbb{R}^3 \times S^2`) for the N-body task.

    Parameters
    ----------
    hidden : int
        C, channels per orientation (published 128); also the basis networks' hidden width.
    num_layers : int
        ConvNext blocks (published 5).
    num_ori : int
        Grid size G (published 16).
    basis_dim : int
        B, width of the shared bases (published 256).
    degree : int
        Degree of the polynomial features (published 3).
    widening : int
        MLP widening factor (published 4).
    layer_scale : float or None
        Initial layer scale (published 1e-6); None: no layer scale.
    radius : float or None
        Window radius of the spatial basis; None (published for N-body): no window.
    multiple_readouts : bool
        Read out after every layer and average (published True), or after the last only.
    backend : str

    Notes
    -----
    Params ``{"embed": {"W": (2, C)}, "basis": PositionOrientationBasis params, "layers": {"k":
    {"conv": PositionOrientationConv params, "norm": {"gamma", "beta"}, "mlp": MLP params,
    "layer_scale": (C,)}}, "readout": {"k": {"W": (C, 1), "b": (1,)}}}``; the published module
    names: ``x_embedder``, ``basis_fn``/``fiber_basis_fn``, ``interaction_layers[k]`` (``conv``,
    ``norm``, ``linear_1``/``linear_2``, ``layer_scale``), ``read_out_layers[k]``.
    """

    hidden: int = 128
    num_layers: int = 5
    num_ori: int = 16
    basis_dim: int = 256
    degree: int = 3
    widening: int = 4
    layer_scale: float | None = 1e-6
    radius: float | None = None
    multiple_readouts: bool = True
    backend: str = "numpy"
    parts: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        C = check_int(self.hidden, f"{_O}.hidden", minimum=1)
        check_int(self.num_layers, f"{_O}.num_layers", minimum=1)
        check_int(self.num_ori, f"{_O}.num_ori", minimum=1)
        B = check_int(self.basis_dim, f"{_O}.basis_dim", minimum=1)
        check_int(self.degree, f"{_O}.degree", minimum=1, maximum=8)
        check_int(self.widening, f"{_O}.widening", minimum=1)
        if self.layer_scale is not None:
            check_positive(self.layer_scale, f"{_O}.layer_scale")
        check_bool(self.multiple_readouts, f"{_O}.multiple_readouts")
        check_backend(self.backend, _O)
        basis = PositionOrientationBasis(B, dim=3, grid="fibonacci", num_ori=self.num_ori,
                                         hidden=C, degree=self.degree, radius=self.radius,
                                         activation="gelu")
        conv = PositionOrientationConv(C, C, dim=3, grid="fibonacci", num_ori=self.num_ori,
                                       mixing="depthwise", basis_dim=B, backend=self.backend)
        mlp = MLP((C, self.widening * C, C), "gelu", backend=self.backend)
        object.__setattr__(self, "parts", (basis, conv, mlp))

    @property
    def ori(self) -> np.ndarray:
        """The fixed orientation grid (G, 3) (a copy)."""
        return self.parts[0].ori

    def _readout_layers(self) -> tuple:
        L = self.num_layers
        return tuple(range(L)) if self.multiple_readouts else (L - 1,)

    def param_shapes(self) -> dict:
        basis, conv, mlp = self.parts
        C = self.hidden
        layer = {"conv": conv.param_shapes(), "norm": {"gamma": (C,), "beta": (C,)},
                 "mlp": mlp.param_shapes()}
        if self.layer_scale is not None:
            layer["layer_scale"] = (C,)
        return {"embed": {"W": (2, C)}, "basis": basis.param_shapes(),
                "layers": {str(k): copy.deepcopy(layer) for k in range(self.num_layers)},
                "readout": {str(k): {"W": (C, 1), "b": (1,)} for k in self._readout_layers()}}

    def init(self, rng) -> dict:
        """Every linear map drawn like ``torch.nn.Linear`` (embedding, basis networks, then per
        layer the convolution's kernels, the MLP and the read-out, in that order); convolution
        biases and LayerNorm shifts 0, LayerNorm scales 1, layer scales ``layer_scale``, as
        PONITA initialises them."""
        rng = as_rng(rng, "rng")
        basis, conv, mlp = self.parts
        C = self.hidden
        params = {"embed": {"W": linear_init(rng, 2, C, bias=False)[0]},
                  "basis": basis.init(rng), "layers": {}, "readout": {}}
        readouts = self._readout_layers()
        for k in range(self.num_layers):
            p = conv.init(rng)
            p["b"] = np.zeros(C)
            layer = {"conv": p, "norm": {"gamma": np.ones(C), "beta": np.zeros(C)},
                     "mlp": mlp.init(rng)}
            if self.layer_scale is not None:
                layer["layer_scale"] = np.full(C, float(self.layer_scale))
            params["layers"][str(k)] = layer
            if k in readouts:
                W, b = linear_init(rng, C, 1)
                params["readout"][str(k)] = {"W": W, "b": b}
        return params

    def _grid(self, ori):
        if ori is None:
            return self.ori, False
        ori = as_float64(ori, "ori", ndim=2)
        check_shape(ori, (self.num_ori, 3), "ori")
        return ori, True

    def forward(self, params, graph, x, v, charges, ori=None):
        check_params(params, self.param_shapes(), _O, exact=True)
        x, v, charges = F.check_nbody_inputs(graph, x, v, charges)
        ori, ori_given = self._grid(ori)
        basis_blk, conv, mlp = self.parts
        g = with_self_loops(graph)
        N, G, C = graph.num_nodes, ori.shape[0], self.hidden
        # lift: scalars repeated over the grid, vectors projected on each orientation
        f0 = np.stack([np.broadcast_to(charges, (N, G)), v @ ori.T], axis=-1)
        h = dense.linear(f0, params["embed"]["W"])
        (beta, beta_f), basis_cache = basis_blk.forward(
            params["basis"], g, x, ori if ori_given else None)
        hs, caches = [h], []
        readout = np.zeros((N, G, 1))
        for k in range(self.num_layers):
            p = params["layers"][str(k)]
            y, conv_cache = conv.forward(p["conv"], g, h, basis=beta, fiber_basis=beta_f)
            n = layer_norm(y, p["norm"]["gamma"], p["norm"]["beta"])
            z, mlp_cache = mlp.forward(p["mlp"], n.reshape(N * G, C))
            z = z.reshape(N, G, C)
            h = h + (z * p["layer_scale"] if self.layer_scale is not None else z)
            hs.append(h)
            caches.append(_LayerCache(conv_cache, y, mlp_cache, z))
            if str(k) in params["readout"]:
                r = params["readout"][str(k)]
                readout = readout + dense.linear(h, r["W"], r["b"])
        readout = readout / len(params["readout"])
        vec = np.einsum("ng,gd->nd", readout[..., 0], ori) / G
        cache = NBodyPONITACache(g, x, v, ori, ori_given, f0, basis_cache, tuple(hs),
                                 tuple(caches), readout)
        return x + vec, cache

    def backward(self, params, cache: NBodyPONITACache, grad_out):
        check_cache(cache, NBodyPONITACache, _O)
        basis_blk, conv, mlp = self.parts
        N, G, C = cache.graph.num_nodes, cache.ori.shape[0], self.hidden
        g_pred = _grad_out(grad_out, (N, 3), _O)
        ori = cache.ori
        nr = len(params["readout"])
        # reverses x_pred = x + vec, vec = (1/G) sum_o r(o) o
        g_x = g_pred
        g_r = (g_pred @ ori.T / G)[..., None]  # (N, G, 1)
        g_ori = np.einsum("ng,nd->gd", cache.readout[..., 0], g_pred) / G
        # reverses readout = mean over the read-out layers
        g_r = g_r / nr
        grads_layers, grads_readout = {}, {}
        g_h = np.zeros((N, G, C))
        g_beta = g_beta_f = None
        for k in reversed(range(self.num_layers)):
            p, lc, h_out = params["layers"][str(k)], cache.layers[k], cache.h[k + 1]
            if str(k) in params["readout"]:
                r = params["readout"][str(k)]
                # reverses readout += h W + b
                gh, gW, gb = dense.linear_vjp(h_out, r["W"], r["b"], g_r)
                grads_readout[str(k)] = {"W": gW, "b": gb}
                g_h = g_h + gh
            gl = {}
            # reverses h_out = h_in + gamma * z
            g_z = g_h
            if self.layer_scale is not None:
                gl["layer_scale"] = np.einsum("ngc,ngc->c", g_h, lc.z)
                g_z = g_h * p["layer_scale"]
            # reverses z = MLP(LN(y))
            gl["mlp"], (g_n,) = mlp.backward(p["mlp"], lc.mlp, g_z.reshape(N * G, C))
            g_y, g_gamma, g_b = layer_norm_vjp(lc.y, p["norm"]["gamma"], p["norm"]["beta"],
                                               g_n.reshape(N, G, C))
            gl["norm"] = {"gamma": g_gamma, "beta": g_b}
            # reverses y = conv(h_in; beta, beta_f)
            gl["conv"], (g_hin, _, _, gb_k, gbf_k) = conv.backward(p["conv"], lc.conv, g_y)
            g_beta = gb_k if g_beta is None else g_beta + gb_k
            g_beta_f = gbf_k if g_beta_f is None else g_beta_f + gbf_k
            g_h = g_h + g_hin  # the residual path and the conv path
            grads_layers[str(k)] = gl
        # reverses (beta, beta_f) = basis(x, ori)
        g_basis, (g_xb, g_ori_b) = basis_blk.backward(params["basis"], cache.basis,
                                                      (g_beta, g_beta_f))
        g_x = g_x + g_xb
        # reverses h = f0 W_emb
        g_f0, g_Wemb, _ = dense.linear_vjp(cache.f0, params["embed"]["W"], None, g_h)
        # reverses f0 = [q, v . o]
        g_q = g_f0[..., 0].sum(axis=1, keepdims=True)
        g_v = g_f0[..., 1] @ ori
        grads = {"embed": {"W": g_Wemb}, "basis": g_basis,
                 "layers": {str(k): grads_layers[str(k)] for k in range(self.num_layers)},
                 "readout": {k: grads_readout[k] for k in sorted(grads_readout, key=int)}}
        if not cache.ori_given:
            return grads, (g_x, g_v, g_q, None)
        g_ori = g_ori + g_ori_b + np.einsum("ng,nd->gd", g_f0[..., 1], cache.v)
        return grads, (g_x, g_v, g_q, g_ori)

    def calibrate(self, params, graph, x, v, charges, ori=None) -> dict:
        """PONITA's first-call calibration: a copy of ``params`` whose convolution kernels are
        multiplied by :meth:`PositionOrientationConv.calibration_scales` of one forward pass on
        these inputs (every layer's factors from the uncalibrated pass, as in PONITA, where
        each layer rescales itself after computing its output)."""
        _, cache = self.forward(params, graph, x, v, charges, ori)
        conv = self.parts[1]
        out = copy.deepcopy(params)
        for k in range(self.num_layers):
            s, s_f = conv.calibration_scales(cache.layers[k].conv)
            p = out["layers"][str(k)]["conv"]
            p["kernel"] = {n: a * s for n, a in p["kernel"].items()}
            p["fiber_kernel"] = {n: a * s_f for n, a in p["fiber_kernel"].items()}
        return out
