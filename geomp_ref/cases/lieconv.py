r"""Cases of the Lie group convolutions: LieConv on given poses and LiftedLieConv on point clouds.

Kinds registered here (see :mod:`geomp_ref.cases` for the shared vocabulary)
--------------------------------------------------------------------------
``"stabiliser:SE2"``     (N, S) stabiliser angles: ``theta -> theta + angle(Q)``.
``"stabiliser:SE3"``     (N, S, 3) stabiliser rotation vectors: ``Exp(s) -> Q Exp(s)``.

LieConv cases are exact for SE(2)/SE(3) (left action on poses; for point clouds, with the
stabiliser samples transformed too). LieConv's inputs are ``(f, g, pairs)``: the pose cases leave
``pairs`` as ``None``, the given-pairs case leaves ``g`` as ``None``. The ``BSpline`` cases use
Bekkers' cubic B-spline kernels on the Lie algebra coordinates.
"""

from __future__ import annotations

import numpy as np

from .. import testing
from ..layers.kernels import BSplineKernel
from ..layers.lieconv import LieConv
from ..layers.lieconv_lift import stabiliser_samples
from ..layers.lifted_lieconv import LiftedLieConv
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
        return graph, (rng.normal(size=(n, 3)), mod.random(rng, n), None)

    return make


def _pairs(width):
    def make(rng, n):
        graph = testing.random_graph(rng, n, self_loops=True)
        return graph, (rng.normal(size=(n, 3)), None, rng.normal(size=(graph.num_edges, width)))

    return make


def _lifted(group, samples):
    def make(rng, n):
        dim = 2 if group == "SE2" else 3
        graph = testing.random_graph(rng, n)
        stab = stabiliser_samples(rng, group, n, samples)
        return graph, (rng.normal(size=(n, 3)), testing.random_points(rng, n, dim), stab)

    return make


_POSE_KINDS = ("node_scalar", "pose", "edge_scalar")


def _pose_case(name, layer, group, notes):
    return Case(name, layer, _poses(group), _POSE_KINDS, ("node_scalar",), group, notes=notes)


def register() -> list[Case]:
    small = {"kernel_hidden": (16, 16), "kernel_channels": 8}
    # B-spline grids: relative translations of random poses mostly within +-3; angles in
    # (-pi, pi]; degree 3 is C^2, so central differences see no kink
    bs_se2 = BSplineKernel(3, 6, 3, (5, 5, 7), (2.5, 2.5, np.pi))
    bs_se3 = BSplineKernel(6, 4, 3, 4, (2.5, 2.5, 2.5, np.pi, np.pi, np.pi))
    return [
        _pose_case("LieConv/SE2-mean", LieConv("SE2", 3, 4, **small), "SE2",
                   "k(Log(g_i^-1 g_j)) on given SE(2) poses; exact under left action"),
        _pose_case("LieConv/SE3-sum", LieConv("SE3", 3, 4, aggr="sum", **small), "SE3",
                   "k(Log(g_i^-1 g_j)) on given SE(3) poses; exact under left action"),
        _pose_case("LieConv/SE2-lieconv_log-lieconv_mean",
                   LieConv("SE2", 3, 4, aggr="lieconv_mean", kernel_input="lieconv_log", **small),
                   "SE2", "LieConv's pair coordinates (rotation first, Log(g_j^-1 g_i)) and its "
                   "mean (bias divided too)"),
        _pose_case("LieConv/SE2-BSpline", LieConv("SE2", 3, 4, aggr="sum", kernel=bs_se2), "SE2",
                   "cubic B-spline kernel on the se(2) coordinates (rho1, rho2, theta)"),
        _pose_case("LieConv/SE3-BSpline", LieConv("SE3", 3, 4, kernel=bs_se3), "SE3",
                   "cubic B-spline kernel on the se(3) coordinates (rho, omega), 4^6 centres"),
        Case("LieConv/given-pairs-weightnet",
             LieConv("SE3", 3, 4, aggr="lieconv_mean", kernel_input="given", **small),
             _pairs(6), _POSE_KINDS, ("node_scalar",), "SE3",
             notes="the published layer's form: kernel on given pair coordinates (invariant "
                   "edge inputs), WeightNet with swish after every layer, LieConv's mean"),
        Case("LiftedLieConv/SE2", LiftedLieConv(LieConv("SE2", 3, 4, **small)),
             _lifted("SE2", 3), ("node_scalar", "position", "stabiliser:SE2"),
             ("node_scalar",), "SE2",
             notes="point cloud lifted with 3 stabiliser samples (odd: no pair at pi)"),
        Case("LiftedLieConv/SE3", LiftedLieConv(LieConv("SE3", 3, 4, **small)),
             _lifted("SE3", 2), ("node_scalar", "position", "stabiliser:SE3"),
             ("node_scalar",), "SE3",
             notes="point cloud lifted with 2 Haar stabiliser samples per point"),
    ]
