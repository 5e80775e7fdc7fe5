"""EGNN: the paper's complete-graph formula, hypothesis graphs, real molecules, coincident atoms,
the clamp subgradient, huge positions, option semantics and errors. The VJP / symmetry / backend
battery of the registered cases lives in tests/test_cases.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomp_ref import cases, molecules, testing
from geomp_ref.graph import complete_graph, make_graph
from geomp_ref.layers.egnn import EGNN, EGNNLayer


def _case(name):
    return next(c for c in cases.cases("egnn_schnet") if c.name == name)


@settings(max_examples=5)
@given(graph=testing.graph_strategy(max_nodes=6, max_edges=14), seed=st.integers(0, 2**31 - 1))
def test_layer_equivariance_on_arbitrary_graphs(graph, seed):
    rng = np.random.default_rng(seed)
    layer = EGNNLayer(
        3,
        5,
        edge_features=1,
        flavour="egnn_clean",
        attention=True,
        normalize=True,
        velocity=True,
        coord_init_gain=1.0,
    )
    n = graph.num_nodes
    inputs = (
        rng.normal(size=(n, 3)),
        testing.random_points(rng, n, min_dist=0.6),
        rng.normal(size=(n, 3)),
        rng.normal(size=(graph.num_edges, 1)),
        None,
    )
    testing.assert_equivariant(
        layer,
        layer.init(rng),
        graph,
        inputs,
        ("node_scalar", "position", "vector", "edge_scalar", "node_scalar"),
        ("node_scalar", "position"),
        "E3",
        rng=rng,
    )


@pytest.mark.parametrize("name", ["EGNNLayer/gcl-vel-att-norm-tanh", "EGNN/gcl-vel",
                                  "EGNNLayer/qm9-mask"])
def test_vjp_on_g2_molecules(name, rng):
    case = _case(name)
    params = case.layer.init(rng)
    for mol in molecules.load()[::3]:
        graph, inputs = case.extra["from_molecule"](rng, mol)
        errs = testing.check_vjp(case.layer, params, graph, inputs, rng=rng, eps=case.fd_eps)
        assert max(errs.values()) <= 1e-7, (mol.name, errs)


def _mlp(p, x, act_last):
    n = len([k for k in p if k.startswith("W")])
    for k in range(n):
        x = x @ p[f"W{k}"] + p[f"b{k}"]
        if k < n - 1 or act_last:
            x = x / (1.0 + np.exp(-x))
    return x


def test_complete_graph_mean_is_papers_equation(rng):
    """Eq. (4) with C = 1/(M-1) written with explicit double loops over i != j."""
    layer = EGNNLayer(3, 4, flavour="egnn_clean", coord_init_gain=1.0)
    p = layer.init(rng)
    M = 5
    h, x = rng.normal(size=(M, 3)), testing.random_points(rng, M)
    (h_new, x_new), _ = layer.forward(p, complete_graph(M), h, x)
    want_x, want_h = x.copy(), h.copy()
    for i in range(M):
        msum = np.zeros(4)
        for j in range(M):
            if j == i:
                continue
            m = _mlp(p["phi_e"], np.concatenate([h[i], h[j], [np.sum((x[i] - x[j]) ** 2)]]), True)
            s = (
                _mlp({"W0": p["phi_x"]["W0"], "b0": p["phi_x"]["b0"]}, m, True) @ p["phi_x"]["W1"]
            )[0]
            want_x[i] += (x[i] - x[j]) * s / (M - 1)
            msum += m
        want_h[i] += _mlp(p["phi_h"], np.concatenate([h[i], msum]), False)
    np.testing.assert_allclose(x_new, want_x, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h_new, want_h, rtol=1e-13, atol=1e-13)


def _coincident_problem(rng):
    pos = testing.random_points(rng, 4)
    pos[1] = pos[0]
    graph = make_graph(np.array([[0, 1, 2, 3, 1], [1, 0, 0, 1, 2]]), 4)
    return graph, (rng.normal(size=(4, 3)), pos)


def test_coincident_atoms_gcl_normalisation(rng):
    """gcl's u = D/(|D| + 1) is differentiable at D = 0: the VJP matches central differences.

    Its second derivative jumps at D = 0 (u ~ D - D|D|), so the stencil's error there is O(eps),
    not O(eps^4): a small step keeps it below the tolerance."""
    layer = EGNNLayer(3, 4, flavour="gcl", activation="silu", normalize=True, coord_init_gain=1.0)
    graph, inputs = _coincident_problem(rng)
    errs = testing.check_vjp(layer, layer.init(rng), graph, inputs, rng=rng, eps=1e-7)
    assert max(errs.values()) <= 1e-7, errs


def test_coincident_atoms_egnn_clean_normalisation(rng):
    """With eps = 1e-8 differences are useless near D = 0 (the scale of u is 1e-8); instead the
    derivative there, I/eps, must be the limit of the derivative at a tiny separation."""
    layer = EGNNLayer(3, 4, flavour="egnn_clean", normalize=True, coord_init_gain=1.0)
    p = layer.init(rng)
    graph, (h, pos) = _coincident_problem(rng)
    cot = (rng.normal(size=(4, 3)), rng.normal(size=(4, 3)))
    out0, c0 = layer.forward(p, graph, h, pos)
    g0 = layer.backward(p, c0, cot)[1][1]
    assert np.all(np.isfinite(out0[1])) and np.all(np.isfinite(g0))
    near = pos.copy()
    near[1] += 1e-15 * np.array([0.6, -0.8, 0.0])
    g1 = layer.backward(p, layer.forward(p, graph, h, near)[1], cot)[1][1]
    assert np.max(np.abs(g1 - g0)) <= 1e-5 * np.max(np.abs(g0))


def test_clamp_subgradient(rng):
    """With every t_ij clamped, x' = x + C mean(+-c): no gradient reaches phi_x, only x itself."""
    layer = EGNNLayer(3, 4, activation="silu", clamp=1e-9, coord_init_gain=1.0)
    p = layer.init(rng)
    graph = testing.random_graph(rng, 6, isolated=False)
    inputs = (rng.normal(size=(6, 3)), testing.random_points(rng, 6))
    (_h_new, x_new), cache = layer.forward(p, graph, *inputs)
    assert np.all(np.abs(cache.coord.t) > 1e-9)
    grads, (g_h, _g_x, *_) = layer.backward(p, cache, (None, rng.normal(size=x_new.shape)))
    for leaf in grads["phi_x"].values():
        assert np.all(leaf == 0.0)
    assert np.all(g_h == 0.0)


