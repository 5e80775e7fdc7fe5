r"""Lesson: cardinal B-splines by repeated convolution, and the B-spline kernel's backward pass.

The basis (``geomp_ref/layers/bspline.py``). Start from the box ``B_0 = 1`` on ``[-1/2, 1/2)`` and
convolve with it n times::

    B_n(t) = (B_{n-1} * B_0)(t) = integral_{t-1/2}^{t+1/2} B_{n-1}(s) ds .

Each convolution raises the degree by one and widens the support by one, so ``B_n`` is a piecewise
polynomial of degree n on ``[-(n+1)/2, (n+1)/2]`` with knots spaced one apart, ``n - 1`` times
continuously differentiable (integration adds one order of smoothness to the box, which has
none). ``derive_basis`` performs these integrals with SymPy and reads off each piece as a
polynomial in the local variable ``s = t + (n+1)/2 - j`` on the j-th unit interval; ``check_pieces``
compares them with the float64 table the library builds from the truncated-power formula
``B_n = (1/n!) sum_k (-1)^k C(n+1, k) (x - k)_+^n`` (exact rationals, then rounded once), and
``check_values`` compares ``cardinal_bspline`` with the SymPy pieces at rational points.

Properties the kernel relies on:

* partition of unity: on every unit interval the n+1 shifted pieces that overlap it sum to the
  constant 1, so ``sum_i B_n(u - i) = 1`` for all u (``check_partition_of_unity``, exact);
* derivative: differentiating under the integral gives ``B_n'(t) = B_{n-1}(t + 1/2) -
  B_{n-1}(t - 1/2)`` (``check_derivative``, exact, and against ``cardinal_bspline_derivative``);
* symmetry ``B_n(-t) = B_n(t)``, which the library uses to evaluate the right half of the support
  as the mirror image of the left half (no cancellation in the tails).

The kernel. With centres ``x_i = -e + i s`` on a regular grid and ``u = (x + e)/s``::

    k_c(x) = sum_i c_{i,c} w_i(x),      w_i(x) = prod_a B_n(u_a - i_a)

    dk_c / dc_{i,c}  = w_i(x)                         -> grad_c[i, c] = sum_m w_i(x_m) g[m, c]
    dk_c / dx_a      = (1/s_a) sum_i c_{i,c} B_n'(u_a - i_a) prod_{b != a} B_n(u_b - i_b)
                                                      -> grad_x[m, a] = sum_c g[m, c] dk_c/dx_a

(the chain rule through ``u_a = (x_a + e_a)/s_a`` contributes the ``1/s_a``). ``check_kernel_vjp``
writes the kernel of a 2-D grid as one SymPy expression in the coordinates and every coefficient,
differentiates it, and compares with ``BSplineKernel.backward`` at rational points; only centres
within ``(n+1) s / 2`` of x contribute, which the library exploits and the symbolic sum over
*every* centre does not, so the comparison also checks that the sparse evaluation misses nothing.

Run: ``python3 derivations/bspline.py [--check]`` (about 10 s; exit 0 on success).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geomp_ref.layers.bspline import (  # noqa: E402
    BSplineKernel,
    _pieces,
    cardinal_bspline,
    cardinal_bspline_derivative,
)

t, s_loc = sp.symbols("t s", real=True)
DEGREES = range(0, 6)
TOL = 1e-15


@functools.cache
def derive_basis(n: int) -> list[sp.Expr]:
    """The pieces of B_n (piece j as a polynomial in t on [j - (n+1)/2, j + 1 - (n+1)/2)),
    by n convolutions of the box, each an exact integral of the previous piecewise polynomial.

    For t on piece j of B_m the window [t - 1/2, t + 1/2] starts on piece j - 1 of B_{m-1}
    (its pieces sit on [k - m/2, k + 1 - m/2)) and ends on piece j, with the knot j - m/2
    between them, so B_m = int_{t-1/2}^{j-m/2} P_{j-1} + int_{j-m/2}^{t+1/2} P_j.
    """
    half = sp.Rational(1, 2)
    pieces = [sp.Integer(1)]  # B_0 on [-1/2, 1/2)
    for m in range(1, n + 1):
        new = []
        for j in range(m + 1):
            knot = j - sp.Rational(m, 2)
            total = 0
            if j >= 1:
                total += sp.integrate(pieces[j - 1].subs(t, s_loc), (s_loc, t - half, knot))
            if j < m:
                total += sp.integrate(pieces[j].subs(t, s_loc), (s_loc, knot, t + half))
            new.append(sp.expand(total))
        pieces = new
    return pieces


def _to_local(piece: sp.Expr, n: int, j: int) -> list[sp.Rational]:
    """Coefficients (power 0 first) of a piece in s = t + (n+1)/2 - j."""
    poly = sp.Poly(sp.expand(piece.subs(t, s_loc - sp.Rational(n + 1, 2) + j)), s_loc)
    return [poly.coeff_monomial(s_loc**m) for m in range(n + 1)]


def check_pieces() -> float:
    """Library piece table (and derivative table) vs the SymPy pieces, max abs difference."""
    err = 0.0
    for n in DEGREES:
        table, dtable = _pieces(n)
        for j, piece in enumerate(derive_basis(n)):
            exact = _to_local(piece, n, j)
            dexact = _to_local(sp.diff(piece, t), n, j)
            err = max(err, max(abs(float(c) - table[j, m]) for m, c in enumerate(exact)))
            err = max(err, max(abs(float(c) - dtable[j, m]) for m, c in enumerate(dexact)))
    return err


def check_values(rng) -> float:
    """cardinal_bspline (and its derivative) vs the SymPy pieces at rational points."""
    err = 0.0
    for n in DEGREES:
        pieces = derive_basis(n)
        half = sp.Rational(n + 1, 2)
        for q in rng.integers(-60 * (n + 2), 60 * (n + 2), size=40):
            tq = sp.Rational(int(q), 60)
            j = int(sp.floor(tq + half))
            inside = 0 <= j <= n
            want = pieces[j].subs(t, tq) if inside else 0
            dwant = sp.diff(pieces[j], t).subs(t, tq) if inside else 0
            got = cardinal_bspline(float(tq), n)
            dgot = cardinal_bspline_derivative(float(tq), n)
            err = max(err, abs(float(got) - float(want)), abs(float(dgot) - float(dwant)) / 4)
    return err


def check_partition_of_unity() -> float:
    """sum_j Q_j(s) = 1 exactly, Q_j the pieces in their local variable s (SymPy).

    For a fixed u the shifts u - i, i in Z, all have the same local variable s = frac(u + (n+1)/2)
    and visit each piece j = 0..n once, so sum_i B_n(u - i) = sum_j Q_j(s).
    """
    bad = 0
    for n in DEGREES:
        total = sum(piece.subs(t, s_loc - sp.Rational(n + 1, 2) + j)
                    for j, piece in enumerate(derive_basis(n)))
        bad += sp.expand(total - 1) != 0
    return float(bad)


def check_derivative() -> float:
    """B_n' = B_{n-1}(t + 1/2) - B_{n-1}(t - 1/2), piece by piece, exactly (SymPy)."""
    bad = 0
    half = sp.Rational(1, 2)
    for n in range(1, max(DEGREES) + 1):
        pieces, lower = derive_basis(n), derive_basis(n - 1)
        for j, piece in enumerate(pieces):
            # on piece j of B_n, t + 1/2 lies on piece j of B_{n-1}, t - 1/2 on piece j - 1
            plus = lower[j].subs(t, t + half) if j < n else 0
            minus = lower[j - 1].subs(t, t - half) if j >= 1 else 0
            bad += sp.expand(sp.diff(piece, t) - (plus - minus)) != 0
    return float(bad)


