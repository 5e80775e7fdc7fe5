"""Cases of the steerable family: TFNConv, SEGNN (its layer, instance norm, N-body inputs).

Every case uses irreps of both parities so that reflections are exercised (group "E3"), and the
SEGNN cases use the corrected mode (the published code's pseudoscalar biases and unsorted gate
input break parity by design, see ``tests/layers/test_segnn.py``). Graphs are random point clouds
with a radius graph (several graphs per batch, no coincident points). Attributes given as inputs
are random irreps features: the layer must be equivariant for any of them.

This module registers the kind ``"edge_irreps:<irreps>"``: (E, dim) per-edge irreps features,
``x -> x D(Q)^T``, permuted with the edges.

Finite-difference steps and tolerances: SEGNN's U(+-1/sqrt(fan_in)) init leaves some parameters
with small gradients next to the loss, where the round-off of a 1e-6 difference quotient
dominates, hence ``fd_eps=1e-4``. With ``norm="instance"`` the scalar bias of the last update
layer has an exactly zero gradient (the norm centres scalars per graph, cancelling any constant):
its finite difference is pure round-off, which ``check_vjp`` discounts (the round-off bound of
the stencil), so these cases keep the default tolerance; ``tests/layers/test_segnn.py`` also
checks that this gradient is exactly zero.
"""

from __future__ import annotations

from .. import o3
from ..layers.segnn import SEGNN, SEGNNLayer
from ..layers.segnn_blocks import O3TensorProduct, O3TensorProductGate
from ..layers.segnn_nbody import NBodyAttributes
from ..layers.segnn_norm import InstanceNorm
from ..layers.tfn import TFNConv
from ..testing import register_kind
from . import Case
from ._util import cloud_features_maker, random_cloud_graph

TFN_IN = "2x0e+1x0o+1x1o+1x1e"
TFN_OUT = "2x0e+1x0o+1x1o+1x1e+1x2e"
SEGNN_HID = "3x0e+1x1o+1x1e"
SEGNN_HID_0O = "3x0e+1x0o+1x1o+1x1e"  # a 0o after the 0e scalars: gated, sorted before 0e
SEGNN_IN = "1x0e+1x0o+1x1o"
SH1, SH2 = "1x0e+1x1o", "1x0e+1x1o+1x2e"


def _edge_irreps(x, kind, Q, t):
    return x @ o3.Irreps(kind.split(":", 1)[1]).D_from_matrix(Q).T


register_kind("edge_irreps:", _edge_irreps)


def _irr(ir):
    return f"irreps:{ir}"


def _segnn_maker(spec):
    """SEGNN's full input list; a slot the options do not use is None."""

    def make(rng, num_nodes):
        graph, pos = random_cloud_graph(rng, num_nodes)
        E = graph.num_edges
        f = rng.normal(size=(num_nodes, spec.irreps_in.dim))
        uses_pos = spec.edge_attr == "harmonics" or spec.message_features == "squared_distance"
        ea = rng.normal(size=(E, spec.irreps_edge_attr.dim)) if spec.edge_attr == "input" else None
        na = (rng.normal(size=(num_nodes, spec.irreps_node_attr.dim))
              if spec.node_attr == "input" else None)
        msg = (rng.normal(size=(E, spec.additional_message_irreps.dim))
               if spec.message_features == "input" else None)
        return graph, (f, pos if uses_pos else None, ea, na, msg)

    return make


def _segnn_kinds(spec):
    add = spec.additional_message_irreps
    return (_irr(spec.irreps_in), "position", f"edge_irreps:{spec.irreps_edge_attr}",
            _irr(spec.irreps_node_attr), "edge_scalar" if add is None or add.is_scalar()
            else f"edge_irreps:{add}")


def _layer_maker(lay):
    """(h, edge_attr, node_attr, message_features) as random irreps features."""

    def make(rng, num_nodes):
        graph, _ = random_cloud_graph(rng, num_nodes)
        E = graph.num_edges
        add = lay.additional_message_irreps
        return graph, (rng.normal(size=(num_nodes, lay.irreps_hidden.dim)),
                       rng.normal(size=(E, lay.irreps_edge_attr.dim)),
                       rng.normal(size=(num_nodes, lay.irreps_node_attr.dim)),
                       None if add is None else rng.normal(size=(E, add.dim)))

    return make


def _layer_case(name, lay, notes, **kw):
    kinds = (_irr(lay.irreps_hidden), f"edge_irreps:{lay.irreps_edge_attr}",
             _irr(lay.irreps_node_attr), "edge_scalar")
    return Case(name, lay, _layer_maker(lay), kinds, (_irr(lay.irreps_hidden),), "E3",
                fd_eps=1e-4, notes=notes, **kw)


def _segnn_case(name, net, notes, **kw):
    out = ("graph_scalar",) if net.task == "graph" else (_irr(net.irreps_out),)
    return Case(name, net, _segnn_maker(net), _segnn_kinds(net), out, "E3", fd_eps=1e-4,
                notes=notes, **kw)


def _o3_block_case(name, spec, notes):
    """SEGNN's O3 layers take no graph: (x1, x2) with num_nodes samples."""

    def make(rng, num_nodes):
        return None, (rng.normal(size=(num_nodes, spec.irreps_in1.dim)),
                      rng.normal(size=(num_nodes, spec.irreps_in2.dim)))

    return Case(name, spec, make, (_irr(spec.irreps_in1), _irr(spec.irreps_in2)),
                (_irr(spec.irreps_out),), "O3", notes=notes, extra={"takes_graph": False})


