r"""Weights-first tensor products of gathered node features (private helper).

For a tensor product whose every live path is ``uvw`` with a shared weight and a single copy of
its ``x2`` irrep (``m2 = 1``, as with spherical-harmonic attributes),

.. math::

    z_{w,k} = \sum_p c_p \sum_{u,i,j} C^{(p)}_{ijk}\, W^{(p)}_{uw}\, x1_{u,i}\, x2_j
            = \sum_{\kappa} \sum_i Y^{(\kappa)}_{i,w}\, t^{(\kappa)}_{i,k},\qquad
    Y^{(\kappa)}_{i,w} = \sum_{p \in \kappa} c_p \sum_u x1_{u,i} W^{(p)}_{uw},\quad
    t^{(\kappa)}_{i,k} = \sum_j C_{ijk}\, x2_j,

where a *key* :math:`\kappa` gathers the paths that share the ``x2`` block, the output block and
the input degree (so the same Clebsch–Gordan table): their weight contractions add up before the
coupling. When ``x1`` is a concatenation of gathered node rows (``[h_i, h_j, s_ij]`` of a message
network) the contraction :math:`x1\,W` is linear in each part, so it runs on the node rows,
``(h W)[dst] + (h W')[src] + s W''``: N-row matrix products instead of E-row ones, the edge-sized
work left being the gather and the coupling with ``t`` (a fused Numba kernel on the numba
backend). The backward turns the edge sums into node sums first (``scatter`` over the receivers
and the senders), then the node-sized products:

.. math::

    \bar Y_{i,w} = \sum_k \bar z_{w,k} t_{i,k},\quad \bar t_{i,k} = \sum_w Y_{i,w} \bar z_{w,k},
    \quad \bar x2_j = \sum_{i,k} C_{ijk} \bar t_{i,k},\quad
    \bar W^{(p)} = c_p\, x1^T \bar Y,\quad \bar x1 = \sum_p c_p \bar Y W^{(p)T}.

The sums are rounded in another order than the literal product's, so results agree with the NumPy
reference to rounding; the NumPy backend never takes this path.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import backends as _backends
from ..ops import scatter

KINDS = ("dst", "src", "edge")


class _Key(NamedTuple):
    sl2: slice
    slo: slice
    d1: int
    do: int
    mo: int
    cg: np.ndarray  # (d2, d1 * do): t = x2[:, sl2] @ cg


class _Part(NamedTuple):
    key: int
    u0: int  # multiplicity range of the path's input block inside the piece
    u1: int
    coef: float
    w0: int  # start of the path's flat weight (m1, 1, mo), row-major
    mo: int


class _Piece(NamedTuple):
    d1: int
    c0: int  # columns of the piece inside its segment
    m: int
    parts: tuple


class Plan(NamedTuple):
    keys: tuple
    outs: tuple  # the output blocks in column order: (slice, mo, do, reached by a key)
    pieces: tuple  # per segment
    kinds: tuple


class Cache(NamedTuple):
    graph: object
    segs: tuple
    xs: tuple  # per segment, per piece: the component-major input rows (rows * d1, m)
    x2: np.ndarray
    Y: tuple  # per key (E, d1, mo)
    ts: tuple  # per key (E, d1, do)


def plan(tp, segments) -> Plan | None:
    """The split plan of ``tp`` (an :class:`~geomp_ref.o3.TensorProduct`) for ``x1`` made of
    ``segments``, ``((kind, width), ...)`` in column order, kind in :data:`KINDS`; None when a path
    is not a weighted ``uvw`` path with ``m2 = 1`` or a segment boundary cuts an irrep."""
    if tp._groups is None or sum(wd for _, wd in segments) != tp.irreps_in1.dim:
        return None
    bounds, start = [], 0
    for kind, width in segments:
        if kind not in KINDS:
            raise ValueError(f"segment kind must be one of {KINDS}; got {kind!r}")
        bounds.append((start, start + width))
        start += width
    keys, key_of = [], {}
    pieces = [dict() for _ in segments]
    for p, tab in enumerate(tp._tables):
        sl1, sl2, slo, (m1, m2, mo), (d1, d2, do), cg, slw, live = tab
        if not live:
            continue
        if m2 != 1:
            return None
        kk = (sl2.start, slo.start, d1)
        if kk not in key_of:
            key_of[kk] = len(keys)
            keys.append(_Key(sl2, slo, d1, do, mo,
                             np.ascontiguousarray(cg.transpose(1, 0, 2).reshape(d2, d1 * do))))
        for s, (b0, b1) in enumerate(bounds):
            lo, hi = max(b0, sl1.start), min(b1, sl1.stop)
            if lo >= hi:
                continue
            if (lo - sl1.start) % d1 or (hi - sl1.start) % d1:
                return None
            u0, u1 = (lo - sl1.start) // d1, (hi - sl1.start) // d1
            piece = pieces[s].setdefault((lo, hi), [d1, lo - b0, u1 - u0, []])
            piece[3].append(_Part(key_of[kk], u0, u1, tp.path_coefficients[p], slw.start, mo))
    reached = {k.slo.start for k in keys}
    outs = tuple((sl, mul, ir.dim, sl.start in reached)
                 for (mul, ir), sl in zip(tp.irreps_out, tp.irreps_out.slices()))
    return Plan(tuple(keys), outs,
                tuple(tuple(_Piece(d1, c0, m, tuple(parts)) for d1, c0, m, parts in pcs.values())
                      for pcs in pieces),
                tuple(k for k, _ in segments))


def _rows(w, pt):
    """Rows ``u0:u1`` of the path's weight as an ``(u1 - u0, mo)`` view."""
    return w[pt.w0 + pt.u0 * pt.mo:pt.w0 + pt.u1 * pt.mo].reshape(pt.u1 - pt.u0, pt.mo)


