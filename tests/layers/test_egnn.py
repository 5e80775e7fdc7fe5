"""EGNN: VJPs (params, h, x, v, edge_attr), E(3) equivariance, backends, real molecules, the paper's
complete-graph formula, coincident atoms, clamp subgradient, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomp_ref import cases, molecules, testing
from geomp_ref.graph import complete_graph, make_graph
from geomp_ref.layers.egnn import EGNN, EGNNLayer

CASES = [
    c for c in cases.cases("egnn_schnet") if c.name.split("/")[0] in ("EGNNLayer", "EGNN")
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_vjp(case, rng):
    errs = testing.check_case_vjp(case, rng, num_nodes=9)
    assert {f"input:{k}" for k in range(len(case.input_kinds))} <= set(errs)
    assert max(errs.values()) <= case.vjp_rtol, errs


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_equivariance(case, rng):
    graph, inputs = case.make_inputs(rng, 9)
    testing.assert_equivariant(
        case.layer,
        case.layer.init(rng),
        graph,
        inputs,
        case.input_kinds,
        case.output_kinds,
        case.group,
        rng=rng,
        atol=case.sym_atol,
    )


@settings(max_examples=5)
@given(graph=testing.graph_strategy(max_nodes=6, max_edges=14), seed=st.integers(0, 2**31 - 1))
def test_layer_equivariance_on_arbitrary_graphs(graph, seed):
    rng = np.random.default_rng(seed)
    layer = EGNNLayer(
        3,
        5,
        edge_features=1,
        flavour="egnn_clean",
        attention=True,
        normalize=True,
        velocity=True,
        coord_init_gain=1.0,
    )
    n = graph.num_nodes
    inputs = (
        rng.normal(size=(n, 3)),
        testing.random_points(rng, n, min_dist=0.6),
        rng.normal(size=(n, 3)),
        rng.normal(size=(graph.num_edges, 1)),
    )
    testing.assert_equivariant(
        layer,
        layer.init(rng),
        graph,
        inputs,
        ("node_scalar", "position", "vector", "edge_scalar"),
        ("node_scalar", "position"),
        "E3",
        rng=rng,
    )


@pytest.mark.parametrize("name", ["EGNNLayer/gcl-vel-att-norm-tanh", "EGNN/egnn_clean"])
def test_backends_agree(name, backend, rng):
    case = cases.get_case(name)
    graph, inputs = case.make_inputs(rng, 9)
    layer = dataclasses.replace(case.layer, backend=backend)
    testing.assert_backends_agree(layer, layer.init(rng), graph, inputs, backends=[backend])


@pytest.mark.parametrize("name", ["EGNNLayer/gcl-vel-att-norm-tanh", "EGNN/gcl-vel"])
def test_vjp_on_g2_molecules(name, rng):
    case = cases.get_case(name)
    params = case.layer.init(rng)
    for mol in molecules.load()[::3]:
        graph, inputs = case.extra["from_molecule"](rng, mol)
        errs = testing.check_vjp(case.layer, params, graph, inputs, rng=rng, eps=case.fd_eps)
        assert max(errs.values()) <= 1e-7, (mol.name, errs)


def _mlp(p, x, act_last):
    n = len([k for k in p if k.startswith("W")])
    for k in range(n):
        x = x @ p[f"W{k}"] + p[f"b{k}"]
        if k < n - 1 or act_last:
            x = x / (1.0 + np.exp(-x))
    return x


def test_complete_graph_mean_is_papers_equation(rng):
    """Eq. (4) with C = 1/(M-1) written with explicit double loops over i != j."""
    layer = EGNNLayer(3, 4, flavour="egnn_clean", coord_init_gain=1.0)
    p = layer.init(rng)
    M = 5
    h, x = rng.normal(size=(M, 3)), testing.random_points(rng, M)
    (h_new, x_new), _ = layer.forward(p, complete_graph(M), h, x)
    want_x, want_h = x.copy(), h.copy()
    for i in range(M):
        msum = np.zeros(4)
        for j in range(M):
            if j == i:
                continue
            m = _mlp(p["phi_e"], np.concatenate([h[i], h[j], [np.sum((x[i] - x[j]) ** 2)]]), True)
            s = (
                _mlp({"W0": p["phi_x"]["W0"], "b0": p["phi_x"]["b0"]}, m, True) @ p["phi_x"]["W1"]
            )[0]
            want_x[i] += (x[i] - x[j]) * s / (M - 1)
            msum += m
        want_h[i] += _mlp(p["phi_h"], np.concatenate([h[i], msum]), False)
    np.testing.assert_allclose(x_new, want_x, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h_new, want_h, rtol=1e-13, atol=1e-13)


def _coincident_problem(rng):
    pos = testing.random_points(rng, 4)
    pos[1] = pos[0]
    graph = make_graph(np.array([[0, 1, 2, 3, 1], [1, 0, 0, 1, 2]]), 4)
    return graph, (rng.normal(size=(4, 3)), pos)


def test_coincident_atoms_gcl_normalisation(rng):
    """gcl's u = D/(|D| + 1) is differentiable at D = 0: the VJP matches central differences."""
    layer = EGNNLayer(3, 4, flavour="gcl", activation="silu", normalize=True, coord_init_gain=1.0)
    graph, inputs = _coincident_problem(rng)
    errs = testing.check_vjp(layer, layer.init(rng), graph, inputs, rng=rng, eps=1e-5)
    assert max(errs.values()) <= 1e-7, errs


