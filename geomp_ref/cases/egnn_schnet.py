"""Cases of SchNet (CFConv, interaction, model) and EGNN (layer and egnn_clean stack).

Groups: CFConv / SchNetInteraction / SchNet are E(3)-invariant; EGNN is
E(3)-equivariant (h invariant, x a position, v a vector). The gcl-flavour EGNN cases use SiLU (as
every EGNN model in vgsatorras/egnn passes its own activation; ReLU kinks would make finite
differences unreliable) and ``coord_init_gain=1`` so that the coordinate path is exercised. Their
finite-difference step is 1e-4: with attention the gradients of some leaves are small next to the
loss, and at 1e-6 the round-off of the difference quotient (~1e-16 |L| / eps) dominates.

The ``pytorch-style`` cases use the options that lucidrains' egnn-pytorch needs: separate hidden
widths, a bias on the coordinate network's last layer, the mean of the messages, the
normalisation by max(|D|, eps) times a learned scale, a bound on the scalar coordinate weight
(set above the weights reached here; its cut is checked in tests/layers/test_egnn.py), sums of
the coordinate terms, and complete graphs with self-loops (every node also messages itself).
"""

from __future__ import annotations

import numpy as np

from ..graph import complete_graph, radius_graph
from ..layers.egnn import EGNN, EGNNLayer
from ..layers.schnet import CFConv, SchNet, SchNetInteraction
from ..testing import random_points
from . import Case
from ._util import molecule_graph, num_graphs_for, random_cloud_graph

C_IN = 4
CUTOFF = 3.0  # SchNet cases: radius graph and cosine cutoff
MAX_Z = 20


