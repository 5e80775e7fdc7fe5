"""The pieces of the position-orientation layers: pair invariants, polynomial features, the grid
contractions and the kernel coordinates, each against another formula and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref import testing
from geomp_ref.layers.position_orientation_ops import (
    bundle_coords,
    bundle_coords_vjp,
    bundle_messages,
    bundle_messages_vjp,
    fiber_mix,
    fiber_mix_vjp,
    pair_invariants,
    pair_invariants_vjp,
    point_cloud_invariants,
    point_cloud_invariants_vjp,
    polynomial_features,
    polynomial_features_size,
    polynomial_features_vjp,
)
from geomp_ref.lie.grids import orientation_grid


def _fd_ok(errs, tol=1e-8):
    assert max(errs.values()) < tol, errs


def test_invariants_against_other_formulas(rng):
    x = rng.normal(size=(7, 3))
    o = orientation_grid("fibonacci", 9)
    inv1, inv2 = pair_invariants(x, o)
    np.testing.assert_allclose(inv1, np.einsum("ed,gd->eg", x, o), atol=1e-15)
    # |x - (x.o)o| = |x x o| for unit o
    np.testing.assert_allclose(
        inv2, np.linalg.norm(np.cross(x[:, None], o[None]), axis=-1), rtol=1e-13
    )
    x2, o2 = rng.normal(size=(5, 2)), orientation_grid("uniform", 6)
    _, s = pair_invariants(x2, o2)
    ang = np.arctan2(x2[:, 1], x2[:, 0])[:, None] - np.arctan2(o2[:, 1], o2[:, 0])[None]
    np.testing.assert_allclose(s, np.linalg.norm(x2, axis=1)[:, None] * np.sin(ang), atol=1e-14)


@pytest.mark.parametrize("dim", [2, 3])
def test_invariants_vjps_finite_differences(dim, rng):
    x = rng.normal(size=(4, dim))
    o = rng.normal(size=(3, dim))  # not unit: the VJP holds for the formula, not only on S^{D-1}
    _fd_ok(testing.check_vjp_fn(
        lambda x, o: np.stack(pair_invariants(x, o), -1),
        lambda x, o, g: pair_invariants_vjp(x, o, g[..., 0], g[..., 1]), (x, o), rng=rng))
    os_, od = rng.normal(size=(4, dim)), rng.normal(size=(4, dim))
    _fd_ok(testing.check_vjp_fn(point_cloud_invariants, point_cloud_invariants_vjp,
                                (x, os_, od), rng=rng))


def test_point_cloud_invariants_use_the_receivers_orientation(rng):
    x, os_, od = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    od /= np.linalg.norm(od, axis=1, keepdims=True)
    inv = point_cloud_invariants(x, os_, od)
    for e in range(5):
        a, b = pair_invariants(x[e:e + 1], od[e:e + 1])
        np.testing.assert_allclose(inv[e], [a[0, 0], b[0, 0], os_[e] @ od[e]], rtol=1e-14)


def test_self_loop_uses_zero_subgradient():
    """x_ij = 0 (self-loop): inv2 = |0| is not differentiable; the VJP is finite and uses 0."""
    gx, go = pair_invariants_vjp(
        np.zeros((1, 3)), orientation_grid("octahedron"), np.zeros((1, 6)), np.ones((1, 6))
    )
    np.testing.assert_array_equal(gx, 0.0)
    np.testing.assert_array_equal(go, 0.0)


@pytest.mark.parametrize("n,degree", [(2, 3), (1, 3), (3, 2), (2, 1), (2, 4)])
def test_polynomial_features_against_monomials(n, degree, rng):
    z = rng.normal(size=(3, 4, n))
    want = []
    for d in range(1, degree + 1):
        for idx in np.ndindex(*(n,) * d):  # row-major: the first factor varies slowest
            want.append(np.prod([z[..., a] for a in idx], axis=0))
    P = polynomial_features(z, degree)
    assert P.shape[-1] == polynomial_features_size(n, degree) == len(want)
    np.testing.assert_allclose(P, np.stack(want, -1), rtol=1e-15)
    _fd_ok(testing.check_vjp_fn(lambda z: polynomial_features(z, degree),
                                lambda z, g: polynomial_features_vjp(z, degree, g), (z,),
                                rng=rng))


def test_polynomial_features_errors():
    with pytest.raises(ValueError, match="degree"):
        polynomial_features(np.ones((2, 2)), 0)
    with pytest.raises(ValueError, match="degree"):
        polynomial_features(np.ones((2, 64)), 12)  # 64^12 features cannot fit
    with pytest.raises(ValueError, match="grad_out"):
        polynomial_features_vjp(np.ones((2, 2)), 2, np.ones((2, 5)))


@pytest.mark.parametrize("full", [False, True])
def test_contractions_against_loops_and_fd(full, rng):
    N, E, G, C, Co = 3, 4, 3, 2, 3
    y1 = rng.normal(size=(N, G, C))
    kf = rng.normal(size=(G, G, Co * C if full else C))
    y = fiber_mix(y1, kf, full)
    for n in range(N):
        for m in range(G):
            acc = sum((kf[k, m].reshape(Co, C) @ y1[n, k]) if full else kf[k, m] * y1[n, k]
                      for k in range(G)) / G
            np.testing.assert_allclose(y[n, m], acc, rtol=1e-14)
    _fd_ok(testing.check_vjp_fn(lambda a, b: fiber_mix(a, b, full),
                                lambda a, b, g: fiber_mix_vjp(a, b, g, full), (y1, kf), rng=rng))
    fs = rng.normal(size=(E, G, C))
    kk = rng.normal(size=(E, G, G, Co * C if full else C))
    m = bundle_messages(kk, fs, full)
    for e in range(E):
        for m_ in range(G):
            acc = sum((kk[e, k, m_].reshape(Co, C) @ fs[e, k]) if full else kk[e, k, m_] * fs[e, k]
                      for k in range(G))
            np.testing.assert_allclose(m[e, m_], acc, rtol=1e-14)
    _fd_ok(testing.check_vjp_fn(lambda a, b: bundle_messages(a, b, full),
                                lambda a, b, g: bundle_messages_vjp(a, b, g, full), (kk, fs),
                                rng=rng))


@pytest.mark.parametrize("separable", [True, False])
def test_bundle_coords_vjp(separable, rng):
    x, o = rng.normal(size=(4, 3)), rng.normal(size=(3, 3))

    def fn(x, o):
        c, fc = bundle_coords(x, o, separable)
        return (c, fc) if separable else c

    def fn_vjp(x, o, g):
        return bundle_coords_vjp(x, o, *(g if separable else (g,)))

    _fd_ok(testing.check_vjp_fn(fn, fn_vjp, (x, o), rng=rng))
