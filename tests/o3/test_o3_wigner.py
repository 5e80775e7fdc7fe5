"""Coupling tensors (wigner_3j), the shipped table, Wigner D, generators, basis change."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from geomp_ref.o3 import (
    angles_to_matrix,
    change_basis_real_to_complex,
    matrix_to_angles,
    random_rotation,
    so3_generators,
    wigner_3j,
    wigner_D,
)
from geomp_ref.o3 import wigner as W

TRIPLES_4 = [
    (l1, l2, l3)
    for l1 in range(5)
    for l2 in range(5)
    for l3 in range(abs(l1 - l2), min(4, l1 + l2) + 1)
]


def _rotate3(C, D1, D2, D3):
    return np.einsum("ijk,ia,jb,kc->abc", C, D1, D2, D3)


def test_table_metadata_and_coverage():
    table = W._load_table()  # verifies the content hash on load
    assert table["lmax"] == 8
    assert table["sympy_version"] and len(table["content_hash"]) == 64
    expected = {
        (a, b, c) for a in range(9) for b in range(9) for c in range(abs(a - b), min(8, a + b) + 1)
    }
    assert set(table["entries"]) == expected


def test_norm_orthogonality_and_invariance(rng):
    # properties, not values: every triple l <= 4, a random rotation each
    for l1, l2, l3 in TRIPLES_4:
        C = wigner_3j(l1, l2, l3)
        assert C.shape == (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1) and C.dtype == np.float64
        np.testing.assert_allclose((C**2).sum(), 1.0, rtol=1e-15)
        G = np.einsum("abc,abd->cd", C, C)
        np.testing.assert_allclose(G, np.eye(2 * l3 + 1) / (2 * l3 + 1), atol=2e-16)
        a, b, c = rng.uniform(-np.pi, np.pi, 3)
        D = [wigner_D(l, a, b, c) for l in (l1, l2, l3)]
        np.testing.assert_allclose(_rotate3(C, *D), C, atol=5e-15)


@pytest.mark.parametrize("triple", [(8, 8, 8), (7, 8, 3), (5, 8, 6), (8, 1, 7), (6, 6, 0)])
def test_invariance_high_l(triple, rng):
    C = wigner_3j(*triple)
    R = random_rotation(rng)
    D = [wigner_D(l, *matrix_to_angles(R)) for l in triple]
    np.testing.assert_allclose(_rotate3(C, *D), C, atol=2e-14)
    np.testing.assert_allclose((C**2).sum(), 1.0, rtol=1e-14)


def test_permutation_symmetries():
    for l1, l2, l3 in TRIPLES_4 + [(8, 7, 6), (3, 8, 6)]:
        C = wigner_3j(l1, l2, l3)
        np.testing.assert_array_equal(wigner_3j(l2, l3, l1), C.transpose(1, 2, 0))  # cyclic
        sign = (-1) ** (l1 + l2 + l3)
        np.testing.assert_array_equal(wigner_3j(l2, l1, l3), sign * C.transpose(1, 0, 2))


def _rsqrt(n: int) -> float:
    """1/sqrt(n) correctly rounded (mpmath at 50 digits), not np.sqrt's double rounding."""
    import mpmath

    with mpmath.workdps(50):
        return float(1 / mpmath.sqrt(n))


def test_closed_forms_correctly_rounded():
    eps = np.zeros((3, 3, 3))
    eps[0, 1, 2] = eps[1, 2, 0] = eps[2, 0, 1] = 1
    eps[0, 2, 1] = eps[2, 1, 0] = eps[1, 0, 2] = -1
    np.testing.assert_array_equal(wigner_3j(1, 1, 1), eps * _rsqrt(6))
    for l in range(9):
        d = np.eye(2 * l + 1) * _rsqrt(2 * l + 1)
        np.testing.assert_array_equal(wigner_3j(0, l, l)[0], d)
        np.testing.assert_array_equal(wigner_3j(l, 0, l)[:, 0], d)
        np.testing.assert_array_equal(wigner_3j(l, l, 0)[:, :, 0], d)
    # 1 x 1 -> 0 is the dot product, 1 x 1 -> 2 the traceless symmetric part (e3nn's sign)
    np.testing.assert_array_equal(wigner_3j(1, 1, 0)[:, :, 0], np.eye(3) * _rsqrt(3))
    assert wigner_3j(1, 1, 2)[0, 2, 0] > 0  # xz -> Y^2_{-2} = sqrt(15) xz > 0


