r"""Lesson 5: EGNN -- why its coordinate update is E(3)-equivariant, and its backward pass.

Satorras, Hoogeboom and Welling (2021), eqs. 3-7. The layer (``geomp_ref/layers/egnn_layer.py``)
on an edge e = (j -> i) (receiver i = dst, sender j = src)::

    D_ij   = x_i - x_j            (= -edge_vec: EGNN's sign is the opposite of ours)
    r_ij   = |D_ij|^2
    m_ij   = phi_e(h_i, h_j, r_ij, a_ij)                             (eq. 3)
    x'_i   = x_i + C sum_j D_ij phi_x(m_ij)  [+ phi_v(h_i) v_i]       (eq. 4, eq. 7 with velocity)
    h'_i   = phi_h(h_i, sum_j m_ij)                                   (eqs. 5-6)

Part 1: the claim and its proof
-------------------------------
Claim: for every orthogonal Q (rotations *and* reflections), every translation t and *every*
choice of the networks phi_e, phi_x, phi_h, phi_v, transforming the inputs as
``x -> Q x + t``, ``v -> Q v`` (h, a unchanged) transforms the outputs as ``x' -> Q x' + t``,
``h' -> h'``. Proof, three steps:

1. Differences cancel the translation and rotate: ``(Q x_i + t) - (Q x_j + t) = Q D_ij``.
2. The squared distance is invariant: ``|Q D|^2 = D^T (Q^T Q) D = D^T D`` -- the only place where
   orthogonality is used (and not the determinant: reflections are included). Hence every
   argument of ``phi_e`` is unchanged and ``m_ij`` is the same number, whatever ``phi_e`` is;
   so are ``phi_x(m_ij)``, ``sum_j m_ij``, ``h'_i`` and ``phi_v(h_i)``.
3. The update is *linear* in the vectors with invariant coefficients:
   ``Q x_i + t + C sum_j (Q D_ij) phi_x(m_ij) + phi_v(h_i) Q v_i = Q x'_i + t``
   (the weights ``C sum_j phi_x`` of ``x_i`` and the translation: ``t`` appears once because the
   differences removed it). The normalised variant ``D/(|D| + eps)`` only rescales ``D`` by an
   invariant, so it stays equivariant.

``derive_equivariance`` carries this out in SymPy on a 3-node graph with every directed edge:
Q is a 3 x 3 matrix of *symbols* (``q_ab``), t three symbols, the networks undefined functions.
Step 2 is checked as the polynomial identity ``|QD|^2 - D^T Q^T Q D = 0`` and then applied with
``Q^T Q = I`` (``_symbolic_groups.transformed_sqnorm``); steps 1 and 3 are expansions that must
give exactly 0. What the proof also shows: each term needs a *difference* of positions
multiplied by an *invariant* scalar. Anything else breaks it, for example the ``gcl`` code's
elementwise clamp of ``D_ij phi_x`` to ``[-c, c]``, which is not a linear map of ``D``: once it
is active the layer is no longer equivariant (``check_equivariance`` measures both).

Part 2: the backward pass (reverse mode, bottom-up; g_<name> = cotangent)
-------------------------------------------------------------------------
The code's edge function adds attention, the normalisation, tanh and the clamp::

    m      = m_raw * sigmoid(m_raw W_inf + b_inf)                  (attention)
    u      = D / (|D| + eps)                                       (normalize; else u = D)
    s      = tanh(act(m W0 + b0) W1)                                (phi_x, tanh optional)
    t      = clamp(u * s)
    x'_i   = x_i + C * mean_{e into i} t  [+ phi_v(h_i) * v_i]

1. Node update: ``phi_h``'s VJP splits into ``g_h`` (residual + first block) and ``g_agg_m``;
   the sum over incoming edges has the gather ``g_m_e = g_agg_m[dst_e]`` as its VJP.
2. Velocity: ``g_v = g_x' * phi_v(h)``, ``g_phi_v = <g_x', v>`` per node, then ``phi_v``'s VJP into
   ``g_h``.
3. Coordinates: ``g_t_e = C g_x'[dst_e] / deg(dst_e)`` (mean) masked by ``-c <= t <= c`` (the
   clamp's subgradient, torch's convention at the bounds); ``g_u = g_t * s`` and
   ``g_s = <g_t, u>``; through tanh and ``phi_x`` into ``g_m``.
4. Normalisation, the only non-obvious Jacobian:
   ``du/dD = I/(n + eps) - D D^T / (n (n + eps)^2)``, ``n = |D|``. Its second term is bounded by
   ``1/(n + eps)`` times ``n/(n + eps)`` and vanishes as ``n -> 0``, so ``du/dD -> I/eps``:
   coincident atoms have a derivative. egnn_clean detaches ``n`` in torch, so its autograd keeps
   only the first term; the layer implements the true derivative by default and that first term
   alone with ``detach_norm=True`` (checked below with ``n`` entering SymPy as a constant).
5. Attention: ``g_m_raw = g_m * att + (<g_m, m_raw> att (1 - att)) W_inf^T``.
6. Edge network: ``phi_e``'s VJP gives ``g_h_i`` (summed at receivers), ``g_h_j`` (summed at
   senders), ``g_r`` and ``g_a``; ``g_D += 2 g_r D``.
7. ``D = -edge_vec``: ``g_edge_vec = -g_D`` and ``edge_vectors_vjp`` puts ``+`` at senders and
   ``-`` at receivers, i.e. ``g_x_i += g_D``, ``g_x_j -= g_D``.

Checks of part 2, with SymPy:

* ``derive_normalisation``: the Jacobian of step 4 (difference with ``sympy.diff`` simplifies to
  0) and its limit ``I/eps`` along a ray into ``D = 0``;
* ``check_layer``: on a 3-node graph with 4 directed edges, the gradient of
  ``L = <g_h', h'> + <g_x', x'>`` with respect to features, coordinates, velocities and edge
  attributes, assembled by the chain rule (steps 1-7) from the *symbolic* Jacobians of the edge
  function ``(h_i, h_j, D, a) -> (m, t)`` and the node function ``(h, agg_m) -> (h', phi_v(h))``
  (evaluated at 30 digits), against ``EGNNLayer.backward`` -- for the gcl flavour (attention,
  normalisation ``+1``, tanh, velocity, edge attributes, an *active* clamp), egnn_clean
  (normalisation ``1e-8``, sum aggregation) and egnn_clean with ``detach_norm=True`` (the norm a
  constant in SymPy too).

Run: ``python derivations/egnn.py [--check]`` (about 10 s; exit status 0 on success).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mpmath as mp
import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _symbolic_groups import is_zero, symbolic_e3, transformed_sqnorm

from geomp_ref.graph import make_graph
from geomp_ref.layers import EGNNLayer
from geomp_ref.testing import random_orthogonal

TOL = 1e-12
EDGES = np.array([[0, 1, 1, 2], [1, 0, 2, 0]])  # senders j (row 0) -> receivers i (row 1)


# --- part 1: the equivariance proof -------------------------------------------------------------


def _plain_sqnorm(D):
    return (D.T * D)[0, 0]


def _egnn_update(x, h, v, a, edges, *, normalize, eps, sqnorm=_plain_sqnorm):
    """One EGNN layer, symbolically, from eqs. 3-7 with undefined networks.

    ``x``, ``v``: lists of 3 x 1 matrices; ``h``: list of symbols; ``a``: dict edge -> symbol;
    ``edges``: (j, i) pairs; ``sqnorm(D)`` forms ``r = |D|^2`` (the transformed layer passes the
    orthogonality lemma here). Returns ``(x', h')``.
    """
    phi_e, phi_x = sp.Function("phi_e"), sp.Function("phi_x")
    phi_h, phi_v = sp.Function("phi_h"), sp.Function("phi_v")
    C = sp.Rational(1, 2)  # 1/(M - 1) for M = 3 nodes: any invariant constant works
    x_new, h_new = [], []
    for i in range(len(x)):
        update, agg = sp.zeros(3, 1), 0
        for j, i2 in edges:
            if i2 != i:
                continue
            D = x[i] - x[j]
            r = sqnorm(D)
            m = phi_e(h[i], h[j], r, a[(j, i)])
            u = D / (sp.sqrt(r) + eps) if normalize else D
            update += u * phi_x(m)
            agg += m
        x_new.append(x[i] + C * update + (phi_v(h[i]) * v[i] if v is not None else 0))
        h_new.append(phi_h(h[i], agg))
    return x_new, h_new


def derive_equivariance():
    """The symbolic proof of part 1: ``{statement: bool}``, all True when it holds.

    The transformed layer is built from the transformed inputs; every squared distance it forms
    is a polynomial in the ``q_ab`` that :func:`transformed_sqnorm` first checks against
    ``D^T Q^T Q D`` and then rewrites with ``Q^T Q = I`` (step 2). Steps 1 and 3 must expand to 0.
    """
    Q, t = symbolic_e3()
    edges = [(j, i) for i in range(3) for j in range(3) if i != j]
    x = [sp.Matrix(sp.symbols(f"x{k}_0:3", real=True)) for k in range(3)]
    v = [sp.Matrix(sp.symbols(f"v{k}_0:3", real=True)) for k in range(3)]
    h = list(sp.symbols("h0:3", real=True))
    a = {e: sp.Symbol(f"a_{e[0]}{e[1]}", real=True) for e in edges}
    eps = sp.Symbol("epsilon", positive=True)
    results = {}
    # step 1: differences of transformed positions
    results["step 1: (Qx_i + t) - (Qx_j + t) = Q(x_i - x_j)"] = is_zero(
        (Q * x[0] + t) - (Q * x[1] + t) - Q * (x[0] - x[1]))

    def lemma(Dt):
        # Dt = (Q x_i + t) - (Q x_j + t): recognise it as Q D_ij (step 1), then step 2
        for j, i in edges:
            D = x[i] - x[j]
            if is_zero(Dt - Q * D):
                return transformed_sqnorm(D, Q)
        raise AssertionError("a transformed difference is not Q times a difference")

    xt = [Q * xk + t for xk in x]
    vt = [Q * vk for vk in v]
    for normalize in (False, True):
        x1, h1 = _egnn_update(x, h, v, a, edges, normalize=normalize, eps=eps)
        # the same layer on transformed inputs; its squared norms go through the lemma
        x2, h2 = _egnn_update(xt, h, vt, a, edges, normalize=normalize, eps=eps, sqnorm=lemma)
        tag = "normalised " if normalize else ""
        results[f"step 2+3: {tag}x'(Qx + t, Qv) = Q x'(x, v) + t"] = all(
            is_zero(x2[i] - (Q * x1[i] + t)) for i in range(3))
        results[f"step 2+3: {tag}h'(Qx + t, Qv) = h'(x, v)"] = all(
            is_zero(h2[i] - h1[i]) for i in range(3))
    return results


def check_equivariance() -> dict:
    """Numbers for part 1 on the library's layer: ``{name: (error, must_be_small)}``.

    A random orthogonal matrix with determinant -1 (a reflection times a rotation) and a
    translation; the gcl flavour without the clamp, egnn_clean with normalisation, and gcl with
    a clamp small enough to be active (the counter-example: the error must be large).
    """
    rng = np.random.default_rng(11)
    N = 6
    edges = np.array([(j, i) for i in range(N) for j in range(N) if i != j]).T
    graph = make_graph(edges, N)
    Q = random_orthogonal(rng, 3, proper=False)  # det -1: a reflection is included
    shift = rng.normal(size=3)
    h, x, v = rng.normal(size=(N, 4)), rng.normal(size=(N, 3)), rng.normal(size=(N, 3))
    runs = {
        "gcl, velocity, no clamp": ({"flavour": "gcl", "velocity": True, "clamp": None}, True),
        "egnn_clean, normalize": ({"flavour": "egnn_clean", "normalize": True}, True),
        "gcl, active clamp 0.05 (breaks it)": ({"flavour": "gcl", "clamp": 0.05}, False),
    }
    out = {}
    for name, (kw, small) in runs.items():
        layer = EGNNLayer(4, 8, activation="silu", coord_init_gain=1.0, **kw)
        p = layer.init(rng)
        vv = v if layer.velocity else None
        (h1, x1), _ = layer.forward(p, graph, h, x, vv)
        (h2, x2), _ = layer.forward(p, graph, h, x @ Q.T + shift, None if vv is None else v @ Q.T)
        err = max(np.abs(x2 - (x1 @ Q.T + shift)).max() / np.abs(x1).max(),
                  np.abs(h2 - h1).max() / np.abs(h1).max())
        out[name] = (err, small)
    return out


# --- part 2: the backward pass ------------------------------------------------------------------


def derive_normalisation():
    """``d/dD [D/(|D| + eps)]`` vs the hand formula, and its limit at ``D = 0``."""
    D = sp.Matrix(sp.symbols("D0:3", real=True))
    eps = sp.Symbol("epsilon", positive=True)
    n = sp.sqrt(D.dot(D))
    u = D / (n + eps)
    J = u.jacobian(D)
    hand = sp.eye(3) / (n + eps) - D * D.T / (n * (n + eps) ** 2)
    diff = sp.simplify(J - hand)
    t = sp.Symbol("t", positive=True)
    ray = {D[0]: t * sp.Rational(2, 7), D[1]: -t * sp.Rational(3, 7), D[2]: t * sp.Rational(6, 7)}
    lim = sp.simplify(J.subs(ray).applyfunc(lambda e: sp.limit(e, t, 0)) - sp.eye(3) / eps)
    return {"du/dD - hand formula": diff, "lim_{D->0} du/dD - I/eps": lim}


def _F(a):
    return sp.Matrix(np.atleast_2d(a).tolist()).applyfunc(lambda v: sp.Float(v, 40))


def _silu(z):
    return z / (1 + sp.exp(-z))


def _mlp(p, x, act_last):
    n = len([k for k in p if k.startswith("W")])
    for k in range(n):
        x = x * _F(p[f"W{k}"])
        if f"b{k}" in p:
            x = x + sp.ones(x.rows, 1) * _F(p[f"b{k}"])
        if k < n - 1 or act_last:
            x = x.applyfunc(_silu)
    return x


def _stage(args, outs):
    """Lambdified ``(values, Jacobian)`` of a small SymPy map ``args -> outs`` (mpmath)."""
    outs = list(outs)
    fn = sp.lambdify(
        args, [outs, sp.Matrix(outs).jacobian(args).tolist()], modules="mpmath", cse=True
    )

    def call(*vals):
        res = fn(*[mp.mpf(float(q)) for q in vals])
        return np.array(res[0], dtype=float), np.array(res[1], dtype=float).reshape(
            len(outs), len(args)
        )

    return call


def _edge_function(o, p):
    """Edge map ``(h_i, h_j, D, a) -> (m, t)`` and its Jacobian, from the equations above.

    SymPy differentiates each stage (r = |D|^2; phi_e; attention; phi_x with tanh; normalisation
    and clamp) in its own symbols; the stage Jacobians are multiplied numerically (differentiating
    the composed expression at once is exact too, but SymPy needs minutes for it).
    """
    nh, ne, H = o.in_features, o.edge_features, o.hidden
    D = sp.symbols("D0:3")
    r_stage = _stage(D, [sum(c**2 for c in D)])
    z = sp.symbols(f"z0:{2 * nh + 1 + ne}")
    phi_e = _stage(z, _mlp(p["phi_e"], sp.Matrix([z]), True))
    mr = sp.Matrix([sp.symbols(f"m0:{H}")])
    m = mr
    if o.attention:
        logit = (mr * _F(p["phi_inf"]["W0"]))[0] + sp.Float(p["phi_inf"]["b0"][0], 40)
        m = mr / (1 + sp.exp(-logit))
    att = _stage(list(mr), m)
    sx = (_mlp({"W0": p["phi_x"]["W0"], "b0": p["phi_x"]["b0"]}, mr, True) * _F(p["phi_x"]["W1"]))[
        0
    ]
    phi_x = _stage(list(mr), [sp.tanh(sx) if o.tanh else sx])
    sv = sp.Symbol("s")
    Dv = sp.Matrix([D])
    nv = sp.Symbol("n")  # detach_norm: the norm enters as a constant (its column is dropped)
    norm = nv if o.detach_norm else sp.sqrt(Dv.dot(Dv))
    u = Dv / (norm + sp.Float(o.norm_eps, 40)) if o.normalize else Dv
    t = u * sv
    if o.clamp is not None:
        c = sp.Float(o.clamp, 40)
        t = t.applyfunc(lambda q: sp.Max(-c, sp.Min(c, q)))
    coord = _stage(list(D) + [sv, nv], t)

    def call(*vals):
        vals = np.asarray(vals, dtype=float)
        hi, hj, Dn, a = vals[:nh], vals[nh : 2 * nh], vals[2 * nh : 2 * nh + 3], vals[2 * nh + 3 :]
        nargs = vals.size
        r, J_r = r_stage(*Dn)
        J_z = np.zeros((2 * nh + 1 + ne, nargs))  # z = [h_i, h_j, r, a] as a function of the args
        J_z[: 2 * nh, : 2 * nh] = np.eye(2 * nh)
        J_z[2 * nh, 2 * nh : 2 * nh + 3] = J_r[0]
        J_z[2 * nh + 1 :, 2 * nh + 3 :] = np.eye(ne)
        m_raw, J_e = phi_e(*np.concatenate([hi, hj, r, a]))
        m_val, J_att = att(*m_raw)
        J_m = J_att @ J_e @ J_z
        s_val, J_s = phi_x(*m_val)
        t_val, J_t = coord(*np.concatenate([Dn, s_val, [np.linalg.norm(Dn)]]))
        J_D = np.zeros((3, nargs))
        J_D[:, 2 * nh : 2 * nh + 3] = np.eye(3)
        J_tt = J_t[:, :3] @ J_D + np.outer(J_t[:, 3], J_s[0] @ J_m)
        return np.concatenate([m_val, t_val]), np.vstack([J_m, J_tt])

    return call


def _node_function(o, p):
    """Node map ``(h, agg_m) -> (h', phi_v(h))`` and its Jacobian."""
    h = sp.Matrix([sp.symbols(f"h0:{o.in_features}")])
    g = sp.Matrix([sp.symbols(f"g0:{o.hidden}")])
    hn = _mlp(p["phi_h"], h.row_join(g), False)
    if o.residual:
        hn = hn + h
    out = list(hn) + (list(_mlp(p["phi_v"], h, False)) if o.velocity else [])
    return _stage(list(h) + list(g), out)


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def check_layer(**options) -> float:
    """Gradients of ``L = <g_h', h'> + <g_x', x'>`` from symbolic local Jacobians.

    SymPy differentiates the edge function ``(h_i, h_j, D, a) -> (m, t)`` and the node function
    ``(h, agg_m) -> (h', phi_v(h))`` exactly (evaluated at 30 digits); this function assembles
    them by the chain rule over the graph (the gathers and scatters of steps 1, 3, 6, 7) and
    compares the result with ``EGNNLayer.backward``. (Differentiating the assembled graph
    expression directly is exact too, but takes minutes in SymPy.)
    """
    rng = np.random.default_rng(3)
    o = EGNNLayer(2, 3, activation="silu", coord_init_gain=1.0, **options)
    p = o.init(rng)
    x, h = rng.normal(size=(3, 3)), rng.normal(size=(3, 2))
    v = rng.normal(size=(3, 3)) if o.velocity else None
    a = rng.normal(size=(4, o.edge_features)) if o.edge_features else np.zeros((4, 0))
    inputs = [h, x, v, a if o.edge_features else None]
    graph = make_graph(EDGES, 3)
    (h_new, x_new), cache = o.forward(p, graph, *inputs)
    if o.clamp is not None:  # away from the kinks, where Max/Min are differentiable ...
        t = cache.coord.t
        assert np.min(np.abs(np.abs(t) - o.clamp)) > 1e-6
        assert o.clamp >= 1.0 or np.any(np.abs(t) > o.clamp)  # ... and active if small
    cot_h, cot_x = rng.normal(size=h_new.shape), rng.normal(size=x_new.shape)
    _, g_in = o.backward(p, cache, (cot_h, cot_x))

    mp.mp.dps = 30
    edge_fn, node_fn = _edge_function(o, p), _node_function(o, p)
    Hh, N, nh = o.hidden, 3, o.in_features
    # argument blocks of the edge function (h_i, h_j, D, a) and of the node function (h, agg_m),
    # and output blocks of the node function (h', phi_v)
    E_HI, E_HJ = slice(0, nh), slice(nh, 2 * nh)
    E_D, E_A = slice(2 * nh, 2 * nh + 3), slice(2 * nh + 3, None)
    N_H, N_AGG, N_V = slice(0, nh), slice(nh, None), nh
    deg = np.bincount(EDGES[1], minlength=N)
    edge_out, edge_jac, agg_m, agg_t = [], [], np.zeros((N, Hh)), np.zeros((N, 3))
    for e, (j, i) in enumerate(EDGES.T):
        val, jac = edge_fn(*np.concatenate([h[i], h[j], x[i] - x[j], a[e]]))
        edge_out.append(val)
        edge_jac.append(jac)
        agg_m[i] += val[:Hh]
        agg_t[i] += val[Hh:] / (max(deg[i], 1) if o.coords_agg == "mean" else 1)
    g_h, g_x = np.zeros_like(h), cot_x.copy()
    g_v = np.zeros((N, 3))
    g_a = np.zeros_like(a)
    g_agg_m = np.zeros((N, Hh))
    want_h, want_x = np.zeros_like(h_new), x + o.coords_weight * agg_t
    for i in range(N):
        val, jac = node_fn(*np.concatenate([h[i], agg_m[i]]))
        want_h[i] = val[N_H]
        g_node = cot_h[i] @ jac[N_H]
        if o.velocity:  # x' += phi_v(h) v
            want_x[i] += val[N_V] * v[i]
            g_node = g_node + (cot_x[i] @ v[i]) * jac[N_V]
            g_v[i] = cot_x[i] * val[N_V]
        g_h[i] += g_node[N_H]
        g_agg_m[i] = g_node[N_AGG]
    for e, (j, i) in enumerate(EDGES.T):
        scale = o.coords_weight / (max(deg[i], 1) if o.coords_agg == "mean" else 1)
        g_out = np.concatenate([g_agg_m[i], scale * cot_x[i]])
        g_edge = g_out @ edge_jac[e]
        g_h[i] += g_edge[E_HI]
        g_h[j] += g_edge[E_HJ]
        g_x[i] += g_edge[E_D]  # D = x_i - x_j
        g_x[j] -= g_edge[E_D]
        g_a[e] = g_edge[E_A]
    want = [g_h, g_x] + ([g_v] if o.velocity else []) + ([g_a] if o.edge_features else [])
    err = max(_rel(h_new, want_h), _rel(x_new, want_x))
    for ours, ref in zip(g_in, want):
        err = max(err, _rel(ours, ref))
    return err


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (default)")
    parser.parse_args(argv)
    ok = True
    print("part 1: E(3) equivariance of the coordinate update, for any networks (SymPy)")
    for name, good in derive_equivariance().items():
        ok &= good
        print(f"  {name:52s} {'ok' if good else 'FAIL'}")
    for name, (err, small) in check_equivariance().items():
        good = err <= TOL if small else err > 1e-3
        ok &= good
        want = "<= 1e-12" if small else "> 1e-3, not equivariant"
        print(f"  numeric: {name:36s} error {err:.2e} ({want})  {'ok' if good else 'FAIL'}")
    print("part 2: the backward pass")
    for name, diff in derive_normalisation().items():
        good = diff == sp.zeros(3, 3)
        ok &= good
        print(f"{name:28s} = {'0' if good else diff}  {'ok' if good else 'FAIL'}")
    runs = {  # the gcl run has an active clamp (asserted in check_layer)
        "gcl: att, norm(+1), tanh, vel, a_ij, clamp": {
            "flavour": "gcl",
            "attention": True,
            "normalize": True,
            "tanh": True,
            "velocity": True,
            "edge_features": 1,
            "clamp": 0.025,
            "coords_weight": 0.7,
        },
        "egnn_clean: norm(1e-8), sum": {
            "flavour": "egnn_clean",
            "normalize": True,
            "coords_agg": "sum",
        },
        "egnn_clean: norm(1e-8) detached (torch's .detach())": {
            "flavour": "egnn_clean",
            "normalize": True,
            "detach_norm": True,
        },
    }
    for name, kw in runs.items():
        err = check_layer(**kw)
        good = err <= TOL
        ok &= good
        print(f"{name:44s} max rel err vs SymPy {err:.2e}  {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