def _component_major(arr, piece):
    rows = arr.shape[0]
    blk = arr[:, piece.c0:piece.c0 + piece.m * piece.d1].reshape(rows, piece.m, piece.d1)
    return np.ascontiguousarray(blk.transpose(0, 2, 1)).reshape(rows * piece.d1, piece.m)


def _couple(be, Y, t, o):
    """``o[z, w, k] += sum_i Y[z, i, w] t[z, i, k]``."""
    if hasattr(be, "tp_couple"):
        be.tp_couple(Y, t, o)
        return
    for i in range(Y.shape[1]):
        o += Y[:, i, :, None] * t[:, i, None, :]


def _couple_vjp(be, Y, t, g, gY):
    if hasattr(be, "tp_couple_vjp"):
        return be.tp_couple_vjp(Y, t, g, gY)
    gt = np.empty_like(t)
    for i in range(Y.shape[1]):
        gY[:, i] += (g * t[:, i, None, :]).sum(axis=2)
        gt[:, i] = (Y[:, i, :, None] * g).sum(axis=1)
    return gt


def forward(pl: Plan, w, graph, segs, x2, backend):
    """The product (E, dim_out) and the backward's cache; ``segs``: per segment its rows (node
    rows for ``dst``/``src``, edge rows for ``edge``)."""
    e = x2.shape[0]
    be = _backends.get(backend)
    xs = []
    part = {k: [None] * len(pl.keys) for k in KINDS}  # kind -> per key (rows * d1, mo)
    for kind, arr, pieces in zip(pl.kinds, segs, pl.pieces):
        seg_x = []
        for pc in pieces:
            xb = _component_major(arr, pc)
            seg_x.append(xb)
            for pt in pc.parts:
                y = xb @ (pt.coef * _rows(w, pt))
                acc = part[kind]
                if acc[pt.key] is None:
                    acc[pt.key] = y
                else:
                    acc[pt.key] += y
        xs.append(tuple(seg_x))
    Y, ts = [], []
    blocks = {sl.start: np.zeros((e, mo, do)) for sl, mo, do, _ in pl.outs}
    for n, key in enumerate(pl.keys):
        width = key.d1 * key.mo
        a, b, c = part["dst"][n], part["src"][n], part["edge"][n]
        if a is None and b is None:
            y = np.zeros((e, width))
        else:
            a = np.zeros((graph.num_nodes * key.d1, key.mo)) if a is None else a
            b = np.zeros_like(a) if b is None else b
            a, b = a.reshape(-1, width), b.reshape(-1, width)
            if hasattr(be, "edge_pair_sum"):  # one fused gather
                y = be.edge_pair_sum(graph, a, b, np.zeros(e), np.zeros(width))
            else:
                y = a[graph.dst]
                y += b[graph.src]
        if c is not None:
            y += c.reshape(e, width)
        y = y.reshape(e, key.d1, key.mo)
        t = (x2[:, key.sl2] @ key.cg).reshape(e, key.d1, key.do)
        _couple(be, y, t, blocks[key.slo.start])
        Y.append(y)
        ts.append(t)
    out = np.concatenate([blocks[sl.start].reshape(e, mo * do) for sl, mo, do, _ in pl.outs],
                         axis=1) if pl.outs else np.zeros((e, 0))
    return out, Cache(graph, tuple(segs), tuple(xs), x2, tuple(Y), tuple(ts))


def backward(pl: Plan, w, cache: Cache, g, backend):
    """``(grad_w, [grad per segment], grad_x2)`` for the cotangent ``g`` (E, dim_out)."""
    graph = cache.graph
    e = g.shape[0]
    be = _backends.get(backend)
    gblk = {sl.start: np.ascontiguousarray(g[:, sl]).reshape(e, mo, do)
            for sl, mo, do, used in pl.outs if used}
    g_x2 = np.zeros_like(cache.x2)
    gY = []
    for key, y, t in zip(pl.keys, cache.Y, cache.ts):
        gy = np.zeros_like(y)
        gt = _couple_vjp(be, y, t, gblk[key.slo.start], gy)
        g_x2[:, key.sl2] += gt.reshape(e, key.d1 * key.do) @ key.cg.T
        gY.append(gy)
    # the edge sums of Y become node sums before the node-sized products
    node_g = {}
    for kind in ("dst", "src"):
        if kind in pl.kinds:
            gr = graph if kind == "dst" else graph.reverse()
            node_g[kind] = [scatter.aggregate(gr, gy.reshape(e, gy.shape[1] * gy.shape[2]),
                                              backend=backend) for gy in gY]
    grad_w = np.zeros_like(w)
    grads = []
    for kind, arr, pieces, xs in zip(pl.kinds, cache.segs, pl.pieces, cache.xs):
        ga = np.zeros_like(arr)
        rows = arr.shape[0]
        for pc, xb in zip(pieces, xs):
            gx = np.zeros((rows * pc.d1, pc.m))
            for pt in pc.parts:
                gy = (gY if kind == "edge" else node_g[kind])[pt.key].reshape(rows * pc.d1,
                                                                            pt.mo)
                W = pt.coef * _rows(w, pt)
                gx += gy @ W.T
                _rows(grad_w, pt)[...] += pt.coef * (xb.T @ gy)
            ga[:, pc.c0:pc.c0 + pc.m * pc.d1] += gx.reshape(rows, pc.d1, pc.m).transpose(
                0, 2, 1).reshape(rows, pc.m * pc.d1)
        grads.append(ga)
    return grad_w, grads, g_x2
