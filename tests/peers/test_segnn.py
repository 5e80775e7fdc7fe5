"""interop.segnn: Steerable-E3-GNN's SEGNN (and its layer, InstanceNorm and O3 blocks) through
compare / from_torch / inputs_from_torch, against the test doubles of ``_segnn_doubles.py``.

Configurations: the published N-body model (node task, extra message features [|x_ij|, q_i q_j],
4 layers, lmax 1) on 100 five-body systems built by ``nbody_data``, and QM9-like graph models
(instance norm, avg and sum pooling, lmax_attr 2 and 3) on the shipped molecules. Every e3nn
module is built once per module (construction is slow) under float64 and e3nn's quick
construction settings (construction-time only; restored afterwards).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
e3nn = pytest.importorskip("e3nn")
pytest.importorskip("torch_geometric")

from e3nn.o3 import Irreps  # noqa: E402
from torch_geometric.data import Batch, Data  # noqa: E402
from torch_geometric.nn import global_max_pool  # noqa: E402

from geomp_ref import graph as G  # noqa: E402
from geomp_ref import interop, molecules  # noqa: E402
from geomp_ref.interop import segnn as adapter  # noqa: E402

from . import _segnn_doubles as D  # noqa: E402


@contextlib.contextmanager
def _float64_build():
    dtype, opts = torch.get_default_dtype(), e3nn.get_optimization_defaults()
    torch.set_default_dtype(torch.float64)
    e3nn.set_optimization_defaults(jit_script_fx=False, optimize_einsums=False)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        e3nn.set_optimization_defaults(**opts)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """torch's intra-op threads thrash on a busy 2-core machine (10x slower); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _systems(num, seed):
    """Positions, velocities, charges and batch of ``num`` random five-body systems."""
    rng = np.random.default_rng(seed)
    n = 5 * num
    return (rng.standard_normal((n, 3)), rng.standard_normal((n, 3)),
            rng.choice([-1.0, 1.0], n), np.repeat(np.arange(num), 5))


def _small(num, seed):
    return adapter.nbody_data(*_systems(num, seed))


@pytest.fixture(scope="module")
def nbody():
    sh = Irreps.spherical_harmonics(1)
    with _float64_build():
        torch.manual_seed(0)
        model = D.SEGNN(Irreps("2x1o+1x0e"), Irreps("8x0e+8x1o"), Irreps("1x1o"), sh, sh, 4,
                        task="node", additional_message_irreps=Irreps("2x0e"))
    pos, vel, q, batch = _systems(100, 0)
    return model, adapter.nbody_data(pos, vel, q, batch)


def _molecules(lmax):
    types = {1: 0, 6: 1, 7: 2, 8: 3}
    out = []
    for mol in molecules.load():
        pos = torch.tensor(mol.pos)
        ei = torch.tensor(G.radius_graph(mol.pos, 2.0).edge_index)
        x = torch.nn.functional.one_hot(
            torch.tensor([types.get(int(z), 4) for z in mol.z]), 5).double()
        ea, na, d = D.qm9_attributes(ei, pos, lmax)
        out.append(Data(x=x, pos=pos, edge_index=ei, edge_attr=ea, node_attr=na,
                        additional_message_features=d))
    return Batch.from_data_list(out)


@pytest.fixture(scope="module")
def qm9():
    """{pool: (model, data)}: avg with lmax_attr 2, sum with lmax_attr 3; norm weights moved off
    their init so that they matter."""
    out = {}
    for pool, lmax, hidden in (("avg", 2, "6x0e+3x1o+2x2e"), ("sum", 3, "4x0e+2x1o+1x2e")):
        sh = Irreps.spherical_harmonics(lmax)
        with _float64_build():
            torch.manual_seed(1)
            model = D.SEGNN(Irreps("5x0e"), Irreps(hidden), Irreps("1x0e"), sh, sh, 2,
                            norm="instance", pool=pool, task="graph",
                            additional_message_irreps=Irreps("1x0e"))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "feature_norm" in name:
                    p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
        out[pool] = (model, _molecules(lmax))
    return out


