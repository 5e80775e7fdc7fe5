r"""SEGNNLayer's backward, checked by SymPy on a one-edge graph.

The lesson
----------
1. A steerable layer z = sqrt(F) FCTP_W(x, a) + b is bilinear in (x, a) and linear in W, so its
   VJP is the tensor product's (derivations/tensor_product.py) scaled by the same sqrt(F); the
   bias's gradient is the column sum of the cotangent over the biased (l = 0) columns.
2. The message m_ij = G2(G1([h_i, h_j, s_ij] ⊗ a_ij) ⊗ a_ij) uses h twice (as receiver and as
   sender), so h̄ collects a sum at the receivers *and* a sum at the senders (micrograd's rule:
   add the contributions of an input used twice).
3. The attributes depend on the positions three times: a_ij = Y(x_ij/|x_ij|) in both message
   layers, a_i = mean_j a_ij in both update layers (its l = 0 entry is overwritten by a constant,
   so that column's cotangent is dropped), and s_ij = |x_ij|^2 with s̄ -> 2 s̄ x_ij. All three are
   summed into x̄_ij before the final gather-difference x̄_j += x̄_ij, x̄_i -= x̄_ij.

The check writes the layer for hidden irreps 1x0e+1x1o and l <= 1 attributes symbolically (closed
form harmonics, exact Clebsch–Gordan tensors), restricts it to a line x + t d through the inputs
and parameters, lets SymPy differentiate in t, and compares with <SEGNNLayer.backward, d>, for
both modes (reference: integral harmonics, a_i^0 = 1; corrected: a_i^0 = Y^0).

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
    """O3TensorProduct on one row: sqrt(F) * FCTP + bias (p holds SymPy or float entries)."""
    z = sym_tp(spec.tp, x1, x2 if x2 is not None else [sp.Integer(1)], p["weight"])
    z = [float(r) * t for r, t in zip(spec._rescale, z)]
    for n, c in enumerate(spec._bias_cols):
        z[c] = z[c] + p["bias"][n]
    return z


def sym_o3tp_gate(spec, p, x1, x2):
    z = sym_o3tp(spec.tp, p, x1, x2)
    return (sym_gate(spec.gate, z, spec.act_constants) if spec.gate is not None
            else [silu(t) for t in z])


def sym_segnn_layer(lay, p, graph, P, H):
    n = graph.num_nodes
    y0 = {"component": 1, "norm": 1, "integral": 1 / sp.sqrt(4 * sp.pi)}[lay.sh_normalization]
    a_ij, s_ij = [], []
    for j, i in graph.edge_index.T:
        v = [P[j][k] - P[i][k] for k in range(3)]
        a_ij.append(sh_l1(v, lay.sh_normalization))
        s_ij.append(sum(t * t for t in v))
    a_i = []
    for i in range(n):
        es = [e for e, d in enumerate(graph.dst) if d == i]
        mean = [sum(a_ij[e][c] for e in es) / max(len(es), 1) for c in range(4)]
        mean[0] = sp.Integer(1) if lay.mode == "reference" else y0
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
    from geomp_ref.layers.segnn import SEGNNLayer

    lay = SEGNNLayer("1x0e+1x1o", lmax_attr=1, mode=mode, sh_normalization=norm)
    params = lay.init(rng)
    graph = make_graph(np.array([[0], [1]]), 2)  # one edge 0 -> 1; node 0 has no neighbour
    pos = rng.normal(size=(2, 3))
    h = rng.normal(size=(2, 4))
    out, cache = lay.forward(params, graph, h, pos)
    cot = rng.normal(size=out.shape)
    grads, (g_h, g_pos) = lay.backward(params, cache, cot)
    nb = params["msg1"]["bias"].size
    base = list(pos.ravel()) + list(h.ravel()) + list(params["msg1"]["bias"])
    analytic = list(g_pos.ravel()) + list(g_h.ravel()) + list(grads["msg1"]["bias"])
    n_p, n_h = 6, 8

    def build(vals, with_cot=True):
        P = [vals[3 * i:3 * i + 3] for i in range(2)]
        H = [vals[n_p + 4 * i:n_p + 4 * i + 4] for i in range(2)]
        p = {k: dict(v) for k, v in params.items()}
        p["msg1"]["bias"] = vals[n_p + n_h:n_p + n_h + nb]
        o = sym_segnn_layer(lay, p, graph, P, H)
        if not with_cot:
            return o
        return sum(float(cot[i, k]) * o[i][k] for i in range(2) for k in range(4))

    fwd = np.array([[float(evaluate(t)) for t in row] for row in build(base, False)])
    err_fwd = float(np.max(np.abs(fwd - out)) / np.max(np.abs(out)))
    dirs = []
    for lo, hi in ((0, n_p), (n_p, n_p + n_h), (n_p + n_h, n_p + n_h + nb)):
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
        print(f"SEGNNLayer[{mode}, {norm}]: SymPy forward and directional derivatives (pos, h, "
              f"msg1 bias) vs backward, max rel error {err:.1e}")
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
