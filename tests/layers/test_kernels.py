"""Kernel specs: B-spline values against independent routes, partition of unity, locality, VJPs by
finite differences, the WeightNet layout, and the block contract's named errors.

The kernel specs take no graph and have one input whose row count is free, so they are not in the
case registry (its hostile battery shortens inputs by a row and expects an error); the contract
checks that apply to them live here.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from geomp_ref import testing
from geomp_ref.layers.bspline import MAX_DEGREE, cardinal_bspline_derivative
from geomp_ref.layers.kernels import (
    BSplineKernel,
    MLPKernel,
    RadialKernel,
    cardinal_bspline,
    is_kernel_spec,
)
from geomp_ref.ops import activations, radial

SPECS = {
    "mlp-weightnet": (MLPKernel(3, 4, (8, 8), "silu", activate_last=True), (-2.0, 2.0)),
    "mlp-linear-tail": (MLPKernel(2, 3, (5,), "tanh"), (-2.0, 2.0)),
    "radial-gaussian": (RadialKernel(4, 6, 2.0, "gaussian", (8,)), (0.05, 2.5)),
    "radial-bessel": (RadialKernel(3, 5, 2.0, "bessel", (8,), envelope="polynomial", bias=False),
                      (0.05, 2.5)),
    # envelope on the output: SchNet's filter and TFN's radial function (special_cases lesson)
    "radial-ssp-cosine-output": (RadialKernel(4, 6, 2.0, "gaussian", (8,), "shifted_softplus",
                                              envelope_at="output"), (0.05, 2.5)),
    "radial-e3nn-smooth-output": (RadialKernel(3, 5, 2.0, "e3nn_gaussian", (8,), bias=False,
                                               envelope="smooth", envelope_at="output"),
                                  (0.05, 2.5)),
    "bspline-R3": (BSplineKernel(3, 4, 3, 5, 1.5), (-2.5, 2.5)),
    "bspline-se2": (BSplineKernel(3, 2, 3, (4, 4, 7), (2.0, 2.0, np.pi)), (-3.0, 3.0)),
    "bspline-se3": (BSplineKernel(6, 2, 3, 3, (1.0, 1.0, 1.0, 2.0, 2.0, 2.0)), (-2.0, 2.0)),
    "bspline-quadratic-R1": (BSplineKernel(1, 3, 2, 9, 1.0), (-1.5, 1.5)),
}


def _cox_de_boor(t, n):
    """Independent route (Cox-de Boor):
    B_n(t) = [((n+1)/2 + t) B_{n-1}(t+1/2) + ((n+1)/2 - t) B_{n-1}(t-1/2)] / n."""
    if n == 0:
        return ((t >= -0.5) & (t < 0.5)).astype(float)
    h = 0.5 * (n + 1)
    return ((h + t) * _cox_de_boor(t + 0.5, n - 1) + (h - t) * _cox_de_boor(t - 0.5, n - 1)) / n


def _sympy_bspline(n):
    """Independent route: B_n as the n-fold convolution of the box, by SymPy integration."""
    t, s = sp.symbols("t s", real=True)
    box = sp.Piecewise((1, (t >= -sp.Rational(1, 2)) & (t < sp.Rational(1, 2))), (0, True))
    b = box
    for _ in range(n):
        # (B * B_0)(t) = integral of B over [t - 1/2, t + 1/2]
        b = sp.piecewise_fold(sp.integrate(b.subs(t, s), (s, t - sp.Rational(1, 2),
                                                           t + sp.Rational(1, 2))))
    return t, b


@pytest.mark.parametrize("n", range(MAX_DEGREE + 1))
def test_bspline_matches_cox_de_boor(n):
    t = np.linspace(-(n + 3) / 2, (n + 3) / 2, 1001)
    np.testing.assert_allclose(cardinal_bspline(t, n), _cox_de_boor(t, n), rtol=0, atol=1e-15)
    # derivative = B_{n-1}(t + 1/2) - B_{n-1}(t - 1/2)
    if n >= 1:
        want = _cox_de_boor(t + 0.5, n - 1) - _cox_de_boor(t - 0.5, n - 1)
        np.testing.assert_allclose(cardinal_bspline_derivative(t, n), want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_bspline_matches_sympy_convolution(n):
    t, b = _sympy_bspline(n)
    pts = [Fraction(k, 7) - Fraction(n + 2, 2) for k in range(7 * (n + 2) + 1)]
    want = np.array([float(b.subs(t, sp.Rational(p.numerator, p.denominator))) for p in pts])
    got = cardinal_bspline(np.array([float(p) for p in pts]), n)
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-16)  # input rounding + a few ulp


@pytest.mark.parametrize("n", range(MAX_DEGREE + 1))
def test_partition_of_unity_and_support(n):
    u = np.random.default_rng(n).uniform(-5, 5, 500)
    total = sum(cardinal_bspline(u - i, n) for i in range(-12, 13))
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=8e-16)
    half = (n + 1) / 2
    left = np.linspace(-half - 3, -half, 50)[:-1]  # -half itself is inside (half-open support)
    outside = np.concatenate([left, np.linspace(half, half + 3, 50)])
    assert np.all(cardinal_bspline(outside, n) == 0.0)
    inside = np.linspace(-half, half, 51)[1:-1]
    assert np.all(cardinal_bspline(inside, n) > 0)
    # the tails are accurate relative to their size: B_n(t) = (half - |t|)^n / n! near the ends
    t = half - np.array([1e-3, 1e-6, 1e-9])
    tail = (half - t) ** n / math.factorial(n)  # half - t is exact (Sterbenz)
    np.testing.assert_allclose(cardinal_bspline(t, n), tail, rtol=1e-14)
    np.testing.assert_allclose(cardinal_bspline(-t, n), tail, rtol=1e-14)


def test_bspline_kernel_matches_dense_sum_over_all_centres(rng):
    spec = BSplineKernel(3, 2, 3, (4, 5, 6), (1.0, 2.0, np.pi))
    params = spec.init(rng)
    x = rng.uniform(-4, 4, size=(40, 3))
    k, _ = spec.forward(params, x)
    C = spec.centres()
    s = np.array([2.0 / 3, 1.0, 2 * np.pi / 5])
    W = np.prod(_cox_de_boor((x[:, None, :] - C[None]) / s, 3), axis=-1)  # (M, P), every centre
    np.testing.assert_allclose(k, W @ params["coeffs"], rtol=0, atol=1e-14)


def test_bspline_kernel_partition_of_unity_inside_the_grid(rng):
    """Constant coefficients reproduce the constant where every contributing centre exists."""
    spec = BSplineKernel(2, 1, 3, 9, 2.0)
    s = 0.5
    inner = 2.0 - 2 * s  # (n+1)/2 = 2 spacings from the edge
    x = rng.uniform(-inner, inner, size=(200, 2))
    k, _ = spec.forward({"coeffs": np.full((81, 1), 3.0)}, x)
    np.testing.assert_allclose(k, 3.0, rtol=1e-15)


def test_bspline_kernel_is_local(rng):
    """Changing one coefficient changes k only within (n+1)s/2 of that centre, on every axis."""
    spec = BSplineKernel(2, 1, 3, 7, 3.0)
    params = spec.init(rng)
    x = rng.uniform(-6, 6, size=(2000, 2))
    bumped = {"coeffs": params["coeffs"].copy()}
    bumped["coeffs"][24] += 1.0  # centre (3, 3) of the 7 x 7 grid = (0, 0)
    diff = spec.forward(bumped, x)[0] - spec.forward(params, x)[0]
    near = np.all(np.abs(x) < 2.0, axis=1)  # (n+1) s / 2 = 2 * 1.0
    assert np.all(diff[~near] == 0.0)
    assert np.all(diff[near] > 0.0)
    far = rng.uniform(7.1, 1e300, size=(10, 2))  # beyond the support: exactly zero, no overflow
    assert np.all(spec.forward(params, far)[0] == 0.0)
    assert np.all(spec.forward(params, -far)[0] == 0.0)


@pytest.mark.parametrize("name", list(SPECS))
def test_vjp_by_finite_differences(name, rng):
    spec, (lo, hi) = SPECS[name]
    params = spec.init(rng)
    x = rng.uniform(lo, hi, size=(25, spec.in_dim))
    errs = testing.check_vjp(spec, params, None, (x,), rng=rng, num_directions=3)
    assert max(errs.values()) <= 1e-7, errs


def test_bspline_coefficient_gradient_is_the_weight_matrix(rng):
    spec = BSplineKernel(2, 3, 3, 6, 1.0)
    params = spec.init(rng)
    x = rng.uniform(-1.5, 1.5, size=(30, 2))
    k, cache = spec.forward(params, x)
    g = rng.normal(size=k.shape)
    grads, _ = spec.backward(params, cache, g)
    W = np.prod(_cox_de_boor((x[:, None, :] - spec.centres()[None]) / 0.4, 3), axis=-1)
    np.testing.assert_allclose(grads["coeffs"], W.T @ g, rtol=0, atol=1e-14)


def test_mlp_kernel_activate_last_is_weightnet(rng):
    """Swish after all three layers, as LieConv's WeightNet (written out by hand here)."""
    spec = MLPKernel(6, 16, (32, 32), "silu", activate_last=True)
    p = spec.init(rng)
    x = rng.normal(size=(9, 6))
    h = x
    for k in range(3):
        z = h @ p[f"W{k}"] + p[f"b{k}"]
        h = z / (1.0 + np.exp(-z))
    np.testing.assert_allclose(spec.forward(p, x)[0], h, rtol=1e-14, atol=1e-15)
    plain = MLPKernel(6, 16, (32, 32), "silu")
    assert np.abs(plain.forward(p, x)[0] - h).max() > 1e-3


