r"""The connection-mode einsums of a tensor-product path and their VJPs (private helpers).

``s`` is the CG-coupled pair product, ``(Z, m1, m2, 2lo+1)`` for the ``uv*`` modes and
``(Z, m1, 2lo+1)`` for the ``uu*`` modes; ``W`` the path's weight view (``(Z,) + path_shape``
when per sample, ``None`` without weights). See the table in
:mod:`geomp_ref.o3.tensor_product`.
"""

from __future__ import annotations

import numpy as np


def apply_weight(mode, W, s, per_sample, z, mo, do):
    """The connection-mode einsum (module table); ``W is None`` for weightless paths."""
    b = "z" if per_sample else ""
    if mode == "uvw":
        m1, m2 = W.shape[-3:-1]
        if per_sample:  # batched GEMM: (z; w, uv) @ (z; uv, k)
            return W.reshape(z, m1 * m2, mo).transpose(0, 2, 1) @ s.reshape(z, m1 * m2, do)
        # GEMM: (z k, uv) @ (uv, w)
        r = s.reshape(z, m1 * m2, do).transpose(0, 2, 1).reshape(z * do, m1 * m2) @ W.reshape(
            m1 * m2, mo
        )
        return r.reshape(z, do, mo).transpose(0, 2, 1)
    if W is None:
        return {
            "uvu": lambda: s.sum(axis=2),
            "uvv": lambda: s.sum(axis=1),
            "uuw": lambda: s.sum(axis=1, keepdims=True),
            "uuu": lambda: s,
            "uvuv": lambda: s.reshape(z, mo, do),
        }[mode]()
    if mode == "uvu":
        return np.einsum(f"zuvk,{b}uv->zuk", s, W)
    if mode == "uvv":
        return np.einsum(f"zuvk,{b}uv->zvk", s, W)
    if mode == "uvuv":
        return (s * W[..., None]).reshape(z, mo, do)
    if mode == "uuw":
        return np.einsum(f"zuk,{b}uw->zwk", s, W)
    return s * W[..., None]  # uuu


def apply_weight_vjp(mode, W, s, g, per_sample, m1, m2):
    """``(grad_s, grad_W)`` for :func:`_apply_weight` given ``g = dL/dz_p`` (Z, mo, do)."""
    b = "z" if per_sample else ""
    z, do = g.shape[0], g.shape[2]
    if W is None:
        if mode == "uvu":
            return np.broadcast_to(g[:, :, None, :], s.shape), None
        if mode == "uvv":
            return np.broadcast_to(g[:, None, :, :], s.shape), None
        if mode == "uuw":
            return np.broadcast_to(g, s.shape), None
        if mode == "uuu":
            return g, None
        return g.reshape(s.shape), None  # uvuv
    if mode == "uvw":
        mo = W.shape[-1]
        if per_sample:
            Wz = W.reshape(z, m1 * m2, mo)
            grad_s = (Wz @ g).reshape(z, m1, m2, do)
            grad_W = (s.reshape(z, m1 * m2, do) @ g.transpose(0, 2, 1)).reshape(z, m1, m2, mo)
            return grad_s, grad_W
        gt = g.transpose(0, 2, 1).reshape(z * do, mo)
        st = s.reshape(z, m1 * m2, do).transpose(0, 2, 1).reshape(z * do, m1 * m2)
        grad_s = (gt @ W.reshape(m1 * m2, mo).T).reshape(z, do, m1, m2).transpose(0, 2, 3, 1)
        grad_W = (st.T @ gt).reshape(m1, m2, mo)
        return grad_s, grad_W
    if mode == "uvu":
        return np.einsum(f"zuk,{b}uv->zuvk", g, W), np.einsum(f"zuvk,zuk->{b}uv", s, g)
    if mode == "uvv":
        return np.einsum(f"zvk,{b}uv->zuvk", g, W), np.einsum(f"zuvk,zvk->{b}uv", s, g)
    if mode == "uvuv":
        g4 = g.reshape(s.shape)
        return g4 * W[..., None], np.einsum(f"zuvk,zuvk->{b}uv", s, g4)
    if mode == "uuw":
        return np.einsum(f"zwk,{b}uw->zuk", g, W), np.einsum(f"zuk,zwk->{b}uw", s, g)
    return g * W[..., None], np.einsum(f"zuk,zuk->{b}u", s, g)  # uuu
