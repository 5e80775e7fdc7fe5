"""The fused Numba kernels (activations, radial bases, edge filters) against the NumPy reference.

Expected values come from the reference ops of :mod:`geomp_ref.ops` (NumPy's own ufuncs, an
independent implementation of exp/log1p/tanh). Float64: within a few ulp elementwise where the
function is well conditioned, within 1e-13 of the output's scale everywhere (the registry
battery's measure); the CSR sums are bit-identical. Float32 inputs keep float32 and match the
float64 oracle to float32 rounding. Both twins (serial and parallel) give the same bits, whatever
the thread count.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from geomp_ref import backends, make_graph
from geomp_ref.backends import _nbjit, _nbmath
from geomp_ref.graph import edge_vectors_vjp as ref_edge_vectors_vjp
from geomp_ref.ops import activations as A
from geomp_ref.ops import edge_filters as EF
from geomp_ref.ops import radial as R

NB = backends.get("numba")
NAMES = ["identity", "relu", "sigmoid", "silu", "tanh", "softplus", "shifted_softplus", "gelu"]
OPTS = {"softplus": [{}, {"threshold": 20.0}],
        "shifted_softplus": [{}, {"threshold": 20.0}, {"shift": A.LN2_PYG, "threshold": 20.0}]}


def _scaled_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if b.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _ulps(a, b):
    return np.abs(a - b) / np.spacing(np.maximum(np.abs(b), np.finfo(np.float64).tiny))


@pytest.fixture(params=["serial", "parallel"])
def twin(request, monkeypatch):
    """Run each test once with the serial twins and once with the parallel ones forced."""
    if request.param == "parallel":
        monkeypatch.setattr(_nbjit, "PARALLEL_MIN_WORK", 0)
    return request.param


# --- scalar math -------------------------------------------------------------------------------


def _vec(fn):
    @numba.njit(error_model="numpy")
    def k(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])
    return k


@pytest.mark.parametrize("name,ref,lo,hi,max_ulp", [
    ("exp", np.exp, -760.0, 712.0, 1),
    ("expm1", np.expm1, -40.0, 3.0, 2),
    ("log1p", np.log1p, -0.5, 1.8, 3),
    ("tanh", np.tanh, -25.0, 25.0, 3),
    ("sigmoid", lambda x: A.sigmoid(x), -800.0, 800.0, 2),
    ("softplus", lambda x: A.softplus(x), -800.0, 800.0, 3),
])
def test_scalar_math_within_a_few_ulp(name, ref, lo, hi, max_ulp):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(lo, hi, 20000), rng.normal(size=2000) * 1e-9,
                        rng.uniform(-1, 1, 2000), [0.0, -0.0, lo, hi]])
    x = x[(x >= lo) & (x <= hi)]
    out = np.empty_like(x)
    _vec(getattr(_nbmath, name))(x, out)
    with np.errstate(over="ignore"):
        want = ref(x)
    fin = np.isfinite(want)
    assert np.array_equal(np.isfinite(out), fin)
    assert np.all(out[~fin] == want[~fin])
    assert np.max(_ulps(out[fin], want[fin])) <= max_ulp


def test_exp_edges_nan_and_subnormals():
    x = np.array([np.nan, np.inf, -np.inf, 709.78, 709.79, -708.4, -745.13, -745.14, -1e4])
    out = np.empty_like(x)
    _vec(_nbmath.exp)(x, out)
    with np.errstate(over="ignore"):
        want = np.exp(x)
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:], want[1:])  # inf, 0 and the subnormals exactly


def test_ssp_sigmoid_matches_the_reference_pair():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-40, 40, 20000), rng.normal(size=2000) * 1e-6,
                        [0.0, 0.3, -0.3, 1.0, 1.0 + 1e-15]])

    @numba.njit(error_model="numpy")
    def k(x, y, s):
        for i in range(x.shape[0]):
            y[i], s[i] = _nbmath.ssp_sigmoid(x[i])

    y, s = np.empty_like(x), np.empty_like(x)
    k(x, y, s)
    assert np.max(_ulps(y, A.shifted_softplus(x))) <= 4  # full relative accuracy near 0 too
    assert np.max(_ulps(s, A.sigmoid(x))) <= 2


# --- activations -------------------------------------------------------------------------------


def _cases():
    for name in NAMES:
        for opts in OPTS.get(name, [{}]):
            yield name, opts


@pytest.mark.parametrize("name,opts", list(_cases()))
def test_activation_kernels_match_the_reference(name, opts, twin):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(300, 7)) * 4.0
    z[0, :4] = [0.0, 20.0, 20.5, -30.0]
    b = rng.normal(size=7)
    f, f_vjp = A.get(name)
    g = rng.normal(size=z.shape)
    zb, y, d = NB.activation_with_grad(name, z, b, **opts)
    np.testing.assert_array_equal(zb, z + b)  # the bias is added exactly as the reference adds it
    assert _scaled_err(y, f(z + b, **opts)) <= 1e-15
    assert _scaled_err(g * d, f_vjp(z + b, g, **opts)) <= 1e-14
    assert _scaled_err(NB.activation(name, z, **opts), f(z, **opts)) <= 1e-15
    assert _scaled_err(NB.activation_vjp(name, z, g, **opts), f_vjp(z, g, **opts)) <= 1e-14
    # the ops front door gives the same as the kernels
    kw = {k: v for k, v in opts.items() if k in ("shift", "threshold")}
    got = A.activate(name, z, b, backend="numba", **kw)
    ref = A.activate(name, z, b, backend="numpy", **kw)
    for a, r in zip(got, ref):
        assert _scaled_err(a, r) <= 1e-14


@pytest.mark.parametrize("name", ["sigmoid", "silu", "tanh", "softplus", "shifted_softplus"])
def test_activations_elementwise_relative_where_well_conditioned(name):
    x = np.linspace(-12.0, 12.0, 4001)
    f, _ = A.get(name)
    y = NB.activation(name, x)
    want = f(x)
    ok = np.abs(want) > 1e-3  # away from the zeros, where only absolute accuracy is meaningful
    assert np.max(_ulps(y[ok], want[ok])) <= 8


@pytest.mark.parametrize("name", NAMES)
def test_activation_float32_and_shapes(name):
    rng = np.random.default_rng(3)
    for shape in [(0,), (5, 0), (0, 4), (1,), (6, 1), (2, 3, 4)]:
        x = rng.normal(size=shape).astype(np.float32)
        zb, y, d = NB.activation_with_grad(name, x)
        assert y.dtype == d.dtype == zb.dtype == np.float32 and y.shape == shape
        if x.size:
            f, _ = A.get(name)
            assert _scaled_err(y, f(x.astype(np.float64))) <= 2e-7
    x64 = rng.normal(size=(4, 3))
    assert NB.activation(name, x64).dtype == np.float64


def test_activation_refuses_bad_inputs():
    with pytest.raises(ValueError, match="activation must be one of"):
        NB.activation("swishy", np.ones(3))
    with pytest.raises(TypeError, match="z must be a float32 or float64"):
        NB.activation_with_grad("silu", np.ones(3, np.int64))
    with pytest.raises(ValueError, match="b must have shape"):
        NB.activation_with_grad("silu", np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="grad_y must have the shape"):
        NB.activation_vjp("silu", np.ones(3), np.ones(4))


def test_overwrite_writes_into_z_and_is_deterministic():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(50, 6))
    b = rng.normal(size=6)
    zc = z.copy()
    zb, y, d = NB.activation_with_grad("silu", zc, b, overwrite=True)
    assert zb is zc
    zb2, y2, d2 = NB.activation_with_grad("silu", z, b)
    np.testing.assert_array_equal(zb, zb2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(d, d2)


# --- radial bases and cutoffs ------------------------------------------------------------------


def test_radial_kernels_match_the_reference(twin):
    rng = np.random.default_rng(5)
    d = np.concatenate([rng.uniform(0.0, 6.0, 400), [0.0, 5.0, 5.0 - 1e-12, 1e3, 1e200]])
    mu, gamma = R.gaussian_centers(0.0, 5.0, 20)
    g_e = rng.normal(size=d.shape + (20,))
    g_d = rng.normal(size=d.shape)
    with np.errstate(over="ignore"):
        e_ref = R.gaussian_rbf(d, mu, gamma)
    e = NB.gaussian_rbf(d, mu, gamma)
    assert _scaled_err(e, e_ref) <= 1e-15
    for value in (None, e):
        got = R.gaussian_rbf_vjp(d[:-2], mu, gamma, g_e[:-2],
                                 value=None if value is None else value[:-2], backend="numba")
        want = R.gaussian_rbf_vjp(d[:-2], mu, gamma, g_e[:-2])
        assert _scaled_err(got, want) <= 1e-14
    assert _scaled_err(R.cosine_cutoff(d, 5.0, backend="numba"), R.cosine_cutoff(d, 5.0)) <= 1e-15
    assert _scaled_err(R.cosine_cutoff_vjp(d, 5.0, g_d, backend="numba"),
                       R.cosine_cutoff_vjp(d, 5.0, g_d)) <= 1e-14
    # the envelope's terms (~50 u^p) cancel near u = 1, where the reference itself is only
    # accurate to ~1e-14 absolute: the 1e-13 agreement of the backends
    with np.errstate(over="ignore", invalid="ignore"):
        for p in (1, 3, 6):
            assert _scaled_err(R.polynomial_cutoff(d, 5.0, p, backend="numba"),
                               R.polynomial_cutoff(d, 5.0, p)) <= 1e-13
            assert _scaled_err(R.polynomial_cutoff_vjp(d, 5.0, g_d, p, backend="numba"),
                               R.polynomial_cutoff_vjp(d, 5.0, g_d, p)) <= 1e-13
    db = d[:-1]  # (the reference's sinc series overflows, harmlessly, at 1e200)
    g_b = rng.normal(size=db.shape + (8,))
    assert _scaled_err(R.bessel_rbf(db, 8, 5.0, backend="numba"), R.bessel_rbf(db, 8, 5.0)) <= 1e-14
    assert _scaled_err(R.bessel_rbf_vjp(db, 8, 5.0, g_b, backend="numba"),
                       R.bessel_rbf_vjp(db, 8, 5.0, g_b)) <= 1e-14


def test_radial_float32_and_empty():
    d = np.linspace(0.0, 4.0, 33).astype(np.float32)
    mu, gamma = R.gaussian_centers(0.0, 4.0, 5)
    e = NB.gaussian_rbf(d, mu, gamma)
    assert e.dtype == np.float32
    assert _scaled_err(e, R.gaussian_rbf(d.astype(np.float64), mu, gamma)) <= 2e-7
    assert NB.cosine_cutoff(np.zeros(0), 3.0).shape == (0,)
    assert NB.gaussian_rbf(np.zeros(0), mu, gamma).shape == (0, 5)
    assert NB.gaussian_rbf_vjp(np.zeros(0), mu, gamma, np.zeros((0, 5))).shape == (0,)


# --- edge filters ------------------------------------------------------------------------------


def _graphs(rng):
    sym = rng.integers(0, 12, (2, 30))
    sym = sym[:, sym[0] != sym[1]]
    return {
        "N0": make_graph(np.zeros((2, 0), np.int64), 0),
        "E0": make_graph(np.zeros((2, 0), np.int64), 5),
        "isolated": make_graph(rng.integers(0, 6, (2, 25)), 12),
        "hub": make_graph(np.stack([rng.integers(0, 9, 80),
                                    np.where(rng.random(80) < 0.7, 2, rng.integers(0, 9, 80))]),
                          9),
        "symmetric": make_graph(  # every edge with its reverse, shuffled, 2 isolated nodes
            np.concatenate([sym, sym[::-1]], axis=1)[:, rng.permutation(2 * sym.shape[1])], 14),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_filter_aggregate_bit_identical_to_the_reference(dtype, twin):
    rng = np.random.default_rng(6)
    ref = backends.get("numpy")
    for name, g in _graphs(rng).items():
        e, n, c = g.num_edges, g.num_nodes, 5
        f = rng.normal(size=(n, c)).astype(dtype)
        w = (rng.normal(size=(e, c)) * 10.0 ** rng.uniform(-5, 5, (e, c))).astype(dtype)
        s = rng.uniform(0, 1, e).astype(dtype)
        go = rng.normal(size=(n, c)).astype(dtype)
        ws = w * s[:, None]
        np.testing.assert_array_equal(NB.filter_aggregate(g, f, w, s),
                                      ref.weighted_aggregate(g, f, ws), err_msg=name)
        g_f, g_w, g_s = NB.filter_aggregate_vjp(g, f, w, s, go)
        p = ref.edge_product(g, go, f)
        np.testing.assert_array_equal(g_f, ref.weighted_aggregate(g.reverse(), go, ws))
        np.testing.assert_array_equal(g_w, p * s[:, None])
        tol = 1e-13 if dtype == np.float64 else 1e-5
        assert _scaled_err(g_s, np.sum(p.astype(np.float64) * w, axis=1)) <= tol
        assert g_f.dtype == g_w.dtype == g_s.dtype == dtype


def test_filter_aggregate_with_pairs_matches_the_expanded_filter(twin):
    rng = np.random.default_rng(7)
    g = _graphs(rng)["symmetric"]
    pairs = EF.edge_pairs(g)
    assert pairs is not None
    src, dst = g.src, g.dst
    np.testing.assert_array_equal(src[pairs.first], dst[pairs.second])
    np.testing.assert_array_equal(dst[pairs.first], src[pairs.second])
    assert np.all(src[pairs.first] < dst[pairs.first])
    np.testing.assert_array_equal(pairs.row[pairs.first], np.arange(pairs.first.size))
    np.testing.assert_array_equal(pairs.row[pairs.second], np.arange(pairs.first.size))
    u, n, c = pairs.first.size, g.num_nodes, 4
    f, go = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    w, s = rng.normal(size=(u, c)), rng.uniform(0, 1, u)
    wx, sx = w[pairs.row], s[pairs.row]
    np.testing.assert_array_equal(NB.filter_aggregate(g, f, w, s, pairs),
                                  EF.filter_aggregate(g, f, wx, sx))
    got = NB.filter_aggregate_vjp(g, f, w, s, go, pairs)
    g_f, g_wx, g_sx = EF.filter_aggregate_vjp(g, f, wx, sx, go)
    np.testing.assert_array_equal(got[0], g_f)
    # the pair's row collects both edges (the chain rule through the shared row)
    want_w = np.zeros_like(w)
    np.add.at(want_w, pairs.row, g_wx)
    want_s = np.zeros_like(s)
    np.add.at(want_s, pairs.row, g_sx)
    assert _scaled_err(got[1], want_w) <= 1e-15
    assert _scaled_err(got[2], want_s) <= 1e-14


def test_edge_pairs_refuses_what_is_not_symmetric():
    assert EF.edge_pairs(make_graph(np.zeros((2, 0), np.int64), 3)) is None
    assert EF.edge_pairs(make_graph(np.array([[0, 1], [1, 2]]), 3)) is None  # missing reverses
    assert EF.edge_pairs(make_graph(np.array([[0, 1, 1], [1, 0, 1]]), 2)) is None  # self-loop
    assert EF.edge_pairs(make_graph(np.array([[0, 1, 0], [1, 0, 1]]), 2)) is None  # odd count
    g = make_graph(np.array([[0, 1, 0, 1], [1, 0, 1, 0]]), 2)  # repeated pair: k-th with k-th
    p = EF.edge_pairs(g)
    np.testing.assert_array_equal(p.first, [0, 2])
    np.testing.assert_array_equal(p.second, [1, 3])
    assert EF.edge_pairs(g) is p  # remembered for the graph's edge array


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_edge_vectors_vjp_bit_identical(dtype, twin):
    rng = np.random.default_rng(8)
    for name, g in _graphs(rng).items():
        gv = (rng.normal(size=(g.num_edges, 3)) * 10.0 ** rng.uniform(-6, 6, (g.num_edges, 3))
              ).astype(dtype)
        got = NB.edge_vectors_vjp(g, gv)
        assert got.dtype == dtype
        want = ref_edge_vectors_vjp(g, gv.astype(np.float64))
        if dtype == np.float64:
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert _scaled_err(got, want) <= 1e-5
        np.testing.assert_array_equal(EF.edge_vectors_vjp(g, gv.astype(np.float64),
                                                          backend="numba"),
                                      ref_edge_vectors_vjp(g, gv.astype(np.float64)))


@pytest.mark.parametrize("twin", [0, 1])
def test_edge_pair_sum_bit_identical_to_the_numpy_sequence(twin, monkeypatch):
    monkeypatch.setattr(_nbjit, "PARALLEL_MIN_WORK", 0 if twin else 1 << 62)
    rng = np.random.default_rng(11)
    for name, g in _graphs(rng).items():
        n, e, c = g.num_nodes, g.num_edges, 5
        a, b = rng.normal(size=(n, c)) * 1e3, rng.normal(size=(n, c))
        r, w = rng.uniform(0, 9, e), rng.normal(size=c)
        want = a[g.dst] + b[g.src]
        want += r[:, None] * w
        np.testing.assert_array_equal(NB.edge_pair_sum(g, a, b, r, w), want, err_msg=name)
    with pytest.raises(ValueError, match="a and b"):
        NB.edge_pair_sum(g, a[:1], b, r, w)
    with pytest.raises(ValueError, match="r must"):
        NB.edge_pair_sum(g, a, b, r[:-1], w)


def test_mlp_split_first_product_matches_the_whole_mlp():
    """forward_from_first(x W0) / backward_to_first, plus x^T grad_z0 for W0, is the MLP."""
    from geomp_ref.layers.mlp import MLP

    rng = np.random.default_rng(12)
    x = rng.normal(size=(7, 4))
    for backend in ("numpy", "numba"):
        mlp = MLP((4, 6, 3), "silu", activate_last=True, backend=backend)
        p = mlp.init(rng)
        y, c = mlp.forward(p, x)
        y2, c2 = mlp.forward_from_first(p, x @ p["W0"])
        np.testing.assert_array_equal(y2, y)
        g = rng.normal(size=y.shape)
        grads, (gx,) = mlp.backward(p, c, g)
        rest, gz = mlp.backward_to_first(p, c2, g)
        assert set(rest) == set(grads) - {"W0"}
        for k in rest:
            np.testing.assert_array_equal(rest[k], grads[k])
        np.testing.assert_allclose(x.T @ gz, grads["W0"], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(gz @ p["W0"].T, gx, rtol=1e-14, atol=1e-15)
        with pytest.raises(ValueError, match="backward_to_first"):
            mlp.backward(p, c2, g)


def test_filter_kernels_refuse_bad_shapes():
    g = make_graph(np.array([[0, 1], [1, 0]]), 2)
    f, w, s = np.ones((2, 3)), np.ones((2, 3)), np.ones(2)
    with pytest.raises(ValueError, match="w must have shape"):
        NB.filter_aggregate(g, f, w[:, :2], s)
    with pytest.raises(ValueError, match="s must have shape"):
        NB.filter_aggregate(g, f, w, s[:1])
    with pytest.raises(TypeError, match="share one dtype"):
        NB.filter_aggregate(g, f, w.astype(np.float32), s)
    with pytest.raises(ValueError, match="grad_edge_vec"):
        NB.edge_vectors_vjp(g, np.ones((3, 3)))


# --- threads and the other backends ------------------------------------------------------------


def test_twins_agree_bit_for_bit_across_thread_counts(monkeypatch):
    rng = np.random.default_rng(9)
    g = make_graph(rng.integers(0, 400, (2, 6000)), 400)
    z = rng.normal(size=(3000, 33))
    f, go = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    w, s = rng.normal(size=(6000, 8)), rng.uniform(size=6000)

    def run():
        zb, y, d = NB.activation_with_grad("shifted_softplus", z, z[0])
        e = NB.gaussian_rbf(np.abs(z[:, 0]), np.linspace(0, 3, 9), 4.0)
        return [y, d, e, NB.filter_aggregate(g, f, w, s), *NB.filter_aggregate_vjp(g, f, w, s, go)]

    serial = run()
    monkeypatch.setattr(_nbjit, "PARALLEL_MIN_WORK", 0)
    threads = numba.get_num_threads()
    try:
        for k in sorted({1, threads}):
            numba.set_num_threads(k)
            for a, b in zip(run(), serial):
                np.testing.assert_array_equal(a, b)
    finally:
        numba.set_num_threads(threads)


def test_backends_without_fused_kernels_use_the_reference():
    # the cuda backend has no fused elementwise kernels: the ops compute them on the host
    # with the reference, so the result is the reference's, bit for bit
    try:
        backends.get("cuda")
    except RuntimeError:
        pytest.skip("cuda backend unavailable (no GPU, NUMBA_ENABLE_CUDASIM unset)")
    rng = np.random.default_rng(10)
    x = rng.normal(size=(6, 3))
    np.testing.assert_array_equal(A.silu(x, backend="cuda"), A.silu(x))
    np.testing.assert_array_equal(A.activate("tanh", x, backend="cuda")[1], np.tanh(x))
    np.testing.assert_array_equal(R.cosine_cutoff(np.abs(x[:, 0]), 1.0, backend="cuda"),
                                  R.cosine_cutoff(np.abs(x[:, 0]), 1.0))
    g = make_graph(np.array([[0, 1, 2], [1, 2, 0]]), 3)
    w, sc = rng.normal(size=(3, 3)), rng.uniform(size=3)
    np.testing.assert_array_equal(EF.filter_aggregate(g, x[:3], w, sc, backend="cuda"),
                                  EF.filter_aggregate(g, x[:3], w, sc))


# --- the gate's scaling of gated irreps ----------------------------------------------------------


@pytest.mark.parametrize("irreps_gated,z", [("3x1o+2x2e", 17), ("1x1o", 5), ("2x1e+1x3o", 0)])
def test_gate_scale_against_the_numpy_gate(twin, irreps_gated, z):
    """The gated part of :class:`geomp_ref.o3.Gate`: the products bit-identical to NumPy's
    broadcast, the sums over components equal to NumPy's reduction (up to the sign of 0)."""
    from geomp_ref import o3
    from geomp_ref.o3.gating import _gate_runs

    gated = o3.Irreps(irreps_gated)
    gate = o3.Gate("2x0e", ["silu"], f"{gated.num_irreps}x0e", ["sigmoid"], gated)
    runs = np.asarray(gate._plan[5], dtype=np.int64).reshape(-1, 5)
    rng = np.random.default_rng(z)
    y = rng.normal(size=(z, gated.dim))
    a = rng.normal(size=(z, gated.num_irreps))
    out = NB.gate_scale(y, a, runs)
    np.testing.assert_array_equal(out, _gate_runs(y, a, gate._plan[5]))
    go = rng.normal(size=y.shape)
    gy, ga = NB.gate_scale_vjp(go, y, a, runs)
    np.testing.assert_array_equal(gy, _gate_runs(go, a, gate._plan[5]))
    want = np.zeros_like(a)
    for lo, hi, c, n, d in gate._plan[5]:
        want[:, c:c + n] = (go[:, lo:hi] * y[:, lo:hi]).reshape(z, n, d).sum(axis=2)
    np.testing.assert_array_equal(ga, want)
    # the whole gate: the numba backend against the numpy one
    x = rng.normal(size=(z, gate.irreps_in.dim))
    g_np, g_nb = gate, o3.Gate("2x0e", ["silu"], f"{gated.num_irreps}x0e", ["sigmoid"], gated,
                               backend="numba")
    o_np, c_np = g_np.forward({}, x)
    o_nb, c_nb = g_nb.forward({}, x)
    cot = rng.normal(size=o_np.shape)
    assert _scaled_err(o_nb, o_np) <= 1e-13
    assert _scaled_err(g_nb.backward({}, c_nb, cot)[1][0],
                       g_np.backward({}, c_np, cot)[1][0]) <= 1e-13


def test_gate_scale_refuses_misfit_runs():
    y, a = np.zeros((3, 9)), np.zeros((3, 3))
    runs = np.array([[0, 9, 0, 3, 3]])
    NB.gate_scale(y, a, runs)
    with pytest.raises(ValueError, match="runs"):
        NB.gate_scale(y, a, np.array([[0, 9, 1, 3, 3]]))  # gates c + n beyond a
    with pytest.raises(ValueError, match="runs"):
        NB.gate_scale(y, a, np.array([[0, 8, 0, 3, 3]]))  # hi != lo + n d
    with pytest.raises(ValueError, match="fit"):
        NB.gate_scale(y, a[:2], runs)
    with pytest.raises(TypeError, match="float64"):
        NB.gate_scale(y.astype(np.float32), a, runs)
    with pytest.raises(ValueError, match="go"):
        NB.gate_scale_vjp(np.zeros((3, 8)), y, a, runs)
