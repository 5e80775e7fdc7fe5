r"""Lesson 1: message passing as non-linear convolution (the layer every later lesson specialises).

The general layer
-----------------
A graph has nodes with features ``f_i`` and positions ``x_i``, and directed edges j -> i (sender
j = ``edge_index[0]``, receiver i = ``edge_index[1]``). One layer computes, for every edge, an
attribute from the geometry and a message, sums the messages at the receiver and updates::

    a_ij  = a(x_i, x_j)              e.g. |x_j - x_i|^2, x_j - x_i, Log(g_i^-1 g_j), Y(x_j - x_i)
    m_ij  = phi_m(f_i, f_j, a_ij)    the message from j to i
    f'_i  = phi_f(f_i, sum_{j -> i} m_ij)

:func:`message_passing` below writes exactly this as a loop over edges, with ``phi_m`` and
``phi_f`` given as Python functions. It is slow and obviously right, and the later lessons (and
``special_cases.py``) use it as the independent route against which the library's vectorised
layers are compared. ``DistanceMPNN`` is this layer with MLPs for both networks.

Claim 1: the layer is permutation equivariant
---------------------------------------------
Relabel the nodes by a permutation sigma (node i becomes sigma(i), edge j -> i becomes
sigma(j) -> sigma(i)). Then the new output at sigma(i) is the old output at i, for *any* phi_m,
phi_f. Why: the messages into sigma(i) are the same numbers as those into i (each is phi_m of the
same arguments), and a sum does not depend on the order of its terms. ``derive_permutation``
checks this in SymPy on a 3-node graph with undefined functions (SymPy keeps sums in a canonical
order, so "the same sum in another order" is literally the same expression).

Claim 2: with m_ij = k(x_j - x_i) f_j the layer is a convolution
----------------------------------------------------------------
Take phi_m(f_i, f_j, a_ij) = k(a_ij) f_j with a_ij = x_j - x_i, and phi_f(f_i, s) = s. On a
regular 1-D lattice x_n = n h with edges between nodes at most R apart (self-loops included)::

    f'_i = sum_{|n| <= R} k(n h) f_{i+n}

which is the discrete cross-correlation of the signal with the sampled kernel -- the layer of a
CNN ("convolution" in deep-learning usage). The kernel is a *function* of the relative position,
so the same layer also runs on irregular point clouds (a point convolution, lesson 3). Because
``a_ij`` only sees differences, shifting all positions changes nothing, and shifting the signal
along the lattice shifts the output: translation equivariance, the defining property of a
convolution. ``check_lattice_convolution`` compares the library's ``PointConv`` (dim 1) with
NumPy's ``correlate`` on the interior of a lattice.

Claim 3: a general phi_m is a *non-linear* convolution
------------------------------------------------------
With phi_m an MLP of ``[f_i, f_j, a_ij]`` the layer is no longer linear in f (it cannot be
written as a kernel times f_j), but it keeps the convolution's symmetry: ``a_ij`` depends on
``x_j - x_i`` only, so translating the positions leaves every message unchanged. This is
Bekkers' reading of message passing as non-linear convolution; the later lessons choose ``a_ij``
and ``phi_m`` so that rotations (and reflections) are respected as well. ``check_general_layer``
compares ``DistanceMPNN`` with :func:`message_passing` (phi_m and phi_f evaluated from its own
params with plain NumPy) and measures linearity and translation invariance.

Gilmer's MPNN (``layers/mpnn.py``) is the same scheme with ``m_ij = Theta(e_ij) f_j`` (NNConv, an
edge-conditioned linear map) and a GRU as ``phi_f``; the backward passes of those pieces are
derived in ``derivations/mpnn.py``, and the adjoint pair behind every sum over edges (a scatter
is the transpose of a gather) in ``derivations/gather_scatter.py``.

Run: ``python derivations/message_passing.py [--check]`` (a few seconds; exit status 0 on
success).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geomp_ref.graph import make_graph
from geomp_ref.layers import DistanceMPNN, MLPKernel, PointConv
from geomp_ref.ops import activations

TOL = 1e-13


def message_passing(graph, f, pos, attr, phi_m, phi_f):
    """The general layer, edge by edge: ``f'_i = phi_f(f_i, sum_j phi_m(f_i, f_j, a_ij))``.

    ``attr(x_i, x_j)`` gives ``a_ij``; ``phi_m(f_i, f_j, a_ij)`` returns the message (1-D array);
    ``phi_f(f_i, agg_i)`` the new feature. A receiver without incoming edges sums zero messages
    (the width is taken from the first message; with no edges at all ``agg`` has width 0).
    """
    src, dst = np.asarray(graph.edge_index)
    msgs = [np.asarray(phi_m(f[i], f[j], attr(pos[i], pos[j])), float) for j, i in zip(src, dst)]
    width = msgs[0].shape[0] if msgs else 0
    agg = np.zeros((graph.num_nodes, width))
    for (_j, i), m in zip(zip(src, dst), msgs):
        agg[i] = agg[i] + m
    return np.stack([np.asarray(phi_f(f[i], agg[i]), float) for i in range(graph.num_nodes)])


def mlp_apply(params, x, activation, activate_last):
    """An MLP written out from its params ``{"W0", "b0", ...}``, weights (in, out)."""
    act = activations.get(activation)[0]
    n = len([k for k in params if k.startswith("W")])
    for k in range(n):
        x = x @ params[f"W{k}"] + (params[f"b{k}"] if f"b{k}" in params else 0.0)
        if k < n - 1 or activate_last:
            x = act(x)
    return x


def derive_permutation():
    """Claim 1 in SymPy: the relabelled layer's output at sigma(i) is the old output at i."""
    phi_m, phi_f = sp.Function("phi_m"), sp.Function("phi_f")
    f = sp.symbols("f0:3")
    a = {(j, i): sp.Symbol(f"a_{j}{i}") for j in range(3) for i in range(3)}
    edges = [(0, 1), (2, 1), (1, 0), (2, 0), (0, 2)]  # (j, i): sender j -> receiver i

    def layer(f, a, edges):
        return [phi_f(f[i], sum((phi_m(f[i], f[j], a[(j, i)]) for j, i2 in edges if i2 == i),
                                sp.Integer(0))) for i in range(3)]

    out = layer(f, a, edges)
    results = {}
    for sigma in ((1, 2, 0), (2, 1, 0), (0, 2, 1)):
        inv = {s: k for k, s in enumerate(sigma)}
        f_new = [f[inv[k]] for k in range(3)]  # the feature now at node sigma(k) was f_k
        a_new = {(sigma[j], sigma[i]): a[(j, i)] for (j, i) in a}
        edges_new = [(sigma[j], sigma[i]) for j, i in edges]
        out_new = layer(f_new, a_new, edges_new)
        results[f"sigma = {sigma}"] = all(
            sp.simplify(out_new[sigma[i]] - out[i]) == 0 for i in range(3))
    return results


