r"""Lesson: SE(3) — Exp, Log, Barfoot's Q block, the Jacobians and the pairwise-log derivative.

Tangent ``τ = (ρ, ω)`` (translation first), ``hat τ = X = [[K, ρ], [0, 0]]`` with ``K = [ω]×``,
``P = [ρ]×``.

1. **Exp**: ``X^k = [[K^k, K^{k−1} ρ], [0, 0]]`` (derive_powers), so the translation of
   ``Exp(X) = Σ X^k/k!`` is ``Σ K^{k−1}/k! ρ = Jl_SO3(ω) ρ = V ρ``; Log inverts it,
   ``ρ = V⁻¹ t = Jl_SO3⁻¹(ω) t``.
2. **Adjoint**: ``ad_τ = [[K, P], [0, K]]`` from the commutators ``[X, hat e_k]`` (derive_ad), and
   ``Ad_g = [[R, [t]× R], [0, R]]`` from ``g hat(δ) g⁻¹ = hat(Ad_g δ)``, checked exactly with a
   rational rotation (derive_Ad).
3. **Left Jacobian** ``Jl = Σ ad^k/(k+1)!``. Its diagonal blocks are ``Jl_SO3(ω)``; its corner is
   ``Q = Σ_{k≥1} Σ_{a+b=k−1} K^a P K^b/(k+1)!``. Reducing every ``K^a P K^b`` with ``K³ = −θ²K``
   and the identities ``K P K² = K² P K`` (symmetric) and ``K² P K² = −θ² K P K``
   (derive_identities) leaves seven words; the coefficient of each is a power series in θ² that
   matches the Taylor series of Barfoot's closed form
   ``Q = ½P + C(KP + PK + KPK) + E(K²P + PK² − 3KPK) + F(KPK² + K²PK)`` term by term
   (derive_Q_series, 12 orders), and a 50-digit evaluation of the full series at θ = 2.5, 3.1
   agrees with the closed form (check_Q_numeric).
4. **Inverse**: ``[[J, Q], [0, J]]⁻¹ = [[J⁻¹, −J⁻¹ Q J⁻¹], [0, J⁻¹]]`` (derive_block_inverse);
   ``Jr(τ) = Jl(−τ)`` because ``ad`` is linear in τ.
5. **Pairwise log** ``ξ = Log(g_i⁻¹ g_j)``: ``∂ξ/∂δ_j = Jr⁻¹(ξ)``, ``∂ξ/∂δ_i = −Jl⁻¹(ξ)`` (same
   argument as derivations/so3.py). The Frobenius Gram matrix of the algebra is
   ``diag(1, 1, 1, 2, 2, 2)`` (derive_metric), so the tangent matrix gradient is
   ``g hat(w_ρ, w_ω/2)``; its translation column is ``R w_ρ = ∂L/∂t`` with R fixed.

``check_geomp`` evaluates geomp_ref.lie.se3 at seeded random points (incl. near 0 and π) against
these expressions at 50 digits. Run: ``python3 derivations/se3.py [--check]``.
"""

from __future__ import annotations

import argparse
import sys
from math import factorial
from pathlib import Path

import mpmath as mp
import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

th = sp.symbols("theta", positive=True)
w = sp.symbols("w1:4", real=True)
r = sp.symbols("r1:4", real=True)
C = (th - sp.sin(th)) / th**3
E = (th**2 + 2 * sp.cos(th) - 2) / (2 * th**4)
F = (2 * th - 3 * sp.sin(th) + th * sp.cos(th)) / (2 * th**5)


