r"""Every grid of the library: rotation grids on SO(2)/SO(3), orientation grids on S¹/S², with the
permutation a grid symmetry induces, seeded spread-out grids and covering radii.

Rotation grids (``(G, D, D)`` matrices; the grid axis of the group-convolution layers)
--------------------------------------------------------------------------------------
* ``so2_grid(n)``: angles ``2πk/n``, ``k = 0..n−1`` (the cyclic group ``C_n``); covering radius
  ``π/n`` exactly (:func:`covering_radius_so2` computes it from the largest gap).
* ``so3_polyhedral(name)``: the rotation groups of the tetrahedron (12), octahedron/cube (24) and
  icosahedron (60), closed under products: every product of two elements is an element (to the
  last bits; the tetra and octa entries are exact integers, the icosa entries are snapped to the
  nearest of ``{0, ±½, ±φ/2, ±1/(2φ), ±1}`` so they are correctly rounded).
* ``rotation_grid(name)`` builds either by name: ``"SO2_<n>"``, ``"SO3_tetra"``, ``"SO3_octa"``,
  ``"SO3_icosa"``. Each is a group: for a rotation ``Q`` of the grid itself, ``Q R_k`` runs over
  the grid again, which is what makes the grid layers exactly equivariant for those rotations.

Orientation grids (``(G, D)`` unit vectors; the fibre of the position-orientation layers)
-----------------------------------------------------------------------------------------
``orientation_grid(name, num)``: ``"uniform"`` (S¹: ``(cos θ_k, sin θ_k)``, ``θ_k = 2πk/num``),
``"fibonacci"`` (S², :func:`sphere_fibonacci`), ``"octahedron"`` (the 6 points ``±e_i``,
symmetric under ``so3_polyhedral("octa")``) and ``"icosahedron"`` (the 12 vertices, cyclic
permutations of ``(0, ±φ, ±1)/√(1+φ²)``, symmetric under ``so3_polyhedral("icosa")``).
All are deterministic float64. (PONITA builds its S¹ grid from a float32 ``linspace``, off by up to
2.4e-7, and its S² grid from random float32 starting points drawn from the global torch RNG
followed by a noisy repulsion; to reproduce a PONITA run, pass its grid as an input instead.)

``grid_elements(name)`` resolves the names used by the symmetry kinds ``"grid:<name>"``:
the rotation-grid names above plus ``"S1_<n>"``, ``"S2_octahedron"``, ``"S2_icosahedron"`` and
``"S2_fibonacci<n>"``. ``grid_permutation(elements, Q)`` gives the index map of the left action
``f'(e) = f(Q⁻¹ e)`` on a grid that ``Q`` maps onto itself, and raises for any other ``Q``.

Spread-out grids
----------------
* ``sphere_fibonacci(n)``: the Fibonacci lattice ``z_k = 1 − (2k + 1)/n``,
  ``φ_k = k · π(3 − √5)`` (golden angle); deterministic.
* ``sphere_repulsion(n, rng, steps)``: ``n`` points started from ``rng`` and moved by projected
  steepest descent of the Riesz energy ``Σ 1/|x_i − x_j|`` with a normalised, linearly decaying
  step; bit-identical for the same seed.
* ``so3_repulsion(n, rng, steps)``: the same descent on unit quaternions with both ``±q`` in the
  energy (so that antipodal quaternions, the same rotation, repel).

Covering radius (the largest distance from a point of the space to its nearest grid point):
:func:`covering_radius_sphere` (geodesic angle on S²) and :func:`covering_radius_so3` (rotation
angle of ``Rᵀ R_grid``, from ``‖R − R_grid‖_F = 2√2 sin(θ/2)``) **estimate** it as the maximum,
over ``n_samples`` uniform random points drawn from ``np.random.default_rng(seed)``, of the distance
to the nearest grid point. The estimate is a lower bound that increases to the true value as
``n_samples`` grows (it misses the deepest hole by roughly the sample spacing); results are
deterministic for a given ``seed``.
"""

from __future__ import annotations

import re

import numpy as np

from .._validate import as_float64, check_alloc, check_int
from . import _generic as _g
from . import so3 as _so3

__all__ = [
    "covering_radius_so2",
    "covering_radius_so3",
    "covering_radius_sphere",
    "grid_elements",
    "grid_permutation",
    "icosahedron_vertices",
    "orientation_grid",
    "rotation_grid",
    "so2_grid",
    "so3_polyhedral",
    "so3_repulsion",
    "sphere_fibonacci",
    "sphere_repulsion",
]

