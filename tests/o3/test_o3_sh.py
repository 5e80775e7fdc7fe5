"""Spherical harmonics: values vs mpmath, normalizations by quadrature, equivariance, VJP, the
whole float64 range, edge harmonics."""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref.o3 import Irreps, random_orthogonal
from geomp_ref.o3.spherical_harmonics import (
    edge_harmonics,
    edge_harmonics_vjp,
    spherical_harmonics,
    spherical_harmonics_vjp,
)

LS = list(range(13))


def _mpmath_reference(l, v):
    """e3nn's component-normalised Y^l(v) from mpmath's complex Condon-Shortley harmonics.

    Polar axis +y: theta = acos(y/r), azimuth phi = atan2(x, z); real combination
    sqrt(2)(-1)^m Im Y^{|m|} (m < 0), Y^0, sqrt(2)(-1)^m Re Y^m (m > 0); times sqrt(4 pi) r^l.
    """
    import mpmath

    x, y, z = (mpmath.mpf(float(c)) for c in v)
    r = mpmath.sqrt(x * x + y * y + z * z)
    theta, phi = mpmath.acos(y / r), mpmath.atan2(x, z)
    out = []
    for m in range(-l, l + 1):
        Ylm = mpmath.spherharm(l, abs(m), theta, phi)
        if m < 0:
            val = mpmath.sqrt(2) * (-1) ** m * mpmath.im(Ylm)
        elif m == 0:
            val = mpmath.re(Ylm)
        else:
            val = mpmath.sqrt(2) * (-1) ** m * mpmath.re(Ylm)
        out.append(val * mpmath.sqrt(4 * mpmath.pi) * r**l)
    return out


def test_matches_mpmath(rng):
    import mpmath

    worst = 0.0
    with mpmath.workdps(40):
        for _ in range(12):
            v = rng.normal(size=3)
            v /= np.linalg.norm(v)
            got = spherical_harmonics(LS, v, False, normalization="component")
            i = 0
            for l in LS:
                ref = _mpmath_reference(l, v)
                scale = max(abs(float(t)) for t in ref)
                for k in range(2 * l + 1):
                    err = abs(mpmath.mpf(float(got[i + k])) - ref[k])
                    worst = max(worst, float(err) / scale)
                i += 2 * l + 1
    # the docstring reports 9.3e-16 on 200 points
    assert worst < 1.5e-15


def test_low_degree_closed_forms():
    x = np.array([0.3, -1.2, 0.7])
    Y = spherical_harmonics([0, 1, 2], x, False, normalization="component")
    s15, s5 = np.sqrt(15.0), np.sqrt(5.0)
    a, b, c = x
    expected = [
        1.0,
        *(np.sqrt(3.0) * x),
        s15 * a * c,
        s15 * a * b,
        s5 * (b * b - (a * a + c * c) / 2),
        s15 * b * c,
        s15 / 2 * (c * c - a * a),
    ]
    np.testing.assert_allclose(Y, expected, rtol=2e-15, atol=2e-16)


def _sphere_quadrature(n_theta=13, n_phi=26):
    # Gauss-Legendre in cos(theta) (exact to degree 2 n_theta - 1) times a uniform azimuth grid
    t, w = np.polynomial.legendre.leggauss(n_theta)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    T, P = np.meshgrid(t, phi, indexing="ij")
    s = np.sqrt(1 - T**2)
    pts = np.stack([s * np.sin(P), T, s * np.cos(P)], axis=-1).reshape(-1, 3)  # polar axis +y
    wts = (w[:, None] * np.full(n_phi, 2 * np.pi / n_phi)).reshape(-1)
    return pts, wts


def test_normalizations():
    pts, wts = _sphere_quadrature()
    Y = spherical_harmonics(LS, pts, True)  # 'integral' is the default
    gram = np.einsum("p,pi,pj->ij", wts, Y, Y)
    np.testing.assert_allclose(gram, np.eye(Y.shape[1]), atol=2e-14)
    Yc = spherical_harmonics(LS, pts, True, normalization="component")
    Yn = spherical_harmonics(LS, pts, True, normalization="norm")
    i = 0
    for l in LS:
        sl = slice(i, i + 2 * l + 1)
        np.testing.assert_allclose((Yc[:, sl] ** 2).sum(-1), 2 * l + 1, rtol=1e-14)
        np.testing.assert_allclose((Yn[:, sl] ** 2).sum(-1), 1.0, rtol=1e-14)
        i += 2 * l + 1
    np.testing.assert_allclose(Yc / np.sqrt(4 * np.pi), Y, rtol=1e-15, atol=1e-16)