_CANCELLED = re.compile(r"(layers\.\d+\.)?update_layer_2\.biases")


def _assert_agrees(rep, cancelled=False):
    """``rep.ok``. With instance norm the scalar biases of ``update_layer_2`` are removed by the
    norm's centring, so their gradients are 0 in exact arithmetic and both sides hold rounding
    noise; ``compare`` judges such rows against its gradient floor (a fraction of the largest
    gradient), so the report must still be ok. ``cancelled`` marks the cases where those rows
    exist: they must be tiny next to the largest gradient."""
    assert rep.ok, str(rep)
    if cancelled:
        grads = [r for r, k in zip(rep.rows, rep.kinds) if k != "output"]
        biggest = max(r.max_abs / r.max_rel for r in grads if 0 < r.max_rel < math.inf)
        for r, k in zip(rep.rows, rep.kinds):
            if k == "param" and _CANCELLED.fullmatch(r.name):
                assert r.max_abs <= 1e-14 * biggest, str(rep)


def test_nbody_model_on_100_systems(nbody):
    model, data = nbody
    rep = interop.compare(model, data)
    assert rep.ok, str(rep)
    assert rep.first_divergence is None
    names = [r.name for r, k in zip(rep.rows, rep.kinds) if k == "param"]
    assert names == [n for n, _ in model.named_parameters()]
    assert [r.name for r, k in zip(rep.rows, rep.kinds) if k == "input"] == [
        "graph.x", "graph.edge_attr", "graph.node_attr", "graph.additional_message_features"]
    assert [t.name for t in rep.taps][:7] == [
        "embedding_layer", "layers.0.message_layer_1", "layers.0.message_layer_2",
        "layers.0.update_layer_1", "layers.0.update_layer_2", "layers.0",
        "layers.1.message_layer_1"]


def test_nbody_data_is_the_published_transform():
    """nbody_data (the oracle's NBodyAttributes) against the transform double (e3nn)."""
    pos, vel, q, batch = _systems(7, 3)
    vel[4] = 0.0  # e3nn's value for a zero velocity: Y^0 only, speed 0
    ei = adapter.nbody_edges(batch)
    assert ei.shape == (2, 7 * 20) and np.all(ei[0] != ei[1])
    assert np.all(batch[ei[0]] == batch[ei[1]])
    want = D.O3Transform(2)(Data(edge_index=torch.tensor(ei), pos=torch.tensor(pos),
                                 vel=torch.tensor(vel), charges=torch.tensor(q)[:, None]))
    got = adapter.nbody_data(pos, vel, q, batch, lmax_attr=2, y=torch.zeros(35, 3))
    assert torch.equal(got.edge_index, want.edge_index) and torch.equal(got.batch,
                                                                       torch.tensor(batch))
    for key in ("x", "edge_attr", "node_attr", "additional_message_features", "charges"):
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=0, atol=2e-15)
    assert got.y.shape == (35, 3)
    assert "mass" in adapter.nbody_data(pos, vel, q, batch, charge_key="mass")


def test_from_torch_and_inputs_from_torch(nbody):
    model, data = nbody
    small = _small(3, 5)
    spec, params = interop.from_torch(model)
    assert (spec.mode, spec.task, spec.num_layers, str(spec.irreps_hidden)) == (
        "reference", "node", 4, "8x0e+8x1o")
    assert params["layers"]["3"]["upd1"]["weight"].shape == (
        model.layers[3].update_layer_1.tp.weight.numel(),)
    graph, inputs = interop.inputs_from_torch(model, small)
    before = small.node_attr.clone()
    out, _ = spec.forward(params, graph, *inputs)
    with torch.no_grad():
        want = model(small.clone()).numpy()
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-14 * np.abs(want).max())
    assert torch.equal(small.node_attr, before)  # the caller's Data is not touched
    assert inputs[1] is None and inputs[4].shape == (graph.num_edges, 2)


