"""SE3Conv, SE3NormNonlinearity and NBodySE3TFN beyond the registry battery.

The registry (tests/test_cases.py) checks VJPs against finite differences, SE(3) / O(3)
equivariance and backend agreement of the registered configurations. Here: the kernel basis
against closed-form tensors (identity, cross product, traceless outer product), its rotation
law for degrees up to 3, what a reflection does (the odd paths flip, nothing else), SE(3)
equivariance on hypothesis graphs, the published handling of isolated nodes and tiny norms,
the model's structure, and errors. The torch cross-check is tests/peers/test_se3_tfn_torch.py.

The closed forms' signs are those of the published basis (the SE(3)-Transformer code's
``get_basis``), which was compared entry by entry with ``kernel_basis`` when the layer was
written: every ratio was +1 to float32 precision.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geomp_ref import o3
from geomp_ref.graph import complete_graph, make_graph
from geomp_ref.layers.se3_tfn import (
    NORM_EPS,
    SE3Conv,
    SE3NormNonlinearity,
    channels_dim,
    kernel_basis,
    kernel_basis_vjp,
)
from geomp_ref.models.nbody_steerable import NBodySE3TFN, make_model
from geomp_ref.testing import assert_equivariant, graph_strategy, random_points

C = 1.0 / math.sqrt(4.0 * math.pi)


def _units(rng, n):
    u = rng.normal(size=(n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def _Y(u, lmax):
    return o3.spherical_harmonics(list(range(lmax + 1)), u, normalize=True,
                                  normalization="component")


def _rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([[a*a+b*b-c*c-d*d, 2*(b*c-a*d), 2*(b*d+a*c)],
                     [2*(b*c+a*d), a*a-b*b+c*c-d*d, 2*(c*d-a*b)],
                     [2*(b*d-a*c), 2*(c*d+a*b), a*a-b*b-c*c+d*d]])


# --- the kernel basis --------------------------------------------------------------------------


def test_basis_closed_forms(rng):
    u = _units(rng, 7)
    Y = _Y(u, 2)
    v = rng.normal(size=(7, 3))
    np.testing.assert_allclose(kernel_basis(Y, 0, 0)[:, 0, 0, 0], C, rtol=1e-15)
    np.testing.assert_allclose(kernel_basis(Y, 0, 1)[:, 0, :, 0], C * u, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(kernel_basis(Y, 1, 0)[:, 0, 0, :], C * u, rtol=1e-14, atol=1e-16)
    K = kernel_basis(Y, 1, 1)
    assert K.shape == (7, 3, 3, 3)
    np.testing.assert_allclose(K[:, 0], np.broadcast_to(np.eye(3) / math.sqrt(12 * math.pi),
                                                        (7, 3, 3)), atol=1e-15)
    # J = 1: the cross product v x u, the path a reflection cannot see
    np.testing.assert_allclose(np.einsum("eab,eb->ea", K[:, 1], v),
                               np.cross(v, u) / math.sqrt(8 * math.pi), rtol=1e-13, atol=1e-15)
    # J = 2: the traceless outer product
    S = np.einsum("ea,eb->eab", u, u) - np.eye(3) / 3
    np.testing.assert_allclose(K[:, 2], C * math.sqrt(1.5) * S, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("l", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_basis_rotation_law_and_norm(rng, l, k):
    """K(R u) = D^k(R) K(u) D^l(R)^T, and every K_J has Frobenius norm 1/sqrt(4 pi)."""
    u = _units(rng, 5)
    R = _rotation(rng)
    K = kernel_basis(_Y(u, l + k), l, k)
    K_rot = kernel_basis(_Y(u @ R.T, l + k), l, k)
    Dl = o3.Irreps(f"1x{l}e").D_from_matrix(R)
    Dk = o3.Irreps(f"1x{k}e").D_from_matrix(R)
    np.testing.assert_allclose(K_rot, np.einsum("ab,efbc,dc->efad", Dk, K, Dl), atol=1e-13)
    np.testing.assert_allclose(np.sqrt(np.sum(K ** 2, axis=(2, 3))), C, rtol=1e-13)
    assert K.shape[1] == 2 * min(l, k) + 1


def test_basis_vjp_against_finite_differences(rng):
    Y = rng.normal(size=(4, 9))
    g = rng.normal(size=(4, 3, 3, 3))
    gY = kernel_basis_vjp(g, 1, 1, 2)
    dY = rng.normal(size=Y.shape)
    eps = 1e-6
    fd = np.sum((kernel_basis(Y + eps * dY, 1, 1) - kernel_basis(Y - eps * dY, 1, 1)) * g)
    fd /= 2 * eps
    assert abs(fd - np.sum(gY * dY)) <= 1e-9 * max(1.0, abs(fd))


def test_basis_bad_input(rng):
    Y = _Y(_units(rng, 3), 1)
    with pytest.raises(ValueError, match="Y must hold the harmonics up to degree l \\+ k = 2"):
        kernel_basis(Y, 1, 1)
    with pytest.raises(ValueError, match="Y"):
        kernel_basis(np.full((3, 9), np.nan), 1, 1)
    with pytest.raises(TypeError, match="l"):
        kernel_basis(_Y(_units(rng, 3), 2), 1.0, 1)
    with pytest.raises(ValueError, match="grad_K"):
        kernel_basis_vjp(np.zeros((3, 3, 3, 1)), 1, 1, 2)
    with pytest.raises(ValueError, match="lmax"):
        kernel_basis_vjp(np.zeros((3, 3, 3, 3)), 1, 1, 1)


# --- the convolution ---------------------------------------------------------------------------


def _conv_problem(rng, conv, n=6):
    graph = complete_graph(n)
    pos = random_points(rng, n, min_dist=0.6, scale=1.5)
    f = rng.normal(size=(n, conv.dim_in))
    return graph, f, pos


@given(graph=graph_strategy(max_nodes=6, max_edges=14, max_graphs=2),
       seed=st.integers(0, 2**32 - 1))
def test_se3_equivariance_hypothesis(graph, seed):
    rng = np.random.default_rng(seed)
    conv = SE3Conv((2, 1, 1), (1, 2, 1), radial_hidden=4)
    params = conv.init(rng)
    pos = (random_points(rng, graph.num_nodes, min_dist=0.5) if graph.num_nodes
           else np.zeros((0, 3)))
    f = rng.normal(size=(graph.num_nodes, conv.dim_in))
    assert_equivariant(conv, params, graph, (f, pos), ("irreps:2x0e+1x1o+1x2e", "position"),
                       ("irreps:1x0e+2x1o+1x2e",), "SE3", rng=rng, atol=1e-12)


def _flip_odd_paths(conv, params):
    """Params whose J paths with l + k + J odd are negated (the radial outputs of those J)."""
    p = copy.deepcopy(params)
    for key, rp in p["radial"].items():
        l, k = map(int, key.split(","))
        mi, mo = conv.channels_in[l], conv.channels_out[k]
        nf = 2 * min(l, k) + 1
        sign = np.array([(-1.0) ** (l + k + J) for J in range(abs(l - k), l + k + 1)])
        flip = np.broadcast_to(sign, (mo, mi, nf)).reshape(-1)
        rp["W3"] = rp["W3"] * flip
        rp["b3"] = rp["b3"] * flip
    return p


def test_reflection_flips_only_the_odd_paths(rng):
    """x -> -x (degree l features times (-1)^l): the output is reflected exactly when the paths
    with l + k + J odd (the cross product among them) change sign; with the same weights it is
    not, so the layer is SE(3)- and not O(3)-equivariant."""
    conv = SE3Conv((2, 2, 1), (2, 2, 1), radial_hidden=5)
    params = conv.init(rng)
    graph, f, pos = _conv_problem(rng, conv)

    def parity(h, channels):
        signs = np.concatenate([np.full(m * (2 * l + 1), (-1.0) ** l)
                                for l, m in enumerate(channels) if m])
        return h * signs

    out = conv(params, graph, f, pos)
    flipped = conv(_flip_odd_paths(conv, params), graph, parity(f, conv.channels_in), -pos)
    np.testing.assert_allclose(flipped, parity(out, conv.channels_out), atol=1e-13)
    plain = conv(params, graph, parity(f, conv.channels_in), -pos)
    assert np.max(np.abs(plain - parity(out, conv.channels_out))) > 1e-3


def test_mean_and_self_term_by_hand(rng):
    """One receiver with two senders, written with explicit matrices (closed-form kernels)."""
    conv = SE3Conv((1, 1), (1, 1), radial_hidden=3)
    params = conv.init(rng)
    graph = make_graph(np.array([[1, 2], [0, 0]]), 3)
    pos = rng.normal(size=(3, 3))
    f = rng.normal(size=(3, 4))
    out = conv(params, graph, f, pos)

    def radial(p, r):
        def ln(z, g, b):
            mu = z.mean()
            return (z - mu) / math.sqrt(((z - mu) ** 2).mean() + 1e-5) * g + b
        h = np.maximum(ln(r * p["W1"][0] + p["b1"], p["ln1_gamma"], p["ln1_beta"]), 0)
        h = np.maximum(ln(h @ p["W2"] + p["b2"], p["ln2_gamma"], p["ln2_beta"]), 0)
        return h @ p["W3"] + p["b3"]

    s0, s1 = np.zeros(1), np.zeros(3)
    for j in (1, 2):
        d = pos[0] - pos[j]
        r = np.linalg.norm(d)
        u = d / r
        q, v = f[j, 0], f[j, 1:]
        R00 = radial(params["radial"]["0,0"], r)
        R01 = radial(params["radial"]["0,1"], r)
        R10 = radial(params["radial"]["1,0"], r)
        R11 = radial(params["radial"]["1,1"], r)
        s0 += R00 * C * q + R10 * C * (u @ v)
        s1 += (R01[0] * C * u * q + R11[0] * v / math.sqrt(12 * math.pi)
               + R11[1] * np.cross(v, u) / math.sqrt(8 * math.pi)
               + R11[2] * C * math.sqrt(1.5) * (u * (u @ v) - v / 3))
    want0 = s0 / 2 + params["self"]["0"][0, 0] * f[0, 0]
    want1 = s1 / 2 + params["self"]["1"][0, 0] * f[0, 1:]
    np.testing.assert_allclose(out[0], np.concatenate([want0, want1]), rtol=1e-13, atol=1e-14)
    # nodes 1 and 2 receive nothing: 0, self term included (the published mean over no edges)
    np.testing.assert_array_equal(out[1:], 0.0)


def test_isolated_nodes_and_empty_graphs(rng):
    conv = SE3Conv((1, 1), (2, 2), radial_hidden=3)
    params = conv.init(rng)
    for n in (0, 3):
        graph = make_graph(np.zeros((2, 0), dtype=np.int64), n)
        f, pos = rng.normal(size=(n, conv.dim_in)), rng.normal(size=(n, 3))
        out, cache = conv.forward(params, graph, f, pos)
        assert out.shape == (n, conv.dim_out) and not np.any(out)
        grads, (gf, gp) = conv.backward(params, cache, rng.normal(size=out.shape))
        assert gf.shape == f.shape and gp.shape == pos.shape
        assert not np.any(gf) and not np.any(gp)
        assert all(not np.any(a) for d in grads.values() for p in d.values()
                   for a in (p.values() if isinstance(p, dict) else [p]))


def test_coincident_points_raise(rng):
    conv = SE3Conv((1, 1), (1, 1), radial_hidden=3)
    params = conv.init(rng)
    graph = complete_graph(3)
    pos = rng.normal(size=(3, 3))
    pos[2] = pos[0]
    with pytest.raises(ValueError, match="pos"):
        conv(params, graph, rng.normal(size=(3, 4)), pos)


@pytest.mark.parametrize("kwargs, match", [
    ({"channels_in": (0, 0)}, "channels_in"),
    ({"channels_out": ()}, "channels_out"),
    ({"channels_in": "16x0e"}, "channels_in"),
    ({"channels_in": (1, -1)}, r"channels_in\[1\]"),
    ({"channels_in": (1, 1.0)}, r"channels_in\[1\]"),
    ({"self_interaction": 1}, "self_interaction"),
    ({"radial_hidden": 0}, "radial_hidden"),
    ({"backend": "torch"}, "backend"),
    ({"channels_in": (1,) * 8, "channels_out": (1,) * 8}, "harmonics"),
])
def test_bad_specs(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        SE3Conv(**kwargs)


def test_bad_inputs(rng):
    conv = SE3Conv((1, 1), (1, 1), radial_hidden=3)
    params = conv.init(rng)
    graph, f, pos = _conv_problem(rng, conv, n=4)
    with pytest.raises(ValueError, match="f"):
        conv(params, graph, f[:, :3], pos)
    bad = f.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="f"):
        conv(params, graph, bad, pos)
    with pytest.raises(ValueError, match="pos"):
        conv(params, graph, f, pos[:, :2])
    p = copy.deepcopy(params)
    del p["self"]["1"]
    with pytest.raises((KeyError, ValueError), match="self"):
        conv(p, graph, f, pos)


# --- the norm nonlinearity ---------------------------------------------------------------------


def test_norm_nonlinearity_by_hand(rng):
    nl = SE3NormNonlinearity((3, 2))
    params = nl.init(rng)
    f = rng.normal(size=(4, channels_dim((3, 2))))
    out = nl(params, f)
    for l, (start, m) in enumerate(((0, 3), (3, 2))):
        v = f[:, start:start + m * (2 * l + 1)].reshape(4, m, 2 * l + 1)
        n = np.linalg.norm(v, axis=2)
        z = (n - n.mean(1, keepdims=True)) / np.sqrt(n.var(1, keepdims=True) + 1e-5)
        p = params[str(l)]
        t = np.maximum(z * p["ln_gamma"] + p["ln_beta"], 0) @ p["W"] + p["b"]
        want = (t[:, :, None] * v / n[:, :, None]).reshape(4, -1)
        np.testing.assert_allclose(out[:, start:start + m * (2 * l + 1)], want, rtol=1e-13,
                                   atol=1e-15)


def test_norm_nonlinearity_zero_feature_is_torch_clamp(rng):
    """A zero vector: output 0, gradient t / eps times the cotangent (the published clamp),
    and no contribution through the norm."""
    nl = SE3NormNonlinearity((0, 3))
    params = nl.init(rng)
    f = rng.normal(size=(2, 9))
    f[0, 3:6] = 0.0
    out, cache = nl.forward(params, f)
    assert np.all(out[0, 3:6] == 0.0) and np.all(np.isfinite(out))
    g = np.zeros_like(out)
    g[0, 3:6] = rng.normal(size=3)
    grads, (gf,) = nl.backward(params, cache, g)
    t = cache.t[1][0, 1]
    np.testing.assert_allclose(gf[0, 3:6], t / NORM_EPS * g[0, 3:6], rtol=1e-15)
    assert np.all(np.isfinite(gf))


def test_norm_nonlinearity_bad_input(rng):
    nl = SE3NormNonlinearity((2, 2))
    params = nl.init(rng)
    with pytest.raises(ValueError, match="f"):
        nl(params, rng.normal(size=(3, 7)))
    with pytest.raises(ValueError, match="f"):
        nl(params, np.full((3, 8), np.inf))
    with pytest.raises(ValueError, match="channels"):
        SE3NormNonlinearity((0,))


# --- the N-body model ----------------------------------------------------------------------------


def test_published_configuration():
    m = make_model("tfn-se3")
    assert isinstance(m, NBodySE3TFN)
    assert [(c.channels_in, c.channels_out) for c in m.convs] == [
        ((1, 1), (16, 16)), ((16, 16), (16, 16)), ((16, 16), (16, 16)), ((16, 16), (0, 1))]
    assert [n.channels for n in m.norms] == [(16, 16)] * 3
    shapes = m.param_shapes()
    # the published radial output sizes: num_freq * in * out
    assert shapes["conv"]["1"]["radial"]["1,1"]["W3"] == (32, 3 * 16 * 16)
    assert shapes["conv"]["3"]["radial"]["0,1"]["W3"] == (32, 16)
    assert shapes["conv"]["3"]["self"] == {"1": (1, 16)}
    assert shapes["conv"]["0"]["self"] == {"0": (16, 1), "1": (16, 1)}
    n = sum(int(np.prod(s)) for s in _leaves(shapes))
    assert n == 127_024  # sum of p.numel() over the published OursTFN(--nf 32 --degree 2)


def _leaves(tree):
    for v in tree.values():
        if isinstance(v, dict):
            yield from _leaves(v)
        else:
            yield v


def test_model_rotation_translation_and_not_reflection(rng):
    m = NBodySE3TFN(channels=3, num_layers=3, radial_hidden=5)
    params = m.init(rng)
    graph = complete_graph(10, np.repeat([0, 1], 5))
    x = np.concatenate([random_points(rng, 5, min_dist=0.5), random_points(rng, 5,
                                                                          min_dist=0.5)])
    v, q = rng.normal(size=(10, 3)), rng.choice([-1.0, 1.0], size=(10, 1))
    out = m(params, graph, x, v, q)
    R, t = _rotation(rng), rng.normal(size=3)
    np.testing.assert_allclose(m(params, graph, x @ R.T + t, v @ R.T, q), out @ R.T + t,
                               atol=1e-12)
    P = np.diag([1.0, 1.0, -1.0])
    assert np.max(np.abs(m(params, graph, x @ P, v @ P, q) - out @ P)) > 1e-4
