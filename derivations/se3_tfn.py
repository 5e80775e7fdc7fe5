r"""Lesson 7: the SE(3)-Transformer code's TFN layer (SE3Conv, SE3NormNonlinearity) by SymPy.

``geomp_ref/layers/se3_tfn.py`` is the TFN baseline of the EGNN paper: a convolution whose
kernel sums over *every* coupled degree J, radial networks with layer normalisation on the raw
distance, a self-interaction added to each message before a mean, and a nonlinearity acting on
norms. This lesson derives its kernels for degrees 0 and 1, shows why it is SE(3)- but not
O(3)-equivariant, and checks both backward passes against SymPy.

1. The kernel. For input degree l, output degree k and d = x_i - x_j (receiver minus sender),
   u = d/|d|, the basis is K^{lk}_J(u)_{ab} = (4 pi)^{-1/2} sum_M C^{(k,l,J)}_{abM} Y_{JM}(u),
   |l - k| <= J <= l + k, with C the unit-norm real Clebsch-Gordan tensor and Y_J the
   component-normalised harmonic (|Y_J|^2 = 2J + 1). With C^{(1,0,1)}_{a0M} =
   C^{(0,1,1)}_{0aM} = delta_aM/sqrt3, C^{110}_{ab0} = delta_ab/sqrt3, C^{111} = epsilon/sqrt6,
   Y^0 = 1 and Y^1 = sqrt3 u:

       K^{00}_0 = 1/sqrt(4 pi),     K^{01}_1 = u/sqrt(4 pi) (a column),  K^{10}_1 = u^T/sqrt(4 pi),
       K^{11}_0 = I/sqrt(12 pi),    K^{11}_1 v = (v x u)/sqrt(8 pi),
       K^{11}_2 = sqrt(3/2) (u u^T - I/3)/sqrt(4 pi).

   Y^2 is the traceless symmetric part of u (x) u read off the same table,
   Y^2_M = c sum_ab C^{112}_{abM} u_a u_b with c > 0 fixed by |Y^2|^2 = 5, and C^{112} projects
   back onto that part: hence the last line. Every K_J has Frobenius norm 1/sqrt(4 pi), since
   sum_ab C_abM C_abM' = delta_MM'/(2J + 1) and |Y_J|^2 = 2J + 1. The checks are polynomial
   identities in a free symbolic u (the trace term written with |u|^2 so both sides have degree
   J), then ``kernel_basis`` at random directions, its VJP as its adjoint (the basis is linear in
   Y, so K-bar -> Y-bar is the same table transposed), and K(R u) = D^k(R) K(u) D^l(R)^T.
2. Parity. Under x -> -x, u -> -u and Y_J(-u) = (-1)^J Y_J(u), and a degree-l feature changes
   by (-1)^l. The term R_J K_J(u) f^l then changes by (-1)^(J + l) where the output needs
   (-1)^k: a path is O(3)-equivariant iff J + l + k is even, and for l, k <= 1 the only
   exception is K^{11}_1, the cross product (v x u is a pseudovector). So the reflected input
   gives the output of the same layer with R^{11}_1 negated (checked; without the flip it fails).
3. The SE3Conv backward, in reverse line order of f'^k_i = [deg i > 0] (mean_{j->i} m^k_ij +
   S^k f^k_i) with m^k_ij = sum_{l,J} R^{lk}_J(r_ij) K^{lk}_J(u_ij) f^l_j, g = cotangent of f':
   - self term: S-bar^k = sum_i [deg i > 0] g^k_i (f^k_i)^T and f-bar^k_i += [deg i > 0] S^T g^k_i;
   - mean: m-bar_ij = g_i / deg i, a gather at the receivers. A node without incoming edges
     outputs 0, self term included (the published code adds S f_i to each message), so its own
     cotangent is dropped, while its position and features still reach the nodes it sends to;
   - m = sum R B with B_J = K_J f_j: R-bar = m-bar B^T, B-bar = R^T m-bar, K-bar_J = B-bar f_j^T,
     and f-bar_j += K_J^T B-bar, a sum at the senders;
   - K-bar -> Y-bar through the CG table, Y-bar -> d-bar through the harmonics' VJP (the
     direction's derivative is (I - u u^T)/r); the radial network R(r) = W3 relu(LN2(W2
     relu(LN1(W1 r + b1)) + b2)) + b3 backwards gives r-bar (LN's VJP:
     derivations/dense_activations.py) and d-bar += r-bar u; then x-bar_i += d-bar and
     x-bar_j -= d-bar.
4. The norm nonlinearity, per degree over its channels c: n_c = max(|f_c|, eps),
   t = W relu(LN(n)) + b, f'_c = t_c f_c/n_c. With L = sum_c <g_c, f'_c> = sum_c t_c s_c,
   s_c = g_c . f_c / n_c (the cotangent of the gate t_c), n-bar the VJP of t(n) applied to s,
   and d n_c/d f_c = [|f_c| >= eps] f_c/|f_c|:

       f-bar_c = t_c g_c / n_c + [|f_c| >= eps] (n-bar_c - t_c s_c / n_c) f_c/|f_c|.

   The -t_c s_c/n_c term is the phase's own normalisation: with it the terms in g make
   (t_c/n_c)(I - f f^T/|f|^2) g_c, orthogonal to f_c (stretching f_c leaves f_c/|f_c| alone).
   Dropping it gives the gradient with n held fixed; a counter-example shows it is wrong.

How the SymPy checks are built. The layer (channels (1,1) -> (1,1), radial width 3,
self-interaction) is written on a 3-node graph with edges 1->0, 2->0, 0->1 (node 2 receives
nothing) from the closed forms of part 1, every number the library's float converted exactly.
L = <cot, out> is differentiated in one block of variables at a time (positions; features;
self-interaction; W3, b3 of each of the four radial networks; layers 1 and 2 of the (1,1)
network), the others held at their values: a partial derivative at a point is the same
whether the other variables are symbols or numbers, and it keeps each expression small.
Two blocks would still copy a whole network into every derivative, so there the network (for
the positions: all of R(r); for layer 1: the layers after it, a function of s1) enters as a
SymPy function whose partial derivatives are SymPy's derivatives of its body: SymPy's own
chain rule runs through it. Layer norm uses eps = 1/10^5 exactly. ReLU is piecewise linear:
at a point where no pre-activation is 0 it is, nearby, the linear map "multiply by the 0/1
active mask", with the same derivative there; the mask is read off the *symbolic*
pre-activations evaluated at the point, and a point within 1e-3 of a kink is refused. Values
are evaluated at 30 digits and compared with ``SE3Conv.backward`` (relative error <= 1e-10);
every compared library gradient must be non-zero somewhere (no vacuous comparisons). The same
for ``SE3NormNonlinearity`` with channels (2, 2), all inputs and parameters symbolic, on one
generic row, one whose two norms per degree differ by 0.3 % (LN over two numbers is otherwise
nearly constant: (n0 - n1)/sqrt((n0 - n1)^2 + 4 eps) up to sign) and one with a zero vector,
where n is the constant eps nearby and f-bar = t g/eps.

Run ``python3 derivations/se3_tfn.py --check`` (default): exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import sympy as sp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from geomp_ref import o3
from geomp_ref.graph import make_graph
from geomp_ref.layers.se3_tfn import (
    SE3Conv,
    SE3NormNonlinearity,
    kernel_basis,
    kernel_basis_vjp,
)
from geomp_ref.o3.wigner import exact_coupling

TOL = 1e-10  # SymPy vs the library's backward
TOL_NUM = 1e-12  # float identities (kernel forms, adjoint, equivariance)
COUNTER = 1e-3  # a counter-example must be at least this wrong
LN_EPS = sp.Rational(1, 10**5)
NORM_EPS = sp.Rational(1, 10**12)
DIGITS = 30
KINK_MARGIN = 1e-3
SQ4PI = sp.sqrt(4 * sp.pi)


# --- part 1: the kernel basis, exactly -----------------------------------------------------------


def cg(k: int, l: int, J: int) -> sp.Array:
    """The exact coupling tensor C^{(k, l, J)} as a dense SymPy array (2k+1, 2l+1, 2J+1)."""
    C = sp.MutableDenseNDimArray.zeros(2 * k + 1, 2 * l + 1, 2 * J + 1)
    for (a, b, M), v in exact_coupling(k, l, J).items():
        C[a, b, M] = v
    return C


def harmonic(J: int, u) -> list:
    r"""Component-normalised Y_J(u) for a unit u, as a homogeneous polynomial of degree J:
    Y^0 = 1, Y^1 = sqrt3 u, Y^2 = c C^{112}:(u u) with c > 0 and |Y^2|^2 = 5 |u|^4."""
    if J == 0:
        return [sp.Integer(1)]
    if J == 1:
        return [sp.sqrt(3) * c for c in u]
    C = cg(1, 1, 2)
    q = [sp.expand(sum(C[a, b, M] * u[a] * u[b] for a in range(3) for b in range(3)))
         for M in range(5)]
    ratio = sp.simplify(sp.expand(sum(t * t for t in q)) / sp.expand(sum(c * c for c in u)) ** 2)
    assert ratio.is_number and ratio > 0, ratio  # C^112:(u u) has a fixed length on the sphere
    return [sp.sqrt(5 / ratio) * t for t in q]


def kernel_from_cg(l: int, k: int, u) -> list:
    """[K_J for J = |l-k|..l+k] as SymPy matrices (2k+1, 2l+1), from the definition."""
    out = []
    for J in range(abs(l - k), l + k + 1):
        C, Y = cg(k, l, J), harmonic(J, u)
        out.append(sp.Matrix([[sp.expand(sum(C[a, b, M] * Y[M] for M in range(2 * J + 1)) / SQ4PI)
                               for b in range(2 * l + 1)] for a in range(2 * k + 1)]))
    return out


def kernel_closed(l: int, k: int, u, n2=1) -> list:
    """The lesson's closed forms. Leave ``n2 = 1`` for a unit u; with ``n2 = |u|^2`` each form
    is homogeneous of degree J, like its definition, so the two compare as polynomials."""
    uc = sp.Matrix(u)
    if (l, k) == (0, 0):
        return [sp.Matrix([[1 / SQ4PI]])]
    if (l, k) == (0, 1):
        return [uc / SQ4PI]
    if (l, k) == (1, 0):
        return [uc.T / SQ4PI]
    cross = sp.Matrix([[0, u[2], -u[1]], [-u[2], 0, u[0]], [u[1], -u[0], 0]])  # v -> v x u
    return [sp.eye(3) / sp.sqrt(12 * sp.pi), cross / sp.sqrt(8 * sp.pi),
            sp.sqrt(sp.Rational(3, 2)) * (uc * uc.T - sp.eye(3) * n2 / 3) / SQ4PI]


def check_kernel_symbolic() -> dict:
    """Each closed form equals the CG definition, as a polynomial identity in a free u."""
    u = sp.symbols("u_x u_y u_z", real=True)
    x, y, z = u
    n2 = x * x + y * y + z * z
    res = {}
    e3nn_Y2 = [sp.sqrt(15) * x * z, sp.sqrt(15) * x * y, sp.sqrt(5) * (y**2 - (x**2 + z**2) / 2),
               sp.sqrt(15) * y * z, sp.sqrt(15) / 2 * (z**2 - x**2)]
    Y2 = harmonic(2, u)
    res["Y^2 = c C^112:(u u) is e3nn's sqrt15 xz, sqrt15 xy, ..."] = all(
        sp.expand(a - b) == 0 for a, b in zip(Y2, e3nn_Y2))
    res["|Y^2|^2 = 5 |u|^4"] = sp.expand(sum(t * t for t in Y2) - 5 * n2**2) == 0
    for l in (0, 1):
        for k in (0, 1):
            got, want = kernel_from_cg(l, k, u), kernel_closed(l, k, u, n2)
            res[f"K^{l}{k}_J from C^(k,l,J) and Y_J = the closed forms"] = all(
                sp.expand(g - w) == sp.zeros(*g.shape) for g, w in zip(got, want))
    K0, K1, K2 = kernel_from_cg(1, 1, u)
    v = sp.Matrix(sp.symbols("v_x v_y v_z", real=True))
    res["K^11_1 v = (v x u)/sqrt(8 pi)"] = sp.expand(
        K1 * v - v.cross(sp.Matrix(u)) / sp.sqrt(8 * sp.pi)) == sp.zeros(3, 1)
    res["K^11_2 symmetric, traceless"] = (sp.expand(K2 - K2.T) == sp.zeros(3, 3)
                                         and sp.expand(K2.trace()) == 0)
    res["|K^11_J|_F^2 = |u|^(2J)/(4 pi), J = 0, 1, 2"] = all(
        sp.simplify(sp.expand(sum(t * t for t in K)) - n2**J / (4 * sp.pi)) == 0
        for J, K in enumerate((K0, K1, K2)))
    return res


def check_kernel_numeric(rng) -> dict:
    """``kernel_basis`` against the closed forms at random directions; its VJP as its adjoint;
    the rotation law (D^0 = 1, D^1 = R in this basis); the parity of each J."""
    d = rng.normal(size=(6, 3))
    u = d / np.linalg.norm(d, axis=1, keepdims=True)
    Y = o3.edge_harmonics(2, d, "component")
    us = sp.symbols("a b c")
    res = {}
    err = 0.0
    for l in (0, 1):
        for k in (0, 1):
            f = sp.lambdify(us, kernel_closed(l, k, us), "numpy")
            want = np.stack([np.stack([np.asarray(m, dtype=float) for m in f(*row)])
                             for row in u])
            err = max(err, float(np.max(np.abs(kernel_basis(Y, l, k) - want))))
    res["kernel_basis = the closed forms, l, k <= 1"] = (err, err <= TOL_NUM)
    err = 0.0
    for l in (0, 1):
        for k in (0, 1):
            K = kernel_basis(Y, l, k)
            G = rng.normal(size=K.shape)
            lhs, rhs = np.sum(K * G), np.sum(Y * kernel_basis_vjp(G, l, k, 2))
            err = max(err, abs(lhs - rhs) / abs(lhs))
    res["<kernel_basis(Y), G> = <Y, kernel_basis_vjp(G)>"] = (err, err <= TOL_NUM)
    R = o3.random_rotation(rng)
    YR = o3.edge_harmonics(2, d @ R.T, "component")
    D = {0: np.eye(1), 1: R}
    err = 0.0
    for l in (0, 1):
        for k in (0, 1):
            lhs = kernel_basis(YR, l, k)
            rhs = np.einsum("ka,efab,lb->efkl", D[k], kernel_basis(Y, l, k), D[l])
            err = max(err, float(np.max(np.abs(lhs - rhs))))
    res["K(R u) = D^k(R) K(u) D^l(R)^T"] = (err, err <= TOL_NUM)
    K, Km = kernel_basis(Y, 1, 1), kernel_basis(o3.edge_harmonics(2, -d, "component"), 1, 1)
    err = max(float(np.max(np.abs(Km[:, J] - (-1) ** J * K[:, J]))) for J in range(3))
    res["K^11_J(-u) = (-1)^J K^11_J(u)"] = (err, err <= TOL_NUM)
    return res


# --- part 2: the reflection (numeric, with the library) -----------------------------------------


def rel(got, want) -> float:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    diff = float(np.max(np.abs(got - want)))
    scale = float(np.max(np.abs(want)))
    return diff / scale if scale > 0 else diff


def check_parity(rng) -> dict:
    lay = SE3Conv((1, 1), (1, 1), self_interaction=True, radial_hidden=8)
    params = lay.init(rng)
    graph = make_graph(np.array([[1, 2, 3, 0, 2, 3, 0, 1], [0, 0, 0, 1, 1, 2, 3, 3]]), 4)
    pos, f = rng.normal(size=(4, 3)), rng.normal(size=(4, lay.dim_in))
    odd = np.array([1.0, -1.0, -1.0, -1.0])  # degree 0 even, degree 1 odd
    out, _ = lay.forward(params, graph, f, pos)
    res = {}
    R = o3.random_rotation(rng)

    def rot(a):
        return np.concatenate([a[:, :1], a[:, 1:] @ R.T], axis=1)

    got, _ = lay.forward(params, graph, rot(f), pos @ R.T + rng.normal(size=3))
    e = rel(got, rot(out))
    res["SE(3): rotation + translation, out(g x) = g out(x)"] = (e, e <= TOL_NUM)
    r11 = params["radial"]["1,1"]
    e = float(np.max(np.abs(r11["W3"][:, 1])))
    res["the (1,1) network's J = 1 weights are non-zero"] = (e, e > 0.1)
    got, _ = lay.forward(params, graph, f * odd, -pos)
    e = rel(got, out * odd)
    res["counter-example: inversion, out(-x) != -out(x) (error > 1e-3)"] = (e, e > COUNTER)
    sign = np.array([1.0, -1.0, 1.0])  # negates R^{11}_1: outputs ordered (o, i, J)
    flipped = {"radial": {**params["radial"], "1,1": {**r11, "W3": r11["W3"] * sign,
                                                        "b3": r11["b3"] * sign}},
               "self": params["self"]}
    got, _ = lay.forward(flipped, graph, f * odd, -pos)
    e = rel(got, out * odd)
    res["inversion = the same layer with R^11_1 negated"] = (e, e <= TOL_NUM)
    return res


# --- symbolic helpers ---------------------------------------------------------------------------


class Point:
    """The symbols of one check and the numbers they stand for (floats converted exactly)."""

    def __init__(self):
        self.syms: list = []
        self.at: dict = {}

    def array(self, name: str, values: np.ndarray, symbolic: bool = True) -> np.ndarray:
        """Symbols for ``values``, or (not ``symbolic``) the values as exact 30-digit Floats."""
        out = np.empty(values.shape, dtype=object)
        for idx in np.ndindex(values.shape):
            value = sp.Float(float(values[idx]), DIGITS)
            if symbolic:
                out[idx] = sp.Symbol(name + "".join(f"_{i}" for i in idx))
                self.syms.append(out[idx])
                self.at[out[idx]] = value
            else:
                out[idx] = value
        return out

    def value(self, expr) -> float:
        return float(sp.N(sp.sympify(expr).xreplace(self.at), DIGITS))

    def relu(self, exprs) -> list:
        """ReLU near this point: the active mask read off the evaluated pre-activations."""
        out = []
        for e in exprs:
            v = self.value(e)
            if abs(v) < KINK_MARGIN:
                raise ValueError(f"a pre-activation is {v:.1e}, within {KINK_MARGIN} of the "
                                 "ReLU kink: choose another point")
            out.append(e if v > 0 else sp.Integer(0))
        return out


def sym_layer_norm(x: list, gamma, beta) -> list:
    c = len(x)
    mu = sum(x, sp.Integer(0)) / c
    var = sum(((v - mu) ** 2 for v in x), sp.Integer(0)) / c
    r = 1 / sp.sqrt(var + LN_EPS)
    return [(v - mu) * r * gamma[h] + beta[h] for h, v in enumerate(x)]


def sym_dense(x: list, W, b) -> list:
    """y = x @ W + b, W stored (in, out)."""
    return [sum((x[i] * W[i, o] for i in range(len(x))), sp.Integer(0)) + b[o]
            for o in range(W.shape[1])]


def sym_layer1(p: dict, r, pt: Point) -> list:
    """s1 = relu(LN1(W1 r + b1))."""
    return pt.relu(sym_layer_norm(sym_dense([r], p["W1"], p["b1"]), p["ln1_gamma"],
                                  p["ln1_beta"]))


def sym_rest(p: dict, s1: list, pt: Point) -> list:
    """R = W3 relu(LN2(W2 s1 + b2)) + b3, the outputs ordered (o, i, J)."""
    s2 = pt.relu(sym_layer_norm(sym_dense(s1, p["W2"], p["b2"]), p["ln2_gamma"], p["ln2_beta"]))
    return sym_dense(s2, p["W3"], p["b3"])


def sym_radial(p: dict, r, pt: Point) -> list:
    return sym_rest(p, sym_layer1(p, r, pt), pt)


def opaque_function(name: str, expr, args: list):
    """``expr`` (in the symbols ``args``) as a SymPy function F whose partial derivatives are
    SymPy's derivatives of ``expr``: SymPy's chain rule runs through F(g(x)) itself, and F's
    body is evaluated (at 30 digits) only where a number is needed."""

    def numeric(e):
        return staticmethod(lambda *t: sp.N(e.xreplace(
            {a: sp.Float(v, DIGITS) for a, v in zip(args, t)}), DIGITS))

    n = len(args)
    partials = [type(f"{name}_d{q}", (sp.Function,),
                     {"nargs": n, "_imp_": numeric(sp.diff(expr, a))}) for q, a in enumerate(args)]

    def fdiff(self, argindex=1):
        return partials[argindex - 1](*self.args)

    return type(name, (sp.Function,), {"nargs": n, "fdiff": fdiff, "_imp_": numeric(expr)})


def opaque_network(name: str, body, inputs: list, pt: Point, memo: dict) -> list:
    """[F_J(inputs)] with F = ``body`` (a function of a list of symbols, built at the inputs'
    values: that is where its ReLU masks are read) made opaque. Equal input values share F."""
    values = tuple(sp.Float(pt.value(x), DIGITS) for x in inputs)
    if (name, values) not in memo:
        args = sp.symbols(f"{name}_in_{len(memo)}_0:{len(inputs)}")
        pt.at.update(zip(args, values))
        memo[name, values] = [opaque_function(f"{name}_{len(memo)}_{J}", y, list(args))
                              for J, y in enumerate(body(list(args)))]
    return [F(*inputs) for F in memo[name, values]]


def gradient(parts: list, cot: np.ndarray, pt: Point) -> dict:
    """SymPy's dL/ds at the point for every symbol s of ``pt``, L = sum_i <cot_i, out_i> with
    out_i the sum of node i's summands in ``parts``."""
    L = sum((sp.Rational(float(cot[i, c])) * t for i, row in parts for c, t in enumerate(row)),
            sp.Integer(0))
    return {s: pt.value(sp.diff(L, s)) for s in pt.syms}


