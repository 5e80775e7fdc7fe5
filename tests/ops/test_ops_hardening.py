"""Primitives under hostile input: cotangents of the wrong shape, extreme magnitudes, zero-length
edges, NaN, sizes that cannot fit. Expected values come from mpmath at 50 digits."""

import mpmath
import numpy as np
import pytest

from geomp_ref import make_graph, ops
from geomp_ref.ops import activations, radial


def _graph():
    return make_graph(np.array([[0, 0, 2, 3, 1, 3], [1, 1, 1, 3, 0, 2]]), 5)


def _vjp_calls():
    """``name -> (call with a cotangent of the right shape, the right shape)``."""
    g = _graph()
    idx = np.array([1, 1, 3, 0, 3, 3])
    v = np.ones((6, 3))
    m = np.ones((g.num_edges, 3))
    f = np.ones((5, 3))
    w = np.ones(g.num_edges)
    x = np.linspace(-2, 2, 12).reshape(4, 3)
    d = np.linspace(0.1, 4, 6)
    mu, gamma = radial.gaussian_centers(0.0, 5.0, 4)
    calls = {
        "gather_vjp": (lambda c: ops.gather_vjp(f, idx, c), (6, 3)),
        "scatter_sum_vjp": (lambda c: ops.scatter_sum_vjp(v, idx, 5, c), (5, 3)),
        "scatter_sum_vjp(None)": (lambda c: ops.scatter_sum_vjp(None, idx, 5, c), (5, 3)),
        "scatter_mean_vjp": (lambda c: ops.scatter_mean_vjp(v, idx, 5, c), (5, 3)),
        "scatter_max_vjp": (lambda c: ops.scatter_max_vjp(v, idx, 5, c), (5, 3)),
        "scatter_softmax_vjp": (lambda c: ops.scatter_softmax_vjp(v, idx, 5, c), (6, 3)),
        "aggregate_vjp": (lambda c: ops.aggregate_vjp(g, m, c), (5, 3)),
        "aggregate_mean_vjp": (lambda c: ops.aggregate_mean_vjp(g, m, c), (5, 3)),
        "weighted_aggregate_vjp": (lambda c: ops.weighted_aggregate_vjp(g, f, w, c), (5, 3)),
        "linear_vjp": (lambda c: ops.linear_vjp(x, np.ones((3, 2)), np.ones(2), c), (4, 2)),
        "edge_length_vjp": (lambda c: ops.edge_length_vjp(x, c), (4,)),
        "edge_sqlength_vjp": (lambda c: ops.edge_sqlength_vjp(x, c), (4,)),
        "gaussian_rbf_vjp": (lambda c: radial.gaussian_rbf_vjp(d, mu, gamma, c), (6, 4)),
        "bessel_rbf_vjp": (lambda c: radial.bessel_rbf_vjp(d, 3, 5.0, c), (6, 3)),
        "cosine_cutoff_vjp": (lambda c: radial.cosine_cutoff_vjp(d, 5.0, c), (6,)),
        "polynomial_cutoff_vjp": (lambda c: radial.polynomial_cutoff_vjp(d, 5.0, c), (6,)),
    }
    for name in activations.NAMES:
        fv = activations.get(name)[1]
        calls[f"activation:{name}"] = (lambda c, fv=fv: fv(x, c), (4, 3))
    return calls


VJPS = _vjp_calls()


@pytest.mark.parametrize("name", list(VJPS))
def test_vjps_check_the_cotangent_shape(name):
    call, shape = VJPS[name]
    call(np.ones(shape))  # the right shape works
    wrong = [shape[:-1] + (shape[-1] + 1,), shape + (2,), shape[1:] or (7,)]
    if name.endswith("(None)"):  # values not kept: only the leading size is known
        wrong = [(shape[0] + 1,) + shape[1:], ()]
    for bad in wrong:
        with pytest.raises(ValueError, match=r"grad_\w+ of \w+_vjp must have the shape of") as info:
            call(np.ones(bad))
        assert f"got {bad}" in str(info.value)
    with pytest.raises(ValueError, match="NaN"):
        call(np.full(shape, np.nan))


def _mp_length(v):
    with mpmath.workdps(50):
        return [mpmath.sqrt(sum(mpmath.mpf(float(c)) ** 2 for c in row)) for row in v]


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-160, 1.0, 1e150, 1e200, 1e300])
def test_edge_length_over_twelve_hundred_decades(rng, scale):
    v = rng.normal(size=(20, 3)) * scale
    v[0] = [scale, 0.0, 0.0]
    v[1] = [-scale, 1e-30 * scale, 0.0]
    d = ops.edge_length(v)
    g = ops.edge_length_vjp(v, np.ones(20))
    want = _mp_length(v)
    with mpmath.workdps(50):
        for e in range(20):
            assert abs(float((mpmath.mpf(float(d[e])) - want[e]) / want[e])) < 4e-16
            unit = [mpmath.mpf(float(c)) / want[e] for c in v[e]]
            err = max(abs(float(mpmath.mpf(float(a)) - b)) for a, b in zip(g[e], unit))
            assert err < 4e-16, (e, g[e])


