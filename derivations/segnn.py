r"""Lesson 7: SEGNN's backward (attributes, message-passing layer, instance norm), checked by SymPy.

The lesson
----------
1. A steerable layer z = FCTP_W(x, a) / F^{-1/2} + b is bilinear in (x, a) and linear in W, so
   its VJP is the tensor product's (derivations/tensor_product.py) through the same rescaling;
   the bias's gradient is the column sum of the cotangent over the biased (l = 0) columns.
2. The message m_ij = G2(G1([h_i, h_j, s_ij] ⊗ a_ij) ⊗ a_ij) uses h twice (as receiver and as
   sender), so h̄ collects a sum at the receivers *and* a sum at the senders (micrograd's rule:
   add the contributions of an input used twice).
3. Computed attributes depend on the positions three times: a_ij = Y(x_ij/|x_ij|) in both message
   layers, a_i = mean_j a_ij in both update layers (its l = 0 entry is overwritten by a constant,
   so that column's cotangent is dropped), and s_ij = |x_ij|^2 with s̄ -> 2 s̄ x_ij. All three are
   summed into x̄_ij before the final gather-difference x̄_j += x̄_ij, x̄_i -= x̄_ij.
4. Instance norm, per graph g and field u: y = w σ f + b with f centred (scalars) and
   σ = (mean_g q + ε)^{-1/2}, q = mean_m f_m^2. σ depends on every node of the graph, so
   f̄_i = w σ ȳ_i + (2/d) f_i q̄_i with q̄_i = -½ w σ^3 s̄ / |V_g| and s̄ = Σ_{j∈g} <ȳ_j, f_j>;
   the centring then subtracts the graph mean of f̄ (the centring is a projection, so its adjoint
   is the same projection).

The checks write each piece symbolically: the layer on a one-edge graph for hidden irreps
1x0e+1x1o and l <= 1 attributes computed from positions (closed-form harmonics, exact
Clebsch–Gordan tensors, the published a_i^0 = 1), restricted to lines x + t d through the
positions and through features and biases; and the instance norm on two graphs
for irreps 1x0e+1x0o+1x1o, along lines through the input, the weights and the biases. SymPy
differentiates in t and the result is compared with the library's backward.

Run ``python3 derivations/segnn.py --check`` (default): exit status 0 on success.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import sympy as sp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tfn import directional, evaluate, sh_l1, silu, sym_gate, sym_tp


def sym_o3tp(spec, p, x1, x2):
    """O3TensorProduct on one row: FCTP / sqrt_k + bias (p holds SymPy or float entries)."""
    z = sym_tp(spec.tp, x1, x2 if x2 is not None else [sp.Integer(1)], p["weight"])
    z = [t / float(k) for k, t in zip(spec._sqrt_k, z)]
    for n, c in enumerate(spec._bias_cols):
        z[c] = z[c] + p["bias"][n]
    return z


def sym_o3tp_gate(spec, p, x1, x2):
    z = sym_o3tp(spec.tp, p, x1, x2)
    if spec.gate is None:
        return [silu(t) for t in z]
    if spec._columns is not None:
        z = [z[c] for c in spec._columns]
    return sym_gate(spec.gate, z, spec.act_constants)


def sym_segnn_layer(net, p, graph, P, H):
    """SEGNN's attributes from positions P, then one layer on features H."""
    lay = net.layer
    n = graph.num_nodes
    y0 = {"component": 1, "norm": 1, "integral": 1 / sp.sqrt(4 * sp.pi)}[net.sh_normalization]
    a_ij, s_ij = [], []
    for j, i in graph.edge_index.T:
        v = [P[j][k] - P[i][k] for k in range(3)]
        a_ij.append(sh_l1(v, net.sh_normalization))
        s_ij.append(sum(t * t for t in v))
    a_i = []
    for i in range(n):
        es = [e for e, d in enumerate(graph.dst) if d == i]
        mean = [sum(a_ij[e][c] for e in es) / max(len(es), 1) for c in range(4)]
        mean[0] = sp.Integer(1) if net.mode == "reference" else y0
        a_i.append(mean)
    agg = [[sp.Integer(0)] * lay.irreps_hidden.dim for _ in range(n)]
    for e, (j, i) in enumerate(graph.edge_index.T):
        inp = list(H[i]) + list(H[j]) + [s_ij[e]]
        m = sym_o3tp_gate(lay.msg1, p["msg1"], inp, a_ij[e])
        m = sym_o3tp_gate(lay.msg2, p["msg2"], m, a_ij[e])
        agg[i] = [s + t for s, t in zip(agg[i], m)]
    out = []
    for i in range(n):
        u = sym_o3tp_gate(lay.upd1, p["upd1"], list(H[i]) + agg[i], a_i[i])
        u = sym_o3tp(lay.upd2, p["upd2"], u, a_i[i])
        out.append([h + t for h, t in zip(H[i], u)])
    return out


