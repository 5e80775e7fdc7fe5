r"""Cases of the grid layers: lifting / group convolutions on rotation grids, position-orientation
convolutions, their shared kernel bases and PONITA's basis convolution (LieConv's cases live in
:mod:`geomp_ref.cases.lieconv`).

Kinds registered here (see :mod:`geomp_ref.cases` for the shared vocabulary)
--------------------------------------------------------------------------
``"grid:<name>"``        (N, G, ...) signals on a grid; for a rotation Q of the grid's own group
                         ``f'[:, k] = f[:, perm[k]]`` with ``perm[k]`` the index of
                         :math:`Q^{-1} e_k` (:func:`geomp_ref.lie.grids.grid_permutation`);
                         any other Q raises. Names (:func:`geomp_ref.lie.grids.grid_elements`):
                         ``SO2_<n>``, ``SO3_tetra``, ``SO3_octa``, ``SO3_icosa`` (rotation
                         grids), ``S1_<n>``, ``S2_octahedron``, ``S2_icosahedron``,
                         ``S2_fibonacci<n>`` (orientation grids).
``"graph_vector"``       (G, D) vectors shared by the whole batch (an orientation grid passed as
                         an input): ``v -> v Q^T``; not permuted with the nodes.
``"graph_invariant"``    (G, G, ...) invariant values shared by the whole batch (a fibre basis):
                         unchanged by the group and by node permutations.

Groups registered here: ``"T12xT3"``, ``"O24xT3"``, ``"I60xT3"``: a random non-identity element
of the tetrahedral / octahedral / icosahedral rotation group
(:func:`geomp_ref.lie.grids.so3_polyhedral`) and a random translation.

What is exact and what is measured
----------------------------------
Grid layers are exact for the grid's own group; for continuous rotations the error is measured by
``python3 benchmarks/group_conv_equivariance.py`` (not a case tolerance). Position-orientation
cases with the grid passed as an input are exact for E(3) (3D) / SE(2) (2D); with a fixed
polyhedral or uniform grid, exact for its rotation group. Cases that take precomputed bases have
invariant inputs only: node relabelling and edge reordering are what they check.
"""

from __future__ import annotations

import numpy as np

from .. import testing
from ..layers.basis_conv import BasisConv
from ..layers.group_conv import GroupConv, LiftingConv
from ..layers.kernels import BSplineKernel
from ..layers.position_orientation import PositionOrientationConv
from ..layers.position_orientation_basis import PositionOrientationBasis
from ..lie import grids
from . import Case

__all__ = ["register"]


def _grid_kind(x, kind, Q, t):
    perm = grids.grid_permutation(grids.grid_elements(kind.split(":", 1)[1]), Q)
    return np.asarray(x)[:, perm]


def _graph_vector(x, kind, Q, t):
    return np.asarray(x) @ Q.T


def _graph_invariant(x, kind, Q, t):
    return x


def _polyhedral_sampler(name):
    def sample(rng, dim, trial):
        R = grids.so3_polyhedral(name)
        Q = R[int(rng.integers(1, len(R)))]
        return Q, rng.normal(size=3) * 3.0

    return sample


testing.register_kind("grid:", _grid_kind)
testing.register_kind("graph_vector", _graph_vector)
testing.register_kind("graph_invariant", _graph_invariant)
for _name, _poly in (("T12xT3", "tetra"), ("O24xT3", "octa"), ("I60xT3", "icosa")):
    testing.register_group(_name, _polyhedral_sampler(_poly))


# --- input makers -----------------------------------------------------------------------------

_PO_KINDS = ("position", "graph_vector", "edge_scalar", "graph_invariant")  # after f


def _points(dim, channels, grid_size=None):
    """``(f, pos)`` for the rotation-grid layers."""

    def make(rng, n):
        graph = testing.random_graph(rng, n, self_loops=True)
        shape = (n, channels) if grid_size is None else (n, grid_size, channels)
        return graph, (rng.normal(size=shape), testing.random_points(rng, n, dim))

    return make