def test_edge_length_zero_and_overflow():
    v = np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    for fn in (lambda: ops.edge_length(v), lambda: ops.edge_length_vjp(v, np.ones(2))):
        with pytest.raises(ValueError, match=r"edge 1 joins coincident points.*allow_zero=True"):
            fn()
    np.testing.assert_array_equal(ops.edge_length(v, allow_zero=True), [3.0, 0.0])
    np.testing.assert_array_equal(ops.edge_length_vjp(v, np.ones(2), allow_zero=True)[1], 0.0)
    with pytest.raises(TypeError, match="allow_zero"):
        ops.edge_length(v, allow_zero="yes")
    huge = np.full((1, 3), 1.5e308)
    with pytest.raises(ValueError, match="exceeds the float64 range"):
        ops.edge_length(huge)
    np.testing.assert_allclose(ops.edge_length_vjp(huge, np.ones(1)), np.full((1, 3), 3**-0.5),
                               rtol=4e-16)  # the direction is still defined
    with pytest.raises(ValueError, match="squared edge length exceeds"):
        ops.edge_sqlength(np.full((1, 3), 1e200))
    assert ops.edge_sqlength(np.full((1, 3), 1e-200))[0] == 0.0  # 3e-400 rounds to 0
    for bad in (np.zeros((3, 0)), np.float64(1.0)):
        with pytest.raises(ValueError, match="edge_vec must have shape"):
            ops.edge_length(bad)
    with pytest.raises(ValueError, match="edge_vec contains NaN"):
        ops.edge_length(np.array([[np.nan, 0, 1.0]]))


def test_sizes_that_cannot_fit():
    idx = np.zeros(2, np.int64)
    for fn in (ops.scatter_sum, ops.scatter_mean, ops.scatter_max):
        with pytest.raises(ValueError, match="num_segments asks for"):
            fn(np.ones((2, 3)), idx, 2**62)
    # the row width counts too: 2^30 segments of 2^12 channels is 32 TiB
    with pytest.raises(ValueError, match=r"num_segments asks for .* \(1073741824, 4096\)"):
        ops.scatter_sum(np.ones((2, 2**12)), idx, 2**30)


def test_junk_arguments_are_named():
    g = _graph()
    cases = [
        (lambda: ops.scatter_sum(np.ones((2, 1)), [0, 1], 2.0), TypeError, "num_segments"),
        (lambda: ops.scatter_sum(np.ones((2, 1)), [0, 1], True), TypeError, "num_segments"),
        (lambda: ops.scatter_sum(np.ones((2, 1)), [[0, 1]], 2), ValueError, "index"),
        (lambda: ops.scatter_sum(np.ones((2, 1)), [0.5, 1], 2), TypeError, "index"),
        (lambda: ops.scatter_sum(np.ones((2, 1)), [True, False], 2), TypeError, "index"),
        (lambda: ops.scatter_sum(np.ones((2, 1)), np.array([0, 2**64 - 1], np.uint64), 2),
         ValueError, "index"),
        (lambda: ops.scatter_softmax(np.ones(2), [0, 1], 2, eps=-1.0), ValueError, "eps"),
        (lambda: ops.scatter_softmax(np.ones(2), [0, 1], 2, eps=np.nan), ValueError, "eps"),
        (lambda: ops.gather(np.ones((3, 2)), [0, 3]), ValueError, "index"),
        (lambda: ops.gather(1.0, [0]), ValueError, "x"),
        (lambda: ops.aggregate(g, np.full((g.num_edges, 2), np.nan)), ValueError, "m contains"),
        (lambda: ops.aggregate(g, "abc"), TypeError, "m"),
        (lambda: ops.weighted_aggregate(g, np.ones((5, 2)), np.ones((g.num_edges, 2, 1))),
         ValueError, "w"),
        (lambda: ops.edge_product(g, np.ones((5, 2)), np.ones((5, 3))), ValueError, "g and f"),
        (lambda: ops.linear(np.ones((2, 3)), np.ones((4, 2))), ValueError, "linear"),
        (lambda: ops.linear(np.ones((2, 3)), np.ones((3, 2)), np.ones(3)), ValueError, "b"),
        (lambda: ops.linear(np.ones((2, 3)), np.full((3, 2), np.nan)), ValueError, "W"),
        (lambda: radial.gaussian_rbf(np.ones(2), np.ones(3), -1.0), ValueError, "gamma"),
        (lambda: radial.bessel_rbf_vjp(np.ones(2), 3, 0.0, np.ones((2, 3))), ValueError, "cutoff"),
        (lambda: radial.polynomial_cutoff(np.ones(2), 5.0, p=0), ValueError, "p"),
        (lambda: radial.gaussian_centers(1.0, 1.0, 3), ValueError, "stop"),
        (lambda: activations.silu(np.array([np.nan])), ValueError, "x"),
        (lambda: activations.relu("text"), TypeError, "x"),
    ]
    for fn, exc, words in cases:
        with pytest.raises(exc, match=words):
            fn()
