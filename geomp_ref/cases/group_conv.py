r"""Cases of the grid layers: lifting / group convolutions on rotation grids and
position-orientation convolutions (LieConv's cases live in :mod:`geomp_ref.cases.lieconv`).

Kinds registered here (see :mod:`geomp_ref.cases` for the shared vocabulary)
--------------------------------------------------------------------------
``"grid:<name>"``        (N, G, ...) signals on a grid; for a rotation Q of the grid's own group
                         ``f'[:, k] = f[:, perm[k]]`` with ``perm[k]`` the index of
                         :math:`Q^{-1} e_k` (:func:`geomp_ref.layers.group_conv.grid_permutation`);
                         any other Q raises. Names: ``SO2_<n>``, ``SO3_tetra``, ``SO3_octa``,
                         ``SO3_icosa`` (rotation grids), ``S1_<n>``, ``S2_octahedron``,
                         ``S2_icosahedron``, ``S2_fibonacci<n>`` (orientation grids).
``"graph_vector"``       (G, D) vectors shared by the whole batch (an orientation grid passed as
                         an input): ``v -> v Q^T``; not permuted with the nodes.

Groups registered here: ``"T12xT3"``, ``"O24xT3"``, ``"I60xT3"``: a random non-identity element
of the tetrahedral / octahedral / icosahedral rotation group
(:func:`geomp_ref.lie.grids.so3_polyhedral`) and a random translation.

What is exact and what is measured
----------------------------------
Grid layers are exact for the grid's own group; for continuous
rotations the error is measured by ``python3 benchmarks/group_conv_equivariance.py`` (not a case
tolerance). Position-orientation cases with the grid passed as an input are exact for E(3)
(3D) / SE(2) (2D); with a fixed polyhedral or uniform grid, exact for its rotation group.
"""

from __future__ import annotations

import re

import numpy as np

from .. import testing
from ..layers.group_conv import GroupConv, LiftingConv, grid_permutation, rotation_grid
from ..layers.position_orientation import PositionOrientationConv, orientation_grid
from ..lie import grids
from . import Case

__all__ = ["grid_elements", "register"]


def grid_elements(name: str) -> np.ndarray:
    """Grid by kind name: rotations (G, D, D) or directions (G, D); see the module docstring."""
    if name.startswith("SO"):
        return rotation_grid(name)
    m = re.fullmatch(r"S1_(\d+)", name)
    if m:
        return orientation_grid("uniform", int(m.group(1)))
    m = re.fullmatch(r"S2_(octahedron|icosahedron|fibonacci)(\d*)", name)
    if m:
        return orientation_grid(m.group(1), int(m.group(2)) if m.group(2) else None)
    raise ValueError(f"unknown grid name {name!r} in kind 'grid:{name}'")


def _grid_kind(x, kind, Q, t):
    perm = grid_permutation(grid_elements(kind.split(":", 1)[1]), Q)
    return np.asarray(x)[:, perm]


def _graph_vector(x, kind, Q, t):
    return np.asarray(x) @ Q.T


def _polyhedral_sampler(name):
    def sample(rng, dim, trial):
        R = grids.so3_polyhedral(name)
        Q = R[int(rng.integers(1, len(R)))]
        return Q, rng.normal(size=3) * 3.0

    return sample


testing.register_kind("grid:", _grid_kind)
testing.register_kind("graph_vector", _graph_vector)
for _name, _poly in (("T12xT3", "tetra"), ("O24xT3", "octa"), ("I60xT3", "icosa")):
    testing.register_group(_name, _polyhedral_sampler(_poly))


# --- input makers -----------------------------------------------------------------------------


def _points(dim, channels, grid_size=None):
    def make(rng, n):
        graph = testing.random_graph(rng, n, self_loops=True)
        shape = (n, channels) if grid_size is None else (n, grid_size, channels)
        return graph, (rng.normal(size=shape), testing.random_points(rng, n, dim))

    return make


def _points_ori(dim, grid_size, channels, ori):
    def make(rng, n):
        graph = testing.random_graph(rng, n, self_loops=True)
        return graph, (
            rng.normal(size=(n, grid_size, channels)),
            testing.random_points(rng, n, dim),
            ori.copy(),
        )

    return make


