r"""SEGNN's geometric inputs: edge attributes, node attributes and extra message features.

Each of the three is either computed here from the positions or passed in (SEGNN's options):

.. math::

    a_{ij} = Y(x_{ij}/\lVert x_{ij}\rVert)\ (\texttt{edge\_attr="harmonics"}),\qquad
    a_i = \frac{1}{|N(i)|}\sum_{j \in N(i)} a_{ij}\ (\texttt{node\_attr="mean"}),\qquad
    s_{ij} = \lVert x_{ij}\rVert^2\ (\texttt{message\_features="squared\_distance"}),

with :math:`x_{ij} = x_j - x_i` (sender j, receiver i), :math:`Y = Y^0 \oplus \dots \oplus
Y^{l_{max}}` (:func:`geomp_ref.o3.edge_harmonics`) and an isolated node's mean 0. Column 0 of the
node attributes (the ``l = 0`` entry) is then overwritten: ``mode="reference"`` sets it to 1 for
every node, computed or given, as the published forward does (``node_attr[:, 0] = 1``, its
``catch_isolated_nodes``); ``mode="corrected"`` sets a computed mean's column 0 to :math:`Y^0`
(the mean of a constant, also for isolated nodes) and leaves given node attributes alone.
``"squared_distance"`` is the published QM9 choice (with ``sh_normalization="component"``);
N-body passes everything in (:class:`~geomp_ref.layers.segnn_nbody.NBodyAttributes`).

VJP: an overwritten column gets no cotangent, the mean reverses into a gather divided by the
in-degree, :math:`\bar x_{ij} \mathrel{+}= 2 \bar s_{ij} x_{ij}`, then the harmonics' VJP and
:func:`~geomp_ref.graph.edge_vectors_vjp` (``derivations/segnn.py``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .. import o3
from .._validate import edge_array, node_array, positions
from ..graph import edge_vectors, edge_vectors_vjp
from ..o3.spherical_harmonics import NORMALIZATIONS as SH_NORMALIZATIONS
from ..ops import scatter
from ..ops.geometry import edge_sqlength, edge_sqlength_vjp
from .base import check_optional

__all__ = [
    "EDGE_ATTR",
    "MESSAGE_FEATURES",
    "NODE_ATTR",
    "SH_NORMALIZATIONS",
    "SEGNNAttributesCache",
    "segnn_attributes",
    "segnn_attributes_vjp",
    "y0",
]

EDGE_ATTR = ("harmonics", "input")
NODE_ATTR = ("mean", "input")
MESSAGE_FEATURES = ("squared_distance", "input", "none")


def y0(normalization: str) -> float:
    r"""The constant :math:`Y^0`: :math:`1/\sqrt{4\pi}` for 'integral', else 1."""
    return 1.0 / math.sqrt(4.0 * math.pi) if normalization == "integral" else 1.0


class SEGNNAttributesCache(NamedTuple):
    """What the VJP needs: ``graph``, the edge vectors ``edge_vec`` (None without positions), and
    ``a_ij`` (the edge attributes, read for their shape by the mean's VJP)."""

    graph: Any
    edge_vec: Any
    a_ij: np.ndarray


def segnn_attributes(spec, graph, pos, edge_attr, node_attr, message_features):
    """``((a_ij, a_i, s_ij), cache)`` for a SEGNN ``spec``; ``s_ij`` is None without extra
    message features. Inputs not used by the spec's options must be None."""
    uses_pos = spec.edge_attr == "harmonics" or spec.message_features == "squared_distance"
    check_optional(pos, "pos", uses_pos, f"edge_attr={spec.edge_attr!r} or message_features="
                   f"{spec.message_features!r}", "SEGNN")
    check_optional(edge_attr, "edge_attr", spec.edge_attr == "input", "edge_attr='input'",
                   "SEGNN")
    check_optional(node_attr, "node_attr", spec.node_attr == "input", "node_attr='input'",
                   "SEGNN")
    check_optional(message_features, "message_features", spec.message_features == "input",
                   "message_features='input'", "SEGNN")
    edge_vec = edge_vectors(graph, positions(pos, graph, 3)) if uses_pos else None
    if spec.edge_attr == "harmonics":
        a_ij = o3.edge_harmonics(spec.lmax_attr, edge_vec, spec.sh_normalization,
                                 zero_length=spec.zero_length)
    else:
        a_ij = edge_array(edge_attr, "edge_attr", graph, spec.irreps_edge_attr.dim)
    if spec.node_attr == "mean":
        a_i = scatter.aggregate_mean(graph, a_ij, backend=spec.backend)
        a_i[:, 0] = 1.0 if spec.mode == "reference" else y0(spec.sh_normalization)
    else:
        a_i = node_array(node_attr, "node_attr", graph, spec.irreps_node_attr.dim)
        if spec.mode == "reference" and a_i.shape[1]:
            a_i = a_i.copy()  # never write into the caller's array
            a_i[:, 0] = 1.0
    if spec.message_features == "squared_distance":
        s_ij = edge_sqlength(edge_vec, name="pos[src] - pos[dst]")[:, None]
    elif spec.message_features == "input":
        s_ij = edge_array(message_features, "message_features", graph,
                          spec.additional_message_irreps.dim)
    else:
        s_ij = None
    return (a_ij, a_i, s_ij), SEGNNAttributesCache(graph, edge_vec, a_ij)


def segnn_attributes_vjp(spec, cache: SEGNNAttributesCache, g_a_ij, g_a_i, g_s_ij):
    """``(grad_pos, grad_edge_attr, grad_node_attr, grad_message_features)`` (None for inputs the
    spec's options do not take)."""
    graph = cache.graph
    g_a_i = np.array(g_a_i, dtype=np.float64)
    # reverses the overwrite of column 0
    if (spec.node_attr == "mean" or spec.mode == "reference") and g_a_i.shape[1]:
        g_a_i[:, 0] = 0.0
    g_node = None
    if spec.node_attr == "mean":  # reverses `a_i = mean_j a_ij`
        g_a_ij = g_a_ij + scatter.aggregate_mean_vjp(graph, cache.a_ij, g_a_i, backend=spec.backend)
    else:
        g_node = g_a_i
    g_vec, g_edge, g_msg = None, None, None
    if spec.edge_attr == "harmonics":  # reverses `a_ij = Y(x_ij / |x_ij|)`
        g_vec = o3.edge_harmonics_vjp(spec.lmax_attr, cache.edge_vec, g_a_ij,
                                      spec.sh_normalization, zero_length=spec.zero_length)
    else:
        g_edge = g_a_ij
    if spec.message_features == "squared_distance":  # reverses `s_ij = |x_ij|^2`
        g_sq = edge_sqlength_vjp(cache.edge_vec, g_s_ij[:, 0])
        g_vec = g_sq if g_vec is None else g_vec + g_sq
    elif spec.message_features == "input":
        g_msg = g_s_ij
    g_pos = None if cache.edge_vec is None else edge_vectors_vjp(graph, g_vec)
    return g_pos, g_edge, g_node, g_msg
