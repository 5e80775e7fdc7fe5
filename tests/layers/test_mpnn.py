"""MLP, recurrent cells, Set2Set, NNConv, MPNN, DistanceMPNN, RelativePositionMPNN: independent
formulas, hand-picked hard cases and error messages (the VJP / symmetry / backend battery of the
registered cases lives in tests/test_cases.py)."""

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
from geomp_ref.testing import assert_equivariant, check_vjp, random_points, symmetry_errors

TOL = 1e-7
KINDS = ("node_scalar", "position")


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
    with pytest.raises(TypeError, match=r"MLP.sizes\[1\] must be an int"):
        MLP((3, 2.5))


def test_mlp_per_layer_bias(rng):
    m = MLP((3, 4, 1), "silu", bias=(True, False))
    p = m.init(rng)
    assert sorted(p) == ["W0", "W1", "b0"]
    x = rng.normal(size=(5, 3))
    z = x @ p["W0"] + p["b0"]
    np.testing.assert_allclose(m(p, x), (z / (1 + np.exp(-z))) @ p["W1"], rtol=1e-14)
    assert max(check_vjp(m, p, None, (x,), rng=rng).values()) < TOL
    with pytest.raises(ValueError, match="one bool per layer"):
        MLP((3, 4, 1), bias=(True,))


def test_gru_lstm(rng):
    x, h, c = rng.normal(size=(4, 3)), rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    gru = GRUCell(3, 5)
    p = gru.init(rng)
    # independent formula (Cho et al. structure with torch's placement of r)
    def sig(t):
        return 1 / (1 + np.exp(-t))

    Wx, Wh, bx, bh = p["W_x"], p["W_h"], p["b_x"], p["b_h"]
    r = sig(x @ Wx[:, :5] + bx[:5] + h @ Wh[:, :5] + bh[:5])
    z = sig(x @ Wx[:, 5:10] + bx[5:10] + h @ Wh[:, 5:10] + bh[5:10])
    n = np.tanh(x @ Wx[:, 10:] + bx[10:] + r * (h @ Wh[:, 10:] + bh[10:]))
    np.testing.assert_allclose(gru(p, x, h), (1 - z) * n + z * h, rtol=1e-14)
    lstm = LSTMCell(3, 5)
    q = lstm.init(rng)
    a = x @ q["W_x"] + q["b_x"] + h @ q["W_h"] + q["b_h"]
    c_new = sig(a[:, 5:10]) * c + sig(a[:, :5]) * np.tanh(a[:, 10:15])
    h_new, c_out = lstm(q, x, h, c)
    np.testing.assert_allclose(c_out, c_new, rtol=1e-14)
    np.testing.assert_allclose(h_new, sig(a[:, 15:]) * np.tanh(c_new), rtol=1e-14)
    with pytest.raises(ValueError, match="h must have one row per row of x"):
        gru(p, x, h[:3])
    with pytest.raises(TypeError, match="GRUCell.channels must be an int"):
        GRUCell(3, 2.5)


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
    en = p["edge_net"]
    theta = np.maximum(e @ en["W0"] + en["b0"], 0) @ en["W1"] + en["b1"]
    theta = theta.reshape(-1, 3, 4)
    want = h @ p["W_root"] + p["b"]
    for i in range(8):
        es = np.flatnonzero(g.dst == i)
        if len(es):
            want[i] += np.mean([h[g.src[k]] @ theta[k] for k in es], axis=0)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-14)


