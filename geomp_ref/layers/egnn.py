r"""The EGNN stack of egnn_clean: input embedding, L equal :class:`EGNNLayer` s, output embedding.

.. math::

    h^0 = h\, W_{in} + b_{in}, \qquad (h^{l+1}, x^{l+1}) = \mathrm{EGNNLayer}_l(h^l, x^l, v, a, n),
    \qquad h_{out} = h^L W_{out} + b_{out}

(``out_features=None`` drops the output embedding and returns :math:`h^L`, as ``EGNN_vel`` of
the N-body code, which returns only the positions). The same velocity ``v``, edge attributes
``a`` and node attributes ``n`` feed every layer, so their gradients are summed over the layers.
The layer and its options are documented in :mod:`geomp_ref.layers.egnn_layer`; this module
re-exports :class:`EGNNLayer`.

Torch names (egnn_clean ``EGNN``): ``W_in``/``b_in`` = ``embedding_in``, ``layers[k]`` =
``gcl_k``, ``W_out``/``b_out`` = ``embedding_out`` (weights transposed to (in, out)).

Backward: the output embedding, then the layers in reverse (each layer's public ``backward``),
then the input embedding; proof of the layer's VJP ``derivations/egnn.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_rng, check_cache, check_graph, check_int, grad_outs, node_array
from .._validate import positions as _positions
from ..ops import dense
from .base import Block, check_params, linear_init
from .egnn_layer import (
    EGNNAttentionCache,
    EGNNCoordCache,
    EGNNLayer,
    EGNNLayerCache,
    EGNNVelocityCache,
)

__all__ = [
    "EGNN",
    "EGNNAttentionCache",
    "EGNNCache",
    "EGNNCoordCache",
    "EGNNLayer",
    "EGNNLayerCache",
    "EGNNVelocityCache",
]


class EGNNCache(NamedTuple):
    h0: np.ndarray  # (N, in) input features
    layers: tuple  # EGNNLayerCache per layer
    h: np.ndarray  # (N, H) last hidden features


@dataclass(frozen=True)
class EGNN(Block):
    r"""egnn_clean's ``EGNN`` model: ``Lin(in -> H)``, ``num_layers`` x ``layer``,
    ``Lin(H -> out)`` on the features; positions pass through every layer.

    Parameters
    ----------
    in_features : int
        Width of the input features ``h``.
    out_features : int or None
        Width of the output features; ``None``: no output embedding (return the last hidden
        features).
    layer : EGNNLayer
        The layer spec repeated ``num_layers`` times (its own weights each time). Its
        ``in_features`` is H and must equal its ``out_features``.
    num_layers : int
        L >= 1.

    ``forward(params, graph, h, x, v=None, edge_attr=None, node_attr=None) -> ((h_out, x_out),
    cache)`` (the optional inputs as the layer's); ``backward(params, cache, (grad_h_out,
    grad_x_out)) -> (grads, (grad_h, grad_x, grad_v, grad_edge_attr, grad_node_attr))``.

    Params: ``{"W_in": (in, H), "b_in": (H,), "layers": {"0": EGNNLayer params, ...}}`` plus
    ``"W_out": (H, out), "b_out": (out,)`` when ``out_features`` is set.

    Example: egnn_clean's ``EGNN(in_node_nf=4, hidden_nf=32, out_node_nf=3, in_edge_nf=2)`` is
    ``EGNN(4, 3, EGNNLayer(32, 32, edge_features=2, flavour="egnn_clean"), num_layers=4)``.
    """

    in_features: int
    out_features: int | None
    layer: EGNNLayer
    num_layers: int = 4

    def __post_init__(self):
        check_int(self.in_features, "EGNN.in_features", minimum=1)
        if self.out_features is not None:
            check_int(self.out_features, "EGNN.out_features", minimum=1)
        check_int(self.num_layers, "EGNN.num_layers", minimum=1)
        if not isinstance(self.layer, EGNNLayer):
            raise TypeError(f"EGNN.layer must be an EGNNLayer; got {type(self.layer).__name__}")
        if self.layer.out_features != self.layer.in_features:
            raise ValueError(
                "EGNN.layer must map H -> H features to be stacked; got in_features="
                f"{self.layer.in_features}, out_features={self.layer.out_features}"
            )

    @property
    def hidden(self) -> int:
        return self.layer.in_features

    def param_shapes(self) -> dict:
        H = self.hidden
        shapes = {
            "W_in": (self.in_features, H),
            "b_in": (H,),
            "layers": {str(k): self.layer.param_shapes() for k in range(self.num_layers)},
        }
        if self.out_features is not None:
            shapes.update(W_out=(H, self.out_features), b_out=(self.out_features,))
        return shapes

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        H = self.hidden
        W_in, b_in = linear_init(rng, self.in_features, H, name="EGNN.in_features x hidden")
        p = {
            "W_in": W_in,
            "b_in": b_in,
            "layers": {str(k): self.layer.init(rng) for k in range(self.num_layers)},
        }
        if self.out_features is not None:
            p["W_out"], p["b_out"] = linear_init(rng, H, self.out_features,
                                                 name="EGNN hidden x out_features")
        return p

    def forward(self, params, graph, h, x, v=None, edge_attr=None, node_attr=None):
        check_params(params, self.param_shapes(), "EGNN", exact=True)
        check_graph(graph)
        h = node_array(h, "h", graph, self.in_features)
        x = _positions(x, graph, name="x")
        hk = dense.linear(h, params["W_in"], params["b_in"])
        caches = []
        for k in range(self.num_layers):
            (hk, x), c = self.layer.forward(
                params["layers"][str(k)], graph, hk, x, v, edge_attr, node_attr
            )
            caches.append(c)
        h_out = hk
        if self.out_features is not None:
            h_out = dense.linear(hk, params["W_out"], params["b_out"])
        return (h_out, x), EGNNCache(h, tuple(caches), hk)

    def backward(self, params, cache: EGNNCache, grad_out):
        check_cache(cache, EGNNCache, "EGNN")
        N, H = cache.h.shape
        D = cache.layers[0].diff.shape[1]
        width = H if self.out_features is None else self.out_features
        gh_out, gx = grad_outs(grad_out, ((N, width), (N, D)), "EGNN")
        grads = {}
        # h_out = h W_out + b_out
        gh = gh_out
        if self.out_features is not None:
            gh, grads["W_out"], grads["b_out"] = dense.linear_vjp(
                cache.h, params["W_out"], params["b_out"], gh_out
            )
        # (h, x) = layer_k(h, x, v, a, n), k = L-1 .. 0; v, a, n feed every layer
        extra = [None, None, None]
        g_layers = {}
        for k in reversed(range(self.num_layers)):
            g_layers[str(k)], (gh, gx, *g_k) = self.layer.backward(
                params["layers"][str(k)], cache.layers[k], (gh, gx)
            )
            extra = [g if acc is None else acc + g for acc, g in zip(extra, g_k)]
        grads["layers"] = g_layers
        # h0 = h W_in + b_in
        g_h0, grads["W_in"], grads["b_in"] = dense.linear_vjp(
            cache.h0, params["W_in"], params["b_in"], gh
        )
        return grads, (g_h0, gx, *extra)
