r"""Lesson: the dense layer, the MLP backward, activation derivatives, radial bases, edge lengths.

Symbols follow ``geomp_ref/ops/dense.py``, ``activations.py``, ``radial.py``, ``geometry.py`` and
``geomp_ref/layers/mlp.py``. Every VJP below is "differentiate the pairing
:math:`\langle \bar y, y \rangle` with respect to each input"; SymPy does exactly that on the
forward expression and the checks compare with geomp_ref at random points.

1. Linear: ``y = x W + b`` (W stored (in, out))
-----------------------------------------------
:math:`\langle \bar y, y\rangle = \sum_{r,o} \bar y_{ro} (\sum_i x_{ri} W_{io} + b_o)`, so

.. math:: \bar x = \bar y W^T, \qquad \bar W = x^T \bar y, \qquad
          \bar b = \textstyle\sum_r \bar y_r ,

where the sums run over every leading (batch) index of ``x``: ``linear_vjp`` flattens them.

2. MLP backward in reverse line order
-------------------------------------
Forward, layer k: ``z[k] = h[k] @ W_k + b_k``, then ``h[k+1] = act(z[k])`` (not after the last
layer unless ``activate_last``). Backward undoes the lines last to first:
``g = act'(z[k]) * g`` (reverses the activation), then ``grad_W_k = h[k]^T g``,
``grad_b_k = sum g``, ``g = g @ W_k^T`` (reverses the affine map). The cache needs exactly the
forward's locals ``h[k]`` and ``z[k]``. ``check_mlp`` compares ``MLP.backward`` with SymPy's
gradient of the whole composed expression.

3. Activation derivatives (``f_vjp(x, g) = f'(x) g``)
-----------------------------------------------------
With :math:`\sigma(x) = 1/(1+e^{-x})`:
``silu`` :math:`(x\sigma)' = \sigma + x\sigma(1-\sigma) = \sigma(1 + x(1-\sigma))`;
``softplus`` :math:`\log(1+e^x)' = e^x/(1+e^x) = \sigma`; ``shifted_softplus`` differs by a
constant, same derivative; ``sigmoid`` :math:`\sigma' = \sigma(1-\sigma)`; ``tanh``
:math:`1 - \tanh^2`; ``relu`` :math:`[x > 0]`, with the subgradient 0 chosen at 0 (any value in
[0, 1] is a subgradient there); ``gelu`` :math:`(x\Phi(x))' = \Phi(x) + x\varphi(x)` with
:math:`\Phi` the standard normal CDF :math:`\tfrac12(1 + \mathrm{erf}(x/\sqrt2))` and
:math:`\varphi` its density (the exact GELU, torch's default ``approximate="none"``).
``derive_activation_derivative`` differentiates the definition and ``check_activations`` proves
each closed form symbolically, then compares values and derivatives with 50-digit references at
points from -40 to 40 (the saturated tails included).

The shift of ``shifted_softplus`` is :math:`\ln 2` correctly rounded
(``LN2 = 0.6931471805599453``) so that ``ssp(0) = 0`` exactly; PyG builds the constant as a float32
tensor, whose value read back is ``LN2_PYG`` = round-to-float32(ln 2) = 0.693147182464599609375,
larger by about 1.9e-9: with PyG's shift, ``ssp(0) ≈ -1.9e-9``.

4. Radial bases and cutoffs of the edge length d
------------------------------------------------
Gaussian: :math:`e_k = \exp(-\gamma(d-\mu_k)^2)`, :math:`e_k' = -2\gamma(d-\mu_k)e_k`, with SchNet's
:math:`\mu = \mathrm{linspace}`, :math:`\gamma = 1/(2\Delta^2)`.

Bessel: :math:`b_n = \sqrt{2/c}\,\sin(a_n d)/d`, :math:`a_n = n\pi/c`;
:math:`b_n' = \sqrt{2/c}\,(a_n d\cos(a_n d) - \sin(a_n d))/d^2`. Written with
:math:`t = a_n d`, the value is :math:`\sin t / t`, which needs no series (``sin`` is relatively
accurate; only t = 0 is special), while the derivative :math:`(t\cos t - \sin t)/t^2` cancels
catastrophically as :math:`t \to 0`. A short series switched on at a fixed :math:`d < 10^{-4} c`
is not enough: ``derive_bessel_series`` derives the series
:math:`\sin(ad)/d = a(1 - (ad)^2/6 + (ad)^4/120 - \dots)` and its derivative with SymPy, and
``check_bessel_series`` shows that the first omitted terms at such a switch, :math:`(ad)^6/5040`
(value) and :math:`(ad)^4/280` (derivative), stay below :math:`2^{-53}` for the value only up to
n = 28 and for the derivative only for n = 1, while just above the switch the closed form's
relative cancellation error is of order :math:`\epsilon/(ad)^2` (about 7e-10 for n = 1). The
library (``geomp_ref/ops/radial.py``) therefore sums the derivative's Taylor series
:math:`\sum_{k \ge 1} (-1)^k 2k\, t^{2k-1}/(2k+1)!` with 10 terms for all :math:`t < 1` (first
omitted term below :math:`1/21!` relative) and uses the closed form only above, where it loses at
most a factor ~3. ``check_bessel_derivative_accuracy`` holds ``bessel_rbf_vjp`` on both sides of
the old switch to a tolerance set by the conditioning of :math:`b_n'` itself.

Cutoffs: cosine :math:`C(d) = \tfrac12(\cos(\pi d/c) + 1)` for d < c and 0 after; at d = c,
:math:`C = 0` and :math:`C' = -\tfrac{\pi}{2c}\sin\pi = 0` (value and slope continuous; the second
derivative jumps). Polynomial (DimeNet envelope, :math:`u = d/c`):
:math:`C(u) = 1 - \tfrac{(p+1)(p+2)}{2}u^p + p(p+2)u^{p+1} - \tfrac{p(p+1)}{2}u^{p+2}`;
SymPy shows :math:`C(1) = C'(1) = C''(1) = 0` for symbolic p.

5. Edge lengths
---------------
:math:`d = \lVert v\rVert`: :math:`\bar v = \bar d\, v/d` (undefined at v = 0, where the directional
derivative is :math:`\lVert\delta\rVert`, not linear in δ; ``edge_length`` raises there);
:math:`s = \lVert v\rVert^2`: :math:`\bar v = 2\bar s v` (smooth everywhere).

6. Layer normalisation over the last axis
-----------------------------------------
Per row of C channels: :math:`\mu = \tfrac1C\sum_c x_c`, :math:`v = \tfrac1C\sum_c (x_c-\mu)^2`,
:math:`r = (v+\varepsilon)^{-1/2}`, :math:`\hat x = (x-\mu) r`, :math:`y = \hat x\gamma + \beta`.
With :math:`\bar{\hat x} = \bar y\gamma`: :math:`\partial\mu/\partial x_k = 1/C`,
:math:`\partial v/\partial x_k = \tfrac2C (x_k - \mu)` (the :math:`\mu` terms cancel, since the
centred row sums to 0), :math:`\partial r/\partial x_k = -\tfrac{r^3}{C}(x_k-\mu)`, so

.. math:: \bar x_k = r\,\bar{\hat x}_k - \tfrac{r}{C}\textstyle\sum_c \bar{\hat x}_c
          - \tfrac{r^3}{C} (x_k-\mu) \textstyle\sum_c \bar{\hat x}_c (x_c-\mu)
          = r\big(\bar{\hat x}_k - \langle\bar{\hat x}\rangle
          - \hat x_k \langle \bar{\hat x}\hat x\rangle\big),

:math:`\bar\gamma = \sum_{rows}\bar y\hat x`, :math:`\bar\beta = \sum_{rows}\bar y`.
``check_layer_norm`` lets SymPy differentiate the forward expression (with
:math:`\varepsilon` a symbol) and compares ``ops.layer_norm_vjp`` at random points, and checks
the closed form above symbolically for C = 3.

Run: ``python3 derivations/dense_activations.py [--check]`` (about 9 s).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from fractions import Fraction
from pathlib import Path

import mpmath as mp
import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geomp_ref.layers.mlp import MLP
from geomp_ref.ops import activations, dense, geometry, normalization, radial

EPS = 2.0**-52
RTOL, ATOL = 1e-12, 1e-13
x_ = sp.Symbol("x", real=True)
d_ = sp.Symbol("d", positive=True)


# --- helpers -----------------------------------------------------------------------------------


def sym_array(name: str, shape) -> np.ndarray:
    n = int(np.prod(shape))
    flat = sp.symbols(f"{name}_0:{n}") if n else ()
    return np.array(flat, dtype=object).reshape(shape)


def vjp(out: np.ndarray, wrt: np.ndarray, cot: np.ndarray) -> np.ndarray:
    r""":math:`\partial \langle cot, out\rangle / \partial wrt` (same shape as ``wrt``)."""
    pairing = sum((o * c for o, c in zip(np.ravel(out), np.ravel(cot))), sp.Integer(0))
    return np.array([sp.diff(pairing, s) for s in np.ravel(wrt)], dtype=object).reshape(
        np.shape(wrt)
    )


def evaluate(expr, values: list) -> np.ndarray:
    """Evaluate an object array of expressions at ``[(symbol_array, numbers), ...]`` in float64."""
    syms, nums = [], []
    for s, v in values:
        syms.extend(np.ravel(s))
        nums.extend(np.ravel(np.asarray(v, dtype=np.float64)))
    fn = sp.lambdify(syms, list(np.ravel(expr)), modules="numpy", cse=True)
    return np.array(fn(*nums), dtype=np.float64).reshape(np.shape(expr))


def evaluate_many(exprs: list, values: list) -> list:
    """:func:`evaluate` for several expression arrays with a single lambdify."""
    sizes = [int(np.size(e)) for e in exprs]
    flat = np.concatenate([np.ravel(np.asarray(e, dtype=object)) for e in exprs])
    nums = evaluate(flat, values)
    out, k = [], 0
    for e, n in zip(exprs, sizes):
        out.append(nums[k : k + n].reshape(np.shape(e)))
        k += n
    return out


def reference(expr: sp.Expr, sym: sp.Symbol, at: float, digits: int = 50) -> float:
    """``expr`` at ``sym = at`` to ``digits`` significant digits, rounded to float64."""
    return float(sp.N(expr.subs(sym, sp.Float(at, digits)), digits))


def compare(name, got, want, failures, rtol=RTOL, atol=ATOL):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        failures.append(f"{name}: shape {got.shape} != expected {want.shape}")
        return
    err = np.abs(got - want)
    if not np.all(err <= atol + rtol * np.abs(want)):
        k = int(np.argmax(err - rtol * np.abs(want)))
        failures.append(
            f"{name}: |diff| {err.ravel()[k]:.3e} at flat index {k} "
            f"(got {got.ravel()[k]!r}, expected {want.ravel()[k]!r})"
        )


def sym_zero(name: str, expr, failures) -> None:
    if sp.simplify(expr) != 0:
        failures.append(f"{name}: does not simplify to 0: {sp.simplify(expr)}")


# --- derivations -------------------------------------------------------------------------------


def sigma(x):
    return 1 / (1 + sp.exp(-x))


#: The forward definitions, straight from the textbook (not from the code's stable forms).
ACTIVATIONS = {
    "silu": lambda x: x * sigma(x),
    "softplus": lambda x: sp.log(1 + sp.exp(x)),
    "shifted_softplus": lambda x: sp.log(1 + sp.exp(x)) - sp.log(2),
    "sigmoid": sigma,
    "tanh": sp.tanh,
    "relu": lambda x: sp.Max(x, 0),
    "identity": lambda x: x,
    # Phi(x) = erfc(-x / sqrt 2) / 2: the same function as (1 + erf(x / sqrt 2)) / 2, without the
    # cancellation of 1 + erf in the far negative tail (which ruins 50-digit references there)
    "gelu": lambda x: x * sp.erfc(-x / sp.sqrt(2)) / 2,
}

#: The closed-form derivatives the code implements (module table of activations.py).
CLAIMED_DERIVATIVES = {
    "silu": lambda x: sigma(x) * (1 + x * (1 - sigma(x))),
    "softplus": sigma,
    "shifted_softplus": sigma,
    "sigmoid": lambda x: sigma(x) * (1 - sigma(x)),
    "tanh": lambda x: 1 - sp.tanh(x) ** 2,
    "relu": lambda x: sp.Heaviside(x, 0),
    "identity": lambda x: sp.Integer(1),
    "gelu": lambda x: sp.erfc(-x / sp.sqrt(2)) / 2 + x * sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi),
}


def derive_linear(x: np.ndarray, W: np.ndarray, b) -> np.ndarray:
    """``y = x @ W + b`` on object arrays."""
    y = np.dot(x, W)
    return y if b is None else y + b


def derive_mlp(
    params: dict, x: np.ndarray, sizes, activation: str, activate_last: bool, bias
) -> np.ndarray:
    """The MLP's output expression, layer by layer (``z = h @ W + b``, ``h = act(z)``); ``bias``
    is a bool or one bool per layer."""
    act = np.vectorize(ACTIVATIONS[activation], otypes=[object])
    h = x
    L = len(sizes) - 1
    flags = tuple(bias) if isinstance(bias, tuple) else (bias,) * L
    for k in range(L):
        z = derive_linear(h, params[f"W{k}"], params[f"b{k}"] if flags[k] else None)
        h = act(z) if (k < L - 1 or activate_last) else z
    return h


def derive_activation_derivative(name: str) -> sp.Expr:
    """``f'(x)`` by differentiating the definition."""
    return sp.diff(ACTIVATIONS[name](x_), x_)


