r"""Steerable helpers shared by TFN and SEGNN: edge harmonics, gates, activation constants.

Edge harmonics of :math:`x_{ij} = x_j - x_i` (``edge_vec``), :math:`r = \lVert x_{ij}\rVert`,
:math:`u = x_{ij} / r`:

.. math::

    a_{ij} = Y(u) = \bigoplus_{l=0}^{l_{max}} Y^l(u), \qquad
    \bar x_{ij} = (I - u u^T)\, \bar u / r .

Gate (Weiler et al. 2018; e3nn ``nn.Gate``): input = sorted ``scalars + gates + gated``,

.. math::

    y = \big[\, c_a\, a(s) \;\oplus\; c_b\, b(g_k)\, v_k \,\big],

with :math:`c_a = 1/\sqrt{E_z[a(z)^2]}` (``constants="exact"``), e3nn's Monte-Carlo estimate
(``"e3nn"``) or 1 (``"none"``): :func:`make_gate` builds :class:`geomp_ref.o3.Gate` (whose VJP
is :math:`\bar s = c_a a'(s) \bar y_s`, :math:`\bar g_k = c_b b'(g_k) \langle \bar y_k,
v_k\rangle`, :math:`\bar v_k = c_b b(g_k)\bar y_k`) after a parity check naming the user's field.
Conventions: e3nn >= 0.5 (README "O(3) conventions").
"""

from __future__ import annotations

import numpy as np

from .. import o3

# The submodule shadows o3's lazy function name once imported (o3/__init__ issue): import directly.
from ..o3.spherical_harmonics import spherical_harmonics, spherical_harmonics_vjp

__all__ = [
    "E3NN_ACT_CONSTANTS",
    "SH_NORMALIZATIONS",
    "act_constant",
    "edge_harmonics",
    "edge_harmonics_vjp",
    "make_gate",
]

E3NN_ACT_CONSTANTS = {"silu": 1.6791767923989418, "sigmoid": 1.8467055342154763,
                      "tanh": 1.5937334472592695}
_ODD = {"tanh"}  # odd activations (keep 0o); silu and sigmoid are neither even nor odd
SH_NORMALIZATIONS = ("component", "norm", "integral")
_EPS_E3NN = 1e-12  # torch.nn.functional.normalize's eps, used by e3nn's spherical_harmonics


def _exact_constant(name: str) -> float:
    from ..o3.gating import EXACT_CONSTANTS  # mpmath quadrature, derivations/tensor_product.py

    return EXACT_CONSTANTS[name]


def act_constant(name: str, constants: str) -> float:
    """Second-moment normaliser of an activation: ``"e3nn"`` (Monte Carlo), ``"exact"``, ``"none"``."""
    if constants == "none":
        return 1.0
    if constants == "e3nn":
        return E3NN_ACT_CONSTANTS[name]
    if constants == "exact":
        return _exact_constant(name)
    raise ValueError(f"act_constants must be 'e3nn', 'exact' or 'none'; got {constants!r}")


# --- edge harmonics ----------------------------------------------------------------------------


def _check_zero_length(zero_length: str) -> None:
    if zero_length not in ("raise", "e3nn"):
        raise ValueError(f"zero_length must be 'raise' or 'e3nn'; got {zero_length!r}")


def edge_harmonics(edge_vec, lmax: int, normalization: str, zero_length: str = "raise"):
    r"""Spherical harmonics :math:`Y^0 \oplus \dots \oplus Y^{l_{max}}` of the edge directions.

    Parameters
    ----------
    edge_vec : ndarray, shape (E, 3), float64
        :math:`x_j - x_i` from :func:`geomp_ref.graph.edge_vectors`.
    lmax : int
    normalization : {'component', 'norm', 'integral'}
    zero_length : {'raise', 'e3nn'}
        ``'raise'``: a zero vector has no direction, ``ValueError`` naming ``pos``.
        ``'e3nn'``: e3nn's value, :math:`u = x / \max(\lVert x\rVert, 10^{-12})`, so a zero
        vector gives :math:`Y^0` and zeros (its VJP is that of the clamp, ``grad / 1e-12``).

    Returns
    -------
    Y : ndarray, shape (E, (lmax+1)**2)
    u : ndarray, shape (E, 3)
        The normalised directions (kept for the VJP).
    """
    _check_zero_length(zero_length)
    v = np.asarray(edge_vec, dtype=np.float64)
    r = np.sqrt(np.sum(v * v, axis=-1))
    if zero_length == "raise" and r.size and np.any(r == 0.0):
        e = int(np.flatnonzero(r == 0.0)[0])
        raise ValueError(
            f"pos: edge {e} joins coincident points, so x_j - x_i has no direction for the "
            "spherical harmonics; remove the duplicate points or the edge (self-loops included), "
            "or pass zero_length='e3nn' for e3nn's value")
    u = v / np.maximum(r, _EPS_E3NN)[:, None]
    ls = list(range(lmax + 1))
    Y = spherical_harmonics(ls, u, normalize=False, normalization=normalization)
    return Y, u


def edge_harmonics_vjp(edge_vec, u, lmax: int, normalization: str, grad_Y):
    r"""VJP of :func:`edge_harmonics` w.r.t. ``edge_vec``: :math:`(I - uu^T)\bar u / r` (or
    :math:`\bar u / 10^{-12}` below e3nn's clamp)."""
    v = np.asarray(edge_vec, dtype=np.float64)
    r = np.sqrt(np.sum(v * v, axis=-1))
    ls = list(range(lmax + 1))
    # reverses `Y = spherical_harmonics(u)` (polynomial in the raw components, normalize=False)
    gu = spherical_harmonics_vjp(ls, u, grad_Y, normalize=False, normalization=normalization)
    big = r > _EPS_E3NN
    # reverses `u = v / max(r, eps)`
    proj = gu - u * np.sum(u * gu, axis=-1, keepdims=True)
    return np.where(big[:, None], proj / np.where(big, r, 1.0)[:, None], gu / _EPS_E3NN)


# --- gate --------------------------------------------------------------------------------------


def _act_parity(name: str, p: int, owner: str) -> int:
    if p == 1:
        return 1
    if name in _ODD:
        return -1
    raise ValueError(
        f"{owner}: odd-parity scalars (0o) need an odd or even activation; {name!r} is neither "
        "(use tanh, or make the scalars 0e)")


def make_gate(irreps_scalars, act_scalars, irreps_gates, act_gates, irreps_gated,
              constants: str, owner: str):
    """:class:`geomp_ref.o3.Gate` after checking the activations' parity with an error that
    names ``owner`` (the user's field), e.g. ``"TFNConv.irreps_out"``."""
    sc, gt = o3.Irreps(irreps_scalars), o3.Irreps(irreps_gates)
    for (_, ir), a in zip(sc, act_scalars):
        _act_parity(a, ir.p, owner)
    for (_, ir), a in zip(gt, act_gates):
        _act_parity(a, ir.p, owner)
    act_constant("silu", constants)  # validates the option name
    return o3.Gate(sc, list(act_scalars), gt, list(act_gates), o3.Irreps(irreps_gated),
                   normalize_act=constants)


def gate_forward(gate, x):
    """``gate.forward({}, x)``, also for zero rows (o3.Gate's reshape fails on an empty batch)."""
    if x.shape[0] == 0:
        return np.zeros((0, gate.irreps_out.dim)), None
    return gate.forward({}, x)


def gate_backward(gate, cache, grad_y):
    """``grad_x`` of :func:`gate_forward`."""
    if cache is None:
        return np.zeros((0, gate.irreps_in.dim))
    return gate.backward({}, cache, grad_y)[1][0]
