"""Every kernel of every available backend against the NumPy reference.

Float64 results must be bit-identical to ``numpy_backend`` (same summation order, products rounded
before they are added) and identical from run to run and across thread counts; float32 results
keep float32 and must match the float64 oracle within the rigorous summation bound
``(deg + 2) * 2**-24 * sum |terms|``. Inputs span twelve orders of magnitude, so any change of
summation order (or a fused multiply-add) changes low bits and fails the bit-identity checks.
"""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref import backends, make_graph
from geomp_ref.backends import numpy_backend as ref
from geomp_ref.ops import scatter as ops


def _loads(name: str) -> bool:
    # get() rather than available(): available() also looks for driver files, which some GPU
    # sandboxes do not expose even where numba.cuda works.
    try:
        backends.get(name)
    except RuntimeError:
        return False
    return True


FAST = [b for b in ("numba", "cuda") if _loads(b)]
EPS32 = 2.0**-24


def _wide(rng, shape, dtype):
    """Values of both signs spread over 12 decades: summation order shows in the low bits."""
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-6, 6, shape)
    return x.astype(dtype)


def _graph(kind: str, rng, big: bool = False):
    s = 8 if big else 1
    if kind == "N0":
        return make_graph(np.zeros((2, 0), np.int64), 0)
    if kind == "E0":
        return make_graph(np.zeros((2, 0), np.int64), 6)
    if kind == "isolated":  # edges among the first 10 nodes only; 10 isolated nodes after them
        return make_graph(rng.integers(0, 10, (2, 40 * s)), 20)
    if kind == "hub":  # node 3 receives most edges (huge in-degree), node 0 sends many
        n, e = 15 * s, 120 * s
        dst = np.where(rng.random(e) < 0.8, 3, rng.integers(0, n, e))
        src = np.where(rng.random(e) < 0.3, 0, rng.integers(0, n, e))
        return make_graph(np.stack([src, dst]), n)
    if kind == "multi":  # repeated (j, i) pairs and self-loops
        pairs = rng.integers(0, 6 * s, (2, 10 * s))
        ei = np.concatenate([pairs, pairs, pairs[:, :4], np.stack([np.arange(6)] * 2)], axis=1)
        return make_graph(ei[:, rng.permutation(ei.shape[1])], 6 * s)
    if kind == "sorted":
        n, e = 25 * s, 100 * s
        return make_graph(np.stack([rng.integers(0, n, e), np.sort(rng.integers(0, n, e))]), n)
    if kind == "random":
        n, e = 25 * s, 100 * s
        return make_graph(rng.integers(0, n, (2, e)), n)
    raise ValueError(kind)


KINDS = ["N0", "E0", "isolated", "hub", "multi", "sorted", "random"]


def _big_graph(rng):
    n, e = 3000, 60000
    dst = np.where(rng.random(e) < 0.1, 7, rng.integers(0, n, e))
    return make_graph(np.stack([rng.integers(0, n, e), dst]), n)


@pytest.fixture(scope="module", autouse=True)
def warm_kernels():
    """Compile every kernel once per dtype (numba caches to disk; later runs only load)."""
    g = make_graph(np.array([[0, 1, 1], [1, 0, 1]]), 2)
    for name in FAST:
        be = backends.get(name)
        for dt in (np.float32, np.float64):
            m = np.ones((3, 2), dt)
            f = np.ones((2, 2), dt)
            be.aggregate(g, m)
            be.scatter_sum(m, g.dst, 2)
            be.scatter_mean(m, g.dst, 2)
            be.scatter_max(m, g.dst, 2)
            be.weighted_aggregate(g, f, np.ones(3, dt))
            be.weighted_aggregate(g, f, m)
            be.edge_product(g, f, f)


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b, strict=True)