def derive_gaussian_rbf(d, mu, gamma) -> list:
    """``e_k = exp(-gamma (d - mu_k)^2)``."""
    return [sp.exp(-gamma * (d - m) ** 2) for m in mu]


def derive_bessel_rbf(d, num: int, cutoff) -> list:
    """``b_n = sqrt(2/c) sin(n pi d / c) / d``, n = 1..num."""
    return [sp.sqrt(2 / cutoff) * sp.sin(n * sp.pi * d / cutoff) / d for n in range(1, num + 1)]


def derive_bessel_series(order: int = 8):
    """Taylor series of ``sin(a d)/d`` and of its d-derivative around d = 0 (symbolic a)."""
    a = sp.Symbol("a", positive=True)
    val = sp.series(sp.sin(a * d_) / d_, d_, 0, order).removeO()
    der = sp.series(sp.diff(sp.sin(a * d_) / d_, d_), d_, 0, order - 1).removeO()
    return a, sp.expand(val), sp.expand(der)


def derive_cosine_cutoff(d, c):
    return (sp.cos(sp.pi * d / c) + 1) / 2


def derive_polynomial_cutoff(u, p):
    """DimeNet's envelope in ``u = d / c`` (for u < 1)."""
    return (
        1
        - (p + 1) * (p + 2) / 2 * u**p
        + p * (p + 2) * u ** (p + 1)
        - p * (p + 1) / 2 * u ** (p + 2)
    )


