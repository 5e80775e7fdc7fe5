"""``ops.layer_norm`` and its VJP: finite differences, torch's ``nn.LayerNorm``, the symmetries of
the normalisation (shift and positive scale of a row, channel permutation), degenerate rows and
bad input."""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref import ops
from geomp_ref.testing import check_vjp_fn

SHAPES = [(5,), (4, 7), (2, 3, 6), (3, 1)]


def _args(rng, shape, affine):
    x = rng.normal(size=shape) * 3.0 + 1.5
    c = shape[-1]
    gamma = rng.normal(size=c) if affine else None
    beta = rng.normal(size=c) if affine else None
    return x, gamma, beta


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("eps", [1e-5, 0.3])
def test_vjp_against_central_differences(shape, affine, eps):
    rng = np.random.default_rng(len(shape) * 10 + shape[-1])
    x, gamma, beta = _args(rng, shape, affine)
    if affine:
        errs = check_vjp_fn(lambda a, g, b: ops.layer_norm(a, g, b, eps=eps),
                            lambda a, g, b, gy: ops.layer_norm_vjp(a, g, b, gy, eps=eps),
                            (x, gamma, beta), rng=rng)
    else:
        errs = check_vjp_fn(lambda a: ops.layer_norm(a, eps=eps),
                            lambda a, gy: ops.layer_norm_vjp(a, None, None, gy, eps=eps)[0],
                            (x,), rng=rng)
    assert max(errs.values()) <= 1e-7, errs


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_matches_torch_layer_norm(shape, eps):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x, gamma, beta = _args(rng, shape, True)
    ln = torch.nn.LayerNorm(shape[-1], eps=eps, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(gamma))
        ln.bias.copy_(torch.tensor(beta))
    xt = torch.tensor(x, requires_grad=True)
    y = ln(xt)
    cot = rng.normal(size=shape)
    y.backward(torch.tensor(cot))
    scale = max(1.0, float(np.max(np.abs(y.detach().numpy()))))
    np.testing.assert_allclose(ops.layer_norm(x, gamma, beta, eps=eps), y.detach().numpy(),
                               rtol=0, atol=1e-14 * scale)
    gx, gg, gb = ops.layer_norm_vjp(x, gamma, beta, cot, eps=eps)
    for ours, theirs in ((gx, xt.grad), (gg, ln.weight.grad), (gb, ln.bias.grad)):
        t = theirs.numpy()
        np.testing.assert_allclose(ours, t, rtol=0, atol=1e-13 * max(1.0, np.max(np.abs(t))))


def test_row_shift_and_scale_invariance_and_channel_permutation():
    rng = np.random.default_rng(3)
    x, gamma, beta = _args(rng, (6, 9), True)
    a = rng.uniform(0.5, 4.0, size=(6, 1))
    c = rng.normal(size=(6, 1)) * 10.0
    y = ops.layer_norm(x, gamma, beta, eps=1e-12)  # eps tiny: the scale invariance is exact-ish
    np.testing.assert_allclose(ops.layer_norm(a * x + c, gamma, beta, eps=1e-12), y,
                               rtol=0, atol=1e-12)
    p = rng.permutation(9)
    np.testing.assert_allclose(ops.layer_norm(x[:, p], gamma[p], beta[p]),
                               ops.layer_norm(x, gamma, beta)[:, p], rtol=0, atol=1e-15)
    # every normalised row has mean 0 and (biased) variance var / (var + eps)
    xh = ops.layer_norm(x, eps=1e-5)
    var = x.var(axis=-1)
    np.testing.assert_allclose(xh.mean(axis=-1), 0.0, atol=1e-15)
    np.testing.assert_allclose(xh.var(axis=-1), var / (var + 1e-5), rtol=1e-13)


def test_constant_rows_and_single_channel_stay_finite():
    rng = np.random.default_rng(4)
    beta, gamma = rng.normal(size=4), rng.normal(size=4)
    x = np.array([[2.5] * 4, [1e300] * 4, [-3.0, 1.0, 0.5, 7.0]])
    y = ops.layer_norm(x, gamma, beta)
    assert np.array_equal(y[:2], np.stack([beta, beta]))  # x_hat = 0 exactly on constant rows
    g = rng.normal(size=x.shape)
    gx, gg, gb = ops.layer_norm_vjp(x[:1], gamma, beta, g[:1])
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gg)) and np.all(np.isfinite(gb))
    # a constant row: the gradient is r (g_hat - mean g_hat), r = eps**-0.5
    g_hat = g[0] * gamma
    np.testing.assert_allclose(gx[0], (g_hat - g_hat.mean()) / np.sqrt(1e-5), rtol=1e-13)
    one = rng.normal(size=(5, 1))
    assert np.array_equal(ops.layer_norm(one), np.zeros((5, 1)))


def test_empty_leading_dimensions():
    x = np.zeros((0, 3))
    assert ops.layer_norm(x, np.ones(3), np.zeros(3)).shape == (0, 3)
    gx, gg, gb = ops.layer_norm_vjp(x, np.ones(3), np.zeros(3), np.zeros((0, 3)))
    assert gx.shape == (0, 3)
    assert np.array_equal(gg, np.zeros(3)) and np.array_equal(gb, np.zeros(3))


@pytest.mark.parametrize("call, exc, words", [
    (lambda: ops.layer_norm(np.array(1.0)), ValueError, "C >= 1"),
    (lambda: ops.layer_norm(np.zeros((3, 0))), ValueError, "C >= 1"),
    (lambda: ops.layer_norm(np.array([[1.0, np.nan]])), ValueError, "x contains NaN"),
    (lambda: ops.layer_norm(np.ones((2, 3)), np.ones(4)), ValueError, "gamma must have shape"),
    (lambda: ops.layer_norm(np.ones((2, 3)), None, np.ones((3, 1))), ValueError, "beta"),
    (lambda: ops.layer_norm(np.ones((2, 3)), eps=0.0), ValueError, "eps"),
    (lambda: ops.layer_norm(np.ones((2, 3)), eps=float("nan")), ValueError, "eps"),
    (lambda: ops.layer_norm(np.ones((2, 3)), eps="small"), TypeError, "eps"),
    (lambda: ops.layer_norm(np.array([["a", "b"]])), TypeError, "x"),
    (lambda: ops.layer_norm_vjp(np.ones((2, 3)), None, None, np.ones((3, 2))), ValueError,
     "grad_y"),
    (lambda: ops.layer_norm_vjp(np.ones((2, 3)), None, None, np.full((2, 3), np.inf)),
     ValueError, "grad_y"),
])
def test_bad_input_names_the_argument(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
