r"""Shared-weight ``uvw`` tensor products laid out for matrix products (private helper).

For a ``uvw`` path with a shared weight :math:`W_{uvw}`,

.. math::

    s_{k,u,v} = \sum_i x1_{u,i}\, t_{v,i,k}, \quad t_{v,i,k} = \sum_j C_{ijk}\, x2_{v,j}, \qquad
    z_{w,k} = \sum_{u,v} W_{uvw}\, s_{k,u,v},

the per-sample coupling :math:`s` is formed directly in the layout ``(Z, k, u v)`` (a batched
``(do x d1)(d1 x m1)`` product per sample), and the couplings of all paths into one output block
are stacked side by side, so that the weight contraction, where the work is, is one matrix product
per output block over all samples and components, ``(Z do, sum m1 m2) @ (sum m1 m2, mo)``, with
the paths' coefficients folded into the stacked weights; the result is transposed into the
multiplicity-major output once per block. Each input block of ``x1`` is made contiguous once. The
backward:

.. math::

    \bar W = s^T \bar z, \quad \bar s = \bar z W^T, \quad
    \bar x1_{u,i} = \sum_{k,v} \bar s_{k,u,v} t_{v,i,k}, \quad
    \bar t_{v,i,k} = \sum_u \bar s_{k,u,v} x1_{u,i}, \quad
    \bar x2_{v,j} = \sum_{i,k} C_{ijk} \bar t_{v,i,k},

again two matrix products over all samples plus small batched ones. The same sums as the
per-path einsums of :mod:`geomp_ref.o3.tensor_product`, in another layout (results agree to
rounding). ``groups`` lists, per output block, the instructions writing it.
"""

from __future__ import annotations

import numpy as np


def plan(instructions, tables):
    """``((p, ...), ...)``: the live paths grouped by output block, if every live path is a
    weighted ``uvw`` path, else None."""
    groups: dict = {}
    for p, (ins, tab) in enumerate(zip(instructions, tables)):
        if not tab[7]:  # dead path (a zero multiplicity): contributes nothing
            continue
        if ins.connection_mode != "uvw" or not ins.has_weight:
            return None
        groups.setdefault(ins.i_out, []).append(p)
    return tuple(tuple(ps) for ps in groups.values())


def _x1_blocks(x1, tables, groups):
    """Every input block of ``x1`` used, as ``(Z, d1, m1)`` (component-major), made once."""
    z = x1.shape[0]
    blocks = {}
    for ps in groups:
        for p in ps:
            sl1, _, _, (m1, _, _), (d1, _, _), *_ = tables[p]
            if sl1.start not in blocks:
                blocks[sl1.start] = np.ascontiguousarray(
                    x1[:, sl1].reshape(z, m1, d1).transpose(0, 2, 1))
    return blocks


def _weights(w, tables, coefs, ps):
    """The paths' weights (each times its coefficient) stacked: ``(sum of m1 m2, mo)``."""
    return np.concatenate([coefs[p] * w[tables[p][6]].reshape(-1, tables[p][3][2]) for p in ps])


