r"""Edge geometry: lengths and squared lengths of :math:`x_{ij} = x_j - x_i`, with VJPs.

.. math::

    d_{ij} = \lVert x_{ij} \rVert, \quad \bar x_{ij} = \bar d_{ij}\, x_{ij} / d_{ij};
    \qquad s_{ij} = \lVert x_{ij} \rVert^2, \quad \bar x_{ij} = 2\, \bar s_{ij}\, x_{ij}.

This is the one place edge lengths are computed. The length is evaluated as
:math:`d = m \lVert x / m \rVert` with :math:`m = \max_k |x_k|`, so the squares never overflow
or underflow: any finite vector whose length is representable gets a length accurate to a few
ulps (``1e200`` and ``1e-200`` components included), and its gradient is the unit vector
:math:`u / \lVert u \rVert` with :math:`u = x / m`, computed without forming :math:`d` at all.

The length is not differentiable at :math:`x_{ij} = 0` (coincident points, self-loops): there the
direction is undefined, so :func:`edge_length` and :func:`edge_length_vjp` raise instead of
returning a NaN gradient later, unless the caller passes ``allow_zero=True`` (the length is then 0
and its gradient the subgradient 0). The squared length is smooth everywhere. Edge vectors
themselves come from :func:`geomp_ref.graph.edge_vectors` (the only place the sign
:math:`x_j - x_i` lives). Any leading shape is allowed; the last axis holds the components.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_float64, check_bool, cotangent

__all__ = ["edge_length", "edge_length_vjp", "edge_sqlength", "edge_sqlength_vjp"]


def _vectors(edge_vec, name: str) -> np.ndarray:
    v = as_float64(edge_vec, name)
    if v.ndim == 0 or v.shape[-1] == 0:
        raise ValueError(
            f"{name} must have shape (E, D) with D >= 1 components on the last axis; "
            f"got {v.shape}")
    return v


def _scaled(v: np.ndarray):
    """``(m, u, r)``: ``m = max |v_k|``, ``u = v / m`` (0 where m = 0), ``r = |u|`` in [1, √D]."""
    m = np.max(np.abs(v), axis=-1)
    safe = np.where(m > 0.0, m, 1.0)
    u = v / safe[..., None]
    r = np.sqrt(np.sum(u * u, axis=-1))
    return m, u, r


def _refuse_zero(m: np.ndarray, name: str, what: str) -> None:
    if m.size and np.any(m == 0.0):
        e = tuple(int(i) for i in np.argwhere(m == 0.0)[0])
        e = e[0] if len(e) == 1 else e
        raise ValueError(
            f"pos: edge {e} joins coincident points ({name}[{e}] = x_j - x_i is zero), where "
            f"{what}; remove the duplicate points or the edge (self-loops included), or pass "
            "allow_zero=True to use the subgradient 0"
        )


def edge_length(edge_vec, *, allow_zero: bool = False, name: str = "edge_vec") -> np.ndarray:
    """``|x_j - x_i|`` per edge, shape ``edge_vec.shape[:-1]``.

    Parameters
    ----------
    edge_vec : array_like, shape (E, D)
    allow_zero : bool
        Accept zero-length edges (length 0). By default they raise, since the length has no
        derivative there.
    name : str
        The argument named in shape and NaN errors.
    """
    allow_zero = check_bool(allow_zero, "allow_zero")
    v = _vectors(edge_vec, name)
    m, _, r = _scaled(v)
    if not allow_zero:
        _refuse_zero(m, name, "the edge length is not differentiable")
    with np.errstate(over="ignore"):
        d = m * r
    if not np.all(np.isfinite(d)):
        raise ValueError(f"{name}: an edge length exceeds the float64 range (~1.8e308); rescale")
    return d


def edge_length_vjp(edge_vec, grad_d, *, allow_zero: bool = False,
                    name: str = "edge_vec") -> np.ndarray:
    r"""VJP of :func:`edge_length`: :math:`\bar x = \bar d\, x / \lVert x \rVert`, shape (E, D)."""
    allow_zero = check_bool(allow_zero, "allow_zero")
    v = _vectors(edge_vec, name)
    g = cotangent(grad_d, v.shape[:-1], "edge_length_vjp", "grad_d")
    m, u, r = _scaled(v)
    if not allow_zero:
        _refuse_zero(m, name, "the direction x / |x| of the length's gradient is undefined")
    unit = u / np.where(r > 0.0, r, 1.0)[..., None]  # exactly 0 on zero rows
    return g[..., None] * unit


def edge_sqlength(edge_vec, *, name: str = "edge_vec") -> np.ndarray:
    """``|x_j - x_i|^2`` per edge, shape ``edge_vec.shape[:-1]`` (smooth, zero allowed).

    Squares below the smallest subnormal round to 0, as they should; a square above the float64
    range raises (use :func:`edge_length` there).
    """
    v = _vectors(edge_vec, name)
    with np.errstate(over="ignore"):
        s = np.sum(v * v, axis=-1)
    if not np.all(np.isfinite(s)):
        raise ValueError(
            f"{name}: a squared edge length exceeds the float64 range (|x| > ~1.3e154); "
            "rescale the positions or use edge_length")
    return s


def edge_sqlength_vjp(edge_vec, grad_s, *, name: str = "edge_vec") -> np.ndarray:
    r"""VJP of :func:`edge_sqlength`: :math:`\bar x = 2 \bar s\, x`, shape (E, D)."""
    v = _vectors(edge_vec, name)
    g = cotangent(grad_s, v.shape[:-1], "edge_sqlength_vjp", "grad_s")
    with np.errstate(over="ignore"):
        out = 2.0 * g[..., None] * v
    if not np.all(np.isfinite(out)):
        raise ValueError("grad_s of edge_sqlength_vjp: the gradient exceeds the float64 range")
    return out
