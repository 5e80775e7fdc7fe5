r"""Real spherical harmonics in e3nn's convention, their recursion and gradients -> generated code.

The lesson
----------
e3nn's spherical harmonic of degree l is a *homogeneous harmonic polynomial* of degree l in the
raw vector (x, y, z), with the polar axis along +y. In the textbook frame (x', y', z') =
(z, x, y) it is the standard real spherical harmonic without a net Condon-Shortley sign. With
"component" normalization (sum_m Y_m^2 = 2l+1 on the unit sphere):

    Y^l_0  = N_l0 Pi_l^0
    Y^l_m  = sqrt(2) N_lm Re[(z + i x)^m]   Pi_l^m     (m > 0)
    Y^l_-m = sqrt(2) N_lm Im[(z + i x)^m]   Pi_l^m     (m > 0)

    N_lm = sqrt((2l+1) (l-m)! / (l+m)!),   Pi_l^m(y, r) = r^(l-m) P_l^(m)(y / r)

where P_l^(m) is the m-th derivative of the Legendre polynomial (the Condon-Shortley (-1)^m of the
associated Legendre function cancels the (-1)^m of the real combination). Since P_l^(m) has the
parity of l - m, Pi_l^m is a polynomial in y and r^2 = x^2 + y^2 + z^2: no square roots.
'integral' normalization divides by sqrt(4 pi), 'norm' by sqrt(2l+1).

Expanded monomials are a poor way to evaluate these in floating point (the coefficients of P_12
alternate in sign and reach 1e3 times the value: 1e-12 absolute errors). Two exact identities
give a stable route with few, small coefficients, both through the coupling tensor
C = wigner_3j(l-1, 1, l) (exact, geomp_ref.o3.wigner.exact_coupling):

1. Recursion (e3nn's construction): x_k Y^{l-1} splits into degree l (harmonic) and
   r^2 Y^{l-2}; the coupling tensor keeps only the degree-l part, so as *polynomials*

       sum_{a,k} C[a,k,c] Y^{l-1}_a(x) x_k = lambda_l Y^l_c(x).

2. Gradient: grad Y^l_c is a vector of harmonic polynomials of degree l-1 depending linearly
   and equivariantly on Y^l, and the only such map is the coupling tensor again:

       d/dx_k Y^l_c(x) = mu_l sum_a C[a,k,c] Y^{l-1}_a(x).

This script derives the polynomials from the Legendre formula, finds lambda_l and mu_l, verifies
both identities exactly (as polynomials, for every component, l <= 12), and writes
geomp_ref/o3/_sh_generated.py: one function per degree evaluating Y^l from Y^{l-1} with the
recursion coefficients C/lambda_l, and one per degree for the vector-Jacobian product
sum_c g_c grad Y^l_c with the coefficients mu_l C, every coefficient the exact number rounded once.

``--check`` (default) re-derives the module text in memory and compares it with the file, and
evaluates the generated code against the exact polynomials at random points (the float64 point
taken exactly, the polynomial evaluated to 40 digits), reporting the largest error in units of
the largest |Y^l| (must be < 1e-14). ``--check --full`` and ``--write`` also prove the two
identities exactly, as polynomial identities, for every component.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import sympy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geomp_ref.o3 import wigner

LMAX = 12
OUT_PATH = Path(__file__).resolve().parents[1] / "geomp_ref" / "o3" / "_sh_generated.py"
x, y, z = sympy.symbols("x y z", real=True)
GENS = (x, y, z)


def derive_polynomials(lmax: int = LMAX) -> list[list[sympy.Expr]]:
    """Exact component-normalised Y^l_m(x, y, z), m = -l..l, as expanded SymPy polynomials."""
    t, r2 = sympy.symbols("t r2")
    out = []
    for l in range(lmax + 1):
        P = sympy.legendre(l, t)
        row = [None] * (2 * l + 1)
        for m in range(l + 1):
            dP = sympy.Poly(sympy.diff(P, t, m), t)
            # r^(l-m) P^(m)(y/r): every power t^j has j = l - m (mod 2)
            Pi = sum(c * y**j * r2 ** ((l - m - j) // 2) for (j,), c in dP.terms())
            Pi = Pi.subs(r2, x**2 + y**2 + z**2)
            N = sympy.sqrt(
                sympy.Integer(2 * l + 1) * sympy.factorial(l - m) / sympy.factorial(l + m)
            )
            if m == 0:
                row[l] = sympy.expand(N * Pi)
            else:
                w = sympy.expand((z + sympy.I * x) ** m)
                re, im = sympy.re(w), sympy.im(w)
                row[l + m] = sympy.expand(sympy.sqrt(2) * N * re * Pi)
                row[l - m] = sympy.expand(sympy.sqrt(2) * N * im * Pi)
        out.append(row)
    return out


def derive_constants(Y, verify: bool = True) -> tuple[dict, dict, dict]:
    """Exact C^{l-1,1,l}, lambda_l and mu_l.

    With ``verify`` both identities are checked exactly, as polynomials, for every component
    (AssertionError on failure); this is the slow part (~7 s).
    """
    cgs, lams, mus = {}, {}, {}
    for l in range(1, len(Y)):
        C = wigner.exact_coupling(l - 1, 1, l)
        cgs[l] = C
        T = [0] * (2 * l + 1)
        G = [[0] * (2 * l + 1) for _ in range(3)]
        for (a, k, c), v in C.items():
            T[c] += v * Y[l - 1][a] * GENS[k]
            G[k][c] += v * Y[l - 1][a]
        # read lambda and mu off the m = 0 component, then demand the identity everywhere
        lam = sympy.nsimplify(sympy.expand(T[l]).coeff(y, l) / Y[l][l].coeff(y, l))
        mu = sympy.nsimplify(
            sympy.diff(Y[l][l], y).coeff(y, l - 1) / sympy.expand(G[1][l]).coeff(y, l - 1)
        )
        for c in range(2 * l + 1) if verify else ():
            assert sympy.expand(T[c] - lam * Y[l][c]) == 0, ("recursion", l, c)
            for k in range(3):
                assert sympy.expand(sympy.diff(Y[l][c], GENS[k]) - mu * G[k][c]) == 0, (l, c, k)
        lams[l], mus[l] = lam, mu
    return cgs, lams, mus


def _sum_expr(terms, prefix: str, indent: str, end: str) -> str:
    """``prefix + c1 * (t1) + c2 * (t2) ... + end``, laid out as ``ruff format`` leaves it:
    one line when it fits in 100 columns, else one term per line inside parentheses."""
    parts = []
    for i, (v, t) in enumerate(terms):
        f = float(sympy.N(v, 40))
        op = ("-" if f < 0 else "") if i == 0 else ("- " if f < 0 else "+ ")
        parts.append(f"{op}{abs(f)!r} * ({t})")
    one = f"{indent}{prefix}{' '.join(parts)}{end}"
    if len(one) <= 100:
        return one
    body = "\n".join(f"{indent}    {part}" for part in parts)
    return f"{indent}{prefix}(\n{body}\n{indent}){end}"


def emit_module(cgs, lams, mus) -> str:
    """Text of _sh_generated.py."""
    lines = [
        '"""GENERATED by derivations/spherical_harmonics.py --write: do not edit.',
        "",
        "Component-normalised real spherical harmonics (e3nn convention, polar axis +y) as",
        "homogeneous polynomials, degree by degree (p = Y^(l-1), list of arrays):",
        "",
        "    Y^l_c = sum_{a,k} (C[a,k,c] / lambda_l) p_a x_k          (sh_<l>)",
        "    sum_c g_c dY^l_c/dx_k = sum_{a,c} mu_l C[a,k,c] g_c p_a    (sh_vjp_<l>)",
        "",
        "with C = wigner_3j(l-1, 1, l). Every literal is the exact value rounded once to float64.",
        f"SymPy {sympy.__version__}, LMAX = {LMAX}.",
        '"""',
        "",
        f"LMAX = {LMAX}",
        "",
        "",
    ]
    for l in range(1, LMAX + 1):
        C, lam, mu = cgs[l], lams[l], mus[l]
        lines.append(f"def sh_{l}(x, y, z, p):")
        lines.append(f"    # lambda_{l} = {lam}")
        lines.append("    return [")
        xs = "xyz"
        for c in range(2 * l + 1):
            terms = [
                (v / lam, f"p[{a}] * {xs[k]}")
                for (a, k, cc), v in sorted(C.items(), key=lambda kv: (kv[0][0], kv[0][1]))
                if cc == c
            ]
            lines.append(_sum_expr(terms, "", "        ", ","))
        lines.append("    ]")
        lines.append("")
        lines.append("")
        lines.append(f"def sh_vjp_{l}(p, g):")
        lines.append(f"    # mu_{l} = {mu}")
        for k in range(3):
            terms = [
                (mu * v, f"g[{c}] * p[{a}]")
                for (a, kk, c), v in sorted(C.items(), key=lambda kv: (kv[0][2], kv[0][0]))
                if kk == k
            ]
            lines.append(_sum_expr(terms, f"g{xs[k]} = ", "    ", ""))
        lines.append("    return gx, gy, gz")
        lines.append("")
        lines.append("")
    for name, fn in (("SH", "sh"), ("SH_VJP", "sh_vjp")):
        lines.append(f"{name} = [")
        lines.append("    None,")
        lines.extend(f"    {fn}_{l}," for l in range(1, LMAX + 1))
        lines.append("]")
    return "\n".join(lines) + "\n"


