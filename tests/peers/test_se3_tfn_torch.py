"""SE3Conv, SE3NormNonlinearity and NBodySE3TFN against torch doubles of the published TFN
baseline (tests/peers/_se3_tfn_doubles.py) given the same float64 weights: outputs and every
gradient (weights, features, positions, velocities, charges) through torch autograd.

The basis of the doubles comes from e3nn (its Wigner 3j symbols and harmonics), so the kernel
basis, the radial networks, the self-interaction, the mean and the norm nonlinearity are all
checked against an independent route.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("e3nn")

from geomp_ref.graph import complete_graph, radius_graph  # noqa: E402
from geomp_ref.layers.se3_tfn import SE3Conv, SE3NormNonlinearity  # noqa: E402
from geomp_ref.models.nbody_steerable import NBodySE3TFN  # noqa: E402
from geomp_ref.testing import random_points  # noqa: E402


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _doubles():
    from . import _se3_tfn_doubles as D

    return D


def _T(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _load_conv(conv, torch_conv, p):
    with torch.no_grad():
        for key, rp in p["radial"].items():
            l, k = key.split(",")
            net = torch_conv.kernel_unary[f"({l},{k})"].rp.net
            for i, name in ((0, "1"), (3, "2"), (6, "3")):
                net[i].weight.copy_(_T(rp["W" + name].T))
                net[i].bias.copy_(_T(rp["b" + name]))
            for i, name in ((1, "ln1"), (4, "ln2")):
                net[i].bn.weight.copy_(_T(rp[name + "_gamma"]))
                net[i].bn.bias.copy_(_T(rp[name + "_beta"]))
        assert set(torch_conv.kernel_self.keys()) == set(p["self"])
        for k, W in p["self"].items():
            torch_conv.kernel_self[k].copy_(_T(W[None]))


def _load_norm(torch_norm, p):
    with torch.no_grad():
        for l, q in p.items():
            net = torch_norm.transform[l]
            net[0].bn.weight.copy_(_T(q["ln_gamma"]))
            net[0].bn.bias.copy_(_T(q["ln_beta"]))
            net[2].weight.copy_(_T(q["W"].T))
            net[2].bias.copy_(_T(q["b"]))


def _to_dict(f, channels):
    out, s = {}, 0
    for l, m in enumerate(channels):
        w = m * (2 * l + 1)
        if m:
            out[str(l)] = _T(f[:, s:s + w].reshape(len(f), m, 2 * l + 1)).requires_grad_(True)
        s += w
    return out


def _from_dict(h, channels, rows):
    return torch.cat([h[str(l)].reshape(rows, -1) for l, m in enumerate(channels) if m], dim=1)


def _grad_tree(torch_params):
    return {name: p.grad.numpy() for name, p in torch_params}


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("cin, cout, self_int", [
    ((1, 1), (3, 2), True),
    ((2, 1, 1), (1, 2, 1), True),
    ((2, 2), (0, 1), True),
    ((2, 1), (1, 2), False),
])
def test_conv_matches_double(rng, cin, cout, self_int):
    D = _doubles()
    conv = SE3Conv(cin, cout, self_interaction=self_int, radial_hidden=32)
    p = conv.init(rng)
    n = 7
    pos = random_points(rng, n, min_dist=0.5, scale=1.2)
    graph = radius_graph(pos, 1.6)  # some nodes may be isolated: both give 0 there
    f = rng.normal(size=(n, conv.dim_in))
    out, cache = conv.forward(p, graph, f, pos)
    g_out = rng.normal(size=out.shape)
    grads, (g_f, g_pos) = conv.backward(p, cache, g_out)

    tc = D.GConvSE3([(m, l) for l, m in enumerate(cin) if m],
                    [(m, l) for l, m in enumerate(cout) if m], self_interaction=self_int)
    _load_conv(conv, tc, p)
    G = D.Graph(graph.src, graph.dst, n)
    x = _T(pos).requires_grad_(True)
    G.edata["d"] = x[G.dst] - x[G.src]
    basis, r = D.get_basis_and_r(G, max(len(cin), len(cout)) - 1)
    h = _to_dict(f, cin)
    y = _from_dict(tc(h, G=G, r=r, basis=basis), cout, n)
    assert _rel(out, y.detach().numpy()) <= 1e-13
    (y * _T(g_out)).sum().backward()
    assert _rel(g_pos, x.grad.numpy()) <= 1e-12
    assert _rel(g_f, _from_dict({k: v.grad for k, v in h.items()}, cin, n).numpy()) <= 1e-12
    tg = _grad_tree(tc.named_parameters())
    for key, rp in grads["radial"].items():
        l, k = key.split(",")
        pre = f"kernel_unary.({l},{k}).rp.net."
        for i, name in ((0, "1"), (3, "2"), (6, "3")):
            assert _rel(rp["W" + name], tg[pre + f"{i}.weight"].T) <= 1e-12, (key, name)
            assert _rel(rp["b" + name], tg[pre + f"{i}.bias"]) <= 1e-12, (key, name)
        for i, name in ((1, "ln1"), (4, "ln2")):
            assert _rel(rp[name + "_gamma"], tg[pre + f"{i}.bn.weight"]) <= 1e-12, (key, name)
            assert _rel(rp[name + "_beta"], tg[pre + f"{i}.bn.bias"]) <= 1e-12, (key, name)
    for k, gW in grads["self"].items():
        assert _rel(gW, tg[f"kernel_self.{k}"][0]) <= 1e-12


def test_norm_matches_double(rng):
    D = _doubles()
    ch = (5, 4, 3)
    nl = SE3NormNonlinearity(ch)
    p = nl.init(rng)
    f = rng.normal(size=(6, 5 + 12 + 15))
    f[2, 5:8] = 0.0  # a zero vector: the published clamp
    out, cache = nl.forward(p, f)
    g_out = rng.normal(size=out.shape)
    grads, (g_f,) = nl.backward(p, cache, g_out)
    tn = D.GNormSE3([(m, l) for l, m in enumerate(ch)], num_layers=1)
    _load_norm(tn, p)
    h = _to_dict(f, ch)
    y = _from_dict(tn(h), ch, 6)
    assert _rel(out, y.detach().numpy()) <= 1e-13
    (y * _T(g_out)).sum().backward()
    assert _rel(g_f, _from_dict({k: v.grad for k, v in h.items()}, ch, 6).numpy()) <= 1e-13
    tg = _grad_tree(tn.named_parameters())
    for l, q in grads.items():
        assert _rel(q["W"], tg[f"transform.{l}.2.weight"].T) <= 1e-12
        assert _rel(q["b"], tg[f"transform.{l}.2.bias"]) <= 1e-12
        assert _rel(q["ln_gamma"], tg[f"transform.{l}.0.bn.weight"]) <= 1e-12
        assert _rel(q["ln_beta"], tg[f"transform.{l}.0.bn.bias"]) <= 1e-12


@pytest.mark.parametrize("channels, layers", [(16, 4), (3, 3)])
def test_nbody_model_matches_double(rng, channels, layers):
    """The published N-body use: h = {0: charge, 1: velocity}, d = x_dst - x_src on complete
    five-body graphs, prediction x + output."""
    D = _doubles()
    model = NBodySE3TFN(channels=channels, num_layers=layers)
    p = model.init(rng)
    B, n = 3, 5
    graph = complete_graph(B * n, np.repeat(np.arange(B), n))
    x = np.concatenate([random_points(rng, n, min_dist=0.5) for _ in range(B)])
    v = rng.normal(size=(B * n, 3))
    q = rng.choice([-1.0, 1.0], size=(B * n, 1))
    out, cache = model.forward(p, graph, x, v, q)
    g_out = rng.normal(size=out.shape)
    grads, (g_x, g_v, g_q) = model.backward(p, cache, g_out)

    tm = D.OursTFN(num_layers=layers, num_channels=channels, num_degrees=2)
    for k in range(layers):
        _load_conv(model.convs[k], tm.block0[2 * k], p["conv"][str(k)])
        if k < layers - 1:
            _load_norm(tm.block0[2 * k + 1], p["norm"][str(k)])
    G = D.Graph(graph.src, graph.dst, B * n)
    xt, vt, qt = (_T(a).requires_grad_(True) for a in (x, v, q))
    G.ndata["f"] = qt.unsqueeze(2)
    G.ndata["f1"] = vt.unsqueeze(1)
    G.edata["d"] = xt[G.dst] - xt[G.src]
    y = tm(G)["1"].view(-1, 3) + xt
    assert _rel(out, y.detach().numpy()) <= 1e-13
    (y * _T(g_out)).sum().backward()
    for ours, theirs in ((g_x, xt), (g_v, vt), (g_q, qt)):
        assert _rel(ours, theirs.grad.numpy()) <= 1e-11
    tg = _grad_tree(tm.named_parameters())
    for k in range(layers):
        pc = grads["conv"][str(k)]
        pre = f"block0.{2 * k}."
        for key, rp in pc["radial"].items():
            l, kk = key.split(",")
            assert _rel(rp["W3"], tg[pre + f"kernel_unary.({l},{kk}).rp.net.6.weight"].T) <= 1e-11
            assert _rel(rp["W1"], tg[pre + f"kernel_unary.({l},{kk}).rp.net.0.weight"].T) <= 1e-11
        for kk, gW in pc["self"].items():
            assert _rel(gW, tg[pre + f"kernel_self.{kk}"][0]) <= 1e-11
        if k < layers - 1:
            for l, gq in grads["norm"][str(k)].items():
                assert _rel(gq["W"], tg[f"block0.{2 * k + 1}.transform.{l}.2.weight"].T) <= 1e-11


# --- training in lockstep ------------------------------------------------------------------------


def _pairs_of_leaves(model, p, tm):
    """(name, ours, theirs) for every parameter: our leaf and the torch tensor in our layout."""
    for k in range(len(model.convs)):
        conv = tm.block0[2 * k]
        for key, rp in p["conv"][str(k)]["radial"].items():
            l, kk = key.split(",")
            net = conv.kernel_unary[f"({l},{kk})"].rp.net
            for i, name in ((0, "1"), (3, "2"), (6, "3")):
                yield f"{k}/{key}/W{name}", rp["W" + name], net[i].weight.detach().numpy().T
                yield f"{k}/{key}/b{name}", rp["b" + name], net[i].bias.detach().numpy()
            for i, name in ((1, "ln1"), (4, "ln2")):
                bn = net[i].bn
                yield f"{k}/{key}/{name}_gamma", rp[name + "_gamma"], bn.weight.detach().numpy()
                yield f"{k}/{key}/{name}_beta", rp[name + "_beta"], bn.bias.detach().numpy()
        for kk, W in p["conv"][str(k)]["self"].items():
            yield f"{k}/self/{kk}", W, conv.kernel_self[kk].detach().numpy()[0]
        if k < len(model.norms):
            for l, q in p["norm"][str(k)].items():
                net = tm.block0[2 * k + 1].transform[l]
                yield f"{k}/norm/{l}/W", q["W"], net[2].weight.detach().numpy().T
                yield f"{k}/norm/{l}/b", q["b"], net[2].bias.detach().numpy()
                yield f"{k}/norm/{l}/ln_gamma", q["ln_gamma"], net[0].bn.weight.detach().numpy()
                yield f"{k}/norm/{l}/ln_beta", q["ln_beta"], net[0].bn.bias.detach().numpy()


def test_twenty_adam_steps_agree_with_torch(tmp_path):
    """Our NBodySE3TFN with hand gradients and geomp_ref.train.Adam against the torch double
    with autograd and torch.optim.Adam: same weights, same batches of our generator's data, the
    published learning rate 1e-3 and weight decay 1e-12; after 20 steps every parameter agrees to
    1e-9 relative."""
    from ._lockstep import lockstep, small_nbody_set

    D = _doubles()
    data = small_nbody_set(tmp_path)
    model = NBodySE3TFN(channels=4, num_layers=3)
    params = model.init(np.random.default_rng(3))
    tm = D.OursTFN(num_layers=3, num_channels=4, num_degrees=2)
    for k in range(3):
        _load_conv(model.convs[k], tm.block0[2 * k], params["conv"][str(k)])
        if k < 2:
            _load_norm(tm.block0[2 * k + 1], params["norm"][str(k)])
    initial = params

    def loss_of(batch):
        G = D.Graph(batch.graph.src, batch.graph.dst, batch.graph.num_nodes)
        x = _T(batch.x)
        G.ndata["f"], G.ndata["f1"] = _T(batch.charges).unsqueeze(2), _T(batch.v).unsqueeze(1)
        G.edata["d"] = x[G.dst] - x[G.src]
        return torch.nn.functional.mse_loss(tm(G)["1"].view(-1, 3) + x, _T(batch.target))

    params, losses = lockstep(model, params, tm, loss_of, data, lr=1e-3,
                              weight_decay=1e-12)
    ours_loss, torch_loss = losses.T
    np.testing.assert_allclose(ours_loss, torch_loss, rtol=1e-10)
    assert ours_loss[-1] < ours_loss[0]
    init_leaves = {name: a for name, a, _ in _pairs_of_leaves(model, initial, tm)}
    for name, ours, theirs in _pairs_of_leaves(model, params, tm):
        assert _rel(ours, theirs) <= 1e-9, name
        assert not np.array_equal(ours, init_leaves[name]), f"{name} did not train"