def test_gcl_defaults_follow_the_code():
    gcl, clean = EGNNLayer(2, 3), EGNNLayer(2, 3, flavour="egnn_clean")
    assert (gcl.activation, gcl.clamp, gcl.norm_eps, gcl.coords_agg) == ("relu", 100.0, 1.0, "mean")
    assert (clean.activation, clean.clamp, clean.norm_eps, clean.coords_agg) == (
        "silu",
        None,
        1e-8,
        "mean",
    )
    assert EGNNLayer(2, 3, clamp=None).clamp is None


def test_invariant_mode_keeps_positions(rng):
    layer = EGNNLayer(3, 4, update_coords=False)
    graph = testing.random_graph(rng, 5)
    x = testing.random_points(rng, 5)
    (_, x_new), _ = layer.forward(layer.init(rng), graph, rng.normal(size=(5, 3)), x)
    np.testing.assert_array_equal(x_new, x)
    assert "phi_x" not in layer.param_shapes()


def test_node_attr_enters_the_node_update(rng):
    """E_GCL_mask's node MLP reads [h, sum_j m_ij, node_attr]: written out by hand."""
    layer = EGNNLayer(3, 4, flavour="egnn_clean", update_coords=False, node_attr_features=2)
    p = layer.init(rng)
    graph = testing.random_graph(rng, 5)
    h, x, na = rng.normal(size=(5, 3)), testing.random_points(rng, 5), rng.normal(size=(5, 2))
    (h_new, _), _ = layer.forward(p, graph, h, x, node_attr=na)
    msum = np.zeros((5, 4))
    for j, i in graph.edge_index.T:
        r = np.sum((x[i] - x[j]) ** 2)
        msum[i] += _mlp(p["phi_e"], np.concatenate([h[i], h[j], [r]]), True)
    want = h + _mlp(p["phi_h"], np.concatenate([h, msum, na], axis=1), False)
    np.testing.assert_allclose(h_new, want, rtol=1e-13, atol=1e-13)


