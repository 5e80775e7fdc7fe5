r"""Lesson: SO(3) — Exp, Log near π, the Jacobians, and the derivative of Log(g_i⁻¹ g_j).

Everything about SO(3) follows from one identity of the hat matrix ``K = [ω]×``::

    K³ = −θ² K,    θ² = ω·ω                                   (derive_K_cubed)

so every power series in ``K`` collapses onto ``{I, K, K²}``. We do the algebra in that basis
(``Trip(a, b, c) = a I + b K + c K²``; ``Trip`` products reduce ``K³``, ``K⁴`` with the identity).

1. **Exp** (Rodrigues). ``R(t) = Exp(tK)`` is the solution of ``R' = R K``, ``R(0) = I``. The
   triple ``(1, sin(tθ)/θ, (1 − cos(tθ))/θ²)`` satisfies it (derive_exp), hence
   ``Exp(ω) = I + A K + B K²`` with ``A = sin θ/θ``, ``B = (1 − cos θ)/θ²``.
2. **Left Jacobian** ``Jl = Σ K^k/(k+1)! = ∫₀¹ Exp(sK) ds`` = ``(1, B, C)`` with
   ``C = (θ − sin θ)/θ³`` (derive_jl). ``Jr = Σ (−K)^k/(k+1)! = (1, −B, C) = Jlᵀ``.
   That these series are the Jacobians of Exp (``Exp(ω + δ) ≈ Exp(ω) Exp(Jr δ)``) is checked
   from the definition by exact symbolic differentiation in ``ε`` at random rational ``ω``
   (check_jr_definition).
3. **Inverse**: solving ``(1, B, C)(1, x, y) = (1, 0, 0)`` gives ``x = −½`` and
   ``y = D = (1 − (θ/2) cot(θ/2))/θ²`` (derive_jl_inv) — the half-angle form stays accurate at π.
4. **Log near π**: the symmetric part of ``R`` is ``c I + (1 − c) k kᵀ`` (``c = cos θ``, unit axis
   ``k``), so ``S = (R + Rᵀ)/2 − c I = (1 − c) k kᵀ`` carries the axis with O(1) entries when the
   skew part ``sin θ k`` vanishes (derive_symmetric_part).
5. **Pairwise log**: with right perturbations, ``Log(H Exp(δ)) = ξ + Jr⁻¹(ξ) δ + O(δ²)`` (invert
   item 2's definition) and ``Log(Exp(−δ) H) = ξ − Jl⁻¹(ξ) δ``; for ``H = g_i⁻¹ g_j``,
   ``g_j → g_j Exp(δ_j)`` gives ``H Exp(δ_j)`` and ``g_i → g_i Exp(δ_i)`` gives ``Exp(−δ_i) H``, so
   ``∂ξ/∂δ_j = Jr⁻¹(ξ)``, ``∂ξ/∂δ_i = −Jl⁻¹(ξ)``. The Frobenius metric on the algebra,
   ``⟨[a]×, [b]×⟩ = 2 a·b`` (derive_metric), turns the tangent gradient ``w`` into the matrix
   gradient ``g [w/2]×`` returned by ``log_vjp`` / ``relative_log_vjp``.

6. **Huge angles**: with ``ω = θ k`` (unit axis ``k``), ``K = θ [k]×`` and ``K² = θ² [k]×²``, so a
   triple ``(a, b, c)`` in ``{I, K, K²}`` is ``(a, θ b, θ² c)`` in ``{I, [k]×, [k]×²}``: Exp is
   ``(1, sin θ, 2 sin²(θ/2))``, Jl is ``(1, 2 sin²(θ/2)/θ, 1 − sin θ/θ)`` and Jl⁻¹ is
   ``(1, −θ/2, 1 − (θ/2) cot(θ/2))`` (derive_unit_axis). These need no product of two huge
   numbers, so the library uses them beyond θ = 1e8 (``check_huge`` compares with 50-digit
   mpmath at axis-aligned angles up to 1e300, where the float angle is the exact input).

``check_geomp`` evaluates geomp_ref.lie.so3 (exp, log, the four Jacobians, log_vjp,
relative_log_vjp, exp_vjp) at seeded random points, near 0 and near π, against these expressions
at 50 digits. Run: ``python3 derivations/so3.py [--check]`` (exit 0 when everything holds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mpmath as mp
import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

th, t, s = sp.symbols("theta t s", positive=True)
w = sp.symbols("w1:4", real=True)


def hat(v):
    return sp.Matrix([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


class Trip:
    """``a I + b K + c K²`` with ``K³ = −θ² K``."""

    def __init__(self, a, b, c):
        self.v = (sp.sympify(a), sp.sympify(b), sp.sympify(c))

    def __mul__(self, o):
        a, b, c = self.v
        d, e, f = o.v
        # K·K = K², K·K² = K³ = −θ²K, K²·K² = K⁴ = −θ²K²
        return Trip(a * d, a * e + b * d - th**2 * (b * f + c * e),
                    a * f + b * e + c * d - th**2 * c * f)

    def simplify(self):
        return tuple(sp.simplify(x) for x in self.v)


A = sp.sin(th) / th
B = (1 - sp.cos(th)) / th**2
C = (th - sp.sin(th)) / th**3
D = (1 - (th / 2) * sp.cot(th / 2)) / th**2


def derive_K_cubed():
    """``K³ + θ²K = 0`` for every ω (polynomial identity)."""
    K = hat(w)
    return sp.expand(K**3 + sum(x**2 for x in w) * K)


def derive_exp():
    """Rodrigues coefficients from the ODE ``R' = R K``: returns the residual triple (must be 0)."""
    R = Trip(1, sp.sin(t * th) / th, (1 - sp.cos(t * th)) / th**2)
    dR = Trip(*(sp.diff(x, t) for x in R.v))
    res = Trip(*(x - y for x, y in zip(dR.v, (R * Trip(0, 1, 0)).v)))
    init = tuple(x.subs(t, 0) for x in R.v)
    return res.simplify(), init


