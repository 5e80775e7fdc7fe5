"""The Gilmer MPNN of PyG's ``examples/qm9_nn_conv.py`` against ``MPNN(mode="pyg")``.

``Net`` below is a test double written from the example's published structure: the same class
name, submodule names (``lin0``, ``conv`` = NNConv with a Linear-ReLU-Linear edge network and
``aggr="mean"``, ``gru`` = torch GRU, ``set2set``, ``lin1``, ``lin2``), the same forward signature
(one PyG ``Data``) and the same forward (3 steps with tied weights, ReLU after the convolution,
``out.view(-1)``). ``compare`` converts it with no hand mapping. The second test keeps an
independent route for ``use_distance=True`` (our weights copied into PyG modules by hand, the
distance computed inside the torch forward).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")
pyg_data = pytest.importorskip("torch_geometric.data")

import torch.nn.functional as F  # noqa: E402

from geomp_ref import interop, molecules, radius_graph  # noqa: E402
from geomp_ref.layers.mpnn import MPNN  # noqa: E402
from geomp_ref.testing import random_points  # noqa: E402

F64 = torch.float64


class Net(torch.nn.Module):
    """The QM9 example's network (double: same names and forward, our own code)."""

    def __init__(self, num_features=11, dim=8, edge_dim=5, aggr="mean", steps=3):
        super().__init__()
        self.lin0 = torch.nn.Linear(num_features, dim)
        edge_net = torch.nn.Sequential(
            torch.nn.Linear(edge_dim, 16), torch.nn.ReLU(), torch.nn.Linear(16, dim * dim)
        )
        self.conv = pyg_nn.NNConv(dim, dim, edge_net, aggr=aggr)
        self.gru = torch.nn.GRU(dim, dim)
        self.set2set = pyg_nn.Set2Set(dim, processing_steps=3)
        self.lin1 = torch.nn.Linear(2 * dim, dim)
        self.lin2 = torch.nn.Linear(dim, 1)
        self.n_steps = steps

    def forward(self, data):
        out = F.relu(self.lin0(data.x))
        h = out.unsqueeze(0)
        for _ in range(self.n_steps):
            m = F.relu(self.conv(out, data.edge_index, data.edge_attr))
            out, h = self.gru(m.unsqueeze(0), h)
            out = out.squeeze(0)
        out = self.set2set(out, data.batch)
        out = F.relu(self.lin1(out))
        return self.lin2(out).view(-1)


def _net(seed=0, dtype=F64, **kwargs):
    torch.manual_seed(seed)
    net = Net(**kwargs).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # PyG zero-initialises NNConv's bias: give everything generic values
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=dtype))
    return net


def _data(pos, z, rng, dtype=F64):
    """A QM9-style ``Data``: 11 node features (5-element one-hot + 6 more), edges within 1.6 A,
    edge_attr = [bond-type one-hot (4), distance] as the example's ``T.Distance(norm=False)``."""
    graph = radius_graph(pos, 1.6)
    ei = torch.as_tensor(graph.edge_index.copy())
    onehot = np.zeros((len(z), 5))
    onehot[np.arange(len(z)), np.searchsorted([1, 6, 7, 8, 9], np.minimum(z, 9))] = 1.0
    x = np.concatenate([onehot, rng.normal(size=(len(z), 6))], axis=1)
    bonds = np.eye(4)[rng.integers(0, 4, graph.num_edges)]
    d = np.linalg.norm(pos[graph.src] - pos[graph.dst], axis=1, keepdims=True)
    ea = np.concatenate([bonds, d], axis=1)
    return pyg_data.Data(
        x=torch.tensor(x, dtype=dtype), edge_index=ei, edge_attr=torch.tensor(ea, dtype=dtype)
    )


def _molecules(rng, dtype=F64):
    datas = [_data(m.pos, m.z, rng, dtype) for m in molecules.load()]
    return pyg_data.Batch.from_data_list(datas)


def _assert_ok(report):
    assert report.ok, report
    for kind, r in zip(report.kinds, report.rows):
        assert r.max_rel <= (1e-12 if kind == "output" else 1e-10), r


def test_example_net_matches_on_the_shipped_molecules(rng):
    batch = _molecules(rng)
    report = interop.compare(_net(), batch)
    _assert_ok(report)
    names = [r.name for r in report.rows]
    assert names[0] == "out" and names[-2:] == ["data.x", "data.edge_attr"]
    assert {"conv.nn.0.weight", "gru.weight_hh_l0", "set2set.lstm.bias_ih_l0"} <= set(names)
    assert [t.label for t in report.taps][:3] == ["lin0", "conv (call 1/3)", "gru (call 1/3)"]
    assert all(t.ok for t in report.taps)


def test_example_net_matches_on_small_random_graphs(rng):
    datas = [_data(random_points(rng, n) * 1.2, rng.integers(1, 10, n), rng) for n in (4, 7, 5)]
    for steps in (1, 3):
        batch = pyg_data.Batch.from_data_list(datas)
        report = interop.compare(_net(seed=steps, steps=steps), batch)
        _assert_ok(report)
        assert any(f"ran {steps} message-passing steps" in n for n in report.notes)


def test_perturbed_second_gru_step_is_the_first_divergence(rng):
    net = _net()
    calls = []

    def bump(module, inputs, out):
        calls.append(1)
        if len(calls) == 2:  # step 2
            return out[0] + 1e-6, out[1] + 1e-6
        return None

    net.gru.register_forward_hook(bump)
    report = interop.compare(net, _molecules(rng))
    assert not report.ok
    assert report.first_divergence == "gru"
    labels = [t.label for t in report.taps if not t.ok]
    assert labels[0] == "gru (call 2/3)"
    assert [t.ok for t in report.taps][:4] == [True, True, True, True]


