r"""Lesson 8: the lecture's identities -- every variant is a special case of one layer.

Each identity below maps the weights of one layer *explicitly* onto another (or onto the edge loop
of lesson 1) and checks that outputs and gradients agree to machine precision. The kernels are
shared through the kernel seam (``geomp_ref/layers/kernels.py``): the same kernel spec, with the
same params, evaluated by both sides.

1. **A point convolution is an MPNN layer** with ``m_ij = k(x_j - x_i) * f_j`` and
   ``phi_f(f_i, s) = s W_f + b_f``: ``PointConv`` against ``message_passing`` (lesson 1's loop
   over edges) with the kernel spec evaluated edge by edge.
2. **SchNet's cfconv is a point convolution with a radial kernel**:
   ``CFConv(f) = PointConv_k(f W_in)`` with the distance as kernel input and
   ``k(d) = (ssp(e(d) W0 + b0) W1 + b1) C(d)`` -- a ``RadialKernel`` with SchNet's Gaussians,
   the shifted softplus and the cosine cutoff on the *output* (``envelope_at="output"``).
   Mapping: ``kernel = params["filter"]``, ``W_f = W_out``, ``b_f = b_out``; ``W_in`` is the
   linear map applied to the features first.
3. **A regular group convolution on the trivial group is a point convolution**: ``GroupConv`` on
   the one-element grid ``"SO2_1"`` (``R_1 = I``) computes
   ``(sum_j kappa(x_ij) * kappa_f(I) * f_j) W + b``; the fibre kernel is a constant vector
   ``c = kappa_f(I)`` that folds into the last layer of the spatial kernel (``W_last c``,
   ``b_last c``).
4. **Lifting, then pooling over the grid, is an invariant point convolution**: the mean over
   ``R_k`` of ``LiftingConv`` is ``PointConv`` with the group-averaged kernel
   ``kbar(x) = (1/G) sum_k kappa(R_k^T x)``, which satisfies ``kbar(Q x) = kbar(x)`` for every
   ``Q`` of the grid's group (``Q R_k`` runs over the grid again). ``GridAveragedKernel`` below is
   that kernel as a kernel spec (any object with the spec interface plugs into ``PointConv``).
5. **A steerable convolution with only l = 0 features and filters is a radial point
   convolution**: ``TFNConv("Cx0e" -> "C'x0e", lmax=0)`` without gate and self-connection is
   ``PointConv_k(L_1 f)`` with e3nn's radial function as the kernel: ``Y^0 = 1`` (component
   normalisation) and the ``0e x 0e -> 0e`` Clebsch-Gordan coefficient is 1, so the tensor
   product is ``w_ij * x_j``. Mapping: ``RadialKernel(basis="e3nn_gaussian",
   envelope="smooth", envelope_at="output", bias=False)``, ``W0 / sqrt(B)``, each later layer
   ``c * W_k / sqrt(h)`` (``c`` the silu's second-moment constant moves through the next linear
   map), the last one also ``/ sqrt(n)`` (the neighbour normalisation), ``L_1 = W_lin1 / sqrt(C)``
   and ``W_f = W_lin2 / sqrt(C)``, ``b_f = 0``.
6. **A Lie group convolution on T(d) is a point convolution**: with poses that are pure
   translations (``R = I``), ``Log(g_i^-1 g_j) = (x_j - x_i, 0)``; ``LieConv`` (sum aggregation)
   with the kernel ``MLPKernel(6, K = C)`` whose first layer ignores the rotation coordinates
   (``W0 = [W0_pc; 0]``) and the contraction ``W[k C + c, o] = delta_kc W_f[c, o]`` is
   ``PointConv``. The translation column of LieConv's pose gradient is the position gradient.

Conventions had to be unified for identities 2 and 5: SchNet's filter and TFN's radial function
multiply the cutoff onto the *output* of the network, while ``RadialKernel`` applied it to the
basis; the kernel gained ``envelope_at`` (default unchanged), e3nn's smooth cutoff
(``envelope="smooth"``) and e3nn's Gaussian embedding (``basis="e3nn_gaussian"``), reusing the
functions TFN itself calls. ``special_cases.py --check`` checks all six.

Run: ``python derivations/special_cases.py [--check]`` (a few seconds; exit status 0 on success).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from message_passing import message_passing

from geomp_ref.graph import make_graph
from geomp_ref.layers import (
    CFConv,
    GroupConv,
    LieConv,
    LiftingConv,
    MLPKernel,
    PointConv,
    RadialKernel,
    TFNConv,
)
from geomp_ref.lie import grids, se3
from geomp_ref.o3.activations import resolve_activation

TOL = 1e-13


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _graph(rng, N, p=0.6, loops=False):
    pairs = [(j, i) for i in range(N) for j in range(N) if (i != j or loops) and rng.random() < p]
    return make_graph(np.array(pairs, dtype=np.int64).reshape(-1, 2).T, N)


def _compare(pairs) -> float:
    """Largest relative difference over ``[(ours, reference), ...]``."""
    return max(_rel(a, b) for a, b in pairs)


# --- 1. PointConv = MPNN with m_ij = k(x_j - x_i) f_j --------------------------------------------


def identity_pointconv_is_mpnn() -> float:
    rng = np.random.default_rng(10)
    N, C, O = 8, 3, 2
    graph = _graph(rng, N, loops=True)
    layer = PointConv(C, O, kernel=MLPKernel(3, C, (6, 6), "silu", activate_last=True))
    p = layer.init(rng)
    f, x = rng.normal(size=(N, C)), rng.normal(size=(N, 3))
    ours = layer(p, graph, f, x)
    loop = message_passing(
        graph, f, x,
        attr=lambda xi, xj: xj - xi,
        phi_m=lambda fi, fj, a: layer.kernel(p["kernel"], a[None])[0] * fj,
        phi_f=lambda fi, agg: agg @ p["W_f"] + p["b_f"],
    )
    return _rel(ours, loop)


# --- 2. CFConv = PointConv with a radial kernel --------------------------------------------------


def identity_cfconv_is_pointconv() -> float:
    rng = np.random.default_rng(11)
    N, H, F, G, rc = 9, 4, 5, 6, 2.5
    graph = _graph(rng, N)
    cf = CFConv(H, 3, F, G, rc)
    p = cf.init(rng)
    f, x = rng.normal(size=(N, H)), rng.normal(size=(N, 3))  # some edges beyond the cutoff
    kernel = RadialKernel(F, G, rc, "gaussian", (F,), "shifted_softplus", envelope="cosine",
                          envelope_at="output")
    pc = PointConv(F, 3, kernel_input="distance", kernel=kernel)
    q = {"kernel": dict(p["filter"]), "W_f": p["W_out"], "b_f": p["b_out"]}
    out_cf, cache_cf = cf.forward(p, graph, f, x)
    y = f @ p["W_in"]  # the node-wise linear map in front of the point convolution
    out_pc, cache_pc = pc.forward(q, graph, y, x)
    g = rng.normal(size=out_cf.shape)
    gp_cf, (gf_cf, gx_cf) = cf.backward(p, cache_cf, g)
    gp_pc, (gy, gx_pc) = pc.backward(q, cache_pc, g)
    return _compare([
        (out_pc, out_cf), (gx_pc, gx_cf), (gy @ p["W_in"].T, gf_cf), (f.T @ gy, gp_cf["W_in"]),
        (gp_pc["W_f"], gp_cf["W_out"]), (gp_pc["b_f"], gp_cf["b_out"]),
        *[(gp_pc["kernel"][k], gp_cf["filter"][k]) for k in ("W0", "b0", "W1", "b1")],
    ])


# --- 3. GroupConv on the trivial group = PointConv -----------------------------------------------


def identity_trivial_group_conv_is_pointconv() -> float:
    rng = np.random.default_rng(12)
    N, C, O = 7, 3, 2
    graph = _graph(rng, N)
    gc = GroupConv(C, O, "SO2_1", hidden=6)
    p = gc.init(rng)
    f, x = rng.normal(size=(N, 1, C)), rng.normal(size=(N, 2))
    c = gc.fiber_kernel(p["fiber_kernel"], np.eye(2).reshape(1, 4))[0]  # kappa_f(R_1^T R_1 = I)
    last = len(gc.kernel.hidden)
    kp = dict(p["kernel"])
    kp[f"W{last}"], kp[f"b{last}"] = kp[f"W{last}"] * c, kp[f"b{last}"] * c
    pc = PointConv(C, O, dim=2, kernel=gc.kernel)
    q = {"kernel": kp, "W_f": p["W"], "b_f": p["b"]}
    out_gc, cache_gc = gc.forward(p, graph, f, x)
    out_pc, cache_pc = pc.forward(q, graph, f[:, 0], x)
    g = rng.normal(size=out_pc.shape)
    gp_gc, (gf_gc, gx_gc) = gc.backward(p, cache_gc, g[:, None])
    gp_pc, (gf_pc, gx_pc) = pc.backward(q, cache_pc, g)
    return _compare([(out_pc, out_gc[:, 0]), (gf_pc, gf_gc[:, 0]), (gx_pc, gx_gc),
                     (gp_pc["W_f"], gp_gc["W"]), (gp_pc["b_f"], gp_gc["b"])])


# --- 4. lifting + pooling = invariant point convolution ------------------------------------------


class GridAveragedKernelCache(NamedTuple):
    inner: tuple  # the wrapped kernel's cache on the rotated coordinates
    M: int  # number of coordinate rows


@dataclass(frozen=True)
class GridAveragedKernel:
    r"""Kernel spec :math:`\bar k(x) = \frac1G \sum_k \kappa(R_k^T x)` over a rotation grid.

    Invariant under every rotation of the grid's group. ``kernel`` is the wrapped spec
    (``in_dim = D``); params are its params.
    """

    kernel: object
    grid: str

    @property
    def in_dim(self):
        return self.kernel.in_dim

    @property
    def out_dim(self):
        return self.kernel.out_dim

    def _R(self):
        return grids.rotation_grid(self.grid)

    def param_shapes(self):
        return self.kernel.param_shapes()

    def init(self, rng):
        return self.kernel.init(rng)

    def forward(self, params, coords):
        R = self._R()
        M, G = coords.shape[0], R.shape[0]
        v = np.einsum("kab,ma->mkb", R, coords).reshape(M * G, -1)  # R_k^T x_m
        k, inner = self.kernel.forward(params, v)
        return k.reshape(M, G, -1).mean(axis=1), GridAveragedKernelCache(inner, M)

    def backward(self, params, cache, grad_k):
        R = self._R()
        G = R.shape[0]
        # reverses the mean over k
        g = np.repeat(grad_k[:, None, :] / G, G, axis=1).reshape(cache.M * G, -1)
        grads, (g_v,) = self.kernel.backward(params, cache.inner, g)
        # reverses v = R_k^T x
        g_x = np.einsum("kab,mkb->ma", R, g_v.reshape(cache.M, G, -1))
        return grads, (g_x,)


def identity_lifting_pooled_is_invariant_pointconv(grid: str) -> tuple[float, float]:
    """``(identity error, kernel invariance error under a grid rotation)``."""
    rng = np.random.default_rng(13)
    R = grids.rotation_grid(grid)
    D = R.shape[-1]
    N, C, O = 7, 3, 2
    graph = _graph(rng, N)
    lc = LiftingConv(C, O, grid, hidden=6)
    p = lc.init(rng)
    f, x = rng.normal(size=(N, C)), rng.normal(size=(N, D))
    kbar = GridAveragedKernel(lc.kernel, grid)
    pc = PointConv(C, O, dim=D, kernel=kbar)
    q = {"kernel": p["kernel"], "W_f": p["W"], "b_f": p["b"]}
    out_lc, cache_lc = lc.forward(p, graph, f, x)
    out_pc, cache_pc = pc.forward(q, graph, f, x)
    G = R.shape[0]
    g = rng.normal(size=out_pc.shape)
    gp_lc, (gf_lc, gx_lc) = lc.backward(p, cache_lc, np.repeat(g[:, None] / G, G, axis=1))
    gp_pc, (gf_pc, gx_pc) = pc.backward(q, cache_pc, g)
    err = _compare([
        (out_pc, out_lc.mean(axis=1)), (gf_pc, gf_lc), (gx_pc, gx_lc),
        (gp_pc["W_f"], gp_lc["W"]), (gp_pc["b_f"], gp_lc["b"]),
        *[(gp_pc["kernel"][k], gp_lc["kernel"][k]) for k in gp_lc["kernel"]],
    ])
    a = rng.normal(size=(20, D))
    Q = R[1]  # a rotation of the grid's own group
    inv = _rel(kbar.forward(p["kernel"], a @ Q.T)[0], kbar.forward(p["kernel"], a)[0])
    return err, inv


# --- 5. TFN with l = 0 = radial point convolution ------------------------------------------------


def identity_scalar_tfn_is_radial_pointconv() -> float:
    rng = np.random.default_rng(14)
    N, C, O, B, h, n, rmax = 8, 3, 2, 6, 5, 3.0, 2.0
    graph = _graph(rng, N, p=0.7)
    tfn = TFNConv(f"{C}x0e", f"{O}x0e", lmax=0, max_radius=rmax, num_basis=B, radial_neurons=h,
                  radial_layers=2, num_neighbors=n, sh_normalization="component", gate=False,
                  self_connection=False, zero_length="raise")
    p = tfn.init(rng)
    f, x = rng.normal(size=(N, C)), rng.uniform(-1.0, 1.0, size=(N, 3))  # lengths up to ~3.5
    c = resolve_activation("silu", tfn.act_constants, "TFNConv.act_constants").c
    sizes = tfn.radial_sizes
    kernel = RadialKernel(C, B, rmax, "e3nn_gaussian", sizes[1:-1], "silu", bias=False,
                          envelope="smooth", envelope_at="output")
    kp = {}
    for k in range(len(sizes) - 1):
        W = p["radial"][f"W{k}"] / math.sqrt(sizes[k])
        if k > 0:
            W = c * W  # c silu(z) W = silu(z) (c W)
        if k == len(sizes) - 2:
            W = W / math.sqrt(n)  # the messages' 1/sqrt(num_neighbors)
        kp[f"W{k}"] = W
    L1 = p["lin1"]["weight"].reshape(C, C) / math.sqrt(C)
    pc = PointConv(C, O, kernel_input="distance", kernel=kernel)
    q = {"kernel": kp, "W_f": p["lin2"]["weight"].reshape(C, O) / math.sqrt(C),
         "b_f": np.zeros(O)}
    out_t, cache_t = tfn.forward(p, graph, f, x)
    out_pc, cache_pc = pc.forward(q, graph, f @ L1, x)
    g = rng.normal(size=out_t.shape)
    _, (gf_t, gx_t) = tfn.backward(p, cache_t, g)
    _, (gy, gx_pc) = pc.backward(q, cache_pc, g)
    return _compare([(out_pc, out_t), (gx_pc, gx_t), (gy @ L1.T, gf_t)])


# --- 6. LieConv on T(3) = PointConv --------------------------------------------------------------


def identity_translation_lieconv_is_pointconv() -> tuple[float, float]:
    """``(identity error, max |Log(g_i^-1 g_j) - (x_j - x_i, 0)|)``."""
    rng = np.random.default_rng(15)
    N, C, O, hidden = 7, 3, 2, (6, 6)
    graph = _graph(rng, N)
    pc = PointConv(C, O, kernel=MLPKernel(3, C, hidden, "silu", activate_last=True))
    q = pc.init(rng)
    lie = LieConv("SE3", C, O, aggr="sum",
                  kernel=MLPKernel(6, C, hidden, "silu", activate_last=True))
    kp = dict(q["kernel"])
    kp["W0"] = np.concatenate([q["kernel"]["W0"], np.zeros((3, hidden[0]))])  # rotation part: 0
    W = np.zeros((C * C, O))
    for k in range(C):
        W[k * C + k] = q["W_f"][k]  # W[k C + c, o] = delta_kc W_f[c, o]
    p = {"kernel": kp, "W": W, "b": q["b_f"]}
    f, x = rng.normal(size=(N, C)), rng.normal(size=(N, 3))
    g = np.tile(np.eye(4), (N, 1, 1))
    g[:, :3, 3] = x  # pure translations: the subgroup T(3) of SE(3)
    xi = se3.relative_log(g[graph.dst], g[graph.src])
    want = np.concatenate([x[graph.src] - x[graph.dst], np.zeros((graph.num_edges, 3))], axis=1)
    log_err = float(np.abs(xi - want).max())
    out_l, cache_l = lie.forward(p, graph, f, g)
    out_pc, cache_pc = pc.forward(q, graph, f, x)
    cot = rng.normal(size=out_pc.shape)
    _, (gf_l, gg_l, _) = lie.backward(p, cache_l, cot)
    _, (gf_pc, gx_pc) = pc.backward(q, cache_pc, cot)
    err = _compare([(out_pc, out_l), (gf_pc, gf_l), (gx_pc, gg_l[:, :3, 3])])
    return err, log_err


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    rows = [
        ("1. PointConv = MPNN with m_ij = k(x_j - x_i) f_j", identity_pointconv_is_mpnn()),
        ("2. CFConv = PointConv(f W_in) with a radial kernel", identity_cfconv_is_pointconv()),
        ("3. GroupConv on the trivial grid SO2_1 = PointConv",
         identity_trivial_group_conv_is_pointconv()),
    ]
    for grid in ("SO2_8", "SO3_octa"):
        err, inv = identity_lifting_pooled_is_invariant_pointconv(grid)
        rows.append((f"4. mean_grid LiftingConv({grid}) = PointConv(kbar)", err))
        rows.append((f"   kbar(Q x) = kbar(x), Q in the {grid} group", inv))
    rows.append(("5. TFNConv with l = 0 only = PointConv(L1 f), radial kernel",
                 identity_scalar_tfn_is_radial_pointconv()))
    err, log_err = identity_translation_lieconv_is_pointconv()
    rows.append(("6. Log(g_i^-1 g_j) = (x_j - x_i, 0) on T(3)", log_err))
    rows.append(("6. LieConv on T(3) = PointConv", err))
    ok = True
    print(f"{'identity (outputs and gradients, weights mapped)':62s} max rel err")
    for name, err in rows:
        good = err <= TOL
        ok &= good
        print(f"{name:62s} {err:.1e}  {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