def hat3(v):
    return sp.Matrix([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def hat(t):
    X = sp.zeros(4, 4)
    X[:3, :3] = hat3(t[3:])
    X[:3, 3] = sp.Matrix(t[:3])
    return X


def vee(X):
    return [X[0, 3], X[1, 3], X[2, 3], X[2, 1], X[0, 2], X[1, 0]]


def derive_powers(kmax=5):
    """``X^k − [[K^k, K^{k−1}ρ], [0, 0]]`` for k = 1..kmax (all zero)."""
    X, K = hat(list(r) + list(w)), hat3(w)
    out = []
    for k in range(1, kmax + 1):
        ref = sp.zeros(4, 4)
        ref[:3, :3] = K**k
        ref[:3, 3] = K ** (k - 1) * sp.Matrix(r)
        out.append(sp.expand(X**k - ref))
    return out


def derive_ad():
    """``ad_τ`` from commutators minus ``[[K, P], [0, K]]`` (zero)."""
    tau = list(r) + list(w)
    X = hat(tau)
    cols = []
    for k in range(6):
        e = [0] * 6
        e[k] = 1
        Y = hat(e)
        cols.append(vee(X * Y - Y * X))
    ad = sp.Matrix(cols).T
    ref = sp.zeros(6, 6)
    ref[:3, :3] = hat3(w)
    ref[3:, 3:] = hat3(w)
    ref[:3, 3:] = hat3(r)
    return sp.expand(ad - ref)


def derive_Ad():
    """``g hat(δ) g⁻¹ − hat(Ad_g δ)`` for a rational rotation and symbolic t, δ (zero)."""
    a, b, c, d = 1, 2, 3, 4
    n = a * a + b * b + c * c + d * d
    R = sp.Matrix([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]]) / n
    tv = sp.Matrix(sp.symbols("t1:4", real=True))
    g = sp.eye(4)
    g[:3, :3], g[:3, 3] = R, tv
    ginv = sp.eye(4)
    ginv[:3, :3], ginv[:3, 3] = R.T, -R.T * tv
    delta = sp.symbols("d1:7", real=True)
    Ad = sp.zeros(6, 6)
    Ad[:3, :3], Ad[3:, 3:], Ad[:3, 3:] = R, R, hat3(tv) * R
    return sp.expand(g * hat(delta) * ginv - hat(list(Ad * sp.Matrix(delta))))


def derive_identities():
    """``KPK² − K²PK``, ``KPK² − (KPK²)ᵀ``, ``K²PK² + θ²KPK`` (all zero; θ² = ω·ω)."""
    K, P = hat3(w), hat3(r)
    t2 = sum(x**2 for x in w)
    return [sp.expand(K * P * K**2 - K**2 * P * K), sp.expand(K * P * K**2 - (K * P * K**2).T),
            sp.expand(K**2 * P * K**2 + t2 * K * P * K)]


def _reduce_power(a):
    """``K^a = f · K^{a'}`` with ``a' ∈ {0, 1, 2}`` and ``f`` a power of ``−θ²``."""
    if a <= 2:
        return sp.Integer(1), a
    ap = 1 if a % 2 else 2
    return (-(th**2)) ** ((a - ap) // 2), ap


def derive_Q_series(n_orders=12):
    """Word coefficients of the series ``Q`` minus the closed form's Taylor series (all zero)."""
    words = {}
    for k in range(1, 2 * n_orders + 6):
        for a in range(k):
            b = k - 1 - a
            fa, ap = _reduce_power(a)
            fb, bp = _reduce_power(b)
            f = fa * fb / factorial(k + 1)
            if (ap, bp) == (2, 2):  # K²PK² = −θ² KPK
                f, (ap, bp) = -(th**2) * f, (1, 1)
            if (ap, bp) == (2, 1):  # K²PK = KPK²
                ap, bp = 1, 2
            words[(ap, bp)] = words.get((ap, bp), 0) + f
    closed = {(0, 0): sp.Rational(1, 2), (1, 0): C, (0, 1): C, (1, 1): C - 3 * E, (2, 0): E,
              (0, 2): E, (1, 2): 2 * F}
    order = 2 * n_orders
    out = {}
    for key, val in closed.items():
        lhs = sp.expand(words.get(key, 0))
        lhs = sum(lhs.coeff(th, p) * th**p for p in range(order))
        rhs = sp.series(val, th, 0, order).removeO() if val.free_symbols else val
        out[key] = sp.expand(lhs - rhs)
    return out


def derive_block_inverse():
    """``[[J, Q], [0, J]] · [[J⁻¹, −J⁻¹QJ⁻¹], [0, J⁻¹]]`` collapses to the identity blocks."""
    J, Q = sp.MatrixSymbol("J", 3, 3), sp.MatrixSymbol("Q", 3, 3)
    Z, I3 = sp.ZeroMatrix(3, 3), sp.Identity(3)
    M = sp.BlockMatrix([[J, Q], [Z, J]])
    Mi = sp.BlockMatrix([[J.I, -J.I * Q * J.I], [Z, J.I]])
    prod = sp.block_collapse(M * Mi)
    blocks = [sp.simplify(prod.blocks[i, j]) for i in range(2) for j in range(2)]
    return blocks == [I3, Z, Z, I3]


def derive_metric():
    a, b = sp.symbols("a1:7"), sp.symbols("b1:7")
    val = sp.expand(sum(x * y for x, y in zip(hat(a), hat(b))))
    return sp.Matrix(6, 6, lambda i, j: sp.diff(val, a[i], b[j]))


# ------------------------------------------------------------------ numeric checks (50 digits)


def _mpm(v):
    return [mp.mpf(float(x)) for x in np.ravel(v)]


def _skew(v):
    return mp.matrix([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _coef(theta):
    with mp.workdps(100):
        t = mp.mpf(theta)
        if t == 0:
            return [mp.mpf(1) / 2, mp.mpf(1) / 6, mp.mpf(1) / 12, mp.mpf(1) / 24,
                    mp.mpf(1) / 120]
        return [(1 - mp.cos(t)) / t**2, (t - mp.sin(t)) / t**3,
                (1 - t / 2 * mp.cot(t / 2)) / t**2, (t**2 + 2 * mp.cos(t) - 2) / (2 * t**4),
                (2 * t - 3 * mp.sin(t) + t * mp.cos(t)) / (2 * t**5)]


def Q_closed(rho, om):
    K, P = _skew(om), _skew(rho)
    _b, c, _d, e, f = _coef(mp.sqrt(mp.fsum(x * x for x in om)))
    return (P / 2 + c * (K * P + P * K + K * P * K) + e * (K * K * P + P * K * K - 3 * K * P * K)
            + f * (K * P * K * K + K * K * P * K))


def Q_series(rho, om, terms=90):
    K, P = _skew(om), _skew(rho)
    # S_k = Σ_{a+b=k−1} K^a P K^b obeys S_{k+1} = K S_k + P K^k
    Q, S, Kk = mp.zeros(3, 3), P, K
    for k in range(1, terms):
        Q += S / mp.factorial(k + 1)
        S, Kk = K * S + P * Kk, Kk * K
    return Q


def check_Q_numeric(rng):
    worst = 0.0
    for ang in (1e-3, 1.0, 2.5, 3.1):
        ax = rng.standard_normal(3)
        om = _mpm(ang * ax / np.linalg.norm(ax))
        rho = _mpm(rng.standard_normal(3))
        with mp.workdps(60):
            d = Q_closed(rho, om) - Q_series(rho, om)
        worst = max(worst, float(mp.mnorm(d, 1)))
    return worst


def _jl_so3(om, inv=False):
    K = _skew(om)
    b, c, d, _e, _f = _coef(mp.sqrt(mp.fsum(x * x for x in om)))
    return mp.eye(3) - K / 2 + d * K * K if inv else mp.eye(3) + b * K + c * K * K


def jacobian(tau, kind):
    t = _mpm(tau)
    if kind.startswith("jr"):
        t = [-x for x in t]
    rho, om = t[:3], t[3:]
    M = mp.zeros(6, 6)
    if kind.endswith("inv"):
        Ji = _jl_so3(om, True)
        TR = -Ji * Q_closed(rho, om) * Ji
        TL = Ji
    else:
        TL, TR = _jl_so3(om), Q_closed(rho, om)
    for i in range(3):
        for j in range(3):
            M[i, j], M[i + 3, j + 3], M[i, j + 3] = TL[i, j], TL[i, j], TR[i, j]
    return M


def _rel(x, ref):
    if isinstance(ref, mp.matrix):
        ref = [ref[i, j] for i in range(ref.rows) for j in range(ref.cols)]
    ref = list(ref)
    num = mp.sqrt(mp.fsum((mp.mpf(float(a)) - b) ** 2 for a, b in zip(np.ravel(x), ref)))
    den = mp.sqrt(mp.fsum(b**2 for b in ref))
    return float(num / den) if den else float(num)


def check_geomp(rng, n=10):
    from geomp_ref.lie import se3

    worst = {}

    def upd(key, e):
        worst[key] = max(worst.get(key, 0.0), e)

    angles = np.concatenate([[1e-9, 1e-3, np.pi - 1e-7], rng.uniform(0, np.pi, n - 3)])
    for ang in angles:
        ax = rng.standard_normal(3)
        tau = np.concatenate([rng.standard_normal(3), ang * ax / np.linalg.norm(ax)])
        for kind, f in (("jl", se3.left_jacobian), ("jr", se3.right_jacobian),
                        ("jl_inv", se3.left_jacobian_inverse),
                        ("jr_inv", se3.right_jacobian_inverse)):
            upd(kind, _rel(f(tau), jacobian(tau, kind)))
        g = se3.exp(tau)
        upd("exp_translation", _rel(g[:3, 3], _jl_so3(_mpm(tau[3:])) * mp.matrix(_mpm(tau[:3]))))
        upd("log", _rel(se3.log(g), _mpm(tau)))
        gi = se3.random(rng, 1)[0]
        gj = gi @ g
        gamma = rng.standard_normal(6)
        Gi, Gj = se3.relative_log_vjp(gi, gj, gamma)
        xi = se3.relative_log(gi, gj)
        gm = mp.matrix(_mpm(gamma))
        upd("relative_log_vjp_j", _rel(se3._hat_T(gj.T @ Gj), jacobian(xi, "jr_inv").T * gm))
        upd("relative_log_vjp_i", _rel(se3._hat_T(gi.T @ Gi), -(jacobian(xi, "jl_inv").T * gm)))
        upd("lift", _rel(Gj, np.ravel(gj @ se3.hat(se3._metric_solve(se3._hat_T(gj.T @ Gj))))))
        Gm = rng.standard_normal((4, 4))
        ref = jacobian(tau, "jr").T * mp.matrix(_mpm(se3._hat_T(g.T @ Gm)))
        upd("exp_vjp", _rel(se3.exp_vjp(tau, Gm), ref))
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
        print(f"se3: {name:40s} {'ok' if good else 'FAILED'} {detail}")

    report("X^k = [[K^k, K^(k-1) rho], [0, 0]]", all(m == sp.zeros(4, 4) for m in derive_powers()))
    report("ad = [[K, P], [0, K]]", derive_ad() == sp.zeros(6, 6))
    report("Ad_g = [[R, [t]x R], [0, R]]", derive_Ad() == sp.zeros(4, 4))
    report("KPK^2 = K^2PK symmetric, K^2PK^2 = -th^2 KPK",
           all(m == sp.zeros(3, 3) for m in derive_identities()))
    qs = derive_Q_series()
    report("Q series = Barfoot closed form (12 orders)", all(v == 0 for v in qs.values()))
    e = check_Q_numeric(rng)
    report("Q series = closed form at 50 digits", e < 1e-40, f"{e:.1e}")
    report("block inverse of Jl", derive_block_inverse())
    report("metric diag(1, 1, 1, 2, 2, 2)",
           derive_metric() == sp.diag(1, 1, 1, 2, 2, 2))
    for key, err in check_geomp(rng).items():
        report(f"geomp_ref {key}", err < 1e-14, f"{err:.1e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