_PHI = (1.0 + np.sqrt(5.0)) / 2.0


def so2_grid(n: int):
    """``n`` equally spaced angles ``2πk/n`` in ``[0, 2π)``, shape (n,)."""
    n = check_int(n, "n", minimum=1)
    check_alloc((n,), "n")
    return 2.0 * np.pi * np.arange(n) / n


def sphere_fibonacci(n: int):
    """Fibonacci lattice on S², shape (n, 3), unit vectors."""
    n = check_int(n, "n", minimum=1)
    check_alloc((n, 3), "n")
    k = np.arange(n, dtype=np.float64)
    z = 1.0 - (2.0 * k + 1.0) / n
    r = np.sqrt(np.maximum(0.0, 1.0 - z * z))
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def _repel(x, steps, antipodal):
    """Projected normalised descent of the Riesz-1 energy for unit vectors ``x`` (n, d)."""
    n, d = x.shape
    spacing = np.sqrt(4.0 * np.pi / max(n, 1)) if d == 3 else (2 * np.pi**2 / max(n, 1)) ** (1 / 3)
    for it in range(steps):
        eta = 0.5 * spacing * (1.0 - it / steps) + 1e-3 * spacing
        force = np.zeros_like(x)
        for sgn in (-1.0, 1.0) if antipodal else (-1.0,):
            diff = x[:, None, :] + sgn * x[None, :, :]  # x_i − x_j (and x_i + x_j)
            dist2 = np.sum(diff * diff, axis=-1)
            if sgn < 0:
                np.fill_diagonal(dist2, np.inf)
            force += np.sum(diff / (dist2 * np.sqrt(dist2))[..., None], axis=1)
        force -= np.sum(force * x, axis=-1, keepdims=True) * x
        fmax = np.sqrt(np.sum(force * force, axis=-1)).max()
        if fmax == 0:
            break
        x = x + eta * force / fmax
        x /= np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    return x


def sphere_repulsion(n: int, rng, steps: int = 200):
    """``n`` points on S² spread by Riesz-energy repulsion; shape (n, 3). Reproducible per seed."""
    n = _g.check_rng(rng, n)
    steps = check_int(steps, "steps", minimum=0)
    x = rng.standard_normal((n, 3))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return _repel(x, steps, antipodal=False)


def so3_repulsion(n: int, rng, steps: int = 200):
    """``n`` rotations spread by repulsion of quaternions ``±q`` on S³; shape (n, 3, 3)."""
    n = _g.check_rng(rng, n)
    steps = check_int(steps, "steps", minimum=0)
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return _so3._quat_to_matrix(_repel(q, steps, antipodal=True))


_POLY_SIZES = {"tetra": 12, "octa": 24, "icosa": 60}


def _closure(gens):
    elems = [np.eye(3)]
    keys = {tuple(np.round(np.eye(3), 8).ravel())}
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for a in frontier:
            for b in gens:
                c = a @ b
                key = tuple(np.round(c, 8).ravel() + 0.0)
                if key not in keys:
                    keys.add(key)
                    elems.append(c)
                    new.append(c)
        frontier = new
    return np.array(elems)


def _snap(M):
    values = np.array([0.0, 0.5, _PHI / 2.0, 1.0 / (2.0 * _PHI), 1.0])
    values = np.concatenate([values, -values[1:]])
    idx = np.argmin(np.abs(M[..., None] - values), axis=-1)
    return values[idx]


def so3_polyhedral(name: str):
    """Rotation group of a Platonic solid: ``'tetra'`` (12), ``'octa'`` (24), ``'icosa'`` (60).

    Returns
    -------
    R : ndarray, shape (G, 3, 3), float64
        The group elements, identity first; closed under products (to the last bits).
    """
    if name not in _POLY_SIZES:
        raise ValueError(f"name must be one of {sorted(_POLY_SIZES)}; got {name!r}")
    cyc = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # 2π/3 about (1, 1, 1)
    half_z = np.diag([-1.0, -1.0, 1.0])  # π about z
    gens = [cyc, half_z]
    if name == "octa":
        gens.append(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))  # π/2 about z
    if name == "icosa":
        p, q = _PHI, 1.0 / _PHI  # a 2π/5 rotation that, with T, generates the icosahedral group
        gens.append(0.5 * np.array([[1.0, -p, q], [p, q, -1.0], [q, 1.0, p]]))
    R = _closure(gens)
    if name == "icosa":
        R = _snap(R)
    if len(R) != _POLY_SIZES[name]:  # pragma: no cover - guards the generator tables above
        raise RuntimeError(f"{name}: closure has {len(R)} elements")
    return R