def _nbody_maker(rng, num_nodes):
    graph, pos = random_cloud_graph(rng, num_nodes)
    return graph, (pos, rng.normal(size=(num_nodes, 3)), rng.choice([-1.0, 1.0], (num_nodes, 1)))


def register() -> list[Case]:
    tfn_gate = TFNConv(TFN_IN, TFN_OUT, lmax=2, max_radius=3.0, num_basis=5, radial_neurons=6,
                       num_neighbors=3.0)
    tfn_lin = TFNConv(TFN_IN, "1x0e+1x0o+1x1o+1x1e", lmax=1, max_radius=3.0, num_basis=5,
                      radial_neurons=6, gate=False, sh_normalization="integral",
                      act_constants="exact")
    tfn_nosc = TFNConv("2x0e+1x0o+1x1o", "2x0e+1x0o+1x1o", lmax=1, max_radius=3.0, num_basis=4,
                       radial_neurons=5, radial_layers=2, self_connection=False,
                       sh_normalization="norm", act_constants="exact")
    cases = [
        Case("TFNConv/gated-l2", tfn_gate, cloud_features_maker(tfn_gate.irreps_in.dim),
             (_irr(TFN_IN), "position"), (_irr(TFN_OUT),), "E3",
             notes="e3nn gate_points_2101 Convolution + Gate; SH component; 1/sqrt(3) sum"),
        Case("TFNConv/linear-integral", tfn_lin, cloud_features_maker(tfn_lin.irreps_in.dim),
             (_irr(TFN_IN), "position"), ("irreps:1x0e+1x0o+1x1o+1x1e",), "E3",
             notes="no gate, integral SH, exact activation constant"),
        Case("TFNConv/no-self-connection", tfn_nosc, cloud_features_maker(tfn_nosc.irreps_in.dim),
             (_irr(tfn_nosc.irreps_in), "position"), (_irr(tfn_nosc.irreps_out),), "E3",
             notes="no self-connection, two hidden radial layers, norm SH, a gated 0o scalar"),
        _layer_case("SEGNNLayer/message-features", SEGNNLayer(SEGNN_HID, SH2,
                    additional_message_irreps="2x0e"),
                    "l <= 2 attributes as inputs, N-body's 2x0e extra message features"),
        _layer_case("SEGNNLayer/hidden-0o", SEGNNLayer(SEGNN_HID_0O, SH1, "1x0e+1x1o+1x1e"),
                    "a 0o hidden block: the gate reads the product's columns permuted; node "
                    "attributes with their own irreps; no extra message features"),
        _layer_case("SEGNNLayer/instance-norm", SEGNNLayer(SEGNN_HID, SH1, norm="instance",
                    additional_message_irreps="1x0e"), "per-graph InstanceNorm after the update"),
        Case("InstanceNorm/component", InstanceNorm("2x0e+1x0o+2x1o+1x2e"),
             lambda rng, n: (random_cloud_graph(rng, n)[0], (rng.normal(size=(n, 14)),)),
             ("irreps:2x0e+1x0o+2x1o+1x2e",), ("irreps:2x0e+1x0o+2x1o+1x2e",), "E3",
             notes="scalars centred per graph (0o included), bias on 0e only"),
        Case("NBodyAttributes/l2", NBodyAttributes(lmax_attr=2), _nbody_maker,
             ("position", "vector", "node_scalar"),
             ("irreps:2x1o+1x0e", f"edge_irreps:{SH2}", _irr(SH2), "edge_scalar"), "E3",
             notes="N-body SEGNN inputs, centroid centring, integral SH"),
    ]
    nets = [
        ("SEGNN/node", SEGNN(SEGNN_IN, SEGNN_HID, "1x1o+1x0o", num_layers=1, task="node"),
         "computed attributes (harmonics, mean, |x_ij|^2); gated + linear head", {}),
        ("SEGNN/graph-sum", SEGNN(SEGNN_IN, SEGNN_HID, "2x0e", num_layers=1, task="graph",
                                  pool="sum"), "invariant readout, sum pooling", {}),
        ("SEGNN/nbody-inputs", SEGNN("2x1o+1x0e", SEGNN_HID, "1x1o", num_layers=2, task="node",
                                     lmax_attr=2, edge_attr="input", node_attr="input",
                                     message_features="input", additional_message_irreps="2x0e"),
         "the published N-body configuration: every attribute given, no positions", {}),
        ("SEGNN/graph-instance-avg", SEGNN(SEGNN_IN, SEGNN_HID, "1x0e", num_layers=2,
                                           task="graph", pool="avg", norm="instance",
                                           sh_normalization="component"),
         "the published QM9 configuration: instance norm, avg pooling, component SH", {}),
        ("SEGNN/hidden-0o", SEGNN(SEGNN_IN, SEGNN_HID_0O, "1x0o+1x1e", num_layers=1,
                                  task="node", message_features="none"),
         "a 0o hidden block gated correctly; no extra message features", {}),
    ]
    cases += [_segnn_case(name, net, notes, **kw) for name, net, notes, kw in nets]
    cases += [
        _o3_block_case("O3TensorProduct/biased", O3TensorProduct(
            "2x0e+1x0o+1x1o+1x1e", "2x0e+1x0o+1x1o+1x2e", SH2),
            "FCTP rescaled by sqrt(fan_in), biases on 0e only"),
        _o3_block_case("O3TensorProductGate/hidden-0o", O3TensorProductGate(
            "2x0e+1x1o+1x1e", "4x0e+2x0o+1x1o", SH1),
            "swish gate; the 0o gated block reaches the sorted gate through a column permutation"),
    ]
    return cases
