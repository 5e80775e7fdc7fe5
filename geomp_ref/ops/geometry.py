r"""Edge geometry: lengths and squared lengths of :math:`x_{ij} = x_j - x_i`, with VJPs.

.. math::

    d_{ij} = \lVert x_{ij} \rVert, \quad \bar x_{ij} = \bar d_{ij}\, x_{ij} / d_{ij};
    \qquad s_{ij} = \lVert x_{ij} \rVert^2, \quad \bar x_{ij} = 2\, \bar s_{ij}\, x_{ij}.

The length is not differentiable at :math:`x_{ij} = 0` (coincident points), so :func:`edge_length`
raises there instead of returning a NaN gradient later; the squared length is smooth everywhere.
Edge vectors themselves come from :func:`geomp_ref.graph.edge_vectors` (the only place the sign
:math:`x_j - x_i` lives).
"""

from __future__ import annotations

import numpy as np

__all__ = ["edge_length", "edge_length_vjp", "edge_sqlength", "edge_sqlength_vjp"]


def edge_length(edge_vec, *, allow_zero: bool = False) -> np.ndarray:
    """``|x_j - x_i|`` per edge, shape (E,). Raises on zero-length edges unless ``allow_zero``."""
    v = np.asarray(edge_vec, dtype=np.float64)
    d = np.sqrt(np.sum(v * v, axis=-1))
    if not allow_zero and d.size and np.any(d == 0.0):
        e = int(np.flatnonzero(d == 0.0)[0])
        raise ValueError(
            f"pos: edge {e} joins coincident points (zero length), where the edge length is not "
            "differentiable; remove the duplicate points or the edge (self-loops included)"
        )
    return d


def edge_length_vjp(edge_vec, grad_d) -> np.ndarray:
    v = np.asarray(edge_vec, dtype=np.float64)
    d = edge_length(v)
    return (np.asarray(grad_d) / d)[:, None] * v


def edge_sqlength(edge_vec) -> np.ndarray:
    v = np.asarray(edge_vec, dtype=np.float64)
    return np.sum(v * v, axis=-1)


def edge_sqlength_vjp(edge_vec, grad_s) -> np.ndarray:
    return 2.0 * np.asarray(grad_s, dtype=np.float64)[:, None] * np.asarray(edge_vec, dtype=np.float64)
