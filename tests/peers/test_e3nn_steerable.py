"""Peer cross-checks of TFNConv and SEGNN against float64 models built from e3nn.

The torch side is assembled here from e3nn modules (``gate_points_2101.Convolution``,
``FullyConnectedTensorProduct``, ``nn.Gate``, ``o3.spherical_harmonics``,
``math.soft_one_hot_linspace``) following the published model code's equations (test doubles
written for these tests: Steerable-E3-GNN's O3 layers, SEGNN layer and network, InstanceNorm and
N-body transform), built under ``torch.set_default_dtype(torch.float64)``; the weights are copied
from our params. Outputs must agree to 1e-12 (relative to the output scale) and every gradient
(torch autograd vs our hand-written backward) to 1e-10, for every parameter and input.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
e3nn = pytest.importorskip("e3nn")

from e3nn import o3 as eo3  # noqa: E402
from e3nn.math import soft_one_hot_linspace  # noqa: E402
from e3nn.nn import Gate  # noqa: E402
from e3nn.nn.models.gate_points_2101 import Convolution, smooth_cutoff  # noqa: E402

from geomp_ref.graph import complete_graph, make_graph  # noqa: E402
from geomp_ref.layers.segnn import SEGNN, SEGNNLayer  # noqa: E402
from geomp_ref.layers.segnn_blocks import O3TensorProduct, O3TensorProductGate  # noqa: E402
from geomp_ref.layers.segnn_nbody import NBodyAttributes  # noqa: E402
from geomp_ref.layers.tfn import TFNConv  # noqa: E402
from geomp_ref.params import flatten  # noqa: E402
from geomp_ref.testing import random_graph, random_points  # noqa: E402

OUT_TOL = 1e-12
GRAD_TOL = 1e-10


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(float(np.max(np.abs(b))), 1e-300) if b.size else 1.0
    return float(np.max(np.abs(a - b))) / scale if b.size else 0.0


def _t(x, grad=False):
    t = torch.tensor(np.asarray(x, dtype=np.float64))
    return t.requires_grad_(grad)


# --- TFN ------------------------------------------------------------------------------------


def _tfn_torch(lay: TFNConv):
    """e3nn's Convolution (node attribute 1x0e of ones) + gate_points' Gate for our spec."""
    conv = Convolution(str(lay.irreps_in), "0e", str(lay.irreps_sh), str(lay.irreps_conv),
                       lay.num_basis,
                       lay.radial_layers, lay.radial_neurons,
                       lay.num_neighbors if lay.num_neighbors is not None else 1.0)
    gate = None
    if lay.gate:
        acts = {1: torch.nn.functional.silu, -1: torch.tanh}
        plan = lay.gate_plan
        gate = Gate(str(plan.irreps_scalars), [acts[ir.p] for _, ir in plan.irreps_scalars],
                    str(plan.irreps_gates), [torch.sigmoid] * len(plan.irreps_gates),
                    str(plan.irreps_gated))
        assert str(gate.irreps_in) == str(lay.irreps_conv)
    return conv, gate


def _tfn_load(conv, p):
    with torch.no_grad():
        conv.sc.weight.copy_(_t(p["sc"]["weight"]))
        conv.lin1.weight.copy_(_t(p["lin1"]["weight"]))
        conv.lin2.weight.copy_(_t(p["lin2"]["weight"]))
        for k in range(len(p["radial"])):
            getattr(conv.fc, f"layer{k}").weight.copy_(_t(p["radial"][f"W{k}"]))


def _tfn_torch_forward(lay, conv, gate, graph, f, pos):
    src = torch.tensor(graph.src)
    dst = torch.tensor(graph.dst)
    edge_vec = pos[src] - pos[dst]
    sh = eo3.spherical_harmonics(str(lay.irreps_sh), edge_vec, True,
                                 normalization=lay.sh_normalization)
    length = edge_vec.norm(dim=1)
    emb = soft_one_hot_linspace(length, 0.0, lay.max_radius, lay.num_basis, basis="gaussian",
                                cutoff=False).mul(lay.num_basis ** 0.5)
    edge_attr = smooth_cutoff(length / lay.max_radius)[:, None] * sh
    ones = torch.ones(f.shape[0], 1)
    out = conv(f, ones, src, dst, edge_attr, emb)
    return gate(out) if gate is not None else out


@pytest.mark.parametrize("cfg", [
    {"irreps_in": "4x0e+2x1o+1x1e", "irreps_out": "3x0e+2x1o+1x2e", "lmax": 2, "num_neighbors": 3.0,
         "gate": True, "sh_normalization": "component"},
    {"irreps_in": "2x0e+1x0o+2x1o", "irreps_out": "2x0e+1x0o+1x1o+1x1e", "lmax": 1,
         "num_neighbors": 2.0, "gate": False, "sh_normalization": "integral", "radial_layers": 2},
])
def test_tfnconv_matches_e3nn(cfg, rng):
    lay = TFNConv(max_radius=2.5, num_basis=6, radial_neurons=8, **cfg)
    params = lay.init(rng)
    n = 7
    pos = random_points(rng, n, min_dist=0.5, scale=1.3)
    graph = random_graph(rng, n, avg_degree=3.0)
    f = rng.normal(size=(n, lay.irreps_in.dim))
    out, cache = lay.forward(params, graph, f, pos)
    cot = rng.normal(size=out.shape)
    grads, (g_f, g_pos) = lay.backward(params, cache, cot)

    conv, gate = _tfn_torch(lay)
    _tfn_load(conv, params)
    ft, post = _t(f, True), _t(pos, True)
    out_t = _tfn_torch_forward(lay, conv, gate, graph, ft, post)
    assert _rel(out, out_t.detach().numpy()) <= OUT_TOL
    (out_t * _t(cot)).sum().backward()
    assert _rel(g_f, ft.grad.numpy()) <= GRAD_TOL
    assert _rel(g_pos, post.grad.numpy()) <= GRAD_TOL
    assert _rel(grads["sc"]["weight"], conv.sc.weight.grad.numpy()) <= GRAD_TOL
    assert _rel(grads["lin1"]["weight"], conv.lin1.weight.grad.numpy()) <= GRAD_TOL
    assert _rel(grads["lin2"]["weight"], conv.lin2.weight.grad.numpy()) <= GRAD_TOL
    for k in range(len(params["radial"])):
        assert _rel(grads["radial"][f"W{k}"],
                    getattr(conv.fc, f"layer{k}").weight.grad.numpy()) <= GRAD_TOL


def test_tfnconv_zero_length_e3nn_value(rng):
    """A self-loop (zero edge vector) with zero_length='e3nn' gives e3nn's output value."""
    lay = TFNConv("2x0e+1x1o", "2x0e+1x1o", lmax=1, max_radius=2.0, num_basis=4,
                  radial_neurons=4, num_neighbors=2.0, zero_length="e3nn")
    params = lay.init(rng)
    graph = make_graph(np.array([[0, 1, 2, 1], [1, 2, 0, 1]]), 3)
    pos = random_points(rng, 3, min_dist=0.5, scale=1.0)
    f = rng.normal(size=(3, lay.irreps_in.dim))
    out = lay(params, graph, f, pos)
    conv, gate = _tfn_torch(lay)
    _tfn_load(conv, params)
    with torch.no_grad():
        ref = _tfn_torch_forward(lay, conv, gate, graph, _t(f), _t(pos)).numpy()
    assert _rel(out, ref) <= OUT_TOL


