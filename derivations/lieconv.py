r"""Lesson 6: the pairwise logarithm of LieConv, its sign, and the backward pass with respect to
poses.

Forward (``geomp_ref/layers/lieconv.py``), edge j -> i::

    xi_ij = Log(g_i^{-1} g_j)                 (d = 3 for SE(2), 6 for SE(3); translation first)
    k_ij  = MLP_k(xi_ij)                      (E, K; swish after every layer, as WeightNet)
    m_ij  = vec(k_ij (x) f_j)                 (E, K C_in)
    agg_i = mean_{j -> i} m_ij                ("sum" drops the 1/deg)
    out   = agg W + b                         ("lieconv_mean": (sum_j m_ij W + b) / deg_i)

Sign and order. LieConv forms ``pair[i, j] = log(exp(-a_j) exp(a_i)) = Log(g_j^{-1} g_i)`` and
writes its algebra rotation first (SE(2): (theta, rho); SE(3): (omega, rho)). Since
``g_j^{-1} g_i = (g_i^{-1} g_j)^{-1}`` and the principal Log satisfies ``Log(M^{-1}) = -Log(M)``
(away from rotation angle pi), ``pair[i, j] = -P xi_ij`` with P the reordering: for pure
translations ``xi_ij = x_j - x_i``, the library's ``edge_vec``. ``derive_sign`` checks both
statements symbolically. The layer's ``kernel_input="lieconv_log"`` feeds ``P Log(g_j^{-1} g_i)``
itself; its pose gradients are the ones below with the roles of i and j swapped, after undoing P
(``check_layer`` covers that variant with LieConv's mean as well).

Backward with respect to poses. A pose moves on the group, ``g -> g Exp(delta)`` (right
perturbation). To first order ``g_i^{-1} g_j -> (I - hat delta_i) g_i^{-1} g_j (I + hat delta_j)``,
and (Solà et al. 2018, "A micro Lie theory", right and left Jacobians)::

    d xi / d delta_j = Jr^{-1}(xi),      d xi / d delta_i = -Jl^{-1}(xi).

``derive_pairwise_jacobians`` differentiates the closed-form Log (SE(2): atan2 and V^{-1};
SE(3): acos, theta / (2 sin theta) and V^{-1}) of that first-order product with SymPy and compares
with ``geomp_ref.lie.se2/se3`` Jacobian inverses (the SE(3) pair drawn here has angle 2.84,
near pi, where the Jacobians are sensitive to the rounding of the float64 input matrix: the
residual is ~1e-14 absolute, against ~5e-16 for SE(2)). The layer then returns, per node, the
tangent matrix gradient ``G_n = g_n hat(M^{-1} w_n)`` whose pairing with ``g_n hat(e_k)`` is the
right-trivialised gradient ``w_n,k = dL/d delta_n,k`` (summed over the edges at the node as
receiver and as sender). Everything above the Log is the NNConv-like chain:
``g_agg = g_out W^T``; ``g_m = g_agg[dst] / deg``; ``g_k = g_m f_j``; ``g_f_j = g_m^T k``;
``g_xi = MLP_k^T(g_k)``.

``check_layer`` builds the whole SE(2) layer in SymPy on a 3-node graph with poses
``g_n (I + hat delta_n)``, differentiates ``<cotangent, out>`` at ``delta = 0`` with respect to
every delta, feature and the kernel's first weight matrix, evaluates at 30 digits, and compares
with ``LieConv.backward`` (pose gradients through ``<G_n, g_n hat(e_k)>``).

Run: ``python3 derivations/lieconv.py [--check]`` (about 20 s; exit 0 on success).
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
from geomp_ref.layers.lieconv import LieConv
from geomp_ref.lie import se2, se3

TOL = 1e-12
EDGES = np.array([[0, 1, 2, 2], [1, 2, 0, 1]])  # senders j (row 0) -> receivers i (row 1)


def _F(v):
    return sp.Float(float(v), 40)


def _M(a):
    return sp.Matrix(np.asarray(a).tolist()).applyfunc(_F)


def hat(group, d):
    """Algebra matrix of a tangent (translation first)."""
    if group == "SE2":
        r1, r2, th = d
        return sp.Matrix([[0, -th, r1], [th, 0, r2], [0, 0, 0]])
    r, w = d[:3], d[3:]
    W = sp.Matrix([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
    out = sp.zeros(4, 4)
    out[:3, :3] = W
    out[:3, 3] = sp.Matrix(r)
    return out


def log(group, g):
    """Closed-form principal Log (generic angles: no small-angle or near-pi branches needed)."""
    if group == "SE2":
        th = sp.atan2(g[1, 0], g[0, 0])
        # V = [[A, -B], [B, A]] with A = sin/th, B = (1 - cos)/th has the closed-form inverse
        # [[H, th/2], [-th/2, H]], H = (th/2) cot(th/2)
        H = th / 2 * sp.cos(th / 2) / sp.sin(th / 2)
        t1, t2 = g[0, 2], g[1, 2]
        return [H * t1 + th / 2 * t2, -th / 2 * t1 + H * t2, th]
    R, t = g[:3, :3], g[:3, 3]
    th = sp.acos((R.trace() - 1) / 2)
    S = (R - R.T) * th / (2 * sp.sin(th))
    w = [S[2, 1], S[0, 2], S[1, 0]]
    Wm = hat("SE3", [0, 0, 0] + w)[:3, :3]
    Vinv = sp.eye(3) - Wm / 2 + (1 - th * sp.sin(th) / (2 * (1 - sp.cos(th)))) / th**2 * Wm * Wm
    rho = Vinv * t
    return [rho[0], rho[1], rho[2]] + w


def _numeric(expr_list, syms, values):
    fn = sp.lambdify(syms, expr_list, modules="mpmath", cse=True)
    with mp.workdps(30):
        return [float(v) for v in fn(*[mp.mpf(float(v)) for v in values])]


def derive_sign(rng):
    """max |Log(g_i^-1 g_j) + Log(g_j^-1 g_i)| and |xi - (x_j - x_i, 0)| for translations."""
    err = 0.0
    for group, mod in (("SE2", se2), ("SE3", se3)):
        gi, gj = mod.random(rng, 2)
        a = log(group, _M(np.linalg.inv(gi) @ gj))
        b = log(group, _M(np.linalg.inv(gj) @ gi))
        err = max(err, max(abs(float(sp.N(u + v, 30))) for u, v in zip(a, b)))
        # translations: hat((x_j - x_i, 0)) is nilpotent, so Exp = I + hat = T_i^-1 T_j exactly,
        # i.e. Log(T_i^-1 T_j) = (x_j - x_i, 0) (rational entries: exact arithmetic)
        D = 2 if group == "SE2" else 3
        x = [[sp.Rational(int(v), 7) for v in rng.integers(-20, 20, size=D)] for _ in range(2)]
        T = [sp.eye(D + 1), sp.eye(D + 1)]
        for n in range(2):
            T[n][:D, D] = sp.Matrix(x[n])
        xi = [x[1][a] - x[0][a] for a in range(D)] + [0] * (len(a) - D)
        if (hat(group, xi).exp() - T[0].inv() * T[1]) != sp.zeros(D + 1, D + 1):
            err = max(err, 1.0)
    return err


def derive_pairwise_jacobians(rng):
    """max |d xi/d delta - (Jr^-1, -Jl^-1)| over SE(2) and SE(3), random generic pairs."""
    err = 0.0
    for group, mod in (("SE2", se2), ("SE3", se3)):
        dof = 3 if group == "SE2" else 6
        gi, gj = mod.random(rng, 2)
        di = list(sp.symbols(f"a0:{dof}"))
        dj = list(sp.symbols(f"b0:{dof}"))
        n = 3 if group == "SE2" else 4
        M0 = np.linalg.inv(gi) @ gj  # one float64 matrix, used by both sides
        M = (sp.eye(n) - hat(group, di)) * _M(M0) * (sp.eye(n) + hat(group, dj))
        xi = log(group, M)
        syms = di + dj
        J = [sp.diff(x, s) for x in xi for s in syms]
        vals = np.array(_numeric(J, syms, [0.0] * len(syms))).reshape(dof, 2 * dof)
        xi0 = mod.log(M0)
        err = max(
            err,
            np.abs(vals[:, dof:] - mod.right_jacobian_inverse(xi0)).max(),
            np.abs(vals[:, :dof] + mod.left_jacobian_inverse(xi0)).max(),
        )
    return err


def _silu(z):
    return z / (1 + sp.exp(-z))


def _mlp(p, x, W0=None, activate_last=True):
    n = len([k for k in p if k.startswith("W")])
    h = list(x)
    for k in range(n):
        W = W0 if (k == 0 and W0 is not None) else _M(p[f"W{k}"])
        z = [
            sum(h[a] * W[a, c] for a in range(len(h))) + _F(p[f"b{k}"][c])
            for c in range(W.shape[1])
        ]
        h = [_silu(v) for v in z] if (k < n - 1 or activate_last) else z
    return h


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def check_layer(aggr: str = "mean", kernel_input: str = "log", last: bool = False) -> float:
    """SE(2) layer on 3 nodes; ``last`` = the WeightNet's swish after the kernel's last layer
    (off here: it only adds the activation's VJP, proven in dense_activations.py, and triples
    the size of the symbolic expression; tests/layers/test_lieconv.py checks the layer with it)."""
    rng = np.random.default_rng(9)
    N, C, Co, K = 3, 1, 2, 2
    layer = LieConv("SE2", C, Co, kernel_hidden=(1,), kernel_channels=K, aggr=aggr,
                    kernel_input=kernel_input, activate_last=last)
    p = layer.init(rng)
    g = se2.random(rng, N)
    f = rng.normal(size=(N, C))
    cot = rng.normal(size=(N, Co))
    graph = make_graph(EDGES, N)
    out, cache = layer.forward(p, graph, f, g)
    grads, (g_f, g_g, _) = layer.backward(p, cache, cot)
    # right-trivialised pose gradients of the hand backward: <G_n, g_n hat(e_k)>
    E3 = np.eye(3)
    hats = np.stack([np.array(hat("SE2", list(E3[k])).tolist(), dtype=float) for k in range(3)])
    w_hand = np.einsum("nab,nac,kcb->nk", g_g, g, hats)

    dl = sp.Matrix(N, 3, lambda a, b: sp.Symbol(f"d{a}{b}"))
    Fs = sp.Matrix(N, C, lambda a, b: sp.Symbol(f"f{a}{b}"))
    W0 = sp.Matrix(3, 1, lambda a, b: sp.Symbol(f"w{a}{b}"))
    poses = [_M(g[n]) * (sp.eye(3) + hat("SE2", list(dl.row(n)))) for n in range(N)]
    inv = [(sp.eye(3) - hat("SE2", list(dl.row(n)))) * _M(np.linalg.inv(g[n])) for n in range(N)]
    agg = [[0] * (K * C) for _ in range(N)]
    deg = np.bincount(EDGES[1], minlength=N)
    for j, i in EDGES.T:
        if kernel_input == "log":
            xi = log("SE2", inv[int(i)] * poses[int(j)])
        else:  # LieConv's pair: Log(g_j^-1 g_i), rotation first
            r1, r2, th = log("SE2", inv[int(j)] * poses[int(i)])
            xi = [th, r1, r2]
        k = _mlp(p["kernel"], xi, W0=W0, activate_last=last)
        scale = sp.Rational(1, int(deg[i])) if aggr == "mean" else 1
        for q in range(K):
            for c in range(C):
                agg[int(i)][q * C + c] += scale * k[q] * Fs[int(j), c]
    # lieconv_mean divides the whole output, bias included, by the in-degree
    post = [sp.Rational(1, max(int(deg[n]), 1)) if aggr == "lieconv_mean" else 1 for n in range(N)]
    L = sum(
        _F(cot[n, o]) * post[n]
        * (sum(agg[n][a] * _F(p["W"][a, o]) for a in range(K * C)) + _F(p["b"][o]))
        for n in range(N)
        for o in range(Co)
    )
    syms = list(dl) + list(Fs) + list(W0)
    values = [0.0] * (3 * N) + list(f.ravel()) + list(p["kernel"]["W0"].ravel())
    vals = _numeric([L] + [sp.diff(L, s) for s in syms], syms, values)
    dL = dict(zip(syms, vals[1:]))
    want_w = np.array([[dL[dl[n, k]] for k in range(3)] for n in range(N)])
    want_f = np.array([[dL[Fs[n, c]] for c in range(C)] for n in range(N)])
    want_W0 = np.array([[dL[W0[a, 0]]] for a in range(3)])
    return max(
        abs(vals[0] - np.sum(cot * out)) / abs(np.sum(cot * out)),
        _rel(w_hand, want_w),
        _rel(g_f, want_f),
        _rel(grads["kernel"]["W0"], want_W0),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    rng = np.random.default_rng(2)
    ok = True
    for name, fn in [
        ("sign: Log(g_i^-1 g_j) = -LieConv pair; translations", lambda: derive_sign(rng)),
        ("d xi/d delta = (-Jl^-1, Jr^-1), SE(2), SE(3)", lambda: derive_pairwise_jacobians(rng)),
        ("SE(2) layer grads (poses, f, W0), mean", lambda: check_layer("mean")),
        # lieconv_mean aggregates by sum, then divides: it also covers aggr="sum"
        ("SE(2) layer grads, LieConv's pair and mean",
         lambda: check_layer("lieconv_mean", "lieconv_log")),
    ]:
        err = fn()
        good = err <= TOL
        ok &= good
        print(f"{name:52s} max err vs SymPy {err:.2e}  {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
