"""No path hands a kernel an out-of-range index: every backend raises a named ValueError.

Paths: a hand-built ``Graph(...)`` or ``g._replace(...)`` (out-of-range, off-by-one, negative
indices; CSR caches that do not match ``edge_index``), raw index arrays given to a backend module
directly, ``ops`` functions with index arrays, and (CUDA) a device-resident graph whose memory was
overwritten after :func:`to_device`. Sealed graphs cannot be changed at all (tests/test_graph.py).
The CUDA kernels run in Numba's simulator in CI (``NUMBA_ENABLE_CUDASIM=1``).
"""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref import backends, make_graph, ops
from geomp_ref.graph import Graph


def _loads(name: str) -> bool:
    try:
        backends.get(name)
    except RuntimeError:
        return False
    return True


ALL = [b for b in ("numpy", "numba", "cuda") if _loads(b)]
N = 5


def _graph():
    return make_graph(np.array([[0, 1, 2, 3, 3], [1, 2, 0, 0, 4]]), N)


def _corrupt(g, row: int, value: int):
    ei = np.array(g.edge_index)
    ei[row, -1] = value
    return ei


def _hostile_graphs():
    g = _graph()
    out = {}
    for value, tag in ((10**7, "huge"), (N, "off-by-one"), (-1, "negative")):
        for row, side in ((0, "senders"), (1, "receivers")):
            out[f"{tag}-{side}-replace"] = (g._replace(edge_index=_corrupt(g, row, value)),
                                            rf"graph\.edge_index\[{row}\] \({side}\)")
            out[f"{tag}-{side}-handbuilt"] = (Graph(_corrupt(g, row, value), *g[1:8]),
                                              rf"graph\.edge_index\[{row}\] \({side}\)")
    perm = np.array(g.dst_perm)
    perm[0] = 10**6
    out["perm"] = (g._replace(dst_perm=perm), r"graph\.dst_perm")
    ptr = np.array(g.dst_ptr)
    ptr[-1] = 10**6
    out["ptr"] = (g._replace(dst_ptr=ptr), r"graph\.dst_ptr")
    out["short-ptr"] = (g._replace(dst_ptr=np.array(g.dst_ptr)[:-1]), r"graph\.dst_ptr")
    return out


HOSTILE = _hostile_graphs()


def _calls(mod, g):
    f = np.ones((N, 2))
    e = g.edge_index.shape[1]
    return {
        "aggregate": lambda: mod.aggregate(g, np.ones((e, 2))),
        "weighted_aggregate": lambda: mod.weighted_aggregate(g, f, np.ones(e)),
        "weighted_channel": lambda: mod.weighted_aggregate(g, f, np.ones((e, 2))),
        "edge_product": lambda: mod.edge_product(g, f, f),
    }


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("which", list(HOSTILE))
def test_backend_modules_refuse_hostile_graphs(backend, which):
    g, words = HOSTILE[which]
    for call in _calls(backends.get(backend), g).values():
        with pytest.raises(ValueError, match=words):
            call()


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("which", ["huge-senders-replace", "off-by-one-receivers-handbuilt",
                                   "negative-senders-replace", "perm"])
def test_ops_refuse_hostile_graphs(backend, which):
    g, words = HOSTILE[which]
    e = g.edge_index.shape[1]
    f = np.ones((N, 2))
    calls = [
        lambda: ops.aggregate(g, np.ones((e, 2)), backend=backend),
        lambda: ops.aggregate_vjp(g, None, f),
        lambda: ops.aggregate_mean(g, np.ones((e, 2)), backend=backend),
        lambda: ops.weighted_aggregate(g, f, np.ones(e), backend=backend),
        lambda: ops.weighted_aggregate_vjp(g, f, np.ones(e), f, backend=backend),
        lambda: ops.edge_product(g, f, f, backend=backend),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=words):
            call()


@pytest.mark.parametrize("backend", ALL)
def test_index_arrays_are_range_checked(backend):
    be = backends.get(backend)
    v = np.ones((4, 2))
    for bad in ([0, 1, 2, 3], [0, -1, 2, 1], [0, 10**7, 1, 1]):
        for fn in (be.scatter_sum, be.scatter_mean, be.scatter_max):
            with pytest.raises(ValueError, match=r"index holds .*num_segments=3"):
                fn(v, np.array(bad), 3)
        with pytest.raises(ValueError, match=r"index holds"):
            ops.scatter_sum(v, np.array(bad), 3, backend=backend)
        with pytest.raises(ValueError, match=r"index holds"):
            ops.gather(np.ones((3, 2)), np.array(bad))
    with pytest.raises(ValueError, match="num_segments"):
        be.scatter_sum(v, np.zeros(4, np.int64), 2**62)


def test_numpy_backend_refuses_ints_and_wrapping():
    be = backends.get("numpy")
    g = _graph()
    with pytest.raises(TypeError, match="values must be a float32 or float64"):
        be.scatter_sum(np.ones((3, 1), np.int64), np.array([0, 1, 1]), 2)
    with pytest.raises(TypeError, match="m must be a float32 or float64"):
        be.aggregate(g, np.ones((g.num_edges, 1), np.int64))
    with pytest.raises(ValueError, match="negative|holds -1"):
        be.scatter_sum(np.ones((3, 1)), np.array([0, -1, 1]), 2)


@pytest.mark.skipif("cuda" not in ALL, reason="CUDA backend unavailable")
def test_overwritten_device_graph_raises():
    from numba import cuda

    cb = backends.get("cuda")
    g = _graph()
    m = np.ones((g.num_edges, 2))
    f = np.ones((N, 2))
    for field, value in (("edge_index", 10**7), ("edge_index", -1), ("dst_perm", 10**6),
                         ("dst_ptr", 10**6)):
        dg = cb.to_device(g)
        host = getattr(dg, field).copy_to_host()
        host[(0, -1) if field == "edge_index" else -1] = value  # a sender, a CSR entry
        dg = dg._replace(**{field: cuda.to_device(host)})
        calls = [lambda dg=dg: cb.aggregate(dg, m),
                 lambda dg=dg: cb.weighted_aggregate(dg, f, m[:, 0]),
                 lambda dg=dg: cb.edge_product(dg, f, f)]
        # aggregate reads only the CSR, edge_product only edge_index
        calls = calls[1:] if field == "edge_index" else calls[:2]
        for call in calls:
            with pytest.raises(ValueError, match="out of range"):
                call()
