"""Primitives: values against independent formulas, VJPs against finite differences and the exact
adjoint identity, backends, errors."""

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given

from geomp_ref import make_graph, ops
from geomp_ref.ops import activations, dense, radial
from geomp_ref.testing import check_vjp_fn, graph_strategy

TOL = 1e-7


def _graph():
    # multi-edge (0 -> 1 twice), isolated node 4, self-loop 3 -> 3
    return make_graph(np.array([[0, 0, 2, 3, 1, 3], [1, 1, 1, 3, 0, 2]]), 5)


def test_gather_scatter_adjoint(rng):
    idx = np.array([2, 0, 2, 3, 3, 3])
    x = rng.normal(size=(5, 2))
    y = rng.normal(size=(6, 2))
    lhs = np.sum(ops.gather(x, idx) * y)
    rhs = np.sum(x * ops.scatter_sum(y, idx, 5))
    assert abs(lhs - rhs) <= 1e-14 * (1 + abs(lhs))
    gx, none = ops.gather_vjp(x, idx, y)
    assert none is None
    np.testing.assert_allclose(gx, ops.scatter_sum(y, idx, 5), rtol=0, atol=0)


def test_scatter_values_against_loops(rng):
    idx = np.array([1, 1, 3, 0, 3, 3])
    v = rng.normal(size=(6, 3))
    s = ops.scatter_sum(v, idx, 5)
    m = ops.scatter_mean(v, idx, 5)
    mx, arg = ops.scatter_max(v, idx, 5)
    for k in range(5):
        rows = v[idx == k]
        np.testing.assert_allclose(s[k], rows.sum(0) if len(rows) else 0.0, atol=1e-15)
        np.testing.assert_allclose(m[k], rows.mean(0) if len(rows) else 0.0, atol=1e-15)
        np.testing.assert_allclose(mx[k], rows.max(0) if len(rows) else 0.0, atol=0)
    assert np.all(arg[2] == -1) and np.all(arg[4] == -1)


@pytest.mark.parametrize("name", ["scatter_sum", "scatter_mean", "scatter_max"])
def test_scatter_vjps(rng, name):
    idx = np.array([1, 1, 3, 0, 3, 3])
    v = rng.normal(size=(6, 3))
    f = getattr(ops, name)
    fv = getattr(ops, name + "_vjp")
    fn = (lambda x: f(x, idx, 5)[0]) if name == "scatter_max" else (lambda x: f(x, idx, 5))
    errs = check_vjp_fn(fn, lambda x, g: fv(x, idx, 5, g)[0], (v,), rng=rng)
    assert max(errs.values()) < TOL


def test_scatter_softmax(rng):
    idx = np.array([0, 0, 0, 2, 2])
    v = rng.normal(size=5) * 3
    a = ops.scatter_softmax(v, idx, 3)
    e = np.exp(v[:3])
    np.testing.assert_allclose(a[:3], e / e.sum(), rtol=1e-15)
    for eps in (0.0, 1e-3):
        errs = check_vjp_fn(lambda x, eps=eps: ops.scatter_softmax(x, idx, 3, eps=eps),
                            lambda x, g, eps=eps: ops.scatter_softmax_vjp(x, idx, 3, g, eps=eps)[0],
                            (v,), rng=rng)
        assert max(errs.values()) < TOL
    big = ops.scatter_softmax(np.array([1000.0, 999.0]), np.array([0, 0]), 1)
    assert np.all(np.isfinite(big))  # the max shift avoids overflow


def test_aggregations_and_vjps(rng):
    g = _graph()
    m = rng.normal(size=(g.num_edges, 4))
    out = ops.aggregate(g, m)
    want = np.zeros((5, 4))
    for e in range(g.num_edges):
        want[g.dst[e]] += m[e]
    np.testing.assert_allclose(out, want, atol=1e-15)
    assert np.all(out[4] == 0)
    assert max(check_vjp_fn(lambda x: ops.aggregate(g, x),
                            lambda x, gr: ops.aggregate_vjp(g, x, gr), (m,),
                            rng=rng).values()) < TOL
    assert max(check_vjp_fn(lambda x: ops.aggregate_mean(g, x),
                            lambda x, gr: ops.aggregate_mean_vjp(g, x, gr), (m,),
                            rng=rng).values()) < TOL


