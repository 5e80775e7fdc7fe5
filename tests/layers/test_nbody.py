"""N-body models and their layers (GCL, RadialFieldLayer): published sizes, feature semantics,
hard cases (zero velocities, coincident bodies, huge positions, |h_i - h_j| = 0) and errors. The
VJP / symmetry / backend battery of the registered cases lives in tests/test_cases.py; values and
gradients against torch in tests/peers/test_egnn_torch.py."""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref import testing
from geomp_ref.graph import complete_graph
from geomp_ref.layers.gcl import GCL
from geomp_ref.layers.radial_field import RadialFieldLayer
from geomp_ref.models import nbody
from geomp_ref.models.nbody import NBodyEGNN, NBodyGNN, NBodyLinear, NBodyRF
from geomp_ref.params import num_params


def _problem(rng, systems=2, n=5):
    N = systems * n
    graph = complete_graph(N, np.repeat(np.arange(systems), n))
    x = np.concatenate([testing.random_points(rng, n, min_dist=0.5, scale=1.5)
                        for _ in range(systems)])
    return graph, x, rng.normal(size=(N, 3)), rng.choice([-1.0, 1.0], size=(N, 1))


def test_published_sizes():
    """Parameter counts of the published modules at H = 64, 4 layers, counted from their layer
    shapes (torch.nn.Linear(i, o) has i*o + o parameters)."""
    def lin(i, o, bias=True):
        return i * o + (o if bias else 0)

    H = 64
    egcl_vel = (lin(2 * H + 1 + 2, H) + lin(H, H) + lin(2 * H, H) + lin(H, H) + lin(H, H)
                + lin(H, 1, False) + lin(H, H) + lin(H, 1))
    assert num_params(NBodyEGNN().init(0)) == lin(1, H) + 4 * egcl_vel
    rf = lin(3, H) + lin(H, 1, False) + lin(1, H) + lin(H, 1)
    assert num_params(NBodyRF().init(0)) == 4 * rf
    gcl = lin(2 * H + 1, H) + lin(H, H) + lin(2 * H, H) + lin(H, H)
    assert num_params(NBodyGNN().init(0)) == lin(6, H) + 4 * gcl + lin(H, H) + lin(H, 3)
    assert num_params(NBodyLinear().init(0)) == lin(6, 3)


def test_make_model_and_inputs(rng):
    for name in nbody.MODELS:
        assert type(nbody.make_model(name)).__name__.lower().endswith(
            {"linear": "linear", "gnn": "gnn", "rf": "rf", "egnn": "egnn", "segnn": "segnn",
             "segnn-e3": "segnn", "tfn": "tfn", "tfn-se3": "se3tfn", "ponita": "ponita"}[name])
    assert nbody.make_model("segnn").mode == "reference"
    assert nbody.make_model("segnn-e3").mode == "corrected"
    assert nbody.make_model("segnn-e3", mode="reference").mode == "reference"
    assert nbody.make_model("egnn", hidden=8).hidden == 8
    with pytest.raises(ValueError, match="model must be one of"):
        nbody.make_model("painn")

    class Batch:
        x, v, charges = 1, 2, 3

    assert nbody.model_inputs("rf", Batch) == (1, 2, 3)


def test_linear_is_an_affine_map_of_x_and_v(rng):
    model = NBodyLinear()
    p = model.init(rng)
    graph, x, v, q = _problem(rng)
    W, b = p["linear"]["W0"], p["linear"]["b0"]
    np.testing.assert_allclose(model(p, graph, x, v, q), x @ W[:3] + v @ W[3:] + b, rtol=1e-14)
    _, cache = model.forward(p, graph, x, v, q)
    assert np.all(model.backward(p, cache, np.ones((10, 3)))[1][2] == 0.0)


def test_egnn_edge_attributes_are_the_input_frame(rng):
    """The squared distance in the edge attributes is that of the input positions: the first
    layer sees |x_i - x_j|^2 twice (message input r and attribute), equal values."""
    model = NBodyEGNN(hidden=6, num_layers=2)
    p = model.init(rng)
    graph, x, v, q = _problem(rng)
    _, cache = model.forward(p, graph, x, v, q)
    first = cache.layers[0].phi_e.h[0]  # [h_i, h_j, r, q_i q_j, |x_i - x_j|^2]
    np.testing.assert_array_equal(first[:, 12], first[:, 14])
    np.testing.assert_array_equal(first[:, 13], (q[graph.dst] * q[graph.src])[:, 0])
    second = cache.layers[1].phi_e.h[0]
    np.testing.assert_array_equal(second[:, 14], first[:, 14])
    assert np.max(np.abs(second[:, 12] - second[:, 14])) > 0  # positions moved in between


@pytest.mark.parametrize("cls", [NBodyEGNN, NBodyRF])
def test_zero_velocity_uses_the_subgradient(cls, rng):
    """|v| has no derivative at v = 0; its subgradient 0 is used: finite gradients, and nothing
    through the speed for that body (its v gradient is the velocity term's alone)."""
    model = cls(hidden=6, num_layers=2)
    p = model.init(rng)
    graph, x, v, q = _problem(rng)
    v[3] = 0.0
    out, cache = model.forward(p, graph, x, v, q)
    _, (gx, gv, gq) = model.backward(p, cache, np.ones_like(out))
    assert all(np.all(np.isfinite(g)) for g in (out, gx, gv, gq))


