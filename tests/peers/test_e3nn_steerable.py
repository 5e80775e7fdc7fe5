"""Peer cross-checks of TFNConv and the SEGNN blocks against float64 models built from e3nn.

The torch side is assembled here from e3nn modules (``gate_points_2101.Convolution``,
``FullyConnectedTensorProduct``, ``nn.Gate``, ``o3.spherical_harmonics``,
``math.soft_one_hot_linspace``) following the published model code's equations, built under
``torch.set_default_dtype(torch.float64)``; the weights are copied from our params. Outputs must
agree to 1e-12 (relative to the output scale) and every gradient (torch autograd vs our
hand-written backward) to 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
e3nn = pytest.importorskip("e3nn")

from e3nn import o3 as eo3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import Gate
from e3nn.nn.models.gate_points_2101 import Convolution, smooth_cutoff

from geomp_ref.graph import complete_graph, make_graph
from geomp_ref.layers.segnn import SEGNN, SEGNNLayer
from geomp_ref.layers.segnn_blocks import O3TensorProduct, O3TensorProductGate
from geomp_ref.layers.tfn import TFNConv
from geomp_ref.testing import random_graph, random_points

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
        self.has_x2 = spec.irreps_in2 is not None
        in2 = str(spec.irreps_in2) if self.has_x2 else "1x0e"
        self.tp = eo3.FullyConnectedTensorProduct(str(spec.irreps_in1), in2, str(spec.irreps_out),
                                                  shared_weights=True)
        fan = {}
        for ins, w in zip(self.tp.instructions, self.tp.weight_views()):
            fan[ins.i_out] = fan.get(ins.i_out, 0) + w.shape[0] * w.shape[1]
        sqrt_k = torch.zeros(spec.irreps_out.dim)
        cols = []
        for k, ((mul, ir), sl) in enumerate(zip(spec.irreps_out, spec.irreps_out.slices())):
            sqrt_k[sl] = 1.0 / fan[k] ** 0.5
            # Steerable-E3-GNN reads l from the irreps string: every l = 0 block gets a bias
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


class _TorchO3TPGate(torch.nn.Module):
    def __init__(self, spec: O3TensorProductGate, params):
        super().__init__()
        self.lin = _TorchO3TP(spec.tp, params)
        out = spec.irreps_out
        gated = eo3.Irreps(str(out[1:])) if len(out) > 1 else eo3.Irreps("")
        out = eo3.Irreps(str(out))
        if gated.num_irreps:
            self.gate = Gate(str(out[0]), [torch.nn.SiLU()], f"{gated.num_irreps}x0e",
                             [torch.sigmoid], gated)
        else:
            self.gate = torch.nn.SiLU()

    def forward(self, x1, x2=None):
        return self.gate(self.lin(x1, x2))


def _segnn_layer_torch(lay: SEGNNLayer, params):
    mods = {k: (_TorchO3TPGate if k != "upd2" else _TorchO3TP)(getattr(lay, k), params[k])
            for k in ("msg1", "msg2", "upd1", "upd2")}
    return mods


def _torch_attributes(lay, graph, pos):
    src, dst = torch.tensor(graph.src), torch.tensor(graph.dst)
    rel = pos[src] - pos[dst]
    a_ij = eo3.spherical_harmonics(eo3.Irreps.spherical_harmonics(lay.lmax_attr), rel, True,
                                   normalization=lay.sh_normalization)
    cnt = torch.zeros(graph.num_nodes).index_add(0, dst, torch.ones(len(dst))).clamp(min=1)
    a_i = torch.zeros(graph.num_nodes, a_ij.shape[1]).index_add(0, dst, a_ij) / cnt[:, None]
    y0 = 1.0 if lay.mode == "reference" else a_ij.new_tensor(
        1.0 if lay.sh_normalization != "integral" else (4 * np.pi) ** -0.5)
    a_i = torch.cat([torch.full_like(a_i[:, :1], float(y0)), a_i[:, 1:]], dim=1)
    return src, dst, rel, a_ij, a_i


def _segnn_layer_torch_forward(lay, mods, graph, h, pos, att=None):
    src, dst, rel, a_ij, a_i = att if att is not None else _torch_attributes(lay, graph, pos)
    inp = torch.cat([h[dst], h[src], rel.pow(2).sum(1, keepdim=True)], dim=1)
    m = mods["msg2"](mods["msg1"](inp, a_ij), a_ij)
    agg = torch.zeros(h.shape[0], m.shape[1]).index_add(0, dst, m)
    upd = mods["upd2"](mods["upd1"](torch.cat([h, agg], dim=1), a_i), a_i)
    return h + upd


def _all_param_grads(mods):
    out = {}
    for k, mod in mods.items():
        lin = mod.lin if isinstance(mod, _TorchO3TPGate) else mod
        d = {"weight": lin.tp.weight.grad.numpy()}
        if lin.bias is not None:
            d["bias"] = lin.bias.grad.numpy()
        out[k] = d
    return out


@pytest.mark.parametrize("mode,norm", [("reference", "integral"), ("corrected", "component")])
def test_segnn_layer_matches_e3nn(mode, norm, rng):
    lay = SEGNNLayer("4x0e+2x1o+1x2e", lmax_attr=2, mode=mode, sh_normalization=norm)
    params = lay.init(rng)
    n = 6
    graph = random_graph(rng, n, avg_degree=3.0, num_graphs=2)  # isolated nodes included
    pos = random_points(rng, n)
    h = rng.normal(size=(n, lay.irreps_hidden.dim))
    out, cache = lay.forward(params, graph, h, pos)
    cot = rng.normal(size=out.shape)
    grads, (g_h, g_pos) = lay.backward(params, cache, cot)

    mods = _segnn_layer_torch(lay, params)
    ht, post = _t(h, True), _t(pos, True)
    out_t = _segnn_layer_torch_forward(lay, mods, graph, ht, post)
    assert _rel(out, out_t.detach().numpy()) <= OUT_TOL
    (out_t * _t(cot)).sum().backward()
    assert _rel(g_h, ht.grad.numpy()) <= GRAD_TOL
    assert _rel(g_pos, post.grad.numpy()) <= GRAD_TOL
    tg = _all_param_grads(mods)
    for k in tg:
        for name in tg[k]:
            assert _rel(grads[k][name], tg[k][name]) <= GRAD_TOL, (k, name)


def test_segnn_graph_model_matches_e3nn(rng):
    net = SEGNN("2x1o+1x0e", "4x0e+2x1o", "1x0e", num_layers=2, lmax_attr=1, task="graph",
                pool="avg", mode="reference")
    params = net.init(rng)
    graph = complete_graph(5, np.repeat([0, 1], [3, 2]))
    pos = random_points(rng, 5)
    f = rng.normal(size=(5, net.irreps_in.dim))
    out, cache = net.forward(params, graph, f, pos)
    cot = rng.normal(size=out.shape)
    grads, (g_f, g_pos) = net.backward(params, cache, cot)

    b = net.blocks
    mods = {k: (_TorchO3TPGate if isinstance(b[k], O3TensorProductGate) else _TorchO3TP)(
        b[k], params[k]) for k in ("embed", "pre1", "pre2", "post1", "post2")}
    layers = [_segnn_layer_torch(b[f"layer{k}"], params[f"layer{k}"]) for k in range(2)]
    ft, post = _t(f, True), _t(pos, True)
    att = _torch_attributes(b["layer0"], graph, post)
    x = mods["embed"](ft, att[4])
    for mod in layers:
        x = _segnn_layer_torch_forward(b["layer0"], mod, graph, x, post, att)
    x = mods["pre2"](mods["pre1"](x, att[4]), att[4])
    batch = torch.tensor(graph.batch)
    cnt = torch.zeros(graph.num_graphs).index_add(0, batch, torch.ones(5))
    pooled = torch.zeros(graph.num_graphs, x.shape[1]).index_add(0, batch, x) / cnt[:, None]
    out_t = mods["post2"](mods["post1"](pooled))
    assert _rel(out, out_t.detach().numpy()) <= OUT_TOL
    (out_t * _t(cot)).sum().backward()
    assert _rel(g_f, ft.grad.numpy()) <= GRAD_TOL
    assert _rel(g_pos, post.grad.numpy()) <= GRAD_TOL
    tg = _all_param_grads(mods)
    for k in tg:
        for name in tg[k]:
            assert _rel(grads[k][name], tg[k][name]) <= GRAD_TOL, (k, name)
    for i, mod in enumerate(layers):
        tg = _all_param_grads(mod)
        for k in tg:
            for name in tg[k]:
                assert _rel(grads[f"layer{i}"][k][name], tg[k][name]) <= GRAD_TOL, (i, k, name)
