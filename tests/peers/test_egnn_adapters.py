"""``geomp_ref.interop.egnn``: vgsatorras/egnn's layers and models through ``compare``,
``from_torch`` and ``inputs_from_torch`` with no hand mapping.

The modules are test doubles (``_egnn_doubles.py``, written from the published structure: same
class, submodule and parameter names, constructor options and forward signatures, gcl's in-place
coordinate update). Every module type is compared in float64 on small random graphs and at the
published sizes (the N-body batch of 100 five-body graphs; the shipped molecules), a 1e-6 shift
of one middle layer's output is found by ``first_divergence``, and every option the oracle
cannot express raises ValueError naming it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from geomp_ref import interop, molecules  # noqa: E402

F64 = torch.float64
_spec = importlib.util.spec_from_file_location(
    "_egnn_doubles", Path(__file__).with_name("_egnn_doubles.py"))
D = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(D)
SILU = torch.nn.SiLU()


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """torch's intra-op threads only contend on small CI machines (2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _generic(module, seed=0, scale=0.3):
    """Every weight moved off its initial value (the coordinate heads start near zero)."""
    module = module.to(F64)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=F64))
    return module


def _edges(n, p=0.6, seed=0, as_tensor=False):
    """Random directed edges without self-loops, as the published ``[rows, cols]``."""
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and rng.random() < p]
    rows, cols = (torch.tensor(c) for c in zip(*pairs))
    return torch.stack([rows, cols]) if as_tensor else [rows, cols]


def _t(rng, *shape):
    return torch.tensor(rng.normal(size=shape), dtype=F64)


def _nbody(batch=3, n=5, seed=0):
    """Inputs as main_nbody.py builds them: complete graphs, |v|, [q_i q_j, |x_i - x_j|^2]."""
    rng = np.random.default_rng(seed)
    rows, cols = zip(*[(b * n + i, b * n + j) for b in range(batch) for i in range(n)
                       for j in range(n) if i != j])
    edges = [torch.tensor(rows), torch.tensor(cols)]
    loc, vel = _t(rng, batch * n, 3), _t(rng, batch * n, 3)
    q = torch.tensor(rng.choice([-1.0, 1.0], size=(batch * n, 1)), dtype=F64)
    dist = ((loc[edges[0]] - loc[edges[1]]) ** 2).sum(1, keepdim=True)
    attr = torch.cat([q[edges[0]] * q[edges[1]], dist], 1)
    return {"edges": edges, "loc": loc, "vel": vel, "speed": vel.norm(dim=1, keepdim=True),
            "attr": attr, "nodes": torch.cat([loc, vel], 1)}


def _assert_ok(report):
    assert report.ok, str(report)
    assert report.first_divergence is None


# --- layers on small random graphs ---------------------------------------------------------------

