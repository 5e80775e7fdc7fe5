r"""Lesson: gather and scatter are adjoint, and every graph VJP is one of them.

Symbols follow ``geomp_ref/ops/scatter.py`` and ``geomp_ref/graph.py``: a graph has ``src`` (row 0
of ``edge_index``, the sender j) and ``dst`` (row 1, the receiver i); ``E`` edges, ``N`` nodes.
Everything below is checked on one small fixed multigraph (``GRAPH_SRC`` / ``GRAPH_DST``) with

* a multi-edge (0 -> 1 appears twice), so "sum over edges" is not "sum over neighbours";
* a self-loop (4 -> 4), whose edge vector is zero and whose two VJP terms cancel;
* an isolated node (3), so empty segments, in-degree 0 and the clamp ``max(deg, 1)`` are exercised.

1. The adjoint pair
-------------------
``gather(x, index)_r = x[index_r]`` is the linear map :math:`G x` with the 0/1 matrix
:math:`G_{rk} = [index_r = k]`. ``scatter_sum(y, index, K)_k = \sum_{r: index_r = k} y_r`` is
:math:`G^T y`. Hence the adjoint identity

.. math:: \langle G x, y \rangle = \sum_r x_{index_r} y_r = \sum_k x_k \sum_{r: index_r = k} y_r
          = \langle x, G^T y \rangle ,

and because the VJP of a linear map :math:`L` is :math:`L^T`: ``gather_vjp`` is a scatter-sum of
``grad_out`` onto ``index`` and ``scatter_sum_vjp`` is the gather ``grad_out[index]``. A row that
is gathered twice (the multi-edge) receives the *sum* of both cotangents; a row never gathered
(the isolated node) receives 0. ``derive_adjoint_identity`` proves the identity with symbols and
``check_adjoint_pair`` confirms it in float64 on random points.

2. Aggregation is a scatter at ``dst``; its VJP a gather at ``dst``
-------------------------------------------------------------------
``aggregate(m)_i = \sum_{e: dst_e = i} m_e`` is ``scatter_sum(m, dst, N)``, so
``grad_m[e] = grad_out[dst_e]``. The mean divides by the clamped in-degree,
``out_i = \sum_{e \to i} m_e / \max(deg_i, 1)`` — a constant per node — so the VJP divides the
gathered cotangent by the same number: ``grad_m[e] = grad_out[dst_e] / max(deg(dst_e), 1)``.
``scatter_mean`` is the same statement for an arbitrary ``index``.

3. The fused weighted aggregation on the reversed graph
-------------------------------------------------------
``out_i = \sum_{e: dst_e = i} w_e f_{src_e}`` (``w`` of shape (E,) or (E, C)). Differentiating
:math:`\langle \bar{out}, out\rangle = \sum_e \bar{out}_{dst_e} \cdot (w_e \odot f_{src_e})`:

.. math:: \bar f_j = \sum_{e: src_e = j} w_e \odot \bar{out}_{dst_e}, \qquad
          \bar w_e = \bar{out}_{dst_e} \odot f_{src_e}\ \ (\text{summed over channels if } w_e
          \text{ is a scalar}).

The first sum is the *same kernel* on the reversed graph (swap ``src`` and ``dst``, keep ``w``):
``grad_f = weighted_aggregate(reverse(G), grad_out, w)``; the second is ``edge_product(G,
grad_out, f)``. No (E, C) temporary is needed in either direction.

4. Edge vectors
---------------
``edge_vec_e = pos[src_e] - pos[dst_e]`` is ``(G_src - G_dst) pos``; its VJP is
``(G_src - G_dst)^T g``: ``+g`` scattered to senders and ``-g`` scattered to receivers. For a
self-loop both land on the same node and cancel; the column sums of the VJP vanish (translation
invariance: shifting every position leaves every edge vector unchanged).

5. Segment softmax, with PyG's epsilon
--------------------------------------
Per segment k with max :math:`M_k = \max_{r \in k} v_r`: :math:`e_r = \exp(v_r - M_k)`,
:math:`s_k = \sum_{r\in k} e_r + \epsilon`, :math:`a_r = e_r / s_k`. For :math:`\epsilon = 0`
the shift cancels and :math:`\bar v_r = a_r(\bar a_r - \sum_{q\in k} a_q \bar a_q)`. For
:math:`\epsilon \neq 0` (PyG uses 1e-16) the function *does* depend on the shift:
:math:`a_r = e^{v_r}/(\sum e^{v_q} + \epsilon e^{M_k})`, and because :math:`M_k` is the value of the
arg-max row, that row receives the extra term
:math:`\partial a_r/\partial M_k = -a_r \epsilon / s_k`, i.e.
``grad_v[argmax_k] += -eps / s_k * sum_q a_q grad_a_q``. ``derive_scatter_softmax`` builds
:math:`a` with :math:`M_k` written as the symbol of the row that attains the max, so SymPy's
derivative contains that term; the check uses eps = 0, PyG's 1e-16 and a large eps = 0.5 where the
term is of order 1 (and shows the "detached shift" form differs there).

6. Segment max and its subgradient
----------------------------------
:math:`out_k = \max_{r\in k} v_r` is piecewise linear; where the maximiser is unique SymPy's
derivative of ``Max`` is the indicator of the maximiser, so the whole cotangent goes to that row.
At a tie the function is not differentiable; any convex combination of the tied rows is a
subgradient, and geomp_ref picks the *first* tied row in row order (as ``scatter_max`` reports
it). ``check_scatter_max`` tests both: SymPy on distinct values, and the tie rule plus the
subgradient property (non-negative weights on tied rows summing to one) on a tie.

Run: ``python3 derivations/gather_scatter.py [--check] [--backend numba]`` (about 2 s).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geomp_ref.graph import edge_vectors, edge_vectors_vjp, make_graph
from geomp_ref.ops import scatter

#: The teaching multigraph: multi-edge 0->1 (edges 0, 1), self-loop 4->4 (edge 7), node 3 isolated.
GRAPH_SRC = (0, 0, 2, 1, 2, 0, 1, 4)
GRAPH_DST = (1, 1, 1, 0, 0, 2, 2, 4)
NUM_NODES = 5
C = 2  # channels
RTOL, ATOL = 1e-12, 1e-13


# --- symbolic helpers --------------------------------------------------------------------------


def sym_array(name: str, shape) -> np.ndarray:
    """Object array of real SymPy symbols ``name_0, name_1, ...`` with the given shape."""
    n = int(np.prod(shape))
    flat = sp.symbols(f"{name}_0:{n}", real=True) if n else ()
    return np.array(flat, dtype=object).reshape(shape)


def vjp(out: np.ndarray, wrt: np.ndarray, cot: np.ndarray) -> np.ndarray:
    r"""VJP :math:`\partial \langle cot, out \rangle / \partial wrt`, shaped like ``wrt``."""
    pairing = sum((o * c for o, c in zip(out.ravel(), cot.ravel())), sp.Integer(0))
    return np.array([sp.diff(pairing, s) for s in wrt.ravel()], dtype=object).reshape(wrt.shape)


def evaluate(expr: np.ndarray, values: list) -> np.ndarray:
    """Evaluate expressions at ``[(symbol_array, float_array), ...]`` in float64."""
    syms, nums = [], []
    for s, v in values:
        syms.extend(np.asarray(s).ravel())
        nums.extend(np.asarray(v, dtype=np.float64).ravel())
    fn = sp.lambdify(syms, list(np.asarray(expr).ravel()), modules="numpy")
    return np.array(fn(*nums), dtype=np.float64).reshape(np.shape(expr))


def compare(name: str, got, want, failures: list, rtol: float = RTOL, atol: float = ATOL) -> None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        failures.append(f"{name}: shape {got.shape} != expected {want.shape}")
        return
    err = np.abs(got - want)
    if not np.all(err <= atol + rtol * np.abs(want)):
        k = int(np.argmax(err))
        failures.append(
            f"{name}: max |diff| {err.max():.3e} at flat index {k} "
            f"(got {got.ravel()[k]!r}, expected {want.ravel()[k]!r})"
        )


def sym_equal(name: str, a: np.ndarray, b: np.ndarray, failures: list) -> None:
    """Exact symbolic equality of two expression arrays."""
    if np.shape(a) != np.shape(b):
        failures.append(f"{name}: shapes {np.shape(a)} != {np.shape(b)}")
        return
    for u, v in zip(np.ravel(a), np.ravel(b)):
        if sp.expand(u - v) != 0:
            failures.append(f"{name}: symbolic mismatch {u} != {v}")
            return


def teaching_graph():
    return make_graph(np.array([GRAPH_SRC, GRAPH_DST], dtype=np.int64), NUM_NODES)


# --- derivations -------------------------------------------------------------------------------


def derive_gather(x: np.ndarray, index) -> np.ndarray:
    """``out[r] = x[index[r]]``."""
    return np.array([x[k] for k in index], dtype=object).reshape((len(index),) + x.shape[1:])


def derive_scatter_sum(values: np.ndarray, index, num_segments: int) -> np.ndarray:
    """``out[k] = sum_{r: index[r] = k} values[r]`` (empty segments give 0)."""
    out = np.full((num_segments,) + values.shape[1:], sp.Integer(0), dtype=object)
    for r, k in enumerate(index):
        out[k] = out[k] + values[r]
    return out


def derive_adjoint_identity(x: np.ndarray, y: np.ndarray, index) -> sp.Expr:
    r""":math:`\langle G x, y\rangle - \langle x, G^T y\rangle` (expands to exactly 0)."""
    gx = derive_gather(x, index)
    gty = derive_scatter_sum(y, index, x.shape[0])
    return sp.expand(sum(gx.ravel() * y.ravel()) - sum(x.ravel() * gty.ravel()))


def derive_aggregate(m: np.ndarray, dst, num_nodes: int) -> np.ndarray:
    """``out_i = sum_{e: dst_e = i} m_e``."""
    return derive_scatter_sum(m, dst, num_nodes)


def derive_scatter_mean(values: np.ndarray, index, num_segments: int) -> np.ndarray:
    """``out_k = sum_{r in k} values_r / max(count_k, 1)``."""
    out = derive_scatter_sum(values, index, num_segments)
    cnt = np.bincount(np.asarray(index, dtype=np.int64), minlength=num_segments)
    for k in range(num_segments):
        out[k] = out[k] / sp.Integer(max(int(cnt[k]), 1))
    return out


def derive_weighted_aggregate(f: np.ndarray, w: np.ndarray, src, dst, num_nodes: int) -> np.ndarray:
    """``out_i = sum_{e: dst_e = i} w_e * f[src_e]`` (``w`` (E,) or (E, C))."""
    out = np.full((num_nodes, f.shape[1]), sp.Integer(0), dtype=object)
    for e, (j, i) in enumerate(zip(src, dst)):
        out[i] = out[i] + w[e] * f[j]
    return out


def derive_edge_vectors(pos: np.ndarray, src, dst) -> np.ndarray:
    """``edge_vec_e = pos[src_e] - pos[dst_e]`` (= x_j - x_i)."""
    return np.array([pos[j] - pos[i] for j, i in zip(src, dst)], dtype=object)


def derive_scatter_softmax(values: np.ndarray, index, num_segments: int, eps, argmax) -> np.ndarray:
    """``a_r = exp(v_r - M_k) / (sum_{q in k} exp(v_q - M_k) + eps)``, ``M_k = values[argmax[k]]``.

    ``argmax[k]`` is the row attaining the max at the evaluation point; writing ``M_k`` as that
    row's symbol makes the derivative include the dependence through the shift (nonzero iff
    eps != 0).
    """
    M = [values[argmax[k]] if argmax[k] >= 0 else sp.Integer(0) for k in range(num_segments)]
    ex = np.array([sp.exp(values[r] - M[k]) for r, k in enumerate(index)], dtype=object)
    s = derive_scatter_sum(ex, index, num_segments) + eps
    return np.array([ex[r] / s[k] for r, k in enumerate(index)], dtype=object)


def derive_scatter_max(values: np.ndarray, index, num_segments: int) -> np.ndarray:
    """``out_k = Max(values_r for r in k)``, 0 for empty segments."""
    out = np.full(num_segments, sp.Integer(0), dtype=object)
    for k in range(num_segments):
        rows = [values[r] for r, kk in enumerate(index) if kk == k]
        if rows:
            out[k] = sp.Max(*rows)
    return out


# --- checks ------------------------------------------------------------------------------------


def check_adjoint_pair(rng: np.random.Generator, backend: str) -> list:
    failures: list = []
    index = np.array(GRAPH_DST)
    x = sym_array("x", (NUM_NODES, C))
    y = sym_array("y", (len(index), C))
    ident = derive_adjoint_identity(x, y, index)
    if ident != 0:
        failures.append(f"adjoint identity: <Gx, y> - <x, G^T y> = {ident}, expected exactly 0")
    # Numerically with geomp_ref's own gather / scatter_sum.
    xv = rng.standard_normal((NUM_NODES, C))
    yv = rng.standard_normal((len(index), C))
    lhs = float(np.sum(scatter.gather(xv, index) * yv))
    rhs = float(np.sum(xv * scatter.scatter_sum(yv, index, NUM_NODES, backend=backend)))
    compare("adjoint identity <gather(x), y> = <x, scatter_sum(y)>", lhs, rhs, failures)
    # Each VJP is the other map: SymPy VJP of the forward vs the claimed formula, then vs code.
    g_out = sym_array("grad_out", (len(index), C))
    grad_x = vjp(derive_gather(x, index), x, g_out)
    sym_equal(
        "gather VJP == scatter_sum(grad_out)",
        grad_x,
        derive_scatter_sum(g_out, index, NUM_NODES),
        failures,
    )
    gv = rng.standard_normal((len(index), C))
    got, _ = scatter.gather_vjp(xv, index, gv, backend=backend)
    compare("gather_vjp", got, evaluate(grad_x, [(x, xv), (g_out, gv)]), failures)
    g_seg = sym_array("grad_seg", (NUM_NODES, C))
    grad_y = vjp(derive_scatter_sum(y, index, NUM_NODES), y, g_seg)
    sym_equal("scatter_sum VJP == gather(grad_out)", grad_y, derive_gather(g_seg, index), failures)
    gs = rng.standard_normal((NUM_NODES, C))
    compare(
        "scatter_sum forward",
        scatter.scatter_sum(yv, index, NUM_NODES, backend=backend),
        evaluate(derive_scatter_sum(y, index, NUM_NODES), [(y, yv)]),
        failures,
    )
    got, _ = scatter.scatter_sum_vjp(yv, index, NUM_NODES, gs, backend=backend)
    compare("scatter_sum_vjp", got, evaluate(grad_y, [(y, yv), (g_seg, gs)]), failures)
    return failures


def check_aggregate(rng: np.random.Generator, backend: str) -> list:
    failures: list = []
    graph = teaching_graph()
    E = graph.num_edges
    m = sym_array("m", (E, C))
    g_out = sym_array("grad_out", (NUM_NODES, C))
    mv = rng.standard_normal((E, C))
    gv = rng.standard_normal((NUM_NODES, C))
    for name, derive, fwd, bwd in (
        ("aggregate", derive_aggregate, scatter.aggregate, scatter.aggregate_vjp),
        (
            "aggregate_mean",
            lambda mm, d, n: derive_scatter_mean(mm, d, n),
            scatter.aggregate_mean,
            scatter.aggregate_mean_vjp,
        ),
    ):
        out = derive(m, GRAPH_DST, NUM_NODES)
        grad_m = vjp(out, m, g_out)
        compare(
            f"{name} forward", fwd(graph, mv, backend=backend), evaluate(out, [(m, mv)]), failures
        )
        compare(
            f"{name}_vjp",
            bwd(graph, mv, gv, backend=backend),
            evaluate(grad_m, [(m, mv), (g_out, gv)]),
            failures,
        )
    # The claim in words: the sum's VJP is the gather at dst, exactly.
    sym_equal(
        "aggregate VJP == grad_out[dst]",
        vjp(derive_aggregate(m, GRAPH_DST, NUM_NODES), m, g_out),
        derive_gather(g_out, GRAPH_DST),
        failures,
    )
    # scatter_mean with an arbitrary index and an empty segment (segment 2 of 4).
    index = np.array([0, 3, 1, 0, 3, 3])
    v = sym_array("values", (len(index), C))
    gseg = sym_array("grad_seg", (4, C))
    vv = rng.standard_normal((len(index), C))
    gsv = rng.standard_normal((4, C))
    out = derive_scatter_mean(v, index, 4)
    compare(
        "scatter_mean forward",
        scatter.scatter_mean(vv, index, 4, backend=backend),
        evaluate(out, [(v, vv)]),
        failures,
    )
    got, _ = scatter.scatter_mean_vjp(vv, index, 4, gsv, backend=backend)
    compare("scatter_mean_vjp", got, evaluate(vjp(out, v, gseg), [(v, vv), (gseg, gsv)]), failures)
    return failures


def check_weighted_aggregate(rng: np.random.Generator, backend: str) -> list:
    failures: list = []
    graph = teaching_graph()
    E = graph.num_edges
    f = sym_array("f", (NUM_NODES, C))
    g_out = sym_array("grad_out", (NUM_NODES, C))
    fv = rng.standard_normal((NUM_NODES, C))
    gv = rng.standard_normal((NUM_NODES, C))
    for wshape in ((E,), (E, C)):
        w = sym_array("w", wshape)
        wv = rng.standard_normal(wshape)
        out = derive_weighted_aggregate(f, w, GRAPH_SRC, GRAPH_DST, NUM_NODES)
        grad_f = vjp(out, f, g_out)
        grad_w = vjp(out, w, g_out)
        # The claims, symbolically: same kernel on the reversed graph; the edge product.
        sym_equal(
            f"w{wshape}: grad_f == weighted_aggregate(reverse(G), grad_out, w)",
            grad_f,
            derive_weighted_aggregate(g_out, w, GRAPH_DST, GRAPH_SRC, NUM_NODES),
            failures,
        )
        prod = np.array([g_out[i] * f[j] for j, i in zip(GRAPH_SRC, GRAPH_DST)], dtype=object)
        claimed_w = prod.sum(axis=1) if len(wshape) == 1 else prod
        sym_equal(f"w{wshape}: grad_w == edge_product(grad_out, f)", grad_w, claimed_w, failures)
        vals = [(f, fv), (w, wv), (g_out, gv)]
        compare(
            f"weighted_aggregate w{wshape} forward",
            scatter.weighted_aggregate(graph, fv, wv, backend=backend),
            evaluate(out, vals),
            failures,
        )
        gf, gw = scatter.weighted_aggregate_vjp(graph, fv, wv, gv, backend=backend)
        compare(f"weighted_aggregate_vjp w{wshape} grad_f", gf, evaluate(grad_f, vals), failures)
        compare(f"weighted_aggregate_vjp w{wshape} grad_w", gw, evaluate(grad_w, vals), failures)
    compare(
        "edge_product",
        scatter.edge_product(graph, gv, fv, backend=backend),
        evaluate(
            np.array([g_out[i] * f[j] for j, i in zip(GRAPH_SRC, GRAPH_DST)], dtype=object),
            [(f, fv), (g_out, gv)],
        ),
        failures,
    )
    return failures


def check_edge_vectors(rng: np.random.Generator, backend: str) -> list:
    failures: list = []
    graph = teaching_graph()
    D = 3
    pos = sym_array("pos", (NUM_NODES, D))
    g = sym_array("grad_edge_vec", (graph.num_edges, D))
    out = derive_edge_vectors(pos, GRAPH_SRC, GRAPH_DST)
    grad_pos = vjp(out, pos, g)
    claimed = derive_scatter_sum(g, GRAPH_SRC, NUM_NODES) - derive_scatter_sum(
        g, GRAPH_DST, NUM_NODES
    )
    sym_equal("edge_vectors VJP == +g at src - g at dst", grad_pos, claimed, failures)
    if any(sp.expand(s) != 0 for s in grad_pos.sum(axis=0)):
        failures.append("edge_vectors VJP: column sums are not 0 (translation invariance)")
    pv = rng.standard_normal((NUM_NODES, D))
    gv = rng.standard_normal((graph.num_edges, D))
    compare("edge_vectors forward", edge_vectors(graph, pv), evaluate(out, [(pos, pv)]), failures)
    compare(
        "edge_vectors_vjp",
        edge_vectors_vjp(graph, gv),
        evaluate(grad_pos, [(pos, pv), (g, gv)]),
        failures,
    )
    return failures


def check_scatter_softmax(rng: np.random.Generator, backend: str) -> list:
    failures: list = []
    index = np.array(GRAPH_DST)  # segments = receivers; node 3 is empty
    E = len(index)
    v = sym_array("values", (E,))
    g = sym_array("grad_a", (E,))
    vv = rng.standard_normal(E)
    gv = rng.standard_normal(E)
    _, argmax = scatter.scatter_max(vv, index, NUM_NODES)
    # Independent argmax for the symbolic shift (numpy per segment, first occurrence).
    arg_ref = np.full(NUM_NODES, -1)
    for k in range(NUM_NODES):
        rows = np.flatnonzero(index == k)
        if rows.size:
            arg_ref[k] = rows[np.argmax(vv[rows])]
    if not np.array_equal(argmax, arg_ref):
        failures.append(f"scatter_max argmax {argmax} != expected {arg_ref}")
    for eps in (0.0, 1e-16, 0.5):
        a = derive_scatter_softmax(v, index, NUM_NODES, sp.Float(eps, 30), arg_ref)
        grad_v = vjp(a, v, g)
        vals = [(v, vv), (g, gv)]
        compare(
            f"scatter_softmax eps={eps} forward",
            scatter.scatter_softmax(vv, index, NUM_NODES, eps=eps),
            evaluate(a, vals),
            failures,
        )
        got, _ = scatter.scatter_softmax_vjp(vv, index, NUM_NODES, gv, eps=eps)
        compare(f"scatter_softmax_vjp eps={eps}", got, evaluate(grad_v, vals), failures)
        if eps == 0.5:
            # The detached-shift form (PyG's autograd) is a different derivative once eps matters.
            detached = np.array(
                [sp.exp(v[r] - sp.Float(vv[arg_ref[k]], 30)) for r, k in enumerate(index)],
                dtype=object,
            )
            s = derive_scatter_sum(detached, index, NUM_NODES) + sp.Float(eps, 30)
            a_det = np.array([detached[r] / s[k] for r, k in enumerate(index)], dtype=object)
            diff = np.abs(evaluate(vjp(a_det, v, g), vals) - got).max()
            if diff < 1e-6:
                failures.append(
                    "scatter_softmax_vjp eps=0.5: indistinguishable from the detached-shift "
                    "derivative; the shift term is not exercised"
                )
    return failures


def check_scatter_max(rng: np.random.Generator, backend: str) -> list:
    failures: list = []
    index = np.array(GRAPH_DST)
    E = len(index)
    v = sym_array("values", (E,))
    g = sym_array("grad_out", (NUM_NODES,))
    vv = rng.standard_normal(E)
    gv = rng.standard_normal(NUM_NODES)
    out = derive_scatter_max(v, index, NUM_NODES)
    grad_v = vjp(out, v, g)  # derivative of Max = Heaviside of the differences
    vals = [(v, vv), (g, gv)]
    got_out, _ = scatter.scatter_max(vv, index, NUM_NODES, backend=backend)
    compare("scatter_max forward", got_out, evaluate(out, vals), failures)
    got, _ = scatter.scatter_max_vjp(vv, index, NUM_NODES, gv, backend=backend)
    compare("scatter_max_vjp (distinct values)", got, evaluate(grad_v, vals), failures)
    # Tie: rows 0, 1 and 2 all go to node 1; make rows 1 and 2 tie for the max.
    vt = vv.copy()
    vt[0] = -5.0
    vt[1] = vt[2] = 3.0
    got, _ = scatter.scatter_max_vjp(vt, index, NUM_NODES, gv, backend=backend)
    tied = got[[0, 1, 2]]
    if not (tied[0] == 0.0 and tied[1] == gv[1] and tied[2] == 0.0):
        failures.append(
            f"scatter_max_vjp tie: expected the whole cotangent {gv[1]!r} on the first tied "
            f"row (1), got {tied}"
        )
    weights = tied[1:] / gv[1]
    if not (np.all(weights >= 0) and abs(weights.sum() - 1.0) < 1e-15):
        failures.append(
            f"scatter_max_vjp tie: weights {weights} are not a convex combination "
            "(not a subgradient)"
        )
    return failures


CHECKS = (
    check_adjoint_pair,
    check_aggregate,
    check_weighted_aggregate,
    check_edge_vectors,
    check_scatter_softmax,
    check_scatter_max,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the checks (the default)")
    parser.add_argument("--backend", default="numpy", help="geomp_ref backend for the kernels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    failures = []
    for check in CHECKS:
        found = check(rng, args.backend)
        print(f"{check.__name__:28s} {'ok' if not found else 'FAILED'}")
        failures.extend(found)
    for msg in failures:
        print("MISMATCH:", msg)
    print(f"{'OK' if not failures else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