# --- part 3: SE3Conv's backward ------------------------------------------------------------------

EDGES = np.array([[1, 2, 0], [0, 0, 1]])  # senders j, receivers i: 1->0, 2->0, 0->1
LAYERS = {1: ("W1", "b1", "ln1_gamma", "ln1_beta"), 2: ("W2", "b2", "ln2_gamma", "ln2_beta"),
          3: ("W3", "b3")}
#: the blocks of variables differentiated together, the rest held at their values: positions,
#: features, self-interaction, the last layer of every radial network (it carries that pair's
#: (o, i, J) layout) and the full depth of the (1,1) one (the four networks are one function)
BLOCKS = ("x", "f", "self", ("0,0", 3), ("0,1", 3), ("1,0", 3), ("1,1", 3), ("1,1", 2),
          ("1,1", 1))


def sym_conv(radial, P, F, S) -> list:
    """The layer for channels (1,1) -> (1,1) from the lesson's equations, as its summands.

    ``radial(l, k, r, e)`` gives [R_J] of pair l,k on edge e at distance r; ``S`` is the
    self-interaction {"0": (1,1), "1": (1,1)}. Returns ``[(i, [4 expressions]), ...]``: one
    entry per (edge j -> i, pair l,k), the message divided by deg i, and one self term per node
    with incoming edges. Node i's row ``[s, v_x, v_y, v_z]`` is the sum of its entries; node 2
    has none: its output is 0, self term included.
    """
    deg = np.bincount(EDGES[1], minlength=len(P))
    feat = [{0: sp.Matrix([[F[i, 0]]]), 1: sp.Matrix(F[i, 1:4])} for i in range(len(P))]
    parts = []
    for e, (j, i) in enumerate(EDGES.T):
        d = [P[i, c] - P[j, c] for c in range(3)]  # x_i - x_j, the published x_dst - x_src
        r = sp.sqrt(sum(c * c for c in d))
        u = [c / r for c in d]
        for l in (0, 1):
            for k in (0, 1):
                m = sp.zeros(2 * k + 1, 1)
                for R_J, K_J in zip(radial(l, k, r, e), kernel_closed(l, k, u)):
                    m += R_J * (K_J * feat[j][l])
                row = [sp.Integer(0)] * 4
                row[k:k + 2 * k + 1] = [t / int(deg[i]) for t in m]  # degree k from column k
                parts.append((i, row))
    for i in np.flatnonzero(deg):
        parts.append((i, [S["0"][0, 0] * F[i, 0]] + [S["1"][0, 0] * F[i, c] for c in (1, 2, 3)]))
    return parts