def derive_jl():
    """``Jl = ∫₀¹ Exp(sK) ds`` in the basis: returns ``(1, B, C)`` residuals (must be 0)."""
    E = (1, sp.sin(s * th) / th, (1 - sp.cos(s * th)) / th**2)
    J = [sp.integrate(x, (s, 0, 1)) for x in E]
    return tuple(sp.simplify(x - y) for x, y in zip(J, (1, B, C)))


def derive_jl_inv():
    """Solve ``(1, B, C)(1, x, y) = (1, 0, 0)``; returns ``(x, y − D)`` simplified (−½, 0)."""
    x, y = sp.symbols("x y")
    prod = Trip(1, B, C) * Trip(1, x, y)
    sol = sp.solve([prod.v[1], prod.v[2]], [x, y], dict=True)[0]
    assert sp.simplify(prod.v[0].subs(sol) - 1) == 0
    resid = sp.simplify((sol[y] - D).rewrite(sp.exp))
    return sp.simplify(sol[x]), resid


def derive_symmetric_part():
    """``(R + Rᵀ)/2 − cI − (1 − c)kkᵀ`` for unit ``k`` (zero)."""
    k = sp.symbols("k1:4", real=True)
    K = hat(k)
    R = sp.eye(3) + sp.sin(th) * K + (1 - sp.cos(th)) * K * K
    S = (R + R.T) / 2 - sp.cos(th) * sp.eye(3) - (1 - sp.cos(th)) * sp.Matrix(k) * sp.Matrix(k).T
    unit = {k[0] ** 2: 1 - k[1] ** 2 - k[2] ** 2}
    return sp.simplify(sp.expand(S).subs(unit))


def derive_metric():
    """Gram matrix of ``⟨[a]×, [b]×⟩_F`` (``2 I``)."""
    a, b = sp.symbols("a1:4"), sp.symbols("b1:4")
    val = sp.expand(sum(x * y for x, y in zip(hat(a), hat(b))))
    return sp.Matrix(3, 3, lambda i, j: sp.diff(val, a[i], b[j]))


def derive_unit_axis():
    """Residuals of the unit-axis coefficients against θ·(A, B, C, D) (all must simplify to 0)."""
    t = sp.symbols("theta", positive=True)
    A = sp.sin(t) / t
    B = (1 - sp.cos(t)) / t**2
    C = (t - sp.sin(t)) / t**3
    D = (1 - t / 2 * sp.cot(t / 2)) / t**2
    pairs = [
        (t * A, sp.sin(t)), (t**2 * B, 2 * sp.sin(t / 2) ** 2),  # Exp
        (t * B, 2 * sp.sin(t / 2) ** 2 / t), (t**2 * C, 1 - sp.sin(t) / t),  # Jl
        (t**2 * D, 1 - t / 2 * sp.cos(t / 2) / sp.sin(t / 2)),  # Jl^-1
    ]
    return [sp.simplify(sp.expand_trig(a - b)) for a, b in pairs]