def test_radial_kernel_is_mlp_of_basis_times_envelope(rng):
    spec = RadialKernel(3, 4, 2.0, "gaussian", (5,), envelope="cosine")
    p = spec.init(rng)
    d = rng.uniform(0, 3, size=(12, 1))
    mu, gamma = np.linspace(0, 2, 4), 0.5 / (2 / 3) ** 2
    e = np.exp(-gamma * (d - mu) ** 2) * np.where(d < 2, 0.5 * (np.cos(np.pi * d / 2) + 1), 0)
    h = activations.silu(e @ p["W0"] + p["b0"]) @ p["W1"] + p["b1"]
    np.testing.assert_allclose(spec.forward(p, d)[0], h, rtol=1e-13, atol=1e-15)
    # the library's basis agrees with the formula used above
    np.testing.assert_allclose(radial.gaussian_rbf(d[:, 0], mu, gamma)[:, 0],
                               np.exp(-gamma * d[:, 0] ** 2))


@pytest.mark.parametrize("name", list(SPECS))
def test_contract_errors_are_named(name, rng):
    spec, (lo, hi) = SPECS[name]
    params = spec.init(3)
    assert is_kernel_spec(spec)
    x = rng.uniform(lo, hi, size=(5, spec.in_dim))
    for bad in (x[:, :-1] if spec.in_dim > 1 else np.zeros((5, 2)), x[0], x.astype(complex),
                np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x)):
        with pytest.raises((ValueError, TypeError), match="coords"):
            spec.forward(params, bad)
    leaf = sorted(params)[len(params) // 2]
    for bad_leaf in (None, [params[leaf]], np.zeros(params[leaf].shape + (2,)),
                     np.full(params[leaf].shape, np.nan)):
        with pytest.raises((ValueError, TypeError), match=leaf):
            spec.forward({**params, leaf: bad_leaf}, x)
    with pytest.raises(ValueError, match="unexpected"):
        spec.forward({**params, "extra": np.zeros(1)}, x)
    k, cache = spec.forward(params, x)
    with pytest.raises(ValueError, match="grad_out"):
        spec.backward(params, cache, np.zeros(k.shape + (1,)))
    with pytest.raises(TypeError, match="cache"):
        spec.backward(params, tuple(cache)[:-1], np.zeros(k.shape))
    with pytest.raises(TypeError, match="rng"):
        spec.init("seed")
    x0, p0 = x.copy(), {key: v.copy() for key, v in params.items()}
    spec.backward(params, cache, np.ones(k.shape))
    np.testing.assert_array_equal(x, x0)
    for key in params:
        np.testing.assert_array_equal(params[key], p0[key])
    empty, cache0 = spec.forward(params, np.zeros((0, spec.in_dim)))
    assert empty.shape == (0, spec.out_dim)
    _grads, (gx,) = spec.backward(params, cache0, np.zeros((0, spec.out_dim)))
    assert gx.shape == (0, spec.in_dim)


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: MLPKernel(0, 2), "in_dim"),
        (lambda: MLPKernel(2, 2.5), "out_dim"),
        (lambda: MLPKernel(2, 2, (4, 0)), "hidden"),
        (lambda: MLPKernel(2, 2, 4), "hidden"),
        (lambda: MLPKernel(2, 2, activation="mish"), "activation"),
        (lambda: MLPKernel(2, 2, activate_last=1), "activate_last"),
        (lambda: RadialKernel(2, 1, 2.0), "num_basis"),
        (lambda: RadialKernel(2, 4, -1.0), "cutoff"),
        (lambda: RadialKernel(2, 4, 1.0, basis="sinc"), "basis"),
        (lambda: RadialKernel(2, 4, 1.0, envelope="hard"), "envelope"),
        (lambda: RadialKernel(2, 4, 1.0, envelope_at="middle"), "envelope_at"),
        (lambda: RadialKernel(2, 1, 1.0, basis="e3nn_gaussian"), "num_basis"),
        (lambda: BSplineKernel(2, 2, degree=MAX_DEGREE + 1), "degree"),
        (lambda: BSplineKernel(2, 2, grid_size=1), "grid_size"),
        (lambda: BSplineKernel(2, 2, grid_size=(3, 3, 3)), "grid_size"),
        (lambda: BSplineKernel(2, 2, extent=(1.0, np.inf)), "extent"),
        (lambda: BSplineKernel(6, 2, grid_size=10**5), "grid_size"),
        (lambda: BSplineKernel(True, 2), "in_dim"),
    ],
)
def test_bad_fields_are_named(make, field):
    with pytest.raises((ValueError, TypeError), match=field):
        make()