def _po_points(layer, with_ori):
    """``(f, pos, ori or None, None, None)`` for a position-orientation layer of invariants."""
    G = layer.ori.shape[0]

    def make(rng, n):
        graph = testing.random_graph(rng, n, self_loops=True)
        f = rng.normal(size=(n, G, layer.in_channels))
        ori = layer.ori if with_ori else None
        return graph, (f, testing.random_points(rng, n, layer.dim), ori, None, None)

    return make


def _po_bases(layer):
    """``(f, None, None, basis, fiber_basis or None)`` for a layer that takes bases."""
    G, B = layer.ori.shape[0], layer.basis_dim

    def make(rng, n):
        graph = testing.random_graph(rng, n, self_loops=True)
        E = graph.num_edges
        f = rng.normal(size=(n, G, layer.in_channels))
        if layer.separable:
            return graph, (f, None, None, rng.normal(size=(E, G, B)), rng.normal(size=(G, G, B)))
        return graph, (f, None, None, rng.normal(size=(E, G, G, B)), None)

    return make


def _basis_points(block):
    def make(rng, n):
        graph = testing.random_graph(rng, n, self_loops=True)
        return graph, (testing.random_points(rng, n, block.dim), block.ori)

    return make


def _basis_conv_inputs(layer):
    def make(rng, n):
        graph = testing.random_graph(rng, n, self_loops=True)
        return graph, (
            rng.normal(size=(n, layer.in_channels)),
            rng.normal(size=(graph.num_edges, layer.basis_dim)),
        )

    return make


def _rotation_grid_cases() -> list[Case]:
    out = []
    for name, layer, dim, group in (
        ("LiftingConv/SO2_8", LiftingConv(3, 4, grid="SO2_8"), 2, "C8xT2"),
        ("LiftingConv/SO3_octa", LiftingConv(3, 4, grid="SO3_octa"), 3, "O24xT3"),
    ):
        out.append(
            Case(name, layer, _points(dim, 3), ("node_scalar", "position"),
                 (f"grid:{layer.grid}",), group,
                 notes="exact for the grid's group; continuous rotations: "
                 "benchmarks/group_conv_equivariance.py")
        )
    bspline = BSplineKernel(2, 3, degree=3, grid_size=6, extent=3.0)
    for name, layer, dim, G, group in (
        ("GroupConv/SO2_8", GroupConv(3, 4, grid="SO2_8"), 2, 8, "C8xT2"),
        ("GroupConv/SO2_8-bspline", GroupConv(3, 4, grid="SO2_8", kernel=bspline), 2, 8,
         "C8xT2"),
        ("GroupConv/SO3_octa", GroupConv(3, 4, grid="SO3_octa"), 3, 24, "O24xT3"),
        ("GroupConv/SO3_icosa", GroupConv(2, 3, grid="SO3_icosa", hidden=8), 3, 60, "I60xT3"),
    ):
        out.append(
            Case(name, layer, _points(dim, layer.in_channels, G),
                 (f"grid:{layer.grid}", "position"), (f"grid:{layer.grid}",), group,
                 notes="exact for the grid's group (and its subgroups)")
        )
    return out


