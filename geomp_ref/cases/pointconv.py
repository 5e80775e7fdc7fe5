"""Cases of PointConv: ``k(x_j - x_i) f_j`` with a relative-position kernel (translation-invariant
only, group "T3": the counter-example) and with a distance kernel (E(3)-invariant)."""

from __future__ import annotations

from ..layers.pointconv import PointConv
from . import Case
from ._util import random_cloud_graph

__all__ = ["register"]

C_IN = 4


def _pointconv_inputs(rng, num_nodes):
    graph, pos = random_cloud_graph(rng, num_nodes)
    return graph, (rng.normal(size=(num_nodes, C_IN)), pos)


def register() -> list[Case]:
    return [
        Case(
            "PointConv/relative",
            PointConv(C_IN, 5, (8, 8), "relative"),
            _pointconv_inputs,
            ("node_scalar", "position"),
            ("node_scalar",),
            "T3",
            notes="counter-example: kernel of x_j - x_i is translation-invariant only",
        ),
        Case(
            "PointConv/distance",
            PointConv(C_IN, 5, (8, 8), "distance"),
            _pointconv_inputs,
            ("node_scalar", "position"),
            ("node_scalar",),
            "E3",
        ),
    ]