def _kernel_outputs(be, g, rng, dtype, tail=(3,)):
    """Run every kernel of ``be`` on one random input set; returns {name: array}."""
    e, n = g.num_edges, g.num_nodes
    c = int(np.prod(tail))
    m = _wide(rng, (e,) + tail, dtype)
    f = _wide(rng, (n, c), dtype)
    w1 = _wide(rng, (e,), dtype)
    wc = _wide(rng, (e, c), dtype)
    gg = _wide(rng, (n, c), dtype)
    mx, arg = be.scatter_max(m, g.dst, n)
    return {
        "aggregate": be.aggregate(g, m),
        "scatter_sum": be.scatter_sum(m, g.dst, n),
        "scatter_sum_src": be.scatter_sum(m, g.src, n),
        "scatter_mean": be.scatter_mean(m, g.dst, n),
        "scatter_max": mx,
        "scatter_argmax": arg,
        "weighted_edge": be.weighted_aggregate(g, f, w1),
        "weighted_channel": be.weighted_aggregate(g, f, wc),
        "weighted_reverse": be.weighted_aggregate(g.reverse(), f, wc),
        "edge_product": be.edge_product(g, gg, f),
    }, (m, f, w1, wc, gg)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bit_identical_to_numpy(backend, kind, dtype):
    rng = np.random.default_rng(2 * KINDS.index(kind) + (dtype == np.float32))
    g = _graph(kind, rng)
    state = rng.bit_generator.state
    got, _ = _kernel_outputs(backends.get(backend), g, rng, dtype)
    rng.bit_generator.state = state
    want, _ = _kernel_outputs(ref, g, rng, dtype)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        _same(got[name], want[name])


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("tail", [(), (2, 3), (0,)])
def test_trailing_dims(backend, tail):
    rng = np.random.default_rng(11)
    g = _graph("multi", rng)
    be = backends.get(backend)
    m = _wide(rng, (g.num_edges,) + tail, np.float64)
    _same(be.aggregate(g, m), ref.aggregate(g, m))
    _same(be.scatter_sum(m, g.src, g.num_nodes), ref.scatter_sum(m, g.src, g.num_nodes))
    _same(be.scatter_mean(m, g.dst, g.num_nodes), ref.scatter_mean(m, g.dst, g.num_nodes))
    for a, b in zip(be.scatter_max(m, g.dst, g.num_nodes), ref.scatter_max(m, g.dst, g.num_nodes)):
        _same(a, b)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("tail", [(), (3,), (0, 2)])
@pytest.mark.parametrize("segments", [0, 1, 4])
def test_no_rows_any_trailing_dims(backend, tail, segments):
    """Zero rows (an empty graph's per-node energies: shape (0,)) reduce to zeros, not an error."""
    be = backends.get(backend)
    idx = np.zeros(0, np.int64)
    for dtype in (np.float64, np.float32):
        v = np.zeros((0,) + tail, dtype)
        for name in ("scatter_sum", "scatter_mean"):
            got, want = getattr(be, name)(v, idx, segments), getattr(ref, name)(v, idx, segments)
            assert got.shape == want.shape == (segments,) + tail and got.dtype == dtype, name
            _same(got, want)
        for a, b in zip(be.scatter_max(v, idx, segments), ref.scatter_max(v, idx, segments)):
            assert a.shape == b.shape
            _same(a, b)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("kind", ["hub", "random", "isolated"])
def test_float32_against_float64_oracle(backend, kind):
    rng = np.random.default_rng(5)
    g = _graph(kind, rng)
    be = backends.get(backend)
    e, n = g.num_edges, g.num_nodes
    m = rng.standard_normal((e, 4)).astype(np.float32)
    f = rng.standard_normal((n, 4)).astype(np.float32)
    w = rng.standard_normal((e, 4)).astype(np.float32)
    deg = np.max(g.in_degree(), initial=0)
    bound = (deg + 2) * EPS32
    got = be.aggregate(g, m)
    assert got.dtype == np.float32
    want = ref.aggregate(g, m.astype(np.float64))
    assert np.all(np.abs(got - want) <= bound * ref.aggregate(g, np.abs(m.astype(np.float64))))
    got = be.weighted_aggregate(g, f, w)
    assert got.dtype == np.float32
    f64, w64 = f.astype(np.float64), w.astype(np.float64)
    want = ref.weighted_aggregate(g, f64, w64)
    scale = ref.weighted_aggregate(g, np.abs(f64), np.abs(w64))
    assert np.all(np.abs(got - want) <= bound * scale)
    got = be.edge_product(g, f, f)
    want = ref.edge_product(g, f64, f64)
    assert np.all(np.abs(got - want) <= EPS32 * np.abs(want))


