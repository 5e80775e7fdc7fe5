"""Cases of :class:`~geomp_ref.models.nbody_ponita.NBodyPONITA` (PONITA on the N-body task).

Problems are the N-body cases' batches of charged five-body systems (complete graphs; the model
adds the self loops). The orientation grid is passed as an input (kind ``graph_vector``) and so
moves with the data: the model is then exactly E(3)-equivariant, and its gradient with respect
to the grid is checked too. Widths are small so that the finite-difference battery stays fast;
the layer scale is 0.3 instead of the published 1e-6, so that the later layers change the
output by more than the finite differences' round-off.
"""

from __future__ import annotations

from ..models.nbody_ponita import NBodyPONITA
from . import Case
from .nbody import _systems as _nbody_systems


def _with_grid(block):
    def make(rng, num_nodes):
        graph, x, v, charges = _nbody_systems(rng, num_nodes)
        return graph, (x, v, charges, block.ori)

    return make


def register() -> list[Case]:
    kinds = ("position", "vector", "node_scalar", "graph_vector")
    small = NBodyPONITA(hidden=4, num_layers=2, num_ori=6, basis_dim=5, degree=2,
                        widening=2, layer_scale=0.3)
    last_only = NBodyPONITA(hidden=3, num_layers=2, num_ori=5, basis_dim=4, degree=3,
                            widening=2, layer_scale=None, multiple_readouts=False, radius=4.0)
    return [
        Case("NBodyPONITA/small", small, _with_grid(small), kinds, ("position",), "E3",
             fd_eps=1e-5, notes="grid moved with the data: exact E(3); read-out after every "
                                "layer, layer scale 0.3"),
        Case("NBodyPONITA/window-last-readout", last_only, _with_grid(last_only), kinds,
             ("position",), "E3", fd_eps=1e-5,
             notes="no layer scale, one read-out, spatial window of radius 4 (edges up to ~5 "
                   "cross it)"),
    ]
