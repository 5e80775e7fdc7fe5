"""Our N-body TFN against e3nn's own network of the same architecture, and in lockstep training.

``NBodyTFN`` (the ``tfn`` row of the N-body table) is a stack of e3nn's ``gate_points_2101``
convolution and gate; e3nn publishes that stack as ``gate_points_2101.Network``. Here the class
itself is built in float64 with the sizes of ``make_model("tfn")`` (the published N-body
configuration), our weights are copied in, and ``pos + Network.forward`` is compared with our
forward and every gradient (weights by name, positions, velocities, charges). One function of
e3nn's module is replaced during the calls: its naive ``radius_graph`` (``cdist > 0``, which
rounding lets self pairs through) by the complete graph of the N-body loader.

Then both train: the same initial weights, the same batches of a small set written by our
generator, ``torch.optim.Adam`` with autograd against :class:`geomp_ref.train.Adam` with the hand
backward; after 20 steps every parameter agrees to 1e-9 relative.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("e3nn")

from e3nn import o3 as eo3  # noqa: E402
from e3nn.nn.models import gate_points_2101 as gp  # noqa: E402

from geomp_ref.models.nbody import make_model  # noqa: E402
from geomp_ref.params import flatten  # noqa: E402

from ._lockstep import lockstep, small_nbody_set  # noqa: E402

F64 = torch.float64
STEPS, BATCH, LR, WD = 20, 5, 1e-3, 1e-12


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_nbody_set(tmp_path_factory.mktemp("nbody_tfn"))


def _network(model):
    net = gp.Network(**model.e3nn_network_options())
    assert str(net.irreps_edge_attr) == str(eo3.Irreps.spherical_harmonics(model.lmax))
    return net


def _convs(net):
    return [getattr(lay, "first", lay) for lay in net.layers]


def _leaves(conv):
    """Our leaf name -> the e3nn parameter of one convolution."""
    out = {f"{name}/weight": getattr(conv, name).weight for name in ("sc", "lin1", "lin2")}
    k = 0
    while hasattr(conv.fc, f"layer{k}"):
        out[f"radial/W{k}"] = getattr(conv.fc, f"layer{k}").weight
        k += 1
    return out


def _named(net):
    return {f"layers/{k}/{name}": t for k, c in enumerate(_convs(net))
            for name, t in _leaves(c).items()}


def _load(net, params):
    flat = flatten(params)
    named = _named(net)
    assert sorted(named) == sorted(flat)
    with torch.no_grad():
        for key, t in named.items():
            assert tuple(t.shape) == flat[key].shape, key
            t.copy_(torch.tensor(flat[key]))


def _predict(net, monkeypatch, graph, x, v, q):
    edges = torch.tensor(np.stack([graph.src, graph.dst]))
    monkeypatch.setattr(gp, "radius_graph", lambda pos, r_max, batch: edges)
    return x + net({"pos": x, "x": torch.cat([q, v], dim=1)})


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("options", [
    {},  # the published N-body configuration
    {"channels": 3, "num_layers": 2, "lmax": 1, "max_radius": 4.0, "num_basis": 5,
     "radial_neurons": 7, "radial_layers": 1},
])
def test_nbody_tfn_is_e3nn_network(data, monkeypatch, options):
    model = make_model("tfn", **options)
    params = model.init(np.random.default_rng(3))
    net = _network(model)
    _load(net, params)
    assert sum(p.numel() for p in net.parameters()) == sum(a.size for a in
                                                           flatten(params).values())
    batch = data.batch(np.arange(BATCH))
    out, cache = model.forward(params, batch.graph, batch.x, batch.v, batch.charges)
    cot = np.random.default_rng(4).normal(size=out.shape)
    grads, (g_x, g_v, g_q) = model.backward(params, cache, cot)

    x, v, q = (torch.tensor(a, requires_grad=True) for a in (batch.x, batch.v, batch.charges))
    out_t = _predict(net, monkeypatch, batch.graph, x, v, q)
    assert _rel(out, out_t.detach().numpy()) <= 1e-12
    (out_t * torch.tensor(cot)).sum().backward()
    for ours, t in ((g_x, x), (g_v, v), (g_q, q)):
        assert _rel(ours, t.grad.numpy()) <= 1e-10
    flat = flatten(grads)
    for key, t in _named(net).items():
        assert _rel(flat[key], t.grad.numpy()) <= 1e-10, key


def test_twenty_adam_steps_agree_with_e3nn(data, monkeypatch):
    model = make_model("tfn")
    params = model.init(np.random.default_rng(5))
    initial = flatten(params)
    net = _network(model)
    _load(net, params)
    t = lambda a: torch.tensor(a)  # noqa: E731
    params, losses = lockstep(
        model, params, net,
        lambda b: torch.nn.functional.mse_loss(
            _predict(net, monkeypatch, b.graph, t(b.x), t(b.v), t(b.charges)), t(b.target)),
        data, lr=LR, weight_decay=WD, steps=STEPS, batch_size=BATCH)
    ours_loss, torch_loss = losses.T
    np.testing.assert_allclose(ours_loss, torch_loss, rtol=1e-10)
    assert ours_loss[-1] < ours_loss[0]  # it trained
    named = _named(net)
    for key, ours in flatten(params).items():
        ref = named[key].detach().numpy()
        assert _rel(ours, ref) <= 1e-9, f"{key} after {STEPS} steps"
        assert not np.array_equal(ours, initial[key]), f"{key} did not train"