def check_huge():
    """geomp_ref.lie.so3 exp / Jl / Jr / Jl^-1 at axis-aligned huge angles vs mpmath."""
    from geomp_ref.lie import so3

    err = 0.0
    for theta in (1.5e8, 1e12, 1e100, 1e300):
        w = np.array([0.0, theta, 0.0])
        wm = [mp.mpf(float(x)) for x in w]
        K = mp.matrix([[0, -wm[2], wm[1]], [wm[2], 0, -wm[0]], [-wm[1], wm[0], 0]])
        K2 = K * K
        with mp.workdps(60):
            th = mp.mpf(theta)
            a, b = mp.sin(th) / th, (1 - mp.cos(th)) / th**2
            c = (th - mp.sin(th)) / th**3
            d = (1 - th / 2 * mp.cot(th / 2)) / th**2
        ref = {
            "exp": mp.eye(3) + a * K + b * K2,
            "jl": mp.eye(3) + b * K + c * K2,
            "jr": mp.eye(3) - b * K + c * K2,
        }
        got = {"exp": so3.exp(w), "jl": so3.left_jacobian(w), "jr": so3.right_jacobian(w)}
        for key in ref:
            R = ref[key]
            e = max(abs(float(got[key][i, j]) - R[i, j]) for i in range(3) for j in range(3))
            err = max(err, float(e))
        if theta < 1e15:  # beyond, Jl^-1 is refused: every such angle is within rounding of 2πk
            R = mp.eye(3) - K / 2 + d * K2
            J = so3.left_jacobian_inverse(w)
            scale = max(abs(R[i, j]) for i in range(3) for j in range(3))
            e = max(abs(float(J[i, j]) - R[i, j]) for i in range(3) for j in range(3)) / scale
            err = max(err, float(e))
    return err


def exp_matrix(v):
    """Rodrigues in SymPy for an explicit vector ``v``."""
    theta = sp.sqrt(sum(x**2 for x in v))
    K = hat(v)
    return sp.eye(3) + A.subs(th, theta) * K + B.subs(th, theta) * K * K


def check_jr_definition(rng, n=2):
    """``d/dε Exp(ω)ᵀ Exp(ω + εδ)|₀ = [Jr δ]×`` at random rational points (50 digits)."""
    eps = sp.symbols("epsilon")
    worst = 0.0
    for _ in range(n):
        om = [sp.Rational(int(x), 7) for x in rng.integers(-9, 10, 3)]
        de = [sp.Rational(int(x), 5) for x in rng.integers(-5, 6, 3)]
        M = exp_matrix(om).T * sp.diff(exp_matrix([o + eps * d for o, d in zip(om, de)]), eps)
        M = M.subs(eps, 0)
        lhs = sp.Matrix([M[2, 1], M[0, 2], M[1, 0]]).evalf(50)
        theta = sp.sqrt(sum(x**2 for x in om))
        Jr = sp.eye(3) - B.subs(th, theta) * hat(om) + C.subs(th, theta) * hat(om) ** 2
        rhs = (Jr * sp.Matrix(de)).evalf(50)
        worst = max(worst, float((lhs - rhs).norm()))
    return worst


# ------------------------------------------------------------------ geomp_ref against the algebra


def _mp_coeffs(theta):
    with mp.workdps(90):
        t_ = mp.mpf(theta)
        if t_ == 0:
            return mp.mpf(1), mp.mpf(1) / 2, mp.mpf(1) / 6, mp.mpf(1) / 12
        return (mp.sin(t_) / t_, (1 - mp.cos(t_)) / t_**2, (t_ - mp.sin(t_)) / t_**3,
                (1 - t_ / 2 * mp.cot(t_ / 2)) / t_**2)


def _trip_mp(v, trip):
    """Evaluate ``a I + b K + c K²`` at a float vector (mp matrix)."""
    vv = [mp.mpf(float(x)) for x in v]
    K = mp.matrix([[0, -vv[2], vv[1]], [vv[2], 0, -vv[0]], [-vv[1], vv[0], 0]])
    a, b, c = trip
    return a * mp.eye(3) + b * K + c * K * K


