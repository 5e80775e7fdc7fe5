"""MLP, recurrent cells, Set2Set, NNConv, MPNN, DistanceMPNN, RelativePositionMPNN."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomp_ref import make_graph, radius_graph
from geomp_ref.layers.mlp import MLP
from geomp_ref.layers.mpnn import MPNN, DistanceMPNN, RelativePositionMPNN
from geomp_ref.layers.nnconv import NNConv
from geomp_ref.layers.recurrent import GRUCell, LSTMCell
from geomp_ref.layers.set2set import Set2Set
from geomp_ref.testing import (
    assert_backends_agree, assert_equivariant, check_vjp, random_points, symmetry_errors,
)

TOL = 1e-7


def _cloud(rng, n=8, batch=None):
    pos = random_points(rng, n)
    return radius_graph(pos, 2.2, batch), pos


def test_mlp(rng):
    m = MLP((3, 5, 2), "tanh")
    p = m.init(rng)
    x = rng.normal(size=(4, 3))
    y = m(p, x)
    want = np.tanh(x @ p["W0"] + p["b0"]) @ p["W1"] + p["b1"]
    np.testing.assert_allclose(y, want, rtol=1e-15)
    assert max(check_vjp(m, p, None, (x,), rng=rng).values()) < TOL
    with pytest.raises(ValueError, match="x must have shape"):
        m(p, np.ones((4, 2)))
    with pytest.raises(ValueError, match="lacks key.*'W1'"):
        m({"W0": p["W0"], "b0": p["b0"]}, x)
    with pytest.raises(ValueError, match="sizes"):
        MLP((3,))


def test_gru_lstm(rng):
    x, h, c = rng.normal(size=(4, 3)), rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    gru = GRUCell(3, 5)
    p = gru.init(rng)
    assert max(check_vjp(gru, p, None, (x, h), rng=rng).values()) < TOL
    # independent formula (Cho et al. structure with torch's placement of r)
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    Wx, Wh, bx, bh = p["W_x"], p["W_h"], p["b_x"], p["b_h"]
    r = sig(x @ Wx[:, :5] + bx[:5] + h @ Wh[:, :5] + bh[:5])
    z = sig(x @ Wx[:, 5:10] + bx[5:10] + h @ Wh[:, 5:10] + bh[5:10])
    n = np.tanh(x @ Wx[:, 10:] + bx[10:] + r * (h @ Wh[:, 10:] + bh[10:]))
    np.testing.assert_allclose(gru(p, x, h), (1 - z) * n + z * h, rtol=1e-14)
    lstm = LSTMCell(3, 5)
    q = lstm.init(rng)
    assert max(check_vjp(lstm, q, None, (x, h, c), rng=rng).values()) < TOL


def test_set2set(rng):
    g = make_graph(np.zeros((2, 0), np.int64), 7, batch=[0, 0, 0, 2, 2, 2, 2], num_graphs=4)
    s2s = Set2Set(3, steps=3, eps=1e-16)
    p = s2s.init(rng)
    x = rng.normal(size=(7, 3))
    out, _ = s2s.forward(p, g, x)
    assert out.shape == (4, 6)
    np.testing.assert_array_equal(out[1, 3:], 0.0)  # empty graph: no readout
    assert max(check_vjp(s2s, p, g, (x,), rng=rng).values()) < TOL
    # permutation invariance inside a graph
    perm = np.array([2, 0, 1, 6, 3, 5, 4])
    np.testing.assert_allclose(s2s(p, g, x[perm]), out, rtol=1e-13, atol=1e-15)


def test_nnconv(rng):
    g, _ = _cloud(rng)
    conv = NNConv(3, 4, 2, edge_hidden=6, aggr="mean")
    p = conv.init(rng)
    h, e = rng.normal(size=(8, 3)), rng.normal(size=(g.num_edges, 2))
    out = conv(p, g, h, e)
    theta = np.maximum(e @ p["edge_net"]["W0"] + p["edge_net"]["b0"], 0) @ p["edge_net"]["W1"] + p["edge_net"]["b1"]
    theta = theta.reshape(-1, 3, 4)
    want = h @ p["W_root"] + p["b"]
    for i in range(8):
        es = np.flatnonzero(g.dst == i)
        if len(es):
            want[i] += np.mean([h[g.src[k]] @ theta[k] for k in es], axis=0)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-14)
    assert max(check_vjp(conv, p, g, (h, e), rng=rng).values()) < TOL


@pytest.mark.parametrize("mode", ["paper", "pyg"])
def test_mpnn_vjp_and_invariance(rng, mode):
    g, pos = _cloud(rng, 9, batch=np.repeat([0, 1], [5, 4]))
    layer = MPNN(3, 2, hidden=5, edge_hidden=6, steps=2, set2set_steps=2, mode=mode)
    p = layer.init(rng)
    inputs = (rng.normal(size=(9, 3)), pos, rng.normal(size=(g.num_edges, 2)))
    y = layer(p, g, *inputs)
    assert y.shape == (2, 1)
    assert max(check_vjp(layer, p, g, inputs, rng=rng).values()) < TOL
    assert_equivariant(layer, p, g, inputs, ("node_scalar", "position", "edge_scalar"),
                       ("graph_scalar",), "E3", rng=rng)


def test_mpnn_errors(rng):
    g, pos = _cloud(rng, 5)
    layer = MPNN(3, 2, hidden=4, edge_hidden=4)
    p = layer.init(rng)
    f, e = rng.normal(size=(5, 3)), rng.normal(size=(g.num_edges, 2))
    with pytest.raises(ValueError, match="edge_attr must have shape"):
        layer(p, g, f, pos, e[:, :1])
    with pytest.raises(ValueError, match="f must have shape"):
        layer(p, g, f[:, :2], pos, e)
    with pytest.raises(ValueError, match="pos contains NaN"):
        layer(p, g, f, np.full_like(pos, np.nan), e)
    bad = pos.copy()
    bad[g.src[0]] = bad[g.dst[0]]
    with pytest.raises(ValueError, match="coincident"):
        layer(p, g, f, bad, e)
    with pytest.raises(ValueError, match="mode"):
        MPNN(3, 2, mode="dgl")
    with pytest.raises(ValueError, match="backend"):
        MPNN(3, 2, backend="tpu")


@settings(max_examples=8)
@given(n=st.integers(0, 9), seed=st.integers(0, 2**16), reflect=st.booleans())
def test_distance_mpnn_invariance_hypothesis(n, seed, reflect):
    rng = np.random.default_rng(seed)
    pos = random_points(rng, n)
    g = radius_graph(pos, 2.0)
    layer = DistanceMPNN(3, hidden=6, out_channels=4)
    p = layer.init(rng)
    f = rng.normal(size=(n, 3))
    errs = symmetry_errors(layer, p, g, (f, pos), ("node_scalar", "position"), ("node_scalar",), "E3",
                           rng=rng)
    assert max(errs.values()) <= 1e-12
    out = layer(p, g, f, pos)
    assert out.shape == (n, 4)


def test_pair_mpnns_vjp(rng):
    g, pos = _cloud(rng, 8)
    f = rng.normal(size=(8, 3))
    for cls in (DistanceMPNN, RelativePositionMPNN):
        layer = cls(3, hidden=6, out_channels=4)
        p = layer.init(rng)
        assert max(check_vjp(layer, p, g, (f, pos), rng=rng).values()) < TOL


def test_relative_position_mpnn_fails_rotation(rng):
    """The lecture's counter-example: translations pass, rotations clearly fail."""
    g, pos = _cloud(rng, 8)
    layer = RelativePositionMPNN(3, hidden=6, out_channels=4)
    p = layer.init(rng)
    f = rng.normal(size=(8, 3))
    errs = symmetry_errors(layer, p, g, (f, pos), ("node_scalar", "position"), ("node_scalar",), "T3", rng=rng)
    assert max(errs.values()) <= 1e-12
    errs = symmetry_errors(layer, p, g, (f, pos), ("node_scalar", "position"), ("node_scalar",), "SO3", rng=rng)
    assert errs["transform"] > 1e-3
    with pytest.raises(AssertionError, match="not E3-equivariant"):
        assert_equivariant(layer, p, g, (f, pos), ("node_scalar", "position"), ("node_scalar",), "E3", rng=rng)


