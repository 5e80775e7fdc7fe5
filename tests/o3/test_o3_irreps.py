"""Irrep / Irreps: e3nn's grammar, algebra, sort/simplify, and representation matrices."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from geomp_ref.o3 import Irrep, Irreps, random_orthogonal, random_rotation


def test_irrep_parsing_and_properties():
    assert Irrep("1o") == Irrep(1, -1) == Irrep((1, -1)) == (1, -1)
    assert Irrep("2e").p == 1 and Irrep("2e").l == 2 and Irrep("2e").dim == 5
    assert Irrep("3y") == Irrep(3, -1) and Irrep("2y") == Irrep(2, 1)
    assert Irrep(" 4 e ") == Irrep(4, 1)
    assert Irrep(Irrep("1e")) is not None and repr(Irrep(0, -1)) == "0o"
    assert Irrep("0e").is_scalar() and not Irrep("0o").is_scalar()
    assert not Irrep("1e").is_scalar()
    assert sorted([Irrep("1e"), Irrep("0e"), Irrep("1o"), Irrep("0o")]) == [
        Irrep("0o"),
        Irrep("0e"),
        Irrep("1o"),
        Irrep("1e"),
    ]
    assert list(Irrep.iterator(1)) == [Irrep("0e"), Irrep("0o"), Irrep("1o"), Irrep("1e")]
    assert hash(Irrep("1o")) == hash(Irrep(1, -1))
    assert pickle.loads(pickle.dumps(Irrep("2o"))) == Irrep("2o")


def test_irrep_product_selection_rule():
    assert list(Irrep("1o") * Irrep("1o")) == [Irrep("0e"), Irrep("1e"), Irrep("2e")]
    assert list(Irrep("2e") * Irrep("3o")) == [Irrep(l, -1) for l in range(1, 6)]
    assert list(Irrep("0o") * Irrep("2o")) == [Irrep("2e")]
    for l1 in range(4):
        for l2 in range(4):
            ls = [ir.l for ir in Irrep(l1, 1) * Irrep(l2, -1)]
            assert ls == list(range(abs(l1 - l2), l1 + l2 + 1))
    assert 3 * Irrep("1o") == Irrep("1o") * 3 == Irreps("3x1o")
    assert Irrep("1o") + "0e" == Irreps("1o+0e")


@pytest.mark.parametrize(
    ("text", "blocks"),
    [
        ("16x0e+8x1o", [(16, (0, 1)), (8, (1, -1))]),
        ("1e", [(1, (1, 1))]),
        ("0o + 2x2e", [(1, (0, -1)), (2, (2, 1))]),
        ("", []),
        ("  3 x 1y ", [(3, (1, -1))]),
        ("0x1e+1o", [(0, (1, 1)), (1, (1, -1))]),
    ],
)
def test_irreps_grammar(text, blocks):
    ir = Irreps(text)
    assert [(m, tuple(i)) for m, i in ir] == blocks
    assert Irreps(str(ir)) == ir
    assert Irreps(list(ir)) == ir and Irreps(ir) is ir


def test_irreps_sizes_and_slices():
    x = Irreps("2x0e + 1x1o + 3x2e + 0o")
    assert x.dim == 2 + 3 + 15 + 1
    assert x.num_irreps == 7
    assert x.ls == [0, 0, 1, 2, 2, 2, 0]
    assert x.lmax == 2
    assert x.slices() == [slice(0, 2), slice(2, 5), slice(5, 20), slice(20, 21)]
    assert x.count("0e") == 2 and x.count(Irrep("2e")) == 3 and x.count("1e") == 0
    assert "1o" in x and "1e" not in x
    assert [ir.dim for _, ir in x] == [1, 3, 5, 1] and x[2].dim == 15
    assert x[1:3] == Irreps("1x1o+3x2e") and isinstance(x[1:3], Irreps)
    assert Irreps("").dim == 0 and Irreps(None).num_irreps == 0
    assert Irreps("3x0e").is_scalar() and not Irreps("0e+0o").is_scalar()
    with pytest.raises(ValueError, match="empty"):
        _ = Irreps("").lmax


def test_irreps_algebra_equality_hash():
    a, b = Irreps("2x0e"), Irreps("1o")
    assert a + b == Irreps("2x0e+1x1o")
    assert a + "1o" == "2x0e" + b == Irreps("2x0e+1o")
    assert 2 * Irreps("0e+1o") == Irreps("0e+1o") * 2 == Irreps("0e+1o+0e+1o")
    assert Irreps("0e+0e") != Irreps("2x0e")  # as e3nn: equality is per block
    assert Irreps("1x0e") == Irreps("0e")
    assert hash(Irreps("2x0e+1o")) == hash(Irreps([(2, "0e"), (1, (1, -1))]))
    assert len({Irreps("1o"), Irreps("1x1o")}) == 1
    assert pickle.loads(pickle.dumps(Irreps("2x1o+0e"))) == Irreps("2x1o+0e")
    with pytest.raises(TypeError):
        Irreps("1o") * Irreps("1o")


def test_sort_simplify_regroup():
    x = Irreps("2x0e + 1x1o + 1x0o")
    s = x.sort()
    # blocks sorted by (l, p): 0o (old 2), 0e (old 0), 1o (old 1); p[old] = new, inv[new] = old
    assert s.irreps == Irreps("1x0o+2x0e+1x1o")
    assert s.inv == (2, 0, 1) and s.p == (1, 2, 0)
    irreps, p, inv = Irreps("1e+1o+0e+1o").sort()
    assert irreps == Irreps("0e+1o+1o+1e") and inv == (2, 1, 3, 0) and p == (3, 1, 0, 2)
    assert Irreps("1o+1o+0e+1o").simplify() == Irreps("2x1o+0e+1o")  # adjacent only
    assert Irreps("0x1e+1o+0x0e").simplify() == Irreps("1o")
    assert Irreps("1o+0e+1o").regroup() == Irreps("0e+2x1o")
    assert Irreps("0x1e+2o").remove_zero_multiplicities() == Irreps("2o")
    assert Irreps.spherical_harmonics(3) == Irreps("0e+1o+2e+3o")
    assert Irreps.spherical_harmonics(2, p=1) == Irreps("0e+1e+2e")


@pytest.mark.parametrize("bad", ["1x", "0e+", "-1x1e", "1e+2z", "x1e", "1.5e", "2xe"])
def test_irreps_bad_strings_name_argument(bad):
    with pytest.raises(ValueError, match="irreps"):
        Irreps(bad)


def test_irrep_bad_inputs_name_argument():
    for bad in ["1", "e", "1x1e", "-1e", "1q"]:
        with pytest.raises(ValueError, match=r"Irrep\(l="):
            Irrep(bad)
    with pytest.raises(ValueError, match="p"):
        Irrep(1, 0)
    with pytest.raises(ValueError, match="l must be >= 0"):
        Irrep(-1, 1)
    with pytest.raises(TypeError, match="l must be an int"):
        Irrep(1.0, 1)
    with pytest.raises(ValueError, match="multiplicity"):
        Irreps([(-2, "1o")])
    with pytest.raises(TypeError, match="irreps"):
        Irreps(3.5)
    with pytest.raises(TypeError, match="irreps"):
        Irreps([object()])


def test_D_from_matrix_block_structure_and_parity(rng):
    irreps = Irreps("2x0e + 1x1o + 1x2e + 1x0o + 1x1e")
    Q = random_rotation(rng)
    D = irreps.D_from_matrix(Q)
    assert D.shape == (irreps.dim, irreps.dim) and D.dtype == np.float64
    np.testing.assert_allclose(D @ D.T, np.eye(irreps.dim), atol=1e-14)
    np.testing.assert_allclose(D[:2, :2], np.eye(2), atol=0)
    np.testing.assert_allclose(D[2:5, 2:5], Q, atol=1e-15)  # D^1 = R for 1o
    np.testing.assert_allclose(D[11:14, 11:14], Q, atol=1e-15)  # 1e under a rotation
    off = D.copy()
    for sl in irreps.slices():
        off[sl, sl] = 0
    off[0:2, 0:2] = 0
    assert np.abs(off).max() == 0
    # inversion: each block picks up its parity
    Dm = irreps.D_from_matrix(-np.eye(3))
    np.testing.assert_allclose(np.diag(Dm), [1, 1, -1, -1, -1, 1, 1, 1, 1, 1, -1, 1, 1, 1], atol=0)
    # a reflection acts as p * D(-Q): 1o gives Q itself, 1e gives -Q
    Qr = -Q
    Dr = irreps.D_from_matrix(Qr)
    np.testing.assert_allclose(Dr[2:5, 2:5], Qr, atol=1e-15)
    np.testing.assert_allclose(Dr[11:14, 11:14], -Qr, atol=1e-15)
    assert Dr[10, 10] == -1.0
    # batched input, and D_from_angles agrees
    Qs = random_orthogonal(rng, 4)
    Db = irreps.D_from_matrix(Qs)
    assert Db.shape == (4, irreps.dim, irreps.dim)
    for i in range(4):
        np.testing.assert_allclose(Db[i], irreps.D_from_matrix(Qs[i]), atol=1e-15)
    Da = irreps.D_from_angles(0.3, 1.1, -0.4, 1)
    np.testing.assert_allclose(Da[2:5, 2:5], -Irrep("1e").D_from_angles(0.3, 1.1, -0.4), atol=0)


def test_D_from_matrix_is_homomorphism_on_O3(rng):
    irreps = Irreps("1x0o+1x1e+2x2o+1x3e")
    Q1, Q2 = random_orthogonal(rng, 2)
    D12 = irreps.D_from_matrix(Q1 @ Q2)
    np.testing.assert_allclose(D12, irreps.D_from_matrix(Q1) @ irreps.D_from_matrix(Q2), atol=1e-13)


def test_D_from_matrix_rejects_non_orthogonal(rng):
    with pytest.raises(ValueError, match="R is not orthogonal"):
        Irreps("1o").D_from_matrix(np.eye(3) * 1.01)
    with pytest.raises(ValueError, match="R must have shape"):
        Irreps("1o").D_from_matrix(np.eye(2))
    with pytest.raises(ValueError, match="R contains NaN"):
        Irrep("1o").D_from_matrix(np.full((3, 3), np.nan))