def covering_radius_so2(angles):
    """Exact covering radius of angles on the circle: half the largest gap (radians)."""
    a = as_float64(angles, "angles", ndim=1)
    if a.size == 0:
        raise ValueError("angles must hold at least one angle")
    a = np.sort(np.mod(a, 2.0 * np.pi))
    gaps = np.diff(np.concatenate([a, [a[0] + 2.0 * np.pi]]))
    return 0.5 * float(gaps.max())


def _check_samples(n_samples, seed):
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    return n_samples, np.random.default_rng(seed)


def covering_radius_sphere(points, *, n_samples: int = 100_000, seed: int = 0):
    """Estimated covering radius (geodesic angle, radians) of unit vectors ``points`` (n, 3).

    Monte-Carlo estimator of ``max_{x ∈ S²} min_i ∠(x, p_i)`` (module docstring): a lower bound
    that converges from below; deterministic for a given ``seed``.
    """
    P = as_float64(points, "points", ndim=2)
    if P.shape[-1] != 3 or len(P) == 0:
        raise ValueError(f"points must have shape (n, 3) with n >= 1; got {P.shape}")
    n_samples, rng = _check_samples(n_samples, seed)
    worst = -1.0
    for start in range(0, n_samples, 20_000):
        x = rng.standard_normal((min(20_000, n_samples - start), 3))
        x /= np.linalg.norm(x, axis=-1, keepdims=True)
        best = np.max(x @ P.T, axis=-1)
        worst = max(worst, 1.0 - float(best.min()))  # 1 − cos, monotone in the angle
    return float(np.arccos(1.0 - worst))


def covering_radius_so3(rotations, *, n_samples: int = 50_000, seed: int = 0):
    """Estimated covering radius (rotation angle, radians) of rotations (G, 3, 3).

    Uses ``‖R − R_g‖_F² = 6 − 2 tr(R_gᵀ R) = 8 sin²(θ/2)``; Haar samples from the seeded rng.
    """
    G = _so3._check_element(rotations, "rotations", _so3.TOL)
    if G.ndim != 3 or len(G) == 0:
        raise ValueError(f"rotations must have shape (G, 3, 3) with G >= 1; got {G.shape}")
    n_samples, rng = _check_samples(n_samples, seed)
    flat = G.reshape(len(G), 9)
    worst = 0.0
    for start in range(0, n_samples, 20_000):
        S = _so3.random(rng, min(20_000, n_samples - start)).reshape(-1, 9)
        d2 = np.maximum(6.0 - 2.0 * np.max(S @ flat.T, axis=-1), 0.0)
        worst = max(worst, float(d2.max()))
    return float(2.0 * np.arcsin(min(1.0, np.sqrt(worst / 8.0))))


# --- grids by name, and the permutation a grid symmetry induces -------------------------------