def conv_block(params, pos, f, cot, block):
    """SymPy's partial gradient of L = <cot, out> in one block of variables, and out."""
    pt = Point()
    P, F = pt.array("x", pos, block == "x"), pt.array("f", f, block == "f")
    S = {k: pt.array(f"S{k}", v, block == "self") for k, v in params["self"].items()}
    prm = {key: {nm: pt.array(f"R{key[0]}{key[2]}_{nm}", p[nm], block == (key, layer))
                 for layer, names in LAYERS.items() for nm in names}
           for key, p in params["radial"].items()}

    memo: dict = {}

    def radial(l, k, r, e):
        key = f"{l},{k}"
        p = prm[key]
        if block == "x":  # the whole network as a function of r
            return opaque_network(f"R{l}{k}", lambda a: sym_radial(p, a[0], pt), [r], pt, memo)
        if block == (key, 1):  # layer 1 symbolic, the layers after it a function of its output
            return opaque_network(f"Rest{l}{k}", lambda a: sym_rest(p, a, pt),
                                  sym_layer1(p, r, pt), pt, memo)
        return sym_radial(p, r, pt)  # r is a number

    parts = sym_conv(radial, P, F, S)
    out = np.zeros(cot.shape)
    for i, row in parts:
        out[i] += [pt.value(t) for t in row]
    grad = gradient(parts, cot, pt)
    if block in ("x", "f", "self"):
        arrays = {"x": {"x": P}, "f": {"f": F}, "self": S}[block]
    else:
        arrays = {nm: prm[block[0]][nm] for nm in LAYERS[block[1]]}
    return out, {nm: np.array([grad[s] for s in a.ravel()]).reshape(a.shape)
                 for nm, a in arrays.items()}


