"""Graph construction, CSR caches, builders and edge vectors."""

import numpy as np
import pytest
from hypothesis import given
from scipy.spatial.distance import cdist

from geomp_ref import (
    complete_graph, concat_graphs, edge_vectors, edge_vectors_vjp, make_graph, radius_graph,
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
        (dict(edge_index=np.array([[0], [1]]), num_nodes=2, batch=[0, 1, 1]), "batch must have shape"),
        (dict(edge_index=np.array([[0], [1]]), num_nodes=2, batch=[0, 3], num_graphs=2), "num_graphs"),
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