# --- SEGNN ----------------------------------------------------------------------------------


class _TorchO3TP(torch.nn.Module):
    """SEGNN's O3TensorProduct from e3nn parts: FCTP, the sqrt(fan_in) rescale, scalar biases."""

    def __init__(self, spec: O3TensorProduct, params):
        super().__init__()
        in2 = str(spec.irreps_in2) if spec.irreps_in2 is not None else "1x0e"
        self.tp = eo3.FullyConnectedTensorProduct(str(spec.irreps_in1), in2, str(spec.irreps_out),
                                                  shared_weights=True)
        fan = {}
        for ins, w in zip(self.tp.instructions, self.tp.weight_views()):
            fan[ins.i_out] = fan.get(ins.i_out, 0) + w.shape[0] * w.shape[1]
        sqrt_k = torch.zeros(spec.irreps_out.dim)
        cols = []
        for k, ((_, ir), sl) in enumerate(zip(spec.irreps_out, spec.irreps_out.slices())):
            sqrt_k[sl] = 1.0 / fan[k] ** 0.5
            # the published code reads l from the irreps string: every l = 0 block gets a bias
            if ir.l == 0 and (ir.p == 1 or spec.mode == "reference"):
                cols.extend(range(sl.start, sl.stop))
        self.register_buffer("sqrt_k", sqrt_k)
        self.cols = torch.tensor(cols, dtype=torch.long)
        with torch.no_grad():
            self.tp.weight.copy_(_t(params["weight"]))
        self.bias = torch.nn.Parameter(_t(params["bias"])) if "bias" in params else None

    def forward(self, x1, x2=None):
        if x2 is None:
            x2 = torch.ones_like(x1[:, :1])
        out = self.tp(x1, x2) / self.sqrt_k
        if self.bias is not None:
            out = out.index_add(1, self.cols, self.bias.expand(out.shape[0], -1))
        return out

    def grads(self):
        g = {"weight": self.tp.weight.grad.numpy()}
        if self.bias is not None:
            g["bias"] = self.bias.grad.numpy()
        return g


