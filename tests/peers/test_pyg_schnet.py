"""PyG SchNet vs geomp_ref SchNet: ``interop.pyg.schnet`` (energies and forces by hand) and
``interop.compare`` (every parameter gradient, taps on each interaction).

PyG's default interaction graph needs torch-cluster (a compiled extension, not installed); the
module gets a pure-torch ``interaction_graph`` that returns a radius graph (no neighbour cap)
and PyG's own edge lengths. Forces: our hand VJP w.r.t. ``pos`` vs torch autograd.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from torch_geometric.nn.models import SchNet as PygSchNet  # noqa: E402

from geomp_ref import interop, molecules, radius_graph  # noqa: E402
from geomp_ref.interop import pyg as interop_pyg  # noqa: E402
from geomp_ref.layers.schnet import SchNet, SchNetConstants  # noqa: E402
from geomp_ref.ops.activations import LN2_PYG  # noqa: E402

CUTOFF = 4.0


def _batch_of_molecules(names):
    mols = [m for m in molecules.load() if m.name in names]
    z = np.concatenate([m.z for m in mols])
    # separate the molecules by far more than the cutoff (one batch, several graphs)
    pos = np.concatenate([m.pos + 100.0 * k for k, m in enumerate(mols)])
    batch = np.repeat(np.arange(len(mols)), [len(m.z) for m in mols])
    return z, pos, batch


def _graph_fn(graph):
    ei = torch.as_tensor(graph.edge_index.copy())

    def interaction_graph(pos, batch):
        row, col = ei
        return ei, (pos[row] - pos[col]).norm(dim=-1)

    return interaction_graph


def _build(dtype, graph, readout="add", seed=0):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(seed)
        net = PygSchNet(
            hidden_channels=16,
            num_filters=12,
            num_interactions=3,
            num_gaussians=20,
            cutoff=CUTOFF,
            interaction_graph=_graph_fn(graph),
            readout=readout,
        )
    finally:
        torch.set_default_dtype(old)
    net = net.double()
    with torch.no_grad():  # PyG zero-initialises biases: give every parameter a generic value
        g = torch.Generator().manual_seed(seed + 1)
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def _compare(net, spec, params, graph, z, pos, batch):
    pos_t = torch.tensor(pos, dtype=torch.float64, requires_grad=True)
    out = net(torch.as_tensor(z), pos_t, torch.as_tensor(batch))
    (grad_t,) = torch.autograd.grad(out.sum(), pos_t)
    energy, cache = spec.forward(params, graph, z, pos)
    _, (gz, grad_pos) = spec.backward(params, cache, np.ones_like(energy))
    ref_e = out.detach().numpy()[:, 0]
    e_err = np.max(np.abs(energy - ref_e)) / np.max(np.abs(ref_e))
    f_err = np.max(np.abs(grad_pos - grad_t.numpy())) / np.max(np.abs(grad_t.numpy()))
    return e_err, f_err, gz


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["built64", "built32"])
@pytest.mark.parametrize("readout", ["add", "mean"])
def test_energy_and_forces_match_pyg(dtype, readout):
    z, pos, batch = _batch_of_molecules({"CH3CH2OH", "C6H6", "CH3SH", "H2O"})
    spec0 = SchNet(cutoff=CUTOFF)
    graph = spec0.graph(pos, batch)
    assert graph.in_degree().max() > 0
    net = _build(dtype, graph, readout)
    spec, params = interop_pyg.schnet(net)
    assert spec.readout == readout and spec.hidden == 16 and spec.num_rbf == 20
    e_err, f_err, gz = _compare(net, spec, params, graph, z, pos, batch)
    assert gz is None
    assert e_err <= 1e-12, e_err
    assert f_err <= 1e-10, f_err


def test_float32_born_constants_are_the_named_pyg_mode():
    graph = SchNet(cutoff=CUTOFF).graph(np.zeros((1, 3)))
    net32 = _build(torch.float32, graph)
    k = interop_pyg.schnet(net32)[0].constants
    named = SchNetConstants.pyg(CUTOFF, 20)
    assert k.shift == LN2_PYG == named.shift
    assert k.shift != math.log(2.0)
    assert k.gamma == named.gamma
    assert k.softplus_threshold == named.softplus_threshold == 20.0
    # torch's vectorised float32 linspace may differ from NumPy's by one float32 ulp
    np.testing.assert_allclose(
        k.offsets, named.offsets, rtol=0, atol=4 * np.spacing(np.float32(CUTOFF))
    )
    net64 = _build(torch.float64, graph)
    k64 = interop_pyg.schnet(net64)[0].constants
    exact = SchNetConstants.exact(CUTOFF, 20)
    assert k64.shift == exact.shift == math.log(2.0)
    assert abs(k64.gamma - exact.gamma) <= 4e-16 * exact.gamma


def test_pyg_neighbour_cap_is_not_ours():
    """PyG's default graph keeps at most 32 neighbours; our SchNet.graph keeps all of them."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(-1.0, 1.0, size=(40, 3))
    graph = SchNet(cutoff=CUTOFF).graph(pos)
    assert graph.in_degree().min() == 39