def derive_edge_length(v: np.ndarray) -> np.ndarray:
    return np.array([sp.sqrt(sum(r * r for r in row)) for row in v], dtype=object)


def derive_edge_sqlength(v: np.ndarray) -> np.ndarray:
    return np.array([sum(r * r for r in row) for row in v], dtype=object)


# --- checks ------------------------------------------------------------------------------------


def check_linear(rng: np.random.Generator) -> list:
    failures: list = []
    for with_b in (True, False):
        x = sym_array("x", (2, 3, 4))  # two leading batch dimensions
        W = sym_array("W", (4, 3))
        b = sym_array("b", (3,)) if with_b else None
        g = sym_array("grad_y", (2, 3, 3))
        y = derive_linear(x, W, b)
        xv, Wv, gv = (
            rng.standard_normal((2, 3, 4)),
            rng.standard_normal((4, 3)),
            rng.standard_normal((2, 3, 3)),
        )
        bv = rng.standard_normal(3) if with_b else None
        vals = [(x, xv), (W, Wv), (g, gv)] + ([(b, bv)] if with_b else [])
        compare(f"linear (bias={with_b})", dense.linear(xv, Wv, bv), evaluate(y, vals), failures)
        gx, gW, gb = dense.linear_vjp(xv, Wv, bv, gv)
        compare(f"linear_vjp grad_x (bias={with_b})", gx, evaluate(vjp(y, x, g), vals), failures)
        compare(f"linear_vjp grad_W (bias={with_b})", gW, evaluate(vjp(y, W, g), vals), failures)
        if with_b:
            compare("linear_vjp grad_b", gb, evaluate(vjp(y, b, g), vals), failures)
        elif gb is not None:
            failures.append("linear_vjp: grad_b must be None when b is None")
    return failures