@pytest.mark.parametrize("per_channel", [False, True])
def test_weighted_aggregate(rng, per_channel):
    g = _graph()
    f = rng.normal(size=(5, 3))
    w = rng.normal(size=(g.num_edges, 3) if per_channel else (g.num_edges,))
    out = ops.weighted_aggregate(g, f, w)
    wb = w if per_channel else w[:, None]
    np.testing.assert_allclose(out, ops.aggregate(g, wb * f[g.src]), atol=1e-15)
    errs = check_vjp_fn(lambda a, b: ops.weighted_aggregate(g, a, b),
                        lambda a, b, gr: ops.weighted_aggregate_vjp(g, a, b, gr), (f, w), rng=rng)
    assert max(errs.values()) < TOL


@given(graph_strategy())
def test_aggregate_adjoint_on_random_graphs(g):
    rng = np.random.default_rng(g.num_edges * 31 + g.num_nodes)
    m = rng.normal(size=(g.num_edges, 2))
    y = rng.normal(size=(g.num_nodes, 2))
    lhs = np.sum(ops.aggregate(g, m) * y)
    rhs = np.sum(m * ops.aggregate_vjp(g, m, y))
    assert abs(lhs - rhs) <= 1e-13 * (1 + np.abs(m).sum() * np.abs(y).max(initial=0))


def test_scatter_errors():
    with pytest.raises(ValueError, match="index holds index 7"):
        ops.scatter_sum(np.ones((2, 1)), np.array([0, 7]), 3)
    with pytest.raises(TypeError, match="index must be an integer"):
        ops.scatter_sum(np.ones((2, 1)), np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="values must have len"):
        ops.scatter_sum(np.ones((3, 1)), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="values contains NaN"):
        ops.scatter_sum(np.array([[np.nan], [1.0]]), np.array([0, 1]), 3)
    with pytest.raises(TypeError, match="graph must be a Graph"):
        ops.aggregate("not a graph", np.ones((2, 1)))
    g = _graph()
    with pytest.raises(ValueError, match="m must have num_edges"):
        ops.aggregate(g, np.ones((2, 1)))
    with pytest.raises(ValueError, match="w must have shape"):
        ops.weighted_aggregate(g, np.ones((5, 3)), np.ones((g.num_edges, 2)))
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.aggregate(g, np.ones((g.num_edges, 1)), backend="tpu")


def test_empty_inputs():
    g = make_graph(np.zeros((2, 0), np.int64), 3)
    assert np.all(ops.aggregate(g, np.zeros((0, 2))) == 0)
    assert ops.weighted_aggregate(g, np.ones((3, 2)), np.zeros(0)).shape == (3, 2)
    g0 = make_graph(np.zeros((2, 0), np.int64), 0)
    assert ops.aggregate(g0, np.zeros((0, 2))).shape == (0, 2)


# --- dense and activations ---------------------------------------------------------------


def test_linear_vjp(rng):
    x, W, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    errs = check_vjp_fn(ops.linear, ops.linear_vjp, (x, W, b), rng=rng)
    assert max(errs.values()) < TOL


@pytest.mark.parametrize("name",
                         ["silu", "softplus", "shifted_softplus", "sigmoid", "tanh", "relu"])
def test_activation_values_against_mpmath(name):
    mp_f = {
        "silu": lambda t: t / (1 + mpmath.exp(-t)),
        "softplus": lambda t: mpmath.log(1 + mpmath.exp(t)),
        "shifted_softplus": lambda t: mpmath.log(1 + mpmath.exp(t)) - mpmath.log(2),
        "sigmoid": lambda t: 1 / (1 + mpmath.exp(-t)),
        "tanh": mpmath.tanh,
        "relu": lambda t: max(t, 0),
    }[name]
    f, _ = activations.get(name)
    xs = np.concatenate([np.linspace(-40, 40, 161), [-1e-8, 1e-8, 0.3, 745.0, -745.0]])
    with mpmath.workdps(40):
        want = np.array([float(mp_f(mpmath.mpf(float(x)))) for x in xs])
    got = f(xs)
    # a few ulps, relative, except where the value is tiny through cancellation
    err = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    assert np.all((err < 4e-16) | (np.abs(got - want) < 1e-300)), (xs[err.argmax()], err.max())