@pytest.mark.parametrize("target", ["layers.2", "layers.1.update_layer_1"])
def test_hook_names_the_first_divergence(nbody, target):
    model, _ = nbody
    small = _small(4, 6)
    handle = dict(model.named_modules())[target].register_forward_hook(
        lambda m, i, out: out + 1e-6)
    try:
        rep = interop.compare(model, small)
    finally:
        handle.remove()
    assert not rep.ok and rep.first_divergence == target
    failing = [t.name for t in rep.taps if not t.ok]
    assert failing[0] == target


# --- QM9-like graph models -----------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["avg", "sum"])
def test_qm9_graph_models_with_instance_norm(qm9, pool):
    model, data = qm9[pool]
    rep = interop.compare(model, data)
    _assert_agrees(rep, cancelled=True)
    assert rep.rows[0].max_rel <= 1e-12 and rep.first_divergence is None
    assert [t.name for t in rep.taps][-4:] == ["pre_pool1", "pre_pool2", "post_pool1",
                                               "post_pool2"]
    assert "layers.1.feature_norm" in [t.name for t in rep.taps]


def test_qm9_attributes_computed_from_positions(qm9):
    """The QM9 transform is our computed mode: component harmonics, their mean and |x_ij|^2."""
    model, data = qm9["avg"]
    spec, params = interop.from_torch(model)
    graph, inputs = interop.inputs_from_torch(model, data)
    computed = dataclasses.replace(
        spec, edge_attr="harmonics", node_attr="mean", message_features="squared_distance",
        additional_message_irreps=None, irreps_edge_attr=None, irreps_node_attr=None,
        lmax_attr=2, sh_normalization="component")
    out, _ = computed.forward(params, graph, inputs[0], data.pos.numpy())
    ref, _ = spec.forward(params, graph, *inputs)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13 * np.abs(ref).max())


def test_graph_readout_of_vectors_without_message_features_or_batch():
    """Output 2x0e+1x1o: the read-out gates the unmerged sorted irreps (0e blocks gated too);
    no extra message features; one graph without ``batch`` (pooled to one row)."""
    sh = Irreps.spherical_harmonics(1)
    with _float64_build():
        torch.manual_seed(5)
        model = D.SEGNN(Irreps("3x0e"), Irreps("4x0e+2x1o"), Irreps("2x0e+1x1o"), sh, sh, 2,
                        pool="sum", task="graph")
        pos = torch.randn(6, 3)
        x = torch.randn(6, 3)
    ei = torch.tensor([[0, 1, 2, 3, 4, 5, 1, 2], [1, 2, 3, 4, 5, 0, 0, 1]])
    ea, na, _ = D.qm9_attributes(ei, pos, 1)
    data = Data(x=x, pos=pos, edge_index=ei, edge_attr=ea, node_attr=na)
    rep = interop.compare(model, data)
    assert rep.ok, str(rep)
    spec, _ = interop.from_torch(model)
    assert (spec.message_features, spec.pool, rep.rows[0].name) == ("none", "sum", "output")
    with pytest.raises(ValueError, match="additional_message_irreps=None"):
        interop.inputs_from_torch(model, Data(x=x, pos=pos, edge_index=ei, edge_attr=ea,
                                              node_attr=na, additional_message_features=ea))


# --- single modules ------------------------------------------------------------------------------


