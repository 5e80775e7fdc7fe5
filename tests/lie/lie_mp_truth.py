"""50-digit mpmath ground truth for the Lie-group tests and benchmarks/lie_accuracy.py.

Independent of geomp_ref: closed forms evaluated in mpmath with the working precision raised
by the number of digits each cancellation costs (so no series and no half-angle tricks are
needed), plus the Lie-algebra series ``Jl = Σ ad^k/(k+1)!`` as a second, formula-free route for
the Jacobians (slow; used on a few points to validate the closed forms themselves).
Error measures: tangents by relative error per block (translation, rotation), elements by the
max-entry absolute error of the rotation block and the relative translation error, Jacobians by
the relative Frobenius error.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.dps = 50
DPS = 50


def _extra(theta):
    """Digits lost by ``θ⁴``-type cancellation at small ``θ``."""
    t = abs(float(theta))
    return 20 if t == 0 or t > 1e-2 else int(-4 * np.log10(t)) + 20


def coeffs(theta):
    """``A = sin θ/θ, B = (1 − cos θ)/θ², C = (θ − sin θ)/θ³, D = (1 − (θ/2)cot(θ/2))/θ²,
    E = (θ² + 2cos θ − 2)/(2θ⁴), F = (2θ − 3 sin θ + θ cos θ)/(2θ⁵)`` at 50 digits (``theta`` an
    mpf)."""
    if theta == 0:
        return [mp.mpf(1), mp.mpf(1) / 2, mp.mpf(1) / 6, mp.mpf(1) / 12, mp.mpf(1) / 24,
                mp.mpf(1) / 120]
    with mp.workdps(DPS + _extra(theta)):
        t = mp.mpf(theta)
        s, c = mp.sin(t), mp.cos(t)
        out = [s / t, (1 - c) / t**2, (t - s) / t**3, (1 - (t / 2) * mp.cot(t / 2)) / t**2,
               (t**2 + 2 * c - 2) / (2 * t**4), (2 * t - 3 * s + t * c) / (2 * t**5)]
    return [+x for x in out]


def H(h):
    if h == 0:
        return mp.mpf(1)
    return h * mp.cot(h)


def mpf_vec(x):
    return [mp.mpf(float(v)) for v in np.ravel(x)]


def skew(w):
    x, y, z = w
    return mp.matrix([[0, -z, y], [z, 0, -x], [-y, x, 0]])


def norm(v):
    return mp.sqrt(mp.fsum(x * x for x in v))


# ------------------------------------------------------------------ per-group truth (mp matrices)


def so3_parts(w):
    th = norm(w)
    K = skew(w)
    return th, K, K * K, coeffs(th)


def so3_exp(w):
    _th, K, K2, (a, b, _c, _d, _e, _f) = so3_parts(w)
    return mp.eye(3) + a * K + b * K2


def so3_jl(w, inverse=False):
    _th, K, K2, (_a, b, c, d, _e, _f) = so3_parts(w)
    if inverse:
        return mp.eye(3) - K / 2 + d * K2
    return mp.eye(3) + b * K + c * K2


def se3_Q(rho, w):
    _th, K, K2, (_a, _b, c, _d, e, f) = so3_parts(w)
    P = skew(rho)
    return (P / 2 + c * (K * P + P * K + K * P * K) + e * (K2 * P + P * K2 - 3 * K * P * K)
            + f * (K * P * K2 + K2 * P * K))


def _block(TL, TR, BR):
    n = TL.rows
    M = mp.zeros(2 * n, 2 * n)
    for i in range(n):
        for j in range(n):
            M[i, j], M[i, j + n], M[i + n, j + n] = TL[i, j], TR[i, j], BR[i, j]
    return M


def se2_V(th):
    a, b = coeffs(th)[:2]
    return mp.matrix([[a, -th * b], [th * b, a]])


def se2_jr(rho, th):
    a, b, c = coeffs(th)[:3]
    r1, r2 = rho
    return mp.matrix([[a, th * b, r1 * th * c - r2 * b], [-th * b, a, r1 * b + r2 * th * c],
                      [0, 0, 1]])


def exp(group, tau):
    """Exact ``Exp`` (mp matrix) of a float64 tangent."""
    t = mpf_vec(tau)
    if group == "so2":
        th = t[0]
        return mp.matrix([[mp.cos(th), -mp.sin(th)], [mp.sin(th), mp.cos(th)]])
    if group == "so3":
        return so3_exp(t)
    if group == "se2":
        th = t[2]
        g = mp.eye(3)
        g[:2, :2] = exp("so2", [float(tau[2])]) if False else mp.matrix(
            [[mp.cos(th), -mp.sin(th)], [mp.sin(th), mp.cos(th)]])
        tr = se2_V(th) * mp.matrix(t[:2])
        g[0, 2], g[1, 2] = tr[0], tr[1]
        return g
    rho, w = t[:3], t[3:]
    g = mp.eye(4)
    R = so3_exp(w)
    tr = so3_jl(w) * mp.matrix(rho)
    for i in range(3):
        for j in range(3):
            g[i, j] = R[i, j]
        g[i, 3] = tr[i]
    return g


def jacobian(group, tau, kind):
    """``kind`` in {"jr", "jl", "jr_inv", "jl_inv"}; mp matrix (SO(2): 1x1)."""
    t = mpf_vec(tau)
    if kind in ("jr", "jr_inv"):
        t = [-x for x in t]  # Jr(τ) = Jl(−τ)
    inv = kind.endswith("inv")
    if group == "so2":
        return mp.matrix([[1]])
    if group == "so3":
        return so3_jl(t, inv)
    if group == "se2":
        # Jl(τ) = Jr(−τ) with the explicit SE(2) Jr (se2_jr)
        J = se2_jr([-t[0], -t[1]], -t[2])
        return mp.inverse(J) if inv else J
    rho, w = t[:3], t[3:]
    if inv:
        Ji = so3_jl(w, True)
        return _block(Ji, -Ji * se3_Q(rho, w) * Ji, Ji)
    J = so3_jl(w)
    return _block(J, se3_Q(rho, w), J)


# ------------------------------------------------------------------ algebra route (formula-free)

DOFS = {"so2": 1, "se2": 3, "so3": 3, "se3": 6}


def hat(group, t):
    if group == "so2":
        return mp.matrix([[0, -t[0]], [t[0], 0]])
    if group == "so3":
        return skew(t)
    if group == "se2":
        return mp.matrix([[0, -t[2], t[0]], [t[2], 0, t[1]], [0, 0, 0]])
    X = mp.zeros(4, 4)
    X[:3, :3] = skew(t[3:])
    for i in range(3):
        X[i, 3] = t[i]
    return X


def vee(group, X):
    if group == "so2":
        return [X[1, 0]]
    if group == "so3":
        return [X[2, 1], X[0, 2], X[1, 0]]
    if group == "se2":
        return [X[0, 2], X[1, 2], X[1, 0]]
    return [X[0, 3], X[1, 3], X[2, 3], X[2, 1], X[0, 2], X[1, 0]]


def jacobian_series(group, tau, kind):
    """``Jl = Σ ad^k/(k+1)!``, ``Jr = Σ (−ad)^k/(k+1)!`` and their inverses by mp.inverse."""
    t = mpf_vec(tau)
    n = DOFS[group]
    X = hat(group, t)
    ad = mp.zeros(n, n)
    for k in range(n):
        e = [mp.mpf(0)] * n
        e[k] = mp.mpf(1)
        Y = hat(group, e)
        col = vee(group, X * Y - Y * X)
        for i in range(n):
            ad[i, k] = col[i]
    if kind.startswith("jr"):
        ad = -ad
    with mp.workdps(DPS + 30):
        J, term = mp.zeros(n, n), mp.eye(n)
        for k in range(400):
            J += term / mp.factorial(k + 1)
            term = term * ad
            if mp.mnorm(term, 1) / mp.factorial(k + 2) < mp.mpf(10) ** -(DPS + 25):
                break
        if kind.endswith("inv"):
            J = mp.inverse(J)
    return J * 1


# ------------------------------------------------------------------ principal representative


def principal(group, tau):
    """The principal tangent ``Log(Exp τ)`` in mp (list), computed from ``τ`` (no matrix Log)."""
    t = mpf_vec(tau)
    if group in ("so2", "se2"):
        th = t[-1]
        thp = th - 2 * mp.pi * mp.nint(th / (2 * mp.pi))
        if group == "so2":
            return [thp]
        rho = mp.inverse(se2_V(thp)) * (se2_V(th) * mp.matrix(t[:2])) if thp != th else t[:2]
        return [rho[0], rho[1], thp]
    w = t[-3:]
    th = norm(w)
    k = mp.nint(th / (2 * mp.pi))
    if k == 0:
        return t
    wp = [x * (th - 2 * mp.pi * k) / th for x in w]
    if group == "so3":
        return wp
    rho = mp.inverse(so3_jl(wp)) * (so3_jl(w) * mp.matrix(t[:3]))
    return [rho[0], rho[1], rho[2]] + wp


def twin(group, xi):
    """The other representative of the same element when its angle is ±π (mp list)."""
    if group in ("so2", "se2"):
        th = xi[-1]
        tw = th - 2 * mp.pi if th > 0 else th + 2 * mp.pi
        if group == "so2":
            return [tw]
        rho = mp.inverse(se2_V(tw)) * (se2_V(th) * mp.matrix(xi[:2]))
        return [rho[0], rho[1], tw]
    w = xi[-3:]
    th = norm(w)
    wt = [x * (th - 2 * mp.pi) / th for x in w]
    if group == "so3":
        return wt
    rho = mp.inverse(so3_jl(wt)) * (so3_jl(w) * mp.matrix(xi[:3]))
    return [rho[0], rho[1], rho[2]] + wt


def angle(group, xi):
    return abs(xi[-1]) if group in ("so2", "se2") else norm(xi[-3:])


# ------------------------------------------------------------------ error measures

BLOCKS = {"so2": [slice(0, 1)], "so3": [slice(0, 3)], "se2": [slice(0, 2), slice(2, 3)],
          "se3": [slice(0, 3), slice(3, 6)]}


def rel_vec(x, ref):
    """``|x − ref| / |ref|`` (absolute when ``ref = 0``), x float64, ref mp."""
    d = norm([mp.mpf(float(a)) - b for a, b in zip(np.ravel(x), ref)])
    r = norm(ref)
    return float(d / r) if r != 0 else float(d)


def tangent_error(group, x, ref):
    """Max over blocks (translation, rotation) of the relative block error."""
    x = np.ravel(x)
    return max(rel_vec(x[s], ref[s]) for s in BLOCKS[group])


def tangent_error_twins(group, x, ref):
    """As :func:`tangent_error`, accepting the twin within 1e-12 of π."""
    err = tangent_error(group, x, ref)
    if abs(angle(group, ref) - mp.pi) < 1e-12:
        err = min(err, tangent_error(group, x, twin(group, ref)))
    return err


def element_error(group, g, ref):
    """Rotation block: max-entry absolute error; translation: relative error (max of both)."""
    n = {"so2": 2, "so3": 3, "se2": 2, "se3": 3}[group]
    g = np.asarray(g)
    rot = max(abs(mp.mpf(float(g[i, j])) - ref[i, j]) for i in range(n) for j in range(n))
    if group in ("so2", "so3"):
        return float(rot)
    tr = rel_vec(g[:n, n], [ref[i, n] for i in range(n)])
    return max(float(rot), tr)


def matrix_error(J, ref):
    """Relative Frobenius error of a float matrix against an mp matrix."""
    J = np.atleast_2d(np.asarray(J, dtype=np.float64))
    num = mp.sqrt(mp.fsum((mp.mpf(float(J[i, j])) - ref[i, j]) ** 2
                          for i in range(ref.rows) for j in range(ref.cols)))
    den = mp.sqrt(mp.fsum(ref[i, j] ** 2 for i in range(ref.rows) for j in range(ref.cols)))
    return float(num / den)


def to_float(M):
    return np.array([[float(M[i, j]) for j in range(M.cols)] for i in range(M.rows)])


# ------------------------------------------------------------------ case lists

HARD_ANGLES = [0.0, 1e-12, 1e-8, 1.5e-7, 2e-7, 2e-5, 1e-4, 1e-3, 1.5e-3, 0.07, 0.5, 1.0, 2.0, 3.0,
               np.pi - 1e-4, np.pi - 1e-6, np.pi - 1e-8, np.pi - 1e-12, np.pi]
LARGE_ANGLES = [3.5, 4.0, 5.0, 7.0, 8.5, 10.0]


def sweep_angles(n, rng):
    """``n`` angles: half log-uniform in [1e-12, 1], half uniform in [1, π], plus the extras."""
    lo = 10.0 ** rng.uniform(-12, 0, n // 2)
    hi = rng.uniform(1.0, np.pi, n - n // 2)
    return list(lo) + list(hi) + [np.pi - 1e-6, np.pi - 1e-8, np.pi]


def _axis(rng, which):
    if which == 0:
        a = rng.standard_normal(3)
    elif which == 1:
        a = np.eye(3)[rng.integers(3)] * rng.choice([-1.0, 1.0])
    else:  # tiny components
        a = np.eye(3)[rng.integers(3)] + rng.uniform(-1e-9, 1e-9, 3)
    return a / np.linalg.norm(a)


def tangents(group, angles, rng):
    """One float64 tangent per angle, cycling axis types and translation scales."""
    out = []
    for i, th in enumerate(angles):
        sign = -1.0 if (i % 2 and group in ("so2", "se2")) else 1.0
        scale = [1.0, 1e3, 1e-9][i % 3]
        if group == "so2":
            out.append(np.float64(sign * th))
        elif group == "se2":
            out.append(np.concatenate([scale * rng.standard_normal(2), [sign * th]]))
        elif group == "so3":
            out.append(th * _axis(rng, i % 3))
        else:
            out.append(np.concatenate([scale * rng.standard_normal(3), th * _axis(rng, i % 3)]))
    return out


def exact_pi_elements(group):
    """Exactly representable rotations by π (coordinate and non-coordinate axes) with their Log."""
    out = []
    if group in ("so2", "se2"):
        R = np.array([[-1.0, 0.0], [0.0, -1.0]])
        if group == "so2":
            return [(R, [mp.pi])]
        g = np.eye(3)
        g[:2, :2] = R
        g[:2, 2] = [0.5, -2.0]
        [mp.mpf(0), mp.mpf(0), mp.pi]
        V = se2_V(mp.pi)
        rho = mp.inverse(V) * mp.matrix([mp.mpf(0.5), mp.mpf(-2.0)])
        return [(g, [rho[0], rho[1], mp.pi])]
    for k in ([1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 1]):
        k = np.array(k, float)
        R = 2.0 * np.outer(k, k) / (k @ k) - np.eye(3)  # exact for these axes
        kk = [mp.mpf(float(x)) / mp.sqrt(mp.mpf(float(k @ k))) for x in k]
        w = [mp.pi * x for x in kk]
        if group == "so3":
            out.append((R, w))
        else:
            g = np.eye(4)
            g[:3, :3] = R
            g[:3, 3] = [0.25, -1.0, 3.0]
            rho = mp.inverse(so3_jl(w)) * mp.matrix([mp.mpf(x) for x in g[:3, 3]])
            out.append((g, [rho[0], rho[1], rho[2]] + w))
    return out


def measure(G, group, taus, what):
    """Max error of ``what`` over ``taus`` (measures above); returns (max error, worst tau)."""
    worst, arg = -1.0, None
    for tau in taus:
        if what == "exp":
            e = element_error(group, G.exp(tau), exp(group, tau))
        elif what == "log":
            xi = principal(group, tau)
            e = tangent_error_twins(group, G.log(to_float(exp(group, tau))), xi)
        elif what == "tangent_round_trip":
            e = tangent_error_twins(group, G.log(G.exp(tau)), principal(group, tau))
        elif what == "group_round_trip":
            g = to_float(exp(group, tau))
            e = element_error(group, G.exp(G.log(g)), exp(group, tau))
        else:
            f = {"jr": G.right_jacobian, "jl": G.left_jacobian,
                 "jr_inv": G.right_jacobian_inverse, "jl_inv": G.left_jacobian_inverse}[what]
            e = matrix_error(f(tau), jacobian(group, tau, what))
        if e > worst:
            worst, arg = e, tau
    return worst, arg


WHATS = ["exp", "log", "tangent_round_trip", "group_round_trip", "jr", "jl", "jr_inv", "jl_inv"]
