"""LieConv (SE(2)/SE(3)): VJPs, exact invariance, backends, the pairwise-log sign, lifting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.linalg import logm

from geomp_ref import testing
from geomp_ref.cases import cases
from geomp_ref.graph import make_graph
from geomp_ref.layers.lieconv import (
    LieConv,
    LiftedLieConv,
    lift,
    lift_graph,
    so3_orbit_lift,
    stabiliser_samples,
)
from geomp_ref.lie import se2, se3

CASES = [c for c in cases("lieconv") if c.name.startswith(("LieConv/", "LiftedLieConv/"))]
IDS = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp(case, rng):
    errs = testing.check_case_vjp(case, rng, num_nodes=6)
    assert max(errs.values()) <= case.vjp_rtol, errs


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_symmetry(case, rng):
    graph, inputs = case.make_inputs(rng, 7)
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
    graph, inputs = case.make_inputs(rng, 6)
    params = case.layer.init(rng)
    testing.assert_backends_agree(case.layer, params, graph, inputs, backends=[backend])


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(case, rng, n):
    graph, inputs = case.make_inputs(rng, n)
    params = case.layer.init(rng)
    out, cache = testing.vjp(case.layer, params, graph, *inputs)
    assert out.shape == (n, case.layer.out_channels)
    _grads, grad_in = cache(np.ones_like(out))
    assert all(gi.shape == np.shape(x) for gi, x in zip(grad_in, inputs))
    lifted = isinstance(case.layer, LiftedLieConv)  # lifted graphs have fibre edges
    if n == 1 and case.layer.aggr == "mean" and graph.num_edges == 0 and not lifted:
        np.testing.assert_allclose(out, params["b"][None, :])


@given(
    graph=testing.graph_strategy(max_nodes=6, max_edges=14, self_loops=True),
    seed=st.integers(0, 2**16),
)
def test_invariance_hypothesis_graphs(graph, seed):
    rng = np.random.default_rng(seed)
    layer = LieConv("SE3", 2, 3, kernel_hidden=(8,), kernel_channels=4)
    params = layer.init(rng)
    n = graph.num_nodes
    inputs = (rng.normal(size=(n, 2)), se3.random(rng, n))
    testing.assert_equivariant(
        layer,
        params,
        graph,
        inputs,
        ("node_scalar", "pose"),
        ("node_scalar",),
        "SE3",
        rng=rng,
        atol=1e-12,
    )


def _direct_lieconv(layer, params, graph, f, g, log_fn):
    """Independent route: loop over receivers, Log by scipy's matrix logarithm."""
    net = layer.kernel_net
    out = np.zeros((graph.num_nodes, layer.out_channels))
    for i in range(graph.num_nodes):
        acc = np.zeros(layer.kernel_channels * layer.in_channels)
        edges = np.flatnonzero(graph.dst == i)
        for e in edges:
            j = graph.src[e]
            xi = log_fn(np.linalg.inv(g[i]) @ g[j])
            k = net(params["kernel"], xi[None])[0]
            acc += np.outer(k, f[j]).ravel()
        if layer.aggr == "mean" and len(edges):
            acc /= len(edges)
        out[i] = acc @ params["W"] + params["b"]
    return out


def _vee_se2(X):
    return np.array([X[0, 2], X[1, 2], X[1, 0]])


def _vee_se3(X):
    return np.array([X[0, 3], X[1, 3], X[2, 3], X[2, 1], X[0, 2], X[1, 0]])


@pytest.mark.parametrize("group,aggr", [("SE2", "mean"), ("SE3", "sum")])
def test_output_against_matrix_logarithm(group, aggr, rng):
    layer = LieConv(group, 2, 3, kernel_hidden=(8, 8), kernel_channels=5, aggr=aggr)
    params = layer.init(rng)
    graph = testing.random_graph(rng, 6, self_loops=True)
    mod, vee = (se2, _vee_se2) if group == "SE2" else (se3, _vee_se3)
    g = mod.random(rng, 6)
    f = rng.normal(size=(6, 2))
    want = _direct_lieconv(layer, params, graph, f, g, lambda M: vee(np.real(logm(M))))
    np.testing.assert_allclose(layer(params, graph, f, g), want, rtol=1e-10, atol=1e-12)


def test_sign_convention_against_lieconv_pairs(rng):
    """xi_ij = Log(g_i^-1 g_j) = -LieConv's pair[i, j] = -Log(g_j^-1 g_i); pure translations give
    xi = (x_j - x_i, 0) = edge_vec."""
    layer = LieConv("SE3", 1, 1)
    params = layer.init(rng)
    graph = testing.random_graph(rng, 5)
    g = se3.random(rng, 5)
    _, cache = layer.forward(params, graph, np.ones((5, 1)), g)
    pair = se3.log(se3.compose(se3.inverse(g[graph.src]), g[graph.dst]))
    np.testing.assert_allclose(cache.xi, -pair, atol=1e-13)
    t = np.tile(np.eye(4), (5, 1, 1))
    t[:, :3, 3] = rng.normal(size=(5, 3))
    _, cache = layer.forward(params, graph, np.ones((5, 1)), t)
    want = np.concatenate(
        [t[graph.src, :3, 3] - t[graph.dst, :3, 3], np.zeros((graph.num_edges, 3))], 1
    )
    np.testing.assert_allclose(cache.xi, want, atol=1e-14)