def test_coincident_atoms_egnn_clean_normalisation(rng):
    """With eps = 1e-8 differences are useless near D = 0 (the scale of u is 1e-8); instead the
    derivative there, I/eps, must be the limit of the derivative at a tiny separation."""
    layer = EGNNLayer(3, 4, flavour="egnn_clean", normalize=True, coord_init_gain=1.0)
    p = layer.init(rng)
    graph, (h, pos) = _coincident_problem(rng)
    cot = (rng.normal(size=(4, 3)), rng.normal(size=(4, 3)))
    out0, c0 = layer.forward(p, graph, h, pos)
    g0 = layer.backward(p, c0, cot)[1][1]
    assert np.all(np.isfinite(out0[1])) and np.all(np.isfinite(g0))
    near = pos.copy()
    near[1] += 1e-15 * np.array([0.6, -0.8, 0.0])
    g1 = layer.backward(p, layer.forward(p, graph, h, near)[1], cot)[1][1]
    assert np.max(np.abs(g1 - g0)) <= 1e-5 * np.max(np.abs(g0))


def test_clamp_subgradient(rng):
    """With every t_ij clamped, x' = x + C mean(+-c): no gradient reaches phi_x, only x itself."""
    layer = EGNNLayer(3, 4, activation="silu", clamp=1e-9, coord_init_gain=1.0)
    p = layer.init(rng)
    graph = testing.random_graph(rng, 6, isolated=False)
    inputs = (rng.normal(size=(6, 3)), testing.random_points(rng, 6))
    (_h_new, x_new), cache = layer.forward(p, graph, *inputs)
    assert np.all(np.abs(cache.t) > 1e-9)
    grads, (g_h, _g_x) = layer.backward(p, cache, (None, rng.normal(size=x_new.shape)))
    for leaf in grads["phi_x"].values():
        assert np.all(leaf == 0.0)
    assert np.all(g_h == 0.0)


def test_gcl_defaults_follow_the_code():
    gcl, clean = EGNNLayer(2, 3), EGNNLayer(2, 3, flavour="egnn_clean")
    assert (gcl.activation, gcl.clamp, gcl.norm_eps, gcl.coords_agg) == ("relu", 100.0, 1.0, "mean")
    assert (clean.activation, clean.clamp, clean.norm_eps, clean.coords_agg) == (
        "silu",
        None,
        1e-8,
        "mean",
    )
    assert EGNNLayer(2, 3, clamp=None).clamp is None


def test_invariant_mode_keeps_positions(rng):
    layer = EGNNLayer(3, 4, update_coords=False)
    graph = testing.random_graph(rng, 5)
    x = testing.random_points(rng, 5)
    (_, x_new), _ = layer.forward(layer.init(rng), graph, rng.normal(size=(5, 3)), x)
    np.testing.assert_array_equal(x_new, x)


def test_bad_inputs(rng):
    graph = testing.random_graph(rng, 4)
    x = testing.random_points(rng, 4)
    h = rng.normal(size=(4, 3))
    with pytest.raises(ValueError, match="flavour"):
        EGNNLayer(3, 4, flavour="pyg")
    with pytest.raises(ValueError, match="out_features must equal in_features"):
        EGNNLayer(3, 4, out_features=2)
    with pytest.raises(ValueError, match="coords_agg"):
        EGNNLayer(3, 4, coords_agg="max")
    with pytest.raises(ValueError, match="clamp"):
        EGNNLayer(3, 4, clamp=-1.0)
    with pytest.raises(ValueError, match="num_layers"):
        EGNN(3, 4, 2, num_layers=0)
    vel = EGNNLayer(3, 4, velocity=True, edge_features=2)
    p = vel.init(rng)
    with pytest.raises(TypeError, match=r"\(params, graph, h, x, v, edge_attr\)"):
        vel(p, graph, h, x)
    with pytest.raises(ValueError, match="v must have shape"):
        vel(p, graph, h, x, np.zeros((4, 2)), np.zeros((graph.num_edges, 2)))
    with pytest.raises(ValueError, match="edge_attr must have shape"):
        vel(p, graph, h, x, np.zeros((4, 3)), np.zeros((graph.num_edges, 3)))
    with pytest.raises(ValueError, match="h must have shape"):
        vel(p, graph, h[:, :2], x, np.zeros((4, 3)), np.zeros((graph.num_edges, 2)))
    with pytest.raises(ValueError, match="x contains NaN"):
        vel(p, graph, h, x * np.nan, np.zeros((4, 3)), np.zeros((graph.num_edges, 2)))
