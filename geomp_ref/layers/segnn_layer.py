r"""One SEGNN message-passing layer (Brandstetter et al., ICLR 2022, eqs. 6-8).

.. math::

    m_{ij} &= G_{W_2}\big(G_{W_1}([h_i, h_j, s_{ij}] \otimes a_{ij}) \otimes a_{ij}\big),
    \qquad m_i = \sum_{j} m_{ij},\\
    h_i' &= \mathrm{N}\Big(h_i + T_{W_4}\big(G_{W_3}([h_i, m_i] \otimes a_i) \otimes a_i\big)\Big),

receiver i, sender j; :math:`G` the gated and :math:`T` the plain steerable layer
(:mod:`geomp_ref.layers.segnn_blocks`), :math:`a_{ij}`, :math:`a_i`, :math:`s_{ij}` the edge
attributes, node attributes and extra message features (inputs of the layer; the network
:class:`~geomp_ref.layers.segnn.SEGNN` computes or receives them once for all layers),
:math:`\mathrm{N}` the identity or :class:`~geomp_ref.layers.segnn_norm.InstanceNorm`.

Backward (reverse line order): the norm, :math:`T_{W_4}`, :math:`G_{W_3}` (whose input cotangent
splits into :math:`\bar h_i` and :math:`\bar m_i`), the sum's gather, the two message layers,
then the message input's cotangent splits into :math:`\bar h_i` (summed at receivers),
:math:`\bar h_j` (summed at senders) and :math:`\bar s_{ij}`; :math:`\bar a_{ij}` and
:math:`\bar a_i` collect both layers that read them (``derivations/segnn.py``).

On non-numpy backends the first message layer never forms the edge input
:math:`[h_i, h_j, s_{ij}]`: :meth:`~geomp_ref.layers.O3TensorProduct.forward_gathered` contracts
its weights with the node rows and couples the result with :math:`a_{ij}` per edge (same
function, other rounding order: 1e-13 relative to the NumPy backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .. import o3
from .._validate import (
    as_rng,
    check_cache,
    check_choice,
    check_graph,
    check_params,
    edge_array,
    node_array,
)
from .._validate import grad_out as _grad_out
from ..o3.activations import NORMALIZE_ACT
from ..ops import scatter
from .base import Block, check_backend, check_optional
from .segnn_blocks import O3TensorProduct, O3TensorProductGate, _irreps, check_mode
from .segnn_norm import InstanceNorm

__all__ = ["NORMS", "SEGNNLayer", "SEGNNLayerCache", "check_hidden"]

NORMS = (None, "instance")


def check_hidden(hid, name: str) -> None:
    """Hidden irreps must start with ``0e`` scalars: the swish gates pass that block through
    SiLU (neither even nor odd) and gate every later irrep copy with it."""
    if len(hid) == 0 or hid[0].ir != o3.Irrep("0e"):
        raise ValueError(f"{name} must start with 0e scalars (SEGNN's gates pass the first block "
                         f"through SiLU and gate the rest), e.g. '16x0e+8x1o'; got {hid}")


class SEGNNLayerCache(NamedTuple):
    """``graph``, the caches of the four steerable layers, and ``feature_norm`` (None without
    it)."""

    graph: Any
    msg1: Any
    msg2: Any
    upd1: Any
    upd2: Any
    feature_norm: Any


@dataclass(frozen=True)
class SEGNNLayer(Block):
    r"""One SEGNN message-passing layer (module docstring, eqs. 6-8).

    Parameters
    ----------
    irreps_hidden : Irreps or str
        Features :math:`h` (first block must be ``0e`` scalars, e.g. ``"32x0e+32x1o"``).
    irreps_edge_attr : Irreps or str
        Edge attributes :math:`a_{ij}` (e.g. the harmonics ``"1x0e+1x1o"``).
    irreps_node_attr : Irreps or str, optional
        Node attributes :math:`a_i` (default: ``irreps_edge_attr``).
    additional_message_irreps : Irreps or str, optional
        Extra message features :math:`s_{ij}` (e.g. ``"1x0e"``, ``"2x0e"``); None: none.
    norm : {None, 'instance'}
    mode : {'corrected', 'reference'}
    act_constants : {'e3nn', 'exact', 'none'}
        Gate constants (``'e3nn'`` is what the published code gets from e3nn).
    backend : str

    Notes
    -----
    ``forward(params, graph, h, edge_attr, node_attr, message_features=None) -> (h', cache)``
    with ``message_features`` given exactly when ``additional_message_irreps`` is set;
    ``backward(params, cache, grad_out) -> (grads, (grad_h, grad_edge_attr, grad_node_attr,
    grad_message_features or None))``. Params ``{"msg1", "msg2", "upd1", "upd2"[,
    "feature_norm"]}`` (the published ``message_layer_1/2``, ``update_layer_1/2``,
    ``feature_norm``).
    """

    irreps_hidden: Any
    irreps_edge_attr: Any = "1x0e+1x1o"
    irreps_node_attr: Any = None
    additional_message_irreps: Any = None
    norm: Any = None
    mode: str = "corrected"
    act_constants: str = "e3nn"
    backend: str = "numpy"
    msg1: Any = field(init=False, repr=False, compare=False)
    msg2: Any = field(init=False, repr=False, compare=False)
    upd1: Any = field(init=False, repr=False, compare=False)
    upd2: Any = field(init=False, repr=False, compare=False)
    feature_norm: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        owner = "SEGNNLayer"
        hid = _irreps(self.irreps_hidden, f"{owner}.irreps_hidden")
        check_hidden(hid, f"{owner}.irreps_hidden")
        edge = _irreps(self.irreps_edge_attr, f"{owner}.irreps_edge_attr")
        node = edge if self.irreps_node_attr is None else _irreps(
            self.irreps_node_attr, f"{owner}.irreps_node_attr")
        add = None if self.additional_message_irreps is None else _irreps(
            self.additional_message_irreps, f"{owner}.additional_message_irreps")
        for name, value in (("irreps_hidden", hid), ("irreps_edge_attr", edge),
                            ("irreps_node_attr", node), ("additional_message_irreps", add)):
            put(self, name, value)
        check_choice(self.norm, f"{owner}.norm", NORMS)
        check_mode(self.mode, owner)
        check_choice(self.act_constants, f"{owner}.act_constants", NORMALIZE_ACT)
        check_backend(self.backend, owner)
        msg_in = (hid + hid + (add if add is not None else o3.Irreps(""))).simplify()
        kw = {"mode": self.mode, "act_constants": self.act_constants, "backend": self.backend}
        put(self, "msg1", O3TensorProductGate(msg_in, hid, edge, **kw))
        put(self, "msg2", O3TensorProductGate(hid, hid, edge, **kw))
        put(self, "upd1", O3TensorProductGate((hid + hid).simplify(), hid, node, **kw))
        put(self, "upd2", O3TensorProduct(hid, hid, node, mode=self.mode))
        put(self, "feature_norm", InstanceNorm(hid, mode=self.mode, backend=self.backend)
            if self.norm == "instance" else None)

    def param_shapes(self) -> dict:
        shapes = {k: getattr(self, k).param_shapes() for k in ("msg1", "msg2", "upd1", "upd2")}
        if self.feature_norm is not None:
            shapes["feature_norm"] = self.feature_norm.param_shapes()
        return shapes

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        params = {k: getattr(self, k).init(rng) for k in ("msg1", "msg2", "upd1", "upd2")}
        if self.feature_norm is not None:
            params["feature_norm"] = self.feature_norm.init(rng)
        return params

    def forward(self, params, graph, h, edge_attr, node_attr, message_features=None):
        check_params(params, self.param_shapes(), "SEGNNLayer", exact=True)
        graph = check_graph(graph)
        d = self.irreps_hidden.dim
        h = node_array(h, "h", graph, d)
        edge_attr = edge_array(edge_attr, "edge_attr", graph, self.irreps_edge_attr.dim)
        node_attr = node_array(node_attr, "node_attr", graph, self.irreps_node_attr.dim)
        add = self.additional_message_irreps
        check_optional(message_features, "message_features", add is not None,
                       f"additional_message_irreps={add}", "SEGNNLayer")
        s = None if add is None else edge_array(message_features, "message_features", graph,
                                                add.dim)
        # the message input [h_i, h_j, s_ij] as segments: formed literally on the numpy backend,
        # weights first on the node rows elsewhere (O3TensorProduct.forward_gathered)
        segs = [("dst", h), ("src", h)] + ([] if s is None else [("edge", s)])
        m1, c_msg1 = self.msg1.forward_gathered(params["msg1"], graph, segs, edge_attr)
        m_ij, c_msg2 = self.msg2.forward(params["msg2"], m1, edge_attr)
        m_i = scatter.aggregate(graph, m_ij, backend=self.backend)
        u1, c_upd1 = self.upd1.forward(params["upd1"], np.concatenate([h, m_i], axis=1),
                                       node_attr)
        u2, c_upd2 = self.upd2.forward(params["upd2"], u1, node_attr)
        out = h + u2
        c_norm = None
        if self.feature_norm is not None:
            out, c_norm = self.feature_norm.forward(params["feature_norm"], graph, out)
        return out, SEGNNLayerCache(graph, c_msg1, c_msg2, c_upd1, c_upd2, c_norm)

    def backward(self, params, cache: SEGNNLayerCache, grad_out):
        check_cache(cache, SEGNNLayerCache, "SEGNNLayer")
        graph = cache.graph
        d = self.irreps_hidden.dim
        g = _grad_out(grad_out, (graph.num_nodes, d), "SEGNNLayer")
        grads = {}
        # reverses `out = feature_norm(out)`
        if self.feature_norm is not None:
            grads["feature_norm"], (g,) = self.feature_norm.backward(params["feature_norm"],
                                                                     cache.feature_norm, g)
        # reverses `out = h + u2`, `u2 = upd2(u1, a_i)`, `u1 = upd1([h, m_i], a_i)`
        grads["upd2"], (g_u1, g_na) = self.upd2.backward(params["upd2"], cache.upd2, g)
        grads["upd1"], (g_cat, g_na1) = self.upd1.backward(params["upd1"], cache.upd1, g_u1)
        g_h = g + g_cat[:, :d]
        g_na = g_na + g_na1
        # reverses `m_i = aggregate(m_ij)`
        g_m = scatter.aggregate_vjp(graph, None, g_cat[:, d:], backend=self.backend)
        # reverses `m_ij = msg2(m1, a_ij)`
        grads["msg2"], (g_m1, g_ea) = self.msg2.backward(params["msg2"], cache.msg2, g_m)
        # reverses `m1 = msg1([h_i, h_j, s_ij], a_ij)`: h's rows summed over the edges reading them
        grads["msg1"], (g_segs, g_ea1) = self.msg1.backward_gathered(params["msg1"], cache.msg1,
                                                                     g_m1)
        g_h = g_h + g_segs[0] + g_segs[1]
        g_msg = None if self.additional_message_irreps is None else g_segs[2]
        return grads, (g_h, g_ea + g_ea1, g_na, g_msg)
