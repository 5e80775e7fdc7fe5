"""Graph construction, CSR caches, builders and edge vectors."""

import numpy as np
import pytest
from hypothesis import given
from scipy.spatial.distance import cdist

from geomp_ref import (
    complete_graph,
    concat_graphs,
    edge_vectors,
    edge_vectors_vjp,
    make_graph,
    radius_graph,
)
from geomp_ref.testing import graph_strategy


def test_direction_and_sign():
    g = make_graph(np.array([[0, 2], [1, 1]]), 3)
    np.testing.assert_array_equal(g.src, [0, 2])
    np.testing.assert_array_equal(g.dst, [1, 1])
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 3.0, 0]])
    ev = edge_vectors(g, pos)
    # x_j - x_i: from the receiver to the sender
    np.testing.assert_array_equal(ev, [[-1.0, 0, 0], [-1.0, 3.0, 0]])


@given(graph_strategy())
def test_csr_caches_are_stable_sorts(g):
    for ptr, perm, idx in ((g.dst_ptr, g.dst_perm, g.dst), (g.src_ptr, g.src_perm, g.src)):
        assert ptr.shape == (g.num_nodes + 1,) and ptr[-1] == g.num_edges
        for i in range(g.num_nodes):
            seg = perm[ptr[i]:ptr[i + 1]]
            np.testing.assert_array_equal(seg, np.flatnonzero(idx == i))  # increasing edge ids
    r = g.reverse()
    np.testing.assert_array_equal(r.src, g.dst)
    np.testing.assert_array_equal(r.dst_perm, g.src_perm)
    assert g.nodes_per_graph().sum() == g.num_nodes


def test_empty_graphs():
    g = make_graph(np.zeros((2, 0), np.int64), 0)
    assert g.num_nodes == 0 and g.num_edges == 0
    g = make_graph(np.zeros((2, 0), np.int64), 4)
    np.testing.assert_array_equal(g.in_degree(), [0, 0, 0, 0])
    assert edge_vectors(g, np.zeros((4, 3))).shape == (0, 3)
    assert edge_vectors_vjp(g, np.zeros((0, 3))).shape == (4, 3)
    # a trailing empty graph keeps its slot
    g = make_graph(np.zeros((2, 0), np.int64), 2, batch=[0, 0], num_graphs=3)
    np.testing.assert_array_equal(g.nodes_per_graph(), [2, 0, 0])


def test_radius_graph_matches_brute_force(rng):
    pos = rng.normal(size=(40, 3)) * 2
    batch = np.repeat([0, 1, 2], [15, 0, 25])
    g = radius_graph(pos, 1.7, batch, num_graphs=3)
    d = cdist(pos, pos)
    want = {(j, i) for i in range(40) for j in range(40)
            if i != j and d[i, j] <= 1.7 and batch[i] == batch[j]}
    got = set(map(tuple, g.edge_index.T.tolist()))
    assert got == want  # both directions, no neighbour cap, never across graphs
    assert g.num_graphs == 3
    gl = radius_graph(pos, 1.7, batch, self_loops=True)
    assert gl.num_edges == g.num_edges + 40
    # deterministic: sorted by receiver then sender
    key = g.dst * 100 + g.src
    assert np.all(np.diff(key) > 0)


def test_no_silent_cap(rng):
    pos = rng.normal(size=(80, 3)) * 0.01  # every pair within the cutoff
    g = radius_graph(pos, 1.0)
    assert g.num_edges == 80 * 79


def test_complete_and_concat():
    g = complete_graph(5, batch=[0, 0, 1, 1, 1])
    assert g.num_edges == 2 + 6
    h = concat_graphs([g, make_graph(np.zeros((2, 0), np.int64), 1), g])
    assert h.num_nodes == 11 and h.num_graphs == 5 and h.num_edges == 16
    np.testing.assert_array_equal(h.batch, [0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 4])
    assert h.edge_index[:, 8:].min() == 6


def test_edge_vectors_vjp_adjoint(rng):
    g = make_graph(np.array([[0, 1, 1, 3, 3], [1, 0, 2, 2, 2]]), 5)  # multi-edge, isolated node 4
    x = rng.normal(size=(5, 3))
    y = rng.normal(size=(5, 3))
    lhs = np.sum(edge_vectors(g, x) * y[:5][: g.num_edges])
    rhs = np.sum(x * edge_vectors_vjp(g, y[: g.num_edges]))
    assert abs(lhs - rhs) <= 1e-13 * (abs(lhs) + 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(edge_index=np.array([[0, 1, 2]]), num_nodes=3), "edge_index must have shape"),
        (dict(edge_index=np.array([[0.0], [1.0]]), num_nodes=3), "integer"),
        (dict(edge_index=np.array([[0], [5]]), num_nodes=3), "out of range"),
        (dict(edge_index=np.array([[-1], [0]]), num_nodes=3), "negative"),
        (dict(edge_index=np.array([[0], [1]]), num_nodes=-1), "num_nodes"),
        (dict(edge_index=np.array([[0], [1]]), num_nodes=2, batch=[1, 0]), "non-decreasing"),
        (dict(edge_index=np.array([[0], [1]]), num_nodes=2, batch=[0, 1]), "different graphs"),
        (dict(edge_index=np.array([[0], [1]]), num_nodes=2, batch=[0, 1, 1]),
         "batch must have shape"),
        (dict(edge_index=np.array([[0], [1]]), num_nodes=2, batch=[0, 3], num_graphs=2),
         "num_graphs"),
    ],
)
def test_make_graph_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make_graph(**kwargs)


