r"""SEGNN's N-body inputs from positions, velocities and charges, differentiable (one block).

Steerable-E3-GNN's N-body transform (``nbody/train_nbody.py``, ``O3Transform``) builds, for
positions :math:`x_i`, velocities :math:`v_i` and charges :math:`q_i` on a graph with
:math:`x_{ij} = x_j - x_i` (sender j, receiver i):

.. math::

    f_i &= [\,x_i - c_i,\ v_i,\ \lVert v_i\rVert\,] \quad (\text{irreps } 2x1o + 1x0e),\\
    a_{ij} &= Y(x_{ij}/\lVert x_{ij}\rVert),\qquad
    a_i = \frac{1}{|N(i)|}\sum_{j \in N(i)} a_{ij} + Y(v_i/\lVert v_i\rVert),
    \quad a_i^{(0)} := 1,\\
    s_{ij} &= [\,\lVert x_{ij}\rVert,\ q_i q_j\,] \quad (2x0e),

with :math:`Y = Y^0 \oplus \dots \oplus Y^{l_{max}}` (published: ``'integral'`` normalisation) and
the ``l = 0`` column of :math:`a_i` set to 1 (the published network does it in its forward; the
builder does it too, so either order gives the same attributes). These are SEGNN's
``f``, ``edge_attr``, ``node_attr`` and ``message_features`` inputs with ``edge_attr='input'``,
``node_attr='input'``, ``message_features='input'`` and ``additional_message_irreps='2x0e'``.

Centring (``mode``): ``"reference"`` subtracts from each position the mean of its *own three
coordinates*, :math:`c_i = \tfrac13 \sum_k x_{ik}` (the published ``pos.mean(1)``), which breaks
rotation and translation equivariance; ``"corrected"`` subtracts the centroid of the node's
graph.

Lengths come from :func:`geomp_ref.ops.geometry.edge_length` (scale-safe, the one length op; it
also serves the speeds :math:`\lVert v_i\rVert`), directions from
:func:`geomp_ref.o3.edge_harmonics`. A zero edge vector or a zero velocity has no direction:
``zero_length='raise'`` names it, ``'e3nn'`` uses e3nn's value (harmonics of the clamped vector,
length 0) and the subgradient 0 for the length.

VJP (with respect to positions, velocities and charges): the centring reverses into
:math:`\bar x_i \mathrel{-}= \tfrac13\sum_k \bar f_{ik}` (reference) or the graph mean of
:math:`\bar f` (corrected); the overwritten column gets no cotangent; the mean reverses into a
gather over the in-degree; lengths give :math:`\bar d\, u`; the charge product
:math:`\bar q_i \mathrel{+}= \bar s_{ij} q_j` at both ends; edge cotangents reach positions through
:func:`~geomp_ref.graph.edge_vectors_vjp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import o3
from .._validate import (
    as_rng,
    check_cache,
    check_choice,
    check_graph,
    check_int,
    check_params,
    grad_outs,
    node_array,
    positions,
)
from ..graph import edge_vectors, edge_vectors_vjp
from ..o3.spherical_harmonics import LMAX as _SH_LMAX
from ..ops import scatter
from ..ops.geometry import edge_length, edge_length_vjp
from .base import Block, check_backend
from .segnn_attributes import SH_NORMALIZATIONS
from .segnn_blocks import check_mode

__all__ = ["NBodyAttributes", "NBodyAttributesCache"]


class NBodyAttributesCache(NamedTuple):
    """``graph``, the inputs ``pos``, ``vel``, ``charges`` and the edge vectors ``edge_vec``."""

    graph: Any
    pos: np.ndarray
    vel: np.ndarray
    charges: np.ndarray
    edge_vec: np.ndarray


@dataclass(frozen=True)
class NBodyAttributes(Block):
    r"""SEGNN's N-body inputs (module docstring), a block without parameters.

    Parameters
    ----------
    lmax_attr : int
        Degree of the harmonics (attribute irreps ``Irreps.spherical_harmonics(lmax_attr)``).
    sh_normalization : {'integral', 'component', 'norm'}
        Published: ``'integral'``.
    mode : {'corrected', 'reference'}
        Centring on the graph's centroid, or on each node's own coordinate mean (published).
    zero_length : {'raise', 'e3nn'}
        Zero edge vectors and zero velocities: a named error, or e3nn's value.
    backend : str

    Notes
    -----
    ``forward(params, graph, pos, vel, charges) -> ((f, edge_attr, node_attr,
    message_features), cache)`` with ``pos`` and ``vel`` (N, 3), ``charges`` (N, 1); outputs
    (N, 7), (E, (lmax+1)^2), (N, (lmax+1)^2), (E, 2). ``backward(params, cache, grad_out) ->
    ({}, (grad_pos, grad_vel, grad_charges))`` with ``grad_out`` a 4-tuple (None = zero).
    """

    lmax_attr: int = 1
    sh_normalization: str = "integral"
    mode: str = "corrected"
    zero_length: str = "raise"
    backend: str = "numpy"

    def __post_init__(self):
        check_int(self.lmax_attr, "NBodyAttributes.lmax_attr", maximum=_SH_LMAX)
        check_choice(self.sh_normalization, "NBodyAttributes.sh_normalization",
                     SH_NORMALIZATIONS)
        check_mode(self.mode, "NBodyAttributes")
        check_choice(self.zero_length, "NBodyAttributes.zero_length", ("raise", "e3nn"))
        check_backend(self.backend, "NBodyAttributes")

    @property
    def _ls(self):
        return list(range(self.lmax_attr + 1))

    @property
    def irreps_attr(self):
        return o3.Irreps.spherical_harmonics(self.lmax_attr)

    def param_shapes(self) -> dict:
        return {}

    def init(self, rng) -> dict:
        as_rng(rng, "rng")
        return {}

    def _out_shapes(self, graph):
        n, e, k = graph.num_nodes, graph.num_edges, (self.lmax_attr + 1) ** 2
        return ((n, 7), (e, k), (n, k), (e, 2))

    def forward(self, params, graph, pos, vel, charges):
        check_params(params, {}, "NBodyAttributes", exact=True)
        graph = check_graph(graph)
        pos = positions(pos, graph, 3)
        vel = positions(vel, graph, 3, name="vel")
        charges = node_array(charges, "charges", graph, 1)
        allow_zero = self.zero_length == "e3nn"
        still = np.flatnonzero(np.all(vel == 0.0, axis=1))
        if not allow_zero and still.size:
            raise ValueError(
                f"vel: node {int(still[0])} has zero velocity, so its direction (for the "
                "harmonics Y(v/|v|)) and the gradient of its speed are undefined; pass "
                "zero_length='e3nn' for e3nn's value (Y^0 only, subgradient 0)")
        # f = [x - c, v, |v|]
        if self.mode == "reference":
            center = pos.mean(axis=1, keepdims=True)
        else:
            center = scatter.scatter_mean(pos, graph.batch, graph.num_graphs,
                                          backend=self.backend)[graph.batch]
        speed = edge_length(vel, allow_zero=True, name="vel")[:, None]  # zeros checked above
        f = np.concatenate([pos - center, vel, speed], axis=1)
        # a_ij = Y(x_ij / |x_ij|); a_i = mean_j a_ij + Y(v / |v|), column 0 := 1
        edge_vec = edge_vectors(graph, pos)
        kw = {"zero_length": self.zero_length}
        edge_attr = o3.edge_harmonics(self.lmax_attr, edge_vec, self.sh_normalization, **kw)
        node_attr = scatter.aggregate_mean(graph, edge_attr, backend=self.backend)
        node_attr = node_attr + o3.spherical_harmonics(self._ls, vel, True, self.sh_normalization,
                                                       zero_vector=self.zero_length)
        node_attr[:, 0] = 1.0
        # s_ij = [|x_ij|, q_i q_j]
        dist = edge_length(edge_vec, allow_zero=allow_zero, name="pos[src] - pos[dst]")
        prod = charges[graph.dst, 0] * charges[graph.src, 0]
        msg = np.stack([dist, prod], axis=1)
        cache = NBodyAttributesCache(graph, pos, vel, charges, edge_vec)
        return (f, edge_attr, node_attr, msg), cache

    def backward(self, params, cache: NBodyAttributesCache, grad_out):
        check_cache(cache, NBodyAttributesCache, "NBodyAttributes")
        graph = cache.graph
        g_f, g_ea, g_na, g_msg = grad_outs(grad_out, self._out_shapes(graph), "NBodyAttributes")
        allow_zero = self.zero_length == "e3nn"
        kw = {"zero_length": self.zero_length}
        # reverses `msg = [dist, prod]`: prod = q_i q_j, dist = |x_ij|
        g_q = (scatter.scatter_sum(g_msg[:, 1] * cache.charges[graph.src, 0], graph.dst,
                                   graph.num_nodes, backend=self.backend)
               + scatter.scatter_sum(g_msg[:, 1] * cache.charges[graph.dst, 0], graph.src,
                                     graph.num_nodes, backend=self.backend))[:, None]
        g_vec = edge_length_vjp(cache.edge_vec, g_msg[:, 0], allow_zero=allow_zero,
                                name="pos[src] - pos[dst]")
        # reverses `node_attr[:, 0] = 1`, the velocity harmonics and the mean
        g_na = g_na.copy()
        g_na[:, 0] = 0.0
        g_vel = o3.spherical_harmonics_vjp(self._ls, cache.vel, g_na, True, self.sh_normalization,
                                           zero_vector=self.zero_length)
        g_ea = g_ea + scatter.aggregate_mean_vjp(graph, None, g_na, backend=self.backend)
        # reverses `edge_attr = Y(x_ij / |x_ij|)`
        g_vec = g_vec + o3.edge_harmonics_vjp(self.lmax_attr, cache.edge_vec, g_ea,
                                              self.sh_normalization, **kw)
        g_pos = edge_vectors_vjp(graph, g_vec)
        # reverses `f = [pos - center, vel, speed]`
        g_c = g_f[:, :3]
        if self.mode == "reference":
            g_pos = g_pos + g_c - g_c.mean(axis=1, keepdims=True)
        else:
            g_mean = scatter.scatter_sum(g_c, graph.batch, graph.num_graphs, backend=self.backend)
            count = np.maximum(graph.nodes_per_graph(), 1)[:, None]
            g_pos = g_pos + g_c - (g_mean / count)[graph.batch]
        g_vel = g_vel + g_f[:, 3:6] + edge_length_vjp(cache.vel, g_f[:, 6], allow_zero=True,
                                                      name="vel")
        return {}, (g_pos, g_vel, g_q)
