r"""SEGNN's geometric inputs: steerable edge/node attributes (with VJP) and the N-body features.

.. math::

    a_{ij} = Y(x_{ij}/\lVert x_{ij}\rVert), \qquad
    a_i = \frac{1}{|N(i)|}\sum_{j \in N(i)} a_{ij}\ (\text{then } a_i^{(0)} := \text{const}),
    \qquad s_{ij} = \lVert x_{ij}\rVert^2 .

``mode="reference"`` sets :math:`a_i^{(0)} = 1` for every node (Steerable-E3-GNN's
``catch_isolated_nodes``), ``"corrected"`` :math:`a_i^{(0)} = Y^0` (the mean of a constant, also
for isolated nodes). VJP: the constant column gets no cotangent, the mean reverses into a gather
divided by the in-degree, :math:`\bar x_{ij} \mathrel{+}= 2 \bar s_{ij} x_{ij}`, then the
harmonics' VJP and :func:`~geomp_ref.graph.edge_vectors_vjp` (``derivations/segnn.py``).
See :mod:`geomp_ref.layers.segnn` for the layer and the reference paper.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validate import as_float64
from ..graph import Graph, edge_vectors, edge_vectors_vjp
from ..ops import scatter
from .segnn_blocks import _check_mode
from .segnn_common import edge_harmonics, edge_harmonics_vjp

__all__ = ["SEGNNAttributes", "nbody_features", "segnn_attributes", "segnn_attributes_vjp"]


class SEGNNAttributes(NamedTuple):
    """Geometric inputs of every SEGNN layer, computed once from positions."""

    graph: Graph
    edge_vec: np.ndarray
    u: np.ndarray
    a_ij: np.ndarray  # (E, sh_dim)
    a_i: np.ndarray  # (N, sh_dim)
    s_ij: np.ndarray  # (E, 1) squared distance


def _y0(normalization: str) -> float:
    return {"component": 1.0, "norm": 1.0, "integral": 1.0 / np.sqrt(4.0 * np.pi)}[normalization]


def segnn_attributes(graph: Graph, pos, lmax: int, sh_normalization: str, mode: str,
                     zero_length: str = "raise", backend: str = "numpy") -> SEGNNAttributes:
    r"""Edge attributes :math:`a_{ij}`, node attributes :math:`a_i` and :math:`\lVert x_{ij}\rVert^2`."""
    edge_vec = edge_vectors(graph, pos)
    a_ij, u = edge_harmonics(edge_vec, lmax, sh_normalization, zero_length)
    a_i = scatter.aggregate_mean(graph, a_ij, backend=backend)
    # reference: node_attr[:, 0] = 1; corrected: the l = 0 mean is Y^0 for every node
    a_i[:, 0] = 1.0 if mode == "reference" else _y0(sh_normalization)
    s_ij = np.sum(edge_vec * edge_vec, axis=1, keepdims=True)
    return SEGNNAttributes(graph, edge_vec, u, a_ij, a_i, s_ij)


def segnn_attributes_vjp(att: SEGNNAttributes, lmax: int, sh_normalization: str, g_a_ij, g_a_i,
                         g_s_ij, backend: str = "numpy"):
    """VJP of :func:`segnn_attributes` w.r.t. ``pos``."""
    g_a_i = np.array(g_a_i, dtype=np.float64)
    g_a_i[:, 0] = 0.0  # reverses the constant overwrite of column 0
    g_a = g_a_ij + scatter.aggregate_mean_vjp(att.graph, att.a_ij, g_a_i, backend=backend)
    g_vec = edge_harmonics_vjp(att.edge_vec, att.u, lmax, sh_normalization, g_a)
    g_vec = g_vec + 2.0 * g_s_ij * att.edge_vec  # reverses s_ij = |x_ij|^2
    return edge_vectors_vjp(att.graph, g_vec)


def nbody_features(graph: Graph, pos, vel, mode: str = "corrected"):
    r"""SEGNN's N-body node input ``[x_i - c, v_i, |v_i|]`` (irreps ``2x1o+1x0e``).

    ``mode="reference"``: :math:`c_i` = the mean of node i's *own* three coordinates (the
    reference's ``pos.mean(1)``, issue #12), which breaks rotation and translation equivariance;
    ``"corrected"``: :math:`c` = the centroid of the node's graph. No VJP (an input builder).
    """
    _check_mode(mode, "nbody_features")
    pos = as_float64(pos, "pos", ndim=2)
    vel = as_float64(vel, "vel", ndim=2)
    if pos.shape != (graph.num_nodes, 3) or vel.shape != pos.shape:
        raise ValueError(f"pos and vel must have shape ({graph.num_nodes}, 3); got {pos.shape} "
                         f"and {vel.shape}")
    if mode == "reference":
        center = pos.mean(axis=1, keepdims=True)
    else:
        center = scatter.scatter_mean(pos, graph.batch, graph.num_graphs)[graph.batch]
    speed = np.sqrt(np.sum(vel * vel, axis=1, keepdims=True))
    return np.concatenate([pos - center, vel, speed], axis=1)
