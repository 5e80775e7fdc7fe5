"""Grids on SO(2), S² and SO(3): closure of the polyhedral groups, unit norms, reproducibility,
covering radii against known values, the named rotation / orientation grids of the layers and the
permutation a grid symmetry induces."""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref.lie import grids, so3


def _match(A, B, tol):
    """Index of the element of B equal to each element of A (within tol), or -1."""
    d = np.abs(A[:, None] - B[None]).max(axis=(-1, -2))
    idx = np.argmin(d, axis=1)
    return np.where(d[np.arange(len(A)), idx] <= tol, idx, -1)


@pytest.mark.parametrize("name,size", [("tetra", 12), ("octa", 24), ("icosa", 60)])
def test_polyhedral_closure(name, size):
    R = grids.so3_polyhedral(name)
    assert R.shape == (size, 3, 3)
    assert np.abs(R[0] - np.eye(3)).max() == 0
    assert np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max() < 4e-16
    assert np.abs(np.linalg.det(R) - 1).max() < 1e-15
    # distinct elements, closed under products and inverses
    assert (np.abs(R[:, None] - R[None]).max(axis=(-1, -2)) + np.eye(size) > 0.1).all()
    prods = (R[:, None] @ R[None]).reshape(-1, 3, 3)
    assert (_match(prods, R, 1e-15) >= 0).all()
    assert (_match(np.swapaxes(R, -1, -2), R, 0.0) >= 0).all()
    # class equation sanity: the rotation angles of a Platonic group are multiples of 2π/k
    ang = np.linalg.norm(so3.log(R), axis=-1)
    orders = {"tetra": (1, 2, 3), "octa": (1, 2, 3, 4), "icosa": (1, 2, 3, 5)}[name]
    allowed = np.unique([2 * np.pi * j / k for k in orders for j in range(k)])
    allowed = allowed[allowed <= np.pi + 1e-12]
    assert np.abs(ang[:, None] - allowed[None]).min(axis=1).max() < 1e-14


def test_polyhedral_bad_name():
    with pytest.raises(ValueError, match="name"):
        grids.so3_polyhedral("cube")


def test_so2_grid_and_radius():
    a = grids.so2_grid(8)
    assert np.abs(np.diff(a) - np.pi / 4).max() < 1e-15
    assert grids.covering_radius_so2(a) == pytest.approx(np.pi / 8, rel=1e-15)
    with pytest.raises(ValueError, match="n"):
        grids.so2_grid(0)


@pytest.mark.parametrize("n", [1, 2, 50, 200])
def test_sphere_fibonacci(n):
    P = grids.sphere_fibonacci(n)
    assert P.shape == (n, 3)
    assert np.abs(np.linalg.norm(P, axis=-1) - 1).max() < 1e-15
    if n >= 50:  # roughly balanced: the centroid is near 0
        assert np.linalg.norm(P.mean(axis=0)) < 2.0 / n


def test_repulsion_reproducible_and_spread():
    P1 = grids.sphere_repulsion(40, np.random.default_rng(3), steps=60)
    P2 = grids.sphere_repulsion(40, np.random.default_rng(3), steps=60)
    assert np.array_equal(P1, P2)
    assert np.abs(np.linalg.norm(P1, axis=-1) - 1).max() < 1e-15
    P0 = grids.sphere_repulsion(40, np.random.default_rng(3), steps=0)
    # repulsion improves the covering radius of the random start
    assert grids.covering_radius_sphere(P1, n_samples=20_000) < grids.covering_radius_sphere(
        P0, n_samples=20_000)
    R1 = grids.so3_repulsion(30, np.random.default_rng(4), steps=60)
    R2 = grids.so3_repulsion(30, np.random.default_rng(4), steps=60)
    assert np.array_equal(R1, R2)
    assert np.abs(np.swapaxes(R1, -1, -2) @ R1 - np.eye(3)).max() < 1e-14
    R0 = grids.so3_repulsion(30, np.random.default_rng(4), steps=0)
    assert grids.covering_radius_so3(R1, n_samples=20_000) < grids.covering_radius_so3(
        R0, n_samples=20_000)


def test_covering_radius_known_values():
    """Octahedron vertices ±e_k: the deepest holes are the 8 face centres, at arccos(1/√3)."""
    P = np.concatenate([np.eye(3), -np.eye(3)])
    est = grids.covering_radius_sphere(P, n_samples=100_000)
    exact = np.arccos(1 / np.sqrt(3))
    assert exact - 0.02 < est <= exact + 1e-12
    # the identity alone covers SO(3) with radius π (estimate approaches it from below)
    assert np.pi - 0.1 < grids.covering_radius_so3(np.eye(3)[None], n_samples=20_000) <= np.pi
    # estimates are deterministic per seed
    assert grids.covering_radius_sphere(P, seed=1) == grids.covering_radius_sphere(P, seed=1)


def test_grid_errors():
    with pytest.raises(TypeError, match="rng"):
        grids.sphere_repulsion(10, 0)
    with pytest.raises(ValueError, match="points"):
        grids.covering_radius_sphere(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="rotations"):
        grids.covering_radius_so3(np.ones((2, 3, 3)))


