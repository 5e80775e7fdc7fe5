"""CUDA kernels (``numba_cuda``) on tiny graphs: residency rules, dtypes, device graphs, errors.

CI runs this under ``NUMBA_ENABLE_CUDASIM=1`` (the simulator is slow: graphs stay tiny);
``benchmarks/gpu_check.sh`` runs it on a real GPU. Expected values come from the NumPy backend.
"""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref import backends, make_graph
from geomp_ref.backends import numpy_backend as ref

try:
    backends.get("cuda")
except RuntimeError:
    pytest.skip("CUDA backend unavailable (no GPU, NUMBA_ENABLE_CUDASIM unset)",
                allow_module_level=True)

from numba import cuda

cb = backends.get("cuda")


def _is_dev(x) -> bool:
    return hasattr(x, "copy_to_host") and not isinstance(x, np.ndarray)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    n, e = 6, 14
    ei = np.concatenate([rng.integers(0, 4, (2, e - 2)), [[2, 2], [3, 3]]], axis=1)  # 4, 5 isolated
    g = make_graph(ei, n)
    return g, rng


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_in_device_out(tiny, dtype):
    g, rng = tiny
    e, n = g.num_edges, g.num_nodes
    m = (rng.standard_normal((e, 2, 2)) * 10.0 ** rng.uniform(-5, 5, (e, 2, 2))).astype(dtype)
    f = rng.standard_normal((n, 3)).astype(dtype)
    w = rng.standard_normal((e, 3)).astype(dtype)
    dm, df, dw = cuda.to_device(m), cuda.to_device(f), cuda.to_device(w)
    out = cb.aggregate(g, dm)
    assert _is_dev(out) and tuple(out.shape) == (n, 2, 2) and out.dtype == dtype
    np.testing.assert_array_equal(out.copy_to_host(), ref.aggregate(g, m))
    out = cb.weighted_aggregate(g, df, dw)
    assert _is_dev(out) and out.dtype == dtype
    np.testing.assert_array_equal(out.copy_to_host(), ref.weighted_aggregate(g, f, w))
    out = cb.edge_product(g, df, df)
    assert _is_dev(out) and tuple(out.shape) == (e, 3)
    np.testing.assert_array_equal(out.copy_to_host(), ref.edge_product(g, f, f))
    s = cb.scatter_sum(dm, cuda.to_device(g.dst), n)  # device index too
    assert _is_dev(s)
    np.testing.assert_array_equal(s.copy_to_host(), ref.scatter_sum(m, g.dst, n))
    mx, arg = cb.scatter_max(dm, g.dst, n)
    assert _is_dev(mx) and _is_dev(arg) and arg.dtype == np.int64
    want = ref.scatter_max(m, g.dst, n)
    np.testing.assert_array_equal(mx.copy_to_host(), want[0])
    np.testing.assert_array_equal(arg.copy_to_host(), want[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_host_in_host_out(tiny, dtype):
    g, rng = tiny
    m = rng.standard_normal((g.num_edges, 3)).astype(dtype)
    out = cb.scatter_mean(m, g.dst, g.num_nodes)
    assert isinstance(out, np.ndarray) and out.dtype == dtype
    np.testing.assert_array_equal(out, ref.scatter_mean(m, g.dst, g.num_nodes))


def test_device_graph_matches_host_graph(tiny):
    g, rng = tiny
    dg = cb.to_device(g)
    assert _is_dev(dg.dst_perm) and dg.num_nodes == g.num_nodes
    f = rng.standard_normal((g.num_nodes, 2))
    w = rng.standard_normal(g.num_edges)
    np.testing.assert_array_equal(cb.weighted_aggregate(dg, f, w),
                                  ref.weighted_aggregate(g, f, w))
    m = rng.standard_normal((g.num_edges, 2))
    np.testing.assert_array_equal(cb.aggregate(dg, cuda.to_device(m)).copy_to_host(),
                                  ref.aggregate(g, m))


def test_empty_graphs_on_device():
    g0 = make_graph(np.zeros((2, 0), np.int64), 3)
    out = cb.aggregate(g0, cuda.to_device(np.zeros((0, 2))))
    assert _is_dev(out)
    np.testing.assert_array_equal(out.copy_to_host(), np.zeros((3, 2)))
    gn = make_graph(np.zeros((2, 0), np.int64), 0)
    assert cb.weighted_aggregate(gn, np.zeros((0, 2)), np.zeros(0)).shape == (0, 2)


def test_errors_before_launch(tiny):
    g, _ = tiny
    m = cuda.to_device(np.ones((g.num_edges, 2)))
    with pytest.raises(ValueError, match="index holds"):
        cb.scatter_sum(m, np.r_[g.dst[:-1], g.num_nodes], g.num_nodes)
    with pytest.raises(TypeError, match="index must be an integer"):
        cb.scatter_sum(m, cuda.to_device(g.dst.astype(np.float64)), g.num_nodes)
    with pytest.raises(TypeError, match="m must be a float32 or float64"):
        cb.aggregate(g, cuda.to_device(np.ones((g.num_edges, 2), np.int32)))
    with pytest.raises(ValueError, match="m must have num_edges"):
        cb.aggregate(g, cuda.to_device(np.ones((g.num_edges + 1, 2))))
    with pytest.raises(TypeError, match="w must have the dtype"):
        cb.weighted_aggregate(g, np.ones((g.num_nodes, 2)), np.ones(g.num_edges, np.float32))