@pytest.mark.parametrize("twin", ["serial", "parallel"])
def test_numba_large_graph_bit_identical_and_thread_independent(twin, monkeypatch):
    import numba

    from geomp_ref.backends import _nbjit

    if twin == "parallel":  # below the work threshold the serial twins run: force the others
        monkeypatch.setattr(_nbjit, "PARALLEL_MIN_WORK", 0)
    be = backends.get("numba")
    rng = np.random.default_rng(3)
    g = _big_graph(rng)
    state = rng.bit_generator.state
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, _ = _kernel_outputs(be, g, rng, np.float64, tail=(5,))
        numba.set_num_threads(threads)
        rng.bit_generator.state = state
        many, _ = _kernel_outputs(be, g, rng, np.float64, tail=(5,))
        rng.bit_generator.state = state
        again, _ = _kernel_outputs(be, g, rng, np.float64, tail=(5,))
    finally:
        numba.set_num_threads(threads)
    rng.bit_generator.state = state
    want, _ = _kernel_outputs(ref, g, rng, np.float64, tail=(5,))
    for name in want:
        _same(one[name], want[name])
        _same(many[name], want[name])
        _same(again[name], want[name])


@pytest.mark.parametrize("kind", ["hub", "random", "multi"])
def test_wide_rows_bit_identical(kind):
    # C >= 32 takes the numba kernels' four-edges-per-sweep path (CUDA has no such path, and the
    # simulator is slow on 1000 threads).
    backend = "numba"
    rng = np.random.default_rng(21 + KINDS.index(kind))
    g = _graph(kind, rng)
    state = rng.bit_generator.state
    got, _ = _kernel_outputs(backends.get(backend), g, rng, np.float64, tail=(5, 8))
    rng.bit_generator.state = state
    want, _ = _kernel_outputs(ref, g, rng, np.float64, tail=(5, 8))
    for name in want:
        _same(got[name], want[name])


@pytest.mark.parametrize("backend", FAST)
def test_vjps_in_ops_agree(backend):
    rng = np.random.default_rng(8)
    g = _graph("hub", rng)
    e, n, c = g.num_edges, g.num_nodes, 3
    f = _wide(rng, (n, c), np.float64)
    grad = _wide(rng, (n, c), np.float64)
    for w in (_wide(rng, (e,), np.float64), _wide(rng, (e, c), np.float64)):
        got = ops.weighted_aggregate_vjp(g, f, w, grad, backend=backend)
        want = ops.weighted_aggregate_vjp(g, f, w, grad, backend="numpy")
        for a, b in zip(got, want):
            _same(a, b)
        _same(ops.weighted_aggregate(g, f, w, backend=backend),
              ops.weighted_aggregate(g, f, w, backend="numpy"))
    m = _wide(rng, (e, c), np.float64)
    _same(ops.aggregate(g, m, backend=backend), ops.aggregate(g, m, backend="numpy"))
    _same(ops.aggregate_mean(g, m, backend=backend), ops.aggregate_mean(g, m, backend="numpy"))
    x = _wide(rng, (n, c), np.float64)
    _same(ops.gather_vjp(x, g.src, m, backend=backend)[0],
          ops.gather_vjp(x, g.src, m, backend="numpy")[0])
    _same(ops.scatter_max_vjp(m, g.dst, n, grad, backend=backend)[0],
          ops.scatter_max_vjp(m, g.dst, n, grad, backend="numpy")[0])


def test_scatter_sum_vjp_adjoint_identity():
    # Independent route: <S v, y> = <v, S^T y> with S^T y = y[index].
    be = backends.get("numba")
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 30, 400)
    v = rng.standard_normal((400, 3))
    y = rng.standard_normal((30, 3))
    lhs = np.sum(be.scatter_sum(v, idx, 30) * y)
    rhs = np.sum(v * y[idx])
    assert abs(lhs - rhs) <= 1e-12 * np.sum(np.abs(v * y[idx]))


# --- numba CPU: out= and errors ----------------------------------------------------------------


def test_numba_out_is_fully_overwritten():
    be = backends.get("numba")
    rng = np.random.default_rng(2)
    g = _graph("isolated", rng)
    m = _wide(rng, (g.num_edges, 4), np.float64)
    f = _wide(rng, (g.num_nodes, 4), np.float64)
    w = _wide(rng, (g.num_edges,), np.float64)
    out = np.full((g.num_nodes, 4), np.nan)
    assert be.aggregate(g, m, out=out) is out
    _same(out, ref.aggregate(g, m))
    out[:] = np.nan
    be.weighted_aggregate(g, f, w, out=out)
    _same(out, ref.weighted_aggregate(g, f, w))
    out[:] = np.nan
    be.scatter_mean(m, g.dst, g.num_nodes, out=out)
    _same(out, ref.scatter_mean(m, g.dst, g.num_nodes))
    pe = np.full((g.num_edges, 4), np.nan)
    be.edge_product(g, f, f, out=pe)
    _same(pe, ref.edge_product(g, f, f))
    mx = (np.full((g.num_nodes, 4), np.nan), np.full((g.num_nodes, 4), 99, np.int64))
    res = be.scatter_max(m, g.dst, g.num_nodes, out=mx)
    for a, b, o in zip(res, ref.scatter_max(m, g.dst, g.num_nodes), mx):
        assert a is o
        _same(a, b)


