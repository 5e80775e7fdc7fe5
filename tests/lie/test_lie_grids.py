"""Grids on SO(2), S² and SO(3): closure of the polyhedral groups, unit norms, reproducibility and
covering radii against known values."""

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