def check_mlp(rng: np.random.Generator) -> list:
    failures: list = []
    sizes = (2, 3, 2)
    for activation, activate_last, bias in (
        ("silu", False, True),
        ("tanh", True, False),
        ("relu", False, True),
        ("shifted_softplus", True, True),
        ("silu", True, (True, False)),  # per-layer bias: EGNN's coordinate network
    ):
        mlp = MLP(sizes, activation, activate_last=activate_last, bias=bias)
        pv = mlp.init(rng)
        ps = {k: sym_array(k, v.shape) for k, v in pv.items()}
        x = sym_array("x", (2, sizes[0]))
        g = sym_array("grad_out", (2, sizes[-1]))
        xv, gv = rng.standard_normal((2, sizes[0])), rng.standard_normal((2, sizes[-1]))
        out = derive_mlp(ps, x, sizes, activation, activate_last, bias)
        vals = [(ps[k], pv[k]) for k in ps] + [(x, xv), (g, gv)]
        tag = f"MLP({activation}, activate_last={activate_last}, bias={bias})"
        # One pairing, one gradient per input, one lambdify for all of them.
        wrt = [x] + [ps[k] for k in ps]
        want = evaluate_many([out] + [vjp(out, s, g) for s in wrt], vals)
        y, cache = mlp.forward(pv, xv)
        compare(f"{tag} forward", y, want[0], failures)
        grads, (gx,) = mlp.backward(pv, cache, gv)
        compare(f"{tag} grad x", gx, want[1], failures)
        for k, w in zip(ps, want[2:]):
            compare(f"{tag} grad {k}", grads[k], w, failures)
        if set(grads) != set(ps):
            failures.append(f"{tag}: gradient keys {sorted(grads)} != param keys {sorted(ps)}")
    return failures