def test_radial_kernel_envelope_on_the_output_is_e3nn_radial_function(rng):
    """``envelope_at="output"`` with e3nn's basis and cutoff, written out from e3nn's formulas:
    ``phi(d/c) * (silu(e(d) W0) W1)``, ``e_k = sqrt(B)/1.12 exp(-((d - mu_k)/delta)^2)``."""
    B, c = 5, 2.0
    spec = RadialKernel(3, B, c, "e3nn_gaussian", (4,), "silu", bias=False, envelope="smooth",
                        envelope_at="output")
    p = spec.init(rng)
    d = np.concatenate([rng.uniform(0, 3, size=11), [0.0, 1.0, 2.0]])[:, None]
    mu = np.linspace(0, c, B)
    e = math.sqrt(B) / 1.12 * np.exp(-(((d - mu) / (mu[1] - mu[0])) ** 2))
    u = d[:, 0] / c
    phi = np.where(u <= 0.5, 1.0, np.where(u >= 1.0, 0.0, 0.5 * (1 - np.cos(2 * np.pi * (u - 1)))))
    want = (activations.silu(e @ p["W0"]) @ p["W1"]) * phi[:, None]
    np.testing.assert_allclose(spec.forward(p, d)[0], want, rtol=1e-13, atol=1e-15)
    # the input-side envelope is a different kernel
    inner = RadialKernel(3, B, c, "e3nn_gaussian", (4,), "silu", bias=False, envelope="smooth")
    assert np.abs(inner.forward(p, d)[0] - want).max() > 1e-3


