r"""LieConv on a point cloud: lift every point to S poses, convolve on the lifted graph, average.

.. math::

    g_{n,s} = (\mathrm{Exp}(\sigma_{n,s}), x_n), \qquad
    out_n = \frac1S \sum_s \mathrm{LieConv}(f_{\text{lift}}, g)_{n,s},

with stabiliser tangents :math:`\sigma` (from
:func:`geomp_ref.layers.lieconv_lift.stabiliser_samples`; an explicit input, so nothing is random
inside) and :math:`f_{\text{lift}}` the features repeated over the samples of each point. The
lifted graph (:func:`~geomp_ref.layers.lieconv_lift.lift_graph`) joins every lift of j to every
lift of i for each edge j -> i, and (``fibre_edges``) the lifts of each point among themselves.

Symmetry: exactly invariant under :math:`x \mapsto Qx + t` when the samples move with the input,
:math:`\mathrm{Exp}(\sigma) \mapsto Q\,\mathrm{Exp}(\sigma)` (kinds ``"stabiliser:SE2"`` /
``"stabiliser:SE3"``); with the samples held fixed it is invariant only in distribution (LieConv
samples them at random). SE(2) stabiliser grids with an even number of equally spaced angles
put pairs of lifts exactly :math:`\pi` apart, where Log switches twin; ``stabiliser_samples``
avoids that.

Backward (reverse line order): the mean over samples spreads :math:`\bar{out}/S`; the LieConv
block's own backward gives the feature and pose gradients; the lifted feature gradients are
summed over the samples; :func:`~geomp_ref.layers.lieconv_lift.lift_vjp` splits the pose
gradients into positions (translation columns summed over samples) and rotations, and the
``Exp`` VJP maps the rotation gradients to the stabiliser tangents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_float64,
    as_rng,
    check_bool,
    check_cache,
    check_graph,
    check_params,
    grad_out,
    node_array,
    positions,
)
from .base import Block
from .lieconv import LieConv, LieConvCache
from .lieconv_lift import lift, lift_graph, lift_vjp, stabiliser_rotations, stabiliser_rotations_vjp

__all__ = ["LiftedLieConv", "LiftedLieConvCache"]


class LiftedLieConvCache(NamedTuple):
    pos: np.ndarray  # (N, D)
    stab: np.ndarray  # (N, S) or (N, S, 3)
    rotations: np.ndarray  # (N, S, D, D)
    conv: LieConvCache  # the LieConv block's cache on the lifted graph


@dataclass(frozen=True)
class LiftedLieConv(Block):
    r"""Lift, LieConv, mean over the stabiliser samples.

    Parameters
    ----------
    conv : LieConv
        The convolution on the lifted poses (``kernel_input`` ``"log"`` or ``"lieconv_log"``).
    fibre_edges : bool
        Also connect the lifts of each point among themselves (self-loops included), as LieConv's
        neighbourhoods always contain the query point's other lifts.

    ``forward(params, graph, f, pos, stab)``: ``f`` (N, C_in), ``pos`` (N, D), ``stab`` (N, S)
    angles (SE2) or (N, S, 3) rotation vectors (SE3) -> (N, C_out).
    ``backward -> (grads, (grad_f, grad_pos, grad_stab))``. Params: ``{"conv": LieConv params}``.
    """

    conv: LieConv
    fibre_edges: bool = True

    def __post_init__(self):
        if not isinstance(self.conv, LieConv):
            raise TypeError(
                f"LiftedLieConv.conv must be a LieConv spec (e.g. LieConv('SE2', 3, 4)); got "
                f"{type(self.conv).__name__}"
            )
        if self.conv.kernel_input == "given":
            raise ValueError(
                "LiftedLieConv.conv.kernel_input must be 'log' or 'lieconv_log': the lifted "
                "layer computes the pairs from the lifted poses"
            )
        check_bool(self.fibre_edges, "LiftedLieConv.fibre_edges")

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def param_shapes(self) -> dict:
        return {"conv": self.conv.param_shapes()}

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        return {"conv": self.conv.init(rng)}

    def forward(self, params, graph, f, pos, stab):
        check_params(params, self.param_shapes(), "LiftedLieConv", exact=True)
        check_graph(graph)
        N, D = graph.num_nodes, self.conv.dim
        pos = positions(pos, graph, D)
        stab = as_float64(stab, "stab", ndim=2 if D == 2 else 3)
        if stab.shape[0] != N or stab.shape[1] < 1 or stab.shape[2:] != ((3,) if D == 3 else ()):
            raise ValueError(
                f"stab must have shape ({N}, S{'' if D == 2 else ', 3'}) with S >= 1 "
                f"(stabiliser samples per point); got {stab.shape}"
            )
        f = node_array(f, "f", graph, self.conv.in_channels)
        S = stab.shape[1]
        rotations = stabiliser_rotations(self.conv.group, stab)
        g = lift(pos, rotations)
        lgraph = lift_graph(graph, S, fibre_edges=self.fibre_edges)
        out_l, conv = self.conv.forward(params["conv"], lgraph, np.repeat(f, S, axis=0), g)
        out = out_l.reshape(N, S, self.conv.out_channels).mean(axis=1)
        return out, LiftedLieConvCache(pos, stab, rotations, conv)

    def backward(self, params, cache, grad_out_):
        check_cache(cache, LiftedLieConvCache, "LiftedLieConv")
        pos, stab, rotations, conv = cache
        N, S = stab.shape[0], stab.shape[1]
        grad = grad_out(grad_out_, (N, self.conv.out_channels), "LiftedLieConv")
        # reverses out = mean over samples
        grad_l = np.repeat(grad / S, S, axis=0)
        # reverses out_l = LieConv(f repeated, g)
        grads, (grad_fl, grad_g, _) = self.conv.backward(params["conv"], conv, grad_l)
        grad_f = grad_fl.reshape(N, S, self.conv.in_channels).sum(axis=1)
        # reverses g = lift(pos, rotations) and rotations = Exp(stab)
        grad_pos, grad_R = lift_vjp(pos, rotations, grad_g)
        grad_stab = stabiliser_rotations_vjp(self.conv.group, stab, grad_R)
        return {"conv": grads}, (grad_f, grad_pos, grad_stab)
