r"""Lesson 4: the backward pass of SchNet's continuous-filter convolution, and the forces.

Forward on one edge e = (j -> i) (sender j, receiver i; ``geomp_ref/layers/cfconv.py``)::

    d      = |x_j - x_i|
    e_k    = exp(-gamma (d - mu_k)^2)                 Gaussian expansion, k = 1..G
    z1     = e W0 + b0 ;  s1 = ssp(z1) ;  w_raw = s1 W1 + b1      filter network
    C      = (cos(pi d / r_c) + 1) / 2                 cosine cutoff (0 for d >= r_c)
    w_ij   = w_raw * C
    agg_i  = sum_{e into i} w_ij * y_j,   y = f W_in
    out    = agg W_out + b_out

Reverse mode, one line per forward line read bottom-up (cotangents written g_<name>):

1. ``g_agg = g_out W_out^T``; ``g_W_out = agg^T g_out``.
2. The fused sum is bilinear in (y, w): ``g_w_ij = g_agg_i * y_j`` (the *edge product*) and
   ``g_y_j = sum_{e out of j} w_ij * g_agg_i`` -- the same weighted aggregation on the reversed
   graph.
3. ``g_C = <g_w_ij, w_raw>`` (sum over filters) and ``g_w_raw = g_w_ij * C``.
4. Dense/activation chain: ``ssp'(z) = sigmoid(z)`` (the ln 2 shift has no derivative, so both
   constant modes share one VJP; with torch's threshold 20 the derivative is 1 above 20).
5. Everything edge-wise collapses onto the scalar d: ``g_d = sum_k g_e_k e_k'(d) + g_C C'(d)``
   with ``e_k'(d) = -2 gamma (d - mu_k) e_k`` and ``C'(d) = -(pi / (2 r_c)) sin(pi d / r_c)``.
6. ``d = |x_j - x_i|``: ``g_(x_j - x_i) = g_d (x_j - x_i)/d``, which adds ``+`` to sender j and
   ``-`` to receiver i (``edge_vectors_vjp``). At d = 0 there is no derivative: the layer raises.

In the model every interaction reads the same d; each interaction block computes d from the
positions itself and returns its own position gradient, and the model sums them (the same total
as summing the per-edge ``g_d`` first, since step 6 is linear in ``g_d``). The residual
``h <- h + v(h)`` adds the block's input gradient to the pass-through gradient. Forces are
``F = -g_pos`` for ``g_energy = 1``. Edges at or beyond the cutoff have ``C = C' = 0``, so their
``g_w_raw`` and hence ``g_e`` vanish: the layer skips their Gaussian term (at d = 1e200 it would
read ``0 * inf``).

This script checks, with SymPy:

* ``derive_radial``: steps 4-5 (Gaussian, cutoff and ssp derivatives) symbolically;
* ``check_cfconv``: on a 3-node graph with 4 directed edges, the exact derivatives of
  ``L = <cotangent, CFConv(f, x)>`` with respect to every coordinate, every feature and W_in,
  differentiated symbolically and evaluated at 30 digits, against ``CFConv.backward``;
* ``check_schnet``: the forces of a 2-interaction SchNet energy (``pyg`` constants; the exact
  mode differs only in the values of the constants, covered by ``check_cfconv``): the
  energy is differentiated symbolically with respect to the four edge lengths and composed with
  the symbolic derivative of ``d = |x_j - x_i|`` (the collapse onto d of step 5, made explicit).

Run: ``python3 derivations/schnet.py [--check]`` (about 15 s; exit status 0 on success).
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
from geomp_ref.layers.schnet import CFConv, SchNet

TOL = 1e-12
EDGES = np.array([[0, 1, 1, 2], [1, 0, 2, 0]])  # senders j (row 0) -> receivers i (row 1)


def derive_radial():
    """Symbolic derivatives of the edge functions next to the hand formulas (differences -> 0)."""
    d, mu, gamma, rc, z = sp.symbols("d mu gamma r_c z", positive=True)
    e = sp.exp(-gamma * (d - mu) ** 2)
    C = (sp.cos(sp.pi * d / rc) + 1) / 2
    ssp = sp.log(1 + sp.exp(z)) - sp.log(2)
    return {
        "e'(d)": sp.simplify(sp.diff(e, d) - (-2 * gamma * (d - mu) * e)),
        "C'(d)": sp.simplify(sp.diff(C, d) - (-(sp.pi / (2 * rc)) * sp.sin(sp.pi * d / rc))),
        "ssp'(z)": sp.simplify(sp.diff(ssp, z) - 1 / (1 + sp.exp(-z))),
    }


def _F(a):
    """Exact SymPy copy of a float64 array (every binary digit kept)."""
    return sp.Matrix(np.atleast_2d(a).tolist()).applyfunc(lambda v: sp.Float(v, 40))


def _sym_cfconv(layer, p, f, X, W_in=None):
    """SymPy forward of CFConv from the module docstring's equations (not from the layer's code)."""
    k = layer.consts

    def ssp(v):
        # torch's threshold branch (x > 20) is never taken here: the checks assert it
        return sp.log(1 + sp.exp(v)) - sp.Float(k.shift, 40)

    W0, b0, W1, b1 = (_F(p["filter"][n]) for n in ("W0", "b0", "W1", "b1"))
    y = f * (_F(p["W_in"]) if W_in is None else W_in)
    agg = sp.zeros(f.shape[0], y.shape[1])
    for j, i in EDGES.T:
        dvec = X.row(int(j)) - X.row(int(i))
        d = sp.sqrt(sum(c**2 for c in dvec))
        e = sp.Matrix(
            [[sp.exp(-sp.Float(k.gamma, 40) * (d - sp.Float(m, 40)) ** 2) for m in k.offsets]]
        )
        z1 = e * W0 + b0
        s1 = z1.applyfunc(ssp)
        C = (sp.cos(sp.pi * d / layer.cutoff) + 1) / 2
        w = (s1 * W1 + b1) * C
        agg[int(i), :] += w.multiply_elementwise(y.row(int(j)))
    return agg * _F(p["W_out"]) + sp.ones(f.shape[0], 1) * _F(p["b_out"]), ssp


def _symbols(n, m, name):
    return sp.Matrix(n, m, lambda a, b: sp.Symbol(f"{name}{a}{b}"))


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _grad(L, syms, values):
    """Value and exact gradient of the SymPy scalar ``L`` at ``values``, evaluated at 30 digits."""
    mp.mp.dps = 30
    fn = sp.lambdify(syms, [L] + [sp.diff(L, s) for s in syms], modules="mpmath", cse=True)
    res = fn(*[mp.mpf(float(v)) for v in values])
    return float(res[0]), np.array([float(r) for r in res[1:]])


def _positions(rng, cutoff):
    # every edge shorter than the cutoff, so the smooth branch of C(d) is the one differentiated
    while True:
        pos = rng.normal(size=(3, 3))
        if max(np.linalg.norm(pos[j] - pos[i]) for j, i in EDGES.T) < 0.9 * cutoff:
            return pos


def check_cfconv(constants="exact") -> float:
    """Gradients of L = <cot, CFConv(f, x)> w.r.t. x, f and W_in: backward vs SymPy."""
    rng = np.random.default_rng(7)
    layer = CFConv(2, 2, 2, num_rbf=3, cutoff=2.5, constants=constants)
    p = layer.init(rng)
    pos, f, cot = _positions(rng, 2.5), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    out, cache = layer.forward(p, make_graph(EDGES, 3), f, pos)
    assert (
        layer.consts.softplus_threshold is None or cache.z1.max() < layer.consts.softplus_threshold
    )
    grads, (g_f, g_pos) = layer.backward(p, cache, cot)
    X, Fs, Win = _symbols(3, 3, "x"), _symbols(3, 2, "f"), _symbols(2, 2, "w")
    out_sym, _ = _sym_cfconv(layer, p, Fs, X, W_in=Win)
    L = sum(sp.Float(cot[a, b], 40) * out_sym[a, b] for a in range(3) for b in range(2))
    syms = list(X) + list(Fs) + list(Win)
    val, g = _grad(L, syms, np.concatenate([pos.ravel(), f.ravel(), p["W_in"].ravel()]))
    return max(
        abs(val - np.sum(cot * out)) / abs(val),
        _rel(g_pos.ravel(), g[:9]),
        _rel(g_f.ravel(), g[9:15]),
        _rel(grads["W_in"].ravel(), g[15:]),
    )


def check_schnet(constants="exact") -> float:
    """Forces of a 2-interaction SchNet energy: backward vs SymPy, through the edge lengths.

    The energy is built symbolically as a function of the four edge lengths ``d_e`` (every block
    reads the same ``d``, step 5 of the lesson); the forces are then
    ``sum_e dE/dd_e * dd_e/dx`` with both factors from ``sympy.diff``.
    """
    rng = np.random.default_rng(11)
    model = SchNet(
        hidden=2,
        num_filters=2,
        num_interactions=2,
        num_rbf=3,
        cutoff=2.5,
        max_z=4,
        constants=constants,
    )
    p = model.init(rng)
    pos = _positions(rng, 2.5)
    z = np.array([1, 3, 2])
    energy, cache = model.forward(p, make_graph(EDGES, 3), z, pos)
    _, (_, g_pos) = model.backward(p, cache, np.ones(1))
    k = model.interaction.conv.consts
    conv = model.interaction.conv
    D = sp.symbols("d0:4", positive=True)

    def ssp(v):
        return sp.log(1 + sp.exp(v)) - sp.Float(k.shift, 40)

    def cfconv(pc, h):
        W0, b0, W1, b1 = (_F(pc["filter"][n]) for n in ("W0", "b0", "W1", "b1"))
        y = h * _F(pc["W_in"])
        agg = sp.zeros(3, y.shape[1])
        for e, (j, i) in enumerate(EDGES.T):
            g = sp.Matrix(
                [
                    [
                        sp.exp(-sp.Float(k.gamma, 40) * (D[e] - sp.Float(m, 40)) ** 2)
                        for m in k.offsets
                    ]
                ]
            )
            w = (
                ((g * W0 + b0).applyfunc(ssp) * W1 + b1)
                * (sp.cos(sp.pi * D[e] / conv.cutoff) + 1)
                / 2
            )
            agg[int(i), :] += w.multiply_elementwise(y.row(int(j)))
        return agg * _F(pc["W_out"]) + sp.ones(3, 1) * _F(pc["b_out"])

    h = _F(p["embedding"][z])
    for t in range(model.num_interactions):
        pt = p["interactions"][str(t)]
        h = h + cfconv(pt["conv"], h).applyfunc(ssp) * _F(pt["W"]) + sp.ones(3, 1) * _F(pt["b"])
    a1 = (h * _F(p["W_out1"]) + sp.ones(3, 1) * _F(p["b_out1"])).applyfunc(ssp)
    E = sum(a1 * _F(p["W_out2"]) + sp.ones(3, 1) * _F(p["b_out2"]))
    dvals = [np.linalg.norm(pos[j] - pos[i]) for j, i in EDGES.T]
    val, g_d = _grad(E, list(D), dvals)
    # dd_e/dx for d_e = |x_j - x_i|, also by sympy.diff
    X = _symbols(3, 3, "x")
    forces = np.zeros((3, 3))
    subs = {X[a, b]: pos[a, b] for a in range(3) for b in range(3)}
    for e, (j, i) in enumerate(EDGES.T):
        d_e = sp.sqrt(sum((X[int(j), c] - X[int(i), c]) ** 2 for c in range(3)))
        for a in range(3):
            for b in range(3):
                forces[a, b] += g_d[e] * float(sp.diff(d_e, X[a, b]).evalf(30, subs=subs))
    return max(abs(val - energy[0]) / abs(val), _rel(g_pos, forces))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    ok = True
    for name, diff in derive_radial().items():
        good = diff == 0
        ok &= good
        print(f"{name:10s} hand formula - sympy.diff = {diff}  {'ok' if good else 'FAIL'}")
    for name, fn in [
        ("CFConv grads (pos, f, W_in), exact", lambda: check_cfconv("exact")),
        ("CFConv grads (pos, f, W_in), pyg", lambda: check_cfconv("pyg")),
        ("SchNet forces, pyg", lambda: check_schnet("pyg")),
    ]:
        err = fn()
        good = err <= TOL
        ok &= good
        print(f"{name:34s} max rel err vs SymPy {err:.2e}  {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
