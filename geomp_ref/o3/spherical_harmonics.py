r"""Real spherical harmonics of a vector, e3nn convention (polar axis +y), and their VJP.

.. math::

    Y^l_m(\mathbf x) \;\text{homogeneous harmonic polynomial of degree } l,\qquad
    Y^1(\mathbf x) = \sqrt3\,(x, y, z),\qquad
    Y^l_c = \lambda_l^{-1} \sum_{a,k} C^{l-1,1,l}_{akc}\, Y^{l-1}_a x_k,

    \partial_k Y^l_c = \mu_l \sum_a C^{l-1,1,l}_{akc}\, Y^{l-1}_a ,

with :math:`C` the real coupling tensor (``wigner_3j``) and exact constants
:math:`\lambda_l, \mu_l` (both identities are verified as exact polynomial identities by
``derivations/spherical_harmonics.py``, which writes ``_sh_generated.py``). In the textbook frame
:math:`(x', y', z') = (z, x, y)` these are the standard real harmonics without a net
Condon-Shortley sign; ``l = 1`` is ordered :math:`(x, y, z)`; the ``m = 0`` component is the one
symmetric about :math:`y` (e3nn >= 0.5 uses exactly these polynomials).

Normalizations (on the unit sphere): ``'component'``: :math:`\sum_m (Y^l_m)^2 = 2l+1`;
``'norm'``: :math:`\|Y^l\| = 1`; ``'integral'`` (default): orthonormal on :math:`S^2`, i.e.
component :math:`/\sqrt{4\pi}`. ``normalize=True`` first maps :math:`x \mapsto x / |x|`; it acts
on the input only, ``normalization`` on the output only.

Range: with ``normalize=True`` every finite non-zero vector is accepted, from the smallest
subnormal to the largest float: the vector is first divided by its largest absolute component
(exact scaling, so :math:`|x|^2` never overflows or underflows), then by the norm of the scaled
vector. A zero vector has no direction: ``zero_vector='raise'`` (default) names it, ``'e3nn'``
returns e3nn's value. The VJP divides by :math:`|x|` in the same two steps; where the true
gradient (size :math:`\sim 1/|x|`) exceeds the float64 range, it raises instead of returning inf.
With ``normalize=False`` the output is :math:`|x|^l Y^l(\hat x)`, which raises when it overflows.

Edge harmonics: :func:`edge_harmonics` evaluates :math:`Y^0 \oplus \dots \oplus Y^{l_{max}}` of
the directions of edge vectors :math:`x_{ij} = x_j - x_i` (``normalize=True``), with an error that
names the coincident points of a zero-length edge; :func:`edge_harmonics_vjp` is its VJP.

Parity: :math:`Y^l(-x) = (-1)^l Y^l(x)`, so the output is ``Irreps.spherical_harmonics(lmax)``
(``0e + 1o + 2e + ...``). Equivariance: :math:`Y^l(R x) = D^l(R)\, Y^l(x)`.

Accuracy (measured with ``normalize=False`` on 200 random float64 unit vectors, every
``l <= 12``, against mpmath ``spherharm`` at 40 digits times :math:`|x|^l`; the same comparison,
on fewer points, is ``tests/o3/test_o3_sh.py::test_matches_mpmath``): max error
9.3e-16 relative to :math:`\max_m |Y^l_m|`, i.e. 6.6 ulp of the largest component.
'integral' and 'norm' multiply by a rounded constant: at most one more rounding.

References
----------
M. Geiger, T. Smidt, "e3nn: Euclidean neural networks", arXiv:2207.09453 (2022), sec. 4.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import as_float64, check_choice, check_int
from . import _sh_generated as _gen

__all__ = [
    "edge_harmonics",
    "edge_harmonics_vjp",
    "spherical_harmonics",
    "spherical_harmonics_vjp",
]

LMAX = _gen.LMAX
ZERO_NORM_EPS = 1e-12  # torch.nn.functional.normalize's eps, used by zero_vector='e3nn'
#: Output normalisations of the harmonics (module docstring).
NORMALIZATIONS = ("integral", "component", "norm")
_ZERO_MODES = ("raise", "e3nn")


def _parse_ls(ls) -> list[int]:
    from .irreps import Irreps

    if isinstance(ls, (int, np.integer)) and not isinstance(ls, bool):
        out = [int(ls)]
    elif isinstance(ls, (str, Irreps)):
        irreps = Irreps(ls)
        out = []
        for mul, ir in irreps:
            if ir.p != (-1) ** ir.l:
                raise ValueError(
                    f"ls={ls!r}: spherical harmonics of a vector have parity (-1)^l; got {ir}"
                )
            out.extend([ir.l] * mul)
    else:
        try:
            out = [check_int(v, "ls") for v in ls]
        except TypeError:
            raise TypeError(f"ls must be an int, a list of ints or an Irreps; got {ls!r}") from None
    for l in out:
        if l < 0 or l > LMAX:
            raise ValueError(f"ls holds l={l}; supported degrees are 0..{LMAX}")
    return out


def _scale(l: int, normalization: str) -> float:
    if normalization == "component":
        return 1.0
    if normalization == "norm":
        return 1.0 / math.sqrt(2 * l + 1)
    return 1.0 / math.sqrt(4 * math.pi)


def _prepare(ls, x, normalize, normalization, zero_vector):
    """Checked ``(ls, x, u, back)``: ``u`` is the polynomial's argument and ``back(grad_u)``
    maps its cotangent to ``x`` (identity without ``normalize``)."""
    ls = _parse_ls(ls)
    x = as_float64(x, "x")
    if x.ndim == 0 or x.shape[-1] != 3:
        raise ValueError(f"x must have shape (..., 3); got {x.shape}")
    check_choice(normalization, "normalization", NORMALIZATIONS)
    check_choice(zero_vector, "zero_vector", _ZERO_MODES)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be True or False; got {normalize!r}")
    if not normalize:
        return ls, x, x, lambda grad_u: grad_u
    # scale first: y = x / max|x_k| has components in [-1, 1], so |y|^2 in [1, 3] is exact-safe
    m = np.max(np.abs(x), axis=-1, keepdims=True)
    zero = m == 0.0
    if zero_vector == "raise" and np.any(zero):
        bad = tuple(int(i) for i in np.argwhere(zero[..., 0])[0])
        raise ValueError(
            f"x holds a zero vector (first at index {bad}) and normalize=True: its direction is "
            "undefined. Remove it, use normalize=False, or pass zero_vector='e3nn' for e3nn's "
            "value (Y^0 = const, all l > 0 zero)"
        )
    m_safe = np.where(zero, 1.0, m)
    y = x / m_safe
    n = np.sqrt(np.sum(y * y, axis=-1, keepdims=True))
    n_safe = np.where(zero, 1.0, n)
    u = y / n_safe
    # e3nn divides by max(|x|, 1e-12): below the clamp u = x / 1e-12 (|x| = m n, no overflow here)
    clamped = (m * n < ZERO_NORM_EPS) if zero_vector == "e3nn" else np.zeros_like(zero)
    if np.any(clamped):
        u = np.where(clamped, x / ZERO_NORM_EPS, u)

    def back(grad_u):
        # reverses u = x / |x| = (x / m) / n: project out the radial part, divide in two steps
        radial = np.sum(u * grad_u, axis=-1, keepdims=True)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
            g = ((grad_u - u * radial) / n_safe) / m_safe
            if np.any(clamped):  # the clamp is a constant: u = x / 1e-12
                g = np.where(clamped, grad_u / ZERO_NORM_EPS, g)
        if not np.all(np.isfinite(g)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(g))[0][:-1])
            raise ValueError(
                f"the gradient with respect to x overflows float64 at index {bad}: it scales as "
                "1/|x|, and |x| is below ~1e-308 there; rescale x"
            )
        return g

    return ls, x, u, back


def _component_table(u: np.ndarray, lmax: int) -> list[list[np.ndarray]]:
    xs, ys, zs = u[..., 0], u[..., 1], u[..., 2]
    table = [[np.ones_like(xs)]]
    for l in range(1, lmax + 1):
        table.append(_gen.SH[l](xs, ys, zs, table[-1]))
    return table


def spherical_harmonics(
    ls, x, normalize: bool, normalization: str = "integral", *, zero_vector: str = "raise"
) -> np.ndarray:
    r"""Real spherical harmonics :math:`Y^l(x)` for each requested ``l``, concatenated.

    Parameters
    ----------
    ls : int or sequence of int or Irreps or str
        Degrees (0..12), in output order; an Irreps such as ``"0e+1o+2e"`` must have parity
        :math:`(-1)^l`.
    x : ndarray, shape (..., 3), float64
        Vectors (not necessarily unit).
    normalize : bool
        Map ``x`` to ``x / |x|`` first. With ``False`` the result is :math:`|x|^l Y^l(\hat x)`.
    normalization : {'integral', 'component', 'norm'}
        Output scale (see module docstring).
    zero_vector : {'raise', 'e3nn'}
        With ``normalize=True``: a zero vector raises (default), or, with ``'e3nn'``, every
        vector is divided by ``max(|x|, 1e-12)`` exactly as e3nn (zero -> ``Y^0`` only).

    Returns
    -------
    Y : ndarray, shape (..., sum(2l+1)), float64

    Raises
    ------
    ValueError
        Bad ``ls``, ``x`` shape, NaN/inf, unknown option, or a zero vector with normalize=True.

    Notes
    -----
    Properties (tested): equal to ``e3nn.o3.spherical_harmonics`` to < 1e-13 for all
    normalizations and ``l <= 12``; :math:`Y(Rx) = D(R) Y(x)`; parity :math:`(-1)^l`;
    :math:`\sum_m (Y^l_m)^2 = 2l+1` (component); agrees with mpmath at 40 digits (module
    docstring). The VJP is :func:`spherical_harmonics_vjp`.

    Examples
    --------
    >>> spherical_harmonics(1, [0.0, 2.0, 0.0], True, normalization="component")
    array([0.        , 1.73205081, 0.        ])
    """
    ls, x, u, _ = _prepare(ls, x, normalize, normalization, zero_vector)
    if not ls:
        return np.zeros(x.shape[:-1] + (0,))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        table = _component_table(u, max(ls))
        cols = []
        for l in ls:
            s = _scale(l, normalization)
            cols.extend(c * s if s != 1.0 else c for c in table[l])
        out = np.stack(cols, axis=-1)
    if not normalize and not np.all(np.isfinite(out)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0][:-1])
        raise ValueError(
            f"spherical_harmonics(normalize=False) overflows float64 at index {bad}: the output "
            "scales as |x|^l; use normalize=True or rescale x"
        )
    return out


def spherical_harmonics_vjp(
    ls,
    x,
    grad_out,
    normalize: bool,
    normalization: str = "integral",
    *,
    zero_vector: str = "raise",
) -> np.ndarray:
    r"""Vector-Jacobian product of :func:`spherical_harmonics` with respect to ``x``.

    .. math::

        \bar x = J^T \sum_{l,c} s_l\, \bar Y^l_c\, \nabla Y^l_c(u), \qquad
        \nabla_k Y^l_c = \mu_l \sum_a C^{l-1,1,l}_{akc} Y^{l-1}_a(u),

    where :math:`u = x/|x|` and :math:`J^T v = (v - u (u\cdot v))/|x|` when ``normalize`` (with
    ``zero_vector='e3nn'`` and :math:`|x| < 10^{-12}`: :math:`J = I/10^{-12}`, as torch autograd
    through ``F.normalize``), else :math:`u = x`, :math:`J = I`.

    Parameters
    ----------
    ls, x, normalize, normalization, zero_vector
        As in :func:`spherical_harmonics`.
    grad_out : ndarray, shape (..., sum(2l+1)), float64
        Cotangent of the output.

    Returns
    -------
    grad_x : ndarray, shape (..., 3), float64

    Notes
    -----
    Tested against central finite differences and against torch autograd through e3nn
    (< 1e-12). Derivation of the gradient identity: ``derivations/spherical_harmonics.py``.
    """
    ls, x, u, back = _prepare(ls, x, normalize, normalization, zero_vector)
    dim = sum(2 * l + 1 for l in ls)
    grad_out = as_float64(grad_out, "grad_out")
    if grad_out.shape != x.shape[:-1] + (dim,):
        raise ValueError(
            f"grad_out must have shape {x.shape[:-1] + (dim,)} (the output's); got {grad_out.shape}"
        )
    grad_u = np.zeros_like(x)
    if ls and max(ls) > 0:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
            table = _component_table(u, max(ls) - 1)
            i = 0
            for l in ls:
                if l > 0:
                    s = _scale(l, normalization)
                    g = [grad_out[..., i + c] * s for c in range(2 * l + 1)]
                    gx, gy, gz = _gen.SH_VJP[l](table[l - 1], g)
                    grad_u[..., 0] += gx
                    grad_u[..., 1] += gy
                    grad_u[..., 2] += gz
                i += 2 * l + 1
    if not normalize and not np.all(np.isfinite(grad_u)):
        raise ValueError(
            "spherical_harmonics_vjp(normalize=False) overflows float64: the gradient scales as "
            "|x|^(l-1); use normalize=True or rescale x"
        )
    return back(grad_u)


def _edge_prepare(lmax, edge_vec, zero_length):
    lmax = check_int(lmax, "lmax", maximum=LMAX)
    check_choice(zero_length, "zero_length", _ZERO_MODES)
    v = as_float64(edge_vec, "edge_vec", ndim=2)
    if v.shape[1] != 3:
        raise ValueError(f"edge_vec must have shape (num_edges, 3); got {v.shape}")
    if zero_length == "raise" and v.size:
        zero = np.flatnonzero(np.all(v == 0.0, axis=1))
        if zero.size:
            raise ValueError(
                f"pos: edge {int(zero[0])} joins coincident points, so x_j - x_i has no direction "
                "for the spherical harmonics; remove the duplicate points or the edge (self-loops "
                "included), or pass zero_length='e3nn' for e3nn's value"
            )
    return list(range(lmax + 1)), v


def edge_harmonics(lmax: int, edge_vec, normalization: str = "integral", *,
                   zero_length: str = "raise") -> np.ndarray:
    r"""Harmonics :math:`Y^0 \oplus \dots \oplus Y^{l_{max}}` of edge directions
    :math:`x_{ij} / \lVert x_{ij} \rVert`.

    Parameters
    ----------
    lmax : int
        Highest degree (irreps ``Irreps.spherical_harmonics(lmax)``).
    edge_vec : ndarray, shape (E, 3), float64
        :math:`x_j - x_i` from :func:`geomp_ref.graph.edge_vectors`; any finite non-zero length.
    normalization : {'integral', 'component', 'norm'}
    zero_length : {'raise', 'e3nn'}
        A zero vector has no direction: ``'raise'`` names the edge and ``pos``; ``'e3nn'`` gives
        e3nn's value (:math:`Y^0` and zeros; its VJP is that of the clamp, ``grad / 1e-12``).

    Returns
    -------
    Y : ndarray, shape (E, (lmax+1)**2), float64
    """
    ls, v = _edge_prepare(lmax, edge_vec, zero_length)
    return spherical_harmonics(ls, v, True, normalization, zero_vector=zero_length)


def edge_harmonics_vjp(lmax: int, edge_vec, grad_out, normalization: str = "integral", *,
                       zero_length: str = "raise") -> np.ndarray:
    r"""VJP of :func:`edge_harmonics` with respect to ``edge_vec``:
    :math:`\bar x_{ij} = (I - u u^T)\, \bar u / \lVert x_{ij} \rVert`, shape (E, 3)."""
    ls, v = _edge_prepare(lmax, edge_vec, zero_length)
    return spherical_harmonics_vjp(ls, v, grad_out, True, normalization, zero_vector=zero_length)
