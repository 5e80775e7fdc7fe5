r"""E(n)-equivariant graph neural network (Satorras, Hoogeboom, Welling 2021).

For every edge j -> i (receiver i = ``dst``, sender j = ``src``; README "Conventions"):

.. math::

    \Delta_{ij} = x_i - x_j = -\,\texttt{edge\_vec}, \qquad r_{ij} = \lVert \Delta_{ij} \rVert^2,

    m_{ij} = \phi_e([h_i, h_j, r_{ij}, a_{ij}]) \quad (\text{eq. 3}), \qquad
    m_{ij} \leftarrow m_{ij}\, \sigma(m_{ij} W_{inf} + b_{inf}) \ (\texttt{attention}),

    t_{ij} = \mathrm{clamp}\big(u_{ij}\, \phi_x(m_{ij})\big), \qquad
    u_{ij} = \Delta_{ij} \ \text{or}\ \Delta_{ij} / (\lVert\Delta_{ij}\rVert + \epsilon)\
    (\texttt{normalize}),

    x'_i = x_i + C\, \mathrm{AGG}_j\, t_{ij}\ \ (\text{eq. 4; AGG = mean or sum})
    \ [+\ \phi_v(h_i)\, v_i\ \ (\texttt{velocity}, \text{eq. 7})],

    h'_i = h_i + \phi_h([h_i, \textstyle\sum_j m_{ij}]) \quad (\text{eqs. 5-6; residual}).

:math:`\phi_e` = Lin -> act -> Lin -> act; :math:`\phi_x` = Lin -> act -> Lin(no bias) [-> tanh];
:math:`\phi_h` = Lin -> act -> Lin; :math:`\phi_v` = Lin -> act -> Lin. Order inside a layer (as in
the code): messages, coordinate update (pre-update :math:`\Delta`), node update; the velocity term
uses the pre-update :math:`h_i` and the *input* velocity (never updated, variants_spec §4.1).

Flavours (variants_spec §4; every option is a named field, ``None`` = the flavour's default):

=================  ========================================  =========================
option             ``flavour="gcl"`` (models/gcl.py E_GCL)   ``flavour="egnn_clean"``
=================  ========================================  =========================
activation         ``"relu"``                                ``"silu"``
clamp              100.0 (always, elementwise on t_ij)       None (no clamp)
normalize epsilon  ``+1`` (``norm_diff``)                    ``1e-8``
coords_agg         ``"mean"``                                ``"mean"`` (or ``"sum"``)
=================  ========================================  =========================

``coords_weight`` is C (gcl's ``coords_weight``, default 1). ``velocity=True`` gives gcl's
``E_GCL_vel``. Mean aggregation divides by the number of edges present (clamped >= 1), which equals
the paper's C = 1/(M-1) only on complete graphs (issue vgsatorras/egnn#5).

Derivatives at the non-smooth points are defined as follows. Clamp: the cotangent passes where
:math:`-c \le t \le c` (torch's convention) and is zero outside. Normalisation:
:math:`u = \Delta/(n + \epsilon)` with :math:`n = \lVert\Delta\rVert` is differentiable everywhere
for :math:`\epsilon > 0`, with :math:`\partial u/\partial\Delta = I/(n+\epsilon) - \Delta\Delta^T /
(n (n+\epsilon)^2)` and :math:`I/\epsilon` at :math:`\Delta = 0` (coincident atoms are fine). We
give
this **true derivative**; egnn_clean detaches :math:`n` (stop-gradient), so its autograd gradient
keeps only :math:`I/(n+\epsilon)` and differs from ours whenever normalize is on; gcl's autograd
through ``sqrt`` gives NaN at :math:`\Delta = 0`.

Backward: reverse order of the forward lines; proof ``derivations/egnn.py``.

Reference: V. G. Satorras, E. Hoogeboom, M. Welling, "E(n) Equivariant Graph Neural Networks",
ICML 2021, eqs. (3)-(7); code github.com/vgsatorras/egnn (models/gcl.py, egnn_clean.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64, check_int
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import activations, dense, scatter
from .base import Block, check_backend, check_params
from .mlp import MLP

__all__ = ["EGNN", "EGNNCache", "EGNNLayer", "EGNNLayerCache"]

_FLAVOURS = {
    "gcl": {"activation": "relu", "clamp": 100.0, "norm_eps": 1.0, "coords_agg": "mean"},
    "egnn_clean": {"activation": "silu", "clamp": None, "norm_eps": 1e-8, "coords_agg": "mean"},
}
_DEFAULT = "flavour"  # sentinel: take the flavour's value


class EGNNLayerCache(NamedTuple):
    diff: np.ndarray  # (E, D) Delta_ij = x_i - x_j
    r: np.ndarray  # (E,) |Delta_ij|^2
    phi_e: object  # MLPCache of the edge network
    m_raw: np.ndarray  # (E, H) phi_e output
    att: np.ndarray | None  # (E, 1) attention weights
    m: np.ndarray  # (E, H) messages
    nrm: np.ndarray | None  # (E,) |Delta_ij| when normalize
    u: np.ndarray | None  # (E, D) direction used by the coordinate update
    zx0: np.ndarray | None  # (E, H) phi_x hidden pre-activation
    ax0: np.ndarray | None  # (E, H) phi_x hidden activation
    s: np.ndarray | None  # (E, 1) phi_x output (after tanh)
    t: np.ndarray | None  # (E, D) u * s before the clamp
    phi_v: object  # MLPCache of phi_v or None
    pv: np.ndarray | None  # (N, 1) phi_v(h)
    v: np.ndarray | None  # (N, D)
    phi_h: object  # MLPCache of phi_h
    h: np.ndarray  # (N, H_in)
    graph: Graph


@dataclass(frozen=True)
class EGNNLayer(Block):
    r"""One EGNN layer: ``forward(params, graph, h, x[, v][, edge_attr]) -> ((h', x'), cache)``.

    Parameters
    ----------
    in_features : int
        Width of h.
    hidden : int
        Width of messages and hidden layers.
    out_features : int, optional
        Width of h' (default ``in_features``; must equal it when ``residual``).
    edge_features : int
        Width of ``edge_attr`` (0: no edge attributes, no ``edge_attr`` argument).
    flavour : {"gcl", "egnn_clean"}
    activation : str, optional
        Default by flavour (table in the module docstring).
    attention : bool
        Edge inference :math:`m_{ij} \leftarrow m_{ij} \sigma(\phi_{inf}(m_{ij}))`.
    residual : bool
        :math:`h' = h + \phi_h(\cdot)` (gcl ``recurrent``, egnn_clean ``residual``; default True).
    coords_agg : {"mean", "sum"}, optional
    coords_weight : float
        C in front of the aggregated coordinate update.
    tanh : bool
        Append tanh to :math:`\phi_x`.
    normalize : bool
        Use :math:`\Delta/(\lVert\Delta\rVert + \epsilon)` in the coordinate update.
    norm_eps : float, optional
        :math:`\epsilon` (default by flavour: 1 for gcl, 1e-8 for egnn_clean).
    clamp : float or None, optional
        Elementwise bound on :math:`t_{ij}` (default by flavour: 100 for gcl, None for egnn_clean).
    velocity : bool
        gcl's ``E_GCL_vel``: :math:`x' \mathrel{+}= \phi_v(h)\, v` (then ``v`` is an input).
    update_coords : bool
        False gives the invariant QM9 layer (``x' = x``).
    coord_init_gain : float
        xavier-uniform gain of :math:`\phi_x`'s last layer in :meth:`init` (the code uses 0.001).
    backend : str

    Params: ``{"phi_e": MLP(2H_in+1+D_e, H, H), "phi_x": {"W0": (H, H), "b0": (H,), "W1": (H, 1)},
    "phi_h": MLP(H_in+H, H, H_out)}`` plus ``"phi_inf": {"W": (H, 1), "b": (1,)}`` (attention) and
    ``"phi_v": MLP(H_in, H, 1)`` (velocity).

    ``backward(params, cache, (grad_h', grad_x'))`` (``None`` = zero cotangent) returns
    ``(grads, (grad_h, grad_x[, grad_v][, grad_edge_attr]))``.

    Notes
    -----
    h' is E(3)-invariant, x' E(3)-equivariant, v transforms as a vector. No input raises for
    coincident atoms (see the module docstring for the derivatives there).
    """

    in_features: int
    hidden: int
    out_features: int | None = None
    edge_features: int = 0
    flavour: str = "gcl"
    activation: str | None = None
    attention: bool = False
    residual: bool = True
    coords_agg: str | None = None
    coords_weight: float = 1.0
    tanh: bool = False
    normalize: bool = False
    norm_eps: float | None = None
    clamp: object = _DEFAULT
    velocity: bool = False
    update_coords: bool = True
    coord_init_gain: float = 0.001
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.in_features, "EGNNLayer.in_features", minimum=1)
        check_int(self.hidden, "EGNNLayer.hidden", minimum=1)
        check_int(self.edge_features, "EGNNLayer.edge_features", minimum=0)
        if self.flavour not in _FLAVOURS:
            raise ValueError(
                f"EGNNLayer.flavour must be one of {tuple(_FLAVOURS)}; got {self.flavour!r}"
            )
        fl = _FLAVOURS[self.flavour]
        if self.out_features is None:
            object.__setattr__(self, "out_features", self.in_features)
        check_int(self.out_features, "EGNNLayer.out_features", minimum=1)
        if self.residual and self.out_features != self.in_features:
            raise ValueError(
                "EGNNLayer.out_features must equal in_features when residual=True; got "
                f"{self.out_features} != {self.in_features}"
            )
        for name in ("activation", "coords_agg", "norm_eps"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, fl[name])
        if isinstance(self.clamp, str) and self.clamp == _DEFAULT:
            object.__setattr__(self, "clamp", fl["clamp"])
        activations.get(self.activation)
        if self.coords_agg not in ("mean", "sum"):
            raise ValueError(
                f"EGNNLayer.coords_agg must be 'mean' or 'sum'; got {self.coords_agg!r}"
            )
        if not (float(self.norm_eps) > 0):
            raise ValueError(f"EGNNLayer.norm_eps must be > 0; got {self.norm_eps}")
        if self.clamp is not None and not (float(self.clamp) > 0):
            raise ValueError(f"EGNNLayer.clamp must be > 0 or None; got {self.clamp}")
        check_backend(self.backend, "EGNNLayer")

    # sub-blocks
    @property
    def phi_e(self) -> MLP:
        d = 2 * self.in_features + 1 + self.edge_features
        return MLP((d, self.hidden, self.hidden), self.activation, activate_last=True)

    @property
    def phi_h(self) -> MLP:
        return MLP(
            (self.in_features + self.hidden, self.hidden, self.out_features), self.activation
        )

    @property
    def phi_v(self) -> MLP:
        return MLP((self.in_features, self.hidden, 1), self.activation)

    def _shapes(self):
        H = self.hidden
        s = {"phi_e": self.phi_e._shapes(), "phi_h": self.phi_h._shapes()}
        if self.update_coords:
            s["phi_x"] = {"W0": (H, H), "b0": (H,), "W1": (H, 1)}
        if self.attention:
            s["phi_inf"] = {"W": (H, 1), "b": (1,)}
        if self.velocity:
            s["phi_v"] = self.phi_v._shapes()
        return s

    def init(self, rng: np.random.Generator) -> dict:
        H = self.hidden
        p = {"phi_e": self.phi_e.init(rng), "phi_h": self.phi_h.init(rng)}
        if self.update_coords:
            bound = 1.0 / np.sqrt(H)
            xb = self.coord_init_gain * np.sqrt(6.0 / (H + 1))
            p["phi_x"] = {
                "W0": rng.uniform(-bound, bound, (H, H)),
                "b0": rng.uniform(-bound, bound, H),
                "W1": rng.uniform(-xb, xb, (H, 1)),
            }
        if self.attention:
            bound = 1.0 / np.sqrt(H)
            p["phi_inf"] = {
                "W": rng.uniform(-bound, bound, (H, 1)),
                "b": rng.uniform(-bound, bound, 1),
            }
        if self.velocity:
            p["phi_v"] = self.phi_v.init(rng)
        return p

    def _split_extra(self, extra, graph, dim):
        want = int(self.velocity) + int(self.edge_features > 0)
        names = (["v"] if self.velocity else []) + (["edge_attr"] if self.edge_features else [])
        if len(extra) != want:
            raise TypeError(
                f"EGNNLayer.forward takes (params, graph, h, x{''.join(', ' + n for n in names)}); "
                f"got {len(extra)} extra input(s) after x"
            )
        v = edge_attr = None
        k = 0
        if self.velocity:
            v = as_float64(extra[0], "v", ndim=2)
            if v.shape != (graph.num_nodes, dim):
                raise ValueError(
                    f"v must have shape (num_nodes, D) = ({graph.num_nodes}, {dim}); got {v.shape}"
                )
            k = 1
        if self.edge_features:
            edge_attr = as_float64(extra[k], "edge_attr", ndim=2)
            if edge_attr.shape != (graph.num_edges, self.edge_features):
                raise ValueError(
                    f"edge_attr must have shape (num_edges, {self.edge_features}) = "
                    f"({graph.num_edges}, {self.edge_features}); got {edge_attr.shape}"
                )
        return v, edge_attr

    def forward(self, params, graph, h, x, *extra):
        if not isinstance(graph, Graph):
            raise TypeError(
                f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
            )
        check_params(params, self._shapes(), "EGNNLayer")
        h = as_float64(h, "h", ndim=2)
        if h.shape != (graph.num_nodes, self.in_features):
            raise ValueError(
                f"h must have shape (num_nodes, {self.in_features}) = "
                f"({graph.num_nodes}, {self.in_features}); got {h.shape}"
            )
        x = as_float64(x, "x", ndim=2)
        if x.shape[0] != graph.num_nodes:
            raise ValueError(
                f"x must have shape (num_nodes, D) = ({graph.num_nodes}, D); got {x.shape}"
            )
        v, edge_attr = self._split_extra(extra, graph, x.shape[1])
        return self._forward(params, graph, h, x, v, edge_attr)

    def _forward(self, params, graph, h, x, v, edge_attr):
        act, _ = activations.get(self.activation)
        src, dst = graph.src, graph.dst
        # EGNN uses x_i - x_j (receiver minus sender): the opposite sign of edge_vec = x_j - x_i.
        diff = -edge_vectors(graph, x)
        r = np.sum(diff * diff, axis=1)
        parts = [h[dst], h[src], r[:, None]] + ([edge_attr] if edge_attr is not None else [])
        m_raw, c_e = self.phi_e.forward(params["phi_e"], np.concatenate(parts, axis=1))
        att = None
        m = m_raw
        if self.attention:
            att = activations.sigmoid(
                dense.linear(m_raw, params["phi_inf"]["W"], params["phi_inf"]["b"])
            )
            m = m_raw * att
        nrm = u = zx0 = ax0 = s = t = None
        x_new = x
        if self.update_coords:
            if self.normalize:
                nrm = np.sqrt(r)
                u = diff / (nrm + self.norm_eps)[:, None]
            else:
                u = diff
            px = params["phi_x"]
            zx0 = dense.linear(m, px["W0"], px["b0"])
            ax0 = act(zx0)
            s = dense.linear(ax0, px["W1"])
            if self.tanh:
                s = np.tanh(s)
            t = u * s
            t_c = t if self.clamp is None else np.clip(t, -self.clamp, self.clamp)
            if self.coords_agg == "mean":
                agg_x = scatter.aggregate_mean(graph, t_c, backend=self.backend)
            else:
                agg_x = scatter.aggregate(graph, t_c, backend=self.backend)
            x_new = x + self.coords_weight * agg_x
        c_v = pv = None
        if self.velocity:
            pv, c_v = self.phi_v.forward(params["phi_v"], h)
            x_new = x_new + pv * v
        agg_m = scatter.aggregate(graph, m, backend=self.backend)
        dh, c_h = self.phi_h.forward(params["phi_h"], np.concatenate([h, agg_m], axis=1))
        h_new = h + dh if self.residual else dh
        cache = EGNNLayerCache(
            diff, r, c_e, m_raw, att, m, nrm, u, zx0, ax0, s, t, c_v, pv, v, c_h, h, graph
        )
        return (h_new, x_new), cache

    def backward(self, params, cache: EGNNLayerCache, grad_out):
        grads, g_h, g_x, g_v, g_a = self._backward(params, cache, grad_out)
        gi = (g_h, g_x) + ((g_v,) if self.velocity else ()) + ((g_a,) if self.edge_features else ())
        return grads, gi

    def _backward(self, params, cache: EGNNLayerCache, grad_out):
        _, act_vjp = activations.get(self.activation)
        graph = cache.graph
        src, dst, N = graph.src, graph.dst, graph.num_nodes
        D = cache.diff.shape[1]
        gh_new, gx_new = grad_out
        gh_new = (
            np.zeros((N, self.out_features)) if gh_new is None else np.asarray(gh_new, np.float64)
        )
        gx_new = np.zeros((N, D)) if gx_new is None else np.asarray(gx_new, np.float64)
        grads = {}
        # h_new = h + phi_h([h, agg_m])
        g_h = gh_new.copy() if self.residual else np.zeros((N, self.in_features))
        grads["phi_h"], (g_in,) = self.phi_h.backward(params["phi_h"], cache.phi_h, gh_new)
        g_h += g_in[:, : self.in_features]
        g_m = g_in[:, self.in_features :][dst]  # agg_m = sum_j m_ij  (its VJP: gather at receivers)
        g_x = gx_new.copy()
        g_v = None
        if self.velocity:
            # x_new += pv * v
            g_v = gx_new * cache.pv
            g_pv = np.sum(gx_new * cache.v, axis=1, keepdims=True)
            grads["phi_v"], (g_hv,) = self.phi_v.backward(params["phi_v"], cache.phi_v, g_pv)
            g_h += g_hv
        g_diff = np.zeros_like(cache.diff)
        if self.update_coords:
            px = params["phi_x"]
            g_agg = self.coords_weight * gx_new  # x_new = x + C agg_x
            if self.coords_agg == "mean":
                g_tc = scatter.aggregate_mean_vjp(graph, cache.t, g_agg)
            else:
                g_tc = scatter.aggregate_vjp(graph, cache.t, g_agg)
            # t_c = clamp(t): cotangent passes on [-c, c] (torch's convention at the bounds)
            g_t = g_tc if self.clamp is None else g_tc * (np.abs(cache.t) <= self.clamp)
            # t = u * s
            g_u = g_t * cache.s
            g_s = np.sum(g_t * cache.u, axis=1, keepdims=True)
            if self.tanh:
                g_s = g_s * (1.0 - cache.s * cache.s)  # s = tanh(s_pre)
            # s_pre = ax0 W1 ; ax0 = act(zx0) ; zx0 = m W0 + b0
            g_ax0, gW1, _ = dense.linear_vjp(cache.ax0, px["W1"], None, g_s)
            g_zx0 = act_vjp(cache.zx0, g_ax0)
            g_mx, gW0, gb0 = dense.linear_vjp(cache.m, px["W0"], px["b0"], g_zx0)
            grads["phi_x"] = {"W0": gW0, "b0": gb0, "W1": gW1}
            g_m = g_m + g_mx
            if self.normalize:
                # u = diff / (n + eps): true derivative I/(n+eps) - diff diff^T / (n (n+eps)^2)
                den = cache.nrm + self.norm_eps
                proj = np.sum(g_u * cache.diff, axis=1)
                safe = np.where(cache.nrm > 0, cache.nrm, 1.0)
                coef = np.where(cache.nrm > 0, proj / (safe * den * den), 0.0)
                g_diff += g_u / den[:, None] - coef[:, None] * cache.diff
            else:
                g_diff += g_u
        g_mraw = g_m
        if self.attention:
            # m = m_raw * att ; att = sigmoid(m_raw W + b)
            g_mraw = g_m * cache.att
            g_att = np.sum(g_m * cache.m_raw, axis=1, keepdims=True)
            g_logit = g_att * cache.att * (1.0 - cache.att)
            g_mi, gW, gb = dense.linear_vjp(
                cache.m_raw, params["phi_inf"]["W"], params["phi_inf"]["b"], g_logit
            )
            g_mraw = g_mraw + g_mi
            grads["phi_inf"] = {"W": gW, "b": gb}
        # m_raw = phi_e([h_i, h_j, r, a])
        grads["phi_e"], (g_e,) = self.phi_e.backward(params["phi_e"], cache.phi_e, g_mraw)
        H = self.in_features
        g_h += scatter.scatter_sum(g_e[:, :H], dst, N, backend=self.backend)  # h_i = h[dst]
        g_h += scatter.scatter_sum(g_e[:, H : 2 * H], src, N, backend=self.backend)  # h_j = h[src]
        g_diff += 2.0 * g_e[:, 2 * H][:, None] * cache.diff  # r = |diff|^2
        g_a = g_e[:, 2 * H + 1 :] if self.edge_features else None
        g_x += edge_vectors_vjp(graph, -g_diff)  # diff = -edge_vec
        return grads, g_h, g_x, g_v, g_a


# --- stack ------------------------------------------------------------------------------------


class EGNNCache(NamedTuple):
    h0: np.ndarray  # (N, in) input features
    layers: tuple  # EGNNLayerCache per layer
    h: np.ndarray  # (N, H) last hidden features


@dataclass(frozen=True)
class EGNN(Block):
    r"""egnn_clean's ``EGNN`` model: ``Lin(in -> H)``, ``num_layers`` x :class:`EGNNLayer`,
    ``Lin(H -> out)`` on the features; positions pass through every layer.

    ``forward(params, graph, h, x[, v][, edge_attr]) -> ((h_out, x_out), cache)``; the same ``v``
    (input velocity) and ``edge_attr`` feed every layer, so their gradients are summed over layers.
    Fields after ``num_layers`` are :class:`EGNNLayer` options.

    Params: ``{"W_in": (in, H), "b_in": (H,), "layers": {"0": EGNNLayer params, ...},
    "W_out": (H, out), "b_out": (out,)}``.
    """

    in_features: int
    hidden: int
    out_features: int
    num_layers: int = 4
    edge_features: int = 0
    flavour: str = "egnn_clean"
    activation: str | None = None
    attention: bool = False
    residual: bool = True
    coords_agg: str | None = None
    coords_weight: float = 1.0
    tanh: bool = False
    normalize: bool = False
    norm_eps: float | None = None
    clamp: object = _DEFAULT
    velocity: bool = False
    coord_init_gain: float = 0.001
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.in_features, "EGNN.in_features", minimum=1)
        check_int(self.out_features, "EGNN.out_features", minimum=1)
        check_int(self.num_layers, "EGNN.num_layers", minimum=1)
        _ = self.layer  # validates the layer options

    @property
    def layer(self) -> EGNNLayer:
        return EGNNLayer(
            self.hidden,
            self.hidden,
            self.hidden,
            self.edge_features,
            self.flavour,
            self.activation,
            self.attention,
            self.residual,
            self.coords_agg,
            self.coords_weight,
            self.tanh,
            self.normalize,
            self.norm_eps,
            self.clamp,
            self.velocity,
            True,
            self.coord_init_gain,
            self.backend,
        )

    def _shapes(self):
        H = self.hidden
        return {
            "W_in": (self.in_features, H),
            "b_in": (H,),
            "layers": {str(k): self.layer._shapes() for k in range(self.num_layers)},
            "W_out": (H, self.out_features),
            "b_out": (self.out_features,),
        }

    def init(self, rng: np.random.Generator) -> dict:
        H = self.hidden
        b1, b2 = 1.0 / np.sqrt(self.in_features), 1.0 / np.sqrt(H)
        return {
            "W_in": rng.uniform(-b1, b1, (self.in_features, H)),
            "b_in": rng.uniform(-b1, b1, H),
            "layers": {str(k): self.layer.init(rng) for k in range(self.num_layers)},
            "W_out": rng.uniform(-b2, b2, (H, self.out_features)),
            "b_out": rng.uniform(-b2, b2, self.out_features),
        }

    def forward(self, params, graph, h, x, *extra):
        if not isinstance(graph, Graph):
            raise TypeError(
                f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
            )
        check_params(params, self._shapes(), "EGNN")
        h = as_float64(h, "h", ndim=2)
        if h.shape != (graph.num_nodes, self.in_features):
            raise ValueError(
                f"h must have shape (num_nodes, {self.in_features}) = "
                f"({graph.num_nodes}, {self.in_features}); got {h.shape}"
            )
        x = as_float64(x, "x", ndim=2)
        if x.shape[0] != graph.num_nodes:
            raise ValueError(
                f"x must have shape (num_nodes, D) = ({graph.num_nodes}, D); got {x.shape}"
            )
        layer = self.layer
        v, edge_attr = layer._split_extra(extra, graph, x.shape[1])
        hk = dense.linear(h, params["W_in"], params["b_in"])
        caches = []
        for k in range(self.num_layers):
            (hk, x), c = layer._forward(params["layers"][str(k)], graph, hk, x, v, edge_attr)
            caches.append(c)
        h_out = dense.linear(hk, params["W_out"], params["b_out"])
        return (h_out, x), EGNNCache(h, tuple(caches), hk)

    def backward(self, params, cache: EGNNCache, grad_out):
        layer = self.layer
        gh_out, gx = grad_out
        N = cache.h.shape[0]
        gh_out = (
            np.zeros((N, self.out_features)) if gh_out is None else np.asarray(gh_out, np.float64)
        )
        gh, gW_out, gb_out = dense.linear_vjp(cache.h, params["W_out"], params["b_out"], gh_out)
        g_v = g_a = None
        g_layers = {}
        for k in reversed(range(self.num_layers)):
            g_layers[str(k)], gh, gx, gv_k, ga_k = layer._backward(
                params["layers"][str(k)], cache.layers[k], (gh, gx)
            )
            g_v = gv_k if g_v is None else g_v + gv_k
            g_a = ga_k if g_a is None else g_a + ga_k
        g_h0, gW_in, gb_in = dense.linear_vjp(cache.h0, params["W_in"], params["b_in"], gh)
        grads = {"W_in": gW_in, "b_in": gb_in, "layers": g_layers, "W_out": gW_out, "b_out": gb_out}
        gi = (g_h0, gx)
        if self.velocity:
            gi += (g_v,)
        if self.edge_features:
            gi += (g_a,)
        return grads, gi
