"""o3.Gate: layouts (0o before 0e), exact constants (SciPy quadrature), VJP, O(3), errors."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from geomp_ref.o3.gating import EXACT_CONSTANTS, Gate
from geomp_ref.o3.irreps import Irreps


@pytest.fixture
def gen(request):
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def _orthogonal(gen, det):
    q, r = np.linalg.qr(gen.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) * det > 0 else -q


GATES = [
    ("2x0e+1x0o", ["silu", "tanh"], "1x0e+1x0o+1x0e", ["sigmoid", "abs", "relu"], "1x1e+1x1o+1x2e"),
    ("1x0o", ["tanh"], "2x0e", ["sigmoid"], "1x1e+1x1o"),
    ("3x0e", ["softplus"], "2x0o+1x0e", ["tanh", "shifted_softplus"], "2x2o+1x1e"),
    ("3x0e+2x0e", [None, "identity"], "", [], ""),
]


def test_layout_matches_reference_example():
    # e3nn sorts the input by (l, p): 1o before 1e although written 1e+1o (e3nn 0.6 example).
    g = Gate("1x0o", ["tanh"], "2x0e", ["sigmoid"], "1x1e+1x1o")
    assert str(g.irreps_in) == "1x0o+2x0e+1x1o+1x1e"
    assert str(g.irreps_out) == "1x0o+1x1e+1x1o"
    # a 0o among the gated irreps sorts before the 0e scalars and gates
    g = Gate("2x0e", ["silu"], "2x0e", ["sigmoid"], "1x0o+1x1o")
    assert str(g.irreps_in) == "1x0o+4x0e+1x1o"
    # input_columns maps the written order (scalars, gates, gated) to that layout
    written = np.arange(g.irreps_in.dim, dtype=float)[None]  # 2 scalars, 2 gates, 0o, 1o
    np.testing.assert_array_equal(written[0, g.input_columns], [4, 0, 1, 2, 3, 5, 6, 7])
    # odd gate through an even act gives an even gate; through an odd act flips the parity.
    g = Gate("", [], "1x0o+1x0o", ["abs", "tanh"], "1x1o+1x2e")
    assert str(g.irreps_out) == "1x1o+1x2o"
    g = Gate("1x0o", ["abs"], "", [], "")
    assert str(g.irreps_out) == "1x0e"


def test_hand_computed_values(gen):
    g = Gate("1x0e", ["relu"], "1x0e", ["sigmoid"], "1x1o")
    x = gen.standard_normal((7, 5))  # layout 0e (scalar, gate) then 1o
    out = g({}, x)
    sig = 1 / (1 + np.exp(-x[:, 1]))
    np.testing.assert_allclose(out[:, 0], math.sqrt(2) * np.maximum(x[:, 0], 0), rtol=1e-15)
    np.testing.assert_allclose(
        out[:, 1:], EXACT_CONSTANTS["sigmoid"] * sig[:, None] * x[:, 2:], rtol=1e-14
    )
    raw = Gate("1x0e", ["relu"], "1x0e", ["sigmoid"], "1x1o", normalize_act="none")({}, x)
    np.testing.assert_allclose(raw[:, 1:], sig[:, None] * x[:, 2:], rtol=1e-14)


def test_exact_constants_against_scipy_quadrature():
    from scipy import integrate

    fs = {
        "identity": lambda z: z,
        "abs": abs,
        "relu": lambda z: max(z, 0.0),
        "tanh": math.tanh,
        "sigmoid": lambda z: 1 / (1 + math.exp(-z)),
        "silu": lambda z: z / (1 + math.exp(-z)),
        "softplus": lambda z: math.log1p(math.exp(z)),
        "shifted_softplus": lambda z: math.log1p(math.exp(z)) - math.log(2),
    }
    for name, f in fs.items():
        m2 = sum(
            integrate.quad(
                lambda z, f=f: f(z) ** 2 * math.exp(-z * z / 2),
                a,
                b,
                epsabs=0,
                epsrel=2e-14,
                limit=200,
            )[0]
            for a, b in ((-40, 0), (0, 40))
        ) / math.sqrt(2 * math.pi)
        assert EXACT_CONSTANTS[name] == pytest.approx(m2**-0.5, rel=1e-13), name
    # closed forms
    assert EXACT_CONSTANTS["relu"] == math.sqrt(2)
    assert EXACT_CONSTANTS["identity"] == EXACT_CONSTANTS["abs"] == 1.0


@pytest.mark.parametrize("args", GATES)
@pytest.mark.parametrize("mode", ["exact", "e3nn"])
def test_vjp_matches_finite_differences(args, mode, gen):
    g = Gate(*args, normalize_act=mode)
    x = gen.standard_normal((3, 2, g.irreps_in.dim))
    out, cache = g.forward({}, x)
    assert out.shape == (3, 2, g.irreps_out.dim)
    gy = gen.standard_normal(out.shape)
    _, (gx,) = g.backward({}, cache, gy)
    eps = 1e-6
    for _ in range(2):
        d = gen.standard_normal(x.shape)
        fd = (np.sum(gy * g({}, x + eps * d)) - np.sum(gy * g({}, x - eps * d))) / (2 * eps)
        assert fd == pytest.approx(np.sum(gx * d), rel=1e-7, abs=1e-8 * np.linalg.norm(gx))


@pytest.mark.parametrize("args", GATES[:3])
@pytest.mark.parametrize("det", [1, -1])
def test_equivariant_under_o3(args, det, gen):
    g = Gate(*args)
    x = gen.standard_normal((6, g.irreps_in.dim))
    Q = _orthogonal(gen, det)
    Din = Irreps(g.irreps_in).D_from_matrix(Q)
    Dout = Irreps(g.irreps_out).D_from_matrix(Q)
    np.testing.assert_allclose(g({}, x @ Din.T), g({}, x) @ Dout.T, atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match=r"act_scalars\[0\].*neither even nor odd"):
        Gate("1x0o", ["silu"], "", [], "")
    with pytest.raises(ValueError, match=r"act_gates\[0\]"):
        Gate("", [], "1x0o", ["relu"], "1x1o")
    with pytest.raises(ValueError, match="irreps_gates must hold one scalar per irrep copy"):
        Gate("", [], "2x0e", ["sigmoid"], "1x1o")
    with pytest.raises(ValueError, match="irreps_scalars must hold scalars only"):
        Gate("1x1o", ["tanh"], "", [], "")
    with pytest.raises(ValueError, match="act_scalars must hold one activation per block"):
        Gate("1x0e+1x0o", ["tanh"], "", [], "")
    with pytest.raises(ValueError, match=r"Gate.act_gates\[0\] must be None or one of"):
        Gate("", [], "1x0e", ["gelu"], "1x1o")
    with pytest.raises(ValueError, match="normalize_act"):
        Gate("1x0e", ["tanh"], "", [], "", normalize_act="mc")
    g = Gate("1x0e", ["tanh"], "1x0e", ["sigmoid"], "1x1o")
    with pytest.raises(ValueError, match="x must have shape"):
        g({}, np.ones((2, 4)))
    with pytest.raises(ValueError, match="x contains NaN"):
        g({}, np.full((2, 5), np.inf))
    _, cache = g.forward({}, np.ones((2, 5)))
    with pytest.raises(ValueError, match="grad_out of Gate.backward"):
        g.backward({}, cache, np.ones((2, 3)))
    with pytest.raises(TypeError, match="cache of Gate.backward"):
        g.backward({}, tuple(cache), np.ones((2, 4)))
    with pytest.raises(ValueError, match="unexpected key"):
        g({"w": np.ones(1)}, np.ones((2, 5)))


def test_empty_batch(gen):
    g = Gate("1x0e", ["tanh"], "1x0e", ["sigmoid"], "1x1o")
    out, cache = g.forward({}, np.zeros((0, 5)))
    assert out.shape == (0, 4)
    assert g.backward({}, cache, np.zeros((0, 4)))[1][0].shape == (0, 5)