def test_radial_kernel_output_envelope_far_away_is_exactly_zero(rng):
    spec = RadialKernel(2, 4, 1.0, "gaussian", (3,), envelope_at="output")
    p = spec.init(rng)
    d = np.array([[0.3], [1.0], [5.0], [1e200]])
    k, cache = spec.forward(p, d)
    assert np.all(k[1:] == 0.0)
    grads, (gd,) = spec.backward(p, cache, np.ones_like(k))
    assert np.all(np.isfinite(gd)) and np.all(gd[2:] == 0.0)
    assert all(np.all(np.isfinite(v)) for v in grads.values())


def test_radial_kernel_refuses_negative_distances():
    spec = RadialKernel(2, 3, 1.0)
    with pytest.raises(ValueError, match="distances >= 0"):
        spec.forward(spec.init(0), np.array([[0.5], [-0.1]]))


def test_deterministic_and_seeded():
    spec = BSplineKernel(3, 2, 3, 4, 1.0)
    np.testing.assert_array_equal(spec.init(5)["coeffs"],
                                  spec.init(np.random.default_rng(5))["coeffs"])
    x = np.random.default_rng(1).uniform(-1.5, 1.5, size=(50, 3))
    a = spec.forward(spec.init(5), x)[0]
    b = spec.forward(spec.init(5), x)[0]
    np.testing.assert_array_equal(a, b)