def check_activations(rng: np.random.Generator) -> list:
    failures: list = []
    points = [-40.0, -12.5, -3.0, -0.7, -1e-8, 1e-9, 0.4, 1.0, 1.5, 7.0, 19.0, 40.0]
    for name in activations.NAMES:
        if name in ("swish", "ssp"):  # aliases
            continue
        deriv = derive_activation_derivative(name)
        claimed = CLAIMED_DERIVATIVES[name](x_)
        if name == "relu":
            deriv = deriv.subs(sp.Heaviside(x_), sp.Heaviside(x_, 0))  # away from 0 they agree
        sym_zero(
            f"{name}: d/dx definition - closed form", (deriv - claimed).rewrite(sp.exp), failures
        )
        f, f_vjp = activations.get(name)
        defn = ACTIVATIONS[name](x_)
        for at in points:
            want_f = reference(defn, x_, at)
            want_d = reference(claimed, x_, at)
            # Values: full relative accuracy (a few ulp); derivatives: a few ulp of their O(1)
            # scale, since sigma(1 - sigma) and 1 - tanh^2 underflow their tiny tails to 0.
            compare(
                f"{name}({at})", f(np.array([at]))[0], want_f, failures, rtol=4 * EPS, atol=1e-300
            )
            compare(
                f"{name}_vjp({at})",
                f_vjp(np.array([at]), np.array([1.0]))[0],
                want_d,
                failures,
                rtol=4 * EPS,
                atol=EPS,
            )
    # relu's subgradient at 0 is 0; the cotangent is multiplied, not replaced.
    if activations.relu_vjp(np.array([0.0]), np.array([3.0]))[0] != 0.0:
        failures.append("relu_vjp(0): expected the subgradient 0")
    # softplus with torch's threshold: y = x above it, derivative 1.
    thr = 20.0
    pw = sp.Piecewise((x_, x_ > thr), (sp.log(1 + sp.exp(x_)), True))
    for at in (19.5, 20.5, 30.0):
        compare(
            f"softplus({at}, threshold=20)",
            activations.softplus(np.array([at]), thr)[0],
            reference(pw, x_, at),
            failures,
            rtol=4 * EPS,
            atol=0,
        )
        compare(
            f"softplus_vjp({at}, threshold=20)",
            activations.softplus_vjp(np.array([at]), np.array([1.0]), thr)[0],
            reference(sp.diff(pw, x_), x_, at),
            failures,
            rtol=4 * EPS,
            atol=EPS,
        )
    return failures


def check_ln2(rng: np.random.Generator) -> list:
    failures: list = []
    with mp.workprec(200):
        ln2 = mp.log(2)
        exact_double = float(ln2)  # mpmath rounds to nearest
        # float32 rounding by hand: ln 2 in [1/2, 1) has 24 significant bits -> step 2^-24.
        pyg = float(Fraction(int(mp.nint(ln2 * 2**24)), 2**24))
    if activations.LN2 != exact_double:
        failures.append(
            f"LN2 = {activations.LN2!r} is not ln 2 correctly rounded ({exact_double!r})"
        )
    if activations.LN2_PYG != pyg:
        failures.append(f"LN2_PYG = {activations.LN2_PYG!r} != round-to-float32(ln 2) = {pyg!r}")
    if Fraction(pyg) != Fraction(11629080, 2**24):
        failures.append(f"round-to-float32(ln 2) = {Fraction(pyg)} (expected 11629080 / 2^24)")
    if activations.shifted_softplus(np.array([0.0]))[0] != 0.0:
        failures.append("shifted_softplus(0) with the exact shift must be exactly 0")
    got = activations.shifted_softplus(np.array([0.0]), shift=activations.LN2_PYG)[0]
    compare(
        "shifted_softplus(0, shift=LN2_PYG)", got, exact_double - pyg, failures, rtol=0, atol=EPS
    )
    # Full relative accuracy of ssp near 0 (the point of log1p(expm1(x)/2)).
    ssp = ACTIVATIONS["shifted_softplus"](x_)
    for at in (1e-12, -3e-9, 2e-5):
        compare(
            f"shifted_softplus({at}) relative",
            activations.shifted_softplus(np.array([at]))[0],
            reference(ssp, x_, at),
            failures,
            rtol=4 * EPS,
            atol=0,
        )
    return failures