def check_layer(mode: str, norm: str, rng) -> float:
    from geomp_ref.graph import make_graph
    from geomp_ref.layers.segnn import SEGNN
    from geomp_ref.layers.segnn_attributes import segnn_attributes, segnn_attributes_vjp

    net = SEGNN("1x0e", "1x0e+1x1o", "1x0e", num_layers=1, lmax_attr=1, task="node", mode=mode,
                sh_normalization=norm)
    lay = net.layer
    params = lay.init(rng)
    graph = make_graph(np.array([[0], [1]]), 2)  # one edge 0 -> 1; node 0 has no neighbour
    pos = rng.normal(size=(2, 3))
    h = rng.normal(size=(2, 4))
    (a_ij, a_i, s_ij), att = segnn_attributes(net, graph, pos, None, None, None)
    out, cache = lay.forward(params, graph, h, a_ij, a_i, s_ij)
    cot = rng.normal(size=out.shape)
    grads, (g_h, g_aij, g_ai, g_s) = lay.backward(params, cache, cot)
    g_pos = segnn_attributes_vjp(net, att, g_aij, g_ai, g_s)[0]
    nb = params["msg1"]["bias"].size
    base = list(pos.ravel()) + list(h.ravel()) + list(params["msg1"]["bias"])
    analytic = list(g_pos.ravel()) + list(g_h.ravel()) + list(grads["msg1"]["bias"])
    n_p, n_h = 6, 8

    def build(vals, with_cot=True):
        P = [vals[3 * i:3 * i + 3] for i in range(2)]
        H = [vals[n_p + 4 * i:n_p + 4 * i + 4] for i in range(2)]
        p = {k: dict(v) for k, v in params.items()}
        p["msg1"]["bias"] = vals[n_p + n_h:n_p + n_h + nb]
        o = sym_segnn_layer(net, p, graph, P, H)
        if not with_cot:
            return o
        return sum(float(cot[i, k]) * o[i][k] for i in range(2) for k in range(4))

    fwd = np.array([[float(evaluate(t)) for t in row] for row in build(base, False)])
    err_fwd = float(np.max(np.abs(fwd - out)) / np.max(np.abs(out)))
    # two lines: through the positions (the geometric chain), and through features and biases
    dirs = []
    for lo, hi in ((0, n_p), (n_p, n_p + n_h + nb)):
        d = np.zeros(len(base))
        d[lo:hi] = rng.normal(size=hi - lo)
        dirs.append(d)
    return max(err_fwd, directional(build, dirs, base, [analytic] * len(dirs)))


def sym_instance_norm(spec, X, w, b, batch, num_graphs):
    """The published instance norm, written out per graph and field (rows of X are nodes)."""
    out = [list(row) for row in X]
    iw = ib = 0
    for (mul, ir), sl in zip(spec.irreps, spec.irreps.slices()):
        d = ir.dim
        biased = ir.l == 0 and (ir.p == 1 or spec.mode == "reference")
        for u in range(mul):
            cols = range(sl.start + u * d, sl.start + (u + 1) * d)
            for g in range(num_graphs):
                rows = [i for i in range(len(X)) if batch[i] == g]
                f = {i: [X[i][c] for c in cols] for i in rows}
                if ir.l == 0:
                    mean = sum(f[i][0] for i in rows) / len(rows)
                    f = {i: [f[i][0] - mean] for i in rows}
                q = sum(sum(t * t for t in f[i]) / d for i in rows) / len(rows)
                s = w[iw + u] / sp.sqrt(q + sp.Float(spec.eps, 30))
                for i in rows:
                    for k, c in enumerate(cols):
                        out[i][c] = f[i][k] * s + (b[ib + u] if biased else 0)
        iw += mul
        ib += mul if biased else 0
    return out


def check_instance_norm(mode: str, rng) -> float:
    from geomp_ref.graph import make_graph
    from geomp_ref.layers.segnn_norm import InstanceNorm

    spec = InstanceNorm("1x0e+1x0o+1x1o", mode=mode)
    graph = make_graph(np.zeros((2, 0), np.int64), 5, np.array([0, 0, 0, 1, 1]), 2)
    x = rng.normal(size=(5, 5))
    params = {"weight": rng.normal(size=3), "bias": rng.normal(size=spec.param_shapes()["bias"])}
    out, cache = spec.forward(params, graph, x)
    cot = rng.normal(size=out.shape)
    grads, (g_x,) = spec.backward(params, cache, cot)
    nb = params["bias"].size
    base = list(x.ravel()) + list(params["weight"]) + list(params["bias"])
    analytic = list(g_x.ravel()) + list(grads["weight"]) + list(grads["bias"])

    def build(vals, with_cot=True):
        X = [vals[5 * i:5 * i + 5] for i in range(5)]
        o = sym_instance_norm(spec, X, vals[25:28], vals[28:28 + nb], graph.batch, 2)
        if not with_cot:
            return o
        return sum(float(cot[i, k]) * o[i][k] for i in range(5) for k in range(5))

    fwd = np.array([[float(evaluate(t)) for t in row] for row in build(base, False)])
    err_fwd = float(np.max(np.abs(fwd - out)) / np.max(np.abs(out)))
    dirs = []
    for lo, hi in ((0, 25), (25, 28), (28, 28 + nb)):
        d = np.zeros(len(base))
        d[lo:hi] = rng.normal(size=hi - lo)
        dirs.append(d)
    return max(err_fwd, directional(build, dirs, base, [analytic] * len(dirs)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify (default)")
    parser.parse_args(argv)
    t0 = time.perf_counter()
    ok = True
    rng = np.random.default_rng(0)
    for mode, norm in (("reference", "integral"),):
        err = check_layer(mode, norm, rng)
        ok = ok and err < 1e-12
        print(f"check_layer[{mode}, {norm}]: SymPy forward and directional derivatives (pos, h, "
              f"msg1 bias) vs backward, max rel error {err:.1e}{'' if err < 1e-12 else ' FAILED'}")
    for mode in ("corrected", "reference"):
        err = check_instance_norm(mode, rng)
        ok = ok and err < 1e-12
        print(f"check_instance_norm[{mode}]: SymPy forward and directional derivatives (x, weight, "
              f"bias) vs backward, max rel error {err:.1e}{'' if err < 1e-12 else ' FAILED'}")
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
