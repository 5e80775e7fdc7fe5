"""PointConv: the T(3)-only relative kernel vs the E(3)-invariant distance kernel, an edge-loop
reference, kernel specs (B-spline, the old options), errors. VJPs, symmetry and backends of the
registered configurations run in tests/test_cases.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomp_ref import cases, testing
from geomp_ref.graph import make_graph
from geomp_ref.layers.kernels import BSplineKernel, MLPKernel, cardinal_bspline
from geomp_ref.layers.pointconv import PointConv


def _case(name):
    return next(c for c in cases.cases("pointconv") if c.name == name)


@settings(max_examples=5)
@given(graph=testing.graph_strategy(max_nodes=6, max_edges=14), seed=st.integers(0, 2**31 - 1))
def test_distance_kernel_is_e3_invariant_relative_is_not(graph, seed):
    rng = np.random.default_rng(seed)
    pos = testing.random_points(rng, graph.num_nodes, min_dist=0.6)
    f = rng.normal(size=(graph.num_nodes, 3))
    kinds = (("node_scalar", "position"), ("node_scalar",))
    dist = PointConv(3, 2, (6,), "distance")
    testing.assert_equivariant(
        dist, dist.init(rng), graph, (f, pos), *kinds, "E3", rng=rng, atol=1e-12
    )
    rel = PointConv(3, 2, (6,), "relative")
    p_rel = rel.init(rng)
    testing.assert_equivariant(rel, p_rel, graph, (f, pos), *kinds, "T3", rng=rng, atol=1e-12)
    if graph.num_edges:
        errs = testing.symmetry_errors(rel, p_rel, graph, (f, pos), *kinds, "O3", rng=rng)
        assert errs["transform"] > 1e-6, errs  # the counter-example: rotations change the output


def test_relative_kernel_rotation_error_is_large(rng):
    case = _case("PointConv/relative")
    graph, inputs = case.make_inputs(rng, 9)
    errs = testing.symmetry_errors(
        case.layer,
        case.layer.init(rng),
        graph,
        inputs,
        case.input_kinds,
        case.output_kinds,
        "SO3",
        rng=rng,
    )
    assert errs["transform"] > 1e-3, errs
    assert errs["permutation"] <= 1e-12


def _silu(x):
    return x / (1.0 + np.exp(-x))


@pytest.mark.parametrize("kernel_input", ["relative", "distance"])
def test_matches_edge_loop(kernel_input, rng):
    layer = PointConv(3, 2, (5, 4), kernel_input)
    p = layer.init(rng)
    pos = testing.random_points(rng, 6, min_dist=0.5)
    graph = testing.random_graph(rng, 6, multi_edges=True)
    f = rng.normal(size=(6, 3))
    agg = np.zeros((6, 3))
    for j, i in graph.edge_index.T:
        a = pos[j] - pos[i]
        a = a if kernel_input == "relative" else np.array([np.sqrt(a @ a)])
        for k in range(3):  # WeightNet: activation after every layer, the last included
            a = _silu(a @ p["kernel"][f"W{k}"] + p["kernel"][f"b{k}"])
        agg[i] += a * f[j]
    np.testing.assert_allclose(
        layer(p, graph, f, pos), agg @ p["W_f"] + p["b_f"], rtol=1e-13, atol=1e-14
    )


def test_relative_kernel_accepts_self_loops_distance_kernel_refuses_coincident_points(rng):
    pos = testing.random_points(rng, 3, min_dist=0.5)
    f = rng.normal(size=(3, 2))
    loops = make_graph(np.array([[0, 1, 2, 1], [0, 1, 2, 0]]), 3)
    rel = PointConv(2, 2, (4,), "relative")
    errs = testing.check_vjp(rel, rel.init(rng), loops, (f, pos), rng=rng)
    assert max(errs.values()) <= 1e-7
    dist = PointConv(2, 2, (4,), "distance")
    with pytest.raises(ValueError, match="pos: edge 0 joins coincident points"):
        dist(dist.init(rng), loops, f, pos)


def test_bad_inputs(rng):
    layer = PointConv(2, 3, (4,))
    p = layer.init(rng)
    graph = testing.random_graph(rng, 4)
    pos = testing.random_points(rng, 4)
    with pytest.raises(ValueError, match="kernel_input"):
        PointConv(2, 3, kernel_input="absolute")
    with pytest.raises(ValueError, match="f must have shape"):
        layer(p, graph, np.zeros((4, 3)), pos)
    with pytest.raises(ValueError, match="pos must have shape"):
        layer(p, graph, np.zeros((4, 2)), pos[:, :2])
    with pytest.raises(TypeError, match="graph must be a Graph"):
        layer(p, graph.edge_index, np.zeros((4, 2)), pos)
    with pytest.raises(ValueError, match="backend"):
        PointConv(2, 3, backend="gpu")


def test_bspline_kernel_matches_edge_loop(rng):
    """Independent route: the B-spline kernel summed over every centre, edge by edge."""
    spec = BSplineKernel(2, 3, 3, 5, 2.0)
    layer = PointConv(3, 2, dim=2, kernel=spec)
    p = layer.init(rng)
    pos = testing.random_points(rng, 6, 2, min_dist=0.5)
    graph = testing.random_graph(rng, 6, multi_edges=True)
    f = rng.normal(size=(6, 3))
    centres = spec.centres()
    agg = np.zeros((6, 3))
    for j, i in graph.edge_index.T:
        w = np.prod(cardinal_bspline((pos[j] - pos[i] - centres) / 1.0, 3), axis=1)
        agg[i] += (w @ p["kernel"]["coeffs"]) * f[j]
    np.testing.assert_allclose(
        layer(p, graph, f, pos), agg @ p["W_f"] + p["b_f"], rtol=1e-13, atol=1e-14
    )


def test_old_kernel_options_build_the_equivalent_spec(rng):
    old = PointConv(3, 2, (5, 4), "relative", "tanh")
    new = PointConv(3, 2, kernel=MLPKernel(3, 3, (5, 4), "tanh", activate_last=True))
    assert old.kernel == new.kernel
    p = old.init(rng)
    pos = testing.random_points(rng, 5)
    graph = testing.random_graph(rng, 5)
    f = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(old(p, graph, f, pos), new(p, graph, f, pos))
    assert dataclasses.replace(old, backend="numpy").kernel == old.kernel
    with pytest.raises(ValueError, match="kernel_hidden"):
        PointConv(3, 2, (8,), kernel=MLPKernel(3, 3, (5, 4), activate_last=True))
    with pytest.raises(ValueError, match="activation"):
        PointConv(3, 2, activation="relu", kernel=BSplineKernel(3, 3))
    with pytest.raises(ValueError, match="PointConv.kernel.out_dim must be 3"):
        PointConv(3, 2, kernel=BSplineKernel(3, 4))
    with pytest.raises(ValueError, match="PointConv.kernel.in_dim must be 1"):
        PointConv(3, 2, kernel_input="distance", kernel=BSplineKernel(3, 3))
    with pytest.raises(TypeError, match="PointConv.kernel must be a kernel spec"):
        PointConv(3, 2, kernel="mlp")
