"""geomp_ref.o3 foundations against e3nn (>= 0.5) in float64: same numbers, no fix-ups."""

from __future__ import annotations

import numpy as np
import pytest

e3nn = pytest.importorskip("e3nn")
torch = pytest.importorskip("torch")

from e3nn import o3 as eo3  # noqa: E402

from geomp_ref import o3  # noqa: E402
from geomp_ref.o3.spherical_harmonics import (  # noqa: E402
    spherical_harmonics,
    spherical_harmonics_vjp,
)

pytestmark = pytest.mark.peers


@pytest.fixture(autouse=True)
def _float64():
    # e3nn builds its buffers in the default dtype: set it before constructing anything
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _triples(lmax):
    return [
        (l1, l2, l3)
        for l1 in range(lmax + 1)
        for l2 in range(lmax + 1)
        for l3 in range(abs(l1 - l2), min(lmax, l1 + l2) + 1)
    ]


def _worst_3j_difference(triples):
    worst = 0.0
    for t in triples:
        worst = max(worst, float(np.abs(o3.wigner_3j(*t) - eo3.wigner_3j(*t).numpy()).max()))
    return worst


def test_wigner_3j_up_to_4_and_sampled_up_to_8(rng):
    # e3nn builds each tensor from scratch (~35 s for all l <= 8 on 2 cores): the full sweep is
    # the slow test below; here every l <= 4 triple plus a random sample up to 8
    high = [t for t in _triples(8) if max(t) > 4]
    sample = [high[i] for i in rng.choice(len(high), size=10, replace=False)]
    assert _worst_3j_difference(_triples(4) + sample + [(8, 8, 8)]) <= 1e-13


@pytest.mark.slow
def test_wigner_3j_all_triples_up_to_8():
    assert _worst_3j_difference(_triples(8)) <= 1e-13


@pytest.mark.parametrize("normalization", ["integral", "component", "norm"])
@pytest.mark.parametrize("normalize", [True, False])
def test_spherical_harmonics_and_gradients(rng, normalization, normalize):
    ls = list(range(13))
    # radii in [0.6, 1.4] keep |x|^12 moderate for normalize=False
    x = rng.normal(size=(40, 3))
    x *= rng.uniform(0.6, 1.4, size=(40, 1)) / np.linalg.norm(x, axis=-1, keepdims=True)
    ours = spherical_harmonics(ls, x, normalize, normalization)
    xt = _t(x).requires_grad_(True)
    ref = eo3.spherical_harmonics(ls, xt, normalize, normalization=normalization)
    scale = max(1.0, float(np.abs(ours).max()))
    np.testing.assert_allclose(ours, ref.detach().numpy(), rtol=0, atol=1e-13 * scale)
    g = rng.normal(size=ours.shape)
    (ref * _t(g)).sum().backward()
    grad_ref = xt.grad.numpy()
    gscale = max(1.0, float(np.abs(grad_ref).max()))
    grad = spherical_harmonics_vjp(ls, x, g, normalize, normalization)
    np.testing.assert_allclose(grad, grad_ref, rtol=0, atol=1e-12 * gscale)


def test_spherical_harmonics_zero_vector_e3nn_mode(rng):
    x = np.array([[0.0, 0.0, 0.0], [1e-13, 0.0, -2e-13], [0.3, 0.4, -1.2]])
    ours = spherical_harmonics([0, 1, 2, 3], x, True, zero_vector="e3nn")
    ref = eo3.spherical_harmonics([0, 1, 2, 3], _t(x), True).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-13)
    xt = _t(x[1:]).requires_grad_(True)
    g = rng.normal(size=(2, 16))
    (eo3.spherical_harmonics([0, 1, 2, 3], xt, True) * _t(g)).sum().backward()
    grad = spherical_harmonics_vjp([0, 1, 2, 3], x[1:], g, True, zero_vector="e3nn")
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12)


def test_wigner_D_and_rotations(rng):
    a, b, c = rng.uniform(-2 * np.pi, 2 * np.pi, (3, 10))
    for l in range(9):
        ref = eo3.wigner_D(l, _t(a), _t(b), _t(c)).numpy()
        np.testing.assert_allclose(o3.wigner_D(l, a, b, c), ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(
        o3.angles_to_matrix(a, b, c), eo3.angles_to_matrix(_t(a), _t(b), _t(c)).numpy(), atol=1e-15
    )
    R = o3.random_rotation(rng, 20)
    ours = np.stack(o3.matrix_to_angles(R))
    ref = np.stack([t.numpy() for t in eo3.matrix_to_angles(_t(R))])
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    axis, angle = rng.normal(size=(5, 3)), rng.normal(size=5)
    np.testing.assert_allclose(
        o3.axis_angle_to_matrix(axis, angle),
        eo3.axis_angle_to_matrix(_t(axis), _t(angle)).numpy(),
        atol=1e-15,
    )
    for l in range(4):
        np.testing.assert_allclose(o3.so3_generators(l), eo3.so3_generators(l).numpy(), atol=1e-14)
        np.testing.assert_allclose(
            o3.change_basis_real_to_complex(l),
            eo3.change_basis_real_to_complex(l).numpy(),
            atol=1e-15,
        )


def test_irreps_D_from_matrix_with_parity(rng):
    text = "2x0e + 1x0o + 2x1o + 1x1e + 1x2e + 1x2o + 1x3o"
    Q = o3.random_orthogonal(rng, 6)
    ours = o3.Irreps(text).D_from_matrix(Q)
    ref = eo3.Irreps(text).D_from_matrix(_t(Q)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-13)
    a, b, c = 0.3, -1.2, 2.2
    for k in (0, 1):
        np.testing.assert_allclose(
            o3.Irreps(text).D_from_angles(a, b, c, k),
            eo3.Irreps(text).D_from_angles(_t(a), _t(b), _t(c), _t(k)).numpy(),
            atol=1e-13,
        )


@pytest.mark.parametrize(
    "text", ["16x0e+8x1o", "1e", "0o + 2x2e", "2x0e+1x1o+1x0o", "1o+0e+1o+0x2e+3x1o", ""]
)
def test_irreps_grammar_and_methods(text):
    ours, ref = o3.Irreps(text), eo3.Irreps(text)
    assert str(ours) == str(ref)
    assert ours.dim == ref.dim and ours.num_irreps == ref.num_irreps and ours.ls == ref.ls
    assert ours.slices() == ref.slices()
    s, r = ours.sort(), ref.sort()
    assert str(s.irreps) == str(r.irreps) and s.p == r.p and s.inv == r.inv
    assert str(ours.simplify()) == str(ref.simplify())
    for ir in ["0e", "1o", "2e"]:
        assert ours.count(ir) == ref.count(ir)
    assert [str(i) for i in o3.Irrep("2o") * o3.Irrep("1e")] == [
        str(i) for i in eo3.Irrep("2o") * eo3.Irrep("1e")
    ]
