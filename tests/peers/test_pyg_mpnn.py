"""Peer cross-check: PyG NNConv + torch GRU + PyG Set2Set (the qm9_nn_conv example's structure),
built in float64 with our weights, against MPNN(mode="pyg"): outputs and every gradient (torch
autograd) agree to 1e-12 relative."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")

from geomp_ref import radius_graph  # noqa: E402
from geomp_ref.layers.mpnn import MPNN  # noqa: E402
from geomp_ref.testing import random_points  # noqa: E402


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


class TorchMPNN(torch.nn.Module):
    """The PyG QM9 example network, written with PyG's own modules."""

    def __init__(self, spec: MPNN, params):
        super().__init__()
        H, E = spec.hidden, spec.edge_in + 1
        self.lin0 = torch.nn.Linear(spec.node_in, H)
        net = torch.nn.Sequential(torch.nn.Linear(E, spec.edge_hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(spec.edge_hidden, H * H))
        self.conv = pyg_nn.NNConv(H, H, net, aggr="mean")
        self.gru = torch.nn.GRU(H, H)
        self.set2set = pyg_nn.aggr.Set2Set(H, processing_steps=spec.set2set_steps)
        self.lin1 = torch.nn.Linear(2 * H, H)
        self.lin2 = torch.nn.Linear(H, spec.out_channels)
        self.steps = spec.steps
        self.double()  # float64 before the weights are copied in
        with torch.no_grad():
            self.lin0.weight.copy_(_t(params["W_in"].T))
            self.lin0.bias.copy_(_t(params["b_in"]))
            en = params["conv"]["edge_net"]
            net[0].weight.copy_(_t(en["W0"].T))
            net[0].bias.copy_(_t(en["b0"]))
            net[2].weight.copy_(_t(en["W1"].T))
            net[2].bias.copy_(_t(en["b1"]))
            self.conv.lin.weight.copy_(_t(params["conv"]["W_root"].T))
            self.conv.bias.copy_(_t(params["conv"]["b"]))
            g = params["gru"]
            self.gru.weight_ih_l0.copy_(_t(g["W_x"].T))
            self.gru.weight_hh_l0.copy_(_t(g["W_h"].T))
            self.gru.bias_ih_l0.copy_(_t(g["b_x"]))
            self.gru.bias_hh_l0.copy_(_t(g["b_h"]))
            lstm = params["set2set"]["lstm"]
            self.set2set.lstm.weight_ih_l0.copy_(_t(lstm["W_x"].T))
            self.set2set.lstm.weight_hh_l0.copy_(_t(lstm["W_h"].T))
            self.set2set.lstm.bias_ih_l0.copy_(_t(lstm["b_x"]))
            self.set2set.lstm.bias_hh_l0.copy_(_t(lstm["b_h"]))
            hd = params["head"]
            self.lin1.weight.copy_(_t(hd["W0"].T))
            self.lin1.bias.copy_(_t(hd["b0"]))
            self.lin2.weight.copy_(_t(hd["W1"].T))
            self.lin2.bias.copy_(_t(hd["b1"]))

    def forward(self, x, pos, edge_attr, edge_index, batch, num_graphs):
        dist = (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=-1, keepdim=True)
        e = torch.cat([edge_attr, dist], dim=1)
        out = torch.relu(self.lin0(x))
        h = out.unsqueeze(0)
        for _ in range(self.steps):
            m = torch.relu(self.conv(out, edge_index, e))
            out, h = self.gru(m.unsqueeze(0), h)
            out = out.squeeze(0)
        out = self.set2set(out, batch, dim_size=num_graphs)
        return self.lin2(torch.relu(self.lin1(out)))


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def test_mpnn_matches_pyg(rng):
    torch.manual_seed(0)
    spec = MPNN(5, 3, hidden=8, edge_hidden=12, steps=3, set2set_steps=3, out_channels=2, mode="pyg")
    params = spec.init(rng)
    sizes = [6, 5, 7]
    pos = np.concatenate([random_points(rng, s) + 40 * k for k, s in enumerate(sizes)])
    batch = np.repeat(np.arange(3), sizes)
    graph = radius_graph(pos, 2.4, batch)
    f = rng.normal(size=(len(pos), 5))
    ea = rng.normal(size=(graph.num_edges, 3))
    y, cache = spec.forward(params, graph, f, pos, ea)
    cot = rng.normal(size=y.shape)
    gp, (gf, gpos, gea) = spec.backward(params, cache, cot)

    model = TorchMPNN(spec, params)
    tf, tpos, tea = (_t(a).requires_grad_(True) for a in (f, pos, ea))
    ty = model(tf, tpos, tea, torch.tensor(graph.edge_index), torch.tensor(batch), 3)
    assert _rel(y, ty.detach().numpy()) <= 1e-12
    (ty * _t(cot)).sum().backward()
    assert _rel(gf, tf.grad.numpy()) <= 1e-12
    assert _rel(gpos, tpos.grad.numpy()) <= 1e-12
    assert _rel(gea, tea.grad.numpy()) <= 1e-12
    pairs = {
        ("W_in",): model.lin0.weight, ("b_in",): model.lin0.bias,
        ("conv", "W_root"): model.conv.lin.weight, ("conv", "b"): model.conv.bias,
        ("conv", "edge_net", "W0"): model.conv.nn[0].weight, ("conv", "edge_net", "W1"): model.conv.nn[2].weight,
        ("gru", "W_x"): model.gru.weight_ih_l0, ("gru", "W_h"): model.gru.weight_hh_l0,
        ("gru", "b_h"): model.gru.bias_hh_l0,
        ("set2set", "lstm", "W_x"): model.set2set.lstm.weight_ih_l0,
        ("set2set", "lstm", "b_h"): model.set2set.lstm.bias_hh_l0,
        ("head", "W0"): model.lin1.weight, ("head", "b1"): model.lin2.bias,
    }
    for path, tparam in pairs.items():
        ours = gp
        for k in path:
            ours = ours[k]
        theirs = tparam.grad.numpy()
        theirs = theirs.T if theirs.ndim == 2 else theirs
        assert _rel(ours, theirs) <= 1e-12, path