def check_gaussian(rng: np.random.Generator) -> list:
    failures: list = []
    mu, gamma = radial.gaussian_centers(0.0, 5.0, 6)
    delta = Fraction(5, 5)
    if not np.array_equal(mu, [float(Fraction(k) * delta) for k in range(6)]):
        failures.append(f"gaussian_centers mu = {mu}")
    if gamma != float(Fraction(1, 2) / delta**2):
        failures.append(f"gaussian_centers gamma = {gamma}, expected 1/(2 delta^2) = 0.5")
    d = sym_array("d", (4,))
    g = sym_array("grad_out", (4, 6))
    e = np.array([derive_gaussian_rbf(di, mu, gamma) for di in d], dtype=object)
    dv, gv = rng.uniform(0.1, 5.5, 4), rng.standard_normal((4, 6))
    vals = [(d, dv), (g, gv)]
    compare("gaussian_rbf", radial.gaussian_rbf(dv, mu, gamma), evaluate(e, vals), failures)
    compare(
        "gaussian_rbf_vjp",
        radial.gaussian_rbf_vjp(dv, mu, gamma, gv),
        evaluate(vjp(e, d, g), vals),
        failures,
    )
    return failures


def check_bessel(rng: np.random.Generator) -> list:
    failures: list = []
    num, c = 6, 5.0
    d = sym_array("d", (5,))
    g = sym_array("grad_out", (5, num))
    b = np.array([derive_bessel_rbf(di, num, sp.Float(c)) for di in d], dtype=object)
    dv, gv = rng.uniform(0.05 * c, 1.2 * c, 5), rng.standard_normal((5, num))
    vals = [(d, dv), (g, gv)]
    compare("bessel_rbf", radial.bessel_rbf(dv, num, c), evaluate(b, vals), failures)
    compare(
        "bessel_rbf_vjp",
        radial.bessel_rbf_vjp(dv, num, c, gv),
        evaluate(vjp(b, d, g), vals),
        failures,
    )
    return failures


def check_bessel_series(rng: np.random.Generator) -> list:
    """The d -> 0 branch: the series the code uses, its truncation at the switch, and its values."""
    failures: list = []
    a, val, der = derive_bessel_series()
    code_val = a * (1 - (a * d_) ** 2 / 6 + (a * d_) ** 4 / 120)
    code_der = a * (-(a**2) * d_ / 3 + a**4 * d_**3 / 30)
    sym_zero(
        "bessel series (value) up to d^4",
        sp.expand(val - code_val).coeff(d_, 0)
        + sp.expand(val - code_val).coeff(d_, 2)
        + sp.expand(val - code_val).coeff(d_, 4),
        failures,
    )
    sym_zero(
        "bessel series (derivative) up to d^3",
        sp.expand(der - code_der).coeff(d_, 1) + sp.expand(der - code_der).coeff(d_, 3),
        failures,
    )
    # First omitted terms, relative to the leading term, at the switch d = 1e-4 c, a = n pi / c:
    t_val = sp.expand(val - code_val).coeff(d_, 6) * d_**6 / a  # -(a d)^6 / 5040
    t_der = sp.expand(der - code_der).coeff(d_, 5) * d_**5 / (-(a**3) * d_ / 3)  # (a d)^4 / 280
    ad = sp.Symbol("ad")
    rel_val = sp.simplify(t_val.subs(d_, ad / a))
    rel_der = sp.simplify(t_der.subs(d_, ad / a))
    n_ok_val = max(
        n for n in range(1, 200) if abs(float(rel_val.subs(ad, n * math.pi * 1e-4))) < 2**-53
    )
    n_ok_der = [
        n for n in range(1, 200) if abs(float(rel_der.subs(ad, n * math.pi * 1e-4))) < 2**-53
    ]
    print(
        f"    value series: first omitted term {rel_val} (relative) < 2^-53 at the switch for n <= "
        f"{n_ok_val}; derivative series: {rel_der}, < 2^-53 for n <= {max(n_ok_der or [0])}"
    )
    if n_ok_val < 8:
        failures.append(
            f"bessel value series: truncation above an ulp already for n = {n_ok_val + 1}"
        )
    # Values on both sides of the switch against 50-digit references (num = 8).
    num, c = 8, 5.0
    for frac in (0.0, 1e-7, 5e-5, 0.99e-4, 1.01e-4, 1e-3):
        dv = frac * c
        got = radial.bessel_rbf(np.array([dv]), num, c)[0]
        for n in range(1, num + 1):
            e = (
                sp.sqrt(sp.Rational(2) / sp.Float(c, 50))
                * sp.sin(n * sp.pi * d_ / sp.Float(c, 50))
                / d_
            )
            want = (
                float(
                    sp.N(
                        sp.sqrt(sp.Rational(2) / sp.Float(c, 50)) * n * sp.pi / sp.Float(c, 50), 50
                    )
                )
                if dv == 0
                else reference(e, d_, dv)
            )
            compare(
                f"bessel_rbf(n={n}, d={frac:g} c)", got[n - 1], want, failures, rtol=4 * EPS, atol=0
            )
    return failures