def test_detach_norm_changes_only_the_gradient(rng):
    """Same values; the position gradient loses exactly the norm's term -D D^T g / (n (n+eps)^2)."""
    kw = {"flavour": "egnn_clean", "normalize": True, "coord_init_gain": 1.0}
    true, det = EGNNLayer(3, 4, **kw), EGNNLayer(3, 4, detach_norm=True, **kw)
    p = true.init(rng)
    graph = testing.random_graph(rng, 6, isolated=False)
    h, x = rng.normal(size=(6, 3)), testing.random_points(rng, 6)
    (a, ca), (b, cb) = true.forward(p, graph, h, x), det.forward(p, graph, h, x)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    cot = (None, rng.normal(size=x.shape))
    ga, gb = true.backward(p, ca, cot), det.backward(p, cb, cot)
    np.testing.assert_array_equal(ga[1][0], gb[1][0])  # h only sees |D|^2, never the unit vector
    assert np.max(np.abs(ga[1][1] - gb[1][1])) > 1e-6 * np.max(np.abs(ga[1][1]))


def test_huge_positions_are_a_named_error(rng):
    """|x_i - x_j|^2 overflows float64 above ~1.3e154: refused by name instead of NaN messages."""
    layer = EGNNLayer(3, 4, flavour="egnn_clean", coord_init_gain=1.0)
    p = layer.init(rng)
    graph = testing.random_graph(rng, 5, isolated=False)
    h, x = rng.normal(size=(5, 3)), testing.random_points(rng, 5)
    (_, x_new), cache = layer.forward(p, graph, h, x * 1e50)
    assert np.all(np.isfinite(x_new))
    assert np.all(np.isfinite(layer.backward(p, cache, (None, np.ones_like(x)))[1][1]))
    with pytest.raises(ValueError, match="x: a squared edge length"):
        layer.forward(p, graph, h, x * 1e200)


