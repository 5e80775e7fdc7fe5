r"""Lesson: SO(2) and SE(2) — Exp, Log, the Jacobians straight from their definition, and the
derivative of Log(g_i⁻¹ g_j).

SO(2): ``Exp(θ) = R(θ) = exp(θJ)``, ``J = [[0, −1], [1, 0]]``, ``J² = −I``. The group is
commutative, so ``ad = 0`` (derive_so2_ad) and every Jacobian and the adjoint are 1; the pairwise
log ``ξ = θ_j − θ_i`` (principal) has derivatives ``+1`` and ``−1``.

SE(2): ``τ = (ρ₁, ρ₂, θ)``, ``hat τ = [[θJ, ρ], [0, 0]]``.

1. **Exp**: ``Exp(τ) = [[R(θ), V(θ) ρ], [0, 1]]`` with ``V = ∫₀¹ R(sθ) ds = A I + θ B J``
   (derive_se2_V; ``A = sin θ/θ``, ``B = (1 − cos θ)/θ²``).
2. **Log**: ``V⁻¹ = H(θ/2) I − (θ/2) J`` with ``H(h) = h cot h`` (derive_se2_V_inverse: the
   product simplifies to I through ``A·H + θ²B/2 = cos² + sin²``).
3. **Jacobians from the definition**: with the explicit ``g(τ) = Exp(τ)``, the right Jacobian is
   ``vee(g⁻¹ ∂g/∂τ_k)`` column by column and the left one ``vee(∂g/∂τ_k g⁻¹)``
   (derive_se2_jacobians, fully symbolic). They simplify to
   ``Jr = [[A, θB, ρ₁θC − ρ₂B], [−θB, A, ρ₁B + ρ₂θC], [0, 0, 1]]`` and ``Jl(τ) = Jr(−τ)``, with
   ``C = (θ − sin θ)/θ³`` — the form without cancelling numerators. Their inverses are
   ``[[M⁻¹, −M⁻¹ m], [0, 1]]`` with ``M⁻¹ = H I ± (θ/2) J`` (derive_se2_inverses).
4. **Adjoint** ``Ad_g = [[R, (t₂, −t₁)ᵀ], [0, 1]]`` from ``g hat(δ) g⁻¹ = hat(Ad_g δ)``.
5. **Pairwise log**: ``∂ξ/∂δ_j = Jr⁻¹(ξ)``, ``∂ξ/∂δ_i = −Jl⁻¹(ξ)`` (argument of
   derivations/so3.py); Frobenius Gram matrix ``diag(1, 1, 2)`` (SO(2): 2), so the matrix
   gradient is ``g hat(w_ρ, w_θ/2)``.

``check_geomp`` evaluates geomp_ref.lie.so2/se2 at seeded random points (incl. near 0 and π)
against these expressions at 50 digits. Run: ``python3 derivations/so2_se2.py [--check]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mpmath as mp
import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

th = sp.symbols("theta", positive=True)
s = sp.symbols("s", positive=True)
r1, r2 = sp.symbols("rho1 rho2", real=True)
Jm = sp.Matrix([[0, -1], [1, 0]])
A = sp.sin(th) / th
B = (1 - sp.cos(th)) / th**2
C = (th - sp.sin(th)) / th**3
Hh = (th / 2) * sp.cot(th / 2)


def rot(a):
    return sp.Matrix([[sp.cos(a), -sp.sin(a)], [sp.sin(a), sp.cos(a)]])


def hat(t):
    X = sp.zeros(3, 3)
    X[:2, :2] = t[2] * Jm
    X[0, 2], X[1, 2] = t[0], t[1]
    return X


def vee(X):
    return [X[0, 2], X[1, 2], X[1, 0]]


def derive_so2_ad():
    a, b = sp.symbols("a b")
    return sp.expand(a * Jm * b * Jm - b * Jm * a * Jm)


def V():
    return A * sp.eye(2) + th * B * Jm


def derive_se2_V():
    """``∫₀¹ R(sθ) ds − (A I + θBJ)`` (zero)."""
    integral = rot(s * th).applyfunc(lambda e: sp.integrate(e, (s, 0, 1)))
    return sp.simplify(integral - V())


def derive_se2_V_inverse():
    Vi = Hh * sp.eye(2) - (th / 2) * Jm
    return (V() * Vi - sp.eye(2)).applyfunc(lambda e: sp.simplify(e.rewrite(sp.exp)))


def exp_matrix(t):
    g = sp.eye(3)
    g[:2, :2] = rot(t[2])
    tr = V().subs(th, t[2]) * sp.Matrix([t[0], t[1]])
    g[0, 2], g[1, 2] = tr[0], tr[1]
    return g


def jr_formula(a, b, t):
    """``Jr(ρ₁, ρ₂, θ)`` of the module docstring."""
    Ai, Bi, Ci = (f.subs(th, t) for f in (A, B, C))
    return sp.Matrix([[Ai, t * Bi, a * t * Ci - b * Bi], [-t * Bi, Ai, a * Bi + b * t * Ci],
                      [0, 0, 1]])


def derive_se2_jacobians():
    """Definition minus formula for Jr and Jl (both zero)."""
    tau = [r1, r2, th]
    g = exp_matrix(tau)
    ginv = sp.eye(3)
    ginv[:2, :2] = g[:2, :2].T
    ginv[:2, 2] = -g[:2, :2].T * g[:2, 2]
    Jr = sp.Matrix([vee(ginv * sp.diff(g, v)) for v in tau]).T
    Jl = sp.Matrix([vee(sp.diff(g, v) * ginv) for v in tau]).T
    dr = sp.simplify(Jr - jr_formula(r1, r2, th))
    dl = sp.simplify(Jl - jr_formula(-r1, -r2, -th))
    return dr, dl


def jr_inv_formula(a, b, t):
    h = t / 2
    Mi = (h * sp.cot(h)) * sp.eye(2) + h * Jm
    m = jr_formula(a, b, t)[:2, 2]
    out = sp.eye(3)
    out[:2, :2] = Mi
    out[:2, 2] = -Mi * m
    return out


def derive_se2_inverses():
    d = jr_inv_formula(r1, r2, th) * jr_formula(r1, r2, th) - sp.eye(3)
    return d.applyfunc(lambda e: sp.simplify(e.rewrite(sp.exp)))


def derive_se2_Ad():
    a = sp.symbols("alpha", real=True)
    t1, t2 = sp.symbols("t1 t2", real=True)
    d = sp.symbols("d1:4", real=True)
    g = sp.eye(3)
    g[:2, :2], g[0, 2], g[1, 2] = rot(a), t1, t2
    ginv = g.inv()
    Ad = sp.eye(3)
    Ad[:2, :2], Ad[0, 2], Ad[1, 2] = rot(a), t2, -t1
    return sp.simplify(g * hat(d) * ginv - hat(list(Ad * sp.Matrix(d))))


def derive_metric():
    a, b = sp.symbols("a1:4"), sp.symbols("b1:4")
    val = sp.expand(sum(x * y for x, y in zip(hat(a), hat(b))))
    return sp.Matrix(3, 3, lambda i, j: sp.diff(val, a[i], b[j]))


# ------------------------------------------------------------------ geomp_ref vs the formulas

_jr_mp = sp.lambdify((r1, r2, th), jr_formula(r1, r2, th), "mpmath")
_jr_inv_mp = sp.lambdify((r1, r2, th), jr_inv_formula(r1, r2, th), "mpmath")
_exp_mp = sp.lambdify((r1, r2, th), exp_matrix([r1, r2, th]), "mpmath")


def _ev(f, tau):
    with mp.workdps(120):  # the closed forms cancel near 0: evaluate them with many digits
        return f(*(mp.mpf(float(x)) for x in tau))


def _rel(x, ref):
    if isinstance(ref, mp.matrix):
        ref = [ref[i, j] for i in range(ref.rows) for j in range(ref.cols)]
    ref = list(ref)
    num = mp.sqrt(mp.fsum((mp.mpf(float(a)) - b) ** 2 for a, b in zip(np.ravel(x), ref)))
    den = mp.sqrt(mp.fsum(b**2 for b in ref))
    return float(num / den) if den else float(num)


def check_geomp(rng, n=10):
    from geomp_ref.lie import se2, so2

    worst = {}

    def upd(key, e):
        worst[key] = max(worst.get(key, 0.0), e)

    angles = np.concatenate([[1e-9, -1e-3, np.pi - 1e-7], rng.uniform(-np.pi, np.pi, n - 3)])
    for ang in angles:
        tau = np.array([*rng.standard_normal(2), ang])
        upd("se2 exp", _rel(se2.exp(tau), _ev(_exp_mp, tau)))
        upd("se2 log", _rel(se2.log(se2.exp(tau)), [mp.mpf(float(x)) for x in tau]))
        upd("se2 jr", _rel(se2.right_jacobian(tau), _ev(_jr_mp, tau)))
        upd("se2 jl", _rel(se2.left_jacobian(tau), _ev(_jr_mp, -tau)))
        upd("se2 jr_inv", _rel(se2.right_jacobian_inverse(tau), _ev(_jr_inv_mp, tau)))
        upd("se2 jl_inv", _rel(se2.left_jacobian_inverse(tau), _ev(_jr_inv_mp, -tau)))
        gi = se2.random(rng, 1)[0]
        gj = gi @ se2.exp(tau)
        gamma = rng.standard_normal(3)
        Gi, Gj = se2.relative_log_vjp(gi, gj, gamma)
        xi = se2.relative_log(gi, gj)
        gm = mp.matrix([mp.mpf(float(x)) for x in gamma])
        upd("se2 relative_log_vjp_j", _rel(se2._hat_T(gj.T @ Gj), _ev(_jr_inv_mp, xi).T * gm))
        upd("se2 relative_log_vjp_i",
            _rel(se2._hat_T(gi.T @ Gi), -(_ev(_jr_inv_mp, -xi).T * gm)))
        # SO(2): ξ = θ_j − θ_i, derivatives ±1; the lift is g (γ/2) J
        a, b = so2.random(rng, 2)
        gam = float(rng.standard_normal())
        Ga, Gb = so2.relative_log_vjp(a, b, gam)
        upd("so2 relative_log_vjp", max(abs(so2._hat_T(b.T @ Gb) - gam),
                                        abs(so2._hat_T(a.T @ Ga) + gam)) / abs(gam))
        upd("so2 exp/log", abs(float(so2.log(so2.exp(ang))) - ang) / abs(ang))
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="(default) derive and compare")
    parser.parse_args(argv)
    mp.mp.dps = 50
    rng = np.random.default_rng(0)
    ok = True

    def report(name, good, detail=""):
        nonlocal ok
        ok &= bool(good)
        print(f"so2_se2: {name:36s} {'ok' if good else 'FAILED'} {detail}")

    report("so(2) is commutative (ad = 0)", derive_so2_ad() == sp.zeros(2, 2))
    report("V = int_0^1 R(s theta) ds = A I + th B J", derive_se2_V() == sp.zeros(2, 2))
    report("V^-1 = H(th/2) I - (th/2) J", derive_se2_V_inverse() == sp.zeros(2, 2))
    dr, dl = derive_se2_jacobians()
    report("Jr, Jl from the definition", dr == sp.zeros(3, 3) and dl == sp.zeros(3, 3))
    report("Jr^-1 Jr = I", derive_se2_inverses() == sp.zeros(3, 3))
    report("Ad_g = [[R, (t2, -t1)], [0, 1]]", derive_se2_Ad() == sp.zeros(3, 3))
    report("metric diag(1, 1, 2)", derive_metric() == sp.diag(1, 1, 2))
    for key, err in check_geomp(rng).items():
        report(f"geomp_ref {key}", err < 1e-14, f"{err:.1e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
