r"""Lesson 6: the backward pass of the position-orientation (PONITA) convolution, its polynomial
features and its radial window.

Forward (``geomp_ref/layers/position_orientation.py``), edge j -> i, x = x_j - x_i, grid o_k::

    inv1[e,k] = x . o_k
    r[e,k]    = x - inv1 o_k ;  inv2[e,k] = |r|        (3D; 2D: inv2 = o_1 x_2 - o_2 x_1)
    kappa     = k(inv1, inv2)                          (E, G, C)   kernel spec (an MLP here)
    A[k,l]    = o_k . o_l ;  kappa_f = k_f(A)          (G, G, C)
    y1_i[k]   = sum_{j -> i} kappa_ij[k] * f_j[k]      (fused weighted aggregation)
    y2_i[l]   = (1/G) sum_k kappa_f[k,l] * y1_i[k]
    out       = y2 W + b

Reverse mode, bottom-up:

1. ``g_y2 = g_out W^T``; ``g_y1[k] = (1/G) sum_l kappa_f[k,l] g_y2[l]``;
   ``g_kappa_f[k,l] = (1/G) sum_n y1_n[k] g_y2_n[l]``.
2. The fused sum is bilinear: ``g_f_j[k] = sum_{e out of j} kappa_ij[k] g_y1_i[k]`` (the same
   kernel on the reversed graph) and ``g_kappa_ij = g_y1_i * f_j`` (edge product).
3. ``A = o o^T`` gives ``g_o = (g_A + g_A^T) o``.
4. The invariants. With ``u = r/|r|``: ``d inv2 = u . (dx - d(inv1) o - inv1 do)`` and
   ``d inv1 = o . dx + x . do``. Collecting the ``d inv1`` terms in ``a = g1 - g2 (u . o)``:
   ``g_x = a o + g2 u`` and ``g_o = a x - g2 inv1 u``. (For unit o, ``u . o = 0``; the code keeps
   the term so the VJP is right for any o, which is what finite differences perturb.) At r = 0
   (self-loops, x parallel to o) the norm has no derivative; the code uses the zero subgradient.
5. ``x = x_j - x_i``: ``+g_x`` to the sender, ``-g_x`` to the receiver (``edge_vectors_vjp``).

Non-separable (``separable=False``, ``mixing="full"``): one kernel on both orientations,
``kappa[e,k,l] = k(inv1[e,k], inv2[e,k], A[k,l])`` read as a (C_out, C_in) matrix and
``y_i[l] = sum_{j -> i} sum_k kappa_ij[k,l] f_j[k]``; its VJP contracts the cotangent with the
other factor (``g_kappa[e,k,l] = g_y_i[l] f_j[k]^T``, ``g_f_j[k] += kappa[e,k,l]^T g_y_i[l]``) and
sums the coordinate cotangents over the index each coordinate does not depend on (l for inv1,
inv2; the edges for A).

Polynomial features ``P(z) = [z, z (x) z, z (x) z (x) z]`` (row-major flattening): with
``P_k[a n + j] = P_{k-1}[a] z[j]``, reverse mode gives ``g_P_{k-1}[a] += sum_j g_P_k[a n + j] z[j]``
and ``g_z[j] += sum_a g_P_k[a n + j] P_{k-1}[a]``, from the top degree down.

The window ``w(u) = 1 - (p+1)(p+2)/2 u^p + p(p+2) u^(p+1) - p(p+1)/2 u^(p+2)`` (u = d/r < 1, else
0; p = 6 gives ``1 - 28u^6 + 48u^7 - 21u^8``) has ``w'(u) = -p(p+1)(p+2)/2 u^(p-1) (1-u)^2``: it
and its first two derivatives vanish at u = 1 (the window joins 0 smoothly), and ``w'(0) = 0``
(self-loops, d = 0, get no gradient through the distance).

This script checks with SymPy:

* ``derive_invariants``: step 4 and step 3 symbolically for generic (non-unit) x, o, 2D and 3D
  (hand formula minus ``sympy.diff``, simplified to 0);
* ``check_layer``: on a 3-node graph with 4 directed edges, G = 2 orientations (passed as an
  input) and width-1 kernel MLPs, the exact derivatives of ``L = <cotangent, out>`` with respect
  to every position, feature, orientation and the first spatial-kernel weight matrix, evaluated
  at 30 digits, against ``PositionOrientationConv.backward`` (3D and 2D);
* ``check_nonseparable``: the same for ``separable=False, mixing="full"`` (3D);
* ``derive_polynomial_features``: the reverse recursion above minus ``sympy.diff`` (degree 3,
  n = 2), and ``derive_window``: the closed form of ``w'`` for symbolic p, the p = 6
  coefficients and ``w(1) = w'(1) = w''(1) = 0``.

Run: ``python3 derivations/position_orientation.py [--check]`` (about 10 s; exit 0 on success).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mpmath as mp
import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geomp_ref.graph import make_graph
from geomp_ref.layers.kernels import MLPKernel
from geomp_ref.layers.position_orientation import PositionOrientationConv

TOL = 1e-12
EDGES = np.array([[0, 1, 2, 2], [1, 2, 0, 1]])  # senders j (row 0) -> receivers i (row 1)


def derive_invariants():
    """Hand VJP formulas minus SymPy derivatives (each entry should simplify to 0)."""
    out = {}
    g1, g2 = sp.symbols("g1 g2", real=True)
    x = sp.Matrix(sp.symbols("x1:4", real=True))
    o = sp.Matrix(sp.symbols("o1:4", real=True))
    inv1 = x.dot(o)
    r = x - inv1 * o
    inv2 = sp.sqrt(r.dot(r))
    L = g1 * inv1 + g2 * inv2
    u = r / inv2
    a = g1 - g2 * u.dot(o)
    hand_x = a * o + g2 * u
    hand_o = a * x - g2 * inv1 * u
    out["3D g_x"] = sp.simplify(sp.Matrix([sp.diff(L, v) for v in x]) - hand_x)
    out["3D g_o"] = sp.simplify(sp.Matrix([sp.diff(L, v) for v in o]) - hand_o)
    x2 = sp.Matrix(sp.symbols("y1:3", real=True))
    o2 = sp.Matrix(sp.symbols("p1:3", real=True))
    L2 = g1 * x2.dot(o2) + g2 * (o2[0] * x2[1] - o2[1] * x2[0])
    out["2D g_x"] = sp.simplify(
        sp.Matrix([sp.diff(L2, v) for v in x2]) - (g1 * o2 + g2 * sp.Matrix([-o2[1], o2[0]]))
    )
    out["2D g_o"] = sp.simplify(
        sp.Matrix([sp.diff(L2, v) for v in o2]) - (g1 * x2 + g2 * sp.Matrix([x2[1], -x2[0]]))
    )
    O = sp.Matrix(3, 2, sp.symbols("q0:6", real=True))
    GA = sp.Matrix(3, 3, sp.symbols("h0:9", real=True))
    LA = sum(GA[k, m] * O.row(k).dot(O.row(m)) for k in range(3) for m in range(3))
    gO = sp.Matrix(3, 2, lambda k, d: sp.diff(LA, O[k, d]))
    out["A = o o^T"] = sp.simplify(gO - (GA + GA.T) * O)
    return {
        k: (v if not isinstance(v, sp.MatrixBase) else sp.Matrix(v).applyfunc(sp.simplify))
        for k, v in out.items()
    }


def _F(v):
    return sp.Float(float(v), 40)


def _silu(z):
    return z / (1 + sp.exp(-z))


def _mlp(p, x, num_layers, W0=None):
    """SymPy MLP on a row list ``x`` (silu between layers), weights (in, out) as in mlp.py."""
    h = list(x)
    for k in range(num_layers):
        W = W0 if (k == 0 and W0 is not None) else sp.Matrix(p[f"W{k}"].tolist()).applyfunc(_F)
        b = p[f"b{k}"]
        z = [sum(h[a] * W[a, c] for a in range(len(h))) + _F(b[c]) for c in range(W.shape[1])]
        h = [_silu(v) for v in z] if k < num_layers - 1 else z
    return h


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def check_layer(dim: int) -> float:
    rng = np.random.default_rng(5 + dim)
    G, C, Co, N, H = 2, 1, 2, 3, 1
    layer = PositionOrientationConv(
        C, Co, dim=dim, grid="uniform" if dim == 2 else "fibonacci", num_ori=G, hidden=H
    )
    p = layer.init(rng)
    pos = rng.normal(size=(N, dim))
    f = rng.normal(size=(N, G, C))
    ori = layer.ori + 0.1 * rng.normal(size=(G, dim))  # generic (non-unit) orientations
    cot = rng.normal(size=(N, G, Co))
    graph = make_graph(EDGES, N)
    out, cache = layer.forward(p, graph, f, pos, ori)
    grads, (g_f, g_pos, g_ori, _, _) = layer.backward(p, cache, cot)

    X = sp.Matrix(N, dim, lambda a, b: sp.Symbol(f"x{a}{b}"))
    Fs = sp.Matrix(N, G, lambda a, b: sp.Symbol(f"f{a}{b}"))  # C = 1
    O = sp.Matrix(G, dim, lambda a, b: sp.Symbol(f"o{a}{b}"))
    W0 = sp.Matrix(2, H, lambda a, b: sp.Symbol(f"w{a}{b}"))
    subs = {X[a, b]: _F(pos[a, b]) for a in range(N) for b in range(dim)}
    subs.update({Fs[a, k]: _F(f[a, k, 0]) for a in range(N) for k in range(G)})
    subs.update({O[a, b]: _F(ori[a, b]) for a in range(G) for b in range(dim)})
    subs.update({W0[a, b]: _F(p["kernel"]["W0"][a, b]) for a in range(2) for b in range(H)})

    # forward from the docstring equations
    y1 = [[0] * G for _ in range(N)]
    for j, i in EDGES.T:
        xv = X.row(int(j)) - X.row(int(i))
        for k in range(G):
            o = O.row(k)
            inv1 = xv.dot(o)
            if dim == 3:
                r = xv - inv1 * o
                inv2 = sp.sqrt(r.dot(r))
            else:
                inv2 = o[0] * xv[1] - o[1] * xv[0]
            kap = _mlp(p["kernel"], [inv1, inv2], 3, W0=W0)[0]
            y1[int(i)][k] += kap * Fs[int(j), k]
    kf = [
        [_mlp(p["fiber_kernel"], [O.row(k).dot(O.row(m))], 2)[0] for m in range(G)]
        for k in range(G)
    ]
    L = 0
    for n in range(N):
        for m in range(G):
            y2 = sum(kf[k][m] * y1[n][k] for k in range(G)) / G
            for c in range(Co):
                L += _F(cot[n, m, c]) * (y2 * _F(p["W"][0, c]) + _F(p["b"][c]))

    syms = list(X) + list(Fs) + list(O) + list(W0)
    return _compare(L, syms, [subs[v] for v in syms], np.sum(cot * out), [
        (g_pos, X), (g_f[..., 0], Fs), (g_ori, O), (grads["kernel"]["W0"], W0)])


def _compare(L, syms, values, L_num, pairs) -> float:
    """Max relative error of ``L`` and of each hand gradient against SymPy at 30 digits."""
    # differentiate symbolically, evaluate at 30 digits (mpmath) through one common-subexpression
    # eliminated function: much faster than substituting into every derivative tree
    fn = sp.lambdify(syms, [L] + [sp.diff(L, v) for v in syms], modules="mpmath", cse=True)
    with mp.workdps(30):
        vals = [float(v) for v in fn(*[mp.mpf(str(v)) for v in values])]
    Lv, dL = vals[0], dict(zip(syms, vals[1:]))

    def grad(M):
        return np.array([[dL[M[a, b]] for b in range(M.shape[1])] for a in range(M.shape[0])])

    return max([abs(Lv - L_num) / abs(L_num)] + [_rel(g, grad(M)) for g, M in pairs])


def check_nonseparable() -> float:
    """``separable=False, mixing="full"`` in 3D: forward from the equations, SymPy gradients."""
    rng = np.random.default_rng(11)
    G, C, Co, N = 2, 1, 2, 3
    # an affine kernel keeps SymPy fast; what is checked is how the coordinate cotangents are
    # gathered (over l for inv1/inv2, over the edges for A) and the (C_out, C_in) contraction
    kernel = MLPKernel(3, Co * C, hidden=())
    layer = PositionOrientationConv(C, Co, num_ori=G, separable=False, mixing="full", kernel=kernel)
    p = layer.init(rng)
    pos, f = rng.normal(size=(N, 3)), rng.normal(size=(N, G, C))
    ori = layer.ori + 0.1 * rng.normal(size=(G, 3))
    cot = rng.normal(size=(N, G, Co))
    out, cache = layer.forward(p, make_graph(EDGES, N), f, pos, ori)
    grads, (g_f, g_pos, g_ori, _, _) = layer.backward(p, cache, cot)
    X = sp.Matrix(N, 3, lambda a, b: sp.Symbol(f"x{a}{b}"))
    Fs = sp.Matrix(N, G, lambda a, b: sp.Symbol(f"f{a}{b}"))
    O = sp.Matrix(G, 3, lambda a, b: sp.Symbol(f"o{a}{b}"))
    W0 = sp.Matrix(3, Co, lambda a, b: sp.Symbol(f"w{a}{b}"))
    L = 0
    for j, i in EDGES.T:
        xv = X.row(int(j)) - X.row(int(i))
        for k in range(G):  # the summed (sender's) orientation
            o = O.row(k)
            inv1 = xv.dot(o)
            r = xv - inv1 * o
            inv2 = sp.sqrt(r.dot(r))
            for m in range(G):
                kap = _mlp(p["kernel"], [inv1, inv2, o.dot(O.row(m))], 1, W0=W0)  # Co x C_in=1
                for d in range(Co):
                    L += _F(cot[int(i), m, d]) * kap[d] * Fs[int(j), k]
    L += sum(_F(cot[n, m, d]) * _F(p["b"][d]) for n in range(N) for m in range(G)
             for d in range(Co))
    syms = list(X) + list(Fs) + list(O) + list(W0)
    values = list(pos.ravel()) + list(f[..., 0].ravel()) + list(ori.ravel())
    values += list(p["kernel"]["W0"].ravel())
    return _compare(L, syms, values, np.sum(cot * out), [
        (g_pos, X), (g_f[..., 0], Fs), (g_ori, O), (grads["kernel"]["W0"], W0)])


def derive_polynomial_features():
    """The reverse recursion for ``P(z)`` (degree 3, n = 2) minus ``sympy.diff``: list of 0."""
    z = sp.symbols("z0:2", real=True)
    n, degree = 2, 3
    terms = [list(z)]
    for _ in range(1, degree):
        terms.append([a * zj for a in terms[-1] for zj in z])  # P_k[a n + j] = P_{k-1}[a] z_j
    gs = [sp.symbols(f"g{k}_0:{n ** (k + 1)}", real=True) for k in range(degree)]
    L = sum(g * t for gk, tk in zip(gs, terms) for g, t in zip(gk, tk))
    grad_z = [0] * n
    carry = [0] * n**degree
    for k in range(degree - 1, 0, -1):
        gk = [gs[k][q] + carry[q] for q in range(n ** (k + 1))]
        for j in range(n):
            grad_z[j] += sum(gk[a * n + j] * terms[k - 1][a] for a in range(n**k))
        carry = [sum(gk[a * n + j] * z[j] for j in range(n)) for a in range(n**k)]
    hand = [grad_z[j] + gs[0][j] + carry[j] for j in range(n)]
    return [sp.expand(h - sp.diff(L, zj)) for h, zj in zip(hand, z)]


def derive_window():
    """``w'`` closed form (symbolic p), the p = 6 coefficients and ``w = w' = w'' = 0`` at u = 1."""
    u, p = sp.symbols("u p", positive=True)

    def w(p):
        return (1 - (p + 1) * (p + 2) / 2 * u**p + p * (p + 2) * u ** (p + 1)
                - p * (p + 1) / 2 * u ** (p + 2))

    out = [sp.simplify(sp.diff(w(p), u) + p * (p + 1) * (p + 2) / 2 * u ** (p - 1) * (1 - u) ** 2)]
    out.append(sp.expand(w(6) - (1 - 28 * u**6 + 48 * u**7 - 21 * u**8)))
    out += [sp.diff(w(6), u, k).subs(u, 1) for k in range(3)]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    ok = True
    for name, diff in derive_invariants().items():
        good = diff == sp.zeros(*diff.shape)
        ok &= good
        print(f"{name:10s} hand formula - sympy.diff = {list(diff)}  {'ok' if good else 'FAIL'}")
    for name, diffs in (("polynomial features VJP", derive_polynomial_features()),
                        ("window derivative and end values", derive_window())):
        good = all(d == 0 for d in diffs)
        ok &= good
        print(f"{name}: hand formula - sympy = {diffs}  {'ok' if good else 'FAIL'}")
    for label, fn in (("D=3", lambda: check_layer(3)), ("D=2", lambda: check_layer(2)),
                      ("D=3 non-separable full", check_nonseparable)):
        err = fn()
        good = err <= TOL
        ok &= good
        print(
            f"layer grads (pos, f, ori, kernel W0), {label}: max rel err vs SymPy {err:.2e}  "
            f"{'ok' if good else 'FAIL'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
