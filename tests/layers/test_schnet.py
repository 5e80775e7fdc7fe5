"""SchNet family: forces on molecules, independent values, hard cases (huge positions, arbitrary
graphs), errors. The VJP / symmetry / backend battery of the registered cases lives in
tests/test_cases.py."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomp_ref import cases, molecules, testing
from geomp_ref.graph import make_graph, radius_graph
from geomp_ref.layers.schnet import CFConv, SchNet, SchNetConstants, SchNetInteraction


def _case(name):
    return next(c for c in cases.cases("egnn_schnet") if c.name == name)


@settings(max_examples=5)
@given(graph=testing.graph_strategy(max_nodes=6, max_edges=14), seed=st.integers(0, 2**31 - 1))
def test_cfconv_invariance_on_arbitrary_graphs(graph, seed):
    """Any topology (multi-edges, isolated nodes, empty graphs); edges beyond the cutoff too."""
    rng = np.random.default_rng(seed)
    layer = CFConv(3, 2, 4, num_rbf=6, cutoff=2.5)
    pos = testing.random_points(rng, graph.num_nodes, min_dist=0.6)
    f = rng.normal(size=(graph.num_nodes, 3))
    testing.assert_equivariant(
        layer,
        layer.init(rng),
        graph,
        (f, pos),
        ("node_scalar", "position"),
        ("node_scalar",),
        "E3",
        rng=rng,
    )


@pytest.mark.parametrize("constants", ["exact", "pyg"])
def test_forces_are_energy_derivatives_on_g2_molecules(constants, rng):
    """-dE/dx by central differences on every shipped molecule equals the hand VJP."""
    model = SchNet(
        hidden=8,
        num_filters=6,
        num_interactions=2,
        num_rbf=10,
        cutoff=3.0,
        max_z=20,
        constants=constants,
    )
    params = model.init(rng)
    h = 1e-5
    for mol in molecules.load():
        graph = model.graph(mol.pos)
        _energy, cache = model.forward(params, graph, mol.z, mol.pos)
        _, (gz, grad_pos) = model.backward(params, cache, np.ones(1))
        assert gz is None
        fd = np.zeros_like(mol.pos)
        for a in range(mol.pos.shape[0]):
            for k in range(3):
                d = np.zeros_like(mol.pos)
                d[a, k] = h
                fd[a, k] = (
                    model(params, graph, mol.z, mol.pos + d)[0]
                    - model(params, graph, mol.z, mol.pos - d)[0]
                ) / (2 * h)
        err = np.max(np.abs(fd - grad_pos)) / np.max(np.abs(grad_pos))
        assert err <= 1e-7, (mol.name, err)
        # a molecule in vacuum feels no net force (translation invariance of E)
        assert np.max(np.abs(grad_pos.sum(axis=0))) <= 1e-12 * np.max(np.abs(grad_pos)) * len(mol.z)


def _cfconv_by_loops(layer, params, edge_index, f, pos):
    """CFConv written edge by edge from the paper's equation (no shared code with the layer)."""
    k = layer.consts
    mu = np.asarray(k.offsets)
    out = np.zeros((f.shape[0], params["W_in"].shape[1]))
    for j, i in edge_index.T:
        d = math.sqrt(sum((pos[j, a] - pos[i, a]) ** 2 for a in range(3)))
        e = np.array([math.exp(-k.gamma * (d - m) ** 2) for m in mu])
        z1 = e @ params["filter"]["W0"] + params["filter"]["b0"]
        s1 = np.array([math.log1p(math.exp(v)) - k.shift for v in z1])
        cut = 0.5 * (math.cos(math.pi * d / layer.cutoff) + 1.0) if d < layer.cutoff else 0.0
        w = (s1 @ params["filter"]["W1"] + params["filter"]["b1"]) * cut
        out[i] += w * (f[j] @ params["W_in"])
    return out @ params["W_out"] + params["b_out"]


def test_cfconv_matches_edge_loop(rng):
    layer = CFConv(3, 4, 5, num_rbf=7, cutoff=2.0)
    params = layer.init(rng)
    pos = testing.random_points(rng, 7, min_dist=0.5)
    graph = radius_graph(pos, 2.5)  # some edges beyond the layer's cutoff: they must contribute 0
    f = rng.normal(size=(7, 3))
    np.testing.assert_allclose(
        layer(params, graph, f, pos),
        _cfconv_by_loops(layer, params, graph.edge_index, f, pos),
        rtol=1e-13,
        atol=1e-13,
    )


def test_constants_exact_and_pyg():
    exact = SchNetConstants.exact(10.0, 50)
    assert exact.shift == float(mpmath.log(2))
    assert exact.gamma == pytest.approx(12.005, rel=1e-15)  # 0.5 / (10/49)^2 = 12.005 exactly
    pyg = SchNetConstants.pyg(10.0, 50)
    assert pyg.shift == float(np.float32(0.6931471805599453)) and pyg.shift != exact.shift
    assert abs(pyg.shift - 0.6931471824645996) == 0.0  # log(2) rounded to float32
    assert pyg.gamma != exact.gamma and abs(pyg.gamma - exact.gamma) < 1e-5
    assert pyg.softplus_threshold == 20.0 and exact.softplus_threshold is None


