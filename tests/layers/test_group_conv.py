"""Lifting and group convolutions on rotation grids: VJPs, exact grid-group equivariance,
approximate continuous equivariance, backends, an independent loop, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geomp_ref import testing
from geomp_ref.cases import cases
from geomp_ref.cases.group_conv import grid_elements
from geomp_ref.graph import make_graph
from geomp_ref.layers.group_conv import GroupConv, LiftingConv, grid_permutation, rotation_grid

CASES = [c for c in cases("group_conv") if c.name.startswith(("LiftingConv/", "GroupConv/"))]
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


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_empty_graph(case, rng):
    graph, inputs = case.make_inputs(rng, 0)
    params = case.layer.init(rng)
    out, pullback = testing.vjp(case.layer, params, graph, *inputs)
    G = case.layer.rotations.shape[0]
    assert out.shape == (0, G, case.layer.out_channels)
    _, grad_in = pullback(out)
    assert [g.shape for g in grad_in] == [np.shape(x) for x in inputs]


@given(
    graph=testing.graph_strategy(max_nodes=6, max_edges=12, self_loops=True),
    seed=st.integers(0, 2**16),
)
def test_lift_then_group_conv_hypothesis(graph, seed):
    """C4 (a proper subgroup of the 8-element grid) acting on a two-layer network."""
    rng = np.random.default_rng(seed)
    lift_layer, conv = (
        LiftingConv(2, 3, grid="SO2_8", hidden=6),
        GroupConv(3, 2, grid="SO2_8", hidden=6),
    )
    p1, p2 = lift_layer.init(rng), conv.init(rng)
    n = graph.num_nodes
    f, pos = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) * 2

    def net(f, pos):
        return conv(p2, graph, lift_layer(p1, graph, f, pos), pos)

    k = int(rng.integers(1, 4))
    a = np.pi / 2 * k
    Q = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    t = rng.normal(size=2)
    perm = grid_permutation(rotation_grid("SO2_8"), Q)
    out, out2 = net(f, pos), net(f, pos @ Q.T + t)
    np.testing.assert_allclose(
        out2, out[:, perm], rtol=0, atol=1e-12 * np.abs(out).max(initial=1.0)
    )


def _direct_group_conv(layer, params, graph, f, pos):
    """Independent route: explicit loops over receivers, senders and grid elements."""
    R = layer.rotations
    G = len(R)
    out = np.zeros((graph.num_nodes, G, layer.out_channels))
    for i in range(graph.num_nodes):
        for k in range(G):
            acc = np.zeros(layer.in_channels)
            for e in np.flatnonzero(graph.dst == i):
                j = graph.src[e]
                kap = layer.spatial_net(params["spatial"], (R[k].T @ (pos[j] - pos[i]))[None])[0]
                if f.ndim == 2:
                    acc += kap * f[j]
                else:
                    h = (
                        sum(
                            layer.fiber_net(params["fiber"], (R[k].T @ R[m]).reshape(1, -1))[0]
                            * f[j, m]
                            for m in range(G)
                        )
                        / G
                    )
                    acc += kap * h
            out[i, k] = acc @ params["W"] + params["b"]
    return out


@pytest.mark.parametrize("cls,grid", [(LiftingConv, "SO3_tetra"), (GroupConv, "SO2_5")])
def test_against_direct_loops(cls, grid, rng):
    layer = cls(2, 3, grid=grid, hidden=5)
    params = layer.init(rng)
    graph = testing.random_graph(rng, 4, self_loops=True)
    G, D = layer.rotations.shape[:2]
    f = rng.normal(size=(4, 2) if cls is LiftingConv else (4, G, 2))
    pos = rng.normal(size=(4, D))
    np.testing.assert_allclose(
        layer(params, graph, f, pos),
        _direct_group_conv(layer, params, graph, f, pos),
        rtol=1e-12,
        atol=1e-13,
    )


def test_continuous_rotation_is_only_approximate(rng):
    """Sensitivity: an off-grid rotation changes the grid mean (the checks above can fail)."""
    layer = LiftingConv(2, 3, grid="SO2_8")
    params = layer.init(rng)
    graph = testing.random_graph(rng, 6)
    f, pos = rng.normal(size=(6, 2)), testing.random_points(rng, 6, 2)
    a = 0.3
    Q = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    err = np.abs(
        layer(params, graph, f, pos @ Q.T).mean(1) - layer(params, graph, f, pos).mean(1)
    ).max()
    assert err > 1e-8
    with pytest.raises(ValueError, match="not a symmetry of the grid"):
        grid_permutation(rotation_grid("SO2_8"), Q)


@pytest.mark.parametrize(
    "name,size", [("SO2_7", 7), ("SO3_tetra", 12), ("SO3_octa", 24), ("SO3_icosa", 60)]
)
def test_rotation_grids_are_groups(name, size):
    R = rotation_grid(name)
    assert R.shape[0] == size
    np.testing.assert_allclose(
        np.einsum("kab,kac->kbc", R, R), np.broadcast_to(np.eye(R.shape[1]), R.shape), atol=1e-14
    )
    for Q in R:  # closed under products: every element permutes the grid
        perm = grid_permutation(R, Q)
        assert sorted(perm.tolist()) == list(range(size))


def test_orientation_grids_symmetric_under_their_groups():
    for grid, group in (
        ("S2_icosahedron", "SO3_icosa"),
        ("S2_octahedron", "SO3_octa"),
        ("S1_8", "SO2_8"),
    ):
        o = grid_elements(grid)
        for Q in rotation_grid(group):
            grid_permutation(o, Q)


def test_bad_inputs(rng):
    with pytest.raises(ValueError, match="grid"):
        LiftingConv(2, 3, grid="SO3_cube")
    with pytest.raises(ValueError, match="in_channels"):
        GroupConv(0, 3)
    layer = GroupConv(2, 3, grid="SO2_4")
    params = layer.init(rng)
    graph = make_graph(np.array([[0, 1], [1, 0]]), 2)
    f, pos = rng.normal(size=(2, 4, 2)), rng.normal(size=(2, 2))
    with pytest.raises(ValueError, match="f must have shape"):
        layer(params, graph, f[:, :3], pos)
    with pytest.raises(ValueError, match="pos must have shape"):
        layer(params, graph, f, rng.normal(size=(2, 3)))
    bad = pos.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="pos contains NaN"):
        layer(params, graph, f, bad)
    with pytest.raises(ValueError, match="W"):
        layer({**params, "W": np.zeros((3, 3))}, graph, f, pos)