def _position_orientation_cases() -> list[Case]:
    out = []
    # kernels of the invariants, the grid passed as an input: exact E(3) / SE(2)
    for name, layer, group in (
        ("R3xS2", PositionOrientationConv(3, 4, dim=3, grid="fibonacci", num_ori=8), "E3"),
        ("R3xS2-nonseparable-full", PositionOrientationConv(
            3, 2, dim=3, grid="fibonacci", num_ori=5, separable=False, mixing="full",
            hidden=6), "E3"),
        ("R3xS2-full-nobias", PositionOrientationConv(
            3, 2, dim=3, grid="fibonacci", num_ori=6, mixing="full", bias=False), "E3"),
        ("R2xS1", PositionOrientationConv(3, 4, dim=2, grid="uniform", num_ori=6), "SE2"),
        ("R2xS1-nonseparable-depthwise", PositionOrientationConv(
            3, 3, dim=2, grid="uniform", num_ori=5, separable=False, mixing="depthwise"), "SE2"),
    ):
        out.append(
            Case(f"PositionOrientationConv/{name}", layer, _po_points(layer, True),
                 ("node_scalar",) + _PO_KINDS, ("node_scalar",), group,
                 notes="grid passed as input and moved with the data: exact "
                 + ("O(3) x T(3)" if group == "E3" else "SE(2) (inv2 is signed: no reflections)"))
        )
    # fixed grids: exact for the grid's own group
    for name, layer, kind, group in (
        ("R3xS2-icosahedron", PositionOrientationConv(3, 4, dim=3, grid="icosahedron"),
         "grid:S2_icosahedron", "I60xT3"),
        ("R2xS1-fixed", PositionOrientationConv(3, 4, dim=2, grid="uniform", num_ori=8),
         "grid:S1_8", "C8xT2"),
    ):
        out.append(
            Case(f"PositionOrientationConv/{name}", layer, _po_points(layer, False),
                 (kind,) + _PO_KINDS, (kind,), group,
                 notes="fixed grid: exact for its rotation group (grid axis permuted)")
        )
    pooled = PositionOrientationConv(3, 4, dim=3, grid="fibonacci", num_ori=16, pool=True)
    out.append(
        Case("PositionOrientationConv/R3xS2-fibonacci-pooled", pooled, _po_points(pooled, False),
             ("node_scalar",) + _PO_KINDS, ("node_scalar",), "T3",
             notes="fixed Fibonacci grid, grid-mean output: exact for translations only; "
             "SO(3) invariance error ~1e-3 at G = 16 (benchmarks/group_conv_equivariance.py)")
    )
    # precomputed (shared) bases as inputs: PONITA's FiberBundleConv
    for name, layer in (
        ("basis-depthwise", PositionOrientationConv(
            4, 4, dim=3, grid="fibonacci", num_ori=6, basis_dim=5, mixing="depthwise")),
        ("basis-full-scaled", PositionOrientationConv(
            3, 2, dim=3, grid="fibonacci", num_ori=5, basis_dim=4, mixing="full",
            kernel_scale=0.7, fiber_scale=1.3)),
        ("basis-nonseparable-depthwise", PositionOrientationConv(
            3, 3, dim=2, grid="uniform", num_ori=4, basis_dim=4, separable=False,
            mixing="depthwise")),
        ("basis-nonseparable-linear-pooled", PositionOrientationConv(
            3, 2, dim=3, grid="octahedron", basis_dim=3, separable=False, pool=True)),
    ):
        out.append(
            Case(f"PositionOrientationConv/{name}", layer, _po_bases(layer),
                 ("node_scalar",) + _PO_KINDS, ("node_scalar",), "none",
                 notes="invariant inputs only: node relabelling and edge reordering")
        )
    return out


def _basis_cases() -> list[Case]:
    out = []
    for name, block, group in (
        ("R3xS2-window", PositionOrientationBasis(
            5, dim=3, grid="fibonacci", num_ori=6, hidden=7, radius=2.5), "E3"),
        ("R2xS1-degree2", PositionOrientationBasis(
            4, dim=2, grid="uniform", num_ori=5, hidden=6, degree=2, radius=3.0), "SE2"),
        ("R3xS2-nonseparable", PositionOrientationBasis(
            3, dim=3, grid="fibonacci", num_ori=4, hidden=5, degree=2, separable=False,
            radius=2.5), "E3"),
    ):
        outs = ("edge_scalar", "graph_invariant") if block.separable else ("edge_scalar",)
        out.append(
            Case(f"PositionOrientationBasis/{name}", block, _basis_points(block),
                 ("position", "graph_vector"), outs, group,
                 notes="grid passed as input and moved with the data: invariant bases")
        )
    for name, layer in (
        ("depthwise", BasisConv(4, 4, 5)),
        ("full", BasisConv(3, 2, 4, mixing="full", kernel_scale=0.5)),
        ("linear-nobias", BasisConv(3, 5, 4, mixing="linear", bias=False)),
    ):
        out.append(
            Case(f"BasisConv/{name}", layer, _basis_conv_inputs(layer),
                 ("node_scalar", "edge_scalar"), ("node_scalar",), "none",
                 notes="invariant inputs only: node relabelling and edge reordering")
        )
    return out


def register() -> list[Case]:
    return _rotation_grid_cases() + _position_orientation_cases() + _basis_cases()