def test_radius_graph_errors():
    with pytest.raises(ValueError, match="cutoff"):
        radius_graph(np.zeros((3, 3)), -1.0)
    with pytest.raises(ValueError, match="cutoff"):
        radius_graph(np.zeros((3, 3)), 0.0)
    with pytest.raises(ValueError, match="pos contains NaN"):
        radius_graph(np.array([[0.0, np.nan, 0.0]]), 1.0)
    with pytest.raises(ValueError, match="pos must have 2"):
        radius_graph(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        radius_graph(np.zeros((3, 3)), 1.0, batch=[1, 0, 0])
    with pytest.raises(ValueError, match="pos must have shape"):
        edge_vectors(make_graph(np.zeros((2, 0), np.int64), 4), np.zeros((3, 3)))


# --- immutability and trust ------------------------------------------------------------------

ARRAYS = ("edge_index", "batch", "dst_ptr", "dst_perm", "src_ptr", "src_perm")


def _builders():
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [5.0, 5, 5]])
    g = make_graph(np.array([[0, 1, 2], [1, 2, 0]]), 4, batch=[0, 0, 0, 1])
    return {
        "make_graph": g,
        "reverse": g.reverse(),
        "radius_graph": radius_graph(pos, 1.5),
        "complete_graph": complete_graph(3, batch=[0, 0, 1]),
        "concat_graphs": concat_graphs([g, g]),
    }


@pytest.mark.parametrize("name", list(_builders()))
def test_graph_arrays_cannot_be_written(name):
    g = _builders()[name]
    assert g.sealed
    for field in ARRAYS:
        arr = getattr(g, field)
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0
        with pytest.raises(ValueError):
            arr.flags.writeable = True  # backed by bytes: cannot be made writeable again
    with pytest.raises(ValueError, match="read-only"):
        g.src[0] = 3
    with pytest.raises(AttributeError):
        g.num_nodes = 7  # a NamedTuple: fields cannot be rebound


def test_make_graph_copies_the_callers_arrays():
    ei = np.array([[0, 1], [1, 0]])
    batch = np.array([0, 0, 1])
    g = make_graph(ei, 3, batch)
    ei[0, 0] = 2
    batch[2] = 0
    np.testing.assert_array_equal(g.edge_index, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(g.batch, [0, 0, 1])
    assert not np.shares_memory(g.batch, batch)


def test_replaced_or_hand_built_graphs_are_rechecked():
    from geomp_ref._validate import check_graph
    from geomp_ref.graph import Graph

    g = make_graph(np.array([[0, 1, 2], [1, 2, 0]]), 3)
    bad_ei = np.array([[0, 1, 10**7], [1, 2, 0]])
    for h in (g._replace(edge_index=bad_ei), Graph(bad_ei, *g[1:8])):
        assert not h.sealed
        with pytest.raises(ValueError, match=r"graph\.edge_index\[0\] \(senders\) holds index 1"):
            check_graph(h)
    neg = np.array([[0, 1, 2], [1, -1, 0]])
    with pytest.raises(ValueError, match=r"graph\.edge_index\[1\].*negative"):
        check_graph(g._replace(edge_index=neg))
    # a consistent hand-built graph is accepted and comes back sealed
    same = Graph(np.array(g.edge_index), *g[1:8])
    assert not same.sealed and check_graph(same).sealed
    # caches that do not match edge_index are refused, naming the field
    with pytest.raises(ValueError, match=r"graph\.dst_perm .*CSR"):
        check_graph(g._replace(dst_perm=np.array(g.dst_perm)[::-1]))
    with pytest.raises(ValueError, match=r"out of range for num_nodes=2"):
        check_graph(g._replace(num_nodes=2))
    with pytest.raises(ValueError, match=r"graph\.num_nodes must be >= 0"):
        check_graph(g._replace(num_nodes=-1))
    with pytest.raises(TypeError, match=r"graph\.edge_index\[0\].*integer"):
        check_graph(g._replace(edge_index=np.array(g.edge_index, dtype=float)))


def test_copies_and_pickles_stay_sealed():
    import copy
    import pickle

    g = make_graph(np.array([[0, 1, 2], [1, 2, 0]]), 4, batch=[0, 0, 0, 1])
    for h in (copy.copy(g), copy.deepcopy(g), pickle.loads(pickle.dumps(g)), g.reverse().reverse()):
        assert h.sealed
        for field in ARRAYS:
            np.testing.assert_array_equal(getattr(h, field), getattr(g, field))
    assert g.reverse().sealed


def test_sizes_that_cannot_fit_are_refused_before_allocating():
    with pytest.raises(ValueError, match="num_nodes asks for"):
        make_graph(np.zeros((2, 0), np.int64), 2**62)
    with pytest.raises(ValueError, match="num_nodes"):
        complete_graph(2**62)
    with pytest.raises(ValueError, match="num_nodes"):
        complete_graph(2**20)  # N^2 = 2^40 edges
    with pytest.raises(ValueError, match="num_graphs"):
        make_graph(np.zeros((2, 0), np.int64), 2, num_graphs=2**62)


def test_complete_graph_matches_brute_force():
    batch = np.array([0, 0, 0, 2, 2, 3])
    for loops in (False, True):
        g = complete_graph(6, batch=batch, self_loops=loops, num_graphs=5)
        want = [(j, i) for i in range(6) for j in range(6)
                if batch[i] == batch[j] and (loops or i != j)]  # receiver-major, senders rising
        assert list(map(tuple, g.edge_index.T.tolist())) == want
        assert g.num_graphs == 5
