"""PyG ``NNConv`` and ``Set2Set`` and torch's ``GRU``/``GRUCell`` (the real installed modules,
the peers themselves) through ``geomp_ref.interop.compare``: outputs <= 1e-12, every gradient
<= 1e-10 relative in float64, every option either reproduced or refused by name."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")

from geomp_ref import interop  # noqa: E402
from geomp_ref.interop import pyg as interop_pyg  # noqa: E402

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _randomise(module, seed=0):
    """Generic nonzero values for every parameter (PyG zero-initialises biases)."""
    module.double()
    g = _gen(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=F64))
    return module


def _graph(n=9, e=24, seed=0):
    """A random multigraph with an isolated node (node n - 1 receives nothing)."""
    g = _gen(seed)
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n - 1, (e,), generator=g)
    return torch.stack([src, dst])


def _edge_net(d, c_in, c_out, hidden=6, act=torch.nn.ReLU, bias=True):
    return torch.nn.Sequential(
        torch.nn.Linear(d, hidden, bias=bias), act(), torch.nn.Linear(hidden, c_in * c_out)
    )


def _assert_ok(report):
    assert report.ok, report
    for kind, r in zip(report.kinds, report.rows):
        assert r.max_rel <= (1e-12 if kind == "output" else 1e-10), r


# --- NNConv -------------------------------------------------------------------------------------


@pytest.mark.parametrize("aggr", ["add", "mean"])
@pytest.mark.parametrize("root_weight", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_nnconv_options_match(aggr, root_weight, bias):
    conv = _randomise(
        pyg_nn.NNConv(4, 3, _edge_net(5, 4, 3), aggr=aggr, root_weight=root_weight, bias=bias)
    )
    ei = _graph()
    g = _gen(1)
    x, ea = torch.randn(9, 4, generator=g, dtype=F64), torch.randn(24, 5, generator=g, dtype=F64)
    report = interop.compare(conv, x, ei, ea)
    _assert_ok(report)
    names = [r.name for r in report.rows]
    assert ("lin.weight" in names) == root_weight and ("bias" in names) == bias
    assert names[-2:] == ["x", "edge_attr"]
    if not root_weight:
        assert any("root_weight=False" in n for n in report.notes)


def test_nnconv_reversed_flow_and_bias_free_edge_net():
    net = _edge_net(2, 3, 3, bias=False)
    conv = _randomise(pyg_nn.NNConv(3, 3, net, aggr="mean", flow="target_to_source"))
    g = _gen(2)
    report = interop.compare(
        conv, torch.randn(9, 3, generator=g, dtype=F64), _graph(seed=3),
        torch.randn(24, 2, generator=g, dtype=F64),
    )
    _assert_ok(report)
    assert "nn.0.bias" not in [r.name for r in report.rows]


def test_nnconv_from_torch_evaluates_like_the_module():
    conv = _randomise(pyg_nn.NNConv(4, 3, _edge_net(5, 4, 3), aggr="mean"))
    ei, g = _graph(), _gen(4)
    x, ea = torch.randn(9, 4, generator=g, dtype=F64), torch.randn(24, 5, generator=g, dtype=F64)
    spec, params = interop.from_torch(conv)
    graph, inputs = interop.inputs_from_torch(conv, x, ei, ea)
    assert (spec.aggr, spec.edge_hidden) == ("mean", 6)
    want = conv(x, ei, ea).detach().numpy()
    np.testing.assert_allclose(spec(params, graph, *inputs), want, rtol=1e-13, atol=1e-14)


def test_nnconv_perturbed_edge_network_is_the_first_divergence():
    conv = _randomise(pyg_nn.NNConv(4, 3, _edge_net(5, 4, 3)))
    conv.nn.register_forward_hook(lambda m, i, out: out + 1e-6)
    g = _gen(5)
    report = interop.compare(
        conv, torch.randn(9, 4, generator=g, dtype=F64), _graph(),
        torch.randn(24, 5, generator=g, dtype=F64),
    )
    assert not report.ok
    assert report.first_divergence == "nn"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aggr": "max"}, r"NNConv\.aggr='max'"),
        ({"aggr": "min"}, r"NNConv\.aggr='min'"),
        ({"nn": "tanh"}, r"NNConv\.nn must be Sequential\(Linear, ReLU, Linear\)"),
        ({"nn": "deep"}, r"NNConv\.nn must be"),
        ({"in_channels": (4, 5)}, r"NNConv\.in_channels=\(4, 5\)"),
        ({"node_dim": 1}, r"NNConv\.node_dim=1"),
        ({"in_channels": -1}, r"NNConv\.in_channels=-1 \(lazy\)"),
    ],
)
def test_nnconv_unsupported_options_are_named(kwargs, match):
    kwargs = dict(kwargs)
    nn = {
        "tanh": _edge_net(5, 4, 3, act=torch.nn.Tanh),
        "deep": torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.ReLU(), torch.nn.Linear(12, 6),
                                    torch.nn.ReLU(), torch.nn.Linear(6, 12)),
    }.get(kwargs.pop("nn", None), _edge_net(5, 4, 3))
    in_channels = kwargs.pop("in_channels", 4)
    conv = pyg_nn.NNConv(in_channels, 3, nn, **kwargs)
    with pytest.raises(ValueError, match=match):
        interop.from_torch(conv)


def test_nnconv_bipartite_call_is_refused():
    conv = _randomise(pyg_nn.NNConv(4, 3, _edge_net(5, 4, 3)))
    x = torch.randn(9, 4, dtype=F64)
    with pytest.raises(ValueError, match="bipartite"):
        interop.compare(conv, (x, x), _graph(), torch.randn(24, 5, dtype=F64))
    with pytest.raises(ValueError, match="edge_attr is required"):
        interop.compare(conv, x, _graph())


def test_nnconv_float32_module_reports_float32():
    conv = pyg_nn.NNConv(4, 3, _edge_net(5, 4, 3), aggr="mean")
    report = interop.compare(conv, torch.randn(9, 4), _graph(), torch.randn(24, 5))
    assert report.ok, report
    assert report.dtype == "float32" and "float32" in str(report)


# --- Set2Set ------------------------------------------------------------------------------------


def test_set2set_matches_with_and_without_index_and_an_empty_trailing_graph():
    s2s = _randomise(pyg_nn.aggr.Set2Set(4, processing_steps=3))
    x = torch.randn(7, 4, generator=_gen(6), dtype=F64)
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    _assert_ok(interop.compare(s2s, x, batch))
    _assert_ok(interop.compare(s2s, x))
    report = interop.compare(s2s, x, batch, dim_size=5)  # graphs 3 and 4 are empty
    _assert_ok(report)
    assert report.rows[0].name == "output"
    assert [t.label for t in report.taps] == [f"lstm (call {k}/3)" for k in (1, 2, 3)]


def test_set2set_perturbed_lstm_step_is_named():
    s2s = _randomise(pyg_nn.aggr.Set2Set(4, processing_steps=3))
    calls = []

    def bump(module, inputs, out):
        calls.append(1)
        if len(calls) == 2:
            return out[0] + 1e-6, out[1]
        return None

    s2s.lstm.register_forward_hook(bump)
    report = interop.compare(s2s, torch.randn(7, 4, dtype=F64), torch.tensor([0, 0, 0, 1, 1, 2, 2]))
    assert not report.ok
    assert report.first_divergence == "lstm"
    assert [t.ok for t in report.taps][:2] == [True, False]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_layers": 2}, r"lstm\.num_layers=2"), ({"bidirectional": True}, "bidirectional")],
)
def test_set2set_lstm_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        interop.from_torch(pyg_nn.aggr.Set2Set(4, 2, **kwargs))


# --- GRU / GRUCell ------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_gru_sequence_matches(batch_first, with_h0):
    gru = _randomise(torch.nn.GRU(3, 4, batch_first=batch_first))
    g = _gen(7)
    x = torch.randn(2, 5, 3, generator=g, dtype=F64)  # (L, N) or (N, L)
    h0 = torch.randn(1, 2 if batch_first else 5, 4, generator=g, dtype=F64)
    args = (x, h0) if with_h0 else (x,)
    report = interop.compare(gru, *args)
    _assert_ok(report)
    assert [r.name for r in report.rows][:2] == ["output", "h_n"]
    assert ("hx" in [r.name for r in report.rows]) == with_h0


def test_gru_unbatched_and_bias_free():
    gru = _randomise(torch.nn.GRU(3, 4, bias=False))
    g = _gen(8)
    report = interop.compare(gru, torch.randn(6, 3, generator=g, dtype=F64),
                             torch.randn(1, 4, generator=g, dtype=F64))
    _assert_ok(report)
    assert any("unbatched" in n for n in report.notes)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_layers": 2}, r"GRU\.num_layers=2"), ({"bidirectional": True}, r"GRU\.bidirectional")],
)
def test_gru_unsupported_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        interop_pyg.from_torch(torch.nn.GRU(3, 4, **kwargs))


@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_matches_batched_unbatched_and_without_state(bias):
    cell = _randomise(torch.nn.GRUCell(3, 4, bias=bias))
    g = _gen(9)
    x, h = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 4, generator=g, dtype=F64)
    _assert_ok(interop.compare(cell, x, h))
    _assert_ok(interop.compare(cell, x))
    _assert_ok(interop.compare(cell, x[0], h[0]))
