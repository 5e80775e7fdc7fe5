r"""The exact real coupling tensors (SymPy), behind :func:`geomp_ref.o3.wigner.wigner_3j`.

Each entry of :math:`C^{l_1 l_2 l_3}` in e3nn's real basis is a finite sum of Condon-Shortley
Clebsch-Gordan coefficients times phases of the basis change :math:`Q_l` (see
:mod:`geomp_ref.o3.wigner`); SymPy evaluates it exactly, and the float64 table is each exact
number rounded once. SymPy is imported only inside these functions.
"""

from __future__ import annotations

import numpy as np


def _q_phase(m: int, mu: int):
    """Exponent k with (Q0_l)[m, mu] = i^k / sqrt(2)^[mu != 0] (Q0 = Q without (-i)^l), or None."""
    if mu == 0:
        return 0 if m == 0 else None
    if abs(m) != abs(mu):
        return None
    if mu > 0:
        return 0 if m == -mu else 2 * mu
    return 3 if m == mu else 1 + 2 * abs(mu)


def exact_coupling(l1: int, l2: int, l3: int) -> dict:
    r"""Exact non-zero entries of :math:`C^{l_1 l_2 l_3}` as SymPy numbers.

    Returns ``{(a, b, c): value}`` with ``a = mu1 + l1`` etc. Each value is
    :math:`2^{-s/2} (2 l_3 + 1)^{-1/2} \sum \pm \langle l_1 m_1 l_2 m_2 | l_3 m_3\rangle` where
    ``s`` counts the non-zero real orders and the sum runs over the sign choices
    :math:`m_i = \pm \mu_i` for which the phase :math:`i^{k_1 + k_2 - k_3 + 3(l_1 + l_2 - l_3)}`
    of the :math:`Q` entries is real (its value, +-1, is the sign). SymPy collects equal radicals,
    so an entry that cancels is an exact zero and is omitted.
    """
    import sympy
    from sympy.physics.wigner import clebsch_gordan

    out = {}
    for mu1 in range(-l1, l1 + 1):
        for mu2 in range(-l2, l2 + 1):
            for mu3 in range(-l3, l3 + 1):
                terms = []
                for m1 in {mu1, -mu1}:
                    for m2 in {mu2, -mu2}:
                        m3 = m1 + m2
                        if abs(m3) != abs(mu3):
                            continue
                        k = _q_phase(m1, mu1) + _q_phase(m2, mu2) - _q_phase(m3, mu3)
                        k = (k + 3 * (l1 + l2 - l3)) % 4
                        if k % 2:
                            continue  # purely imaginary term: no real part
                        cg = clebsch_gordan(l1, l2, l3, m1, m2, m3)
                        terms.append(cg if k == 0 else -cg)
                if not terms:
                    continue
                s = (mu1 != 0) + (mu2 != 0) + (mu3 != 0)
                val = sympy.Add(*terms) / sympy.sqrt(sympy.Integer(2) ** s * (2 * l3 + 1))
                if val != 0:
                    out[(mu1 + l1, mu2 + l2, mu3 + l3)] = val
    return out


def exact_coupling_float(l1: int, l2: int, l3: int):
    """``(flat_index int32, values float64)`` of :func:`exact_coupling`, each value the exact
    number evaluated to 40 digits and rounded once to float64 (sorted by flat index)."""
    ent = exact_coupling(l1, l2, l3)
    shape = (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
    keys = sorted(ent)
    flat = np.array([np.ravel_multi_index(k, shape) for k in keys], dtype=np.int32)
    vals = np.array([float(ent[k].evalf(40)) for k in keys], dtype=np.float64)
    return flat, vals