def test_bad_inputs(rng):
    graph = testing.random_graph(rng, 4)
    x = testing.random_points(rng, 4)
    h = rng.normal(size=(4, 3))
    with pytest.raises(ValueError, match="EGNNLayer.flavour"):
        EGNNLayer(3, 4, flavour="pyg")
    with pytest.raises(ValueError, match="out_features must equal in_features"):
        EGNNLayer(3, 4, out_features=2)
    with pytest.raises(ValueError, match="EGNNLayer.coords_agg"):
        EGNNLayer(3, 4, coords_agg="max")
    with pytest.raises(ValueError, match="EGNNLayer.clamp"):
        EGNNLayer(3, 4, clamp=-1.0)
    with pytest.raises(TypeError, match="EGNNLayer.hidden must be an int"):
        EGNNLayer(3, 2.5)
    with pytest.raises(TypeError, match="EGNNLayer.attention must be True or False"):
        EGNNLayer(3, 4, attention=1)
    with pytest.raises(ValueError, match="detach_norm=True needs normalize=True"):
        EGNNLayer(3, 4, detach_norm=True)
    with pytest.raises(ValueError, match="EGNN.num_layers"):
        EGNN(3, 2, EGNNLayer(4, 4), num_layers=0)
    with pytest.raises(ValueError, match="EGNN.layer must map H -> H"):
        EGNN(3, 2, EGNNLayer(4, 4, out_features=5, residual=False))
    vel = EGNNLayer(3, 4, velocity=True, edge_features=2)
    p = vel.init(rng)
    with pytest.raises(TypeError, match="EGNNLayer.forward needs v when velocity=True"):
        vel(p, graph, h, x, edge_attr=np.zeros((graph.num_edges, 2)))
    with pytest.raises(TypeError, match="needs edge_attr when edge_features > 0"):
        vel(p, graph, h, x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="got node_attr, which this configuration does not use"):
        vel(p, graph, h, x, np.zeros((4, 3)), np.zeros((graph.num_edges, 2)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="v must have shape"):
        vel(p, graph, h, x, np.zeros((4, 2)), np.zeros((graph.num_edges, 2)))
    with pytest.raises(ValueError, match="edge_attr must have shape"):
        vel(p, graph, h, x, np.zeros((4, 3)), np.zeros((graph.num_edges, 3)))
    with pytest.raises(ValueError, match="h must have shape"):
        vel(p, graph, h[:, :2], x, np.zeros((4, 3)), np.zeros((graph.num_edges, 2)))
    with pytest.raises(ValueError, match="x contains NaN"):
        vel(p, graph, h, x * np.nan, np.zeros((4, 3)), np.zeros((graph.num_edges, 2)))


# --- options for other published EGNN layers (egnn-pytorch) -------------------------------------


def _silu_mlp(p, x, act_last):
    """Like ``_mlp`` for MLPs whose last layer may lack a bias."""
    n = len([k for k in p if k.startswith("W")])
    for k in range(n):
        x = x @ p[f"W{k}"] + p.get(f"b{k}", 0.0)
        if k < n - 1 or act_last:
            x = x / (1.0 + np.exp(-x))
    return x


def test_pytorch_style_options_by_hand(rng):
    """Widths, phi_x bias, the scale s, the weight bound, max(|D|, eps) and the message mean,
    written with explicit loops over the edges."""
    from dataclasses import replace

    eps = 0.3
    free = EGNNLayer(3, 4, flavour="egnn_clean", edge_hidden=6, coord_hidden=5, node_hidden=7,
                     coord_bias=True, messages_agg="mean", coords_agg="sum", normalize=True,
                     norm_mode="max", norm_eps=eps, coords_scale=0.7, coord_init_gain=1.0)
    p = free.init(rng)
    assert p["phi_e"]["W0"].shape == (7, 6) and p["phi_x"]["W0"].shape == (4, 5)
    assert p["phi_h"]["W0"].shape == (3 + 4, 7) and p["phi_x"]["b1"].shape == (1,)
    graph = testing.random_graph(rng, 6, isolated=False, self_loops=True)
    h, x = rng.normal(size=(6, 3)), testing.random_points(rng, 6, min_dist=0.2)
    x[1] = x[0] + 0.1  # one pair closer than eps: the floor is taken
    c_w = float(np.median(np.abs(free.forward(p, graph, h, x)[1].coord.s)))  # cuts half
    layer = replace(free, weight_clamp=c_w)
    (h_new, x_new), cache = layer.forward(p, graph, h, x)
    want_x, msum, count = x.copy(), np.zeros((6, 4)), np.zeros(6)
    clamped = 0
    for j, i in graph.edge_index.T:
        d = x[i] - x[j]
        m = _silu_mlp(p["phi_e"], np.concatenate([h[i], h[j], [d @ d]]), True)
        w = _silu_mlp(p["phi_x"], m, False)[0]
        clamped += abs(w) > c_w
        want_x[i] += p["coords_scale"][0] * d / max(np.sqrt(d @ d), eps) * np.clip(w, -c_w, c_w)
        msum[i] += m
        count[i] += 1
    assert clamped > 0
    want_h = h + _silu_mlp(p["phi_h"], np.concatenate([h, msum / count[:, None]], 1), False)
    np.testing.assert_allclose(x_new, want_x, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h_new, want_h, rtol=1e-13, atol=1e-13)


def test_weight_clamp_subgradient(rng):
    """Every weight beyond the bound: no gradient reaches phi_x, phi_e or h; x still gets one."""
    layer = EGNNLayer(3, 4, flavour="egnn_clean", weight_clamp=1e-9, coord_init_gain=1.0)
    p = layer.init(rng)
    graph = testing.random_graph(rng, 6, isolated=False)
    (_, x_new), cache = layer.forward(p, graph, rng.normal(size=(6, 3)),
                                      testing.random_points(rng, 6))
    assert np.all(np.abs(cache.coord.s) > 1e-9)
    grads, (g_h, g_x, *_) = layer.backward(p, cache, (None, rng.normal(size=x_new.shape)))
    for leaf in list(grads["phi_x"].values()) + list(grads["phi_e"].values()):
        assert np.all(leaf == 0.0)
    assert np.all(g_h == 0.0) and np.any(g_x != 0.0)


@pytest.mark.parametrize("mode", ["add", "max"])
def test_direction_vjp_against_differences(rng, mode):
    """The normalised direction's VJP by central differences (|D| well above and below eps)."""
    from geomp_ref.layers.egnn_parts import direction, direction_vjp

    eps = 0.5
    diff = rng.normal(size=(6, 3))
    diff[:3] *= 0.1  # below the floor in "max" mode
    g = rng.normal(size=(6, 3))
    u, nrm = direction(diff, eps, mode)
    got = direction_vjp(diff, nrm, g, eps, mode, detach=False)
    want = np.zeros_like(diff)
    for e in range(6):
        for k in range(3):
            step = np.zeros_like(diff)
            step[e, k] = 1e-6
            up, down = direction(diff + step, eps, mode)[0], direction(diff - step, eps, mode)[0]
            want[e, k] = np.sum(g * (up - down)) / 2e-6
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-9)
    if mode == "max":  # below the floor u = D / eps, so the VJP is g / eps exactly
        np.testing.assert_allclose(got[:3], g[:3] / eps, rtol=1e-15)