def check_bessel_derivative_accuracy(rng: np.random.Generator) -> list:
    r"""``bessel_rbf_vjp`` near the switch vs 50-digit references.

    Tolerance from conditioning: evaluating :math:`b_n'` at a rounded d costs at most
    :math:`\epsilon (|b_n'| + d |b_n''|)`; we allow 16 times that (module docstring, section 4).
    """
    failures: list = []
    num, c = 8, 5.0
    for frac in (1e-7, 5e-5, 0.99e-4, 1.01e-4, 3e-4, 1e-3):
        dv = frac * c
        for n in range(1, num + 1):
            e = (
                sp.sqrt(sp.Rational(2) / sp.Float(c, 50))
                * sp.sin(n * sp.pi * d_ / sp.Float(c, 50))
                / d_
            )
            want = reference(sp.diff(e, d_), d_, dv)
            cond = abs(want) + dv * abs(reference(sp.diff(e, d_, 2), d_, dv))
            got = radial.bessel_rbf_vjp(np.array([dv]), num, c, np.eye(num)[n - 1][None])[0]
            compare(
                f"bessel_rbf_vjp(n={n}, d={frac:g} c)",
                got,
                want,
                failures,
                rtol=0,
                atol=16 * EPS * cond,
            )
    return failures


def check_cutoffs(rng: np.random.Generator) -> list:
    failures: list = []
    c_sym, p_sym, u = sp.Symbol("c", positive=True), sp.Symbol("p", positive=True), sp.Symbol("u")
    C = derive_cosine_cutoff(d_, c_sym)
    sym_zero("cosine cutoff C(c)", C.subs(d_, c_sym), failures)
    sym_zero("cosine cutoff C'(c)", sp.diff(C, d_).subs(d_, c_sym), failures)
    P = derive_polynomial_cutoff(u, p_sym)
    for k in range(3):
        sym_zero(
            f"polynomial cutoff C^({k})(u=1), symbolic p", sp.diff(P, u, k).subs(u, 1), failures
        )
    sym_zero("polynomial cutoff C(0) - 1", P.subs(u, 0).subs(p_sym, 3) - 1, failures)
    c = 5.0
    dv = np.concatenate([rng.uniform(0.0, c, 6), [c * (1 - 1e-12), c, c * 1.3]])
    gv = rng.standard_normal(dv.shape)
    dsym = sym_array("d", dv.shape)
    g = sym_array("grad_out", dv.shape)
    inside = dv < c
    Cc = np.array([derive_cosine_cutoff(x, sp.Float(c)) for x in dsym], dtype=object)
    want = np.where(inside, evaluate(Cc, [(dsym, dv)]), 0.0)
    compare("cosine_cutoff", radial.cosine_cutoff(dv, c), want, failures)
    want = np.where(inside, evaluate(vjp(Cc, dsym, g), [(dsym, dv), (g, gv)]), 0.0)
    compare("cosine_cutoff_vjp", radial.cosine_cutoff_vjp(dv, c, gv), want, failures)
    for p in (3, 5, 6):
        Pc = np.array(
            [derive_polynomial_cutoff(x / sp.Float(c), sp.Integer(p)) for x in dsym], dtype=object
        )
        want = np.where(inside, evaluate(Pc, [(dsym, dv)]), 0.0)
        compare(f"polynomial_cutoff(p={p})", radial.polynomial_cutoff(dv, c, p), want, failures)
        want = np.where(inside, evaluate(vjp(Pc, dsym, g), [(dsym, dv), (g, gv)]), 0.0)
        compare(
            f"polynomial_cutoff_vjp(p={p})",
            radial.polynomial_cutoff_vjp(dv, c, gv, p),
            want,
            failures,
        )
    return failures


