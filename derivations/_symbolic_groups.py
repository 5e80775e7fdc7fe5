r"""Symbolic elements of E(3) for the equivariance proofs of the lessons (not a lesson itself).

A proof "for every element of E(3)" works with a transformation :math:`x \mapsto Qx + t` whose
nine entries :math:`q_{ab}` and three shifts :math:`t_a` are *symbols*, and uses one hypothesis
about them, orthogonality :math:`Q^T Q = I`. No determinant is ever used, so every statement
proved this way holds for rotations and reflections alike (E(3), not only SE(3)).

The hypothesis enters in one place only, the squared norm of a transformed difference vector:

.. math::

    \lVert Q v \rVert^2 = v^T (Q^T Q)\, v \quad\text{(an identity of polynomials)}
    \;=\; v^T v \quad\text{(by } Q^T Q = I\text{)}.

:func:`transformed_sqnorm` checks the first equality by expanding both sides and then applies the
second; everything else in the proofs is polynomial algebra that SymPy expands exactly. Learned
networks are undefined functions (``sympy.Function("phi_e")``): two applications are the same
value exactly when their arguments are the same expression, which is what makes the proofs hold
for *every* choice of weights.
"""

from __future__ import annotations

import sympy as sp


def symbolic_e3():
    """``(Q, t)``: a 3 x 3 matrix of symbols ``q_ab`` and a translation of symbols ``t_a``."""
    Q = sp.Matrix(3, 3, sp.symbols("q_00:3(0:3)", real=True))
    t = sp.Matrix(sp.symbols("t_0:3", real=True))
    return Q, t


def transformed_sqnorm(v, Q):
    r"""``|Q v|^2`` rewritten as ``|v|^2`` with the hypothesis ``Q^T Q = I``.

    First checks that ``|Q v|^2 - v^T (Q^T Q) v`` expands to 0 (pure algebra, no hypothesis),
    then replaces ``Q^T Q`` by the identity. Raises ``AssertionError`` if the identity failed.
    """
    v = sp.Matrix(v)
    lhs = ((Q * v).T * (Q * v))[0, 0]
    middle = (v.T * (Q.T * Q) * v)[0, 0]
    assert sp.expand(lhs - middle) == 0, "|Qv|^2 = v^T Q^T Q v must hold as polynomials"
    return (v.T * v)[0, 0]


def is_zero(expr) -> bool:
    """Whether a scalar or matrix expression expands to exactly 0."""
    if isinstance(expr, sp.MatrixBase):
        return all(sp.expand(e) == 0 for e in expr)
    return sp.expand(expr) == 0
