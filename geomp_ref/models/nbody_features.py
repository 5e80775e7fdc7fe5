r"""Input features of the charged N-body models, and their VJPs.

The published N-body script (vgsatorras/egnn ``main_nbody.py``) builds, from the positions
:math:`x`, velocities :math:`v` and charges :math:`q` of the input frame:

* per node, the speed :math:`s_i = \lVert v_i \rVert` (``EGNN_vel``'s node feature and
  ``RF_vel``'s ``vel_norm``);
* per edge j -> i, the charge product :math:`q_i q_j` (the dataset's ``edges`` array) and the
  squared distance :math:`\lVert x_i - x_j \rVert^2` of the input frame (``loc_dist``); the edge
  attributes are ``[q_i q_j, |x_i - x_j|^2]`` for EGNN and RF, and ``q_i q_j`` alone for the GNN.

The published script detaches these features (they are data there). Here they are functions of
the model's inputs, differentiated exactly: the gradients with respect to ``x``, ``v`` and
``charges`` include the paths through the features. At :math:`v_i = 0` the speed has no
derivative; its subgradient 0 is used (the speed's gradient is :math:`v_i / \lVert v_i \rVert`
elsewhere). Norms come from :func:`geomp_ref.ops.geometry.edge_length`, the scaled length.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_graph, node_array, positions
from ..graph import edge_vectors, edge_vectors_vjp
from ..ops import geometry, scatter

__all__ = [
    "charge_products",
    "charge_products_vjp",
    "check_nbody_inputs",
    "edge_features",
    "edge_features_vjp",
    "speed",
    "speed_vjp",
]


def check_nbody_inputs(graph, x, v, charges):
    """``(x, v, charges)`` as float64 of shapes (N, 3), (N, 3), (N, 1); errors name the input."""
    check_graph(graph)
    x = positions(x, graph, 3, name="x")
    v = node_array(v, "v", graph, 3)
    charges = node_array(charges, "charges", graph, 1)
    return x, v, charges


def speed(v) -> np.ndarray:
    r""":math:`\lVert v_i \rVert`, shape (N, 1)."""
    return geometry.edge_length(v, allow_zero=True, name="v")[:, None]


def speed_vjp(v, grad_s) -> np.ndarray:
    r"""VJP of :func:`speed`: :math:`\bar s_i\, v_i / \lVert v_i \rVert` (0 at :math:`v_i = 0`)."""
    return geometry.edge_length_vjp(v, grad_s[:, 0], allow_zero=True, name="v")


def charge_products(graph, charges) -> np.ndarray:
    r""":math:`q_i q_j` per edge j -> i, shape (E, 1)."""
    return charges[graph.dst] * charges[graph.src]


def charge_products_vjp(graph, charges, grad_p) -> np.ndarray:
    r"""VJP of :func:`charge_products`: :math:`\bar q_i \mathrel{+}= \bar p_{ij} q_j` at receivers,
    :math:`\bar q_j \mathrel{+}= \bar p_{ij} q_i` at senders; shape (N, 1)."""
    n = graph.num_nodes
    return (scatter.scatter_sum(grad_p * charges[graph.src], graph.dst, n)
            + scatter.scatter_sum(grad_p * charges[graph.dst], graph.src, n))


def edge_features(graph, x, charges):
    r"""``([q_i q_j, |x_i - x_j|^2], edge_vec)``: edge attributes (E, 2) and ``x_j - x_i`` (E, 3)
    (kept for the VJP). Squared distances beyond the float64 range raise, naming ``x``."""
    edge_vec = edge_vectors(graph, x)
    d2 = geometry.edge_sqlength(edge_vec, name="x")
    return np.concatenate([charge_products(graph, charges), d2[:, None]], axis=1), edge_vec


def edge_features_vjp(graph, charges, edge_vec, grad_a):
    """VJP of :func:`edge_features`: ``(grad_x, grad_charges)``."""
    g_q = charge_products_vjp(graph, charges, grad_a[:, :1])
    g_vec = geometry.edge_sqlength_vjp(edge_vec, grad_a[:, 1], name="x")
    return edge_vectors_vjp(graph, g_vec), g_q
