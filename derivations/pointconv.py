r"""Lesson 3: point convolutions -- a learned kernel of the relative position, and its backward.

The layer (``geomp_ref/layers/pointconv.py``; Wu et al. 2019; the PointConv of Finzi et al.
2020) is lesson 1's convolution on an irregular point cloud::

    a_ij   = x_j - x_i          ("relative")   or   |x_j - x_i|   ("distance")
    k_ij   = k(a_ij)            a kernel spec (layers/kernels.py): MLP, radial basis + MLP, B-spline
    agg_i  = sum_{j -> i} k_ij * f_j          (depthwise: one kernel value per channel)
    f'_i   = agg_i W_f + b_f                  (channel mixing)

Claims
------
1. *It is message passing*: ``m_ij = k(x_j - x_i) * f_j``, ``phi_f(f_i, s) = s W_f + b_f``
   (``special_cases.py`` checks this identity against the edge loop of lesson 1).
2. *Symmetry*: translation equivariant for every kernel; with the relative input a rotation
   changes the output (lesson 2's counter-example, now for a linear layer); with the distance
   input, or any kernel satisfying ``k(Q a) = k(a)``, it is E(3)-invariant -- an *isotropic*
   kernel, which in 3-D means a function of ``|a|`` only. ``check_symmetry`` measures both.
3. *Depthwise is enough*: a full kernel ``K(a) in R^{C_in x C_out}`` of rank K written as
   ``sum_k k_k(a) W_k`` is a depthwise kernel of K channels on the features repeated K times,
   followed by one dense map -- LieConv's "PointConv trick", used by ``LieConv``.

The backward pass (reverse order; g_<name> = cotangent)
-------------------------------------------------------
1. ``g_agg = g_out W_f^T``, ``g_W_f = agg^T g_out``, ``g_b_f = sum_i g_out_i``.
2. The sum is bilinear in (k, f): ``g_k_ij = g_agg_i * f_j`` (an edge product) and
   ``g_f_j = sum_{i <- j} k_ij * g_agg_i`` -- the same fused weighted sum on the *reversed* graph
   (``derivations/gather_scatter.py``).
3. The kernel spec's own VJP gives ``g_params`` and ``g_a_ij``.
4. ``a = x_j - x_i``: ``+g_a`` to the sender j, ``-g_a`` to the receiver i
   (``edge_vectors_vjp``); for the distance input first ``g_(x_j - x_i) = g_a (x_j - x_i)/|.|``.

``check_backward`` differentiates ``L = <g_out, PointConv(f, x)>`` symbolically (SymPy) with
respect to every feature, coordinate, kernel weight and mixing weight on a 3-node graph with a
self-loop (the relative kernel accepts ``a = 0``), evaluates at 30 digits and compares with
``PointConv.backward``.

Run: ``python derivations/pointconv.py [--check]`` (a few seconds; exit status 0 on success).
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
from geomp_ref.layers import MLPKernel, PointConv
from geomp_ref.testing import random_orthogonal

TOL = 1e-12
EDGES = np.array([[0, 1, 1, 2, 2], [1, 0, 2, 0, 2]])  # senders j -> receivers i; (2, 2) a loop


def _silu(z):
    return z / (1 + sp.exp(-z))


def _symbolic_params(shapes, prefix=""):
    """A params tree of SymPy symbols with the given shapes, and the flat list of symbols."""
    tree, flat = {}, []
    for key, shape in shapes.items():
        if isinstance(shape, dict):
            tree[key], sub = _symbolic_params(shape, f"{prefix}{key}_")
            flat += sub
        else:
            syms = sp.symbols(f"{prefix}{key}_0:{int(np.prod(shape))}", real=True)
            tree[key] = sp.Matrix(np.array(syms, dtype=object).reshape(shape if len(shape) == 2
                                                                         else (1, shape[0])))
            flat += list(syms)
    return tree, flat


def _mlp(p, x, act_last):
    n = len([k for k in p if k.startswith("W")])
    for k in range(n):
        x = x * p[f"W{k}"] + p[f"b{k}"]
        if k < n - 1 or act_last:
            x = x.applyfunc(_silu)
    return x


def check_backward() -> float:
    """Max relative error of ``PointConv.backward`` against SymPy (all params and inputs)."""
    rng = np.random.default_rng(5)
    N, D, C, O = 3, 2, 2, 2
    kernel = MLPKernel(D, C, (3,), "silu", activate_last=True)
    layer = PointConv(C, O, dim=D, kernel=kernel)
    params = layer.init(rng)
    f, x = rng.normal(size=(N, C)), rng.normal(size=(N, D))
    graph = make_graph(EDGES, N)
    out, cache = layer.forward(params, graph, f, x)
    cot = rng.normal(size=out.shape)
    grads, (g_f, g_x) = layer.backward(params, cache, cot)

    P, p_syms = _symbolic_params(layer.param_shapes())
    fs = sp.Matrix(N, C, sp.symbols(f"f0:{N * C}", real=True))
    xs = sp.Matrix(N, D, sp.symbols(f"x0:{N * D}", real=True))
    agg = [sp.zeros(1, C) for _ in range(N)]
    for j, i in EDGES.T:
        k = _mlp(P["kernel"], xs.row(j) - xs.row(i), True)  # k(x_j - x_i)
        agg[i] += k.multiply_elementwise(fs.row(j))
    L = sum((((agg[i] * P["W_f"] + P["b_f"]) * sp.Matrix(cot[i])))[0, 0] for i in range(N))
    args = list(fs) + list(xs) + p_syms
    grad = sp.lambdify(args, [sp.diff(L, s) for s in args], modules="mpmath", cse=True)
    mp.mp.dps = 30
    values = list(f.ravel()) + list(x.ravel()) + list(_flat_values(params, layer.param_shapes()))
    want = np.array([float(v) for v in grad(*[mp.mpf(float(v)) for v in values])])
    ours = np.concatenate([g_f.ravel(), g_x.ravel(), _flat_values(grads, layer.param_shapes())])
    return float(np.abs(ours - want).max() / np.abs(want).max())


def _flat_values(tree, shapes):
    """Leaves of ``tree`` in the order :func:`_symbolic_params` lists the symbols."""
    out = []
    for key, shape in shapes.items():
        if isinstance(shape, dict):
            out.append(_flat_values(tree[key], shape))
        else:
            out.append(np.asarray(tree[key], float).ravel())
    return np.concatenate(out)


def check_symmetry() -> dict:
    """Claim 2 measured: ``{name: (relative change of the output, must be small)}``."""
    rng = np.random.default_rng(6)
    N, C = 9, 4
    pairs = [(j, i) for i in range(N) for j in range(N) if i != j]
    graph = make_graph(np.array(pairs).T, N)
    f, x = rng.normal(size=(N, C)), rng.normal(size=(N, 3))
    Q, t = random_orthogonal(rng, 3, proper=False), rng.normal(size=3)
    res = {}
    for mode in ("relative", "distance"):
        layer = PointConv(C, 3, kernel_input=mode)
        p = layer.init(rng)
        y = layer(p, graph, f, x)
        s = np.abs(y).max()
        res[f"{mode}: translation"] = (np.abs(layer(p, graph, f, x + t) - y).max() / s, True)
        res[f"{mode}: rotation x reflection"] = (
            np.abs(layer(p, graph, f, x @ Q.T) - y).max() / s, mode == "distance")
    return res


def check_pointconv_trick() -> float:
    """Claim 3: ``sum_j (sum_k k_k(a) W_k)^T f_j`` = depthwise K-channel sum, then one dense map."""
    rng = np.random.default_rng(7)
    E, Cin, Cout, K = 6, 3, 2, 4
    kv = rng.normal(size=(E, K))  # kernel values k_k(a_ij) on E edges into one receiver
    W = rng.normal(size=(K, Cin, Cout))
    f_j = rng.normal(size=(E, Cin))
    full = np.einsum("ek,kco,ec->o", kv, W, f_j)  # sum_e K(a_e)^T f_e, K(a) = sum_k k_k(a) W_k
    # depthwise: features repeated K times (index k Cin + c), kernel value k_k on block k
    depthwise = np.sum(np.repeat(kv, Cin, axis=1) * np.tile(f_j, (1, K)), axis=0)
    trick = depthwise @ W.reshape(K * Cin, Cout)
    return float(np.abs(full - trick).max() / np.abs(full).max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    ok = True
    for name, (err, small) in check_symmetry().items():
        good = err <= TOL if small else err > 1e-2
        ok &= good
        want = "invariant" if small else "changes"
        print(f"symmetry, {name:32s} {err:.1e} ({want})  {'ok' if good else 'FAIL'}")
    err = check_pointconv_trick()
    ok &= err <= TOL
    print(f"full rank-K kernel = depthwise K channels + dense   {err:.1e}  "
          f"{'ok' if err <= TOL else 'FAIL'}")
    err = check_backward()
    ok &= err <= TOL
    print(f"PointConv.backward vs SymPy (f, x, kernel, W_f, b_f) max rel err {err:.1e}  "
          f"{'ok' if err <= TOL else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