class _TorchO3TPGate(torch.nn.Module):
    """The published swish gate: the product's output goes to e3nn's Gate as it is."""

    def __init__(self, spec: O3TensorProductGate, params):
        super().__init__()
        self.lin = _TorchO3TP(spec.tp, params)
        out = eo3.Irreps(str(spec.irreps_out))
        gated = out[1:]
        if gated.num_irreps:
            self.gate = Gate(str(out[0:1]), [torch.nn.SiLU()], f"{gated.num_irreps}x0e",
                             [torch.sigmoid], gated)
        else:
            self.gate = torch.nn.SiLU()

    def forward(self, x1, x2=None):
        return self.gate(self.lin(x1, x2))

    def grads(self):
        return self.lin.grads()


class _TorchInstanceNorm(torch.nn.Module):
    """The published InstanceNorm (reduce='mean'): scalars centred per graph, each field divided
    by sqrt(graph mean of its mean square + eps), weight per field, bias per l = 0 field."""

    def __init__(self, spec, params):
        super().__init__()
        self.irreps, self.eps, self.spec = eo3.Irreps(str(spec.irreps)), spec.eps, spec
        self.weight = torch.nn.Parameter(_t(params["weight"]))
        self.bias = torch.nn.Parameter(_t(params["bias"]))

    def forward(self, x, batch, num_graphs):
        cnt = torch.zeros(num_graphs).index_add(0, batch, torch.ones(len(batch))).clamp(min=1)

        def mean_pool(v):
            return torch.zeros((num_graphs,) + v.shape[1:]).index_add(0, batch, v) / cnt.reshape(
                (-1,) + (1,) * (v.dim() - 1))

        fields, ix, iw, ib = [], 0, 0, 0
        for mul, ir in self.irreps:
            f = x[:, ix:ix + mul * ir.dim].reshape(-1, mul, ir.dim)
            ix += mul * ir.dim
            if ir.l == 0:
                f = f - mean_pool(f)[batch]
            norm = mean_pool(f.pow(2).mean(-1))
            norm = (norm + self.eps).pow(-0.5) * self.weight[None, iw:iw + mul]
            iw += mul
            f = f * norm[batch].reshape(-1, mul, 1)
            if ir.l == 0 and (ir.p == 1 or self.spec.mode == "reference"):
                f = f + self.bias[ib:ib + mul].reshape(mul, 1)
                ib += mul
            fields.append(f.reshape(-1, mul * ir.dim))
        return torch.cat(fields, dim=-1)

    def grads(self):
        return {"weight": self.weight.grad.numpy(), "bias": self.bias.grad.numpy()}