def forward(groups, tables, coefs, x1, x2, w, out):
    """Write every output block into ``out`` (Z, dim_out); returns ``(ts, ss, blocks)`` for the
    backward: per path ``t``, per output block the stacked couplings ``S``, and the
    component-major input blocks of ``x1``."""
    z = x1.shape[0]
    blocks = _x1_blocks(x1, tables, groups)
    ts, ss = [None] * len(tables), []
    for ps in groups:
        _, _, slo, (_, _, mo), (_, _, do), *_ = tables[ps[0]]
        widths = [tables[p][3][0] * tables[p][3][1] for p in ps]
        S = np.empty((z, do, sum(widths)))
        off = 0
        for p, width in zip(ps, widths):
            sl1, sl2, _, (m1, m2, _), (d1, d2, _), cg, _, _ = tables[p]
            # t_{v,i,k} = sum_j C_ijk x2_{v,j}
            t = (np.ascontiguousarray(x2[:, sl2]).reshape(z * m2, d2)
                 @ cg.transpose(1, 0, 2).reshape(d2, d1 * do)).reshape(z, m2, d1, do)
            # s_{k,u,v} = sum_i x1_{u,i} t_{v,i,k}, laid out (Z, k, u v): per sample a (do x d1)
            # times (d1 x m1) product when m2 = 1, else one per k
            x1_t = blocks[sl1.start]
            if m2 == 1:
                S[:, :, off:off + width] = np.matmul(t[:, 0].transpose(0, 2, 1), x1_t)
            else:
                S[:, :, off:off + width] = np.matmul(
                    x1_t.transpose(0, 2, 1)[:, None], t.transpose(0, 3, 2, 1)).reshape(
                        z, do, width)
            ts[p] = t
            off += width
        # z_{w,k} = sum_p c_p sum_{uv} W_{uvw} s_{k,u,v}: one product for the whole output block
        r = S.reshape(z * do, S.shape[2]) @ _weights(w, tables, coefs, ps)
        out[:, slo] = r.reshape(z, do, mo).transpose(0, 2, 1).reshape(z, mo * do)
        ss.append(S)
    return tuple(ts), tuple(ss), blocks


def backward(groups, tables, coefs, x1, w, ts, ss, g, grad_x1, grad_x2, grad_w, blocks=None):
    """Accumulate the VJP into ``grad_x1``, ``grad_x2`` and ``grad_w`` (flat weight);
    ``blocks``: the forward's input blocks (rebuilt when None)."""
    z = x1.shape[0]
    if blocks is None:
        blocks = _x1_blocks(x1, tables, groups)
    gx1 = {}
    for ps, S in zip(groups, ss):
        _, _, slo, (_, _, mo), (_, _, do), *_ = tables[ps[0]]
        gpt = np.ascontiguousarray(g[:, slo].reshape(z, mo, do).transpose(0, 2, 1)).reshape(
            z * do, mo)
        # reverses r = S Wc (Wc: the stacked weights times their coefficients)
        gw = S.reshape(z * do, S.shape[2]).T @ gpt
        gS = (gpt @ _weights(w, tables, coefs, ps).T).reshape(z, do, S.shape[2])
        off = 0
        for p in ps:
            sl1, sl2, _, (m1, m2, _), (d1, d2, _), cg, slw, _ = tables[p]
            width = m1 * m2
            grad_w[slw] += coefs[p] * gw[off:off + width].reshape(-1)
            gs = gS[:, :, off:off + width]
            off += width
            t, x1_t = ts[p], blocks[sl1.start]
            # reverses s_{k,u,v} = sum_i x1_{u,i} t_{v,i,k}
            if m2 == 1:
                g_u = np.matmul(gs.transpose(0, 2, 1), t[:, 0].transpose(0, 2, 1))  # (Z, u, i)
                gt = np.matmul(x1_t, gs.transpose(0, 2, 1))[:, None]  # (Z, v, i, k)
            else:
                gs4 = gs.reshape(z, do, m1, m2)
                g_u = np.matmul(gs4, t.transpose(0, 3, 1, 2)).sum(axis=1)
                gt = np.matmul(gs4.transpose(0, 1, 3, 2), x1_t.transpose(0, 2, 1)[:, None]
                               ).transpose(0, 2, 3, 1)
            key = sl1.start
            gx1[key] = g_u if key not in gx1 else gx1[key] + g_u
            # reverses t = x2 C
            gx2 = (np.ascontiguousarray(gt).reshape(z * m2, d1 * do)
                   @ cg.transpose(1, 0, 2).reshape(d2, d1 * do).T)
            grad_x2[:, sl2] += gx2.reshape(z, m2 * d2)
    for ps in groups:
        for p in ps:
            sl1, _, _, (m1, _, _), (d1, _, _), *_ = tables[p]
            if sl1.start in gx1:
                grad_x1[:, sl1] += gx1.pop(sl1.start).reshape(z, m1 * d1)
