"""Cases of the steerable family: TFNConv (e3nn's point convolution + gate), SEGNNLayer, SEGNN.

Every case uses irreps of both parities so that reflections are exercised (group "E3"). The
SEGNN cases use the corrected mode (the reference's pseudoscalar biases break parity by design,
see ``tests/layers/test_segnn.py``) and a finite-difference step of 1e-4: SEGNN's
U(+-1/sqrt(fan_in)) init leaves some leaves with small gradients next to the loss, where the
round-off of a 1e-6 difference quotient dominates. Graphs are random point clouds with a radius
graph (several graphs per batch, no coincident points).
"""

from __future__ import annotations

from ..layers.segnn import SEGNN, SEGNNLayer
from ..layers.tfn import TFNConv
from . import Case
from ._util import random_cloud_graph

TFN_IN = "2x0e+1x0o+1x1o+1x1e"
TFN_OUT = "2x0e+1x0o+1x1o+1x1e+1x2e"
SEGNN_HID = "3x0e+1x1o+1x1e"
SEGNN_IN = "1x0e+1x0o+1x1o"


def _maker(dim):
    def make(rng, num_nodes):
        graph, pos = random_cloud_graph(rng, num_nodes)
        return graph, (rng.normal(size=(num_nodes, dim)), pos)

    return make


def register() -> list[Case]:
    tfn_gate = TFNConv(TFN_IN, TFN_OUT, lmax=2, max_radius=3.0, num_basis=5, radial_neurons=6,
                       num_neighbors=3.0)
    tfn_lin = TFNConv(TFN_IN, "1x0e+1x0o+1x1o+1x1e", lmax=1, max_radius=3.0, num_basis=5,
                      radial_neurons=6, gate=False, sh_normalization="integral",
                      act_constants="exact")
    layer = SEGNNLayer(SEGNN_HID, lmax_attr=2, mode="corrected", sh_normalization="integral")
    layer_c = SEGNNLayer(SEGNN_HID, lmax_attr=1, mode="corrected", sh_normalization="component")
    net_node = SEGNN(SEGNN_IN, SEGNN_HID, "1x1o+1x0o", num_layers=1, task="node")
    net_graph = SEGNN(SEGNN_IN, SEGNN_HID, "2x0e", num_layers=1, task="graph", pool="sum")
    kin = lambda ir: (f"irreps:{ir}", "position")
    return [
        Case("TFNConv/gated-l2", tfn_gate, _maker(tfn_gate.irreps_in.dim), kin(TFN_IN),
             (f"irreps:{TFN_OUT}",), "E3",
             notes="e3nn gate_points_2101 Convolution + Gate; SH component; 1/sqrt(3) sum"),
        Case("TFNConv/linear-integral", tfn_lin, _maker(tfn_lin.irreps_in.dim), kin(TFN_IN),
             ("irreps:1x0e+1x0o+1x1o+1x1e",), "E3",
             notes="no gate, integral SH, exact activation constant"),
        Case("SEGNNLayer/corrected-integral", layer, _maker(layer.irreps_hidden.dim),
             kin(SEGNN_HID), (f"irreps:{SEGNN_HID}",), "E3", fd_eps=1e-4,
             notes="N-body SH normalisation; a_i = mean Y(x_ij) with a_i^0 = Y^0"),
        Case("SEGNNLayer/corrected-component", layer_c, _maker(layer_c.irreps_hidden.dim),
             kin(SEGNN_HID), (f"irreps:{SEGNN_HID}",), "E3", fd_eps=1e-4,
             notes="QM9 SH normalisation (reference and corrected node attributes agree)"),
        Case("SEGNN/node", net_node, _maker(net_node.irreps_in.dim), kin(SEGNN_IN),
             ("irreps:1x1o+1x0o",), "E3", fd_eps=1e-4,
             notes="embedding, 1 layer, gated + linear head conditioned on a_i"),
        Case("SEGNN/graph-sum", net_graph, _maker(net_graph.irreps_in.dim), kin(SEGNN_IN),
             ("graph_scalar",), "E3", fd_eps=1e-4, notes="invariant readout, sum pooling"),
    ]