def check_conv(rng) -> dict:
    lay = SE3Conv((1, 1), (1, 1), self_interaction=True, radial_hidden=3)
    params = lay.init(rng)
    for p in params["radial"].values():  # generic layer norms (init: scale 1, shift 0)
        for name in ("ln1_gamma", "ln2_gamma"):
            p[name] = 1.0 + 0.3 * rng.normal(size=3)
        for name in ("ln1_beta", "ln2_beta"):
            p[name] = 0.4 + 0.3 * rng.normal(size=3)  # units on as well as off
    while True:  # a point at least 1e-2 from every ReLU kink (radial caches: a1 = [2], a2 = [5])
        pos, f = rng.normal(size=(3, 3)), rng.normal(size=(3, lay.dim_in))
        out, cache = lay.forward(params, make_graph(EDGES, 3), f, pos)
        if min(np.min(np.abs(c[0][n])) for c in cache.pairs.values() for n in (2, 5)) > 1e-2:
            break
    cot = rng.normal(size=out.shape)
    grads, (g_f, g_pos) = lay.backward(params, cache, cot)
    res = {"node 2 (no incoming edge) outputs exactly 0": (
        float(np.max(np.abs(out[2]))), not np.any(out[2]))}
    pre = np.concatenate([c[0][n].ravel() for c in cache.pairs.values() for n in (2, 5)])
    res[f"ReLU: {np.sum(pre > 0)} units on, {np.sum(pre < 0)} off; min |pre-activation|"] = (
        float(np.min(np.abs(pre))), bool(np.any(pre > 0) and np.any(pre < 0)))
    vacuous, fwd = [], 0.0
    for block in BLOCKS:
        sym_out, got = conv_block(params, pos, f, cot, block)
        fwd = max(fwd, rel(out, sym_out))
        if block == "x":
            name, want = "grad positions", {"x": g_pos}
        elif block in ("f", "self"):
            name = {"f": "grad features", "self": "grad self-interaction S^0, S^1"}[block]
            want = {"f": {"f": g_f}, "self": grads["self"]}[block]
        else:
            name = f"grad radial {block[0]}, layer {block[1]}: {', '.join(LAYERS[block[1]])}"
            want = grads["radial"][block[0]]
        vacuous += [f"{block}:{nm}" for nm in got if not np.any(want[nm])]
        e = max(rel(want[nm], g) for nm, g in got.items())
        res[name] = (e, e <= TOL)
    res["forward: symbolic = SE3Conv.forward (every block's build)"] = (fwd, fwd <= TOL)
    res["every compared library gradient is non-zero somewhere"] = (len(vacuous), not vacuous)
    return res