@pytest.mark.parametrize(
    "name", ["silu", "softplus", "shifted_softplus", "sigmoid", "tanh", "relu", "identity", "gelu"])
def test_activation_vjps(rng, name):
    f, fv = activations.get(name)
    x = rng.normal(size=(7,)) * 3
    x[np.abs(x) < 1e-3] = 0.5  # relu: stay away from the kink
    assert max(check_vjp_fn(f, fv, (x,), rng=rng).values()) < TOL


def test_shifted_softplus_constants():
    assert activations.LN2 == math.log(2)
    assert activations.shifted_softplus(np.array(0.0)) == 0.0
    assert activations.LN2_PYG == 0.6931471824645996  # PyG's float32-born ln 2
    # torch's threshold behaviour when asked
    assert activations.softplus(np.array(25.0), threshold=20.0) == 25.0
    assert activations.softplus(np.array(25.0)) > 25.0
    with pytest.raises(ValueError, match="activation must be one of"):
        activations.get("gelu2")


# --- radial ------------------------------------------------------------------------------


def test_radial_values(rng):
    d = np.array([0.0, 1e-9, 0.5, 2.0, 4.999, 5.0, 6.0])
    mu, gamma = radial.gaussian_centers(0.0, 5.0, 6)
    assert gamma == 0.5 / 1.0**2
    np.testing.assert_allclose(radial.gaussian_rbf(d, mu, gamma)[2], np.exp(-0.5 * (0.5 - mu) ** 2))
    c = radial.cosine_cutoff(d, 5.0)
    assert c[0] == 1.0 and c[5] == 0.0 and c[6] == 0.0
    p = radial.polynomial_cutoff(d, 5.0)
    assert p[0] == 1.0 and p[5] == 0.0 and abs(p[4]) < 1e-9  # ~ (1 - u)^3 near the cutoff
    b = radial.bessel_rbf(d, 4, 5.0)
    n = np.arange(1, 5)
    np.testing.assert_allclose(b[0], np.sqrt(2 / 5.0) * n * np.pi / 5.0, rtol=1e-15)
    with mpmath.workdps(40):
        for k, dk in enumerate(d[1:4], 1):
            want = [float(mpmath.sqrt(mpmath.mpf(2) / 5) * mpmath.sin(j * mpmath.pi * dk / 5) / dk)
                    for j in n]
            np.testing.assert_allclose(b[k], want, rtol=2e-15)


@pytest.mark.parametrize("which", ["gaussian", "bessel", "cosine", "polynomial"])
def test_radial_vjps(rng, which):
    d = rng.uniform(0.1, 4.8, size=9)
    d[0] = 1e-6  # inside the Bessel series branch
    mu, gamma = radial.gaussian_centers(0.0, 5.0, 8)
    fns = {
        "gaussian": (lambda x: radial.gaussian_rbf(x, mu, gamma),
                     lambda x, g: radial.gaussian_rbf_vjp(x, mu, gamma, g)),
        "bessel": (lambda x: radial.bessel_rbf(x, 5, 5.0),
                   lambda x, g: radial.bessel_rbf_vjp(x, 5, 5.0, g)),
        "cosine": (lambda x: radial.cosine_cutoff(x, 5.0),
                   lambda x, g: radial.cosine_cutoff_vjp(x, 5.0, g)),
        "polynomial": (lambda x: radial.polynomial_cutoff(x, 5.0),
                       lambda x, g: radial.polynomial_cutoff_vjp(x, 5.0, g)),
    }
    f, fv = fns[which]
    assert max(check_vjp_fn(f, fv, (d,), rng=rng, eps=1e-7).values()) < TOL


def test_radial_errors():
    with pytest.raises(ValueError, match="cutoff"):
        radial.cosine_cutoff(np.ones(2), -1.0)
    with pytest.raises(ValueError, match="cutoff"):
        radial.bessel_rbf(np.ones(2), 3, 0.0)
    with pytest.raises(ValueError, match="num"):
        radial.gaussian_centers(0, 1, 1)


