"""o3.Linear: VJP vs finite differences, O(3) equivariance, closed forms, errors."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from geomp_ref.o3.irreps import Irreps
from geomp_ref.o3.linear import Linear


@pytest.fixture
def gen(request):
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def _orthogonal(gen, det):
    q, r = np.linalg.qr(gen.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) * det > 0 else -q


SPECS = [
    {"irreps_in": "3x0e+2x1o+1x0e+2x2e+1x0o", "irreps_out": "2x0e+3x1o+1x0o+2x2e", "biases": True},
    {"irreps_in": "3x0e+2x1o", "irreps_out": "4x1o+2x0e+1x1e", "path_normalization": "path"},
    {
        "irreps_in": "3x0e+2x1o",
        "irreps_out": "4x1o+2x0e+1x0e",
        "biases": [False, True, False],
        "instructions": [(0, 1), (1, 0)],
    },
]


def _random_params(spec, gen):
    p = spec.init(gen)
    if "bias" in p:
        p["bias"] = gen.standard_normal(p["bias"].shape)  # init gives zeros
    return p


@pytest.mark.parametrize("kw", SPECS)
def test_vjp_matches_finite_differences(kw, gen):
    lin = Linear(**kw)
    p = _random_params(lin, gen)
    x = gen.standard_normal((4, 3, lin.irreps_in.dim))
    out, cache = lin.forward(p, x)
    g = gen.standard_normal(out.shape)
    gp, (gx,) = lin.backward(p, cache, g)
    assert set(gp) == set(p) and all(gp[k].shape == p[k].shape for k in p)
    eps = 1e-5

    def loss(pp, xx):
        return float(np.sum(g * lin(pp, xx)))

    d = gen.standard_normal(x.shape)
    fd = (loss(p, x + eps * d) - loss(p, x - eps * d)) / (2 * eps)
    assert fd == pytest.approx(np.sum(gx * d), rel=1e-8, abs=1e-8 * np.linalg.norm(gx))
    for k in p:
        d = gen.standard_normal(p[k].shape)
        fd = (loss({**p, k: p[k] + eps * d}, x) - loss({**p, k: p[k] - eps * d}, x)) / (2 * eps)
        assert fd == pytest.approx(np.sum(gp[k] * d), rel=1e-8, abs=1e-8 * np.linalg.norm(gp[k]))


@pytest.mark.parametrize("kw", SPECS)
@pytest.mark.parametrize("det", [1, -1])
def test_equivariant_under_o3(kw, det, gen):
    lin = Linear(**kw)
    p = _random_params(lin, gen)
    x = gen.standard_normal((5, lin.irreps_in.dim))
    Q = _orthogonal(gen, det)
    Din = Irreps(lin.irreps_in).D_from_matrix(Q)
    Dout = Irreps(lin.irreps_out).D_from_matrix(Q)
    np.testing.assert_allclose(lin(p, x @ Din.T), lin(p, x) @ Dout.T, atol=1e-12)


def test_closed_forms(gen):
    # Two input blocks into one output: F = 3 + 7 (element) -> 1/sqrt(10).
    lin = Linear("3x0e+7x0e", "1x0e")
    w = gen.standard_normal(10)
    x = gen.standard_normal((4, 10))
    np.testing.assert_allclose(lin({"weight": w}, x)[:, 0], x @ w / math.sqrt(10), rtol=1e-14)
    # 'path': F = mul_in * #paths -> 1/sqrt(3*2) and 1/sqrt(7*2).
    lin = Linear("3x0e+7x0e", "1x0e", path_normalization="path")
    want = x[:, :3] @ w[:3] / math.sqrt(6) + x[:, 3:] @ w[3:] / math.sqrt(14)
    np.testing.assert_allclose(lin({"weight": w}, x)[:, 0], want, rtol=1e-14)
    # 1o -> 1o with mul 2 -> 1: vectors combined by w / sqrt(2); bias only on 0e.
    lin = Linear("2x1o", "1x1o+1x0e", biases=True)
    assert lin.bias_numel == 1 and lin.weight_numel == 2
    v = gen.standard_normal((3, 6))
    out = lin({"weight": np.array([2.0, -1.0]), "bias": np.array([0.5])}, v)
    np.testing.assert_allclose(out[:, :3], (2 * v[:, :3] - v[:, 3:]) / math.sqrt(2), rtol=1e-14)
    np.testing.assert_array_equal(out[:, 3], 0.5)


def test_default_instructions_and_layout():
    lin = Linear("2x0e+1x1o+3x0e", "1x0e+2x1o+4x0e")
    assert lin.instructions == ((0, 0), (0, 2), (1, 1), (2, 0), (2, 2))
    assert lin.weight_numel == 2 * 1 + 2 * 4 + 1 * 2 + 3 * 1 + 3 * 4
    x = np.zeros((1, lin.irreps_in.dim))
    x[0, 1] = 1.0  # input 0e channel u = 1
    w = np.arange(lin.weight_numel, dtype=float)
    out = lin({"weight": w}, x)
    # path (0, 0): W shape (2, 1) row-major, W[1, 0] = w[1]; F = 2 + 3.
    assert out[0, 0] == pytest.approx(w[1] / math.sqrt(5), rel=1e-15)


def test_errors(gen):
    with pytest.raises(ValueError, match="same irrep"):
        Linear("1x1o", "1x1e", instructions=[(0, 0)])
    with pytest.raises(ValueError, match=r"biases\[0\]"):
        Linear("1x1o", "1x1o", biases=[True])
    with pytest.raises(ValueError, match="biases"):
        Linear("1x0e", "1x0e+1x0e", biases=[True])
    with pytest.raises(ValueError, match="instructions"):
        Linear("1x0e", "1x0e", instructions=[(0, 3)])
    with pytest.raises(ValueError, match="path_normalization"):
        Linear("1x0e", "1x0e", path_normalization="none")
    with pytest.raises(ValueError, match="irreps_in"):
        Linear("1y0e", "1x0e")
    lin = Linear("2x0e+1x1o", "1x1o+1x0e", biases=True)
    p = lin.init(gen)
    with pytest.raises(ValueError, match="x must have shape"):
        lin(p, np.ones((2, 4)))
    with pytest.raises(ValueError, match="x contains NaN"):
        lin(p, np.full((2, 5), np.nan))
    with pytest.raises(ValueError, match=r"params\['bias'\]"):
        lin({"weight": p["weight"], "bias": np.ones(3)}, np.ones((2, 5)))
    with pytest.raises(ValueError, match="params of Linear lacks"):
        lin({}, np.ones((2, 5)))
    with pytest.raises(ValueError, match="unexpected key"):
        lin({**p, "extra": np.ones(2)}, np.ones((2, 5)))
    out, cache = lin.forward(p, np.ones((2, 5)))
    with pytest.raises(ValueError, match="grad_out of Linear.backward"):
        lin.backward(p, cache, np.ones((2, 3)))
    with pytest.raises(TypeError, match="cache of Linear.backward"):
        lin.backward(p, tuple(cache), out)
    with pytest.raises(TypeError, match="rng"):
        lin.init("seed")


def test_zero_multiplicities(gen):
    lin = Linear("0x0e+1x1o", "2x1o+0x0e", biases=True)
    p = lin.init(gen)
    assert set(p) == {"weight"} and lin.weight_numel == 2
    x = gen.standard_normal((3, 3))
    out, cache = lin.forward(p, x)
    np.testing.assert_allclose(out, np.concatenate([p["weight"][0] * x, p["weight"][1] * x], 1))
    assert lin.backward(p, cache, out)[1][0].shape == x.shape
