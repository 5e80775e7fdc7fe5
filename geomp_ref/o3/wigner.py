r"""Real Wigner matrices and real coupling tensors (Wigner 3j) in e3nn's basis.

Real basis (the one of e3nn >= 0.5). The unitary
:math:`Q_l` (row: complex order :math:`m`, column: real index) maps real to complex components;
for :math:`m > 0`

.. math::

    Q_{-m,+m} = \tfrac{1}{\sqrt2},\; Q_{-m,-m} = \tfrac{-i}{\sqrt2},\;
    Q_{+m,+m} = \tfrac{(-1)^m}{\sqrt2},\; Q_{+m,-m} = \tfrac{i(-1)^m}{\sqrt2},\; Q_{00} = 1,

all times the global phase :math:`(-i)^l`. The polar axis is :math:`+y` and ``l = 1`` is
:math:`(x, y, z)`, so that :math:`D^1(R) = R`.

Wigner D (Euler angles Y-X-Y, :math:`R = R_y(\alpha) R_x(\beta) R_y(\gamma)`):

.. math::

    D^l(\alpha, \beta, \gamma) = e^{\alpha J_y} e^{\beta J_x} e^{\gamma J_y},

with the real antisymmetric generators :math:`J_k = \mathrm{Re}(Q_l^\dagger A_k Q_l)`,
:math:`A_x = -i L_{y'}`, :math:`A_y = i L_{z'}`, :math:`A_z = i L_{x'}` (:math:`L` the
Condon-Shortley angular momentum matrices, primes = the axes of the textbook basis whose
:math:`z'` is e3nn's :math:`y`). :math:`e^{\theta J_y}` is evaluated in closed form
(:math:`\cos m\theta`, :math:`\sin m\theta` on the pairs :math:`\pm m`); :math:`e^{\beta J_x}` by
the eigen-decomposition of the Hermitian :math:`i J_x`, whose eigenvalues are the exact integers
:math:`-l..l` (only the eigenvectors carry rounding, ~1e-16).

Coupling tensor, the Condon-Shortley Clebsch-Gordan coefficient moved to the real basis:

.. math::

    C^{l_1 l_2 l_3}_{abc} = \frac{1}{\sqrt{2 l_3 + 1}}\,
    \mathrm{Re} \sum_{m_1 m_2 m_3} (Q_{l_1})_{m_1 a} (Q_{l_2})_{m_2 b}
    \overline{(Q_{l_3})_{m_3 c}}\, \langle l_1 m_1 l_2 m_2 | l_3 m_3 \rangle ,

so :math:`\sum C^2 = 1` and :math:`C` is invariant:
:math:`C_{abc} = \sum C_{ijk} D^{l_1}_{ia} D^{l_2}_{jb} D^{l_3}_{kc}`. The shipped table
``tables/cg_lmax8.npz`` (written by ``derivations/clebsch_gordan.py``) holds every triple with
:math:`l \le 8`, each entry the exact SymPy number rounded once to float64; higher degrees are
generated on demand by the same exact code (SymPy, imported only then) and cached in
``$GEOMP_REF_CACHE`` (default ``~/.cache/geomp_ref``). Degrees above ``LMAX_3J = 16`` are
refused with a ``ValueError``: the exact construction loops over :math:`(2l+1)^3` entries and takes
about 2 s at :math:`(16, 16, 16)`, growing as :math:`l^3` beyond (about 1 min at ``l = 100``).

References
----------
M. Geiger, T. Smidt, "e3nn: Euclidean neural networks", arXiv:2207.09453 (2022).
D. A. Varshalovich et al., *Quantum Theory of Angular Momentum* (1988), ch. 8, eq. 8.2.1(5).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from .._validate import as_float64, check_alloc, check_int
from ._wigner_exact import _q_phase, exact_coupling, exact_coupling_float  # noqa: F401

__all__ = [
    "LMAX_3J",
    "LMAX_D",
    "change_basis_real_to_complex",
    "so3_generators",
    "wigner_3j",
    "wigner_D",
]

TABLE_PATH = Path(__file__).parent / "tables" / "cg_lmax8.npz"
ORTHOGONALITY_TOL = 1e-9
#: Highest degree wigner_3j serves: the table holds l <= 8, SymPy builds l <= 16 in seconds.
LMAX_3J = 16
#: Highest degree of Wigner matrices and generators: an eigen-decomposition of size 2l+1 (about
#: 2 s at l = 1000, growing as l^3).
LMAX_D = 1000


# -------------------------------------------------------------------------------------------
# basis change and generators
# -------------------------------------------------------------------------------------------
def change_basis_real_to_complex(l: int) -> np.ndarray:
    r"""Unitary :math:`Q_l` from e3nn's real basis to the complex (Condon-Shortley) basis.

    Parameters
    ----------
    l : int
        Degree, ``>= 0``.

    Returns
    -------
    Q : ndarray, shape (2l+1, 2l+1), complex128
        Row = complex order ``m`` (index ``l + m``), column = real index; includes the global
        phase :math:`(-i)^l`. Complex coefficients are ``Q @ x_real``.
    """
    l = check_int(l, "l", maximum=LMAX_D)
    q = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    s = np.sqrt(0.5)
    for m in range(1, l + 1):
        q[l - m, l + m] = s
        q[l - m, l - m] = -1j * s
        q[l + m, l + m] = (-1) ** m * s
        q[l + m, l - m] = 1j * (-1) ** m * s
    q[l, l] = 1.0
    return (-1j) ** l * q


@functools.cache
def _generators(l: int) -> np.ndarray:
    m = np.arange(-l, l + 1, dtype=np.float64)
    lp = np.diag(np.sqrt(l * (l + 1) - m[:-1] * (m[:-1] + 1)), -1).astype(np.complex128)
    lx, ly, lz = (lp + lp.T) / 2, (lp - lp.T) / 2j, np.diag(m).astype(np.complex128)
    q = change_basis_real_to_complex(l)
    gens = [q.conj().T @ (a @ q) for a in (-1j * ly, 1j * lz, 1j * lx)]
    out = np.stack([g.real for g in gens])
    out.setflags(write=False)
    return out


def so3_generators(l: int) -> np.ndarray:
    r"""Real antisymmetric generators :math:`(J_x, J_y, J_z)` in e3nn's basis.

    Returns
    -------
    J : ndarray, shape (3, 2l+1, 2l+1), float64
        :math:`e^{\theta J_k}` is the Wigner matrix of the rotation by :math:`\theta` about axis
        ``k``; :math:`[J_x, J_y] = J_z` (cyclic) and :math:`J^1_k` generate the 3x3 rotations.
    """
    l = check_int(l, "l", maximum=LMAX_D)
    return _generators(l).copy()


@functools.cache
def _x_eigen(l: int):
    # i J_x is Hermitian with eigenvalues exactly -l..l: exp(b J_x) = V diag(e^{-i m b}) V^H.
    w, v = np.linalg.eigh(1j * _generators(l)[0])
    return np.round(w), v


def _rot_y(l: int, theta: np.ndarray) -> np.ndarray:
    # exp(theta J_y): J_y[l+m, l-m] = -m couples the pair (+m, -m) only, so each pair is a plane
    # rotation by m*theta (closed form, no matrix exponential).
    m = np.arange(-l, l + 1)
    idx = np.arange(2 * l + 1)
    out = np.zeros(theta.shape + (2 * l + 1, 2 * l + 1))
    out[..., idx, idx[::-1]] = -np.sin(theta[..., None] * m)
    out[..., idx, idx] = np.cos(theta[..., None] * m)
    return out


def _rot_x(l: int, beta: np.ndarray) -> np.ndarray:
    w, v = _x_eigen(l)
    phase = np.exp(-1j * beta[..., None] * w)
    return ((v * phase[..., None, :]) @ v.conj().T).real


def wigner_D(l: int, alpha, beta, gamma) -> np.ndarray:
    r"""Real Wigner matrix :math:`D^l(\alpha, \beta, \gamma)` (Euler Y-X-Y), e3nn convention.

    .. math:: D^l = e^{\alpha J_y} e^{\beta J_x} e^{\gamma J_y}

    Parameters
    ----------
    l : int
        Degree ``>= 0``.
    alpha, beta, gamma : float or ndarray, float64
        Euler angles (broadcast together to shape ``(...)``).

    Returns
    -------
    D : ndarray, shape (..., 2l+1, 2l+1), float64
        Orthogonal. Features of degree ``l`` transform as ``x -> D @ x``.

    Notes
    -----
    Properties (tested): :math:`D^1 = ` ``angles_to_matrix``; homomorphism
    :math:`D(R_1 R_2) = D(R_1) D(R_2)`; :math:`D(R)^T = D(R^{-1})`;
    :math:`Y^l(R x) = D^l(R) Y^l(x)`; equal to ``e3nn.o3.wigner_D`` to 5e-14 (l <= 12; the
    difference is e3nn's ``matrix_exp`` rounding). Accuracy, measured against
    :math:`e^{\alpha J_y} e^{\beta J_x} e^{\gamma J_y}` evaluated with mpmath at 30 digits for
    random angles: max abs error 5.6e-16 (l = 2), 1.5e-15 (l = 8), 2.1e-15 (l = 12).
    """
    l = check_int(l, "l", maximum=LMAX_D)
    a = as_float64(alpha, "alpha")
    b = as_float64(beta, "beta")
    c = as_float64(gamma, "gamma")
    a, b, c = np.broadcast_arrays(a, b, c)
    check_alloc(a.shape + (4, 2 * l + 1, 2 * l + 1), "l")
    return _rot_y(l, a) @ _rot_x(l, b) @ _rot_y(l, c)


def _irrep_D_from_angles(l, p, alpha, beta, gamma, k) -> np.ndarray:
    k = np.asarray(k)
    if k.dtype.kind not in "iub" and not np.all(k == np.round(k)):
        raise ValueError(f"k must hold integers (number of inversions); got {k}")
    D = wigner_D(l, alpha, beta, gamma)
    sign = np.asarray(float(p)) ** k
    return D * np.asarray(sign)[..., None, None]


def _check_orthogonal(R, name: str) -> np.ndarray:
    R = as_float64(R, name)
    if R.ndim < 2 or R.shape[-2:] != (3, 3):
        raise ValueError(f"{name} must have shape (..., 3, 3); got {R.shape}")
    err = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max(initial=0.0)
    if err > ORTHOGONALITY_TOL:
        raise ValueError(
            f"{name} is not orthogonal (max |{name}^T {name} - I| = {err:.2e} > "
            f"{ORTHOGONALITY_TOL:g}); pass a rotation or rotation-reflection matrix, e.g. from "
            "o3.random_orthogonal, or orthogonalize it (polar decomposition) first"
        )
    return R


def _irrep_D_from_matrix(l, p, R) -> np.ndarray:
    from .rotation import matrix_to_angles

    R = _check_orthogonal(R, "R")
    d = np.sign(np.linalg.det(R))
    alpha, beta, gamma = matrix_to_angles(R * d[..., None, None])
    k = np.round((1 - d) / 2).astype(np.int64)
    return _irrep_D_from_angles(l, p, alpha, beta, gamma, k)


# -------------------------------------------------------------------------------------------
# coupling tensors
# -------------------------------------------------------------------------------------------
def wigner_3j(l1: int, l2: int, l3: int) -> np.ndarray:
    r"""Real coupling tensor :math:`C^{l_1 l_2 l_3}` in e3nn's basis (Frobenius norm 1).

    Parameters
    ----------
    l1, l2, l3 : int
        Degrees satisfying the triangle condition :math:`|l_1 - l_2| \le l_3 \le l_1 + l_2`.

    Returns
    -------
    C : ndarray, shape (2l1+1, 2l2+1, 2l3+1), float64
        A fresh copy; every entry is the correctly rounded exact value.

    Raises
    ------
    ValueError
        If a degree is negative or above ``LMAX_3J = 16``, or the triangle condition fails.

    Notes
    -----
    Properties (tested): :math:`\sum C^2 = 1`;
    :math:`\sum_{ab} C_{abc} C_{abc'} = \delta_{cc'}/(2l_3+1)`; invariance under simultaneous
    rotation of the three indices; cyclic symmetry; an odd permutation multiplies by
    :math:`(-1)^{l_1+l_2+l_3}`; :math:`C^{111} = \varepsilon/\sqrt6`; equal to
    ``e3nn.o3.wigner_3j`` (>= 0.5) to 2e-16. ``l <= 8``: read from the shipped table (loaded
    lazily once, < 50 ms). ``8 < l <= 16``: computed exactly with SymPy on first use (0.5-3 s)
    and cached on disk in ``$GEOMP_REF_CACHE`` or ``~/.cache/geomp_ref``.
    """
    l1, l2, l3 = check_int(l1, "l1"), check_int(l2, "l2"), check_int(l3, "l3")
    if max(l1, l2, l3) > LMAX_3J:
        raise ValueError(
            f"wigner_3j(l1={l1}, l2={l2}, l3={l3}): degrees above LMAX_3J = {LMAX_3J} are not "
            f"served (the shipped table holds l <= 8; the exact SymPy construction takes seconds "
            f"up to l = {LMAX_3J} and grows as l^3 beyond); use degrees <= {LMAX_3J}"
        )
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        raise ValueError(
            f"wigner_3j(l1={l1}, l2={l2}, l3={l3}): the triangle condition "
            "|l1 - l2| <= l3 <= l1 + l2 fails, so the coupling tensor is zero; drop this path"
        )
    return _dense(l1, l2, l3).copy()


@functools.cache
def _dense(l1: int, l2: int, l3: int) -> np.ndarray:
    table = _load_table()
    key = (l1, l2, l3)
    if key in table["entries"]:
        flat, vals = table["entries"][key]
    else:
        flat, vals = _on_demand(l1, l2, l3)
    out = np.zeros((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1))
    out[flat] = vals
    out = out.reshape(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
    out.setflags(write=False)
    return out


def content_hash(triples, offsets, flat_index, values) -> str:
    """sha256 over the table arrays (fixed dtypes, C order): the table's identity."""
    h = hashlib.sha256()
    for arr, dt in ((triples, "<i2"), (offsets, "<i8"), (flat_index, "<i4"), (values, "<f8")):
        h.update(np.ascontiguousarray(arr, dtype=dt).tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _load_table() -> dict:
    with np.load(TABLE_PATH, allow_pickle=False) as z:
        triples, offsets = z["triples"], z["offsets"]
        flat_index, values = z["flat_index"], z["values"]
        meta = {k: str(z[k]) for k in ("sympy_version", "content_hash")}
        lmax = int(z["lmax"])
    if content_hash(triples, offsets, flat_index, values) != meta["content_hash"]:
        raise RuntimeError(
            f"{TABLE_PATH} is corrupted (content hash mismatch); regenerate it with "
            "`python3 derivations/clebsch_gordan.py --write`"
        )
    entries = {
        tuple(int(t) for t in triples[i]): (
            flat_index[offsets[i] : offsets[i + 1]],
            values[offsets[i] : offsets[i + 1]],
        )
        for i in range(len(triples))
    }
    return {"entries": entries, "lmax": lmax, **meta}


def cache_dir() -> Path:
    """Directory for coupling tensors generated on demand (``$GEOMP_REF_CACHE`` or
    ``~/.cache/geomp_ref``), subfolder ``cg``."""
    root = os.environ.get("GEOMP_REF_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "geomp_ref"
    )
    return Path(root) / "cg"


def _on_demand(l1: int, l2: int, l3: int):
    path = cache_dir() / f"cg_{l1}_{l2}_{l3}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                flat, vals, digest = z["flat_index"], z["values"], str(z["content_hash"])
            if content_hash(np.array([[l1, l2, l3]]), [0, len(vals)], flat, vals) == digest:
                return flat, vals
        except (OSError, KeyError, ValueError):
            pass  # unreadable or stale cache file: regenerate below
    flat, vals = exact_coupling_float(l1, l2, l3)
    digest = content_hash(np.array([[l1, l2, l3]]), [0, len(vals)], flat, vals)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, flat_index=flat, values=vals, content_hash=digest)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs regeneration next time
    return flat, vals