def test_edge_length(rng):
    v = rng.normal(size=(5, 3))
    assert max(check_vjp_fn(ops.edge_length, ops.edge_length_vjp, (v,), rng=rng).values()) < TOL
    assert max(check_vjp_fn(ops.edge_sqlength, ops.edge_sqlength_vjp, (v,), rng=rng).values()) < TOL
    v[2] = 0.0
    with pytest.raises(ValueError, match="coincident points"):
        ops.edge_length(v)
    assert ops.edge_sqlength(v)[2] == 0.0


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_filter_aggregate_values_and_vjp(rng, backend):
    """SchNet's filtered sum against the literal sum over edges; its VJP (f, w and the scale s)
    against finite differences."""
    g = _graph()
    f, w = rng.normal(size=(5, 3)), rng.normal(size=(g.num_edges, 3))
    s = rng.uniform(0.1, 1.0, g.num_edges)
    out = ops.filter_aggregate(g, f, w, s, backend=backend)
    want = np.zeros((5, 3))
    for e, (j, i) in enumerate(g.edge_index.T):
        want[i] += w[e] * s[e] * f[j]
    np.testing.assert_allclose(out, want, rtol=1e-14, atol=1e-15)
    errs = check_vjp_fn(lambda a, b, c: ops.filter_aggregate(g, a, b, c, backend=backend),
                        lambda a, b, c, gr: ops.filter_aggregate_vjp(g, a, b, c, gr,
                                                                     backend=backend),
                        (f, w, s), rng=rng)
    assert max(errs.values()) < TOL


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_edge_vectors_vjp_is_the_adjoint(rng, backend):
    """<edge_vectors(x), g> = <x, edge_vectors_vjp(g)> for every x, g (the exact adjoint)."""
    from geomp_ref import edge_vectors

    g = _graph()
    x, gv = rng.normal(size=(5, 3)), rng.normal(size=(g.num_edges, 3))
    lhs = np.sum(edge_vectors(g, x) * gv)
    rhs = np.sum(x * ops.edge_vectors_vjp(g, gv, backend=backend))
    assert abs(lhs - rhs) <= 1e-13 * max(1.0, abs(lhs))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", ["silu", "softplus", "shifted_softplus", "sigmoid", "tanh",
                                  "gelu"])
def test_activate_returns_value_and_derivative(rng, name, backend):
    """activate(z, b) = (z + b, f(z + b), f'(z + b)): f from the reference op, f' against central
    differences of f, and derivative() the same function."""
    f, _ = activations.get(name)
    z, b = rng.normal(size=(6, 4)) * 3, rng.normal(size=4)
    zb, y, dy = ops.activate(name, z, b, backend=backend)
    np.testing.assert_array_equal(zb, z + b)
    np.testing.assert_allclose(y, f(z + b), rtol=1e-14, atol=1e-15)
    h = 1e-6
    fd = (f(z + b + h) - f(z + b - h)) / (2 * h)
    np.testing.assert_allclose(dy, fd, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ops.derivative(name, z + b), dy, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(7,), (2, 3), (0,)])
def test_linear_vjp_input_only(bias, lead):
    """param_grads=False: grad_x alone, the same bits as the full VJP's, no parameter gradients."""
    rng = np.random.default_rng(5)
    x, W = rng.normal(size=lead + (4,)), rng.normal(size=(4, 3))
    b = rng.normal(size=3) if bias else None
    g = rng.normal(size=lead + (3,))
    full = dense.linear_vjp(x, W, b, g)
    gx, gW, gb = dense.linear_vjp(x, W, b, g, param_grads=False)
    assert gW is None and gb is None
    np.testing.assert_array_equal(gx, full[0])
    np.testing.assert_allclose(gx, g @ W.T, rtol=0, atol=0)
    with pytest.raises(TypeError, match="param_grads"):
        dense.linear_vjp(x, W, b, g, param_grads="no")
    with pytest.raises(ValueError, match="grad_y"):
        dense.linear_vjp(x, W, b, g[..., :2], param_grads=False)
