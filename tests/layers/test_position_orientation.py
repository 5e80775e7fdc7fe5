"""Position-orientation convolution (PONITA-style, R^3 x S^2 and R^2 x S^1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geomp_ref import testing
from geomp_ref.cases import cases
from geomp_ref.graph import make_graph
from geomp_ref.layers.position_orientation import (
    PositionOrientationConv,
    orientation_grid,
    pair_invariants,
    pair_invariants_vjp,
)

CASES = [c for c in cases("group_conv") if c.name.startswith("PositionOrientationConv/")]
IDS = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp(case, rng):
    errs = testing.check_case_vjp(case, rng, num_nodes=5)
    assert max(errs.values()) <= case.vjp_rtol, errs


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_symmetry(case, rng):
    graph, inputs = case.make_inputs(rng, 6)
    params = case.layer.init(rng)
    testing.assert_equivariant(
        case.layer,
        params,
        graph,
        inputs,
        case.input_kinds,
        case.output_kinds,
        case.group,
        rng=rng,
        atol=case.sym_atol,
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backends(case, rng, backend):
    graph, inputs = case.make_inputs(rng, 5)
    params = case.layer.init(rng)
    testing.assert_backends_agree(case.layer, params, graph, inputs, backends=[backend])


@given(
    graph=testing.graph_strategy(max_nodes=6, max_edges=14, self_loops=True),
    seed=st.integers(0, 2**16),
)
def test_e3_invariance_hypothesis_graphs(graph, seed):
    rng = np.random.default_rng(seed)
    layer = PositionOrientationConv(2, 3, dim=3, grid="fibonacci", num_ori=5, hidden=6)
    params = layer.init(rng)
    n = graph.num_nodes
    inputs = (rng.normal(size=(n, 5, 2)), rng.normal(size=(n, 3)) * 2, layer.ori)
    testing.assert_equivariant(
        layer,
        params,
        graph,
        inputs,
        ("node_scalar", "position", "graph_vector"),
        ("node_scalar",),
        "E3",
        rng=rng,
        atol=1e-12,
    )


def test_invariants_against_other_formulas(rng):
    x = rng.normal(size=(7, 3))
    o = orientation_grid("fibonacci", 9)
    inv1, inv2 = pair_invariants(x, o)
    np.testing.assert_allclose(inv1, np.einsum("ed,gd->eg", x, o), atol=1e-15)
    # |x - (x.o)o|^2 = |x|^2 - (x.o)^2 for unit o; |x x o| is the same norm
    np.testing.assert_allclose(
        inv2, np.linalg.norm(np.cross(x[:, None], o[None]), axis=-1), rtol=1e-13
    )
    x2, o2 = rng.normal(size=(5, 2)), orientation_grid("uniform", 6)
    _, s = pair_invariants(x2, o2)
    ang = np.arctan2(x2[:, 1], x2[:, 0])[:, None] - np.arctan2(o2[:, 1], o2[:, 0])[None]
    np.testing.assert_allclose(s, np.linalg.norm(x2, axis=1)[:, None] * np.sin(ang), atol=1e-14)


@pytest.mark.parametrize("dim", [2, 3])
def test_invariants_vjp_finite_differences(dim, rng):
    x = rng.normal(size=(4, dim))
    o = rng.normal(size=(3, dim))  # not unit: the VJP holds for the formula, not only on S^{D-1}
    g1, g2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    gx, go = pair_invariants_vjp(x, o, g1, g2)

    def loss(x, o):
        a, b = pair_invariants(x, o)
        return np.sum(g1 * a) + np.sum(g2 * b)

    eps = 1e-6
    for arr, grad, which in ((x, gx, 0), (o, go, 1)):
        d = rng.normal(size=arr.shape)
        args_p = [x, o]
        args_m = [x, o]
        args_p[which] = arr + eps * d
        args_m[which] = arr - eps * d
        fd = (loss(*args_p) - loss(*args_m)) / (2 * eps)
        assert abs(fd - np.sum(grad * d)) <= 1e-7 * max(1.0, np.linalg.norm(grad))


def test_self_loop_uses_zero_subgradient(rng):
    """x_ij = 0 (self-loop): inv2 = |0| is not differentiable; the VJP is finite and uses 0."""
    gx, go = pair_invariants_vjp(
        np.zeros((1, 3)), orientation_grid("octahedron"), np.zeros((1, 6)), np.ones((1, 6))
    )
    np.testing.assert_array_equal(gx, 0.0)
    np.testing.assert_array_equal(go, 0.0)


def test_fixed_grid_is_only_approximately_invariant(rng):
    """Sensitivity: with the Fibonacci grid held fixed a rotation changes the pooled output; with
    the grid rotated along it does not."""
    layer = PositionOrientationConv(2, 3, dim=3, grid="fibonacci", num_ori=8, pool=True)
    params = layer.init(rng)
    graph = testing.random_graph(rng, 6)
    f, pos = rng.normal(size=(6, 8, 2)), testing.random_points(rng, 6, 3)
    Q = testing.random_orthogonal(rng, 3, proper=True)
    out = layer(params, graph, f, pos)
    assert np.abs(layer(params, graph, f, pos @ Q.T) - out).max() > 1e-6 * np.abs(out).max()
    np.testing.assert_allclose(
        layer(params, graph, f, pos @ Q.T, layer.ori @ Q.T), out, atol=1e-13 * np.abs(out).max()
    )


def test_2d_is_not_reflection_invariant(rng):
    """inv2 is signed in 2D: SE(2) but not E(2) (documented); a reflection changes the output."""
    layer = PositionOrientationConv(2, 3, dim=2, grid="uniform", num_ori=6)
    params = layer.init(rng)
    graph = testing.random_graph(rng, 5)
    f, pos = rng.normal(size=(5, 6, 2)), testing.random_points(rng, 5, 2)
    P = np.diag([1.0, -1.0])
    out = layer(params, graph, f, pos, layer.ori)
    assert np.abs(layer(params, graph, f, pos @ P.T, layer.ori @ P.T) - out).max() > 1e-6


def test_deterministic_and_no_calibration(rng):
    layer = PositionOrientationConv(2, 2, dim=3, grid="fibonacci", num_ori=6)
    params = layer.init(rng)
    snapshot = {k: (v.copy() if isinstance(v, np.ndarray) else dict(v)) for k, v in params.items()}
    graph = testing.random_graph(rng, 5)
    f, pos = rng.normal(size=(5, 6, 2)), rng.normal(size=(5, 3))
    a, b = layer(params, graph, f, pos), layer(params, graph, f, pos)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(params["W"], snapshot["W"])
    np.testing.assert_array_equal(layer.ori, PositionOrientationConv(2, 2, num_ori=6).ori)


def test_grids():
    for name, num, size in (
        ("fibonacci", 10, 10),
        ("octahedron", None, 6),
        ("icosahedron", None, 12),
    ):
        o = orientation_grid(name, num)
        assert o.shape == (size, 3)
        np.testing.assert_allclose(np.linalg.norm(o, axis=1), 1.0, atol=1e-15)
    ico = orientation_grid("icosahedron")
    cos = ico @ ico.T
    np.testing.assert_allclose(np.sort(cos, axis=1)[:, -6:-1], 1 / np.sqrt(5), atol=1e-15)


def test_bad_inputs(rng):
    with pytest.raises(ValueError, match="dim"):
        PositionOrientationConv(2, 2, dim=4)
    with pytest.raises(ValueError, match="grid"):
        PositionOrientationConv(2, 2, dim=2, grid="fibonacci")
    layer = PositionOrientationConv(2, 3, dim=3, grid="octahedron")
    params = layer.init(rng)
    graph = make_graph(np.array([[0, 1], [1, 0]]), 2)
    f, pos = rng.normal(size=(2, 6, 2)), rng.normal(size=(2, 3))
    with pytest.raises(ValueError, match="f must have shape"):
        layer(params, graph, f[:, :5], pos)
    with pytest.raises(ValueError, match="ori must have shape"):
        layer(params, graph, f, pos, np.ones((6, 2)))
    with pytest.raises(ValueError, match="pos must have shape"):
        layer(params, graph, f, pos[:, :2])
    bad = f.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="f contains NaN"):
        layer(params, graph, bad, pos)
    with pytest.raises(TypeError, match="graph"):
        layer(params, None, f, pos)