def _torch_block(spec, params):
    return (_TorchO3TPGate if isinstance(spec, O3TensorProductGate) else _TorchO3TP)(spec, params)


def _torch_layer(lay: SEGNNLayer, params):
    mods = {k: _torch_block(getattr(lay, k), params[k]) for k in ("msg1", "msg2", "upd1", "upd2")}
    if lay.feature_norm is not None:
        mods["feature_norm"] = _TorchInstanceNorm(lay.feature_norm, params["feature_norm"])
    return mods


def _torch_layer_forward(mods, graph, h, ea, na, msg):
    src, dst = torch.tensor(graph.src), torch.tensor(graph.dst)
    inp = torch.cat([h[dst], h[src]] + ([msg] if msg is not None else []), dim=1)
    m = mods["msg2"](mods["msg1"](inp, ea), ea)
    agg = torch.zeros(h.shape[0], m.shape[1]).index_add(0, dst, m)
    out = h + mods["upd2"](mods["upd1"](torch.cat([h, agg], dim=1), na), na)
    if "feature_norm" in mods:
        out = mods["feature_norm"](out, torch.tensor(graph.batch), graph.num_graphs)
    return out


def _torch_grads(mods):
    return {k: m.grads() for k, m in mods.items()}


def _check_grads(ours, theirs, where=""):
    """Every leaf within GRAD_TOL of its own scale; a leaf whose true gradient is exactly zero
    (upd2's scalar bias before an instance norm, which centres it away) is rounding noise on both
    sides, so scales below 1e-3 of the largest gradient are floored there."""
    fo, ft = flatten(ours), flatten(theirs)
    assert fo.keys() == ft.keys(), (where, sorted(fo), sorted(ft))
    floor = 1e-3 * max(float(np.max(np.abs(v))) for v in ft.values() if v.size)
    for k in fo:
        scale = max(float(np.max(np.abs(ft[k]))) if ft[k].size else 0.0, floor)
        assert float(np.max(np.abs(fo[k] - ft[k]), initial=0.0)) <= GRAD_TOL * scale, (where, k)


def _inputs_with_grad(*xs):
    return [None if x is None else _t(x, True) for x in xs]


@pytest.mark.parametrize("mode,norm,add", [("reference", None, "1x0e"),
                                           ("corrected", "instance", "2x0e"),
                                           ("reference", "instance", None)])
def test_segnn_layer_matches_e3nn(mode, norm, add, rng):
    lay = SEGNNLayer("4x0e+2x1o+1x2e", "1x0e+1x1o+1x2e", additional_message_irreps=add,
                     norm=norm, mode=mode)
    params = lay.init(rng)
    n = 7
    graph = random_graph(rng, n, avg_degree=3.0, num_graphs=2)  # isolated nodes included
    E = graph.num_edges
    xs = (rng.normal(size=(n, lay.irreps_hidden.dim)), rng.normal(size=(E, 9)),
          rng.normal(size=(n, 9)), None if add is None else rng.normal(size=(E, lay.
                                                                           additional_message_irreps.dim)))
    out, cache = lay.forward(params, graph, *xs)
    cot = rng.normal(size=out.shape)
    grads, g_in = lay.backward(params, cache, cot)
    mods = _torch_layer(lay, params)
    ts = _inputs_with_grad(*xs)
    out_t = _torch_layer_forward(mods, graph, *ts)
    assert _rel(out, out_t.detach().numpy()) <= OUT_TOL
    (out_t * _t(cot)).sum().backward()
    for g, t in zip(g_in, ts):
        assert (g is None) == (t is None) and (t is None or _rel(g, t.grad.numpy()) <= GRAD_TOL)
    _check_grads(grads, _torch_grads(mods))