def _bad_outs(shape, dtype):
    ro = np.zeros(shape, dtype)
    ro.flags.writeable = False
    nc = np.zeros((shape[0], 2 * shape[1]), dtype)[:, ::2]
    return [
        (ro, ValueError, "read-only"),
        (nc, ValueError, "C-contiguous"),
        (np.zeros((shape[0] + 1, shape[1]), dtype), ValueError, "shape"),
        (np.zeros(shape, np.float32 if dtype == np.float64 else np.float64), TypeError, "dtype"),
        ([[0.0] * shape[1]] * shape[0], TypeError, "NumPy array"),
    ]


def test_numba_bad_out_is_rejected():
    be = backends.get("numba")
    g = _graph("sorted", np.random.default_rng(0))
    m = np.ones((g.num_edges, 3))
    for out, exc, words in _bad_outs((g.num_nodes, 3), np.float64):
        with pytest.raises(exc, match=words) as info:
            be.aggregate(g, m, out=out)
        assert "out" in str(info.value)
        with pytest.raises(exc, match=words):
            be.scatter_sum(m, g.dst, g.num_nodes, out=out)
    with pytest.raises(TypeError, match="out must be a pair"):
        be.scatter_max(m, g.dst, g.num_nodes, out=np.zeros((g.num_nodes, 3)))


def test_out_of_range_index_raises_before_any_write():
    be = backends.get("numba")
    v = np.ones((5, 2))
    out = np.full((3, 2), 7.0)
    for bad in ([0, 1, 3, 0, 1], [0, -1, 2, 0, 1]):
        with pytest.raises(ValueError, match="index holds") as info:
            be.scatter_sum(v, np.array(bad), 3, out=out)
        assert "num_segments=3" in str(info.value)
        np.testing.assert_array_equal(out, 7.0)


@pytest.mark.parametrize("backend", FAST)
def test_bad_inputs_name_the_argument(backend):
    be = backends.get(backend)
    g = _graph("sorted", np.random.default_rng(0))
    e, n = g.num_edges, g.num_nodes
    m = np.ones((e, 3))
    f = np.ones((n, 3))
    cases = [
        (lambda: be.scatter_sum(m, g.dst.astype(np.float64), n), TypeError, "index"),
        (lambda: be.scatter_sum(m, g.dst[:-1], n), ValueError, "index has length"),
        (lambda: be.scatter_sum(m, g.dst.reshape(1, -1), n), ValueError, "index must be 1-D"),
        (lambda: be.scatter_sum(m, np.r_[g.dst[:-1], n], n), ValueError, "out of range"),
        (lambda: be.scatter_sum(m, g.dst, -1), ValueError, "num_segments"),
        (lambda: be.scatter_sum(m, g.dst, 2.5), TypeError, "num_segments"),
        (lambda: be.scatter_mean(m.astype(np.int64), g.dst, n), TypeError, "values"),
        (lambda: be.scatter_max(np.float64(1.0), g.dst, n), ValueError, "values"),
        (lambda: be.aggregate(g, m[:-1]), ValueError, "m must have num_edges"),
        (lambda: be.aggregate(g.edge_index, m), TypeError, "graph"),
        (lambda: be.aggregate(g._replace(dst_ptr=g.dst_ptr[:-1]), m), ValueError, "CSR"),
        (lambda: be.weighted_aggregate(g, f[:-1], m[:, 0]), ValueError, "f must have shape"),
        (lambda: be.weighted_aggregate(g, f[:, 0], m[:, 0]), ValueError, "f must have shape"),
        (lambda: be.weighted_aggregate(g, f, m[:-1]), ValueError, "w must have shape"),
        (lambda: be.weighted_aggregate(g, f, m[:, :2]), ValueError, "w must have shape"),
        (lambda: be.weighted_aggregate(g, f, m.astype(np.float32)), TypeError, "w must have"),
        (lambda: be.edge_product(g, f[:, :2], f), ValueError, "g must have"),
        (lambda: be.edge_product(g, f.astype(np.float32), f), TypeError, "g must have"),
    ]
    for fn, exc, words in cases:
        with pytest.raises(exc, match=words):
            fn()
