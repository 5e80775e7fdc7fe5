r"""Pieces of :class:`~geomp_ref.layers.egnn_layer.EGNNLayer`: the vgsatorras/egnn flavour
defaults, the forward caches, the coordinate update (eq. 4) and the normalised direction it uses,
each with its VJP, and the edge network's first product split by node (non-numpy backends) with
its VJP.

The direction is :math:`u = \Delta / (n + \epsilon)` (``mode="add"``) or :math:`u = \Delta /
\max(n, \epsilon)` (``mode="max"``) with :math:`n = \lVert\Delta\rVert`. Its VJP is
:math:`\bar\Delta = \bar u / d - \Delta\, (\Delta \cdot \bar u) / (n\, d^2)` with :math:`d`
the denominator; the second term is left out where :math:`n` does not move :math:`d` (at
:math:`n = 0`; below the floor :math:`\epsilon` in ``"max"`` mode, where torch's clamp passes the
cotangent only from the bound itself upwards) and when the norm is detached (egnn_clean's
``.detach()``).

Flavours of vgsatorras/egnn (every option is a named field, ``None`` = the flavour's default):

=================  ========================================  =========================
option             ``flavour="gcl"`` (models/gcl.py E_GCL)   ``flavour="egnn_clean"``
=================  ========================================  =========================
activation         ``"relu"``                                ``"silu"``
clamp              100.0 (always, elementwise on t_ij)       None (no clamp)
normalize epsilon  ``+1`` (``norm_diff``)                    ``1e-8``
coords_agg         ``"mean"``                                ``"mean"`` (or ``"sum"``)
=================  ========================================  =========================

``coords_weight`` is C (gcl's ``coords_weight``, default 1). ``velocity=True`` gives gcl's
``E_GCL_vel``. ``update_coords=False`` with ``node_attr_features`` and ``attention`` gives the QM9
layer ``E_GCL_mask``: there the edge mask multiplies every message by 0 or 1, which is the same
function as leaving the masked edges out of the graph (build the graph from the edges whose mask
is 1; the node mask is used only by the QM9 model's readout). Mean aggregation divides by the
number of edges present (clamped >= 1), which equals the paper's C = 1/(M-1) only on complete
graphs.

Options beyond vgsatorras/egnn (all default to its behaviour), for other published EGNN layers
such as lucidrains' egnn-pytorch: separate hidden widths of :math:`\phi_e`, :math:`\phi_x`,
:math:`\phi_h` (``edge_hidden``, ``coord_hidden``, ``node_hidden``; the message width stays
``hidden``); a bias on :math:`\phi_x`'s last layer (``coord_bias``); the mean of the messages
instead of their sum (``messages_agg``); the normalisation :math:`\Delta/\max(\lVert\Delta\rVert,
\epsilon)` (``norm_mode="max"``); a learned scalar :math:`s` on the direction (``coords_scale``);
and a bound on the scalar weight :math:`w_{ij}` before it multiplies the direction
(``weight_clamp``; ``clamp`` bounds the product :math:`t_{ij}` elementwise). Self-loops
(:math:`i \to i` edges) are allowed: their :math:`\Delta` is 0, so they add a message
:math:`\phi_e([h_i, h_i, 0, a_{ii}])` and nothing to the coordinates.

Derivatives at the non-smooth points. Clamps (``clamp`` on :math:`t`, ``weight_clamp`` on
:math:`w`): the cotangent passes on :math:`[-c, c]` (torch's convention) and is zero outside.
Normalisation (:mod:`geomp_ref.layers.egnn_parts`): the true derivative of :math:`u`, finite at
:math:`\Delta = 0` (:math:`I/\epsilon`, coincident atoms are fine); egnn_clean detaches the norm
in torch, and ``detach_norm=True`` reproduces that gradient exactly (same values). gcl's
autograd through ``sqrt`` gives NaN at :math:`\Delta = 0`. A self-loop's :math:`\Delta = x_i -
x_i` is 0 for every x, so nothing flows back through it to x.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import backends as _backends
from ..graph import Graph
from ..ops import geometry, scatter
from .mlp import MLPCache

__all__ = [
    "FLAVOURS",
    "FLAVOUR_DEFAULT",
    "EGNNAttentionCache",
    "EGNNCoordCache",
    "EGNNLayerCache",
    "EGNNVelocityCache",
    "coord_update",
    "coord_update_vjp",
    "direction",
    "direction_vjp",
    "split_first_product",
    "split_first_product_vjp",
]

FLAVOURS = {
    "gcl": {"activation": "relu", "clamp": 100.0, "norm_eps": 1.0, "coords_agg": "mean"},
    "egnn_clean": {"activation": "silu", "clamp": None, "norm_eps": 1e-8, "coords_agg": "mean"},
}
#: sentinel for ``clamp``: take the flavour's value (``None`` itself means no clamp)
FLAVOUR_DEFAULT = "flavour"


class EGNNAttentionCache(NamedTuple):
    m_raw: np.ndarray  # (E, H) phi_e output
    att: np.ndarray  # (E, 1) sigmoid(phi_inf(m_raw))
    phi_inf: MLPCache


class EGNNCoordCache(NamedTuple):
    nrm: np.ndarray | None  # (E,) |Delta| when normalize
    u: np.ndarray  # (E, D) direction used by the update
    phi_x: MLPCache
    s: np.ndarray  # (E, 1) phi_x output (after tanh when on)
    t: np.ndarray  # (E, D) scale * u * w before the clamp
    w: np.ndarray  # (E, 1) s after the weight clamp (s itself when off)


class EGNNVelocityCache(NamedTuple):
    phi_v: MLPCache
    pv: np.ndarray  # (N, 1) phi_v(h)
    v: np.ndarray  # (N, D) input velocity


class EGNNLayerCache(NamedTuple):
    graph: Graph
    h: np.ndarray  # (N, H_in)
    diff: np.ndarray  # (E, D) Delta_ij = x_i - x_j
    phi_e: MLPCache
    attention: EGNNAttentionCache | None
    m: np.ndarray  # (E, H) messages
    coord: EGNNCoordCache | None  # None when update_coords=False
    velocity: EGNNVelocityCache | None  # None when velocity=False
    phi_h: MLPCache
    # (r, edge_attr) when the edge network's first product was split by node (non-numpy
    # backends, see EGNNLayer); None when it ran on the concatenated edge input
    edge_in: tuple | None = None


def direction(diff: np.ndarray, eps: float, mode: str):
    """``(u, n)``: the normalised differences (E, D) and their lengths (E,)."""
    nrm = geometry.edge_length(diff, allow_zero=True, name="x")
    den = np.maximum(nrm, eps) if mode == "max" else nrm + eps
    return diff / den[:, None], nrm


def direction_vjp(diff, nrm, grad_u, eps: float, mode: str, detach: bool) -> np.ndarray:
    """VJP of :func:`direction` with respect to ``diff`` (see the module docstring)."""
    den = np.maximum(nrm, eps) if mode == "max" else nrm + eps
    g_diff = grad_u / den[:, None]
    if not detach:
        live = nrm >= eps if mode == "max" else nrm > 0
        proj = np.sum(grad_u * diff, axis=1)
        safe = np.where(live, nrm, 1.0)
        coef = np.where(live, proj / (safe * den * den), 0.0)
        g_diff = g_diff - coef[:, None] * diff
    return g_diff


def split_first_product(W0, graph, h, r, edge_attr, backend):
    r"""``[h_i, h_j, r, a] W0`` (E, C) without forming the (E, 2H + 1 + A) edge input.

    Split by rows of :math:`W_0`: :math:`(h W_0^{(i)})_{dst} + (h W_0^{(j)})_{src} +
    r\,w_0^{(r)} + a W_0^{(a)}`, two node-sized products instead of an edge-sized one (E / N
    times fewer operations). The sums are rounded in another order than the concatenated
    product's, so the result agrees with the NumPy path to rounding, not bit for bit; the NumPy
    backend keeps the literal form.
    """
    H = h.shape[1]
    W0 = np.asarray(W0, dtype=np.float64)
    a, b = h @ W0[:H], h @ W0[H:2 * H]
    be = _backends.get(backend)
    if hasattr(be, "edge_pair_sum"):  # one fused pass, same rounding
        z0 = be.edge_pair_sum(graph, a, b, r, W0[2 * H])
    else:
        z0 = a[graph.dst]
        z0 += b[graph.src]
        z0 += r[:, None] * W0[2 * H]
    if edge_attr is not None:
        z0 += edge_attr @ W0[2 * H + 1:]
    return z0


def split_first_product_vjp(W0, cache: EGNNLayerCache, g_z0, backend):
    """``(grad_W0, grad_h, grad_r, grad_a)`` of :func:`split_first_product`: the rows of ``W0``
    reverse as the concatenated product would, with the edge sums turned into node sums first."""
    graph, h = cache.graph, cache.h
    H = h.shape[1]
    r, edge_attr = cache.edge_in
    W0 = np.asarray(W0, dtype=np.float64)
    g_dst = scatter.aggregate(graph, g_z0, backend=backend)  # sum over the edges into i
    g_src = scatter.aggregate(graph.reverse(), g_z0, backend=backend)  # out of j
    g_W0 = np.empty_like(W0)
    g_W0[:H] = h.T @ g_dst
    g_W0[H:2 * H] = h.T @ g_src
    g_W0[2 * H] = r @ g_z0
    g_a = None
    if edge_attr is not None:
        g_W0[2 * H + 1:] = edge_attr.T @ g_z0
        g_a = g_z0 @ W0[2 * H + 1:].T
    g_h = g_dst @ W0[:H].T + g_src @ W0[H:2 * H].T
    return g_W0, g_h, g_z0 @ W0[2 * H], g_a


def _scaled(layer, params, u):
    """The direction times the learned scale (``u`` itself when there is none)."""
    return u if layer.coords_scale is None else u * params["coords_scale"]


def coord_update(layer, params, graph, m, diff, x):
    """``(x_new, cache)`` of the coordinate update of ``layer`` (an ``EGNNLayer``):
    ``x + C AGG_j clamp(s u_ij clamp_w(phi_x(m_ij))))`` (the layer's module docstring)."""
    nrm = None
    u = diff
    if layer.normalize:
        u, nrm = direction(diff, layer.norm_eps, layer.norm_mode)
    s, c_phi_x = layer.phi_x.forward(params["phi_x"], m)
    if layer.tanh:
        s = np.tanh(s)
    wc = layer.weight_clamp
    w = s if wc is None else np.clip(s, -wc, wc)
    t = _scaled(layer, params, u) * w
    t_c = t if layer.clamp is None else np.clip(t, -layer.clamp, layer.clamp)
    agg = scatter.aggregate_mean if layer.coords_agg == "mean" else scatter.aggregate
    x_new = x + layer.coords_weight * agg(graph, t_c, backend=layer.backend)
    return x_new, EGNNCoordCache(nrm, u, c_phi_x, s, t, w)


def coord_update_vjp(layer, params, cache: EGNNLayerCache, gx_new, grads):
    """Reverses :func:`coord_update`: ``(grad_m, grad_diff)``; writes ``grads["phi_x"]`` (and
    ``grads["coords_scale"]``)."""
    c_x, graph = cache.coord, cache.graph
    # x_new = x + C agg_x ; agg_x = AGG t_c
    g_agg = layer.coords_weight * gx_new
    if layer.coords_agg == "mean":
        g_tc = scatter.aggregate_mean_vjp(graph, c_x.t, g_agg)
    else:
        g_tc = scatter.aggregate_vjp(graph, c_x.t, g_agg)
    # t_c = clamp(t): the cotangent passes on [-c, c] (torch's convention at the bounds)
    g_t = g_tc if layer.clamp is None else g_tc * (np.abs(c_x.t) <= layer.clamp)
    # t = scale * u * w
    g_us = g_t * c_x.w
    g_w = np.sum(g_t * _scaled(layer, params, c_x.u), axis=1, keepdims=True)
    g_u = g_us
    if layer.coords_scale is not None:
        grads["coords_scale"] = np.sum(g_us * c_x.u, keepdims=True).reshape(1)
        g_u = g_us * params["coords_scale"]
    # w = clamp_w(s): the cotangent passes on [-c_w, c_w]
    g_s = g_w
    if layer.weight_clamp is not None:
        g_s = g_w * (np.abs(c_x.s) <= layer.weight_clamp)
    # s = tanh(phi_x(m))
    if layer.tanh:
        g_s = g_s * (1.0 - c_x.s * c_x.s)
    grads["phi_x"], (g_m,) = layer.phi_x.backward(params["phi_x"], c_x.phi_x, g_s)
    # u = direction(diff) (normalize), or u = diff
    if layer.normalize:
        return g_m, direction_vjp(cache.diff, c_x.nrm, g_u, layer.norm_eps, layer.norm_mode,
                                  layer.detach_norm)
    return g_m, g_u