def test_coincident_bodies_and_huge_positions(rng):
    graph, x, v, q = _problem(rng)
    rf = NBodyRF(hidden=6, num_layers=1)
    pr = rf.init(rng)
    bad = x.copy()
    bad[1] = bad[0]
    with pytest.raises(ValueError, match=r"edge \d+ .*(coincident|zero)"):
        rf(pr, graph, bad, v, q)  # the radial field reads |x_i - x_j|, not differentiable at 0
    egnn = NBodyEGNN(hidden=6, num_layers=1)
    pe = egnn.init(rng)
    assert np.all(np.isfinite(egnn(pe, graph, bad, v, q)))  # EGNN reads |x_i - x_j|^2: smooth
    for model, params in ((rf, pr), (egnn, pe)):
        with pytest.raises(ValueError, match="x: a squared edge length"):
            model(params, graph, x * 1e200, v, q)


def test_gcl_attention_kink(rng):
    """|h_i - h_j| at h_i = h_j uses the derivative 0 (torch's sign(0)). Along directions that
    keep the tie the layer is smooth, and there the gradient must match central differences."""
    layer = GCL(3, 4, activation="silu", attention=True)
    p = layer.init(rng)
    graph = complete_graph(4)
    h = rng.normal(size=(4, 3))
    h[1] = h[0]
    cot = rng.normal(size=(4, 3))
    out, cache = layer.forward(p, graph, h)
    _, (g_h, _) = layer.backward(p, cache, cot)
    d = rng.normal(size=(4, 3))
    d[1] = d[0]  # keeps h_0 = h_1
    eps = 1e-5
    fd = (np.sum(cot * layer(p, graph, h + eps * d)) - np.sum(cot * layer(p, graph, h - eps * d)))
    assert abs(fd / (2 * eps) - np.sum(g_h * d)) <= 1e-8 * np.linalg.norm(g_h)
    tied = (graph.src == 0) & (graph.dst == 1)
    np.testing.assert_array_equal(np.sign(cache.attention.diff[tied]), 0.0)


def test_radial_field_formula(rng):
    """x' = x + mean_j (x_i - x_j) tanh(phi([|x_i - x_j|, a])) + v phi_v(s), written per node."""
    layer = RadialFieldLayer(5, edge_features=1, coord_init_gain=1.0, coords_weight=0.5)
    p = layer.init(rng)
    graph = testing.random_graph(rng, 5, isolated=True)
    x, v = testing.random_points(rng, 5), rng.normal(size=(5, 3))
    s, a = rng.normal(size=(5, 1)), rng.normal(size=(graph.num_edges, 1))

    def mlp(q, z, bias_last=True):
        z = z @ q["W0"] + q["b0"]
        z = z / (1 + np.exp(-z))
        return z @ q["W1"] + (q["b1"] if bias_last else 0.0)

    want = x.copy()
    for i in range(5):
        es = np.flatnonzero(graph.dst == i)
        if len(es):
            acc = np.zeros(3)
            for e in es:
                d = x[i] - x[graph.src[e]]
                acc += d * np.tanh(mlp(p["phi"], np.array([np.linalg.norm(d), a[e, 0]]), False))
            want[i] += 0.5 * acc / len(es)
        want[i] += v[i] * mlp(p["phi_v"], s[i])
    np.testing.assert_allclose(layer(p, graph, x, s, v, a), want, rtol=1e-13, atol=1e-14)


def test_errors(rng):
    graph, x, v, q = _problem(rng)
    model = NBodyEGNN(hidden=6, num_layers=1)
    p = model.init(rng)
    with pytest.raises(ValueError, match="charges must have"):
        model(p, graph, x, v, q[:, 0])
    with pytest.raises(ValueError, match="v must have shape"):
        model(p, graph, x, v[:, :2], q)
    with pytest.raises(ValueError, match="x must have shape"):
        model(p, graph, x[:, :2], v, q)
    with pytest.raises(ValueError, match="NBodyEGNN.hidden must be >= 1"):
        NBodyEGNN(hidden=0)
    with pytest.raises(TypeError, match="NBodyRF.num_layers must be an int"):
        NBodyRF(num_layers=2.5)
    with pytest.raises(TypeError, match="NBodyGNN.recurrent must be True or False"):
        NBodyGNN(recurrent=1)
    with pytest.raises(ValueError, match="GCL.out_features must equal in_features"):
        GCL(3, 4, out_features=2)
    with pytest.raises(ValueError, match="RadialFieldLayer.activation"):
        RadialFieldLayer(4, activation="leaky_relu")
    layer = RadialFieldLayer(4)
    with pytest.raises(ValueError, match="got edge_attr, which this configuration does not use"):
        layer(layer.init(rng), graph, x, np.ones((10, 1)), v, np.ones((graph.num_edges, 1)))
