r"""Pieces of :class:`~geomp_ref.layers.egnn_layer.EGNNLayer`: the vgsatorras/egnn flavour
defaults, the forward caches, and the normalised direction of the coordinate update with its VJP.

The direction is :math:`u = \Delta / (n + \epsilon)` (``mode="add"``) or :math:`u = \Delta /
\max(n, \epsilon)` (``mode="max"``) with :math:`n = \lVert\Delta\rVert`. Its VJP is
:math:`\bar\Delta = \bar u / d - \Delta\, (\Delta \cdot \bar u) / (n\, d^2)` with :math:`d`
the denominator; the second term is left out where :math:`n` does not move :math:`d` (at
:math:`n = 0`; below the floor :math:`\epsilon` in ``"max"`` mode, where torch's clamp passes the
cotangent only from the bound itself upwards) and when the norm is detached (egnn_clean's
``.detach()``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..graph import Graph
from ..ops import geometry
from .mlp import MLPCache

__all__ = [
    "FLAVOURS",
    "FLAVOUR_DEFAULT",
    "EGNNAttentionCache",
    "EGNNCoordCache",
    "EGNNLayerCache",
    "EGNNVelocityCache",
    "direction",
    "direction_vjp",
]

FLAVOURS = {
    "gcl": {"activation": "relu", "clamp": 100.0, "norm_eps": 1.0, "coords_agg": "mean"},
    "egnn_clean": {"activation": "silu", "clamp": None, "norm_eps": 1e-8, "coords_agg": "mean"},
}
#: sentinel for ``clamp``: take the flavour's value (``None`` itself means no clamp)
FLAVOUR_DEFAULT = "flavour"


class EGNNAttentionCache(NamedTuple):
    m_raw: np.ndarray  # (E, H) phi_e output
    att: np.ndarray  # (E, 1) sigmoid(phi_inf(m_raw))
    phi_inf: MLPCache


class EGNNCoordCache(NamedTuple):
    nrm: np.ndarray | None  # (E,) |Delta| when normalize
    u: np.ndarray  # (E, D) direction used by the update
    phi_x: MLPCache
    s: np.ndarray  # (E, 1) phi_x output (after tanh when on)
    t: np.ndarray  # (E, D) scale * u * w before the clamp
    w: np.ndarray  # (E, 1) s after the weight clamp (s itself when off)


class EGNNVelocityCache(NamedTuple):
    phi_v: MLPCache
    pv: np.ndarray  # (N, 1) phi_v(h)
    v: np.ndarray  # (N, D) input velocity


class EGNNLayerCache(NamedTuple):
    graph: Graph
    h: np.ndarray  # (N, H_in)
    diff: np.ndarray  # (E, D) Delta_ij = x_i - x_j
    phi_e: MLPCache
    attention: EGNNAttentionCache | None
    m: np.ndarray  # (E, H) messages
    coord: EGNNCoordCache | None  # None when update_coords=False
    velocity: EGNNVelocityCache | None  # None when velocity=False
    phi_h: MLPCache
    # (r, edge_attr) when the edge network's first product was split by node (non-numpy
    # backends, see EGNNLayer); None when it ran on the concatenated edge input
    edge_in: tuple | None = None


def direction(diff: np.ndarray, eps: float, mode: str):
    """``(u, n)``: the normalised differences (E, D) and their lengths (E,)."""
    nrm = geometry.edge_length(diff, allow_zero=True, name="x")
    den = np.maximum(nrm, eps) if mode == "max" else nrm + eps
    return diff / den[:, None], nrm


def direction_vjp(diff, nrm, grad_u, eps: float, mode: str, detach: bool) -> np.ndarray:
    """VJP of :func:`direction` with respect to ``diff`` (see the module docstring)."""
    den = np.maximum(nrm, eps) if mode == "max" else nrm + eps
    g_diff = grad_u / den[:, None]
    if not detach:
        live = nrm >= eps if mode == "max" else nrm > 0
        proj = np.sum(grad_u * diff, axis=1)
        safe = np.where(live, nrm, 1.0)
        coef = np.where(live, proj / (safe * den * den), 0.0)
        g_diff = g_diff - coef[:, None] * diff
    return g_diff