def _real_gaunt_tensor(l1, l2, l3):
    import sympy
    from sympy.physics.wigner import real_gaunt

    G = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for a in range(2 * l1 + 1):
        for b in range(2 * l2 + 1):
            for c in range(2 * l3 + 1):
                G[a, b, c] = float(sympy.N(real_gaunt(l1, l2, l3, a - l1, b - l2, c - l3), 30))
    return G


@pytest.mark.parametrize("triple", [(1, 1, 2), (2, 2, 2), (1, 2, 3), (2, 3, 3)])
def test_exact_vs_sympy_real_gaunt(triple):
    # even l1 + l2 + l3: C = +G/|G| with G the integral of three real harmonics (exact SymPy)
    G = _real_gaunt_tensor(*triple)
    np.testing.assert_allclose(wigner_3j(*triple), G / np.linalg.norm(G), rtol=0, atol=3e-16)


@pytest.mark.parametrize("triple", [(1, 1, 1), (1, 2, 2), (2, 2, 3), (3, 2, 4)])
def test_exact_vs_sympy_3j_route(triple):
    # a second exact route: (-1)^(l1+l2+l3) Re sum Q1 Q2 Q3 (l1 l2 l3; m1 m2 m3), no conj
    import sympy
    from sympy.physics.wigner import wigner_3j as w3j

    l1, l2, l3 = triple
    Q = [np.asarray(change_basis_real_to_complex(l)) for l in triple]
    T = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            m3 = -m1 - m2
            if abs(m3) <= l3:
                T[m1 + l1, m2 + l2, m3 + l3] = float(sympy.N(w3j(l1, l2, l3, m1, m2, m3), 30))
    C = np.einsum("ia,jb,kc,ijk->abc", Q[0], Q[1], Q[2], T).real * (-1) ** (l1 + l2 + l3)
    np.testing.assert_allclose(wigner_3j(*triple), C, rtol=0, atol=4e-16)


def test_returns_copies():
    C = wigner_3j(2, 2, 2)
    C[...] = 7.0
    assert wigner_3j(2, 2, 2).max() < 1


def test_on_demand_high_l_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMP_REF_CACHE", str(tmp_path))
    W._dense.cache_clear()
    try:
        C = wigner_3j(9, 1, 9)
        files = list((tmp_path / "cg").glob("cg_9_1_9.npz"))
        assert len(files) == 1
        np.testing.assert_allclose((C**2).sum(), 1.0, rtol=1e-15)
        a, b, c = 0.4, 1.3, -2.0
        D9, D1 = wigner_D(9, a, b, c), wigner_D(1, a, b, c)
        np.testing.assert_allclose(_rotate3(C, D9, D1, D9), C, atol=2e-14)
        W._dense.cache_clear()
        np.testing.assert_array_equal(wigner_3j(9, 1, 9), C)  # read back from disk
        # the on-demand path and the table path are the same code: compare on a table triple
        flat, vals = W.exact_coupling_float(3, 2, 4)
        np.testing.assert_array_equal(wigner_3j(3, 2, 4).ravel()[flat], vals)
    finally:
        W._dense.cache_clear()


def test_import_does_not_pull_sympy():
    code = (
        "import sys, geomp_ref.o3 as o3; o3.wigner_3j(2, 2, 2); o3.Irreps('1o').D_from_matrix("
        "[[1,0,0],[0,1,0],[0,0,1]]); o3.spherical_harmonics(3, [1., 2., 3.], True); "
        "assert 'sympy' not in sys.modules, 'sympy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_wigner_3j_bad_inputs():
    with pytest.raises(ValueError, match="triangle"):
        wigner_3j(1, 1, 3)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        wigner_3j(1, -1, 1)
    with pytest.raises(TypeError, match="l1 must be an int"):
        wigner_3j(1.0, 1, 1)


def test_wigner_3j_refuses_degrees_it_cannot_serve_quickly():
    import time

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="LMAX_3J = 16"):
        wigner_3j(100, 100, 100)
    with pytest.raises(ValueError, match="above LMAX_3J"):
        wigner_3j(17, 1, 16)
    assert time.perf_counter() - t0 < 1.0  # refused before any SymPy work


# ----------------------------------------------------------------------------------- Wigner D
def test_D1_is_the_rotation_matrix(rng):
    a, b, c = rng.uniform(-7, 7, (3, 10))
    np.testing.assert_allclose(wigner_D(1, a, b, c), angles_to_matrix(a, b, c), atol=4e-16)


