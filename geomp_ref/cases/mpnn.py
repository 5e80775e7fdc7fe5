"""Cases of the MPNN family: Gilmer's MPNN (paper and PyG modes), NNConv, DistanceMPNN, the
RelativePositionMPNN counter-example (registered with group T3: it is only translation-invariant),
and the building blocks GRUCell, LSTMCell and Set2Set (rows permute with nodes: group
"none")."""

from __future__ import annotations

import numpy as np

from ..layers.mpnn import MPNN, DistanceMPNN, RelativePositionMPNN
from ..layers.nnconv import NNConv
from ..layers.recurrent import GRUCell, LSTMCell
from ..layers.set2set import Set2Set
from . import Case
from ._util import molecule_graph, random_cloud_graph

C_IN = 4


def _pair_inputs(rng, num_nodes):
    graph, pos = random_cloud_graph(rng, num_nodes)
    return graph, (rng.normal(size=(num_nodes, C_IN)), pos)


def _pair_molecule(rng, mol):
    graph, pos = molecule_graph(mol)
    f = np.eye(10)[mol.z % 10][:, :C_IN] + 0.1 * rng.normal(size=(len(mol.z), C_IN))
    return graph, (f, pos)


def _mpnn_maker(edge_in):
    def make(rng, num_nodes):
        graph, pos = random_cloud_graph(rng, num_nodes)
        ea = rng.normal(size=(graph.num_edges, edge_in)) if edge_in else None
        return graph, (rng.normal(size=(num_nodes, C_IN)), pos, ea)

    return make


def _mpnn_molecule(rng, mol):
    graph, pos = molecule_graph(mol)
    f = np.eye(10)[mol.z % 10][:, :C_IN] + 0.1 * rng.normal(size=(len(mol.z), C_IN))
    return graph, (f, pos, rng.normal(size=(graph.num_edges, 2)))


def _nnconv_inputs(rng, num_nodes):
    graph, _ = random_cloud_graph(rng, num_nodes)
    return graph, (rng.normal(size=(num_nodes, C_IN)), rng.normal(size=(graph.num_edges, 3)))


def _rows_maker(*widths):
    def make(rng, num_nodes):
        return None, tuple(rng.normal(size=(num_nodes, w)) for w in widths)

    return make


def _set2set_inputs(rng, num_nodes):
    graph, _ = random_cloud_graph(rng, num_nodes)
    return graph, (rng.normal(size=(num_nodes, C_IN)),)


def register() -> list[Case]:
    mpnn_kinds = ("node_scalar", "position", "edge_scalar")
    rows = {"takes_graph": False}
    return [
        Case("MPNN/paper",
             MPNN(C_IN, 2, hidden=6, edge_hidden=8, steps=2, set2set_steps=2, mode="paper"),
             _mpnn_maker(2), mpnn_kinds, ("graph_scalar",), "E3",
             notes="Gilmer: sum aggregation, GRU, Set2Set; distance appended to edge features",
             extra={"from_molecule": _mpnn_molecule}),
        Case("MPNN/pyg",
             MPNN(C_IN, 2, hidden=6, edge_hidden=8, steps=2, set2set_steps=2, mode="pyg"),
             _mpnn_maker(2), mpnn_kinds, ("graph_scalar",), "E3",
             notes="PyG qm9_nn_conv example: mean aggregation, ReLU after NNConv, "
                   "softmax eps 1e-16",
             extra={"from_molecule": _mpnn_molecule}),
        Case("MPNN/distance-only", MPNN(C_IN, 0, hidden=5, edge_hidden=6, steps=1, set2set_steps=1),
             _mpnn_maker(0), mpnn_kinds, ("graph_scalar",), "E3",
             notes="edge_in=0: the distance is the only edge feature and edge_attr is None"),
        Case("NNConv/sum", NNConv(C_IN, 5, 3, edge_hidden=8, aggr="sum"), _nnconv_inputs,
             ("node_scalar", "edge_scalar"), ("node_scalar",), "none"),
        Case("NNConv/mean", NNConv(C_IN, 3, 3, edge_hidden=6, aggr="mean"), _nnconv_inputs,
             ("node_scalar", "edge_scalar"), ("node_scalar",), "none"),
        Case("DistanceMPNN/silu", DistanceMPNN(C_IN, hidden=8, out_channels=5), _pair_inputs,
             ("node_scalar", "position"), ("node_scalar",), "E3",
             extra={"from_molecule": _pair_molecule}),
        Case("RelativePositionMPNN/silu", RelativePositionMPNN(C_IN, hidden=8, out_channels=5),
             _pair_inputs, ("node_scalar", "position"), ("node_scalar",), "T3",
             notes="counter-example: translation-invariant only; rotation equivariance fails"),
        Case("GRUCell/torch", GRUCell(C_IN, 5), _rows_maker(C_IN, 5),
             ("node_scalar", "node_scalar"), ("node_scalar",), "none", extra=rows,
             notes="torch.nn.GRUCell gates (r, z, n)"),
        Case("LSTMCell/torch", LSTMCell(C_IN, 5), _rows_maker(C_IN, 5, 5),
             ("node_scalar", "node_scalar", "node_scalar"), ("node_scalar", "node_scalar"), "none",
             extra=rows, notes="torch.nn.LSTMCell gates (i, f, g, o); outputs (h', c')"),
        Case("Set2Set/pyg", Set2Set(C_IN, steps=2), _set2set_inputs, ("node_scalar",),
             ("graph_scalar",), "none", notes="PyG softmax epsilon 1e-16"),
    ]