def check_values(Y, num_points: int = 8, seed: int = 0) -> float:
    """Max |generated - exact| / max_m |Y^l_m| over random unit vectors, all l.

    The float64 point is taken exactly and the exact polynomial is evaluated with mpmath at
    40 digits (lambdify keeps the radicals symbolic until evaluation)."""
    import mpmath

    from geomp_ref.o3.spherical_harmonics import spherical_harmonics

    rng = np.random.default_rng(seed)
    fns = [sympy.lambdify(GENS, row, modules="mpmath") for row in Y]
    worst = 0.0
    with mpmath.workdps(40):
        for _ in range(num_points):
            v = rng.normal(size=3)
            v = v / np.linalg.norm(v)
            pt = [mpmath.mpf(float(c)) for c in v]  # the float64 point exactly
            got = spherical_harmonics(list(range(LMAX + 1)), v, False, normalization="component")
            i = 0
            for l in range(LMAX + 1):
                ref = np.array([float(t) for t in fns[l](*pt)])
                scale = np.abs(ref).max()
                worst = max(worst, float(np.abs(got[i : i + 2 * l + 1] - ref).max() / scale))
                i += 2 * l + 1
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare with the module (default)")
    mode.add_argument("--write", action="store_true", help="regenerate and write the module")
    parser.add_argument(
        "--full", action="store_true", help="with --check: also prove both identities exactly"
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    Y = derive_polynomials()
    cgs, lams, mus = derive_constants(Y, verify=args.write or args.full)
    text = emit_module(cgs, lams, mus)
    verified = "derived and verified" if args.write or args.full else "derived"
    print(
        f"{verified} recursion + gradient constants for l <= {LMAX} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    if args.write:
        OUT_PATH.write_text(text)
        print(f"wrote {OUT_PATH}")
        return 0
    ok = OUT_PATH.exists() and OUT_PATH.read_text() == text
    print("generated module matches" if ok else f"MISMATCH: {OUT_PATH} differs; run --write")
    if ok:
        err = check_values(Y)
        print(f"max error vs exact polynomials (relative to max |Y^l|): {err:.2e}")
        ok = err < 1e-14
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