# --- part 4: the norm nonlinearity's backward ---------------------------------------------------

CHANNELS = (2, 2)


def _columns(l: int, c: int) -> list:
    """Flat columns of channel c of degree l, channels (2, 2)."""
    start = 0 if l == 0 else CHANNELS[0]
    return list(range(start + c * (2 * l + 1), start + (c + 1) * (2 * l + 1)))


def sym_gates(nrm: list, p: dict, pt: Point) -> list:
    """t = W relu(LN(n)) + b."""
    return sym_dense(pt.relu(sym_layer_norm(nrm, p["ln_gamma"], p["ln_beta"])), p["W"], p["b"])


def check_norm(rng) -> dict:
    lay = SE3NormNonlinearity(CHANNELS)
    params = lay.init(rng)
    for p in params.values():
        p["ln_gamma"] = 1.0 + 0.3 * rng.normal(size=2)
        p["ln_beta"] = 0.5 * rng.normal(size=2)
    f = rng.normal(size=(3, lay.dim))
    # row 1: the two norms of each degree 0.2-0.3 % apart, where LN over two numbers moves
    f[1, 1] = -f[1, 0] * (1 + 2e-3)
    w = rng.normal(size=3)
    f[1, _columns(1, 1)] = w * np.linalg.norm(f[1, _columns(1, 0)]) * (1 - 3e-3) / np.linalg.norm(w)
    f[2, _columns(1, 0)] = 0.0  # row 2: a zero vector, |f| < eps: the clamp is active
    out, cache = lay.forward(params, f)
    cot = rng.normal(size=out.shape)
    grads, (g_f,) = lay.backward(params, cache, cot)

    pt = Point()
    F = pt.array("f", f)
    prm = {l: {nm: pt.array(f"N{l}_{nm}", v) for nm, v in p.items()} for l, p in params.items()}
    parts = []
    formula = np.zeros(f.shape)  # the module docstring's closed form
    dropped = np.zeros(f.shape)  # ... without its -t s / n term
    nu = sp.symbols("nu_0 nu_1")  # the norms as free variables, for n-bar
    for row in range(f.shape[0]):
        for l in (0, 1):
            vecs = [sp.Matrix([F[row, c] for c in _columns(l, ch)]) for ch in (0, 1)]
            live = [np.linalg.norm(f[row, _columns(l, ch)]) >= float(NORM_EPS) for ch in (0, 1)]
            # n = max(|f|, eps): the constant eps near a point where |f| < eps
            nrm = [sp.sqrt(sum(x * x for x in v)) if lv else NORM_EPS for v, lv in zip(vecs, live)]
            t = sym_gates(nrm, prm[str(l)], pt)
            pt.at.update({q: sp.Float(pt.value(n), DIGITS) for q, n in zip(nu, nrm)})
            t_nu = sym_gates(list(nu), prm[str(l)], pt)  # same point, same ReLU mask
            g = [sp.Matrix([sp.Rational(float(cot[row, c])) for c in _columns(l, ch)])
                 for ch in (0, 1)]
            s = [g[ch].dot(vecs[ch]) / nrm[ch] for ch in (0, 1)]
            nbar = [sum(s[q] * sp.diff(t_nu[q], nu[ch]) for q in (0, 1)).xreplace(
                dict(zip(nu, nrm))) for ch in (0, 1)]
            row_out = [sp.Integer(0)] * lay.dim
            for ch in (0, 1):
                cols = _columns(l, ch)
                for a, c in enumerate(cols):
                    row_out[c] = t[ch] * vecs[ch][a] / nrm[ch]
                base = t[ch] * g[ch] / nrm[ch]
                phase = vecs[ch] / nrm[ch] if live[ch] else sp.zeros(len(cols), 1)
                full = base + (nbar[ch] - t[ch] * s[ch] / nrm[ch]) * phase
                drop = base + nbar[ch] * phase
                formula[row, cols] = [pt.value(x) for x in full]
                dropped[row, cols] = [pt.value(x) for x in drop]
            parts.append((row, row_out))
    sym_out = np.zeros(f.shape)
    for i, row in parts:
        sym_out[i] += [pt.value(t) for t in row]
    grad = gradient(parts, cot, pt)

    def pick(arr):
        return np.array([grad[s] for s in arr.ravel()]).reshape(arr.shape)

    want_f = pick(F)
    # compared row by row, and row 2's zero vector (entries ~1/eps) apart from the rest of it
    zero = _columns(1, 0)
    rest = [c for c in range(lay.dim) if c not in zero]
    blocks = {"a generic row": (0, slice(None)), "a row with norms 0.3 % apart (LN live)":
              (1, slice(None)), "the zero vector (clamped: t g/eps)": (2, zero),
              "the rest of the zero vector's row": (2, rest)}
    res = {"forward: symbolic = SE3NormNonlinearity.forward": rel(out, sym_out)}
    for name, (i, cols) in blocks.items():
        res[f"grad f, {name}"] = rel(g_f[i, cols], want_f[i, cols])
    res["grad W, b, ln_gamma, ln_beta (both degrees)"] = max(
        rel(grads[l][nm], pick(prm[l][nm])) for l in prm for nm in prm[l])
    res["the docstring's closed form = SymPy's gradient"] = max(
        rel(formula[i, cols], want_f[i, cols]) for i, cols in blocks.values())
    res = {k: (e, e <= TOL) for k, e in res.items()}
    vacuous = [f"{l}:{nm}" for l in grads for nm in grads[l] if not np.any(grads[l][nm])]
    res["every compared library gradient is non-zero somewhere"] = (len(vacuous), not vacuous)
    e = max(rel(dropped[i], want_f[i]) for i in (0, 1))
    res["counter-example: without -t s/n (error > 1e-3)"] = (e, e > COUNTER)
    return res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (the default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    ok = True
    print("part 1: the kernel basis for degrees 0 and 1")
    for name, good in check_kernel_symbolic().items():
        ok &= good
        print(f"  SymPy: {name:63s} {'ok' if good else 'FAIL'}")
    sections = (("", check_kernel_numeric, "<= 1e-12"),
                ("part 2: parity, SE(3) but not O(3)", check_parity, "<= 1e-12 unless noted"),
                ("part 3: SE3Conv's backward vs SymPy, 3-node graph", check_conv, "<= 1e-10"),
                ("part 4: SE3NormNonlinearity's backward vs SymPy", check_norm, "<= 1e-10"))
    for title, check, want in sections:
        if title:
            print(f"{title} (error {want})")
        try:
            found = check(rng)
        except ValueError as exc:  # a point too close to a ReLU kink
            found = {f"{check.__name__}: {exc}": (float("nan"), False)}
        for name, (err, good) in found.items():
            ok &= bool(good)
            print(f"  {name:62s} {err:8.1e}  {'ok' if good else 'FAIL'}")
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
