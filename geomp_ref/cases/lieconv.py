r"""Cases of the Lie group convolutions: LieConv on given poses and LiftedLieConv on point clouds.

Kinds registered here (see :mod:`geomp_ref.cases` for the shared vocabulary)
--------------------------------------------------------------------------
``"stabiliser:SE2"``     (N, S) stabiliser angles: ``theta -> theta + angle(Q)``.
``"stabiliser:SE3"``     (N, S, 3) stabiliser rotation vectors: ``Exp(s) -> Q Exp(s)``.

LieConv cases are exact for SE(2)/SE(3) (left action on poses; for point clouds, with the
stabiliser samples transformed too).
"""

from __future__ import annotations

import numpy as np

from .. import testing
from ..layers.lieconv import LieConv, LiftedLieConv, stabiliser_samples
from . import Case

__all__ = ["register"]


def _stabiliser(x, kind, Q, t):
    group = kind.split(":", 1)[1]
    if group == "SE2":
        return np.asarray(x) + np.arctan2(Q[1, 0], Q[0, 0])
    from ..lie import so3

    return so3.log(Q @ so3.exp(x))


testing.register_kind("stabiliser:", _stabiliser)


def _poses(group):
    def make(rng, n):
        from ..lie import se2, se3

        graph = testing.random_graph(rng, n, self_loops=True)
        mod = se2 if group == "SE2" else se3
        return graph, (rng.normal(size=(n, 3)), mod.random(rng, n))

    return make


def _lifted(group, samples):
    def make(rng, n):
        dim = 2 if group == "SE2" else 3
        graph = testing.random_graph(rng, n)
        stab = stabiliser_samples(rng, group, n, samples)
        return graph, (rng.normal(size=(n, 3)), testing.random_points(rng, n, dim), stab)

    return make


def register() -> list[Case]:
    out = []
    small = {"kernel_hidden": (16, 16), "kernel_channels": 8}
    out.append(
        Case(
            "LieConv/SE2-mean",
            LieConv("SE2", 3, 4, **small),
            _poses("SE2"),
            ("node_scalar", "pose"),
            ("node_scalar",),
            "SE2",
            notes="k(Log(g_i^-1 g_j)) on given SE(2) poses; exact under left action",
        )
    )
    out.append(
        Case(
            "LieConv/SE3-sum",
            LieConv("SE3", 3, 4, aggr="sum", **small),
            _poses("SE3"),
            ("node_scalar", "pose"),
            ("node_scalar",),
            "SE3",
            notes="k(Log(g_i^-1 g_j)) on given SE(3) poses; exact under left action",
        )
    )
    out.append(
        Case(
            "LiftedLieConv/SE2",
            LiftedLieConv("SE2", 3, 4, **small),
            _lifted("SE2", 3),
            ("node_scalar", "position", "stabiliser:SE2"),
            ("node_scalar",),
            "SE2",
            notes="point cloud lifted with 3 stabiliser samples (odd: no pair at pi)",
        )
    )
    out.append(
        Case(
            "LiftedLieConv/SE3",
            LiftedLieConv("SE3", 3, 4, **small),
            _lifted("SE3", 2),
            ("node_scalar", "position", "stabiliser:SE3"),
            ("node_scalar",),
            "SE3",
            notes="point cloud lifted with 2 Haar stabiliser samples per point",
        )
    )

    return out