def test_self_loops_message_but_never_move(rng):
    """A self-loop adds phi_e([h_i, h_i, 0]) to the message sum and nothing to x (D = 0); the
    position gradient is that of the graph without loops as far as the coordinates go."""
    layer = EGNNLayer(3, 4, flavour="egnn_clean", coords_agg="sum", normalize=True,
                      norm_mode="max", coord_init_gain=1.0)
    p = layer.init(rng)
    base = testing.random_graph(rng, 5, isolated=False)
    loops = make_graph(np.concatenate([base.edge_index, np.tile(np.arange(5), (2, 1))], 1), 5)
    h, x = rng.normal(size=(5, 3)), testing.random_points(rng, 5)
    (h0, x0), c0 = layer.forward(p, base, h, x)
    (h1, x1), c1 = layer.forward(p, loops, h, x)
    np.testing.assert_array_equal(x1, x0)
    assert np.max(np.abs(h1 - h0)) > 1e-6
    cot = (None, rng.normal(size=x.shape))
    np.testing.assert_allclose(layer.backward(p, c1, cot)[1][1], layer.backward(p, c0, cot)[1][1],
                               rtol=1e-13, atol=1e-14)


def test_coords_scale_without_coordinate_update(rng):
    layer = EGNNLayer(3, 4, update_coords=False, coords_scale=0.5)
    p = layer.init(rng)
    assert p["coords_scale"].tolist() == [0.5]
    graph = testing.random_graph(rng, 4)
    out, cache = layer.forward(p, graph, rng.normal(size=(4, 3)), testing.random_points(rng, 4))
    grads, _ = layer.backward(p, cache, (rng.normal(size=(4, 3)), None))
    assert grads["coords_scale"].tolist() == [0.0]


def test_bad_new_options():
    with pytest.raises(ValueError, match="norm_mode='max' needs normalize=True"):
        EGNNLayer(3, 4, norm_mode="max")
    with pytest.raises(ValueError, match="EGNNLayer.norm_mode"):
        EGNNLayer(3, 4, normalize=True, norm_mode="min")
    with pytest.raises(ValueError, match="EGNNLayer.messages_agg"):
        EGNNLayer(3, 4, messages_agg="max")
    with pytest.raises(ValueError, match="EGNNLayer.weight_clamp"):
        EGNNLayer(3, 4, weight_clamp=0.0)
    with pytest.raises(TypeError, match="EGNNLayer.coords_scale"):
        EGNNLayer(3, 4, coords_scale="1")
    with pytest.raises(ValueError, match="EGNNLayer.edge_hidden"):
        EGNNLayer(3, 4, edge_hidden=0)
    with pytest.raises(TypeError, match="EGNNLayer.coord_bias"):
        EGNNLayer(3, 4, coord_bias=1)