def _torch_attributes(net, graph, pos):
    """SEGNN's computed attributes: harmonics, their mean with column 0 replaced, |x_ij|^2."""
    src, dst = torch.tensor(graph.src), torch.tensor(graph.dst)
    rel = pos[src] - pos[dst]
    ea = eo3.spherical_harmonics(eo3.Irreps.spherical_harmonics(net.lmax_attr), rel, True,
                                 normalization=net.sh_normalization)
    cnt = torch.zeros(graph.num_nodes).index_add(0, dst, torch.ones(len(dst))).clamp(min=1)
    na = torch.zeros(graph.num_nodes, ea.shape[1]).index_add(0, dst, ea) / cnt[:, None]
    y0 = 1.0 if net.mode == "reference" or net.sh_normalization != "integral" else (
        4 * np.pi) ** -0.5
    na = torch.cat([torch.full_like(na[:, :1], y0), na[:, 1:]], dim=1)
    return ea, na, rel.pow(2).sum(1, keepdim=True)


def _torch_nbody(graph, pos, vel, q, lmax):
    """The published N-body transform (O3Transform), with its per-node centring."""
    src, dst = torch.tensor(graph.src), torch.tensor(graph.dst)
    irreps = eo3.Irreps.spherical_harmonics(lmax)
    rel = pos[src] - pos[dst]
    ea = eo3.spherical_harmonics(irreps, rel, normalize=True, normalization="integral")
    cnt = torch.zeros(graph.num_nodes).index_add(0, dst, torch.ones(len(dst))).clamp(min=1)
    na = torch.zeros(graph.num_nodes, ea.shape[1]).index_add(0, dst, ea) / cnt[:, None]
    na = na + eo3.spherical_harmonics(irreps, vel, normalize=True, normalization="integral")
    na = torch.cat([torch.ones_like(na[:, :1]), na[:, 1:]], dim=1)  # the network's overwrite
    x = torch.cat([pos - pos.mean(1, keepdim=True), vel, vel.pow(2).sum(1, keepdim=True).sqrt()],
                  1)
    msg = torch.cat([rel.pow(2).sum(1, keepdim=True).sqrt(), q[dst] * q[src]], dim=-1)
    return x, ea, na, msg


def _torch_segnn(net: SEGNN, params):
    mods = {k: _torch_block(getattr(net, k), params[k]) for k in params if k != "layers"}
    layers = [_torch_layer(net.layer, params["layers"][str(k)]) for k in range(net.num_layers)]
    return mods, layers


def _torch_segnn_forward(net, mods, layers, graph, f, ea, na, msg):
    x = mods["embed"](f, na)
    for lm in layers:
        x = _torch_layer_forward(lm, graph, x, ea, na, msg)
    x = mods["pre2"](mods["pre1"](x, na), na)
    if net.task == "graph":
        batch = torch.tensor(graph.batch)
        x = torch.zeros(graph.num_graphs, x.shape[1]).index_add(0, batch, x)
        if net.pool == "avg":
            cnt = torch.zeros(graph.num_graphs).index_add(0, batch, torch.ones(len(batch)))
            x = x / cnt[:, None]
        x = mods["post2"](mods["post1"](x))
    return x


def _all_torch_grads(mods, layers):
    g = _torch_grads(mods)
    g["layers"] = {str(k): _torch_grads(lm) for k, lm in enumerate(layers)}
    return g


