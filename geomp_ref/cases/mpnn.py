"""Cases of the MPNN family: Gilmer's MPNN (paper and PyG modes), NNConv, DistanceMPNN and the
RelativePositionMPNN counter-example (registered with group T3: it is only translation-invariant)."""

from __future__ import annotations

import numpy as np

from ..layers.mpnn import MPNN, DistanceMPNN, RelativePositionMPNN
from ..layers.nnconv import NNConv
from . import Case
from ._util import molecule_graph, random_cloud_graph

C_IN = 4


def _pair_inputs(rng, num_nodes):
    graph, pos = random_cloud_graph(rng, num_nodes)
    return graph, (rng.normal(size=(num_nodes, C_IN)), pos)


def _pair_molecule(rng, mol):
    graph, pos = molecule_graph(mol)
    return graph, (np.eye(10)[mol.z % 10][:, :C_IN] + 0.1 * rng.normal(size=(len(mol.z), C_IN)), pos)


def _mpnn_inputs(rng, num_nodes):
    graph, pos = random_cloud_graph(rng, num_nodes)
    return graph, (rng.normal(size=(num_nodes, C_IN)), pos, rng.normal(size=(graph.num_edges, 2)))


def _mpnn_molecule(rng, mol):
    graph, pos = molecule_graph(mol)
    f = np.eye(10)[mol.z % 10][:, :C_IN] + 0.1 * rng.normal(size=(len(mol.z), C_IN))
    return graph, (f, pos, rng.normal(size=(graph.num_edges, 2)))


def _nnconv_inputs(rng, num_nodes):
    graph, _ = random_cloud_graph(rng, num_nodes)
    return graph, (rng.normal(size=(num_nodes, C_IN)), rng.normal(size=(graph.num_edges, 3)))


def register() -> list[Case]:
    mpnn_kinds = ("node_scalar", "position", "edge_scalar")
    return [
        Case("MPNN/paper", MPNN(C_IN, 2, hidden=6, edge_hidden=8, steps=2, set2set_steps=2, mode="paper"),
             _mpnn_inputs, mpnn_kinds, ("graph_scalar",), "E3",
             notes="Gilmer: sum aggregation, GRU, Set2Set; distance appended to edge features",
             extra={"from_molecule": _mpnn_molecule}),
        Case("MPNN/pyg", MPNN(C_IN, 2, hidden=6, edge_hidden=8, steps=2, set2set_steps=2, mode="pyg"),
             _mpnn_inputs, mpnn_kinds, ("graph_scalar",), "E3",
             notes="PyG qm9_nn_conv example: mean aggregation, ReLU after NNConv, softmax eps 1e-16",
             extra={"from_molecule": _mpnn_molecule}),
        Case("NNConv/sum", NNConv(C_IN, 5, 3, edge_hidden=8, aggr="sum"), _nnconv_inputs,
             ("node_scalar", "edge_scalar"), ("node_scalar",), "none"),
        Case("DistanceMPNN/silu", DistanceMPNN(C_IN, hidden=8, out_channels=5), _pair_inputs,
             ("node_scalar", "position"), ("node_scalar",), "E3",
             extra={"from_molecule": _pair_molecule}),
        Case("RelativePositionMPNN/silu", RelativePositionMPNN(C_IN, hidden=8, out_channels=5),
             _pair_inputs, ("node_scalar", "position"), ("node_scalar",), "T3",
             notes="counter-example: translation-invariant only; rotation equivariance fails"),
    ]
