"""TFNConv beyond the registry battery: O(3) x T(3) equivariance on hypothesis graphs, the
CFConv identity, the scale covariance down to 1e-200 and up to 1e200, hard cases and errors.
VJPs, symmetry and backends of the registered configurations are in tests/test_cases.py; the
e3nn cross-check lives in tests/peers/test_e3nn_steerable.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geomp_ref.graph import make_graph
from geomp_ref.layers.tfn import (
    TFNConv,
    gaussian_embedding,
    gaussian_embedding_vjp,
    smooth_cutoff,
    smooth_cutoff_vjp,
)
from geomp_ref.testing import assert_equivariant, graph_strategy, random_graph, random_points


def _problem(rng, lay, n=6, num_graphs=1):
    pos = random_points(rng, n, min_dist=0.6, scale=1.2)
    graph = random_graph(rng, n, avg_degree=3.0, num_graphs=num_graphs)
    f = rng.normal(size=(n, lay.irreps_in.dim))
    return graph, f, pos


@given(graph=graph_strategy(max_nodes=6, max_edges=14, max_graphs=2),
       seed=st.integers(0, 2**32 - 1))
def test_o3_equivariance_hypothesis(graph, seed):
    rng = np.random.default_rng(seed)
    lay = TFNConv("2x0e+1x0o+1x1o+1x1e", "2x0e+1x0o+1x1o+1x1e+1x2e", lmax=2, max_radius=3.0,
                  num_basis=4, radial_neurons=4)
    params = lay.init(rng)
    pos = random_points(rng, graph.num_nodes, min_dist=0.5) if graph.num_nodes else \
        np.zeros((0, 3))
    f = rng.normal(size=(graph.num_nodes, lay.irreps_in.dim))
    kind_in, kind_out = f"irreps:{lay.irreps_in}", f"irreps:{lay.irreps_out}"
    assert_equivariant(lay, params, graph, (f, pos), (kind_in, "position"), (kind_out,), "E3",
                       rng=rng, atol=1e-12)


def test_scalar_identity_is_cfconv(rng):
    """0e features, lmax = 0: f'_i = L2(sum_j phi(r) R(e_ij) * L1(f)_j / sqrt(n)), a CFConv whose
    filter is the radial net; the reference side is written with plain matrices."""
    C, B, H = 3, 5, 7
    rmax, nn = 2.2, 2.5
    lay = TFNConv(f"{C}x0e", f"{C}x0e", lmax=0, max_radius=rmax, num_basis=B, radial_neurons=H,
                  num_neighbors=nn, gate=False, self_connection=False, act_constants="exact")
    params = lay.init(rng)
    graph, f, pos = _problem(rng, lay, n=6)
    out = lay(params, graph, f, pos)
    # independent route: matrices, the textbook Gaussian and cutoff, the exact SiLU constant
    W1 = params["lin1"]["weight"].reshape(C, C) / math.sqrt(C)
    W2 = params["lin2"]["weight"].reshape(C, C) / math.sqrt(C)
    src, dst = graph.edge_index
    r = np.linalg.norm(pos[src] - pos[dst], axis=1)
    mu = np.linspace(0, rmax, B)
    e = np.exp(-(((r[:, None] - mu) / (mu[1] - mu[0])) ** 2)) / 1.12 * math.sqrt(B)
    from scipy.integrate import quad

    def silu(x):
        return x / (1 + np.exp(-x))

    c = 1 / math.sqrt(quad(lambda z: silu(z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                           -50, 50, epsabs=1e-15)[0])
    hidden = c * silu(e @ params["radial"]["W0"] / math.sqrt(B))
    filt = hidden @ params["radial"]["W1"] / math.sqrt(H)
    u = 2 * (r / rmax - 1)
    phi = np.where(u > 0, 0, np.where(u < -1, 1, (1 - np.cos(np.pi * u)) / 2))
    y = f @ W1
    agg = np.zeros((graph.num_nodes, C))
    np.add.at(agg, dst, phi[:, None] * filt * y[src])
    want = (agg / math.sqrt(nn)) @ W2
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-13 * np.abs(want).max())


@pytest.mark.parametrize("scale", [1e-200, 1e-100, 1e100, 1e200])
def test_scale_covariance_at_extreme_scales(scale, rng):
    """Positions and radius scaled together leave the output unchanged (harmonics and r/r_max are
    scale-free) and scale the position gradient by 1/s: finite everywhere, no 0 * inf."""
    kw = {"irreps_in": "2x0e+1x1o", "irreps_out": "2x0e+1x1o+1x2e", "lmax": 2, "num_basis": 5,
          "radial_neurons": 6, "num_neighbors": 2.0}
    lay = TFNConv(max_radius=2.5, **kw)
    params = lay.init(rng)
    graph, f, pos = _problem(rng, lay, n=6)
    out, cache = lay.forward(params, graph, f, pos)
    cot = rng.normal(size=out.shape)
    g_f, g_pos = lay.backward(params, cache, cot)[1]
    big = TFNConv(max_radius=2.5 * scale, **kw)
    out_s, cache_s = big.forward(params, graph, f, pos * scale)
    g_f_s, g_pos_s = big.backward(params, cache_s, cot)[1]
    np.testing.assert_allclose(out_s, out, rtol=1e-11, atol=1e-13 * np.abs(out).max())
    np.testing.assert_allclose(g_f_s, g_f, rtol=1e-11, atol=1e-13 * np.abs(g_f).max())
    np.testing.assert_allclose(g_pos_s * scale, g_pos, rtol=1e-9, atol=1e-11 * np.abs(g_pos).max())
    # far apart at a fixed radius: every edge is cut off, the gradient is an exact 0, not NaN
    out_far, cache_far = lay.forward(params, graph, f, pos * 1e200)
    g_far = lay.backward(params, cache_far, cot)[1][1]
    assert np.all(np.isfinite(out_far)) and np.all(g_far == 0.0)


def test_radial_pieces():
    r = np.array([0.0, 0.3, 0.9, 1.2, 1.9, 2.5])
    # e3nn's smooth cutoff: 1 up to r_max/2, 0 from r_max, (1 - cos(2 pi (x - 1)))/2 between
    x = r / 2.0
    want = np.where(x <= 0.5, 1.0, np.where(x >= 1, 0.0, (1 - np.cos(2 * np.pi * (x - 1))) / 2))
    np.testing.assert_allclose(smooth_cutoff(x), want, atol=1e-16)
    h = 1e-6
    fd = (smooth_cutoff(x + h) - smooth_cutoff(x - h)) / (2 * h)
    np.testing.assert_allclose(smooth_cutoff_vjp(x, np.ones_like(x)), fd, atol=1e-8)
    e = gaussian_embedding(np.array([0.5]), 2.0, 5)
    np.testing.assert_allclose(e[0, 1], math.sqrt(5) / 1.12, rtol=1e-15)  # mu_1 = 0.5
    far = np.array([1e300, np.finfo(float).max])  # exp underflows to an exact 0: so does the VJP
    assert np.all(gaussian_embedding(far, 2.0, 5) == 0)
    assert np.all(gaussian_embedding_vjp(far, 2.0, 5, np.ones((2, 5))) == 0)
    assert np.all(smooth_cutoff_vjp(far, np.ones(2)) == 0) and np.all(smooth_cutoff(far) == 0)


def test_empty_graph_and_isolated_nodes(rng):
    lay = TFNConv("2x0e+1x1o", "2x0e+1x1o", lmax=1)
    params = lay.init(rng)
    for graph in (make_graph(np.zeros((2, 0), np.int64), 3),
                  make_graph(np.zeros((2, 0), np.int64), 0)):
        n = graph.num_nodes
        f = rng.normal(size=(n, lay.irreps_in.dim))
        pos = rng.normal(size=(n, 3))
        out, cache = lay.forward(params, graph, f, pos)
        assert out.shape == (n, lay.irreps_out.dim)
        grads, (_g_f, g_pos) = lay.backward(params, cache, np.ones_like(out))
        assert g_pos.shape == (n, 3) and np.all(g_pos == 0)
        assert np.all(grads["radial"]["W0"] == 0)


def test_zero_length_edge_raises_naming_pos(rng):
    lay = TFNConv("2x0e+1x1o", "2x0e+1x1o", lmax=1)
    params = lay.init(rng)
    graph = make_graph(np.array([[0, 1], [1, 1]]), 2)  # a self-loop
    f = rng.normal(size=(2, lay.irreps_in.dim))
    with pytest.raises(ValueError, match="pos"):
        lay(params, graph, f, np.array([[0.0, 0, 0], [1.0, 0, 0]]))


def test_zero_length_e3nn_mode_value(rng):
    """With zero_length='e3nn' a self-loop contributes Y(0) = (1, 0, 0, 0) (component)."""
    lay = TFNConv("1x0e", "1x0e+1x1o", lmax=1, gate=False, self_connection=False,
                  zero_length="e3nn")
    params = lay.init(rng)
    graph = make_graph(np.array([[0], [0]]), 1)
    out, cache = lay.forward(params, graph, np.ones((1, 1)), np.zeros((1, 3)))
    np.testing.assert_array_equal(cache.Y, [[1.0, 0, 0, 0]])
    assert np.all(out[:, 1:] == 0) and np.all(np.isfinite(out))


@pytest.mark.parametrize("kwargs,word", [
    # 0e x 1o cannot give 1e
    ({"irreps_in": "2x0e", "irreps_out": "1x1e", "lmax": 1}, "irreps_out"),
    ({"irreps_in": "2x0e", "irreps_out": "1x0e", "lmax": 1, "sh_normalization": "unit"},
     "sh_normalization"),
    ({"irreps_in": "2x0e", "irreps_out": "1x0e", "max_radius": -1.0}, "max_radius"),
    ({"irreps_in": "2x0e", "irreps_out": "1x0e", "zero_length": "ignore"}, "zero_length"),
    ({"irreps_in": "2x0e", "irreps_out": "1x0e", "backend": "gpu"}, "backend"),
    ({"irreps_in": "2xfoo", "irreps_out": "1x0e"}, "irreps_in"),
    ({"irreps_in": "2x0e", "irreps_out": "1x1o+1x0e", "lmax": 1}, "scalars"),  # gated first
    ({"irreps_in": "2x0e", "irreps_out": "1x0e", "gate": 1}, "TFNConv.gate"),
    ({"irreps_in": "2x0e", "irreps_out": "1x0e", "act_constants": "mc"}, "act_constants"),
])
def test_bad_specs_name_the_field(kwargs, word):
    with pytest.raises((ValueError, TypeError), match=word):
        TFNConv(**kwargs)


def test_bad_inputs_name_the_argument(rng):
    lay = TFNConv("2x0e+1x1o", "2x0e+1x1o", lmax=1)
    params = lay.init(rng)
    graph, f, pos = _problem(rng, lay, n=4)
    with pytest.raises(ValueError, match="f must have shape"):
        lay(params, graph, f[:, :3], pos)
    with pytest.raises(ValueError, match="pos"):
        lay(params, graph, f, pos[:, :2])
    bad = pos.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="pos"):
        lay(params, graph, f, bad)
    with pytest.raises(ValueError, match="radial"):
        lay({k: v for k, v in params.items() if k != "radial"}, graph, f, pos)
    with pytest.raises(ValueError, match="unexpected key"):
        lay({**params, "W9": np.ones(2)}, graph, f, pos)
    out, cache = lay.forward(params, graph, f, pos)
    with pytest.raises(ValueError, match="grad_out of TFNConv.backward"):
        lay.backward(params, cache, out[:, :-1])
    with pytest.raises(TypeError, match="cache of TFNConv.backward"):
        lay.backward(params, tuple(cache), out)
    with pytest.raises(TypeError, match="rng"):
        lay.init(None)