def register() -> list[Case]:
    out = []
    out.append(
        Case(
            "LiftingConv/SO2_8",
            LiftingConv(3, 4, grid="SO2_8"),
            _points(2, 3),
            ("node_scalar", "position"),
            ("grid:SO2_8",),
            "C8xT2",
            notes="exact for C8; continuous SO(2): benchmarks/group_conv_equivariance.py",
        )
    )
    out.append(
        Case(
            "LiftingConv/SO3_octa",
            LiftingConv(3, 4, grid="SO3_octa"),
            _points(3, 3),
            ("node_scalar", "position"),
            ("grid:SO3_octa",),
            "O24xT3",
            notes="exact for the octahedral group; continuous SO(3): benchmark table",
        )
    )
    out.append(
        Case(
            "GroupConv/SO2_8",
            GroupConv(3, 4, grid="SO2_8"),
            _points(2, 3, 8),
            ("grid:SO2_8", "position"),
            ("grid:SO2_8",),
            "C8xT2",
            notes="exact for C8 (and every C_m, m | 8)",
        )
    )
    out.append(
        Case(
            "GroupConv/SO3_octa",
            GroupConv(3, 4, grid="SO3_octa"),
            _points(3, 3, 24),
            ("grid:SO3_octa", "position"),
            ("grid:SO3_octa",),
            "O24xT3",
            notes="exact for the octahedral group (24 elements)",
        )
    )
    out.append(
        Case(
            "GroupConv/SO3_icosa",
            GroupConv(2, 3, grid="SO3_icosa", hidden=8),
            _points(3, 2, 60),
            ("grid:SO3_icosa", "position"),
            ("grid:SO3_icosa",),
            "I60xT3",
            notes="exact for the icosahedral group (60 elements)",
        )
    )

    po3 = PositionOrientationConv(3, 4, dim=3, grid="fibonacci", num_ori=8)
    out.append(
        Case(
            "PositionOrientationConv/R3xS2",
            po3,
            _points_ori(3, 8, 3, po3.ori),
            ("node_scalar", "position", "graph_vector"),
            ("node_scalar",),
            "E3",
            notes="grid passed as input and rotated with the data: exact O(3) x T(3)",
        )
    )
    po3i = PositionOrientationConv(3, 4, dim=3, grid="icosahedron")
    out.append(
        Case(
            "PositionOrientationConv/R3xS2-icosahedron",
            po3i,
            _points(3, 3, 12),
            ("grid:S2_icosahedron", "position"),
            ("grid:S2_icosahedron",),
            "I60xT3",
            notes="fixed 12-point grid: exact for its rotation group (grid permuted)",
        )
    )
    po3p = PositionOrientationConv(3, 4, dim=3, grid="fibonacci", num_ori=16, pool=True)
    out.append(
        Case(
            "PositionOrientationConv/R3xS2-fibonacci-pooled",
            po3p,
            _points(3, 3, 16),
            ("node_scalar", "position"),
            ("node_scalar",),
            "T3",
            notes="fixed Fibonacci grid, grid-mean output: exact for translations only; "
            "SO(3) invariance error ~1e-3 at G = 16 (benchmarks/group_conv_equivariance.py)",
        )
    )
    po2 = PositionOrientationConv(3, 4, dim=2, grid="uniform", num_ori=6)
    out.append(
        Case(
            "PositionOrientationConv/R2xS1",
            po2,
            _points_ori(2, 6, 3, po2.ori),
            ("node_scalar", "position", "graph_vector"),
            ("node_scalar",),
            "SE2",
            notes="grid passed as input: exact SE(2) (inv2 is signed: no reflections)",
        )
    )
    po2f = PositionOrientationConv(3, 4, dim=2, grid="uniform", num_ori=8)
    out.append(
        Case(
            "PositionOrientationConv/R2xS1-fixed",
            po2f,
            _points(2, 3, 8),
            ("grid:S1_8", "position"),
            ("grid:S1_8",),
            "C8xT2",
            notes="fixed uniform 8-point S^1 grid: exact for C8",
        )
    )
    return out