def test_from_torch_gives_the_pyg_mode_mpnn(rng):
    net, batch = _net(), _molecules(rng)
    with pytest.raises(ValueError, match="steps"):
        interop.from_torch(net)
    spec, params = interop.from_torch(net, steps=3)
    assert (spec.mode, spec.use_distance, spec.steps, spec.edge_in) == ("pyg", False, 3, 5)
    graph, inputs = interop.inputs_from_torch(net, batch)
    want = net(batch).detach().numpy()
    np.testing.assert_allclose(spec(params, graph, *inputs)[:, 0], want, rtol=1e-13, atol=1e-15)


def test_unsupported_net_options_are_named(rng):
    with pytest.raises(ValueError, match=r"conv\.aggr='add'"):
        interop.from_torch(_net(aggr="add"), steps=3)
    for kwargs, match in (({"num_layers": 2}, r"gru\.num_layers=2"),
                          ({"batch_first": True}, r"gru\.batch_first=True")):
        net = _net()
        net.gru = torch.nn.GRU(8, 8, **kwargs).double()
        with pytest.raises(ValueError, match=match):
            interop.from_torch(net, steps=3)
    net = _net()
    net.set2set = pyg_nn.Set2Set(8, 3, num_layers=2).double()
    with pytest.raises(ValueError, match=r"set2set\.lstm\.num_layers=2"):
        interop.from_torch(net, steps=3)


def test_float32_net_reports_float32(rng):
    report = interop.compare(_net(dtype=torch.float32), _molecules(rng, torch.float32))
    assert report.ok, report
    assert report.dtype == "float32"


# --- independent route: our weights copied into PyG modules by hand (use_distance=True) --------


def _t(a):
    return torch.tensor(np.asarray(a), dtype=F64)


class DistanceNet(torch.nn.Module):
    """The example's network with the distance computed from ``pos`` inside the forward."""

    def __init__(self, spec: MPNN, params):
        super().__init__()
        H = spec.hidden
        self.lin0 = torch.nn.Linear(spec.node_in, H)
        net = torch.nn.Sequential(torch.nn.Linear(spec.edge_in + 1, spec.edge_hidden),
                                  torch.nn.ReLU(), torch.nn.Linear(spec.edge_hidden, H * H))
        self.conv = pyg_nn.NNConv(H, H, net, aggr="mean")
        self.gru = torch.nn.GRU(H, H)
        self.set2set = pyg_nn.aggr.Set2Set(H, processing_steps=spec.set2set_steps)
        self.lin1 = torch.nn.Linear(2 * H, H)
        self.lin2 = torch.nn.Linear(H, spec.out_channels)
        self.steps = spec.steps
        self.double()
        pairs = [
            (self.lin0.weight, params["W_in"].T), (self.lin0.bias, params["b_in"]),
            (net[0].weight, params["conv"]["edge_net"]["W0"].T),
            (net[0].bias, params["conv"]["edge_net"]["b0"]),
            (net[2].weight, params["conv"]["edge_net"]["W1"].T),
            (net[2].bias, params["conv"]["edge_net"]["b1"]),
            (self.conv.lin.weight, params["conv"]["W_root"].T),
            (self.conv.bias, params["conv"]["b"]),
            (self.gru.weight_ih_l0, params["gru"]["W_x"].T),
            (self.gru.weight_hh_l0, params["gru"]["W_h"].T),
            (self.gru.bias_ih_l0, params["gru"]["b_x"]),
            (self.gru.bias_hh_l0, params["gru"]["b_h"]),
            (self.set2set.lstm.weight_ih_l0, params["set2set"]["lstm"]["W_x"].T),
            (self.set2set.lstm.weight_hh_l0, params["set2set"]["lstm"]["W_h"].T),
            (self.set2set.lstm.bias_ih_l0, params["set2set"]["lstm"]["b_x"]),
            (self.set2set.lstm.bias_hh_l0, params["set2set"]["lstm"]["b_h"]),
            (self.lin1.weight, params["head"]["W0"].T), (self.lin1.bias, params["head"]["b0"]),
            (self.lin2.weight, params["head"]["W1"].T), (self.lin2.bias, params["head"]["b1"]),
        ]
        with torch.no_grad():
            for p, v in pairs:
                p.copy_(_t(v))

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
    return float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300))


def test_distance_mpnn_matches_hand_built_pyg_modules(rng):
    spec = MPNN(5, 3, hidden=8, edge_hidden=12, steps=3, set2set_steps=3, out_channels=2,
                mode="pyg")
    params = spec.init(rng)
    sizes = [6, 5, 7]
    pos = np.concatenate([random_points(rng, s) + 40 * k for k, s in enumerate(sizes)])
    batch = np.repeat(np.arange(3), sizes)
    graph = radius_graph(pos, 2.4, batch)
    f, ea = rng.normal(size=(len(pos), 5)), rng.normal(size=(graph.num_edges, 3))
    y, cache = spec.forward(params, graph, f, pos, ea)
    cot = rng.normal(size=y.shape)
    _, (gf, gpos, gea) = spec.backward(params, cache, cot)
    model = DistanceNet(spec, params)
    tf, tpos, tea = (_t(a).requires_grad_(True) for a in (f, pos, ea))
    ty = model(tf, tpos, tea, torch.tensor(graph.edge_index), torch.tensor(batch), 3)
    (ty * _t(cot)).sum().backward()
    assert _rel(y, ty.detach().numpy()) <= 1e-12
    for ours, theirs in ((gf, tf), (gpos, tpos), (gea, tea)):
        assert _rel(ours, theirs.grad.numpy()) <= 1e-12