def test_pyg_softplus_threshold_changes_only_large_inputs(rng):
    """ssp with torch's threshold returns x - ln2 above 20; below it both modes share softplus."""
    layer_e = SchNetInteraction(3, 4, num_rbf=5, cutoff=2.0)
    k = SchNetConstants(
        tuple(layer_e.conv.consts.offsets), layer_e.conv.consts.gamma, math.log(2.0), 20.0
    )
    layer_t = SchNetInteraction(3, 4, num_rbf=5, cutoff=2.0, constants=k)
    params = layer_e.init(rng)
    pos = testing.random_points(rng, 5, min_dist=0.5)
    graph = radius_graph(pos, 2.0)
    f = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(layer_e(params, graph, f, pos), layer_t(params, graph, f, pos))
    big = {**params, "conv": {**params["conv"], "b_out": params["conv"]["b_out"] + 25.0}}
    diff = np.max(np.abs(layer_e(big, graph, f, pos) - layer_t(big, graph, f, pos)))
    assert 0 < diff < 1e-8


def test_edges_beyond_cutoff_change_nothing(rng):
    model = SchNet(hidden=4, num_filters=4, num_interactions=2, num_rbf=6, cutoff=2.0, max_z=10)
    params = model.init(rng)
    pos = testing.random_points(rng, 6, min_dist=0.8)
    z = rng.integers(1, 10, size=6)
    graph = model.graph(pos)
    full = make_graph(np.array([[a, b] for a in range(6) for b in range(6) if a != b]).T, 6)
    e1, c1 = model.forward(params, graph, z, pos)
    e2, c2 = model.forward(params, full, z, pos)
    np.testing.assert_allclose(e1, e2, rtol=1e-14)
    g1 = model.backward(params, c1, np.ones(1))[1][1]
    g2 = model.backward(params, c2, np.ones(1))[1][1]
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("scale", [1e200, 1e-150])
def test_extreme_position_scales(scale, rng):
    """Positions of any finite size give finite energies and forces. At 1e200 every edge is far
    beyond the cutoff: the energy is that of isolated atoms and the forces are exactly 0 (no
    ``0 * inf``). At 1e-150 every pair sits at distance ~0 (inside the cutoff): finite forces."""
    model = SchNet(hidden=4, num_filters=4, num_interactions=2, num_rbf=6, cutoff=2.0, max_z=10)
    params = model.init(rng)
    pos = testing.random_points(rng, 5, min_dist=0.8)
    z = rng.integers(1, 10, size=5)
    full = make_graph(np.array([[a, b] for a in range(5) for b in range(5) if a != b]).T, 5)
    energy, cache = model.forward(params, full, z, pos * scale)
    _, (_, g_pos) = model.backward(params, cache, np.ones(1))
    assert np.all(np.isfinite(energy)) and np.all(np.isfinite(g_pos))
    if scale > 1:
        alone = model(params, make_graph(np.zeros((2, 0), np.int64), 5), z, pos)
        np.testing.assert_array_equal(energy, alone)
        assert np.all(g_pos == 0.0)
        conv = model.interaction.conv
        f = rng.normal(size=(5, 4))
        out, c = conv.forward(params["interactions"]["0"]["conv"], full, f, pos * scale)
        assert np.all(np.isfinite(conv.backward(params["interactions"]["0"]["conv"], c,
                                                np.ones_like(out))[1][1]))


def test_no_neighbour_cap():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-1, 1, size=(40, 3))
    graph = SchNet(cutoff=10.0).graph(pos)
    assert np.all(graph.in_degree() == 39)


def test_energy_shape_is_one_per_graph(rng):
    case = _case("SchNet/add")
    graph, inputs = case.make_inputs(rng, 9)
    assert graph.num_graphs == 2
    assert case.layer(case.layer.init(rng), graph, *inputs).shape == (2,)


def test_bad_inputs(rng):
    model = SchNet(hidden=4, num_filters=4, num_interactions=1, num_rbf=6, cutoff=2.0, max_z=10)
    params = model.init(rng)
    pos = testing.random_points(rng, 4, min_dist=0.8)
    graph = model.graph(pos)
    z = np.array([1, 6, 8, 1])
    with pytest.raises(ValueError, match="z holds atomic number 12"):
        model(params, graph, np.array([1, 12, 8, 1]), pos)
    with pytest.raises(ValueError, match="z holds atomic number 0"):
        model(params, graph, np.array([1, 0, 8, 1]), pos)
    with pytest.raises(TypeError, match="z must be an integer"):
        model(params, graph, z.astype(float) + 0.5, pos)
    with pytest.raises(ValueError, match="pos must have shape"):
        model(params, graph, z, pos[:, :2])
    with pytest.raises(ValueError, match="pos contains NaN"):
        model(params, graph, z, np.where(pos == pos[0, 0], np.nan, pos))
    bad = pos.copy()
    bad[1] = bad[0]
    with pytest.raises(ValueError, match="pos: edge .* coincident"):
        model(params, make_graph(np.array([[0, 1], [1, 0]]), 4), z, bad)
    with pytest.raises(ValueError, match="cutoff"):
        SchNet(cutoff=-1.0)
    with pytest.raises(ValueError, match="cutoff"):
        CFConv(2, 2, 2, cutoff=0.0)
    with pytest.raises(ValueError, match="constants"):
        CFConv(2, 2, 2, constants="float32")
    with pytest.raises(ValueError, match="readout"):
        SchNet(readout="max")
    with pytest.raises(ValueError, match="hidden must be even"):
        SchNet(hidden=5)
    conv = CFConv(3, 2, 2, num_rbf=4, cutoff=2.0)
    with pytest.raises(ValueError, match="f must have shape"):
        conv(conv.init(rng), graph, np.zeros((4, 2)), pos)
    with pytest.raises(ValueError, match="lacks key.*'W_in'"):
        conv({}, graph, np.zeros((4, 3)), pos)
