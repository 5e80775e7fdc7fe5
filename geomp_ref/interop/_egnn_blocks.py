r"""Blocks for the vgsatorras/egnn modules whose ``forward`` differs from a library block's.

Each is a thin composite over library blocks (their public ``forward``/``backward`` only):

* :class:`EGCL`: one call of ``E_GCL`` / ``E_GCL_vel`` / ``E_GCL_mask``, which return
  ``(h', x', edge_attr)``: an :class:`~geomp_ref.layers.egnn_layer.EGNNLayer` plus the edge
  attributes passed through unchanged (returned only when the layer reads them; the published
  layer then returns its ``edge_attr`` argument, otherwise ``None``);
* :class:`EGNNPositions`: ``EGNN_vel`` (and the N-body script's gcl ``EGNN``), an
  :class:`~geomp_ref.layers.egnn.EGNN` stack without output embedding that returns only the
  positions;
* :class:`GCLNetwork`: the N-body ``GNN`` baseline on generic node features and edge attributes
  (``Lin -> L x GCL -> Lin-act-Lin``);
* :class:`RadialFieldNetwork`: ``RF_vel``, ``L x`` :class:`~geomp_ref.layers.radial_field.
  RadialFieldLayer` with the inputs in the published order ``(vel_norm, x, vel, edge_attr)``.

The caches keep each layer's output where the adapter's taps need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_rng,
    check_bool,
    check_cache,
    check_choice,
    check_graph,
    check_int,
    edge_array,
    grad_out,
    grad_outs,
    node_array,
)
from ..graph import Graph
from ..layers.base import Block, check_backend, check_params, check_real
from ..layers.egnn import EGNN, EGNNCache
from ..layers.egnn_layer import EGNNLayer, EGNNLayerCache
from ..layers.gcl import GCL, GCLStackParams
from ..layers.mlp import MLP, MLPCache
from ..layers.radial_field import RadialFieldLayer
from ..ops import activations

__all__ = [
    "EGCL",
    "EGCLCache",
    "EGNNPositions",
    "EGNNPositionsCache",
    "GCLNetwork",
    "GCLNetworkCache",
    "RadialFieldNetwork",
    "RadialFieldNetworkCache",
]


# --- one E_GCL call ----------------------------------------------------------------------------


class EGCLCache(NamedTuple):
    layer: EGNNLayerCache


@dataclass(frozen=True)
class EGCL(Block):
    """``forward(params, graph, h, x, v=None, edge_attr=None, node_attr=None) -> ((h', x'[,
    edge_attr]), cache)``: the layer, plus ``edge_attr`` itself as a third output when
    ``layer.edge_features > 0``.

    Params: ``{"layer": EGNNLayer params}``. ``backward(params, cache, grads) -> (grads, (grad_h,
    grad_x, grad_v, grad_edge_attr, grad_node_attr))``; the pass-through's cotangent is added to
    ``grad_edge_attr``.
    """

    layer: EGNNLayer

    def __post_init__(self):
        if not isinstance(self.layer, EGNNLayer):
            raise TypeError(f"EGCL.layer must be an EGNNLayer; got {type(self.layer).__name__}")

    def param_shapes(self) -> dict:
        return {"layer": self.layer.param_shapes()}

    def init(self, rng) -> dict:
        return {"layer": self.layer.init(as_rng(rng, "rng"))}

    def forward(self, params, graph, h, x, v=None, edge_attr=None, node_attr=None):
        check_params(params, self.param_shapes(), "EGCL", exact=True)
        check_graph(graph)
        (h_new, x_new), c = self.layer.forward(params["layer"], graph, h, x, v, edge_attr,
                                               node_attr)
        out = (h_new, x_new)
        if self.layer.edge_features:
            out += (edge_array(edge_attr, "edge_attr", graph, self.layer.edge_features).copy(),)
        return out, EGCLCache(c)

    def backward(self, params, cache: EGCLCache, grad_out):
        check_cache(cache, EGCLCache, "EGCL")
        c = cache.layer
        n, e = c.graph.num_nodes, c.graph.num_edges
        shapes = [(n, self.layer.out_features), (n, c.diff.shape[1])]
        if self.layer.edge_features:
            shapes.append((e, self.layer.edge_features))
        g = grad_outs(grad_out, shapes, "EGCL")
        # (h', x') = layer(h, x, v, edge_attr, node_attr)
        g_layer, (g_h, g_x, g_v, g_a, g_n) = self.layer.backward(params["layer"], c, g[:2])
        # the third output is edge_attr itself
        if self.layer.edge_features:
            g_a = g_a + g[2]
        return {"layer": g_layer}, (g_h, g_x, g_v, g_a, g_n)


# --- EGNN_vel: positions only ------------------------------------------------------------------


class EGNNPositionsCache(NamedTuple):
    egnn: EGNNCache


@dataclass(frozen=True)
class EGNNPositions(Block):
    """``forward(params, graph, h, x, v=None, edge_attr=None) -> (x_out, cache)``: an
    :class:`~geomp_ref.layers.egnn.EGNN` without output embedding, returning its positions.

    Params: ``{"egnn": EGNN params}``. ``backward(params, cache, grad_x_out) -> (grads, (grad_h,
    grad_x, grad_v, grad_edge_attr))``.
    """

    egnn: EGNN

    def __post_init__(self):
        if not isinstance(self.egnn, EGNN):
            raise TypeError(f"EGNNPositions.egnn must be an EGNN; got {type(self.egnn).__name__}")
        if self.egnn.out_features is not None:
            raise ValueError("EGNNPositions.egnn must have out_features=None (the features are "
                             "not an output)")
        if self.egnn.layer.node_attr_features:
            raise ValueError("EGNNPositions.egnn.layer must not read node_attr")

    def param_shapes(self) -> dict:
        return {"egnn": self.egnn.param_shapes()}

    def init(self, rng) -> dict:
        return {"egnn": self.egnn.init(as_rng(rng, "rng"))}

    def forward(self, params, graph, h, x, v=None, edge_attr=None):
        check_params(params, self.param_shapes(), "EGNNPositions", exact=True)
        check_graph(graph)
        (_, x_out), c = self.egnn.forward(params["egnn"], graph, h, x, v, edge_attr)
        return x_out, EGNNPositionsCache(c)

    def backward(self, params, cache: EGNNPositionsCache, grad_out_):
        check_cache(cache, EGNNPositionsCache, "EGNNPositions")
        c = cache.egnn
        g = grad_out(grad_out_, (c.h0.shape[0], c.layers[0].diff.shape[1]), "EGNNPositions")
        # (h_L, x_out) = egnn(h, x, v, edge_attr); h_L is not an output
        g_egnn, (g_h, g_x, g_v, g_a, _) = self.egnn.backward(params["egnn"], c, (None, g))
        return {"egnn": g_egnn}, (g_h, g_x, g_v, g_a)


# --- the N-body GNN baseline -------------------------------------------------------------------


class GCLNetworkCache(NamedTuple):
    graph: Graph
    embedding: MLPCache
    layers: tuple  # GCLCache per layer
    hs: tuple  # (N, H) output of every layer
    decoder: MLPCache


@dataclass(frozen=True)
class GCLNetwork(GCLStackParams, Block):
    r"""``forward(params, graph, nodes, edge_attr=None) -> (out, cache)``:
    ``h = Lin(in -> H)(nodes)``, ``num_layers`` x :class:`~geomp_ref.layers.gcl.GCL` (the same
    ``edge_attr`` for each), ``out = Lin(H -> H) -> act -> Lin(H -> out)``.

    Parameters
    ----------
    in_features, hidden, out_features : int
    edge_features : int
        Width of ``edge_attr`` (0: ``edge_attr=None``).
    num_layers : int
    activation : str
    attention, recurrent, bias : bool
        The GCL options.
    backend : str

    Params: ``{"embedding": MLP(in, H), "layers": {"0": GCL params, ...}, "decoder": MLP(H, H,
    out)}``. ``backward(params, cache, grad_out) -> (grads, (grad_nodes, grad_edge_attr))``.
    """

    in_features: int
    hidden: int
    out_features: int = 3
    edge_features: int = 1
    num_layers: int = 4
    activation: str = "silu"
    attention: bool = False
    recurrent: bool = True
    bias: bool = True
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.in_features, "GCLNetwork.in_features", minimum=1)
        check_int(self.hidden, "GCLNetwork.hidden", minimum=1)
        check_int(self.out_features, "GCLNetwork.out_features", minimum=1)
        check_int(self.edge_features, "GCLNetwork.edge_features", minimum=0)
        check_int(self.num_layers, "GCLNetwork.num_layers", minimum=1)
        check_choice(self.activation, "GCLNetwork.activation", activations.NAMES)
        for name in ("attention", "recurrent", "bias"):
            check_bool(getattr(self, name), f"GCLNetwork.{name}")
        check_backend(self.backend, "GCLNetwork")
        H, act = self.hidden, self.activation
        set_ = object.__setattr__
        set_(self, "embedding", MLP((self.in_features, H)))
        set_(self, "layer", GCL(H, H, H, self.edge_features, act, self.attention, self.recurrent,
                                self.bias, self.backend))
        set_(self, "decoder", MLP((H, H, self.out_features), act))

    def forward(self, params, graph, nodes, edge_attr=None):
        check_params(params, self.param_shapes(), "GCLNetwork", exact=True)
        check_graph(graph)
        nodes = node_array(nodes, "nodes", graph, self.in_features)
        if edge_attr is not None:
            edge_attr = edge_array(edge_attr, "edge_attr", graph, self.edge_features)
        h, c_emb = self.embedding.forward(params["embedding"], nodes)
        caches, hs = [], []
        for k in range(self.num_layers):
            h, c = self.layer.forward(params["layers"][str(k)], graph, h, edge_attr)
            caches.append(c)
            hs.append(h)
        out, c_dec = self.decoder.forward(params["decoder"], h)
        return out, GCLNetworkCache(graph, c_emb, tuple(caches), tuple(hs), c_dec)

    def backward(self, params, cache: GCLNetworkCache, grad_out_):
        check_cache(cache, GCLNetworkCache, "GCLNetwork")
        graph = cache.graph
        g = grad_out(grad_out_, (graph.num_nodes, self.out_features), "GCLNetwork")
        # out = decoder(h_L)
        g_dec, (g_h,) = self.decoder.backward(params["decoder"], cache.decoder, g)
        # h_{k+1} = gcl_k(h_k, edge_attr), k = L-1 .. 0; edge_attr feeds every layer
        g_layers, g_a = {}, None
        for k in reversed(range(self.num_layers)):
            g_layers[str(k)], (g_h, g_a_k) = self.layer.backward(
                params["layers"][str(k)], cache.layers[k], g_h
            )
            g_a = g_a_k if g_a is None else g_a + g_a_k
        # h_0 = embedding(nodes)
        g_emb, (g_nodes,) = self.embedding.backward(params["embedding"], cache.embedding, g_h)
        grads = {"embedding": g_emb, "layers": g_layers, "decoder": g_dec}
        return grads, (g_nodes, g_a)


# --- RF_vel --------------------------------------------------------------------------------------


class RadialFieldNetworkCache(NamedTuple):
    graph: Graph
    layers: tuple  # RadialFieldLayerCache per layer
    xs: tuple  # (N, D) output of every layer


@dataclass(frozen=True)
class RadialFieldNetwork(Block):
    r"""``forward(params, graph, v_norm, x, v, edge_attr=None) -> (x_out, cache)``: ``num_layers``
    x :class:`~geomp_ref.layers.radial_field.RadialFieldLayer` on the same ``v_norm``, ``v`` and
    ``edge_attr``.

    Parameters
    ----------
    hidden, edge_features, num_layers : int
    activation : str
    coords_weight : float
    backend : str

    Params: ``{"layers": {"0": RadialFieldLayer params, ...}}``. ``backward(params, cache,
    grad_x_out) -> (grads, (grad_v_norm, grad_x, grad_v, grad_edge_attr))``.
    """

    hidden: int = 64
    edge_features: int = 2
    num_layers: int = 4
    activation: str = "silu"
    coords_weight: float = 1.0
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.num_layers, "RadialFieldNetwork.num_layers", minimum=1)
        check_real(self.coords_weight, "RadialFieldNetwork.coords_weight")
        object.__setattr__(self, "layer", RadialFieldLayer(
            self.hidden, self.edge_features, self.activation, self.coords_weight,
            backend=self.backend))

    def param_shapes(self) -> dict:
        return {"layers": {str(k): self.layer.param_shapes() for k in range(self.num_layers)}}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {"layers": {str(k): self.layer.init(rng) for k in range(self.num_layers)}}

    def forward(self, params, graph, v_norm, x, v, edge_attr=None):
        check_params(params, self.param_shapes(), "RadialFieldNetwork", exact=True)
        check_graph(graph)
        caches, xs = [], []
        for k in range(self.num_layers):
            x, c = self.layer.forward(params["layers"][str(k)], graph, x, v_norm, v, edge_attr)
            caches.append(c)
            xs.append(x)
        return x, RadialFieldNetworkCache(graph, tuple(caches), tuple(xs))

    def backward(self, params, cache: RadialFieldNetworkCache, grad_out_):
        check_cache(cache, RadialFieldNetworkCache, "RadialFieldNetwork")
        g_x = grad_out(grad_out_, cache.xs[-1].shape, "RadialFieldNetwork")
        # x_{k+1} = layer_k(x_k, v_norm, v, edge_attr), k = L-1 .. 0; the others feed every layer
        g_layers, g_vn, g_v, g_a = {}, 0.0, 0.0, None
        for k in reversed(range(self.num_layers)):
            g_layers[str(k)], (g_x, g_vn_k, g_v_k, g_a_k) = self.layer.backward(
                params["layers"][str(k)], cache.layers[k], g_x
            )
            g_vn, g_v = g_vn + g_vn_k, g_v + g_v_k
            if g_a_k is not None:
                g_a = g_a_k if g_a is None else g_a + g_a_k
        return {"layers": g_layers}, (np.asarray(g_vn), g_x, np.asarray(g_v), g_a)