def test_adapter_rejects_what_it_cannot_model():
    with pytest.raises(TypeError, match="module"):
        interop_pyg.schnet(torch.nn.Linear(2, 2))
    graph = SchNet(cutoff=CUTOFF).graph(np.zeros((1, 3)))
    net = PygSchNet(
        hidden_channels=4,
        num_filters=4,
        num_interactions=1,
        num_gaussians=5,
        cutoff=CUTOFF,
        interaction_graph=_graph_fn(graph),
        mean=1.0,
        std=2.0,
    )
    with pytest.raises(ValueError, match="mean/std"):
        interop_pyg.schnet(net)


# --- interop.compare ------------------------------------------------------------------------------


def _radius_fn(cutoff):
    """An interaction graph computed from the positions it is given (PyG's calling convention)."""

    def interaction_graph(pos, batch):
        g = radius_graph(pos.detach().numpy(), cutoff, batch.numpy())
        ei = torch.as_tensor(g.edge_index.copy())
        return ei, (pos[ei[0]] - pos[ei[1]]).norm(dim=-1)

    return interaction_graph


def _net(dtype=torch.float64, graph=None, seed=0, **kwargs):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(seed)
        options = dict(hidden_channels=16, num_filters=12, num_interactions=3, num_gaussians=20,
                       cutoff=CUTOFF, interaction_graph=graph or _radius_fn(CUTOFF))
        options.update(kwargs)
        net = PygSchNet(**options)
    finally:
        torch.set_default_dtype(old)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def _all_molecules(dtype=torch.float64):
    mols = molecules.load()
    z = torch.as_tensor(np.concatenate([m.z for m in mols]))
    pos = torch.as_tensor(np.concatenate([m.pos for m in mols]), dtype=dtype)
    batch = torch.as_tensor(np.repeat(np.arange(len(mols)), [len(m.z) for m in mols]))
    return z, pos, batch


@pytest.mark.parametrize("readout", ["add", "mean"])
def test_compare_on_the_shipped_molecules(readout):
    report = interop.compare(_net(readout=readout), *_all_molecules())
    assert report.ok, report
    for kind, r in zip(report.kinds, report.rows):
        assert r.max_rel <= (1e-12 if kind == "output" else 1e-10), r
    names = [r.name for r in report.rows]
    assert names[0] == "energy" and names[-1] == "pos"
    assert "interactions.2.conv.lin1.weight" in names and "embedding.weight" in names
    assert [t.name for t in report.taps][2:5] == [f"interactions.{t}" for t in range(3)]


def test_compare_on_a_small_random_graph_without_batch():
    rng = np.random.default_rng(5)
    pos = torch.as_tensor(rng.uniform(-1.5, 1.5, size=(6, 3)))
    z = torch.as_tensor(rng.integers(1, 10, 6))
    report = interop.compare(_net(num_interactions=2), z, pos)
    assert report.ok, report


def test_float32_born_constants_are_compared_too():
    # built under float32 default dtype (PyG's float32-born ln 2 and gamma), then run in float64
    report = interop.compare(_net(torch.float32).double(), *_all_molecules())
    assert report.ok, report
    assert report.dtype == "float64"
    report32 = interop.compare(_net(torch.float32), *_all_molecules(torch.float32))
    assert report32.ok and report32.dtype == "float32"


def test_perturbed_interaction_is_the_first_divergence():
    net = _net()
    net.interactions[1].register_forward_hook(lambda m, i, out: out + 1e-6)
    report = interop.compare(net, *_all_molecules())
    assert not report.ok
    assert report.first_divergence == "interactions.1"
    assert [t.ok for t in report.taps][:3] == [True, True, True]  # embedding, rbf, interactions.0


def test_interaction_graph_is_checked():
    z, pos, batch = _all_molecules()

    def too_long(pos, batch):  # edges up to 2 cutoffs long
        g = radius_graph(pos.detach().numpy(), 2 * CUTOFF, batch.numpy())
        ei = torch.as_tensor(g.edge_index.copy())
        return ei, (pos[ei[0]] - pos[ei[1]]).norm(dim=-1)

    with pytest.raises(ValueError, match=r"SchNet\.cutoff=4\.0"):
        interop.compare(_net(graph=too_long), z, pos, batch)

    def squared(pos, batch):
        ei, w = _radius_fn(CUTOFF)(pos, batch)
        return ei, w * w

    with pytest.raises(ValueError, match=r"SchNet\.interaction_graph"):
        interop.compare(_net(graph=squared), z, pos, batch)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"atomref": torch.zeros(100, 1)}, r"SchNet\.atomref"),
        ({"mean": 1.0, "std": 2.0}, r"SchNet\.mean/std"),
        ({"readout": "max"}, r"SchNet\.readout MaxAggregation"),
        ({"hidden_channels": 15}, r"SchNet\.hidden_channels=15"),
    ],
)
def test_unsupported_schnet_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        interop.from_torch(_net(**kwargs))


@pytest.mark.parametrize(("attr", "value"), [("scale", 2.0), ("dipole", True)])
def test_scale_and_dipole_are_named(attr, value):
    net = _net()  # dipole=True at construction needs ase; the adapter reads the attribute
    setattr(net, attr, value)
    with pytest.raises(ValueError, match=rf"SchNet\.{attr}"):
        interop.from_torch(net)