# --- grids by name and the permutation a grid symmetry induces ----------------------------------


@pytest.mark.parametrize(
    "name,size", [("SO2_7", 7), ("SO3_tetra", 12), ("SO3_octa", 24), ("SO3_icosa", 60)]
)
def test_rotation_grids_are_groups(name, size):
    R = grids.rotation_grid(name)
    assert R.shape[0] == size
    D = R.shape[1]
    np.testing.assert_allclose(
        np.einsum("kab,kac->kbc", R, R), np.broadcast_to(np.eye(D), R.shape), atol=1e-14
    )
    for Q in R:  # closed under products: every element permutes the grid
        perm = grids.grid_permutation(R, Q)
        assert sorted(perm.tolist()) == list(range(size))


def test_so2_rotation_grid_angles():
    R = grids.rotation_grid("SO2_6")
    ang = np.arctan2(R[:, 1, 0], R[:, 0, 0]) % (2 * np.pi)
    np.testing.assert_allclose(ang, 2 * np.pi * np.arange(6) / 6, atol=1e-15)


def test_grid_permutation_is_the_left_action(rng):
    """``f'(e) = f(Q^{-1} e)``, checked element by element with an explicit search."""
    R = grids.rotation_grid("SO3_octa")
    Q = R[int(rng.integers(1, len(R)))]
    perm = grids.grid_permutation(R, Q)
    for k in range(len(R)):
        target = Q.T @ R[k]
        j = int(np.argmin(np.abs(R - target).max(axis=(1, 2))))
        assert perm[k] == j
    o = grids.orientation_grid("icosahedron")
    Qi = grids.so3_polyhedral("icosa")[7]
    perm = grids.grid_permutation(o, Qi)
    np.testing.assert_allclose(o[perm], o @ Qi, atol=1e-14)  # rows: Q^T o_k


def test_grid_permutation_refuses_non_symmetries():
    a = 0.3
    Q = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    with pytest.raises(ValueError, match="not a symmetry of the grid"):
        grids.grid_permutation(grids.rotation_grid("SO2_8"), Q)
    with pytest.raises(ValueError, match="Q must have shape"):
        grids.grid_permutation(grids.rotation_grid("SO2_8"), np.eye(3))
    with pytest.raises(ValueError, match="elements"):
        grids.grid_permutation(np.zeros(3), np.eye(3))


@pytest.mark.parametrize(
    "name,num,size,dim",
    [("fibonacci", 10, 10, 3), ("octahedron", None, 6, 3), ("icosahedron", None, 12, 3),
     ("uniform", 5, 5, 2)],
)
def test_orientation_grids(name, num, size, dim):
    o = grids.orientation_grid(name, num)
    assert o.shape == (size, dim) and o.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(o, axis=1), 1.0, atol=1e-15)


def test_icosahedron_vertices():
    """Each vertex has 5 neighbours at cos = 1/√5, 5 at -1/√5 and its antipode at -1."""
    ico = grids.icosahedron_vertices()
    cos = np.sort(ico @ ico.T, axis=1)
    np.testing.assert_allclose(cos[:, -6:-1], 1 / np.sqrt(5), atol=1e-15)
    np.testing.assert_allclose(cos[:, 1:6], -1 / np.sqrt(5), atol=1e-15)
    np.testing.assert_allclose(cos[:, 0], -1.0, atol=1e-15)


def test_orientation_grids_symmetric_under_their_groups():
    for grid, group in (
        ("S2_icosahedron", "SO3_icosa"),
        ("S2_octahedron", "SO3_octa"),
        ("S1_8", "SO2_8"),
    ):
        o = grids.grid_elements(grid)
        for Q in grids.rotation_grid(group):
            grids.grid_permutation(o, Q)


def test_grid_elements_names():
    assert grids.grid_elements("SO2_4").shape == (4, 2, 2)
    assert grids.grid_elements("S1_3").shape == (3, 2)
    assert grids.grid_elements("S2_fibonacci7").shape == (7, 3)
    np.testing.assert_array_equal(
        grids.grid_elements("S2_fibonacci7"), grids.sphere_fibonacci(7)
    )
    for bad in ("S3_4", "SO2_0", "S2_fibonacci"):
        with pytest.raises(ValueError, match="grid"):
            grids.grid_elements(bad)


def test_named_grid_errors():
    with pytest.raises(ValueError, match="grid must be"):
        grids.rotation_grid("SO3_cube")
    with pytest.raises(TypeError, match="grid must be a str"):
        grids.rotation_grid(8)
    with pytest.raises(ValueError, match="grid must be one of"):
        grids.orientation_grid("cube")
    with pytest.raises(ValueError, match="num must be given"):
        grids.orientation_grid("uniform")
    with pytest.raises(TypeError, match="num"):
        grids.orientation_grid("fibonacci", 2.5)
    with pytest.raises(ValueError, match="num"):
        grids.orientation_grid("fibonacci", 2**62)
    with pytest.raises(ValueError, match="grid"):
        grids.rotation_grid(f"SO2_{2**62}")