def test_nnconv_checks_fields_and_inputs(rng):
    g, _ = _cloud(rng)
    conv = NNConv(3, 4, 2, edge_hidden=6)
    p = conv.init(rng)
    h, e = rng.normal(size=(8, 3)), rng.normal(size=(g.num_edges, 2))
    with pytest.raises(ValueError, match="edge_attr must have shape"):
        conv(p, g, h, e[:, :1])
    with pytest.raises(ValueError, match="h must have shape"):
        conv(p, g, h[:, :2], e)
    with pytest.raises(ValueError, match=r"params\['edge_net'\]\['W0'\]"):
        conv({**p, "edge_net": {**p["edge_net"], "W0": p["edge_net"]["W0"][:1]}}, g, h, e)
    with pytest.raises(ValueError, match="NNConv.in_channels must be >= 1"):
        NNConv(0, 4, 2)
    with pytest.raises(TypeError, match="NNConv.edge_dim must be an int"):
        NNConv(3, 4, 2.5)
    with pytest.raises(ValueError, match="NNConv.aggr"):
        NNConv(3, 4, 2, aggr="max")


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
    with pytest.raises(TypeError, match="MPNN.forward needs edge_attr when edge_in > 0"):
        layer(p, g, f, pos)
    with pytest.raises(ValueError, match="MPNN.edge_in must be >= 1 when use_distance=False"):
        MPNN(3, 0, use_distance=False)
    dist_only = MPNN(3, 0, hidden=4, edge_hidden=4)
    q = dist_only.init(rng)
    with pytest.raises(ValueError, match="got edge_attr, which this configuration does not use"):
        dist_only(q, g, f, pos, np.zeros((g.num_edges, 0)))
    y, cache = dist_only.forward(q, g, f, pos)
    assert dist_only.backward(q, cache, np.ones_like(y))[1][2] is None


def test_mpnn_without_distance_ignores_pos(rng):
    g, pos = _cloud(rng, 6)
    layer = MPNN(3, 2, hidden=4, edge_hidden=4, steps=1, use_distance=False)
    p = layer.init(rng)
    f, e = rng.normal(size=(6, 3)), rng.normal(size=(g.num_edges, 2))
    y, cache = layer.forward(p, g, f, pos, e)
    np.testing.assert_array_equal(layer(p, g, f, pos + 1.0, e), y)
    assert np.all(layer.backward(p, cache, np.ones_like(y))[1][1] == 0.0)
    assert_equivariant(layer, p, g, (f, pos, e), ("node_scalar", "position", "edge_scalar"),
                       ("graph_scalar",), "E3", rng=rng)


@pytest.mark.parametrize("bad", [0, 2.5, True, "3"])
def test_pair_mpnn_refuses_bad_sizes(bad):
    with pytest.raises((TypeError, ValueError), match="DistanceMPNN.in_channels"):
        DistanceMPNN(in_channels=bad)
    with pytest.raises((TypeError, ValueError), match="RelativePositionMPNN.hidden"):
        RelativePositionMPNN(3, hidden=bad)


def test_distance_mpnn_huge_positions(rng):
    """|x_j - x_i|^2 overflows float64 beyond ~1.3e154: a named error, never a NaN."""
    g, pos = _cloud(rng, 6)
    layer = DistanceMPNN(3, hidden=6, out_channels=4)
    p = layer.init(rng)
    f = rng.normal(size=(6, 3))
    assert np.all(np.isfinite(layer(p, g, f, pos * 1e150)))
    with pytest.raises(ValueError, match="pos: a squared edge length"):
        layer(p, g, f, pos * 1e200)


@settings(max_examples=8)
@given(n=st.integers(0, 9), seed=st.integers(0, 2**16), reflect=st.booleans())
def test_distance_mpnn_invariance_hypothesis(n, seed, reflect):
    rng = np.random.default_rng(seed)
    pos = random_points(rng, n)
    g = radius_graph(pos, 2.0)
    layer = DistanceMPNN(3, hidden=6, out_channels=4)
    p = layer.init(rng)
    f = rng.normal(size=(n, 3))
    errs = symmetry_errors(layer, p, g, (f, pos), KINDS, ("node_scalar",), "E3", rng=rng)
    assert max(errs.values()) <= 1e-12
    out = layer(p, g, f, pos)
    assert out.shape == (n, 4)


def test_relative_position_mpnn_fails_rotation(rng):
    """The lecture's counter-example: translations pass, rotations clearly fail."""
    g, pos = _cloud(rng, 8)
    layer = RelativePositionMPNN(3, hidden=6, out_channels=4)
    p = layer.init(rng)
    f = rng.normal(size=(8, 3))
    errs = symmetry_errors(layer, p, g, (f, pos), KINDS, ("node_scalar",), "T3", rng=rng)
    assert max(errs.values()) <= 1e-12
    errs = symmetry_errors(layer, p, g, (f, pos), KINDS, ("node_scalar",), "SO3", rng=rng)
    assert errs["transform"] > 1e-3
    with pytest.raises(AssertionError, match="not E3-equivariant"):
        assert_equivariant(layer, p, g, (f, pos), KINDS, ("node_scalar",), "E3", rng=rng)


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