LAYERS = {
    "gcl relu": (lambda: D.E_GCL(4, 4, 8), {}),
    "gcl all options": (lambda: D.E_GCL(4, 4, 8, edges_in_d=2, nodes_att_dim=3, act_fn=SILU,
                                        attention=True, norm_diff=True, tanh=True,
                                        coords_weight=0.7), {"edge_attr": 2, "node_attr": 3}),
    "gcl not recurrent": (lambda: D.E_GCL(4, 6, 8, edges_in_d=1, recurrent=False,
                                          act_fn=torch.nn.Tanh()), {"edge_attr": 1}),
    "gcl vel": (lambda: D.E_GCL_vel(4, 4, 8, edges_in_d=2, act_fn=SILU, attention=True,
                                    norm_diff=True, recurrent=False), {"edge_attr": 2, "vel": 3}),
    "clean default": (lambda: D.clean.E_GCL(4, 4, 8), {}),
    "clean all options": (lambda: D.clean.E_GCL(4, 4, 8, edges_in_d=2, attention=True,
                                                normalize=True, coords_agg="sum", tanh=True,
                                                act_fn=torch.nn.GELU()), {"edge_attr": 2}),
    "qm9 mask": (lambda: D.E_GCL_mask(4, 4, 8, edges_in_d=2, nodes_attr_dim=3, act_fn=SILU,
                                      attention=True), {"edge_attr": 2, "node_attr": 3,
                                                        "mask": 0}),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_on_random_graphs(name):
    make, extra = LAYERS[name]
    layer = _generic(make())
    rng = np.random.default_rng(1)
    n, edges = 7, _edges(7)
    e = len(edges[0])
    h, coord = _t(rng, n, 4), _t(rng, n, 3)
    args = [h, edges, coord]
    kwargs = {}
    if "vel" in extra:
        args.append(_t(rng, n, 3))
    if "mask" in extra:
        keep = rng.random((e, 1)) < 0.7
        args += [torch.ones(n, 1, dtype=F64), torch.tensor(keep, dtype=F64)]
    if "edge_attr" in extra:
        kwargs["edge_attr"] = _t(rng, e, extra["edge_attr"])
    if "node_attr" in extra:
        kwargs["node_attr"] = _t(rng, n, extra["node_attr"])
    report = interop.compare(layer, *args, **kwargs)
    _assert_ok(report)
    names = {r.name for r in report.rows}
    assert {n for n, _ in layer.named_parameters()} | {"h", "coord"} <= names
    assert [t.name for t in report.taps][0] == "edge_mlp"


# --- models on small random graphs ---------------------------------------------------------------


def _model_call(name, size=3, hidden=8, layers=3, seed=0):
    """``(module, args)`` of one published model on the N-body inputs."""
    data = _nbody(size, seed=seed)
    edges, loc, vel, attr = data["edges"], data["loc"], data["vel"], data["attr"]
    speed = data["speed"]
    if name == "egnn_clean EGNN":
        return (D.clean.EGNN(1, hidden, 3, in_edge_nf=2, n_layers=layers, attention=True,
                             normalize=True), (speed, loc, edges, attr))
    if name == "EGNN_vel":
        return (D.EGNN_vel(1, 2, hidden, n_layers=layers, recurrent=True),
                (speed, loc, edges, vel, attr))
    if name == "n_body EGNN":
        return D.EGNN(1, 2, hidden, act_fn=SILU, n_layers=layers), (speed, loc, edges, attr)
    if name == "GNN":
        return (D.GNN(6, hidden, n_layers=layers, recurrent=True, attention=1),
                (data["nodes"], edges, attr[:, :1]))
    if name == "RF_vel":
        return D.RF_vel(hidden, edge_attr_nf=2, n_layers=layers), (speed, loc, edges, vel, attr)
    assert name == "Linear"
    return D.Linear(6, 3), (data["nodes"],)


MODELS = ["egnn_clean EGNN", "EGNN_vel", "n_body EGNN", "GNN", "RF_vel", "Linear"]
STACKS = MODELS[:-1]


@pytest.mark.parametrize("name", MODELS)
def test_models_on_random_graphs(name):
    module, args = _model_call(name)
    report = interop.compare(_generic(module), *args)
    _assert_ok(report)
    if name != "Linear":
        assert {"gcl_1", "gcl_2"} <= {t.name for t in report.taps}


@pytest.mark.parametrize("name", MODELS)
def test_nbody_models_at_published_size(name):
    """main_nbody.py's configuration: 100 five-body graphs, 64 hidden features, 4 layers."""
    module, args = _model_call(name, size=100, hidden=64, layers=4, seed=2)
    _assert_ok(interop.compare(_generic(module, scale=0.05), *args))


def _molecule_batch(pad=None):
    """The shipped molecules as one batch of complete graphs (padded to ``pad`` atoms, QM9
    style, when given); returns one-hot features, positions, edges and masks."""
    mols = molecules.load()
    rows, cols, feats, pos, node_mask = [], [], [], [], []
    start = 0
    for mol in mols:
        n = len(mol.z)
        size = pad or n
        for i in range(size):
            for j in range(size):
                if i != j:
                    rows.append(start + i)
                    cols.append(start + j)
        onehot = np.zeros((size, 5))
        onehot[np.arange(n), np.searchsorted([1, 6, 7, 8, 16], mol.z)] = 1.0
        xyz = np.zeros((size, 3))
        xyz[:n] = mol.pos
        feats.append(onehot)
        pos.append(xyz)
        node_mask.append(np.arange(size) < n)
        start += size
    nm = np.concatenate(node_mask).astype(float)[:, None]
    edges = [torch.tensor(rows), torch.tensor(cols)]
    em = torch.tensor(nm[rows] * nm[cols], dtype=F64)
    h = torch.tensor(np.concatenate(feats), dtype=F64)
    x = torch.tensor(np.concatenate(pos), dtype=F64)
    return h, x, edges, torch.tensor(nm, dtype=F64), em


def test_layers_and_egnn_on_the_shipped_molecules():
    h, x, edges, _, _ = _molecule_batch()
    d2 = ((x[edges[0]] - x[edges[1]]) ** 2).sum(1, keepdim=True)
    layer = _generic(D.E_GCL(5, 5, 16, edges_in_d=1, act_fn=SILU, norm_diff=True))
    _assert_ok(interop.compare(layer, h, edges, x, edge_attr=d2))
    egnn = _generic(D.clean.EGNN(5, 16, 3, in_edge_nf=1, attention=True, normalize=True), 1)
    _assert_ok(interop.compare(egnn, h, x, edges, d2))


def test_qm9_masked_layer_on_padded_molecules():
    """QM9's batching: molecules padded to 14 atoms, edge_mask = node_mask_i node_mask_j."""
    h, x, edges, node_mask, edge_mask = _molecule_batch(pad=14)
    assert 0 < edge_mask.mean() < 1
    layer = _generic(D.E_GCL_mask(5, 5, 16, nodes_attr_dim=5, act_fn=SILU, attention=True))
    report = interop.compare(layer, h, edges, x, node_mask, edge_mask, node_attr=h,
                             n_nodes=14)
    _assert_ok(report)
    assert any("edge_mask 0" in note for note in report.notes)


# --- a shifted middle layer --------------------------------------------------------------------


# (model, which output of gcl_2 is shifted): h and x of the EGNN stacks, h of GNN, x of RF_vel
SHIFTS = [(name, k) for name in STACKS[:3] for k in (0, 1)] + [("GNN", 0), ("RF_vel", 0)]


@pytest.mark.parametrize(("name", "k"), SHIFTS)
def test_a_shifted_middle_layer_is_named(name, k):
    module, args = _model_call(name, layers=4)
    module = _generic(module)

    def shift(_mod, _inp, out):
        out = list(out)
        out[k] = out[k] + 1e-6
        return tuple(out)

    handle = module.gcl_2.register_forward_hook(shift)
    try:
        report = interop.compare(module, *args)
    finally:
        handle.remove()
    assert not report.ok
    assert report.first_divergence == "gcl_2"
    assert all(t.ok for t in report.taps[:[t.name for t in report.taps].index("gcl_2")])
    _assert_ok(interop.compare(module, *args))


# --- conventions -------------------------------------------------------------------------------


def test_in_place_updates_change_nothing():
    """gcl.py adds to ``coord`` in place; neither the caller's tensor nor the conversion sees it."""
    layer = _generic(D.E_GCL_vel(4, 4, 8, edges_in_d=1, act_fn=SILU))
    rng = np.random.default_rng(3)
    h, x, v = _t(rng, 6, 4), _t(rng, 6, 3), _t(rng, 6, 3)
    edges, x_before = _edges(6, seed=3), x.clone()
    a = _t(rng, len(edges[0]), 1)
    graph, inputs = interop.inputs_from_torch(layer, h, edges, x, v, edge_attr=a)
    _assert_ok(interop.compare(layer, h, edges, x, v, edge_attr=a))
    assert torch.equal(x, x_before)
    spec, params = interop.from_torch(layer)
    (h_new, x_new, a_out), _ = spec.forward(params, graph, *inputs)
    with torch.no_grad():
        ph, px, pa = layer(h, edges, x.clone(), v, edge_attr=a)
    np.testing.assert_allclose(h_new, ph.numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(x_new, px.numpy(), rtol=0, atol=1e-14)
    np.testing.assert_array_equal(a_out, pa.numpy())
    np.testing.assert_array_equal(inputs[1], x_before.numpy())


def test_edge_lists_and_receivers():
    """[row, col] as a list or a (2, E) tensor: our edge_index is (col, row), row receives."""
    layer = _generic(D.clean.E_GCL(3, 3, 5))
    rng = np.random.default_rng(4)
    h, x = _t(rng, 5, 3), _t(rng, 5, 3)
    g1, _ = interop.inputs_from_torch(layer, h, _edges(5, seed=4), x)
    g2, _ = interop.inputs_from_torch(layer, h, _edges(5, seed=4, as_tensor=True), x)
    rows, cols = _edges(5, seed=4)
    np.testing.assert_array_equal(g1.dst, rows.numpy())
    np.testing.assert_array_equal(g1.src, cols.numpy())
    np.testing.assert_array_equal(g2.edge_index, g1.edge_index)
    assert interop.find_adapter(layer).__name__ == "geomp_ref.interop.egnn"


def test_egnn_clean_detached_norm_is_reproduced():
    """egnn_clean detaches |x_i - x_j| in its normalisation: the spec says detach_norm=True, and
    a copy without the detach differs only in the coordinate gradient."""

    class Undetached(D.clean.E_GCL):
        def coord2radial(self, edge_index, coord):
            diff = coord[edge_index[0]] - coord[edge_index[1]]
            radial = (diff * diff).sum(dim=1, keepdim=True)
            return radial, diff / (torch.sqrt(radial) + self.epsilon)

    rng = np.random.default_rng(5)
    h, x, edges = _t(rng, 6, 3), _t(rng, 6, 3), _edges(6, seed=5)
    layer = _generic(D.clean.E_GCL(3, 3, 6, normalize=True))
    assert interop.from_torch(layer)[0].layer.detach_norm
    _assert_ok(interop.compare(layer, h, edges, x))
    other = Undetached(3, 3, 6, normalize=True).to(F64)
    other.load_state_dict(layer.state_dict())
    report = interop.compare(other, h, edges, x)
    assert [r.name for r in report.rows if not r.ok] == ["coord"]


# --- what raises -------------------------------------------------------------------------------

RAISES = {
    "LeakyReLU": (lambda: D.E_GCL(4, 4, 8, act_fn=torch.nn.LeakyReLU(0.2)), "act_fn.*LeakyReLU"),
    "RF LeakyReLU": (lambda: D.RF_vel(8, 2, act_fn=torch.nn.LeakyReLU(0.2), n_layers=2),
                     "act_fn.*LeakyReLU"),
    "n_body EGNN default act": (lambda: D.EGNN(1, 2, 8, n_layers=2), "act_fn.*LeakyReLU"),
    "tanh GELU": (lambda: D.clean.E_GCL(4, 4, 8, act_fn=torch.nn.GELU("tanh")), "GELU"),
    "Softplus": (lambda: D.GNN(6, 8, act_fn=torch.nn.Softplus(), n_layers=2), "Softplus"),
    "coords_agg": (lambda: D.clean.E_GCL(4, 4, 8, coords_agg="max"), "coords_agg='max'"),
}


@pytest.mark.parametrize("name", list(RAISES))
def test_unsupported_options_raise(name):
    make, match = RAISES[name]
    with pytest.raises(ValueError, match=match):
        interop.from_torch(make())


def test_fractional_edge_mask_raises():
    layer = _generic(D.E_GCL_mask(4, 4, 8))
    rng = np.random.default_rng(6)
    edges = _edges(5, seed=6)
    mask = torch.full((len(edges[0]), 1), 0.5, dtype=F64)
    args = (_t(rng, 5, 4), edges, _t(rng, 5, 3), torch.ones(5, 1, dtype=F64), mask)
    with pytest.raises(ValueError, match="edge_mask must be binary"):
        interop.compare(layer, *args)


def test_layers_built_differently_raise():
    egnn = D.clean.EGNN(2, 8, 1, n_layers=3)
    egnn.gcl_1 = D.clean.E_GCL(8, 8, 8, attention=True)
    with pytest.raises(ValueError, match="gcl_1 is built with other options"):
        interop.from_torch(egnn)
    gnn = D.GNN(6, 8, n_layers=2)
    gnn.gcl_0.edge_mlp[0] = torch.nn.Linear(17, 8, bias=False)
    with pytest.raises(ValueError, match=r"gcl_0.bias"):
        interop.from_torch(gnn)


def test_open_input_width_needs_in_features():
    """A non-residual gcl layer with node attributes: the weights leave input_nf open."""
    layer = D.E_GCL(4, 6, 8, edges_in_d=2, nodes_att_dim=2, recurrent=False)
    with pytest.raises(ValueError, match="in_features"):
        interop.from_torch(layer)
    spec, _ = interop.from_torch(layer, in_features=4)
    assert (spec.layer.edge_features, spec.layer.node_attr_features) == (2, 2)


def test_unknown_module_is_a_type_error():
    with pytest.raises(TypeError, match="egnn_clean EGNN"):
        interop.from_torch(torch.nn.Bilinear(3, 4, 2))


# --- the wrapper blocks keep the Block contract ----------------------------------------------


@pytest.mark.parametrize("name", ["gcl all options", "qm9 mask", "EGNN_vel", "GNN", "RF_vel"])
def test_wrapper_blocks_follow_the_contract(name):
    """Seeded init in the declared shapes, VJPs against central differences (a route independent
    of torch), and named errors for a foreign cache or incomplete params."""
    from geomp_ref import testing
    from geomp_ref.params import tree_map

    if name in LAYERS:
        make, extra = LAYERS[name]
        module, rng = _generic(make()), np.random.default_rng(7)
        n, edges = 6, _edges(6, seed=7)
        args = [_t(rng, n, 4), edges, _t(rng, n, 3)]
        if "mask" in extra:
            args += [torch.ones(n, 1, dtype=F64), torch.ones(len(edges[0]), 1, dtype=F64)]
        kwargs = {"edge_attr": _t(rng, len(edges[0]), 2), "node_attr": _t(rng, n, 3)}
    else:
        (module, args), kwargs = _model_call(name, size=2, hidden=5, layers=2), {}
        module = _generic(module)
    spec, params = interop.from_torch(module, **({"in_features": 4} if name in LAYERS else {}))
    graph, inputs = interop.inputs_from_torch(module, *args, **kwargs)
    shapes = tree_map(np.shape, spec.init(3))
    assert shapes == tree_map(np.shape, params) == tree_map(tuple, spec.param_shapes())
    errs = testing.check_vjp(spec, params, graph, inputs, rng=np.random.default_rng(0), eps=1e-6)
    assert max(errs.values()) <= 1e-6, errs
    owner = type(spec).__name__
    with pytest.raises(TypeError, match=f"cache of {owner}.backward"):
        spec.backward(params, ("not", "a cache"), None)
    with pytest.raises((KeyError, ValueError), match=owner):
        spec.forward({}, graph, *inputs)