@pytest.mark.parametrize("cfg", [
    # the published QM9 model: graph task, instance norm, avg pooling, |x_ij|^2, component SH
    {"irreps_in": "5x0e", "irreps_hidden": "6x0e+2x1o+1x2e", "irreps_out": "1x0e", "task": "graph",
     "pool": "avg", "norm": "instance", "sh_normalization": "component", "lmax_attr": 2},
    {"irreps_in": "2x1o+1x0e", "irreps_hidden": "4x0e+2x1o", "irreps_out": "1x0e+1x1o",
     "task": "graph", "pool": "sum"},
    # a 0o hidden block: the published gate reads the product output unsorted
    {"irreps_in": "2x1o+1x0e+1x0o", "irreps_hidden": "3x0e+1x0o+1x1o+1x1e",
     "irreps_out": "1x1o", "task": "node", "message_features": "none"},
])
def test_segnn_model_matches_e3nn(cfg, rng):
    net = SEGNN(num_layers=2, mode="reference", **cfg)
    params = net.init(rng)
    graph = complete_graph(5, np.repeat([0, 1], [3, 2]))
    pos = random_points(rng, 5)
    f = rng.normal(size=(5, net.irreps_in.dim))
    out, cache = net.forward(params, graph, f, pos)
    cot = rng.normal(size=out.shape)
    grads, (g_f, g_pos, *_) = net.backward(params, cache, cot)
    mods, layers = _torch_segnn(net, params)
    ft, post = _t(f, True), _t(pos, True)
    ea, na, sq = _torch_attributes(net, graph, post)
    msg = sq if net.message_features == "squared_distance" else None
    out_t = _torch_segnn_forward(net, mods, layers, graph, ft, ea, na, msg)
    assert _rel(out, out_t.detach().numpy()) <= OUT_TOL
    (out_t * _t(cot)).sum().backward()
    assert _rel(g_f, ft.grad.numpy()) <= GRAD_TOL
    assert _rel(g_pos, post.grad.numpy()) <= GRAD_TOL
    _check_grads(grads, _all_torch_grads(mods, layers))


def test_segnn_nbody_model_matches_e3nn(rng):
    """The published N-body model end to end: transform -> SEGNN -> pos + out, gradients with
    respect to positions, velocities, charges and every weight."""
    att = NBodyAttributes(lmax_attr=2, mode="reference")
    net = SEGNN("2x1o+1x0e", "6x0e+2x1o+1x2e", "1x1o", num_layers=2, lmax_attr=2, task="node",
                edge_attr="input", node_attr="input", message_features="input",
                additional_message_irreps="2x0e", mode="reference")
    params = net.init(rng)
    graph = complete_graph(10, np.repeat([0, 1], 5))  # two five-body systems
    pos, vel = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    q = rng.choice([-1.0, 1.0], size=(10, 1))
    (f, ea, na, msg), c_att = att.forward({}, graph, pos, vel, q)
    out, cache = net.forward(params, graph, f, None, ea, na, msg)
    cot = rng.normal(size=out.shape)
    grads, (g_f, _, g_ea, g_na, g_msg) = net.backward(params, cache, cot)
    _, (g_pos, g_vel, g_q) = att.backward({}, c_att, (g_f, g_ea, g_na, g_msg))
    g_pos = g_pos + cot  # loc_pred = pos + model(graph)

    mods, layers = _torch_segnn(net, params)
    post, velt, qt = _t(pos, True), _t(vel, True), _t(q, True)
    xt, eat, nat, msgt = _torch_nbody(graph, post, velt, qt, 2)
    pred = post + _torch_segnn_forward(net, mods, layers, graph, xt, eat, nat, msgt)
    assert _rel(pos + out, pred.detach().numpy()) <= OUT_TOL
    (pred * _t(cot)).sum().backward()
    for ours, t in ((g_pos, post), (g_vel, velt), (g_q, qt)):
        assert _rel(ours, t.grad.numpy()) <= GRAD_TOL
    _check_grads(grads, _all_torch_grads(mods, layers))
