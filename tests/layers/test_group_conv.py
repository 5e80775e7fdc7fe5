"""Lifting and group convolutions on rotation grids: what is specific to these layers.

The registry battery (``tests/test_cases.py``: VJP, exact grid-group symmetry, backends) covers
the registered configurations; here: an independent loop, a two-layer hypothesis check, the empty
graph, the sensitivity of the symmetry checks, the kernel field and the layers' own errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geomp_ref import testing
from geomp_ref.cases import cases
from geomp_ref.graph import make_graph
from geomp_ref.layers.group_conv import GroupConv, LiftingConv
from geomp_ref.layers.kernels import BSplineKernel, MLPKernel
from geomp_ref.lie.grids import grid_permutation, rotation_grid

CASES = [c for c in cases("group_conv") if c.name.startswith(("LiftingConv/", "GroupConv/"))]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
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
                kap = layer.kernel(params["kernel"], (R[k].T @ (pos[j] - pos[i]))[None])[0]
                if f.ndim == 2:
                    acc += kap * f[j]
                else:
                    rel = [(R[k].T @ R[m]).reshape(1, -1) for m in range(G)]
                    fib = [layer.fiber_kernel(params["fiber_kernel"], r)[0] for r in rel]
                    acc += kap * sum(fib[m] * f[j, m] for m in range(G)) / G
            out[i, k] = acc @ params["W"] + params["b"]
    return out


@pytest.mark.parametrize(
    "cls,grid,kernel",
    [
        (LiftingConv, "SO3_tetra", None),
        (GroupConv, "SO2_5", None),
        (GroupConv, "SO2_4", BSplineKernel(2, 2, degree=2, grid_size=4, extent=2.0)),
    ],
)
def test_against_direct_loops(cls, grid, kernel, rng):
    layer = cls(2, 3, grid=grid, hidden=5, kernel=kernel)
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


def test_old_options_build_the_equivalent_kernel_specs(rng):
    """``hidden``/``activation`` build MLP kernels; passing those specs gives the same layer."""
    layer = GroupConv(2, 3, grid="SO3_tetra", hidden=7, activation="tanh")
    assert layer.kernel == MLPKernel(3, 2, (7, 7), "tanh")
    assert layer.fiber_kernel == MLPKernel(9, 2, (7,), "tanh")
    explicit = GroupConv(2, 3, grid="SO3_tetra", kernel=layer.kernel,
                         fiber_kernel=layer.fiber_kernel)
    params = layer.init(rng)
    graph = testing.random_graph(rng, 5, self_loops=True)
    f, pos = rng.normal(size=(5, 12, 2)), rng.normal(size=(5, 3))
    np.testing.assert_array_equal(layer(params, graph, f, pos), explicit(params, graph, f, pos))
    assert sorted(params) == ["W", "b", "fiber_kernel", "kernel"]


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


def test_bad_specs_and_inputs(rng):
    with pytest.raises(ValueError, match="LiftingConv.grid"):
        LiftingConv(2, 3, grid="SO3_cube")
    for bad in (0, 2.5, True):
        with pytest.raises((ValueError, TypeError), match="GroupConv.in_channels"):
            GroupConv(bad, 3)
    with pytest.raises(ValueError, match="GroupConv.activation"):
        GroupConv(2, 3, activation="swoosh")
    with pytest.raises(ValueError, match="GroupConv.kernel"):
        GroupConv(2, 3, grid="SO2_4", kernel=MLPKernel(3, 2))  # the grid is 2D
    with pytest.raises(ValueError, match="GroupConv.fiber_kernel"):
        GroupConv(2, 3, grid="SO2_4", fiber_kernel=MLPKernel(4, 3))  # C_in = 2 values
    with pytest.raises(TypeError, match="LiftingConv.kernel"):
        LiftingConv(2, 3, kernel="mlp")
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
    with pytest.raises(ValueError, match="spatial"):
        layer({**params, "spatial": params["kernel"]}, graph, f, pos)
