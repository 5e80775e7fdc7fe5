"""Cases of PointConv: ``k(x_j - x_i) f_j`` with a relative-position kernel (translation-invariant
only, group "T3": the counter-example) and with a distance kernel (E(3)-invariant), each with the
default MLP kernel and with a cubic B-spline kernel (``BSpline`` cases; relative vectors of the
random clouds lie mostly within +-3, distances within 3)."""

from __future__ import annotations

from ..layers.kernels import BSplineKernel
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
        Case(
            "PointConv/BSpline-relative",
            PointConv(C_IN, 5, kernel=BSplineKernel(3, C_IN, 3, 6, 3.0)),
            _pointconv_inputs,
            ("node_scalar", "position"),
            ("node_scalar",),
            "T3",
            notes="cubic B-spline kernel on x_j - x_i (6^3 centres on [-3, 3]^3)",
        ),
        Case(
            "PointConv/BSpline-distance",
            PointConv(C_IN, 5, kernel_input="distance", kernel=BSplineKernel(1, C_IN, 3, 9, 3.0)),
            _pointconv_inputs,
            ("node_scalar", "position"),
            ("node_scalar",),
            "E3",
            notes="cubic B-spline kernel on |x_j - x_i|",
        ),
    ]