def rotation_grid(name: str) -> np.ndarray:
    """Rotation grid by name, shape (G, D, D), float64.

    ``"SO2_<n>"`` (n >= 1): rotations by ``2πk/n``, k = 0..n−1 (:func:`so2_grid`), D = 2;
    ``"SO3_tetra"``, ``"SO3_octa"``, ``"SO3_icosa"``: the polyhedral rotation groups (12, 24, 60
    elements, identity first; :func:`so3_polyhedral`), D = 3.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"grid must be a str such as 'SO2_8' or 'SO3_octa'; got {type(name).__name__}"
        )
    m = re.fullmatch(r"SO2_(\d+)", name)
    if m and int(m.group(1)) >= 1:
        n = int(m.group(1))
        check_alloc((n, 2, 2), "grid")
        t = so2_grid(n)
        c, s = np.cos(t), np.sin(t)
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], axis=1)
    m = re.fullmatch(r"SO3_(tetra|octa|icosa)", name)
    if m:
        return so3_polyhedral(m.group(1))
    raise ValueError(
        f"grid must be 'SO2_<n>' (n >= 1), 'SO3_tetra', 'SO3_octa' or 'SO3_icosa'; got {name!r}"
    )


def icosahedron_vertices() -> np.ndarray:
    """The 12 unit vertices of the icosahedron, shape (12, 3): cyclic permutations of
    ``(0, ±φ, ±1)`` normalised; the grid is mapped onto itself by ``so3_polyhedral("icosa")``."""
    v = []
    for a in (-1.0, 1.0):
        for b in (-_PHI, _PHI):
            v += [(0.0, b, a), (b, a, 0.0), (a, 0.0, b)]
    v = np.array(v)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


_ORIENTATION_NAMES = ("uniform", "fibonacci", "octahedron", "icosahedron")


def orientation_grid(name: str, num: int | None = None) -> np.ndarray:
    """Deterministic orientation grid of unit vectors, shape (G, D), float64.

    Parameters
    ----------
    name : str
        ``"uniform"`` (S¹, D = 2: ``num`` angles ``2πk/num``), ``"fibonacci"`` (S², ``num``
        points of :func:`sphere_fibonacci`), ``"octahedron"`` (S², the 6 points ``±e_i``),
        ``"icosahedron"`` (S², the 12 vertices of :func:`icosahedron_vertices`).
    num : int, optional
        Grid size for ``"uniform"`` and ``"fibonacci"`` (required there; ignored by the
        polyhedral grids, whose size is fixed).
    """
    if name not in _ORIENTATION_NAMES:
        raise ValueError(f"grid must be one of {_ORIENTATION_NAMES}; got {name!r}")
    if name in ("uniform", "fibonacci"):
        if num is None:
            raise ValueError(f"num must be given (an int >= 1) for the {name!r} grid")
        num = check_int(num, "num", minimum=1)
        check_alloc((num, 3), "num")
        if name == "fibonacci":
            return sphere_fibonacci(num)
        t = so2_grid(num)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if name == "octahedron":
        return np.concatenate([np.eye(3), -np.eye(3)])
    return icosahedron_vertices()


def grid_elements(name: str) -> np.ndarray:
    """Grid by symmetry-kind name: rotations (G, D, D) or orientations (G, D).

    ``"SO2_<n>"``, ``"SO3_tetra"``, ``"SO3_octa"``, ``"SO3_icosa"`` (:func:`rotation_grid`);
    ``"S1_<n>"`` (uniform S¹), ``"S2_octahedron"``, ``"S2_icosahedron"``, ``"S2_fibonacci<n>"``
    (:func:`orientation_grid`).
    """
    if not isinstance(name, str):
        raise TypeError(f"grid name must be a str; got {type(name).__name__}")
    if name.startswith("SO"):
        return rotation_grid(name)
    m = re.fullmatch(r"S1_(\d+)", name)
    if m:
        return orientation_grid("uniform", int(m.group(1)))
    m = re.fullmatch(r"S2_(octahedron|icosahedron|fibonacci)(\d*)", name)
    if m:
        return orientation_grid(m.group(1), int(m.group(2)) if m.group(2) else None)
    raise ValueError(
        f"unknown grid name {name!r}: use SO2_<n>, SO3_tetra, SO3_octa, SO3_icosa, S1_<n>, "
        "S2_octahedron, S2_icosahedron or S2_fibonacci<n>"
    )


def grid_permutation(elements, Q, *, tol: float = 1e-9) -> np.ndarray:
    r"""Index map of the left action: ``perm[k]`` = index of :math:`Q^{-1} e_k` in ``elements``.

    Parameters
    ----------
    elements : ndarray, shape (G, D, D) or (G, D)
        Rotations or unit directions.
    Q : ndarray, shape (D, D)
        A rotation that maps the grid onto itself.
    tol : float
        Largest entry-wise distance accepted as "the same element".

    Returns
    -------
    perm : ndarray, shape (G,), int
        A signal transforms as ``f'[:, k] = f[:, perm[k]]``, i.e. :math:`f'(e) = f(Q^{-1} e)`.

    Raises ``ValueError`` if ``Q`` does not map the grid onto itself (within ``tol``).
    """
    e = as_float64(elements, "elements", ndim=(2, 3))
    Q = as_float64(Q, "Q", ndim=2)
    D = e.shape[1]
    if Q.shape != (D, D) or (e.ndim == 3 and e.shape[2] != D):
        raise ValueError(
            f"Q must have shape ({D}, {D}) to act on elements of shape {e.shape}; got {Q.shape}"
        )
    tol = float(tol)
    moved = np.einsum("ba,gb...->ga...", Q, e)  # Q^T e_k = Q^{-1} e_k
    d = np.abs(moved.reshape(len(e), 1, -1) - e.reshape(1, len(e), -1)).max(axis=-1)
    perm = np.argmin(d, axis=1) if len(e) else np.zeros(0, dtype=np.int64)
    if len(e) and (d[np.arange(len(e)), perm].max() > tol or len(set(perm.tolist())) != len(e)):
        raise ValueError(
            "Q is not a symmetry of the grid: the grid axis cannot be permuted "
            "exactly (use a rotation of the grid's own group)"
        )
    return perm
