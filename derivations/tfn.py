r"""Lesson 7: TFNConv's backward, checked by SymPy on a 3-node graph.

The lesson
----------
1. Everything a steerable convolution knows about geometry enters through one edge vector
   x_ij = x_j - x_i, its length r = |x_ij| and its direction u = x_ij / r:

       a_ij = phi(r / r_max) Y(u),       e_k = sqrt(B)/1.12 exp(-((r - mu_k)/Delta)^2),
       w_ij = R(e)  (radial network).

   Chain rule for the direction: du/dx = (I - u u^T) / r (the projection removes the radial
   part, which does not change u), so x̄ = (I - u u^T) ū / r with ū = J_Y^T Ȳ. For the length,
   dr/dx = u, so x̄ += r̄ u, where r̄ collects the cutoff, phi'(r/r_max)/r_max <ā, Y>, and the
   Gaussians, de_k/dr = -2 e_k (r - mu_k)/Delta^2. Finally the edge vector is a difference of two
   gathers: x̄_j += x̄_ij and x̄_i -= x̄_ij (edge_vectors_vjp).
2. The feature path is linear maps and a bilinear tensor product, m_ij = TP(L1(f)_j, a_ij; w_ij):
   every product rule gives one term per factor (derivations/tensor_product.py proves the TP's),
   the sum over j at i reverses into a gather at the receivers, and the gather of L1(f)_j
   reverses into a sum at the senders.
3. The gate multiplies each l > 0 irrep by an activated scalar: product rule again.

The check builds the whole layer *symbolically* for irreps 1x0e+1x1o, harmonics l <= 1 (the
closed forms Y^0 = 1, Y^1 = sqrt(3) (x, y, z)/r, not the library's), exact Clebsch–Gordan tensors
(geomp_ref.o3.wigner.exact_coupling) and symbols for positions, features and some weights; SymPy
differentiates L = <cot, out>, and the values are compared with TFNConv.backward.

Run ``python3 derivations/tfn.py --check`` (default): exit status 0 on success.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import sympy as sp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# --- symbolic building blocks (shared with derivations/segnn.py) ------------------------------


def silu(x):
    return x / (1 + sp.exp(-x))


def sigmoid(x):
    return 1 / (1 + sp.exp(-x))


ACTS = {"silu": silu, "sigmoid": sigmoid, "tanh": sp.tanh}


def sh_l1(v, normalization="component"):
    """Y^0 + Y^1 of the direction of v (closed form)."""
    r = sp.sqrt(sum(c * c for c in v))
    s = {"component": 1, "norm": 1, "integral": 1 / sp.sqrt(4 * sp.pi)}[normalization]
    s1 = {"component": 1, "norm": 1 / sp.sqrt(3), "integral": 1 / sp.sqrt(4 * sp.pi)}[
        normalization]
    return [s * sp.Integer(1)] + [s1 * sp.sqrt(3) * c / r for c in v]


def _cg(l1, l2, l3):
    from geomp_ref.o3.wigner import exact_coupling

    return exact_coupling(l1, l2, l3)


def _ls(irreps):
    return [(mul, ir.l) for mul, ir in irreps]


def sym_linear(spec, w, x):
    """o3.Linear on one row ``x`` (list) with weights ``w`` (list)."""
    out = [sp.Integer(0)] * spec.irreps_out.dim
    for sl_in, sl_out, mi, mo, d, slw, coeff in spec._tables[0]:
        W = np.array(w[slw], dtype=object).reshape(mi, mo)
        for wo in range(mo):
            for m in range(d):
                out[sl_out.start + wo * d + m] += coeff * sum(
                    W[u, wo] * x[sl_in.start + u * d + m] for u in range(mi))
    return out


def sym_tp(spec, x1, x2, w):
    """o3.TensorProduct on one row (uvw and uvu paths)."""
    b1, b2, bo = _ls(spec.irreps_in1), _ls(spec.irreps_in2), _ls(spec.irreps_out)
    out = [sp.Integer(0)] * spec.irreps_out.dim
    for ins, c_p, tab in zip(spec.instructions, spec.path_coefficients, spec._tables):
        sl1, sl2, slo, (m1, m2, mo), (d1, d2, do), _, slw, live = tab
        if not live:
            continue
        C = _cg(b1[ins.i_in1][1], b2[ins.i_in2][1], bo[ins.i_out][1])
        W = np.array(w[slw], dtype=object).reshape(ins.path_shape)
        for u in range(m1):
            for v in range(m2):
                for (i, j, k), c in C.items():
                    prod = c_p * c * x1[sl1.start + u * d1 + i] * x2[sl2.start + v * d2 + j]
                    if ins.connection_mode == "uvw":
                        for wo in range(mo):
                            out[slo.start + wo * do + k] += W[u, v, wo] * prod
                    elif ins.connection_mode == "uvu":
                        out[slo.start + u * do + k] += W[u, v] * prod
                    else:
                        raise NotImplementedError(ins.connection_mode)
    return out


def sym_gate(gate, x, constants):
    """The gate written from its definition: input = stable sort (by l, then odd before even)
    of the simplified scalars, gates and gated lists; scalars and gates activated and scaled by
    their second-moment constant; gated irrep copy k times activated gate k."""
    from geomp_ref.o3.activations import resolve_activation

    def act_constant(name, constants):
        return resolve_activation(name, constants, "act").c

    def simplified(irreps):
        out = []
        for mul, ir in irreps:
            if out and out[-1][1] == (ir.l, ir.p):
                out[-1][0] += mul
            elif mul:
                out.append([mul, (ir.l, ir.p)])
        return out

    parts = [simplified(gate.irreps_scalars), simplified(gate.irreps_gates),
             simplified(gate.irreps_gated)]
    blocks = [(k, mul, lp) for k, part in enumerate(parts) for mul, lp in part]
    order = sorted(range(len(blocks)), key=lambda b: (blocks[b][2], b))
    start, pos = {}, 0
    for b in order:
        start[b] = pos
        pos += blocks[b][1] * (2 * blocks[b][2][0] + 1)
    cols = [[], [], []]
    for b, (k, mul, (l, _)) in enumerate(blocks):
        cols[k].extend(range(start[b], start[b] + mul * (2 * l + 1)))
    acts_s = [a for (mul, _), a in zip(gate.irreps_scalars, gate.act_scalars) for _ in range(mul)]
    acts_g = [a for (mul, _), a in zip(gate.irreps_gates, gate.act_gates) for _ in range(mul)]
    ys = [act_constant(a, constants) * ACTS[a](x[c]) for a, c in zip(acts_s, cols[0])]
    bg = [act_constant(a, constants) * ACTS[a](x[c]) for a, c in zip(acts_g, cols[1])]
    copy = [k for k, (mul, ir) in enumerate(
        [(1, ir) for mul, ir in gate.irreps_gated for _ in range(mul)]) for _ in range(ir.dim)]
    return ys + [x[c] * bg[copy[n]] for n, c in enumerate(cols[2])]


def evaluate(expr, t=None):
    """Value of ``expr`` (at ``t = 0``) with mpmath at 30 digits, evaluating every common
    subexpression once (plain ``evalf`` re-walks shared subtrees, exponentially often)."""
    import mpmath

    args = [t] if t is not None else []
    fn = sp.lambdify(args, expr, modules="mpmath", cse=True)
    with mpmath.workdps(30):
        return fn(*([mpmath.mpf(0)] if t is not None else []))


def directional(build, directions, base_values, analytic_grads):
    """Max relative error of SymPy's d/dt L(x + t d) at t = 0 against <grad, d>.

    ``build(t_values)`` returns L as a SymPy expression in the single symbol ``t``; keeping one
    symbol (the rest are numbers) keeps the expression small enough to differentiate quickly.
    """
    t = sp.Symbol("t")
    errs = []
    for d, g in zip(directions, analytic_grads):
        L = build([b + t * dd for b, dd in zip(base_values, d)])
        sym = float(evaluate(sp.diff(L, t), t))
        an = float(np.dot(np.asarray(d, dtype=float), np.asarray(g, dtype=float)))
        errs.append(abs(sym - an) / max(abs(sym), 1e-300))
    return max(errs)


# --- the TFN model -------------------------------------------------------------------------


def sym_tfn(lay, params, graph, P, F, W0):
    """Symbolic TFNConv forward; ``P`` (N x 3), ``F`` (N x d) and ``W0`` are SymPy objects."""
    n = graph.num_nodes
    from geomp_ref.o3.activations import resolve_activation

    c_silu = resolve_activation("silu", lay.act_constants, "act").c
    B, rmax = lay.num_basis, lay.max_radius
    mu = [sp.Float(m, 30) for m in np.linspace(0, rmax, B)]
    delta = mu[1] - mu[0]
    x = [sym_linear(lay.lin1, params["lin1"]["weight"], F[i]) for i in range(n)]
    agg = [[sp.Integer(0)] * lay.tp.irreps_out.dim for _ in range(n)]
    for j, i in graph.edge_index.T:
        v = [P[j][k] - P[i][k] for k in range(3)]
        r = sp.sqrt(sum(t * t for t in v))
        xr = r / rmax
        phi = (1 - sp.cos(sp.pi * 2 * (xr - 1))) / 2  # the middle branch (checked below)
        a = [phi * y for y in sh_l1(v, lay.sh_normalization)]
        e = [sp.sqrt(B) / sp.Float("1.12", 30) * sp.exp(-((r - m) / delta) ** 2) for m in mu]
        h = [c_silu * silu(sum(e[k] * W0[k, q] for k in range(B)) / sp.sqrt(B))
             for q in range(lay.radial_neurons)]
        W1 = params["radial"]["W1"]
        wts = [sum(h[q] * W1[q, t] for q in range(len(h))) / sp.sqrt(len(h))
               for t in range(W1.shape[1])]
        m = sym_tp(lay.tp, x[j], a, wts)
        agg[i] = [s + t for s, t in zip(agg[i], m)]
    out = []
    c_s, c_x = lay._mix
    for i in range(n):
        g = [t / sp.sqrt(lay.num_neighbors) for t in agg[i]]
        y = sym_linear(lay.lin2, params["lin2"]["weight"], g)
        s = sym_linear(lay.sc, params["sc"]["weight"], F[i])
        conv = [c_s * a + cx * b for a, b, cx in zip(s, y, c_x)]
        out.append(sym_gate(lay.gate_plan, conv, lay.act_constants))
    return out


def check_tfn(rng) -> float:
    from geomp_ref.graph import make_graph
    from geomp_ref.layers.tfn import TFNConv

    lay = TFNConv("1x0e+1x1o", "1x0e+1x1o", lmax=1, max_radius=3.0, num_basis=3,
                  radial_neurons=2, num_neighbors=2.0)
    params = lay.init(rng)
    graph = make_graph(np.array([[0, 1, 2, 0], [1, 2, 0, 2]]), 3)
    # distances in (r_max/2, r_max): the cutoff's cosine branch is the active one
    pos = np.array([[0.0, 0.1, 0.2], [1.7, 0.3, -0.4], [0.4, 1.8, 0.5]])
    d = np.linalg.norm(pos[graph.src] - pos[graph.dst], axis=1)
    assert np.all((d > 1.5) & (d < 3.0)), d
    f = rng.normal(size=(3, 4))
    out, cache = lay.forward(params, graph, f, pos)
    cot = rng.normal(size=out.shape)
    grads, (g_f, g_pos) = lay.backward(params, cache, cot)
    base = list(pos.ravel()) + list(f.ravel()) + list(params["radial"]["W0"].ravel())
    analytic = list(g_pos.ravel()) + list(g_f.ravel()) + list(grads["radial"]["W0"].ravel())

    def build(vals, with_cot=True):
        P = [vals[3 * i:3 * i + 3] for i in range(3)]
        F = [vals[9 + 4 * i:9 + 4 * i + 4] for i in range(3)]
        W0 = sp.Matrix(3, 2, vals[21:27])
        out_s = sym_tfn(lay, params, graph, P, F, W0)
        if not with_cot:
            return out_s
        return sum(float(cot[i, k]) * out_s[i][k] for i in range(3) for k in range(out.shape[1]))

    # the symbolic forward reproduces the layer
    fwd = np.array([[float(evaluate(t)) for t in row] for row in build(base, False)])
    err_fwd = float(np.max(np.abs(fwd - out)) / np.max(np.abs(out)))
    # one direction in positions only, one in features only, one in W0 only
    dirs = []
    for lo, hi in ((0, 9), (9, 21), (21, 27)):
        d = np.zeros(27)
        d[lo:hi] = rng.normal(size=hi - lo)
        dirs.append(d)
    err = directional(build, dirs, base, [analytic] * len(dirs))
    return max(err, err_fwd)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify (default)")
    parser.parse_args(argv)
    t0 = time.perf_counter()
    err = check_tfn(np.random.default_rng(0))
    ok = err < 1e-12
    print(f"TFNConv: SymPy forward and gradients (pos, f, radial W0) vs backward, max rel error "
          f"{err:.1e}")
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