def check_edge_lengths(rng: np.random.Generator) -> list:
    failures: list = []
    v = sym_array("edge_vec", (4, 3))
    g = sym_array("grad_d", (4,))
    vv, gv = rng.standard_normal((4, 3)), rng.standard_normal(4)
    vals = [(v, vv), (g, gv)]
    dl = derive_edge_length(v)
    sl = derive_edge_sqlength(v)
    compare("edge_length", geometry.edge_length(vv), evaluate(dl, vals), failures)
    compare(
        "edge_length_vjp", geometry.edge_length_vjp(vv, gv), evaluate(vjp(dl, v, g), vals), failures
    )
    compare("edge_sqlength", geometry.edge_sqlength(vv), evaluate(sl, vals), failures)
    compare(
        "edge_sqlength_vjp",
        geometry.edge_sqlength_vjp(vv, gv),
        evaluate(vjp(sl, v, g), vals),
        failures,
    )
    # At v = 0 the length has no derivative: raise, naming the input.
    try:
        geometry.edge_length(np.zeros((1, 3)), name="pos")
        failures.append("edge_length(0) did not raise")
    except ValueError as exc:
        if "pos" not in str(exc):
            failures.append(f"edge_length(0) error does not name the input: {exc}")
    # Scaled evaluation: 1e200 and 1e-200 components give the exact scaled length and unit vector
    # (the naive sqrt(sum v^2) overflows to inf / underflows to 0 there).
    for scale in (1e200, 1e-200):
        with mp.workdps(50):
            want = [float(mp.sqrt(sum(mp.mpf(float(c)) ** 2 for c in row)) * mp.mpf(scale))
                    for row in vv]
        compare(f"edge_length(v * {scale:g})", geometry.edge_length(vv * scale), want, failures)
        compare(f"edge_length_vjp(v * {scale:g})", geometry.edge_length_vjp(vv * scale, gv),
                geometry.edge_length_vjp(vv, gv), failures)
    return failures


def derive_layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps) -> np.ndarray:
    """Rows of ``x`` (R, C) normalised as written in section 6 (object arrays, symbolic)."""
    out = np.empty(x.shape, dtype=object)
    c = x.shape[1]
    for i in range(x.shape[0]):
        mu = sum(x[i], sp.Integer(0)) / c
        var = sum(((xc - mu) ** 2 for xc in x[i]), sp.Integer(0)) / c
        r = 1 / sp.sqrt(var + eps)
        for k in range(c):
            out[i, k] = (x[i, k] - mu) * r * gamma[k] + beta[k]
    return out


def check_layer_norm(rng: np.random.Generator) -> list:
    failures: list = []
    eps = sp.Symbol("epsilon", positive=True)
    x, gamma, beta = sym_array("x", (2, 3)), sym_array("gamma", (3,)), sym_array("beta", (3,))
    g = sym_array("grad_y", (2, 3))
    y = derive_layer_norm(x, gamma, beta, eps)
    # the closed form of grad_x against SymPy's derivative, symbolically (one row, C = 3)
    row = x[0]
    mu = sum(row, sp.Integer(0)) / 3
    r = 1 / sp.sqrt(sum(((v - mu) ** 2 for v in row), sp.Integer(0)) / 3 + eps)
    xh = [(v - mu) * r for v in row]
    gh = [g[0, k] * gamma[k] for k in range(3)]
    m1 = sum(gh, sp.Integer(0)) / 3
    m2 = sum((a * b for a, b in zip(gh, xh)), sp.Integer(0)) / 3
    want = vjp(y, x, g)[0]
    for k in range(3):
        sym_zero(f"layer_norm grad_x[{k}] closed form", want[k] - r * (gh[k] - m1 - xh[k] * m2),
                 failures)
    for e in (1e-5, 0.25):
        xv = rng.standard_normal((2, 3)) * 2.0 + 0.7
        gav, bev, gv = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal((2, 3))
        vals = [(x, xv), (gamma, gav), (beta, bev), (g, gv), (np.array([eps], dtype=object),
                                                              np.array([e]))]
        compare(f"layer_norm (eps={e})", normalization.layer_norm(xv, gav, bev, eps=e),
                evaluate(y, vals), failures)
        got = normalization.layer_norm_vjp(xv, gav, bev, gv, eps=e)
        for name, sym, val in (("x", x, got[0]), ("gamma", gamma, got[1]), ("beta", beta, got[2])):
            compare(f"layer_norm_vjp grad_{name} (eps={e})", val, evaluate(vjp(y, sym, g), vals),
                    failures)
    return failures


CHECKS = (
    check_linear,
    check_mlp,
    check_activations,
    check_ln2,
    check_gaussian,
    check_bessel,
    check_bessel_series,
    check_bessel_derivative_accuracy,
    check_cutoffs,
    check_edge_lengths,
    check_layer_norm,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (the default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    failures = []
    for check in CHECKS:
        found = check(rng)
        print(f"{check.__name__:34s} {'ok' if not found else 'FAILED'}")
        failures.extend(found)
    for msg in failures:
        print("MISMATCH:", msg)
    print(f"{'OK' if not failures else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
