r"""Lesson: series coefficients for the Lie-group scalar functions, and where to switch to them.

The closed forms of Exp, Log and the Jacobians of SO(2), SE(2), SO(3) and SE(3) are built from a
few even functions of the angle θ (see ``geomp_ref/lie/_series.py``)::

    A = sin θ / θ                      C = (θ − sin θ)/θ³
    D = (1 − (θ/2) cot(θ/2))/θ²        E = (θ² + 2 cos θ − 2)/(2θ⁴)
    F = (2θ − 3 sin θ + θ cos θ)/(2θ⁵) H(h) = h cot h

Near θ = 0 the numerators of C, D, E, F cancel catastrophically in float64 (C loses ~6 eps/θ²,
E and F ~100 eps/θ⁴ relative). The cure is to evaluate them by their Taylor series in θ² near 0.
This script

1. derives the exact rational Taylor coefficients with SymPy's ``series`` of each closed form
   (and, as an independent route, checks ``D`` and ``H`` against the Bernoulli-number formulas
   ``D = Σ |B₂ₖ₊₂| θ²ᵏ/(2k+2)!`` and ``h cot h = Σ (−4)ᵏ B₂ₖ h²ᵏ/(2k)!``);
2. for each function and its switch point ``s`` (chosen by measurement: below 3.25 the series is
   more accurate than the closed form for C, D, E, F, and 3.25 > π covers the principal range),
   picks the smallest number of terms ``K`` whose absolute tail ``Σ_{k≥K} |c_k| s^{2k}`` is below
   2⁻⁵⁸ · min_{[0,s]} |f| — 1/16 of half an ulp, so truncation never shows in float64;
3. prints the coefficient block (float64 values of the exact rationals, correctly rounded through
   ``fractions.Fraction``) that ``_series.py`` holds between its ``BEGIN GENERATED`` / ``END
   GENERATED`` markers. ``--write`` replaces that block; ``--check`` (default) regenerates it in
   memory and compares it with the file, exiting non-zero on any difference.

Run: ``python3 derivations/lie_series.py [--check | --write]`` (about 3 s).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from fractions import Fraction
from pathlib import Path

import mpmath as mp
import sympy as sp

TARGET = Path(__file__).resolve().parents[1] / "geomp_ref" / "lie" / "_series.py"
BEGIN = "# --- BEGIN GENERATED (derivations/lie_series.py --write; do not edit by hand) ---"
END = "# --- END GENERATED ---"

x = sp.symbols("x")

#: name -> (closed form in x, switch point, variable name in the docstring)
FUNCTIONS = {
    "A": (sp.sin(x) / x, 1e-4),
    "C": ((x - sp.sin(x)) / x**3, 3.25),
    "D": ((1 - x / 2 * sp.cot(x / 2)) / x**2, 3.25),
    "E": ((x**2 + 2 * sp.cos(x) - 2) / (2 * x**4), 3.25),
    "F": ((2 * x - 3 * sp.sin(x) + x * sp.cos(x)) / (2 * x**5), 3.25),
    "H": (x * sp.cot(x), 1e-4),
}
MAX_TERMS = 48  # series order 2 * MAX_TERMS: the tail estimates below need ~10 spare terms


def derive_series(expr, n_terms: int) -> list[sp.Rational]:
    """Exact coefficients ``c_k`` of ``expr = Σ c_k x^{2k}`` (odd coefficients must vanish)."""
    poly = sp.Poly(sp.series(expr, x, 0, 2 * n_terms).removeO(), x)
    coeffs = [sp.Rational(poly.coeff_monomial(x ** (2 * k))) for k in range(n_terms)]
    odd = [poly.coeff_monomial(x ** (2 * k + 1)) for k in range(n_terms)]
    if any(c != 0 for c in odd):
        raise AssertionError("series has odd terms: the function is not even")
    return coeffs


def bernoulli_D(n_terms: int) -> list[sp.Rational]:
    """Independent route for D: ``c_k = |B_{2k+2}| / (2k+2)!``."""
    return [abs(sp.bernoulli(2 * k + 2)) / sp.factorial(2 * k + 2) for k in range(n_terms)]


def bernoulli_H(n_terms: int) -> list[sp.Rational]:
    """Independent route for H: ``h cot h = Σ (−4)^k B_{2k} h^{2k} / (2k)!``."""
    return [(-4) ** k * sp.bernoulli(2 * k) / sp.factorial(2 * k) for k in range(n_terms)]


def choose_terms(expr, coeffs: list[sp.Rational], switch: float) -> int:
    """Smallest K with ``Σ_{k≥K} |c_k| s^{2k} < 2^-58 · min_{[0, s]} |f|``."""
    with mp.workdps(60):
        f = sp.lambdify(x, expr, "mpmath")
        s = mp.mpf(switch)
        grid = [s * i / 64 for i in range(1, 65)]
        fmin = min(abs(f(t)) for t in grid)
        fmin = min(fmin, abs(mp.mpf(coeffs[0].p) / coeffs[0].q))
        terms = [abs(mp.mpf(c.p) / c.q) * s ** (2 * k) for k, c in enumerate(coeffs)]
        for K in range(1, len(coeffs) - 10):
            if mp.fsum(terms[K:]) < mp.mpf(2) ** -58 * fmin:
                return K
    raise AssertionError(f"MAX_TERMS={MAX_TERMS} too small for switch {switch}")


def as_float(c: sp.Rational) -> float:
    """Correctly rounded float64 of an exact rational."""
    return float(Fraction(int(c.p), int(c.q)))


def render_block() -> str:
    """The text between (and including) the markers, as ``_series.py`` must hold it."""
    body = []
    for name, (expr, switch) in FUNCTIONS.items():
        coeffs = derive_series(expr, MAX_TERMS)
        if name == "D" and coeffs != bernoulli_D(MAX_TERMS):
            raise AssertionError("D: series and Bernoulli routes disagree")
        if name == "H" and coeffs != bernoulli_H(MAX_TERMS):
            raise AssertionError("H: series and Bernoulli routes disagree")
        K = choose_terms(expr, coeffs, switch)
        body.append(f"SWITCH_{name} = {switch!r}")
        body.append(f"SERIES_{name} = (  # {K} terms, exact c_k = " + ", ".join(
            str(c) for c in coeffs[:3]) + ", ...")
        for c in coeffs[:K]:
            body.append(f"    {as_float(c)!r},")
        body.append(")")
    text = "\n".join(body)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    header = f"# sympy {sp.__version__}; content sha256[:16] = {digest}"
    return f"{BEGIN}\n{header}\n{text}\n{END}"


def _strip_header(block: str) -> str:
    return "\n".join(line for line in block.splitlines() if not line.startswith("# sympy "))


def check(block: str, source: str) -> bool:
    """True when the file's generated block matches ``block`` (ignoring the SymPy-version line)."""
    i, j = source.find(BEGIN), source.find(END)
    if i < 0 or j < 0:
        print(f"{TARGET}: generated-block markers not found")
        return False
    current = source[i : j + len(END)]
    ok = _strip_header(current) == _strip_header(block)
    print("lie_series: coefficient block", "matches" if ok else "DIFFERS (run --write)")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare with the file (default)")
    mode.add_argument("--write", action="store_true", help="rewrite the block in _series.py")
    args = parser.parse_args(argv)
    block = render_block()
    source = TARGET.read_text()
    if args.write:
        i, j = source.find(BEGIN), source.find(END)
        if i < 0 or j < 0:
            print(f"{TARGET}: generated-block markers not found")
            return 1
        TARGET.write_text(source[:i] + block + source[j + len(END) :])
        print(f"wrote {TARGET}")
        return 0
    return 0 if check(block, source) else 1


if __name__ == "__main__":
    sys.exit(main())
