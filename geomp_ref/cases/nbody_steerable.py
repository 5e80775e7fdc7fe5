"""Cases of the steerable N-body models (NBodySEGNN, NBodyTFN, NBodySE3TFN).

Problems are batches of charged five-body systems on complete graphs, as the published loader
builds them: positions at least 0.5 apart, velocities of order one (never zero, where the speed
and the velocity's harmonics have no derivative), unit charges of random sign. Widths are small
so that the finite-difference battery stays fast.

* ``NBodySEGNN/reference`` is the published model: it centres each position on the mean of its
  own coordinates, which is neither rotation nor translation equivariant, so only node
  permutations are checked (group "none"); ``NBodySEGNN/corrected`` centres on the system's
  centroid and must be E(3)-equivariant.
* ``NBodySE3TFN/small`` is the published TFN's architecture, rotation- and
  translation-equivariant only (group "SE3").
* ``NBodyTFN/small`` uses a radius of 6 so that the longest edges (up to ~5) fall inside the
  cutoff's smooth ramp (from 3 to 6) and its derivative is exercised; E(3)-equivariant.

Finite-difference step 1e-4 as for the other deep steerable cases (SEGNN's
U(+-1/sqrt(fan_in)) init leaves some parameters with small gradients, where the round-off of a
smaller step dominates).
"""

from __future__ import annotations

from ..models.nbody_steerable import NBodySE3TFN, NBodySEGNN, NBodyTFN
from . import Case
from .nbody import _systems as _nbody_systems


def _systems(rng, num_nodes):
    """Five-body systems with inputs (x, v, charges), as the other N-body cases draw them."""
    graph, x, v, charges = _nbody_systems(rng, num_nodes)
    return graph, (x, v, charges)


def register() -> list[Case]:
    kinds = ("position", "vector", "node_scalar")
    small_segnn = {"irreps_hidden": "4x0e+2x1o", "num_layers": 2}
    return [
        Case("NBodySEGNN/reference", NBodySEGNN(**small_segnn, mode="reference"), _systems,
             kinds, ("position",), "none", fd_eps=1e-4,
             notes="the published centring (each position minus the mean of its coordinates)"),
        Case("NBodySEGNN/corrected", NBodySEGNN(**small_segnn, mode="corrected"), _systems,
             kinds, ("position",), "E3", fd_eps=1e-4,
             notes="centred on the system's centroid: E(3)-equivariant"),
        Case("NBodyTFN/small", NBodyTFN(channels=3, num_layers=3, max_radius=6.0, num_basis=6,
                                        radial_neurons=8, radial_layers=1), _systems,
             kinds, ("position",), "E3", fd_eps=1e-4,
             notes="three convolutions (two gated), harmonics to l = 2, cutoff ramp exercised"),
        Case("NBodySE3TFN/small", NBodySE3TFN(channels=3, num_layers=3, radial_hidden=6),
             _systems, kinds, ("position",), "SE3",
             notes="the published TFN's architecture: SE(3) only (cross-product kernel); "
                   "ReLUs, so the default step 1e-5 (see cases/se3_tfn.py)"),
    ]