def test_isolated_and_empty(rng):
    layer = DistanceMPNN(3, hidden=6, out_channels=4)
    p = layer.init(rng)
    g = make_graph(np.zeros((2, 0), np.int64), 3)
    f = rng.normal(size=(3, 3))
    out = layer(p, g, f, rng.normal(size=(3, 3)))
    # no neighbours: the update sees a zero aggregate
    want = layer.phi_f(p["phi_f"], np.concatenate([f, np.zeros((3, 6))], axis=1))
    np.testing.assert_allclose(out, want, rtol=1e-15)
    g0 = make_graph(np.zeros((2, 0), np.int64), 0)
    assert layer(p, g0, np.zeros((0, 3)), np.zeros((0, 3))).shape == (0, 4)


def test_backends_agree(rng, backend):
    g, pos = _cloud(rng, 9)
    for layer in (DistanceMPNN(3, hidden=6, out_channels=4), MPNN(3, 1, hidden=4, edge_hidden=4, steps=1)):
        p = layer.init(rng)
        inputs = (rng.normal(size=(9, 3)), pos) + ((rng.normal(size=(g.num_edges, 1)),) if isinstance(layer, MPNN) else ())
        assert_backends_agree(layer, p, g, inputs, backends=[backend])
        assert dataclasses.replace(layer, backend=backend).backend == backend
