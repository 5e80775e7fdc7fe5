"""Cases of the N-body models and their layers (GCL, RadialFieldLayer).

Problems are batches of charged five-body systems on complete graphs (as the published loader
builds them), with unit charges of random sign, positions spread as in the data and velocities of
order one. NBodyEGNN and NBodyRF are E(3)-equivariant (x a position, v a vector, charges
invariant); NBodyGNN and NBodyLinear read raw coordinates, so only node permutations are checked
(group "none"). Hidden widths are small and ``coord_init_gain=1`` where a coordinate network
exists, so that every path carries a visible gradient. The finite-difference step is 1e-4 for the
deeper models (see :mod:`geomp_ref.cases.egnn_schnet`) and 1e-3 for NBodyEGNN, whose last-layer
message weights have gradients far below the loss (the stencil's truncation error at 1e-3 is
~1e-9 there, its rounding error at 1e-4 ~1e-7).
"""

from __future__ import annotations

import numpy as np

from ..graph import complete_graph
from ..layers.gcl import GCL
from ..layers.radial_field import RadialFieldLayer
from ..models.nbody import NBodyEGNN, NBodyGNN, NBodyLinear, NBodyRF
from ..testing import random_points
from . import Case
from ._util import random_cloud_graph

N_BALLS = 5


def _systems(rng, num_nodes):
    """Complete graphs of five bodies (the last system takes the remainder) and (x, v, charges)."""
    sizes = [N_BALLS] * max(1, num_nodes // N_BALLS)
    sizes[-1] += num_nodes - sum(sizes)
    batch = np.repeat(np.arange(len(sizes)), sizes)
    graph = complete_graph(num_nodes, batch)
    x = np.concatenate([random_points(rng, s, min_dist=0.5, scale=1.5) for s in sizes])
    v = rng.normal(size=(num_nodes, 3))
    charges = rng.choice([-1.0, 1.0], size=(num_nodes, 1))
    return graph, x, v, charges


def _model_inputs(rng, num_nodes):
    graph, x, v, charges = _systems(rng, num_nodes)
    return graph, (x, v, charges)


def _gcl_maker(edge_features):
    def make(rng, num_nodes):
        graph, _ = random_cloud_graph(rng, num_nodes)
        a = rng.normal(size=(graph.num_edges, edge_features)) if edge_features else None
        return graph, (rng.normal(size=(num_nodes, 4)), a)

    return make


def _rf_inputs(rng, num_nodes):
    graph, x, v, charges = _systems(rng, num_nodes)
    a = np.concatenate([charges[graph.dst] * charges[graph.src],
                        rng.normal(size=(graph.num_edges, 1))], axis=1)
    return graph, (x, np.linalg.norm(v, axis=1, keepdims=True), v, a)


def register() -> list[Case]:
    nbody_kinds = ("position", "vector", "node_scalar")
    rf_layer = RadialFieldLayer(6, edge_features=2, coord_init_gain=1.0)
    return [
        Case("GCL/nbody", GCL(4, 6, edge_features=1, activation="silu"), _gcl_maker(1),
             ("node_scalar", "edge_scalar"), ("node_scalar",), "none",
             notes="the GNN baseline's layer as main_nbody.py builds it (SiLU, residual)"),
        Case("GCL/relu-att-plain", GCL(4, 5, out_features=3, activation="tanh", attention=True,
                                       recurrent=False), _gcl_maker(0),
             ("node_scalar", "edge_scalar"), ("node_scalar",), "none",
             notes="attention on |h_i - h_j|, no residual, no edge attributes"),
        Case("RadialFieldLayer/nbody", rf_layer, _rf_inputs,
             ("position", "node_scalar", "vector", "edge_scalar"), ("position",), "E3",
             notes="GCL_rf_vel with RF_vel's edge attributes [q_i q_j, |x_ij|^2]"),
        Case("NBodyLinear/published", NBodyLinear(), _model_inputs, nbody_kinds, ("position",),
             "none", notes="Linear(6, 3) on [x, v]"),
        Case("NBodyGNN/small", NBodyGNN(hidden=6, num_layers=2), _model_inputs, nbody_kinds,
             ("position",), "none", fd_eps=1e-4),
        Case("NBodyRF/small", NBodyRF(hidden=6, num_layers=2), _model_inputs, nbody_kinds,
             ("position",), "E3", fd_eps=1e-4),
        Case("NBodyEGNN/small", NBodyEGNN(hidden=6, num_layers=2), _model_inputs, nbody_kinds,
             ("position",), "E3", fd_eps=1e-3,
             notes="step 1e-3: the last layer's message weights reach x only through phi_x, so "
                   "their gradients are ~1e-6 of the loss and rounding dominates at 1e-4"),
    ]