def _lattice(L: int, R: int, h: float):
    """Nodes x_n = n h, n < L; an edge j -> i whenever |i - j| <= R (self-loops included)."""
    pairs = [(j, i) for i in range(L) for j in range(L) if abs(i - j) <= R]
    return make_graph(np.array(pairs).T, L), (np.arange(L) * h)[:, None]


def check_lattice_convolution():
    """Claim 2: PointConv on a 1-D lattice equals NumPy's cross-correlation in the interior."""
    rng = np.random.default_rng(0)
    L, R, h, C = 40, 3, 0.25, 2
    graph, pos = _lattice(L, R, h)
    kernel = MLPKernel(1, C, (8,), "tanh")
    layer = PointConv(C, C, dim=1, kernel=kernel)
    params = layer.init(rng)
    params["W_f"], params["b_f"] = np.eye(C), np.zeros(C)  # phi_f = identity: a pure convolution
    f = rng.normal(size=(L, C))
    out = layer(params, graph, f, pos)
    samples = kernel(params["kernel"], (np.arange(-R, R + 1) * h)[:, None])  # k(n h), n = -R..R
    want = np.stack([np.correlate(f[:, c], samples[:, c], mode="valid") for c in range(C)], axis=1)
    err_conv = np.abs(out[R:L - R] - want).max() / np.abs(want).max()
    # shifting the signal by s lattice steps shifts the output (away from the boundary)
    s = 5
    shifted = layer(params, graph, np.roll(f, s, axis=0), pos)
    err_shift = np.abs(shifted[R + s:L - R] - out[R:L - R - s]).max() / np.abs(out).max()
    # moving every position by the same amount changes nothing
    err_translate = np.abs(layer(params, graph, f, pos + 7.3) - out).max() / np.abs(out).max()
    return {"PointConv on the lattice = np.correlate(f, k(n h))": err_conv,
            "signal shifted by 5 steps -> output shifted": err_shift,
            "positions translated -> output unchanged": err_translate}


def check_general_layer():
    """Claim 3: DistanceMPNN is the general layer; it is non-linear in f and translation-free."""
    rng = np.random.default_rng(1)
    N, C = 7, 3
    pairs = [(j, i) for i in range(N) for j in range(N) if i != j and rng.random() < 0.6]
    graph = make_graph(np.array(pairs).T, N)
    layer = DistanceMPNN(C, hidden=5, out_channels=4, activation="silu")
    p = layer.init(rng)
    f, pos = rng.normal(size=(N, C)), rng.normal(size=(N, 3))
    out = layer(p, graph, f, pos)
    loop = message_passing(
        graph, f, pos,
        attr=lambda xi, xj: np.array([np.sum((xj - xi) ** 2)]),
        phi_m=lambda fi, fj, a: mlp_apply(p["phi_m"], np.concatenate([fi, fj, a]), "silu", True),
        phi_f=lambda fi, agg: mlp_apply(p["phi_f"], np.concatenate([fi, agg]), "silu", False),
    )
    err_loop = np.abs(out - loop).max() / np.abs(out).max()
    nonlinear = np.abs(layer(p, graph, 2 * f, pos) - 2 * out).max() / np.abs(out).max()
    err_translate = np.abs(layer(p, graph, f, pos + rng.normal(size=3)) - out).max()
    return {"DistanceMPNN = the edge loop (phi_m, phi_f from its params)": (err_loop, True),
            "translation invariance": (err_translate / np.abs(out).max(), True),
            "non-linear in f: |F(2f) - 2 F(f)| / |F(f)| (must be large)": (nonlinear, False)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    ok = True
    print("claim 1: permutation equivariance for any phi_m, phi_f (SymPy)")
    for name, good in derive_permutation().items():
        ok &= good
        print(f"  relabelling {name:30s} {'ok' if good else 'FAIL'}")
    print("claim 2: m_ij = k(x_j - x_i) f_j is a convolution")
    for name, err in check_lattice_convolution().items():
        good = err <= TOL
        ok &= good
        print(f"  {name:52s} {err:.1e}  {'ok' if good else 'FAIL'}")
    print("claim 3: a general phi_m is a non-linear convolution")
    for name, (err, small) in check_general_layer().items():
        good = err <= TOL if small else err > 1e-2
        ok &= good
        print(f"  {name:62s} {err:.1e}  {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