def test_layer_norm_and_blocks_one_by_one(qm9, nbody):
    model, data = qm9["avg"]
    layer = model.layers[1]
    rng = torch.Generator().manual_seed(4)

    def randn(*shape):
        return torch.randn(*shape, generator=rng, dtype=torch.float64)

    x = randn(data.num_nodes, Irreps(layer.hidden_irreps).dim)
    args = (x, data.edge_index, data.edge_attr, data.node_attr, data.batch,
            data.additional_message_features)
    _assert_agrees(interop.compare(layer, *args), cancelled=True)
    rep = interop.compare(layer.feature_norm, x, data.batch)
    assert rep.ok, str(rep)
    assert [r.name for r in rep.rows] == ["output", "weight", "bias", "input"]
    block = nbody[0].layers[0].message_layer_1
    x1, x2 = randn(9, block.irreps_in1.dim), randn(9, block.irreps_in2.dim)
    assert interop.compare(block, x1, x2).ok
    post = model.post_pool2  # no second input
    rep = interop.compare(post, randn(3, post.irreps_in1.dim))
    assert rep.ok and [r.name for r in rep.rows] == ["output", "biases", "tp.weight", "data_in1"]


def test_float32_built_module_is_flagged():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:  # fan-in 3: sqrt_k_correction = 1/sqrt(3), rounded to float32 before .double()
        block = D.O3TensorProduct(Irreps("3x0e"), Irreps("2x0e")).double()
    finally:
        torch.set_default_dtype(dtype)
    b = adapter.binding(block, torch.randn(4, 3, dtype=torch.float64))
    assert any("float32-rounded" in n for n in b.notes)


# --- what the oracle cannot express --------------------------------------------------------------


def test_unsupported_options_raise_naming_them(qm9, nbody, monkeypatch):
    model, data = qm9["avg"]

    def raises(word, fn, *args):
        with pytest.raises(ValueError, match=word):
            fn(*args)

    with _float64_build():
        irreps = Irreps("2x0e+1x1o")
        sh = Irreps.spherical_harmonics(1)
        raises("norm='batch'", interop.from_torch,
               D.SEGNNLayer(irreps, irreps, irreps, sh, sh, norm="batch"))
        raises("tp_rescale", interop.from_torch,
               D.O3TensorProduct(Irreps("2x0e"), Irreps("2x0e"), tp_rescale=False))
        raises(r"l >= 10", interop.from_torch, D.O3TensorProduct(Irreps("1x10e"),
                                                                 Irreps("1x10e")))
    raises("reduce='max'", interop.from_torch, D.InstanceNorm(irreps, reduce="max"))
    with monkeypatch.context() as mp:
        mp.setattr(model, "pooler", global_max_pool)
        raises("pooler='global_max_pool'", interop.from_torch, model)
    with monkeypatch.context() as mp:
        mp.setattr(model, "task", "edge")
        raises("task='edge'", interop.from_torch, model)
    with monkeypatch.context() as mp:
        mp.setattr(model.layers[1].feature_norm, "eps", 1e-3)
        raises(r"layers\.1\.feature_norm\.eps", interop.from_torch, model)
    with monkeypatch.context() as mp:
        mp.setattr(model.layers[0], "aggr", "mean")
        raises(r"layers\.0\.aggr='mean'", interop.from_torch, model)
    gate = model.pre_pool1.gate  # (monkeypatch deletes submodules instead of restoring them)
    try:
        model.pre_pool1.gate = torch.nn.Tanh()
        raises(r"pre_pool1\.gate", interop.from_torch, model)
    finally:
        model.pre_pool1.gate = gate
    # Data the published forward cannot run on
    single = data.to_data_list()[0]
    raises(r"graph\.batch is None with norm='instance'", interop.compare, model, single)
    short = data.clone()
    short.node_attr = short.node_attr[:-1]
    raises(r"graph\.node_attr has", interop.inputs_from_torch, model, short)
    bare = data.clone()
    del bare.additional_message_features
    raises("additional_message_features is missing", interop.inputs_from_torch, model, bare)
    # a module type that is not SEGNN's is not matched
    assert not adapter.matches(torch.nn.InstanceNorm1d(4))
    assert "segnn" in interop.supported()


def test_norm_none_string_is_no_norm(nbody):
    """The published main.py passes ``norm="none"``; the layer treats it as no norm."""
    model, data = nbody
    for layer in model.layers:
        layer.norm = "none"
    try:
        assert interop.compare(model, data).ok
    finally:
        for layer in model.layers:
            layer.norm = None
