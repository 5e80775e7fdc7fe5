r"""Lesson 6: why a group convolution on a rotation grid is exactly equivariant for the grid's own
group, and the backward pass of the lifting and group layers.

Forward (``geomp_ref/layers/group_conv.py``), edge j -> i, x = x_j - x_i, grid R_1..R_G::

    v[e,k]      = R_k^T x                                   (E, G, D)
    kappa       = k(v)                                      (E, G, C)  kernel spec (an MLP here)
    h_j[k]      = f_j                                       lifting layer
    h_j[k]      = (1/G) sum_l k_f(R_k^T R_l) * f_j[l]       group layer
    y_i[k]      = sum_{j -> i} kappa_ij[k] * h_j[k]         (fused weighted aggregation)
    out         = y W + b

Equivariance. Let Q = R_s be a grid element and write f'(R) = f(Q^{-1} R) (on the grid: a
permutation of the G axis). Substituting R_k = Q R_k', R_l = Q R_l' (a relabelling of the sums,
possible exactly because the grid is closed under left multiplication by Q):
``R_k^T (Q x) = R_k'^T x`` and ``R_k^T R_l = R_k'^T R_l'``, so ``out'(R_k) = out(R_k')``: the output
permutes like the input, for *any* kernel functions. ``derive_equivariance`` verifies this with
SymPy on the 4-element grid of SO(2) (integer matrices: exact arithmetic) with kernels left as
undefined functions ``kappa(v1, v2)``, ``kappa_f(a, b, c, d)``.

Reverse mode, bottom-up:

1. ``g_y = g_out W^T``.
2. Bilinear fused sum: ``g_h_j[k] = sum_{e out of j} kappa_ij[k] g_y_i[k]`` (reversed graph),
   ``g_kappa_ij = g_y_i * h_j`` (edge product).
3. Lifting: ``g_f_j = sum_k g_h_j[k]``. Group: ``g_f_j[l] = (1/G) sum_k kappa_f[k,l] g_h_j[k]``,
   ``g_kappa_f[k,l] = (1/G) sum_j g_h_j[k] f_j[l]`` (kappa_f has a constant input: only its
   parameters get gradients).
4. ``v = R_k^T x``: ``g_x = sum_k R_k g_v[k]``; then ``edge_vectors_vjp``.

``check_layer`` compares the hand backward with SymPy derivatives of ``<cotangent, out>`` with
respect to positions, features and the first weight matrices of both kernels on a 3-node graph,
at 30 digits (lifting layer on SO2_4; group layer on SO2_3).

Run: ``python3 derivations/group_conv.py [--check]`` (a few seconds; exit 0 on success).
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
from geomp_ref.layers.group_conv import GroupConv, LiftingConv
from geomp_ref.lie.grids import rotation_grid

TOL = 1e-12
EDGES = np.array([[0, 1, 2, 2], [1, 2, 0, 1]])  # senders j (row 0) -> receivers i (row 1)


def _c4():
    """The 4 rotations by multiples of pi/2 as exact integer matrices."""
    R1 = sp.Matrix([[0, -1], [1, 0]])
    return [R1**k for k in range(4)]


def derive_equivariance():
    """``out(Qx + t, f∘Q^{-1})[k] - out(x, f)[perm k]`` for every Q in C4, symbolically (-> 0)."""
    kappa = sp.Function("kappa")
    kappa_f = sp.Function("kappa_f")
    R = _c4()
    G = 4
    X = sp.Matrix(3, 2, lambda a, b: sp.Symbol(f"x{a}{b}"))
    Fs = sp.Matrix(3, G, lambda a, b: sp.Symbol(f"f{a}{b}"))
    t = sp.Matrix(sp.symbols("t0:2"))

    def index(M):
        return next(k for k in range(G) if R[k] == M)

    def out(Xn, Fn):
        y = [[0] * G for _ in range(3)]
        for j, i in EDGES.T:
            x = (Xn.row(int(j)) - Xn.row(int(i))).T
            for k in range(G):
                v = R[k].T * x
                h = sum(kappa_f(*(R[k].T * R[m])) * Fn[int(j), m] for m in range(G)) / G
                y[int(i)][k] += kappa(*v) * h
        return y

    base = out(X, Fs)
    diffs = []
    for Q in R[1:]:
        perm = [index(Q.T * R[k]) for k in range(G)]  # f'[:, k] = f[:, perm[k]]
        X2 = (Q * X.T).T + sp.ones(3, 1) * t.T
        F2 = sp.Matrix(3, G, lambda a, k, perm=perm: Fs[a, perm[k]])
        moved = out(X2, F2)
        diffs += [sp.expand(moved[n][k] - base[n][perm[k]]) for n in range(3) for k in range(G)]
    return diffs


def _F(v):
    return sp.Float(float(v), 40)


def _silu(z):
    return z / (1 + sp.exp(-z))


def _mlp(p, x, W0=None):
    n = len([k for k in p if k.startswith("W")])
    h = list(x)
    for k in range(n):
        W = W0 if (k == 0 and W0 is not None) else sp.Matrix(p[f"W{k}"].tolist()).applyfunc(_F)
        z = [
            sum(h[a] * W[a, c] for a in range(len(h))) + _F(p[f"b{k}"][c])
            for c in range(W.shape[1])
        ]
        h = [_silu(v) for v in z] if k < n - 1 else z
    return h


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def check_layer(kind: str) -> float:
    rng = np.random.default_rng(3 if kind == "lifting" else 4)
    N, C, Co, H = 3, 1, 2, 1
    grid = "SO2_4" if kind == "lifting" else "SO2_3"
    layer = (LiftingConv if kind == "lifting" else GroupConv)(C, Co, grid=grid, hidden=H)
    R = rotation_grid(grid)
    G, D = R.shape[0], R.shape[1]
    p = layer.init(rng)
    pos = rng.normal(size=(N, D))
    f = rng.normal(size=(N, C) if kind == "lifting" else (N, G, C))
    cot = rng.normal(size=(N, G, Co))
    graph = make_graph(EDGES, N)
    out, cache = layer.forward(p, graph, f, pos)
    grads, (g_f, g_pos) = layer.backward(p, cache, cot)

    X = sp.Matrix(N, D, lambda a, b: sp.Symbol(f"x{a}{b}"))
    Fs = sp.Matrix(N, 1 if kind == "lifting" else G, lambda a, b: sp.Symbol(f"f{a}{b}"))
    Ws = sp.Matrix(D, H, lambda a, b: sp.Symbol(f"w{a}{b}"))
    syms = list(X) + list(Fs) + list(Ws)
    values = list(pos.ravel()) + list(f.reshape(N, -1).ravel()) + list(p["kernel"]["W0"].ravel())
    if kind == "group":
        Wf = sp.Matrix(D * D, H, lambda a, b: sp.Symbol(f"u{a}{b}"))
        syms += list(Wf)
        values += list(p["fiber_kernel"]["W0"].ravel())
    Rs = [sp.Matrix(r.tolist()).applyfunc(_F) for r in R]
    y = [[0] * G for _ in range(N)]
    for j, i in EDGES.T:
        x = (X.row(int(j)) - X.row(int(i))).T
        for k in range(G):
            kap = _mlp(p["kernel"], list(Rs[k].T * x), W0=Ws)[0]
            if kind == "lifting":
                h = Fs[int(j), 0]
            else:
                h = (
                    sum(
                        _mlp(p["fiber_kernel"], list(Rs[k].T * Rs[m]), W0=Wf)[0] * Fs[int(j), m]
                        for m in range(G)
                    )
                    / G
                )
            y[int(i)][k] += kap * h
    L = sum(
        _F(cot[n, k, c]) * (y[n][k] * _F(p["W"][0, c]) + _F(p["b"][c]))
        for n in range(N)
        for k in range(G)
        for c in range(Co)
    )
    fn = sp.lambdify(syms, [L] + [sp.diff(L, v) for v in syms], modules="mpmath", cse=True)
    with mp.workdps(30):
        vals = [float(v) for v in fn(*[mp.mpf(float(v)) for v in values])]
    dL = dict(zip(syms, vals[1:]))

    def grad(M):
        return np.array([[dL[M[a, b]] for b in range(M.shape[1])] for a in range(M.shape[0])])

    errs = [
        abs(vals[0] - np.sum(cot * out)) / abs(np.sum(cot * out)),
        _rel(g_pos, grad(X)),
        _rel(g_f.reshape(N, -1), grad(Fs)),
        _rel(grads["kernel"]["W0"], grad(Ws)),
    ]
    if kind == "group":
        errs.append(_rel(grads["fiber_kernel"]["W0"], grad(Wf)))
    return max(errs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    ok = True
    diffs = derive_equivariance()
    good = all(d == 0 for d in diffs)
    ok &= good
    print(
        f"C4 equivariance, any kernel: {len(diffs)} symbolic differences, "
        f"{sum(d != 0 for d in diffs)} non-zero  {'ok' if good else 'FAIL'}"
    )
    for kind in ("lifting", "group"):
        err = check_layer(kind)
        good = err <= TOL
        ok &= good
        print(
            f"{kind} layer grads (pos, f, kernel W0): max rel err vs SymPy {err:.2e}  "
            f"{'ok' if good else 'FAIL'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
