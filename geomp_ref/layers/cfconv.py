r"""SchNet's continuous-filter convolution and interaction block (PyG's ``CFConv`` and
``InteractionBlock``).

Edge geometry (edge_index row 0 = sender j, row 1 = receiver i): :math:`d_{ij} = \lVert x_j - x_i
\rVert` from :func:`geomp_ref.ops.geometry.edge_length` (scaled, so positions of any finite size
give finite lengths), Gaussian expansion :math:`e_k(d)`, cosine cutoff
:math:`C(d) = \tfrac12(\cos(\pi d / r_c) + 1)` for :math:`d < r_c` (0 beyond) and shifted softplus
ssp; the constants are described in :mod:`geomp_ref.layers.schnet_constants`.

**CFConv**:

.. math::

    W_{ij} = \big(\mathrm{ssp}(e(d_{ij}) W_0 + b_0) W_1 + b_1\big)\, C(d_{ij}), \qquad
    y = f\, W_{in}, \qquad
    \mathrm{agg}_i = \sum_{j} y_j \odot W_{ij}, \qquad
    f'_i = \mathrm{agg}_i W_{out} + b_{out}.

The sum is :func:`geomp_ref.ops.edge_filters.filter_aggregate` on the chosen backend (the cutoff
scales the filter inside the kernel; no (E, F) message array). **SchNetInteraction**:
:math:`v = \mathrm{ssp}(\mathrm{CFConv}(h)) W + b` (the residual :math:`h \leftarrow h + v` lives
in :class:`geomp_ref.layers.schnet.SchNet`, as in PyG).

Backends: ``backend="numpy"`` runs the reference ops one by one. A backend with fused kernels
(``"numba"``) evaluates the Gaussians in one pass, adds :math:`b_0` and applies ssp together with
its derivative :math:`\sigma(z_1)` in one pass (kept in the cache, so the backward multiplies by
it), never forms :math:`W_{ij}` (the aggregation and its VJP scale by :math:`C(d_{ij})` on the
fly) and reuses the cached Gaussians in the backward. On a symmetric graph (every edge j -> i has
its reverse, as a radius graph) it evaluates the filter network once per pair of reverse edges
(:func:`geomp_ref.ops.edge_filters.edge_pairs`): :math:`W_{ij} = W_{ji}` since the filter depends on
the distance only, which halves the filter's matrix products and passes; the backward sums both
edges' cotangents into the pair's row. Intermediate arrays are not re-validated there: every
input was checked once at the top of ``forward``.

Backward (reverse order; proof ``derivations/schnet.py``): with :math:`\bar W_{ij}` the edge
product :math:`\bar{\mathrm{agg}}_i \odot y_j`,
:math:`\bar C_{ij} = \langle \bar W_{ij}, \tilde W_{ij}\rangle`,
:math:`\bar d_{ij} = \langle \bar e_{ij}, e'(d_{ij})\rangle + \bar C_{ij} C'(d_{ij})` and
:math:`\bar x_j \mathrel{+}= \bar d_{ij} (x_j - x_i)/d_{ij}`, :math:`\bar x_i \mathrel{-}= \ldots`.
Edges at or beyond the cutoff have :math:`C = C' = 0`, so their filter gets no cotangent; their
Gaussian term is skipped rather than multiplied by zero, so huge distances (say 1e200, where
:math:`e'` would be ``0 * inf``) give exact zeros instead of NaN.

Reference: K. T. Schütt et al., "SchNet: A continuous-filter convolutional neural network for
modeling quantum interactions", NeurIPS 2017, eqs. (1)-(5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import backends as _backends
from .._validate import (
    as_rng,
    check_bool,
    check_cache,
    check_graph,
    check_int,
    check_positive,
    node_array,
)
from .._validate import grad_out as _grad_out
from .._validate import positions as _positions
from ..graph import Graph, edge_vectors
from ..ops import activations, dense, edge_filters, geometry, radial
from ..ops.edge_filters import EdgePairs
from .base import Block, check_backend, check_params, linear_init
from .schnet_constants import SchNetConstants, resolve_constants

__all__ = ["CFConv", "CFConvCache", "SchNetInteraction", "SchNetInteractionCache"]


class CFConvCache(NamedTuple):
    graph: Graph
    edge_vec: np.ndarray  # (E, 3) x_j - x_i
    d: np.ndarray  # (E,) |x_j - x_i|
    pairs: EdgePairs | None  # fused backends on a symmetric graph: filter rows are edge pairs
    e: np.ndarray  # (R, G) Gaussian expansion; R = E, or U = E / 2 with pairs
    z1: np.ndarray  # (R, F) first filter layer, pre-activation
    s1: np.ndarray  # (R, F) ssp(z1)
    dz1: np.ndarray | None  # (R, F) ssp'(z1) = sigmoid(z1), kept by the fused backends only
    w_raw: np.ndarray  # (R, F) filter before the cutoff
    c: np.ndarray  # (R,) cosine cutoff
    f: np.ndarray  # (N, H) input features
    y: np.ndarray  # (N, F) f W_in
    agg: np.ndarray  # (N, F)


@dataclass(frozen=True)
class CFConv(Block):
    r"""Continuous-filter convolution, :math:`f'_i = \mathrm{Lin}_{out}(\sum_j W_{ij} \odot y_j)`.

    Parameters
    ----------
    in_channels, out_channels : int
        H (input width) and output width.
    num_filters : int
        F, the filter width.
    num_rbf : int
        G >= 2, number of Gaussians (PyG default 50).
    cutoff : float
        :math:`r_c > 0` (PyG default 10.0); edges with :math:`d \ge r_c` contribute 0.
    constants : {"exact", "pyg"} or SchNetConstants
        See :mod:`geomp_ref.layers.schnet_constants`.
    backend : str
        Backend of the fused aggregation (``"numpy"``, ``"numba"``, ``"cuda"``).

    Params: ``{"W_in": (H, F), "filter": {"W0": (G, F), "b0": (F,), "W1": (F, F), "b1": (F,)},
    "W_out": (F, H_out), "b_out": (H_out,)}`` (PyG: ``lin1``, ``nn[0]``, ``nn[2]``, ``lin2``, with
    weights transposed).

    ``forward(params, graph, f, pos) -> (f', CFConvCache)``; ``backward(params, cache, grad_out,
    *, param_grads=True)`` returns ``(grad_params, (grad_f, grad_pos))``. With
    ``param_grads=False`` it forms no weight or bias gradient and returns
    ``(None, (grad_f, grad_pos))``, the input gradients bit-identical to the full backward's (the
    same operations in the same order on the input path); ``param_grads`` must be a ``bool``
    (``TypeError`` otherwise).

    Raises
    ------
    ValueError
        On coincident points joined by an edge (the distance has no derivative there), wrong shapes,
        non-finite input.

    Notes
    -----
    E(3)-invariant, permutation-equivariant.
    """

    in_channels: int
    out_channels: int
    num_filters: int
    num_rbf: int = 50
    cutoff: float = 10.0
    constants: object = "exact"
    backend: str = "numpy"

    def __post_init__(self):
        for name in ("in_channels", "out_channels", "num_filters"):
            check_int(getattr(self, name), f"CFConv.{name}", minimum=1)
        check_int(self.num_rbf, "CFConv.num_rbf", minimum=2)
        object.__setattr__(self, "cutoff", check_positive(self.cutoff, "CFConv.cutoff"))
        k = resolve_constants(self.constants, self.cutoff, self.num_rbf, "CFConv")
        check_backend(self.backend, "CFConv")
        object.__setattr__(self, "consts", k)

    def param_shapes(self) -> dict:
        H, F, G, O = self.in_channels, self.num_filters, self.num_rbf, self.out_channels
        return {
            "W_in": (H, F),
            "filter": {"W0": (G, F), "b0": (F,), "W1": (F, F), "b1": (F,)},
            "W_out": (F, O),
            "b_out": (O,),
        }

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        H, F, G, O = self.in_channels, self.num_filters, self.num_rbf, self.out_channels
        W0, b0 = linear_init(rng, G, F, name="CFConv.num_rbf x num_filters")
        W1, b1 = linear_init(rng, F, F, name="CFConv.num_filters")
        W_in, _ = linear_init(rng, H, F, bias=False, name="CFConv.in_channels x num_filters")
        W_out, b_out = linear_init(rng, F, O, name="CFConv.num_filters x out_channels")
        return {
            "W_in": W_in,
            "filter": {"W0": W0, "b0": b0, "W1": W1, "b1": b1},
            "W_out": W_out,
            "b_out": b_out,
        }

    def _kernels(self):
        """The backend module when it has the fused kernels, else None (reference ops)."""
        be = _backends.get(self.backend)
        return be if hasattr(be, "activation_with_grad") else None

    def forward(self, params, graph, f, pos):
        check_params(params, self.param_shapes(), "CFConv", exact=True)
        check_graph(graph)
        f = node_array(f, "f", graph, self.in_channels)
        pos = _positions(pos, graph, 3)
        k: SchNetConstants = self.consts
        p = params["filter"]
        mu = np.asarray(k.offsets)
        edge_vec = edge_vectors(graph, pos)  # x_j - x_i
        d = geometry.edge_length(edge_vec, name="pos")  # raises on coincident endpoints
        kern = self._kernels()
        pairs = None
        if kern is None:  # the reference, op by op
            with np.errstate(over="ignore"):  # (d - mu)^2 = inf for huge d: exp(-inf) = 0, exact
                e = radial.gaussian_rbf(d, mu, k.gamma)
            z1 = dense.linear(e, p["W0"], p["b0"])
            s1 = activations.shifted_softplus(z1, k.shift, k.softplus_threshold)
            dz1 = None
            w_raw = dense.linear(s1, p["W1"], p["b1"])
            c = radial.cosine_cutoff(d, self.cutoff)
            y = dense.linear(f, params["W_in"])
            agg = edge_filters.filter_aggregate(graph, y, w_raw, c, backend=self.backend)
        else:  # fused kernels on arrays built here from checked inputs
            pairs = edge_filters.edge_pairs(graph)  # None unless every edge has its reverse
            d_r = d if pairs is None else d[pairs.first]  # one filter row per edge or pair
            e = kern.gaussian_rbf(d_r, mu, k.gamma)
            z1, s1, dz1 = kern.activation_with_grad(
                "shifted_softplus", e @ _f64(p["W0"]), _f64(p["b0"]), shift=k.shift,
                threshold=k.softplus_threshold, overwrite=True)
            w_raw = s1 @ _f64(p["W1"])
            w_raw += _f64(p["b1"])  # in place: same rounding as s1 W1 + b1
            c = kern.cosine_cutoff(d_r, self.cutoff)
            y = f @ _f64(params["W_in"])
            agg = kern.filter_aggregate(graph, y, w_raw, c, pairs)  # sum_j (w_raw c) * y_j
        out = dense.linear(agg, params["W_out"], params["b_out"])
        return out, CFConvCache(graph, edge_vec, d, pairs, e, z1, s1, dz1, w_raw, c, f, y, agg)

    def backward(self, params, cache: CFConvCache, grad_out, *, param_grads: bool = True):
        param_grads = check_bool(param_grads, "param_grads")
        check_cache(cache, CFConvCache, "CFConv")
        graph = cache.graph
        g = _grad_out(grad_out, (graph.num_nodes, self.out_channels), "CFConv")
        k: SchNetConstants = self.consts
        p = params["filter"]
        mu = np.asarray(k.offsets)
        kern = self._kernels() if cache.dz1 is not None else None
        # out = agg W_out + b_out
        g_agg, gW_out, gb_out = dense.linear_vjp(
            cache.agg, params["W_out"], params["b_out"], g, param_grads=param_grads)
        if kern is None:
            # agg = sum_j (w_raw c) * y_j
            g_y, g_raw, g_c = edge_filters.filter_aggregate_vjp(
                graph, cache.y, cache.w_raw, cache.c, g_agg, backend=self.backend)
            # y = f W_in
            g_f, gW_in, _ = dense.linear_vjp(
                cache.f, params["W_in"], None, g_y, param_grads=param_grads)
            # c = C(d)
            g_d = radial.cosine_cutoff_vjp(cache.d, self.cutoff, g_c)
            # w_raw = s1 W1 + b1 ; s1 = ssp(z1) ; z1 = e W0 + b0
            g_s1, gW1, gb1 = dense.linear_vjp(
                cache.s1, p["W1"], p["b1"], g_raw, param_grads=param_grads)
            g_z1 = activations.shifted_softplus_vjp(cache.z1, g_s1, k.shift,
                                                    k.softplus_threshold)
            g_e, gW0, gb0 = dense.linear_vjp(
                cache.e, p["W0"], p["b0"], g_z1, param_grads=param_grads)
            # e = gaussian_rbf(d): only edges inside the cutoff carry a cotangent (C = 0 beyond)
            inside = cache.d < self.cutoff
            g_d[inside] += radial.gaussian_rbf_vjp(cache.d[inside], mu, k.gamma, g_e[inside])
            # d = |edge_vec| ; edge_vec = x_j - x_i
            g_vec = geometry.edge_length_vjp(cache.edge_vec, g_d, name="pos")
            g_pos = edge_filters.edge_vectors_vjp(graph, g_vec, backend=self.backend)
        else:
            pairs = cache.pairs
            # agg = sum_j (w_raw c) * y_j (both edges of a pair add to the pair's row)
            g_y, g_raw, g_c = kern.filter_aggregate_vjp(graph, cache.y, cache.w_raw, cache.c,
                                                        g_agg, pairs)
            # y = f W_in
            W_in = _f64(params["W_in"])
            g_f = g_y @ W_in.T
            if param_grads:
                gW_in = cache.f.T @ g_y
            # c = C(d_r) ; d_r = d, or d at the first edge of every pair
            d_r = cache.d if pairs is None else cache.d[pairs.first]
            g_dr = kern.cosine_cutoff_vjp(d_r, self.cutoff, g_c)
            # w_raw = s1 W1 + b1
            if param_grads:
                gW1, gb1 = cache.s1.T @ g_raw, g_raw.sum(axis=0)
            g_z1 = g_raw @ _f64(p["W1"]).T
            # s1 = ssp(z1): times the kept derivative, in place
            g_z1 *= cache.dz1
            # z1 = e W0 + b0
            if param_grads:
                gW0, gb0 = cache.e.T @ g_z1, g_z1.sum(axis=0)
            g_e = g_z1 @ _f64(p["W0"]).T
            # e = gaussian_rbf(d_r), from the kept values; edges beyond the cutoff get none
            g_dr += np.where(d_r < self.cutoff,
                             kern.gaussian_rbf_vjp(d_r, mu, k.gamma, g_e, cache.e), 0.0)
            if pairs is None:
                g_d = g_dr
            else:  # d_r = d[first]: the pair's distance is differentiated through one edge
                g_d = np.zeros_like(cache.d)
                g_d[pairs.first] = g_dr
            # d = |edge_vec| ; edge_vec = x_j - x_i
            g_vec = geometry.edge_length_vjp(cache.edge_vec, g_d, name="pos")
            g_pos = kern.edge_vectors_vjp(graph, g_vec)
        if not param_grads:
            return None, (g_f, g_pos)
        grads = {
            "W_in": gW_in,
            "filter": {"W0": gW0, "b0": gb0, "W1": gW1, "b1": gb1},
            "W_out": gW_out,
            "b_out": gb_out,
        }
        return grads, (g_f, g_pos)


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


# --- interaction block ------------------------------------------------------------------------


class SchNetInteractionCache(NamedTuple):
    conv: CFConvCache
    u: np.ndarray  # (N, H) CFConv output
    s: np.ndarray  # (N, H) ssp(u)


@dataclass(frozen=True)
class SchNetInteraction(Block):
    r"""PyG's ``InteractionBlock``: :math:`v = \mathrm{ssp}(\mathrm{CFConv}(h))\, W + b`.

    Parameters
    ----------
    hidden : int
        H (CFConv maps H -> H).
    num_filters, num_rbf, cutoff, constants, backend
        As :class:`CFConv`.

    Params: ``{"conv": CFConv params, "W": (H, H), "b": (H,)}`` (PyG: ``conv``, ``lin``).
    ``forward(params, graph, h, pos) -> (v, cache)``; ``backward(params, cache, grad_out, *,
    param_grads=True) -> (grads, (grad_h, grad_pos))``; ``param_grads=False`` gives
    ``(None, (grad_h, grad_pos))`` with the same input gradients, bit for bit (see :class:`CFConv`).
    The residual is in :class:`geomp_ref.layers.schnet.SchNet`.
    """

    hidden: int
    num_filters: int
    num_rbf: int = 50
    cutoff: float = 10.0
    constants: object = "exact"
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.hidden, "SchNetInteraction.hidden", minimum=1)
        check_int(self.num_filters, "SchNetInteraction.num_filters", minimum=1)
        conv = CFConv(self.hidden, self.hidden, self.num_filters, self.num_rbf, self.cutoff,
                      self.constants, self.backend)
        object.__setattr__(self, "conv", conv)

    def param_shapes(self) -> dict:
        H = self.hidden
        return {"conv": self.conv.param_shapes(), "W": (H, H), "b": (H,)}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        W, b = linear_init(rng, self.hidden, self.hidden, name="SchNetInteraction.hidden")
        return {"conv": self.conv.init(rng), "W": W, "b": b}

    def forward(self, params, graph, h, pos):
        check_params(params, self.param_shapes(), "SchNetInteraction", exact=True)
        check_graph(graph)
        h = node_array(h, "h", graph, self.hidden)
        pos = _positions(pos, graph, 3)
        k = self.conv.consts
        u, conv_cache = self.conv.forward(params["conv"], graph, h, pos)
        s = activations.shifted_softplus(u, k.shift, k.softplus_threshold, backend=self.backend)
        v = dense.linear(s, params["W"], params["b"])
        return v, SchNetInteractionCache(conv_cache, u, s)

    def backward(self, params, cache: SchNetInteractionCache, grad_out, *,
                 param_grads: bool = True):
        param_grads = check_bool(param_grads, "param_grads")
        check_cache(cache, SchNetInteractionCache, "SchNetInteraction")
        g = _grad_out(grad_out, cache.u.shape, "SchNetInteraction")
        k = self.conv.consts
        # v = s W + b
        g_s, gW, gb = dense.linear_vjp(
            cache.s, params["W"], params["b"], g, param_grads=param_grads)
        # s = ssp(u)
        g_u = activations.shifted_softplus_vjp(cache.u, g_s, k.shift, k.softplus_threshold,
                                               backend=self.backend)
        # u = CFConv(h, pos)
        g_conv, (g_h, g_pos) = self.conv.backward(params["conv"], cache.conv, g_u,
                                                  param_grads=param_grads)
        if not param_grads:
            return None, (g_h, g_pos)
        return {"conv": g_conv, "W": gW, "b": gb}, (g_h, g_pos)