def test_D_homomorphism_orthogonality_inverse(rng):
    R1, R2 = random_rotation(rng, 2)
    for l in [0, 1, 2, 5, 8, 12]:
        D1 = wigner_D(l, *matrix_to_angles(R1))
        D2 = wigner_D(l, *matrix_to_angles(R2))
        D12 = wigner_D(l, *matrix_to_angles(R1 @ R2))
        np.testing.assert_allclose(D12, D1 @ D2, atol=5e-14)
        np.testing.assert_allclose(D1 @ D1.T, np.eye(2 * l + 1), atol=5e-15)
        Dinv = wigner_D(l, *matrix_to_angles(R1.T))
        np.testing.assert_allclose(Dinv, D1.T, atol=5e-14)


def test_D_batched_and_scalar_shapes():
    assert wigner_D(2, 0.1, 0.2, 0.3).shape == (5, 5)
    D = wigner_D(2, np.zeros(4), np.linspace(0, 1, 4), 0.5)
    assert D.shape == (4, 5, 5)
    np.testing.assert_allclose(D[1], wigner_D(2, 0.0, 1 / 3, 0.5), atol=0)
    np.testing.assert_allclose(wigner_D(3, 0.0, 0.0, 0.0), np.eye(7), atol=1e-15)


def test_generators_and_basis_change():
    for l in range(6):
        J = so3_generators(l)
        np.testing.assert_allclose(J + J.transpose(0, 2, 1), 0, atol=0)
        # [J_x, J_y] = J_z and cyclic
        for i, j, k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
            np.testing.assert_allclose(J[i] @ J[j] - J[j] @ J[i], J[k], atol=1e-13)
        Q = change_basis_real_to_complex(l)
        assert Q.dtype == np.complex128
        np.testing.assert_allclose(Q @ Q.conj().T, np.eye(2 * l + 1), atol=1e-15)
    # generators of l = 1 are the 3x3 infinitesimal rotations
    np.testing.assert_allclose(so3_generators(1)[1], [[0, 0, 1], [0, 0, 0], [-1, 0, 0]], atol=1e-15)


def test_wigner_D_bad_inputs():
    with pytest.raises(ValueError, match="alpha contains NaN"):
        wigner_D(1, np.nan, 0.0, 0.0)
    with pytest.raises(ValueError, match="l must be >= 0"):
        wigner_D(-1, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="l must be <= 1000"):
        wigner_D(10**6, 0.0, 0.0, 0.0)


def _derivation(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "derivations" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_derivation_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_full_table_regeneration_bit_for_bit():
    # every triple l <= 8 re-derived exactly (SymPy) and compared with the shipped floats
    assert _derivation("clebsch_gordan").main(["--check", "--full"]) == 0


@pytest.mark.slow
def test_sh_identities_proved_exactly():
    # the recursion and gradient identities as exact polynomial identities, l <= 12
    assert _derivation("spherical_harmonics").main(["--check", "--full"]) == 0


def test_wigner_D_vs_high_precision_matrix_exponential(rng):
    # independent route: exp(a J_y) exp(b J_x) exp(c J_y) with mpmath at 30 digits; the generator
    # entries are +-sqrt(n)/2 for integers n, rebuilt exactly from their float64 squares
    import mpmath

    l = 5
    J = so3_generators(l)
    with mpmath.workdps(30):
        Jm = [
            mpmath.matrix(
                [
                    [mpmath.sign(v) * mpmath.sqrt(mpmath.mpf(round(4 * v * v)) / 4) for v in r]
                    for r in G
                ]
            )
            for G in J
        ]
        a, b, c = rng.uniform(-np.pi, np.pi, 3)
        A, B, C = (mpmath.mpf(float(t)) for t in (a, b, c))
        ref = mpmath.expm(A * Jm[1]) * mpmath.expm(B * Jm[0]) * mpmath.expm(C * Jm[1])
        ref = np.array(ref.tolist(), dtype=float)
    np.testing.assert_allclose(wigner_D(l, a, b, c), ref, rtol=0, atol=2e-15)


@pytest.mark.parametrize("t", [0.0, 0.7, np.pi, -2.9])
def test_D_from_matrix_at_gimbal_lock(t):
    # rotations about y (beta = 0) and y-rotations composed with pi about x (beta = pi)
    from geomp_ref.o3 import Irrep, matrix_x, matrix_y

    for l in (1, 3, 6):
        ir = Irrep(l, (-1) ** l)
        np.testing.assert_allclose(
            ir.D_from_matrix(matrix_y(t)), wigner_D(l, t, 0.0, 0.0), atol=1e-14
        )
        R = matrix_y(t) @ matrix_x(np.pi)
        np.testing.assert_allclose(
            ir.D_from_matrix(R), wigner_D(l, t, 0.0, 0.0) @ wigner_D(l, 0.0, np.pi, 0.0), atol=1e-14
        )
