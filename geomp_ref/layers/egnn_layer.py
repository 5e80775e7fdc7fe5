r"""One E(n)-equivariant graph layer (Satorras, Hoogeboom, Welling 2021), every published variant.

For every edge j -> i (receiver i = ``dst``, sender j = ``src``):

.. math::

    \Delta_{ij} = x_i - x_j = -\,\texttt{edge\_vec}, \qquad r_{ij} = \lVert \Delta_{ij} \rVert^2,

    m_{ij} = \phi_e([h_i, h_j, r_{ij}, a_{ij}]) \quad (\text{eq. 3}), \qquad
    m_{ij} \leftarrow m_{ij}\, \sigma(\phi_{inf}(m_{ij})) \ (\texttt{attention}),

    t_{ij} = \mathrm{clamp}\big(s\, u_{ij}\, w_{ij}\big), \qquad
    w_{ij} = \mathrm{clamp}_w\big(\phi_x(m_{ij})\big), \qquad
    u_{ij} = \Delta_{ij} \ \text{or}\ \Delta_{ij} / (\lVert\Delta_{ij}\rVert + \epsilon)\
    (\texttt{normalize}; \max(\lVert\Delta_{ij}\rVert, \epsilon) \text{ with norm\_mode="max"}),

    x'_i = x_i + C\, \mathrm{AGG}_j\, t_{ij}\ \ (\text{eq. 4; AGG = mean or sum})
    \ [+\ \phi_v(h_i)\, v_i\ \ (\texttt{velocity}, \text{eq. 7})],

    h'_i = h_i + \phi_h([h_i, \mathrm{AGG}^m_j\, m_{ij}, n_i]) \quad (\text{eqs. 5-6; residual;
    } n_i = \texttt{node\_attr};\ \mathrm{AGG}^m = \text{sum (eq. 5) or mean}).

:math:`\phi_e` = Lin -> act -> Lin -> act; :math:`\phi_x` = Lin -> act -> Lin(no bias) [-> tanh];
:math:`\phi_h` = Lin -> act -> Lin; :math:`\phi_v` = Lin -> act -> Lin;
:math:`\phi_{inf}` = Lin(H -> 1). The learned scale :math:`s` (``coords_scale``) and the weight
clamp :math:`\mathrm{clamp}_w` (``weight_clamp``) are off by default (:math:`s = 1`, no bound).
Order inside a layer (as in the published code): messages, coordinate update (pre-update
:math:`\Delta`), node update; the velocity term uses the pre-update :math:`h_i` and the *input*
velocity (a layer never updates v).

The flavours of vgsatorras/egnn, the options beyond it (egnn-pytorch and others) and the
derivatives at the non-smooth points (clamps, normalisation at coincident points, self-loops) are
set out in :mod:`geomp_ref.layers.egnn_parts`.

Squared lengths :math:`r_{ij}` above the float64 range (:math:`\lVert\Delta\rVert > 1.3\cdot
10^{154}`) raise a ``ValueError`` naming ``x``: the messages would be NaN.

Torch names (vgsatorras/egnn), weights transposed to (in, out): ``phi_e`` = ``edge_mlp.0`` /
``edge_mlp.2`` (``W0, b0, W1, b1``); ``phi_inf`` = ``att_mlp.0``; ``phi_x`` = ``coord_mlp.0``
(``W0, b0``) / ``coord_mlp.2`` (``W1``; ``b1`` only with ``coord_bias``); ``phi_h`` =
``node_mlp.0`` / ``node_mlp.2``; ``phi_v`` = ``coord_mlp_vel.0`` / ``coord_mlp_vel.2``.

Backward: reverse order of the forward lines; proof ``derivations/egnn.py``.

Reference: V. G. Satorras, E. Hoogeboom, M. Welling, "E(n) Equivariant Graph Neural Networks",
ICML 2021, eqs. (3)-(7); code github.com/vgsatorras/egnn (models/gcl.py, egnn_clean.py,
qm9/models.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import (
    as_rng,
    check_bool,
    check_cache,
    check_choice,
    check_graph,
    check_int,
    check_positive,
    edge_array,
    grad_outs,
    node_array,
    positions,
)
from ..graph import edge_vectors
from ..ops import activations, edge_filters, geometry, scatter
from .base import Block, check_backend, check_optional, check_params, check_real
from .egnn_parts import (
    FLAVOUR_DEFAULT,
    FLAVOURS,
    EGNNAttentionCache,
    EGNNCoordCache,
    EGNNLayerCache,
    EGNNVelocityCache,
    coord_update,
    coord_update_vjp,
    split_first_product,
    split_first_product_vjp,
)
from .mlp import MLP

__all__ = ["EGNNAttentionCache", "EGNNCoordCache", "EGNNLayer", "EGNNLayerCache",
           "EGNNVelocityCache"]

@dataclass(frozen=True)
class EGNNLayer(Block):
    r"""One EGNN layer: ``forward(params, graph, h, x, v=None, edge_attr=None, node_attr=None)
    -> ((h', x'), cache)``.

    Parameters
    ----------
    in_features : int
        Width of h.
    hidden : int
        Width of messages and hidden layers.
    out_features : int, optional
        Width of h' (default ``in_features``; must equal it when ``residual``).
    edge_features : int
        Width of ``edge_attr`` (0: no edge attributes, ``edge_attr=None``).
    node_attr_features : int
        Width of ``node_attr`` concatenated into :math:`\phi_h`'s input (0: ``node_attr=None``;
        QM9's ``E_GCL_mask`` passes the input one-hot features here).
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
        :math:`\epsilon > 0` (default by flavour: 1 for gcl, 1e-8 for egnn_clean).
    detach_norm : bool
        With ``normalize``: differentiate as if :math:`\lVert\Delta\rVert` were a constant
        (egnn_clean's ``.detach()``); default False, the true derivative.
    clamp : float or None, optional
        Elementwise bound on :math:`t_{ij}` (default by flavour: 100 for gcl, None for egnn_clean).
    velocity : bool
        gcl's ``E_GCL_vel``: :math:`x' \mathrel{+}= \phi_v(h)\, v` (then ``v`` is an input).
    update_coords : bool
        False gives the invariant QM9 layer (``x' = x``, no :math:`\phi_x`).
    coord_init_gain : float
        xavier-uniform gain of :math:`\phi_x`'s last layer in :meth:`init` (the code uses 0.001).
    backend : str
    edge_hidden, coord_hidden, node_hidden : int, optional
        Hidden widths of :math:`\phi_e`, :math:`\phi_x`, :math:`\phi_h` (default ``hidden``,
        the message width).
    coord_bias : bool
        A bias on :math:`\phi_x`'s last layer (default False, as vgsatorras/egnn).
    messages_agg : {"sum", "mean"}
        Aggregation of the messages into :math:`\phi_h` (default ``"sum"``, eq. 5; the mean over
        incoming edges gives 0 at isolated nodes).
    norm_mode : {"add", "max"}
        With ``normalize``: :math:`\Delta/(\lVert\Delta\rVert + \epsilon)` (default) or
        :math:`\Delta/\max(\lVert\Delta\rVert, \epsilon)`.
    coords_scale : float or None
        A learned scalar :math:`s` multiplying the direction :math:`u_{ij}`; the value is its
        initial value in :meth:`init` (``None``: no scale, :math:`s = 1`). Its gradient is 0 when
        ``update_coords=False``.
    weight_clamp : float or None
        Bound on the scalar weight :math:`w_{ij} = \phi_x(m_{ij})` before it multiplies the
        direction (``None``: no bound).

    Params: ``{"phi_e": MLP(2H_in+1+D_e, H_e, H), "phi_x": MLP(H, H_x, 1; last without bias),
    "phi_h": MLP(H_in+H+D_n, H_h, H_out)}`` plus ``"phi_inf": MLP(H, 1)`` (attention),
    ``"phi_v": MLP(H_in, H, 1)`` (velocity) and ``"coords_scale": (1,)``; no ``phi_x`` when
    ``update_coords=False``.

    ``backward(params, cache, (grad_h', grad_x'))`` (``None`` = zero cotangent) returns
    ``(grads, (grad_h, grad_x, grad_v, grad_edge_attr, grad_node_attr))``, ``None`` for inputs
    that were ``None``.

    Notes
    -----
    h' is E(n)-invariant, x' E(n)-equivariant, v transforms as a vector. No input raises for
    coincident atoms (see the module docstring for the derivatives there).
    """

    in_features: int
    hidden: int
    out_features: int | None = None
    edge_features: int = 0
    node_attr_features: int = 0
    flavour: str = "gcl"
    activation: str | None = None
    attention: bool = False
    residual: bool = True
    coords_agg: str | None = None
    coords_weight: float = 1.0
    tanh: bool = False
    normalize: bool = False
    norm_eps: float | None = None
    detach_norm: bool = False
    clamp: object = FLAVOUR_DEFAULT
    velocity: bool = False
    update_coords: bool = True
    coord_init_gain: float = 0.001
    backend: str = "numpy"
    edge_hidden: int | None = None
    coord_hidden: int | None = None
    node_hidden: int | None = None
    coord_bias: bool = False
    messages_agg: str = "sum"
    norm_mode: str = "add"
    coords_scale: float | None = None
    weight_clamp: float | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        check_int(self.in_features, "EGNNLayer.in_features", minimum=1)
        check_int(self.hidden, "EGNNLayer.hidden", minimum=1)
        check_int(self.edge_features, "EGNNLayer.edge_features", minimum=0)
        check_int(self.node_attr_features, "EGNNLayer.node_attr_features", minimum=0)
        check_choice(self.flavour, "EGNNLayer.flavour", tuple(FLAVOURS))
        fl = FLAVOURS[self.flavour]
        if self.out_features is None:
            set_(self, "out_features", self.in_features)
        check_int(self.out_features, "EGNNLayer.out_features", minimum=1)
        for name in ("attention", "residual", "tanh", "normalize", "detach_norm", "velocity",
                     "update_coords", "coord_bias"):
            check_bool(getattr(self, name), f"EGNNLayer.{name}")
        for name in ("edge_hidden", "coord_hidden", "node_hidden"):
            if getattr(self, name) is None:
                set_(self, name, self.hidden)
            check_int(getattr(self, name), f"EGNNLayer.{name}", minimum=1)
        check_choice(self.messages_agg, "EGNNLayer.messages_agg", ("sum", "mean"))
        check_choice(self.norm_mode, "EGNNLayer.norm_mode", ("add", "max"))
        if self.norm_mode != "add" and not self.normalize:
            raise ValueError("EGNNLayer.norm_mode='max' needs normalize=True (it chooses how the "
                             "difference is normalised)")
        if self.coords_scale is not None:
            set_(self, "coords_scale", check_real(self.coords_scale,
                                                  "EGNNLayer.coords_scale (or None)"))
        if self.weight_clamp is not None:
            set_(self, "weight_clamp", check_positive(self.weight_clamp,
                                                      "EGNNLayer.weight_clamp (or None)"))
        if self.residual and self.out_features != self.in_features:
            raise ValueError(
                "EGNNLayer.out_features must equal in_features when residual=True; got "
                f"{self.out_features} != {self.in_features}"
            )
        for name in ("activation", "coords_agg", "norm_eps"):
            if getattr(self, name) is None:
                set_(self, name, fl[name])
        if isinstance(self.clamp, str) and self.clamp == FLAVOUR_DEFAULT:
            set_(self, "clamp", fl["clamp"])
        check_choice(self.activation, "EGNNLayer.activation", activations.NAMES)
        check_choice(self.coords_agg, "EGNNLayer.coords_agg", ("mean", "sum"))
        set_(self, "norm_eps", check_positive(self.norm_eps, "EGNNLayer.norm_eps"))
        if self.clamp is not None:
            set_(self, "clamp", check_positive(self.clamp, "EGNNLayer.clamp (or None)"))
        set_(self, "coords_weight", check_real(self.coords_weight, "EGNNLayer.coords_weight"))
        check_positive(self.coord_init_gain, "EGNNLayer.coord_init_gain")
        if self.detach_norm and not self.normalize:
            raise ValueError("EGNNLayer.detach_norm=True needs normalize=True (it changes how the "
                             "norm of the normalised difference is differentiated)")
        check_backend(self.backend, "EGNNLayer")
        H, act = self.hidden, self.activation
        d_e = 2 * self.in_features + 1 + self.edge_features
        d_h = self.in_features + H + self.node_attr_features
        be = self.backend  # the MLPs' activations run on the layer's backend too
        set_(self, "phi_e", MLP((d_e, self.edge_hidden, H), act, activate_last=True, backend=be))
        set_(self, "phi_h", MLP((d_h, self.node_hidden, self.out_features), act, backend=be))
        set_(self, "phi_x", MLP((H, self.coord_hidden, 1), act, bias=(True, self.coord_bias),
                                backend=be) if self.update_coords else None)
        set_(self, "phi_inf", MLP((H, 1), "sigmoid", activate_last=True, backend=be)
             if self.attention else None)
        set_(self, "phi_v", MLP((self.in_features, H, 1), act, backend=be)
             if self.velocity else None)

    def _children(self):
        names = ("phi_e", "phi_h", "phi_x", "phi_inf", "phi_v")  # init draws in this order
        return [(n, getattr(self, n)) for n in names if getattr(self, n) is not None]

    def param_shapes(self) -> dict:
        shapes = {name: child.param_shapes() for name, child in self._children()}
        if self.coords_scale is not None:
            shapes["coords_scale"] = (1,)
        return shapes

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        p = {name: child.init(rng) for name, child in self._children()}
        if self.update_coords:
            # the last coordinate layer: xavier-uniform with a small gain (torch code: 0.001)
            H = self.coord_hidden
            bound = self.coord_init_gain * np.sqrt(6.0 / (H + 1))
            p["phi_x"]["W1"] = rng.uniform(-bound, bound, (H, 1))
        if self.coords_scale is not None:
            p["coords_scale"] = np.full(1, self.coords_scale)
        return p

    def forward(self, params, graph, h, x, v=None, edge_attr=None, node_attr=None):
        check_params(params, self.param_shapes(), "EGNNLayer", exact=True)
        check_graph(graph)
        h = node_array(h, "h", graph, self.in_features)
        x = positions(x, graph, name="x")
        check_optional(v, "v", self.velocity, "velocity=True", "EGNNLayer")
        check_optional(edge_attr, "edge_attr", self.edge_features > 0, "edge_features > 0",
                       "EGNNLayer")
        check_optional(node_attr, "node_attr", self.node_attr_features > 0,
                       "node_attr_features > 0", "EGNNLayer")
        v = None if v is None else node_array(v, "v", graph, x.shape[1])
        edge_attr = (None if edge_attr is None
                     else edge_array(edge_attr, "edge_attr", graph, self.edge_features))
        node_attr = (None if node_attr is None
                     else node_array(node_attr, "node_attr", graph, self.node_attr_features))
        src, dst = graph.src, graph.dst
        diff = -edge_vectors(graph, x)  # x_i - x_j: EGNN's sign is opposite to edge_vec
        r = geometry.edge_sqlength(diff, name="x")  # raises where |x_i - x_j|^2 overflows
        edge_in = None
        if self.backend == "numpy":
            parts = [h[dst], h[src], r[:, None]] + ([edge_attr] if edge_attr is not None else [])
            m, c_e = self.phi_e.forward(params["phi_e"], np.concatenate(parts, axis=1))
        else:
            z0 = split_first_product(params["phi_e"]["W0"], graph, h, r, edge_attr,
                                     self.backend)
            m, c_e = self.phi_e.forward_from_first(params["phi_e"], z0)
            edge_in = (r, edge_attr)
        c_att = None
        if self.attention:
            att, c_inf = self.phi_inf.forward(params["phi_inf"], m)
            c_att = EGNNAttentionCache(m, att, c_inf)
            m = m * att
        c_x = None
        x_new = x
        if self.update_coords:
            x_new, c_x = coord_update(self, params, graph, m, diff, x)
        c_v = None
        if self.velocity:
            pv, c_phi_v = self.phi_v.forward(params["phi_v"], h)
            x_new = x_new + pv * v
            c_v = EGNNVelocityCache(c_phi_v, pv, v)
        if self.messages_agg == "mean":
            agg_m = scatter.aggregate_mean(graph, m, backend=self.backend)
        else:
            agg_m = scatter.aggregate(graph, m, backend=self.backend)
        node_in = [h, agg_m] + ([node_attr] if node_attr is not None else [])
        dh, c_h = self.phi_h.forward(params["phi_h"], np.concatenate(node_in, axis=1))
        h_new = h + dh if self.residual else dh
        cache = EGNNLayerCache(graph, h, diff, c_e, c_att, m, c_x, c_v, c_h, edge_in)
        return (h_new, x_new), cache

    def backward(self, params, cache: EGNNLayerCache, grad_out):
        check_cache(cache, EGNNLayerCache, "EGNNLayer")
        graph = cache.graph
        src, dst, N = graph.src, graph.dst, graph.num_nodes
        D, H = cache.diff.shape[1], self.in_features
        gh_new, gx_new = grad_outs(grad_out, ((N, self.out_features), (N, D)), "EGNNLayer")
        grads = {}
        # h_new = h + phi_h([h, agg_m, node_attr])
        g_h = gh_new.copy() if self.residual else np.zeros((N, H))
        grads["phi_h"], (g_in,) = self.phi_h.backward(params["phi_h"], cache.phi_h, gh_new)
        g_h += g_in[:, :H]
        g_na = g_in[:, H + self.hidden:] if self.node_attr_features else None
        # agg_m = sum_j m_ij (or the mean): its VJP gathers at the receivers
        g_agg_m = g_in[:, H:H + self.hidden]
        if self.messages_agg == "mean":
            g_m = scatter.aggregate_mean_vjp(graph, None, g_agg_m)
        else:
            g_m = g_agg_m[dst]
        g_x = gx_new.copy()
        g_v = None
        if self.velocity:
            c_v = cache.velocity
            # x_new += pv * v
            g_v = gx_new * c_v.pv
            g_pv = np.sum(gx_new * c_v.v, axis=1, keepdims=True)
            grads["phi_v"], (g_hv,) = self.phi_v.backward(params["phi_v"], c_v.phi_v, g_pv)
            g_h += g_hv
        g_diff = np.zeros_like(cache.diff)
        if self.coords_scale is not None and not self.update_coords:
            grads["coords_scale"] = np.zeros(1)  # declared, never used without the update
        if self.update_coords:
            g_mx, g_u_diff = coord_update_vjp(self, params, cache, gx_new, grads)
            g_m = g_m + g_mx
            g_diff += g_u_diff
        if self.attention:
            c_att = cache.attention
            # m = m_raw * att ; att = phi_inf(m_raw)
            g_att = np.sum(g_m * c_att.m_raw, axis=1, keepdims=True)
            grads["phi_inf"], (g_mi,) = self.phi_inf.backward(params["phi_inf"], c_att.phi_inf,
                                                              g_att)
            g_m = g_m * c_att.att + g_mi
        # m_raw = phi_e([h_i, h_j, r, a])
        if cache.edge_in is None:
            grads["phi_e"], (g_e,) = self.phi_e.backward(params["phi_e"], cache.phi_e, g_m)
            # h_i = h[dst], h_j = h[src]: sums at receivers and senders (the graph's CSR orders)
            g_h += scatter.aggregate(graph, g_e[:, :H], backend=self.backend)
            g_h += scatter.aggregate(graph.reverse(), g_e[:, H:2 * H], backend=self.backend)
            g_a = g_e[:, 2 * H + 1:] if self.edge_features else None
            g_r = g_e[:, 2 * H]
        else:
            rest, g_z0 = self.phi_e.backward_to_first(params["phi_e"], cache.phi_e, g_m)
            g_W0, g_he, g_r, g_a = split_first_product_vjp(params["phi_e"]["W0"], cache, g_z0,
                                                           self.backend)
            grads["phi_e"] = {k: g_W0 if k == "W0" else rest[k]
                              for k in self.phi_e.param_shapes()}
            g_h += g_he
        # r = |diff|^2
        g_diff += geometry.edge_sqlength_vjp(cache.diff, g_r, name="x")
        # diff = -edge_vec; on a self-loop diff = x_i - x_i is 0 whatever x is, so its VJP is
        # exactly 0 (adding and removing its cotangent, e.g. I/eps times g_u, would only leave
        # rounding behind)
        loops = src == dst
        if np.any(loops):
            g_diff[loops] = 0.0
        g_x += edge_filters.edge_vectors_vjp(graph, -g_diff, backend=self.backend)
        return grads, (g_h, g_x, g_v, g_a, g_na)