def _sym_bspline(n: int, pieces, arg):
    half = sp.Rational(n + 1, 2)
    conds = [(pieces[j].subs(t, arg), (arg >= j - half) & (arg < j + 1 - half))
             for j in range(n + 1)]
    return sp.Piecewise(*conds, (0, True))


def check_kernel_vjp(rng) -> float:
    """BSplineKernel.backward vs SymPy derivatives of the whole kernel (every centre summed).

    ``L = sum_c g_c k_c(x)`` with ``k_c = sum_i c_{i,c} w_i(x)``: the coefficient gradient is
    ``dL/dc_{i,c}``, the coordinate gradient ``dL/dx_a``, both taken symbolically (SymPy
    differentiates the Piecewise products) and evaluated exactly at rational points.
    """
    n, sizes, ext = 3, (4, 5), (sp.Rational(3, 2), sp.Integer(2))
    spec = BSplineKernel(2, 2, n, sizes, tuple(float(e) for e in ext))
    pieces = derive_basis(n)
    x = sp.symbols("x0 x1", real=True)
    spacing = [2 * e / (m - 1) for e, m in zip(ext, sizes)]
    w = [_sym_bspline(n, pieces, (x[0] + ext[0]) / spacing[0] - i0)
         * _sym_bspline(n, pieces, (x[1] + ext[1]) / spacing[1] - i1)
         for i0 in range(sizes[0]) for i1 in range(sizes[1])]
    csym = sp.Matrix(len(w), 2, lambda i, c: sp.Symbol(f"c{i}_{c}"))
    coeffs = rng.integers(-9, 10, size=csym.shape) / 4
    g = rng.integers(-9, 10, size=2) / 4
    L = sum(sp.Rational(g[c]) * csym[i, c] * w[i] for i in range(len(w)) for c in range(2))
    Lx = L.subs({csym[i, c]: sp.Rational(coeffs[i, c]) for i in range(len(w)) for c in range(2)})
    dLx = [sp.diff(Lx, xa) for xa in x]
    err = 0.0
    for point in ([sp.Rational(-7, 10), sp.Rational(3, 8)], [sp.Rational(13, 10), -2],
                  [sp.Rational(1, 3), sp.Rational(21, 10)]):
        at = {x[0]: point[0], x[1]: point[1]}
        w_at = [wi.subs(at) for wi in w]
        want_k = [float(sum(sp.Rational(coeffs[i, c]) * w_at[i] for i in range(len(w))))
                  for c in range(2)]
        want_c = np.array([[float(sp.diff(L, csym[i, c]).subs(at)) for c in range(2)]
                           for i in range(len(w))])
        want_x = [float(d.subs(at)) for d in dLx]
        coords = np.array([[float(v) for v in point]])
        out, cache = spec.forward({"coeffs": coeffs}, coords)
        grads, (gx,) = spec.backward({"coeffs": coeffs}, cache, g[None, :])
        err = max(err, np.abs(out[0] - want_k).max(), np.abs(gx[0] - want_x).max(),
                  np.abs(grads["coeffs"] - want_c).max())
    return err


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    rng = np.random.default_rng(5)
    ok = True
    for name, fn, tol in [
        ("pieces of B_0..B_5 (and B') vs the library table", check_pieces, TOL),
        ("cardinal_bspline(_derivative) at rational points", lambda: check_values(rng), 2 * TOL),
        ("partition of unity, exact (count of failures)", check_partition_of_unity, 0.0),
        ("B_n' = B_{n-1}(t+1/2) - B_{n-1}(t-1/2), exact (failures)", check_derivative, 0.0),
        ("kernel value and VJP (coefficients, coordinates)", lambda: check_kernel_vjp(rng),
         4 * TOL),
    ]:
        err = fn()
        good = err <= tol
        ok &= good
        print(f"{name:58s} max err {err:.2e}  {'ok' if good else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