def _clouds(rng, num_nodes, cutoff):
    """Several random point clouds (minimum separation 0.7) and their radius graph at ``cutoff``."""
    B = num_graphs_for(num_nodes)
    sizes = np.full(B, num_nodes // B)
    sizes[: num_nodes - sizes.sum()] += 1
    pos = np.concatenate(
        [random_points(rng, int(s), 3, min_dist=0.7) + 50.0 * k for k, s in enumerate(sizes)],
        axis=0,
    )
    batch = np.repeat(np.arange(B), sizes)
    return radius_graph(pos, cutoff, batch, num_graphs=B), pos


def _schnet_node_inputs(rng, num_nodes):
    graph, pos = _clouds(rng, num_nodes, CUTOFF)
    return graph, (rng.normal(size=(num_nodes, C_IN)), pos)


def _schnet_node_molecule(rng, mol):
    graph, pos = molecule_graph(mol, CUTOFF)
    return graph, (rng.normal(size=(len(mol.z), C_IN)), pos)


def _schnet_inputs(rng, num_nodes):
    graph, pos = _clouds(rng, num_nodes, CUTOFF)
    return graph, (rng.integers(1, MAX_Z, size=num_nodes), pos)


def _schnet_molecule(rng, mol):
    graph, pos = molecule_graph(mol, CUTOFF)
    return graph, (mol.z.copy(), pos)


def _egnn_maker(velocity: bool, edge_features: int, node_attr: int = 0):
    def make(rng, num_nodes):
        graph, pos = random_cloud_graph(rng, num_nodes)
        return graph, (
            rng.normal(size=(num_nodes, C_IN)),
            pos,
            rng.normal(size=(num_nodes, 3)) if velocity else None,
            rng.normal(size=(graph.num_edges, edge_features)) if edge_features else None,
            rng.normal(size=(num_nodes, node_attr)) if node_attr else None,
        )

    return make


def _egnn_molecule_maker(velocity: bool, edge_features: int, node_attr: int = 0):
    def make(rng, mol):
        graph, pos = molecule_graph(mol)
        n = len(mol.z)
        onehot = np.eye(C_IN)[mol.z % C_IN]
        return graph, (
            onehot + 0.1 * rng.normal(size=(n, C_IN)),
            pos,
            rng.normal(size=(n, 3)) if velocity else None,
            rng.normal(size=(graph.num_edges, edge_features)) if edge_features else None,
            np.eye(node_attr)[mol.z % node_attr] if node_attr else None,
        )

    return make


def _egnn_dense_maker(edge_features: int):
    """Complete graphs with self-loops on random clouds (egnn-pytorch's dense neighbourhoods)."""

    def make(rng, num_nodes):
        graph, pos = random_cloud_graph(rng, num_nodes)
        dense = complete_graph(num_nodes, graph.batch, self_loops=True,
                               num_graphs=graph.num_graphs)
        return dense, (
            rng.normal(size=(num_nodes, C_IN)),
            pos,
            None,
            rng.normal(size=(dense.num_edges, edge_features)) if edge_features else None,
            None,
        )

    return make


# kinds of (h, x, v, edge_attr, node_attr); absent inputs are None in make_inputs
EGNN_KINDS = ("node_scalar", "position", "vector", "edge_scalar", "node_scalar")


def register() -> list[Case]:
    out = [
        Case(
            "CFConv/exact",
            CFConv(C_IN, 5, 6, num_rbf=8, cutoff=CUTOFF),
            _schnet_node_inputs,
            ("node_scalar", "position"),
            ("node_scalar",),
            "E3",
            notes="PyG CFConv: lin1 (no bias) -> fused filter sum -> lin2; exact constants",
            extra={"from_molecule": _schnet_node_molecule},
        ),
        Case(
            "CFConv/pyg",
            CFConv(C_IN, 5, 6, num_rbf=8, cutoff=CUTOFF, constants="pyg"),
            _schnet_node_inputs,
            ("node_scalar", "position"),
            ("node_scalar",),
            "E3",
            notes="PyG's float32-born ln2 / gamma / centres and torch's softplus threshold 20",
        ),
        Case(
            "SchNetInteraction/exact",
            SchNetInteraction(C_IN, 6, num_rbf=8, cutoff=CUTOFF),
            _schnet_node_inputs,
            ("node_scalar", "position"),
            ("node_scalar",),
            "E3",
            extra={"from_molecule": _schnet_node_molecule},
        ),
        Case(
            "SchNet/add",
            SchNet(
                hidden=6, num_filters=5, num_interactions=2, num_rbf=8, cutoff=CUTOFF, max_z=MAX_Z
            ),
            _schnet_inputs,
            ("node_label", "position"),
            ("graph_scalar",),
            "E3",
            notes="energy per graph, shape (B,); forces = -grad_pos",
            extra={"from_molecule": _schnet_molecule},
        ),
        Case(
            "SchNet/mean-pyg",
            SchNet(
                hidden=6,
                num_filters=5,
                num_interactions=2,
                num_rbf=8,
                cutoff=CUTOFF,
                readout="mean",
                max_z=MAX_Z,
                constants="pyg",
            ),
            _schnet_inputs,
            ("node_label", "position"),
            ("graph_scalar",),
            "E3",
            extra={"from_molecule": _schnet_molecule},
        ),
    ]
    egnn_layers = {
        "gcl": {"flavour": "gcl", "activation": "silu"},
        "gcl-vel-att-norm-tanh": {
            "flavour": "gcl",
            "activation": "silu",
            "velocity": True,
            "attention": True,
            "normalize": True,
            "tanh": True,
            "edge_features": 2,
        },
        "egnn_clean": {"flavour": "egnn_clean"},
        "egnn_clean-norm-sum-att": {
            "flavour": "egnn_clean",
            "normalize": True,
            "coords_agg": "sum",
            "attention": True,
            "edge_features": 2,
        },
        "qm9-mask": {
            "flavour": "gcl",
            "activation": "silu",
            "attention": True,
            "update_coords": False,
            "node_attr_features": 3,
        },
    }
    pytorch_style = {
        "flavour": "egnn_clean",
        "edge_hidden": 6,
        "coord_hidden": 5,
        "node_hidden": 7,
        "coord_bias": True,
        "messages_agg": "mean",
        "coords_agg": "sum",
        "normalize": True,
        "norm_mode": "max",
        "coords_scale": 0.7,
        "weight_clamp": 50.0,
        "attention": True,
        "edge_features": 2,
    }
    egnn_layers["pytorch-style"] = pytorch_style
    for name, kw in egnn_layers.items():
        vel, ef = kw.get("velocity", False), kw.get("edge_features", 0)
        na = kw.get("node_attr_features", 0)
        out.append(
            Case(
                f"EGNNLayer/{name}",
                EGNNLayer(C_IN, 8, coord_init_gain=1.0, **kw),
                _egnn_maker(vel, ef, na),
                EGNN_KINDS,
                ("node_scalar", "position"),
                "E3",
                fd_eps=1e-4,
                notes="QM9's E_GCL_mask: no coordinate update, node_attr into phi_h"
                if name == "qm9-mask" else "",
                extra={"from_molecule": _egnn_molecule_maker(vel, ef, na)},
            )
        )
    out.append(
        Case(
            "EGNNLayer/pytorch-style-dense",
            EGNNLayer(C_IN, 8, coord_init_gain=1.0, **pytorch_style),
            _egnn_dense_maker(2),
            EGNN_KINDS,
            ("node_scalar", "position"),
            "E3",
            fd_eps=1e-4,
            notes="complete graphs with self-loops (D = 0 on the loops: no coordinate term)",
        )
    )
    egnn_models = {
        "egnn_clean": (3, {"flavour": "egnn_clean"}),
        "gcl-vel": (3, {"flavour": "gcl", "activation": "silu", "velocity": True,
                        "edge_features": 2}),
        "vel-no-out": (None, {"flavour": "gcl", "activation": "silu", "velocity": True,
                              "edge_features": 2, "node_attr_features": 2}),
        "pytorch-style": (3, pytorch_style),
    }
    for name, (out_features, kw) in egnn_models.items():
        vel, ef = kw.get("velocity", False), kw.get("edge_features", 0)
        na = kw.get("node_attr_features", 0)
        out.append(
            Case(
                f"EGNN/{name}",
                EGNN(C_IN, out_features, EGNNLayer(8, 8, coord_init_gain=1.0, **kw), num_layers=2),
                _egnn_maker(vel, ef, na),
                EGNN_KINDS,
                ("node_scalar", "position"),
                "E3",
                fd_eps=1e-4,
                extra={"from_molecule": _egnn_molecule_maker(vel, ef, na)},
            )
        )
    return out
