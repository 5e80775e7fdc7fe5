r"""The charged N-body models of the EGNN paper (Satorras et al. 2021, Table 2), as library blocks.

Every model is ``forward(params, graph, x, v, charges) -> (x_pred, cache)``: positions ``x``
(N, 3), velocities ``v`` (N, 3) and charges (N, 1) of the input frame of B simulations batched
as one graph (complete graphs per simulation, as the published loader builds), and the predicted
positions (N, 3). ``backward(params, cache, grad_x_pred) -> (grads, (grad_x, grad_v,
grad_charges))``: charges are differentiated too (the exact derivative; the published script
treats them, like every input, as data). The input features (speeds, charge products, input-frame
squared distances) and their derivatives are described in :mod:`geomp_ref.models.nbody_features`.

====================  =================================================================  =====
model                 published (vgsatorras/egnn ``n_body_system/model.py``)             group
====================  =================================================================  =====
:class:`NBodyLinear`  ``Linear(6, 3)`` on ``[x, v]``                                     none
:class:`NBodyGNN`     ``GNN(input_dim=6, hidden_nf=64, n_layers=4, recurrent=True)``:    none
                      Lin(6->H), 4 x :class:`~geomp_ref.layers.gcl.GCL` (edge
                      attribute q_i q_j, SiLU), decoder Lin -> SiLU -> Lin(H->3)
:class:`NBodyRF`      ``RF_vel(hidden_nf=64, edge_attr_nf=2, act_fn=SiLU,                E3
                      n_layers=4)``: 4 x
                      :class:`~geomp_ref.layers.radial_field.RadialFieldLayer`
:class:`NBodyEGNN`    ``EGNN_vel(in_node_nf=1, in_edge_nf=2, hidden_nf=64,               E3
                      recurrent=True)``: h0 = Lin(1->H)(``|v|``), 4 x ``E_GCL_vel``
                      (:class:`~geomp_ref.layers.egnn_layer.EGNNLayer`, flavour "gcl",
                      SiLU, velocity, clamp 100, mean aggregation)
====================  =================================================================  =====

Params mirror the torch modules one to one (weights transposed to (in, out)); each class
docstring lists the torch names. :func:`make_model` and :func:`model_inputs` serve the
``geomp-ref nbody train`` command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_rng, check_bool, check_cache, check_choice, check_int
from .._validate import grad_out as _grad_out
from ..graph import Graph
from ..layers.base import Block, check_backend, check_params, check_real
from ..layers.egnn_layer import EGNNLayer
from ..layers.gcl import GCL, GCLStackParams
from ..layers.mlp import MLP, MLPCache
from ..layers.radial_field import RadialFieldLayer
from ..ops import activations
from . import nbody_features as F

__all__ = ["MODELS", "NBodyEGNN", "NBodyGNN", "NBodyLinear", "NBodyRF", "make_model",
           "model_inputs"]


def _check_sizes(self, owner):
    check_int(self.hidden, f"{owner}.hidden", minimum=1)
    check_int(self.num_layers, f"{owner}.num_layers", minimum=1)
    check_choice(self.activation, f"{owner}.activation", activations.NAMES)
    check_backend(self.backend, owner)


# --- Linear ------------------------------------------------------------------------------------


class NBodyLinearCache(NamedTuple):
    graph: Graph
    linear: MLPCache


@dataclass(frozen=True)
class NBodyLinear(Block):
    """``x_pred = [x, v] W + b``. Params ``{"linear": {"W0": (6, 3), "b0": (3,)}}`` = torch
    ``linear.weight.T``, ``linear.bias``. ``charges`` are read for the common signature only
    (their gradient is 0)."""

    def __post_init__(self):
        object.__setattr__(self, "linear", MLP((6, 3)))

    def param_shapes(self) -> dict:
        return {"linear": self.linear.param_shapes()}

    def init(self, rng) -> dict:
        return {"linear": self.linear.init(as_rng(rng, "rng"))}

    def forward(self, params, graph, x, v, charges):
        check_params(params, self.param_shapes(), "NBodyLinear", exact=True)
        x, v, charges = F.check_nbody_inputs(graph, x, v, charges)
        y, c = self.linear.forward(params["linear"], np.concatenate([x, v], axis=1))
        return y, NBodyLinearCache(graph, c)

    def backward(self, params, cache: NBodyLinearCache, grad_out):
        check_cache(cache, NBodyLinearCache, "NBodyLinear")
        n = cache.graph.num_nodes
        g = _grad_out(grad_out, (n, 3), "NBodyLinear")
        # y = linear([x, v])
        g_lin, (g_in,) = self.linear.backward(params["linear"], cache.linear, g)
        return {"linear": g_lin}, (g_in[:, :3], g_in[:, 3:], np.zeros((n, 1)))


# --- GNN ---------------------------------------------------------------------------------------


class NBodyGNNCache(NamedTuple):
    graph: Graph
    charges: np.ndarray  # (N, 1)
    embedding: MLPCache
    layers: tuple  # GCLCache per layer
    decoder: MLPCache


@dataclass(frozen=True)
class NBodyGNN(GCLStackParams, Block):
    r"""The GNN baseline: ``h = Lin(6->H)([x, v])``, ``num_layers`` x GCL with edge attribute
    :math:`q_i q_j`, ``x_pred = decoder(h)`` (not a displacement: the decoder outputs positions).

    Params: ``{"embedding": MLP(6, H), "layers": {"0": GCL params, ...}, "decoder": MLP(H, H, 3)}``
    = torch ``embedding.0``, ``gcl_k`` (``edge_mlp``, ``node_mlp``, ``att_mlp``), ``decoder.0`` /
    ``decoder.2``. ``recurrent=True`` is what ``main_nbody.py`` passes (the class default is
    False).
    """

    hidden: int = 64
    num_layers: int = 4
    activation: str = "silu"
    attention: bool = False
    recurrent: bool = True
    backend: str = "numpy"

    def __post_init__(self):
        _check_sizes(self, "NBodyGNN")
        check_bool(self.attention, "NBodyGNN.attention")
        check_bool(self.recurrent, "NBodyGNN.recurrent")
        H, act = self.hidden, self.activation
        object.__setattr__(self, "embedding", MLP((6, H)))
        object.__setattr__(self, "layer", GCL(H, H, H, edge_features=1, activation=act,
                                              attention=self.attention, recurrent=self.recurrent,
                                              backend=self.backend))
        object.__setattr__(self, "decoder", MLP((H, H, 3), act))

    def forward(self, params, graph, x, v, charges):
        check_params(params, self.param_shapes(), "NBodyGNN", exact=True)
        x, v, charges = F.check_nbody_inputs(graph, x, v, charges)
        a = F.charge_products(graph, charges)
        h, c_emb = self.embedding.forward(params["embedding"], np.concatenate([x, v], axis=1))
        caches = []
        for k in range(self.num_layers):
            h, c = self.layer.forward(params["layers"][str(k)], graph, h, a)
            caches.append(c)
        y, c_dec = self.decoder.forward(params["decoder"], h)
        return y, NBodyGNNCache(graph, charges, c_emb, tuple(caches), c_dec)

    def backward(self, params, cache: NBodyGNNCache, grad_out):
        check_cache(cache, NBodyGNNCache, "NBodyGNN")
        graph = cache.graph
        g = _grad_out(grad_out, (graph.num_nodes, 3), "NBodyGNN")
        # y = decoder(h)
        g_dec, (g_h,) = self.decoder.backward(params["decoder"], cache.decoder, g)
        # h = layer_k(h, a), k = L-1 .. 0
        g_layers, g_a = {}, np.zeros((graph.num_edges, 1))
        for k in reversed(range(self.num_layers)):
            g_layers[str(k)], (g_h, g_a_k) = self.layer.backward(
                params["layers"][str(k)], cache.layers[k], g_h
            )
            g_a = g_a + g_a_k
        # h = embedding([x, v])
        g_emb, (g_in,) = self.embedding.backward(params["embedding"], cache.embedding, g_h)
        # a = q_i q_j
        g_q = F.charge_products_vjp(graph, cache.charges, g_a)
        grads = {"embedding": g_emb, "layers": g_layers, "decoder": g_dec}
        return grads, (g_in[:, :3], g_in[:, 3:], g_q)


# --- Radial Field ------------------------------------------------------------------------------


class NBodyRFCache(NamedTuple):
    graph: Graph
    v: np.ndarray  # (N, 3)
    charges: np.ndarray  # (N, 1)
    edge_vec: np.ndarray  # (E, 3) input-frame x_j - x_i
    layers: tuple  # RadialFieldLayerCache per layer


@dataclass(frozen=True)
class NBodyRF(Block):
    r"""Radial Field: ``num_layers`` x :class:`RadialFieldLayer` on ``(x, |v|, v, [q_i q_j,
    |x_i^0 - x_j^0|^2])`` (the edge attributes stay those of the input frame).

    Params: ``{"layers": {"0": RadialFieldLayer params, ...}}`` = torch ``gcl_k.phi.0`` /
    ``gcl_k.phi.2`` (``phi``), ``gcl_k.coord_mlp_vel.0`` / ``.2`` (``phi_v``).
    """

    hidden: int = 64
    num_layers: int = 4
    activation: str = "silu"
    backend: str = "numpy"

    def __post_init__(self):
        _check_sizes(self, "NBodyRF")
        object.__setattr__(self, "layer", RadialFieldLayer(self.hidden, 2, self.activation,
                                                           backend=self.backend))

    def param_shapes(self) -> dict:
        return {"layers": {str(k): self.layer.param_shapes() for k in range(self.num_layers)}}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {"layers": {str(k): self.layer.init(rng) for k in range(self.num_layers)}}

    def forward(self, params, graph, x, v, charges):
        check_params(params, self.param_shapes(), "NBodyRF", exact=True)
        x, v, charges = F.check_nbody_inputs(graph, x, v, charges)
        s = F.speed(v)
        a, edge_vec = F.edge_features(graph, x, charges)
        caches = []
        for k in range(self.num_layers):
            x, c = self.layer.forward(params["layers"][str(k)], graph, x, s, v, a)
            caches.append(c)
        return x, NBodyRFCache(graph, v, charges, edge_vec, tuple(caches))

    def backward(self, params, cache: NBodyRFCache, grad_out):
        check_cache(cache, NBodyRFCache, "NBodyRF")
        graph = cache.graph
        g_x = _grad_out(grad_out, cache.v.shape, "NBodyRF")
        # x = layer_k(x, s, v, a), k = L-1 .. 0; s, v, a feed every layer
        g_layers, g_s, g_v, g_a = {}, 0.0, 0.0, 0.0
        for k in reversed(range(self.num_layers)):
            g_layers[str(k)], (g_x, g_s_k, g_v_k, g_a_k) = self.layer.backward(
                params["layers"][str(k)], cache.layers[k], g_x
            )
            g_s, g_v, g_a = g_s + g_s_k, g_v + g_v_k, g_a + g_a_k
        # a = [q_i q_j, |x_i - x_j|^2]
        g_xa, g_q = F.edge_features_vjp(graph, cache.charges, cache.edge_vec, g_a)
        # s = |v|
        g_v = g_v + F.speed_vjp(cache.v, g_s)
        return {"layers": g_layers}, (g_x + g_xa, g_v, g_q)


# --- EGNN --------------------------------------------------------------------------------------


class NBodyEGNNCache(NamedTuple):
    graph: Graph
    v: np.ndarray  # (N, 3)
    charges: np.ndarray  # (N, 1)
    edge_vec: np.ndarray  # (E, 3) input-frame x_j - x_i
    embedding: MLPCache
    layers: tuple  # EGNNLayerCache per layer


@dataclass(frozen=True)
class NBodyEGNN(Block):
    r"""``EGNN_vel``: :math:`h^0 = \mathrm{Lin}(1 \to H)(\lVert v \rVert)`, then ``num_layers`` x
    ``E_GCL_vel`` on ``(h, x, v, [q_i q_j, |x_i^0 - x_j^0|^2])``; returns the positions.

    Parameters
    ----------
    hidden, num_layers, activation
        H = 64, 4, ``"silu"`` as published.
    recurrent : bool
        Residual feature update (``main_nbody.py`` passes True; the class default is False).
    coords_weight : float
    norm_diff, tanh : bool
        ``main_nbody.py``'s ``--norm_diff`` and ``--tanh`` (default off).
    backend : str

    Params: ``{"embedding": MLP(1, H), "layers": {"0": EGNNLayer params, ...}}`` = torch
    ``embedding``, ``gcl_k`` (``edge_mlp`` -> ``phi_e``, ``coord_mlp`` -> ``phi_x``,
    ``node_mlp`` -> ``phi_h``, ``coord_mlp_vel`` -> ``phi_v``).
    """

    hidden: int = 64
    num_layers: int = 4
    activation: str = "silu"
    recurrent: bool = True
    coords_weight: float = 1.0
    norm_diff: bool = False
    tanh: bool = False
    backend: str = "numpy"

    def __post_init__(self):
        _check_sizes(self, "NBodyEGNN")
        for name in ("recurrent", "norm_diff", "tanh"):
            check_bool(getattr(self, name), f"NBodyEGNN.{name}")
        object.__setattr__(self, "coords_weight",
                           check_real(self.coords_weight, "NBodyEGNN.coords_weight"))
        H = self.hidden
        object.__setattr__(self, "embedding", MLP((1, H)))
        object.__setattr__(self, "layer", EGNNLayer(
            H, H, edge_features=2, flavour="gcl", activation=self.activation,
            residual=self.recurrent, coords_weight=self.coords_weight, normalize=self.norm_diff,
            tanh=self.tanh, velocity=True, backend=self.backend))

    def param_shapes(self) -> dict:
        return {
            "embedding": self.embedding.param_shapes(),
            "layers": {str(k): self.layer.param_shapes() for k in range(self.num_layers)},
        }

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {
            "embedding": self.embedding.init(rng),
            "layers": {str(k): self.layer.init(rng) for k in range(self.num_layers)},
        }

    def forward(self, params, graph, x, v, charges):
        check_params(params, self.param_shapes(), "NBodyEGNN", exact=True)
        x, v, charges = F.check_nbody_inputs(graph, x, v, charges)
        a, edge_vec = F.edge_features(graph, x, charges)
        h, c_emb = self.embedding.forward(params["embedding"], F.speed(v))
        caches = []
        for k in range(self.num_layers):
            (h, x), c = self.layer.forward(params["layers"][str(k)], graph, h, x, v, a)
            caches.append(c)
        return x, NBodyEGNNCache(graph, v, charges, edge_vec, c_emb, tuple(caches))

    def backward(self, params, cache: NBodyEGNNCache, grad_out):
        check_cache(cache, NBodyEGNNCache, "NBodyEGNN")
        graph = cache.graph
        g_x = _grad_out(grad_out, cache.v.shape, "NBodyEGNN")
        # (h, x) = layer_k(h, x, v, a), k = L-1 .. 0; the last h is not an output
        g_h, g_layers, g_v, g_a = None, {}, 0.0, 0.0
        for k in reversed(range(self.num_layers)):
            g_layers[str(k)], (g_h, g_x, g_v_k, g_a_k, _) = self.layer.backward(
                params["layers"][str(k)], cache.layers[k], (g_h, g_x)
            )
            g_v, g_a = g_v + g_v_k, g_a + g_a_k
        # h = embedding(|v|)
        g_emb, (g_s,) = self.embedding.backward(params["embedding"], cache.embedding, g_h)
        g_v = g_v + F.speed_vjp(cache.v, g_s)
        # a = [q_i q_j, |x_i - x_j|^2]
        g_xa, g_q = F.edge_features_vjp(graph, cache.charges, cache.edge_vec, g_a)
        return {"embedding": g_emb, "layers": g_layers}, (g_x + g_xa, g_v, g_q)


# --- the training command's entry points ---------------------------------------------------------

#: every N-body model by name; "segnn", "segnn-e3", "tfn" and "tfn-se3" live in
#: :mod:`geomp_ref.models.nbody_steerable`, "ponita" in :mod:`geomp_ref.models.nbody_ponita`
MODELS = ("linear", "gnn", "rf", "egnn", "segnn", "segnn-e3", "tfn", "tfn-se3", "ponita")


def make_model(name: str, **options) -> Block:
    """The published configuration of model ``name`` (``options`` override its fields)."""
    check_choice(name, "model", MODELS)
    if name == "ponita":
        from .nbody_ponita import NBodyPONITA

        return NBodyPONITA(**options)
    if name in ("segnn", "segnn-e3", "tfn", "tfn-se3"):
        from . import nbody_steerable  # imported here: it builds on the o3 stack

        return nbody_steerable.make_model(name, **options)
    cls = {"linear": NBodyLinear, "gnn": NBodyGNN, "rf": NBodyRF, "egnn": NBodyEGNN}[name]
    return cls(**options)


def model_inputs(name: str, batch) -> tuple:
    """Forward inputs after the graph for a :class:`geomp_ref.nbody.dataset.Batch`: ``(x, v,
    charges)`` for every model."""
    check_choice(name, "model", MODELS)
    return batch.x, batch.v, batch.charges