def _rel(x, ref):
    ref = np.array(ref.tolist(), dtype=object) if isinstance(ref, mp.matrix) else ref
    num = mp.sqrt(mp.fsum((mp.mpf(float(a)) - b) ** 2 for a, b in zip(np.ravel(x), np.ravel(ref))))
    den = mp.sqrt(mp.fsum(b**2 for b in np.ravel(ref)))
    return float(num / den) if den else float(num)


def check_geomp(rng, n=12):
    """Max relative error of geomp_ref.lie.so3 against the derived expressions."""
    from geomp_ref.lie import so3

    worst = {}

    def upd(key, e):
        worst[key] = max(worst.get(key, 0.0), e)

    axes = rng.standard_normal((n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([[1e-9, 1e-3, np.pi - 1e-7], rng.uniform(0, np.pi, n - 3)])
    for ax, ang in zip(axes, angles):
        om = ang * ax
        a, b, c, d = _mp_coeffs(np.linalg.norm(om))
        upd("exp", _rel(so3.exp(om), _trip_mp(om, (1, a, b))))
        upd("jl", _rel(so3.left_jacobian(om), _trip_mp(om, (1, b, c))))
        upd("jr", _rel(so3.right_jacobian(om), _trip_mp(om, (1, -b, c))))
        upd("jl_inv", _rel(so3.left_jacobian_inverse(om), _trip_mp(om, (1, -0.5, d))))
        upd("jr_inv", _rel(so3.right_jacobian_inverse(om), _trip_mp(om, (1, 0.5, d))))
        upd("log", _rel(so3.log(so3.exp(om)), [mp.mpf(float(x)) for x in om]))
        # pairwise log: tangent projections hatᵀ(gᵀ G) = 2·(gᵀG)_vee must equal ∓Jl/r⁻ᵀ γ
        gi = so3.random(rng, 1)[0]
        gj = gi @ so3.exp(om)
        gamma = rng.standard_normal(3)
        Gi, Gj = so3.relative_log_vjp(gi, gj, gamma)
        xi = so3.relative_log(gi, gj)
        a, b, c, d = _mp_coeffs(np.linalg.norm(xi))
        Jr_inv = _trip_mp(xi, (1, 0.5, d))
        Jl_inv = _trip_mp(xi, (1, -0.5, d))
        g_mp = mp.matrix([mp.mpf(float(x)) for x in gamma])
        upd("relative_log_vjp_j", _rel(so3._hat_T(gj.T @ Gj), Jr_inv.T * g_mp))
        upd("relative_log_vjp_i", _rel(so3._hat_T(gi.T @ Gi), -(Jl_inv.T * g_mp)))
        # minimum-norm lift: G = g [w/2]× (metric 2 I)
        upd("lift", _rel(Gj, gj @ so3.hat(0.5 * so3._hat_T(gj.T @ Gj))))
        # exp_vjp: Jr(ω)ᵀ hatᵀ(Rᵀ G)
        Gm = rng.standard_normal((3, 3))
        a, b, c, d = _mp_coeffs(np.linalg.norm(om))
        ref = _trip_mp(om, (1, -b, c)).T * mp.matrix(list(so3._hat_T(so3.exp(om).T @ Gm)))
        upd("exp_vjp", _rel(so3.exp_vjp(om, Gm), ref))
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
        print(f"so3: {name:38s} {'ok' if good else 'FAILED'} {detail}")

    report("K^3 = -theta^2 K", derive_K_cubed() == sp.zeros(3))
    res, init = derive_exp()
    report("Rodrigues solves R' = R K, R(0) = I", res == (0, 0, 0) and init == (1, 0, 0))
    report("Jl = int_0^1 Exp(sK) ds = (1, B, C)", derive_jl() == (0, 0, 0))
    x, resid = derive_jl_inv()
    report("Jl^-1 = (1, -1/2, D)", x == sp.Rational(-1, 2) and resid == 0)
    report("symmetric part = (1 - c) k k^T", derive_symmetric_part() == sp.zeros(3))
    report("metric <[a]x, [b]x> = 2 a.b", derive_metric() == 2 * sp.eye(3))
    report("unit-axis forms = theta-scaled (A, B, C, D)", all(r == 0 for r in derive_unit_axis()))
    e = check_huge()
    report("huge angles (1.5e8 .. 1e300) vs mpmath", e < 1e-15, f"{e:.1e}")
    e = check_jr_definition(rng)
    report("Jr from the definition (50 digits)", e < 1e-40, f"{e:.1e}")
    for key, err in check_geomp(rng).items():
        report(f"geomp_ref {key}", err < 1e-14, f"{err:.1e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
