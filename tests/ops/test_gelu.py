"""Exact (erf) GELU and its derivative against 50-digit mpmath, including the far negative tail
where ``(1 + erf(x/√2))/2`` would cancel."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

from geomp_ref import testing
from geomp_ref.layers.mlp import MLP
from geomp_ref.ops import activations

XS = np.array(
    [-36.0, -20.0, -10.0, -5.5, -1.0, -1e-3, -1e-12, 0.0, 1e-300, 1e-8, 0.3, 1.0, 2.5, 8.0, 40.0]
)


def _gelu_mp(x):
    x = mp.mpf(float(x))
    return x * mp.ncdf(x)


def _dgelu_mp(x):
    x = mp.mpf(float(x))
    return mp.ncdf(x) + x * mp.npdf(x)


def _rel(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a)


def test_gelu_values_and_derivative_against_mpmath():
    with mp.workdps(50):
        want = [float(_gelu_mp(x)) for x in XS]
        dwant = [float(_dgelu_mp(x)) for x in XS]
    got = activations.gelu(XS)
    dgot = activations.gelu_vjp(XS, np.ones_like(XS))
    for x, g, w, dg, dw in zip(XS, got, want, dgot, dwant):
        # relative condition number of x Φ(x) and of Φ(x) + x φ(x) grows like x² in the negative
        # tail: rounding x itself costs (1 + x²) ulp there, and that is the bound
        tol = 4e-16 * (1.0 + x * x)
        assert _rel(g, w) <= tol, (x, g, w)
        assert _rel(dg, dw) <= tol, (x, dg, dw)
    # the cancelling form (1 + erf(x/√2))/2 returns exactly 0 in the tail; erfc does not
    assert got[0] < 0


def test_gelu_vjp_scales_the_cotangent_and_matches_finite_differences(rng):
    x = rng.normal(size=(4, 3)) * 3
    g = rng.normal(size=(4, 3))
    np.testing.assert_array_equal(
        activations.gelu_vjp(x, g), activations.gelu_vjp(x, np.ones_like(x)) * g
    )
    errs = testing.check_vjp_fn(activations.gelu, activations.gelu_vjp, (x,), rng=rng)
    assert max(errs.values()) < 1e-9, errs


def test_gelu_is_in_the_table_and_usable_by_blocks(rng):
    f, f_vjp = activations.get("gelu")
    assert f is activations.gelu and f_vjp is activations.gelu_vjp
    assert "gelu" in activations.NAMES
    mlp = MLP((2, 3, 1), activation="gelu", activate_last=True)
    p = mlp.init(rng)
    x = rng.normal(size=(5, 2))
    z = x @ p["W0"] + p["b0"]
    h = z * 0.5 * (1 + np.vectorize(math.erf)(z / np.sqrt(2)))
    z2 = h @ p["W1"] + p["b1"]
    want = z2 * 0.5 * (1 + np.vectorize(math.erf)(z2 / np.sqrt(2)))
    np.testing.assert_allclose(mlp(p, x), want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("x", [0.0, 1.0, -3.0])
def test_gelu_known_points(x):
    """GELU(0) = 0, GELU'(0) = 1/2; GELU(x) - GELU(-x) = x (since Φ(x) + Φ(-x) = 1)."""
    assert activations.gelu(0.0) == 0.0
    assert activations.gelu_vjp(0.0, 1.0) == 0.5
    assert activations.gelu(x) - activations.gelu(-x) == pytest.approx(x, abs=1e-15)