def test_normalize_flag_scales_input_only(rng):
    x = rng.normal(size=(5, 3)) * 3
    r = np.linalg.norm(x, axis=-1, keepdims=True)
    a = spherical_harmonics(LS, x, False, normalization="norm")
    b = spherical_harmonics(LS, x / r, False, normalization="norm")
    scale = np.concatenate([np.repeat(r**l, 2 * l + 1, axis=-1) for l in LS], axis=-1)
    np.testing.assert_allclose(a, b * scale, rtol=1e-13)
    np.testing.assert_allclose(spherical_harmonics(LS, x, True, "norm"), b, rtol=1e-14, atol=1e-15)


def test_order_and_selection_of_ls(rng):
    x = rng.normal(size=(4, 3))
    full = spherical_harmonics([0, 1, 2, 3], x, True)
    picked = spherical_harmonics([3, 1], x, True)
    np.testing.assert_array_equal(picked, np.concatenate([full[:, 9:16], full[:, 1:4]], -1))
    np.testing.assert_array_equal(spherical_harmonics("0e+1o+2e+3o", x, True), full)
    assert spherical_harmonics(2, x, True).shape == (4, 5)
    assert spherical_harmonics([], x, True).shape == (4, 0)


def test_equivariance_with_reflections(rng):
    irreps = Irreps.spherical_harmonics(12)
    x = rng.normal(size=(6, 3))
    for Q in random_orthogonal(rng, 4):
        D = irreps.D_from_matrix(Q)
        lhs = spherical_harmonics(LS, x @ Q.T, True)
        rhs = spherical_harmonics(LS, x, True) @ D.T
        np.testing.assert_allclose(lhs, rhs, atol=2e-13)
    # parity (-1)^l under the inversion alone
    Y, Ym = spherical_harmonics(LS, x, False), spherical_harmonics(LS, -x, False)
    signs = np.concatenate([np.full(2 * l + 1, (-1.0) ** l) for l in LS])
    np.testing.assert_array_equal(Ym, Y * signs)


def test_zero_vector():
    x = np.array([[1.0, 0, 0], [0.0, 0, 0]])
    with pytest.raises(ValueError, match="x holds a zero vector"):
        spherical_harmonics(2, x, True)
    Y = spherical_harmonics([0, 1, 2], x, True, zero_vector="e3nn")
    np.testing.assert_allclose(Y[1], [1 / np.sqrt(4 * np.pi)] + [0.0] * 8, atol=0)
    # normalize=False needs no direction: Y^l(0) = 0 for l > 0
    np.testing.assert_array_equal(spherical_harmonics([1, 2], x[1], False), np.zeros(8))
    # e3nn clamps |x| at 1e-12: a tiny vector is not brought to the sphere
    tiny = np.array([1e-13, 0.0, 0.0])
    np.testing.assert_allclose(
        spherical_harmonics(1, tiny, True, "component", zero_vector="e3nn"),
        np.sqrt(3) * np.array([0.1, 0, 0]),
        rtol=1e-15,
    )
    np.testing.assert_allclose(
        spherical_harmonics(1, tiny, True, "component"), [np.sqrt(3), 0, 0], rtol=1e-15
    )


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("normalization", ["integral", "component", "norm"])
def test_vjp_central_differences(rng, normalize, normalization):
    ls = [0, 1, 2, 5, 8, 12]
    x = rng.normal(size=(3, 3))
    dim = sum(2 * l + 1 for l in ls)
    g = rng.normal(size=(3, dim))
    v = rng.normal(size=(3, 3))
    gx = spherical_harmonics_vjp(ls, x, g, normalize, normalization)
    h = 1e-6

    def f(t):
        return np.sum(g * spherical_harmonics(ls, x + t * v, normalize, normalization))

    fd = (f(h) - f(-h)) / (2 * h)
    np.testing.assert_allclose(np.sum(gx * v), fd, rtol=1e-7)


def test_vjp_matches_exact_low_degree():
    # Y^1 = sqrt(3) x (component, not normalised): the VJP is sqrt(3) g exactly
    x = np.array([0.3, -0.2, 0.9])
    g = np.array([0.5, 1.5, -2.0])
    np.testing.assert_allclose(
        spherical_harmonics_vjp(1, x, g, False, "component"), np.sqrt(3) * g, rtol=1e-15
    )
    # normalised: the gradient is tangent to the sphere (orthogonal to x)
    gx = spherical_harmonics_vjp([1, 2, 3], x, np.ones(15), True)
    assert abs(gx @ x) < 1e-14


def test_vjp_e3nn_mode_tiny_vector():
    tiny = np.array([1e-13, 0.0, 0.0])
    g = np.array([0.0, 1.0, 2.0])
    # below the clamp u = x / 1e-12 is linear in x: the VJP is sqrt(3) g / 1e-12
    gx = spherical_harmonics_vjp(1, tiny, g, True, "component", zero_vector="e3nn")
    np.testing.assert_allclose(gx, np.sqrt(3) * g / 1e-12, rtol=1e-15)