def test_lifted_needs_transformed_stabilisers(rng):
    """Sensitivity: with the stabiliser samples held fixed the output is not invariant."""
    case = next(c for c in CASES if c.name == "LiftedLieConv/SE3")
    graph, inputs = case.make_inputs(rng, 6)
    params = case.layer.init(rng)
    errs = testing.symmetry_errors(
        case.layer,
        params,
        graph,
        inputs,
        ("node_scalar", "position", "node_scalar"),
        ("node_scalar",),
        "SE3",
        rng=rng,
    )
    assert errs["transform"] > 1e-6


def test_lift_and_lift_graph(rng):
    graph = testing.random_graph(rng, 4)
    S = 3
    lg = lift_graph(graph, S)
    assert lg.num_nodes == 4 * S
    assert lg.num_edges == graph.num_edges * S * S + 4 * S * S
    lg2 = lift_graph(graph, S, fibre_edges=False)
    assert lg2.num_edges == graph.num_edges * S * S
    # every lifted edge joins lifts of an original edge's endpoints
    pairs = {(int(a), int(b)) for a, b in graph.edge_index.T}
    assert all((int(a) // S, int(b) // S) in pairs for a, b in lg2.edge_index.T)
    pos = rng.normal(size=(4, 2))
    stab = stabiliser_samples(rng, "SE2", 4, S)
    R = np.stack(
        [np.stack([np.cos(stab), -np.sin(stab)], -1), np.stack([np.sin(stab), np.cos(stab)], -1)],
        -2,
    )
    g = lift(pos, R)
    np.testing.assert_array_equal(g[5, :2, 2], pos[1])
    np.testing.assert_allclose(g[5, :2, :2], R[1, 2], atol=1e-15)


def test_stabiliser_samples_deterministic():
    a = stabiliser_samples(np.random.default_rng(3), "SE3", 4, 2)
    b = stabiliser_samples(np.random.default_rng(3), "SE3", 4, 2)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="rng"):
        stabiliser_samples(3, "SE3", 4, 2)


def test_so3_orbit_lift_singular_direction():
    """LieConv's lift degenerates at p/|p| = -e_x; ours is defined and continuous there."""
    ex = np.array([1.0, 0.0, 0.0])
    pts = np.array(
        [
            [-2.0, 0.0, 0.0],
            [-2.0, 1e-9, 0.0],
            [-1.0, 0.0, -1e-12],
            [0.3, -1.2, 2.0],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [-1e-300, 1.0, 0.0],
        ]
    )
    R, q = so3_orbit_lift(pts)
    np.testing.assert_allclose(q, np.linalg.norm(pts, axis=1))
    np.testing.assert_allclose(R @ ex, pts / q[:, None], atol=1e-15)
    np.testing.assert_allclose(
        np.swapaxes(R, 1, 2) @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-15
    )
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-15)
    np.testing.assert_array_equal(R[0], np.diag([-1.0, -1.0, 1.0]))
    assert np.abs(R[1] - R[0]).max() < 1e-8 and np.abs(R[2] - R[0]).max() < 1e-11
    with pytest.raises(ValueError, match="pos"):
        so3_orbit_lift(np.zeros((1, 3)))


def test_bad_inputs(rng):
    layer = LieConv("SE2", 2, 3)
    params = layer.init(rng)
    graph = make_graph(np.array([[0, 1], [1, 0]]), 2)
    g = se2.random(rng, 2)
    f = rng.normal(size=(2, 2))
    with pytest.raises(ValueError, match="group"):
        LieConv("SO3", 2, 3)
    with pytest.raises(ValueError, match="aggr"):
        LieConv("SE2", 2, 3, aggr="max")
    with pytest.raises(ValueError, match="g must have shape"):
        layer(params, graph, f, se3.random(rng, 2))
    with pytest.raises(ValueError, match="f must have shape"):
        layer(params, graph, f[:, :1], g)
    bad = g.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="g contains NaN"):
        layer(params, graph, f, bad)
    bad = g.copy()
    bad[0, :2, :2] *= 1.1
    with pytest.raises(ValueError, match="g must hold SE"):
        layer(params, graph, f, bad)
    bad = g.copy()
    bad[0, :2, 0] *= -1
    with pytest.raises(ValueError, match="reflection"):
        layer(params, graph, f, bad)
    f_bad = f.copy()
    f_bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="f contains NaN"):
        layer(params, graph, f_bad, g)
    lifted = LiftedLieConv("SE3", 2, 3)
    with pytest.raises(ValueError, match="stab must have shape"):
        lifted(lifted.init(rng), graph, f, rng.normal(size=(2, 3)), np.zeros((3, 2, 3)))
