"""LieConv (SE(2)/SE(3)) and LiftedLieConv: outputs against independent routes, the pairwise-log
sign and LieConv's coordinate order, LieConv's WeightNet and mean, given pairs, kernel specs,
lifting, errors. VJPs, symmetry and backends of the registered configurations run in
tests/test_cases.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.linalg import logm

from geomp_ref import testing
from geomp_ref.cases import cases
from geomp_ref.graph import make_graph
from geomp_ref.layers.kernels import BSplineKernel, MLPKernel
from geomp_ref.layers.lieconv import LieConv
from geomp_ref.layers.lieconv_lift import lift, lift_graph, so3_orbit_lift, stabiliser_samples
from geomp_ref.layers.lifted_lieconv import LiftedLieConv
from geomp_ref.lie import se2, se3

CASES = [c for c in cases("lieconv") if c.name.startswith(("LieConv/", "LiftedLieConv/"))]
IDS = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(case, rng, n):
    graph, inputs = case.make_inputs(rng, n)
    params = case.layer.init(rng)
    out, cache = testing.vjp(case.layer, params, graph, *inputs)
    assert out.shape == (n, case.layer.out_channels)
    _grads, grad_in = cache(np.ones_like(out))
    assert all((gi is None) == (x is None) for gi, x in zip(grad_in, inputs))
    assert all(gi.shape == np.shape(x) for gi, x in zip(grad_in, inputs) if x is not None)
    lifted = isinstance(case.layer, LiftedLieConv)  # lifted graphs have fibre edges
    if n == 1 and graph.num_edges == 0 and not lifted:
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
    inputs = (rng.normal(size=(n, 2)), se3.random(rng, n), None)
    testing.assert_equivariant(
        layer,
        params,
        graph,
        inputs,
        ("node_scalar", "pose", "edge_scalar"),
        ("node_scalar",),
        "SE3",
        rng=rng,
        atol=1e-12,
    )


def _direct_lieconv(layer, params, graph, f, g, log_fn):
    """Independent route: loop over receivers, Log by scipy's matrix logarithm, WeightNet by hand
    (swish after each of its layers, the last included)."""
    K = layer.kernel.out_dim
    out = np.zeros((graph.num_nodes, layer.out_channels))
    for i in range(graph.num_nodes):
        acc = np.zeros(K * layer.in_channels)
        edges = np.flatnonzero(graph.dst == i)
        for e in edges:
            j = graph.src[e]
            h = log_fn(np.linalg.inv(g[i]) @ g[j])
            for k in range(len(layer.kernel.hidden) + 1):
                z = h @ params["kernel"][f"W{k}"] + params["kernel"][f"b{k}"]
                h = z / (1.0 + np.exp(-z))
            acc += np.outer(h, f[j]).ravel()
        if layer.aggr == "mean" and len(edges):
            acc /= len(edges)
        out[i] = acc @ params["W"] + params["b"]
        if layer.aggr == "lieconv_mean":  # LieConv divides the bias too
            out[i] /= max(len(edges), 1)
    return out


def _vee_se2(X):
    return np.array([X[0, 2], X[1, 2], X[1, 0]])


def _vee_se3(X):
    return np.array([X[0, 3], X[1, 3], X[2, 3], X[2, 1], X[0, 2], X[1, 0]])


@pytest.mark.parametrize("group,aggr", [("SE2", "mean"), ("SE3", "sum"), ("SE3", "lieconv_mean")])
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
    np.testing.assert_allclose(cache.a, -pair, atol=1e-13)
    t = np.tile(np.eye(4), (5, 1, 1))
    t[:, :3, 3] = rng.normal(size=(5, 3))
    _, cache = layer.forward(params, graph, np.ones((5, 1)), t)
    want = np.concatenate(
        [t[graph.src, :3, 3] - t[graph.dst, :3, 3], np.zeros((graph.num_edges, 3))], 1
    )
    np.testing.assert_allclose(cache.a, want, atol=1e-14)


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
    np.testing.assert_array_equal(stabiliser_samples(3, "SE3", 4, 2), a)  # an int seed
    with pytest.raises(TypeError, match="rng"):
        stabiliser_samples("3", "SE3", 4, 2)
    with pytest.raises(ValueError, match="group"):
        stabiliser_samples(3, "SO3", 4, 2)


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


def _lieconv_pair(M, group):
    """LieConv's algebra coordinates of a group element, from scipy's matrix logarithm: rotation
    first (SE(2): theta, rho; SE(3): omega, rho)."""
    X = np.real(logm(M))
    if group == "SE2":
        return np.array([X[1, 0], X[0, 2], X[1, 2]])
    return np.array([X[2, 1], X[0, 2], X[1, 0], X[0, 3], X[1, 3], X[2, 3]])


@pytest.mark.parametrize("group", ["SE2", "SE3"])
def test_lieconv_log_is_lieconvs_pair_in_its_order(group, rng):
    """kernel_input='lieconv_log' feeds LieConv's pair[i, j] = Log(g_j^-1 g_i), rotation first."""
    mod = se2 if group == "SE2" else se3
    layer = LieConv(group, 1, 1, kernel_input="lieconv_log")
    graph = testing.random_graph(rng, 6)
    g = mod.random(rng, 6)
    _, cache = layer.forward(layer.init(rng), graph, np.ones((6, 1)), g)
    want = np.stack(
        [_lieconv_pair(np.linalg.inv(g[j]) @ g[i], group) for j, i in graph.edge_index.T]
    )
    np.testing.assert_allclose(cache.a, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("group", ["SE2", "SE3"])
def test_lieconv_coordinates_equal_ours_with_the_kernel_reflected_and_reordered(group, rng):
    """k_ours(xi) = k_LieConv(-P xi): moving the reordering and the sign into the first layer's
    weights gives the same layer (away from relative angle pi, where the twins differ)."""
    mod = se2 if group == "SE2" else se3
    # LieConv coordinate r = ours[order[r]]
    order = [2, 0, 1] if group == "SE2" else [3, 4, 5, 0, 1, 2]
    theirs = LieConv(group, 2, 3, kernel_hidden=(8, 8), kernel_channels=4,
                     kernel_input="lieconv_log", aggr="lieconv_mean")
    ours = dataclasses.replace(theirs, kernel_input="log")
    p = theirs.init(rng)
    q = {**p, "kernel": {**p["kernel"], "W0": np.empty_like(p["kernel"]["W0"])}}
    q["kernel"]["W0"][order] = -p["kernel"]["W0"]
    graph = testing.random_graph(rng, 7, self_loops=True)
    g, f = mod.random(rng, 7), rng.normal(size=(7, 2))
    np.testing.assert_allclose(ours(q, graph, f, g), theirs(p, graph, f, g), rtol=1e-12, atol=1e-13)
    # without the sign or without the reordering the layers differ
    q["kernel"]["W0"][order] = p["kernel"]["W0"]
    assert np.abs(ours(q, graph, f, g) - theirs(p, graph, f, g)).max() > 1e-6
    q["kernel"]["W0"] = -p["kernel"]["W0"]
    assert np.abs(ours(q, graph, f, g) - theirs(p, graph, f, g)).max() > 1e-6


def test_given_pairs_express_the_published_layer(rng):
    """With kernel_input='given' the kernel reads the pairs handed in (LieConv's lifted triple
    gathered per edge): the same output and gradients as computing them from the poses."""
    from_poses = LieConv("SE3", 2, 3, kernel_input="lieconv_log", aggr="lieconv_mean")
    given = dataclasses.replace(from_poses, kernel_input="given")
    p = from_poses.init(rng)
    graph = testing.random_graph(rng, 6, self_loops=True)
    g, f = se3.random(rng, 6), rng.normal(size=(6, 2))
    out, cache = from_poses.forward(p, graph, f, g)
    out2, cache2 = given.forward(p, graph, f, None, cache.a)
    np.testing.assert_array_equal(out, out2)
    cot = rng.normal(size=out.shape)
    (gp, (gf, gg, gpairs)), (gp2, (gf2, gg2, gpairs2)) = (
        from_poses.backward(p, cache, cot), given.backward(p, cache2, cot))
    assert gpairs is None and gg2 is None and gg.shape == g.shape and gpairs2.shape == cache.a.shape
    np.testing.assert_array_equal(gf, gf2)
    np.testing.assert_array_equal(gp["W"], gp2["W"])


def test_default_kernel_is_weightnet():
    """LieConv's default kernel: d -> 32 -> 32 -> 16 with swish after every layer."""
    layer = LieConv("SE3", 2, 3)
    assert layer.kernel == MLPKernel(6, 16, (32, 32), "silu", activate_last=True)
    assert LieConv("SE2", 2, 3, activate_last=False).kernel.activate_last is False


def test_lieconv_mean_divides_the_bias(rng):
    layer = LieConv("SE2", 2, 3, kernel_hidden=(4,), kernel_channels=2, aggr="lieconv_mean")
    p = layer.init(rng)
    graph = make_graph(np.array([[0, 1, 2, 0], [1, 1, 1, 2]]), 4)  # in-degrees 0, 3, 1, 0
    f, g = rng.normal(size=(4, 2)), se2.random(rng, 4)
    out = layer(p, graph, f, g)
    summed = dataclasses.replace(layer, aggr="sum")(p, graph, f, g)
    np.testing.assert_allclose(out, summed / np.array([1.0, 3.0, 1.0, 1.0])[:, None], rtol=1e-15)
    mean = dataclasses.replace(layer, aggr="mean")(p, graph, f, g)
    assert np.abs(out[1] - mean[1]).max() > 1e-3  # ours divides the messages only, not b


def test_bspline_kernel_on_the_algebra(rng):
    """A B-spline LieConv equals the direct sum over every grid centre at Log(g_i^-1 g_j)."""
    spec = BSplineKernel(3, 4, 3, (4, 4, 5), (2.0, 2.0, np.pi))
    layer = LieConv("SE2", 2, 3, aggr="sum", kernel=spec)
    p = layer.init(rng)
    graph = testing.random_graph(rng, 5)
    f, g = rng.normal(size=(5, 2)), se2.random(rng, 5)
    from geomp_ref.layers.kernels import cardinal_bspline

    spacing = np.array([4.0 / 3, 4.0 / 3, np.pi / 2])
    want = np.zeros((5, 4 * 2))
    for j, i in graph.edge_index.T:
        xi = _vee_se2(np.real(logm(np.linalg.inv(g[i]) @ g[j])))
        w = np.prod(cardinal_bspline((xi - spec.centres()) / spacing, 3), axis=1)
        want[i] += np.outer(w @ p["kernel"]["coeffs"], f[j]).ravel()
    np.testing.assert_allclose(
        layer(p, graph, f, g), want @ p["W"] + p["b"], rtol=1e-10, atol=1e-12
    )


def test_kernel_options(rng):
    old = LieConv("SE2", 2, 3, kernel_hidden=(8,), kernel_channels=4)
    assert old.kernel == MLPKernel(3, 4, (8,), "silu", activate_last=True)
    assert dataclasses.replace(old, aggr="sum").kernel == old.kernel
    with pytest.raises(ValueError, match="kernel_channels"):
        LieConv("SE2", 2, 3, kernel_channels=5, kernel=MLPKernel(3, 4))
    with pytest.raises(ValueError, match="kernel_hidden"):
        LieConv("SE2", 2, 3, kernel_hidden=(8,), kernel=BSplineKernel(3, 4))
    with pytest.raises(ValueError, match="LieConv.kernel.in_dim must be 3"):
        LieConv("SE2", 2, 3, kernel=BSplineKernel(6, 4))
    with pytest.raises(TypeError, match="LieConv.kernel must be a kernel spec"):
        LieConv("SE2", 2, 3, kernel=object())
    with pytest.raises(ValueError, match="LieConv.kernel_channels must be >= 1"):
        LieConv("SE2", 2, 3, kernel_channels=0)
    with pytest.raises(ValueError, match="kernel_input"):
        LieConv("SE2", 2, 3, kernel_input="exp")
    wide = LieConv("SE2", 2, 3, kernel_input="given", kernel=MLPKernel(5, 4))  # pairs + extras
    graph = testing.random_graph(rng, 4)
    out = wide(wide.init(rng), graph, rng.normal(size=(4, 2)), None,
               rng.normal(size=(graph.num_edges, 5)))
    assert out.shape == (4, 3)


def test_stabiliser_samples_avoid_pi(rng):
    """Even counts: LieConv's equally spaced angles would put pairs exactly pi apart; ours are
    jittered. Odd counts keep LieConv's equal spacing (no pair at pi exists)."""
    for S in (2, 4, 6):
        a = stabiliser_samples(rng, "SE2", 50, S)
        d = np.angle(np.exp(1j * (a[:, :, None] - a[:, None, :])))
        assert np.all(np.abs(np.abs(d) - np.pi) > 1e-9)
        assert np.all(np.diff(a, axis=1) > 0)  # still ordered: one sample per stratum
    a = stabiliser_samples(rng, "SE2", 5, 3)
    np.testing.assert_allclose(np.diff(a, axis=1), 2 * np.pi / 3, rtol=1e-14)


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
    with pytest.raises(ValueError, match="g is not orthogonal"):
        layer(params, graph, f, bad)
    bad = g.copy()
    bad[0, :2, 0] *= -1
    with pytest.raises(ValueError, match="reflection"):
        layer(params, graph, f, bad)
    bad = g.copy()
    bad[0, 2, 0] = 0.5
    with pytest.raises(ValueError, match="g is not a homogeneous"):
        layer(params, graph, f, bad)
    f_bad = f.copy()
    f_bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="f contains NaN"):
        layer(params, graph, f_bad, g)
    with pytest.raises(TypeError, match="needs g when kernel_input='log'"):
        layer(params, graph, f)
    with pytest.raises(ValueError, match="got pairs, which this configuration does not use"):
        layer(params, graph, f, g, np.zeros((2, 3)))
    given = LieConv("SE2", 2, 3, kernel_input="given")
    with pytest.raises(TypeError, match="needs pairs when kernel_input='given'"):
        given(params, graph, f)
    with pytest.raises(ValueError, match="got g, which this configuration does not use"):
        given(params, graph, f, g, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="pairs must have shape"):
        given(params, graph, f, None, np.zeros((3, 3)))
    lifted = LiftedLieConv(LieConv("SE3", 2, 3))
    with pytest.raises(ValueError, match="stab must have shape"):
        lifted(lifted.init(rng), graph, f, rng.normal(size=(2, 3)), np.zeros((3, 2, 3)))
    with pytest.raises(TypeError, match="LiftedLieConv.conv must be a LieConv"):
        LiftedLieConv("SE3")
    with pytest.raises(ValueError, match="kernel_input"):
        LiftedLieConv(given)