def test_bad_inputs():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="x must have shape"):
        spherical_harmonics(1, np.ones((2, 2)), True)
    with pytest.raises(ValueError, match="x contains NaN"):
        spherical_harmonics(1, np.array([np.nan, 0, 1]), True)
    with pytest.raises(ValueError, match="ls holds l=13"):
        spherical_harmonics(13, x, True)
    with pytest.raises(ValueError, match="ls="):
        spherical_harmonics("1e", x, True)
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(1, x, True, normalization="unit")
    with pytest.raises(ValueError, match="zero_vector"):
        spherical_harmonics(1, x, True, zero_vector="nan")
    with pytest.raises(TypeError, match="normalize"):
        spherical_harmonics(1, x, "yes")
    with pytest.raises(ValueError, match="grad_out must have shape"):
        spherical_harmonics_vjp([0, 1], x, np.ones((2, 3)), True)


def test_empty_batch_and_constant_degree():
    x = np.zeros((0, 3))
    assert spherical_harmonics([0, 1, 2], x, True).shape == (0, 9)
    assert spherical_harmonics_vjp([0, 1, 2], x, np.zeros((0, 9)), True).shape == (0, 3)
    # Y^0 is constant: value 1/sqrt(4 pi) ('integral'), zero gradient
    y0 = spherical_harmonics(0, np.ones((2, 3)), True)
    np.testing.assert_array_equal(y0, np.full((2, 1), 1 / np.sqrt(4 * np.pi)))
    assert not spherical_harmonics_vjp(0, np.ones((2, 3)), np.ones((2, 1)), True).any()


@pytest.mark.parametrize("scale", [5e-324, 1e-300, 1e-200, 1e-160, 1e160, 1e200, 1e300, 1.7e308])
def test_normalize_accepts_every_finite_nonzero_vector(scale, rng):
    """Y(s x / |s x|) = Y(x / |x|) for any scale (the direction is exact, independent route: the
    unit-scale value), and the VJP is the unit-scale VJP divided by s (where representable)."""
    x = rng.normal(size=(5, 3))
    x /= np.abs(x).max()  # so that x * 1.7e308 is still finite
    if scale == 5e-324:  # the smallest subnormal: components must be multiples of it
        x = np.array([[1.0, 0, 0], [0, -1.0, 0], [3.0, 4.0, 0]])
    want = spherical_harmonics(LS[:5], x, True)
    got = spherical_harmonics(LS[:5], x * scale, True)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    g = rng.normal(size=want.shape)
    gx = spherical_harmonics_vjp(LS[:5], x, g, True)
    if scale >= 1e-300:
        np.testing.assert_allclose(spherical_harmonics_vjp(LS[:5], x * scale, g, True) * scale, gx,
                                   rtol=1e-12, atol=1e-13 * np.abs(gx).max())
    else:  # the true gradient (~1/|x|) exceeds the float64 range: a named error, not inf
        with pytest.raises(ValueError, match="overflows float64"):
            spherical_harmonics_vjp(LS[:5], x * scale, g, True)


def test_the_reported_cases():
    np.testing.assert_allclose(spherical_harmonics(1, [1e200, 0.0, 0.0], True),
                               [np.sqrt(3 / (4 * np.pi)), 0, 0], rtol=1e-15)
    np.testing.assert_allclose(spherical_harmonics(1, [1e-200, 0.0, 0.0], True),
                               [np.sqrt(3 / (4 * np.pi)), 0, 0], rtol=1e-15)
    with pytest.raises(ValueError, match="overflows float64"):
        spherical_harmonics(2, [1e200, 0.0, 0.0], False)
    with pytest.raises(ValueError, match="overflows float64"):
        spherical_harmonics_vjp(3, [1e200, 0.0, 0.0], np.ones(7), False)


def test_edge_harmonics(rng):
    v = rng.normal(size=(6, 3))
    Y = edge_harmonics(2, v, "component")
    np.testing.assert_array_equal(Y, spherical_harmonics([0, 1, 2], v, True, "component"))
    g = rng.normal(size=Y.shape)
    np.testing.assert_array_equal(edge_harmonics_vjp(2, v, g, "component"),
                                  spherical_harmonics_vjp([0, 1, 2], v, g, True, "component"))
    v[3] = 0.0
    with pytest.raises(ValueError, match="pos: edge 3 joins coincident points"):
        edge_harmonics(1, v)
    Ye = edge_harmonics(1, v, "component", zero_length="e3nn")
    np.testing.assert_array_equal(Ye[3], [1.0, 0, 0, 0])
    with pytest.raises(ValueError, match="lmax must be <= 12"):
        edge_harmonics(13, v)
    with pytest.raises(ValueError, match="edge_vec must have shape"):
        edge_harmonics(1, v[:, :2])
