r"""Clebsch–Gordan tensor products of irreps features (e3nn's ``o3.TensorProduct``).

Equations
---------
Inputs ``x1`` (irreps ``irreps_in1``) and ``x2`` (``irreps_in2``) are multiplicity-major feature
vectors: block ``a`` of an irreps holds ``x_{u,i}``, ``u < mul_a``, ``i < 2 l_a + 1``. Each
instruction ``p = (i1, i2, io, mode, has_weight, path_weight)`` couples block ``i1`` of ``x1``
(mult ``m1``, degree ``l1``) with block ``i2`` of ``x2`` (``m2``, ``l2``) into output block ``io``
(``mo``, ``lo``) through ``C = wigner_3j(l1, l2, lo)`` (shape ``(2l1+1, 2l2+1, 2lo+1)``):

.. math::

    t_{v,ik} = \sum_j C_{ijk}\, x2_{v,j},\qquad
    s_{uv,k} = \sum_i x1_{u,i}\, t_{v,ik}\quad(\text{``uu'' modes: } s_{u,k} = s_{uu,k})

and the connection mode *is* the einsum that applies the weights ``W_p``:

====== ============================================= ===================
mode   path output                                   ``W_p`` shape
====== ============================================= ===================
uvw    :math:`z_{w,k} = \sum_{uv} W_{uvw} s_{uv,k}`    (m1, m2, mo)
uvu    :math:`z_{u,k} = \sum_v W_{uv} s_{uv,k}`        (m1, m2), mo = m1
uvv    :math:`z_{v,k} = \sum_u W_{uv} s_{uv,k}`        (m1, m2), mo = m2
uvuv   :math:`z_{(u m2 + v),k} = W_{uv} s_{uv,k}`      (m1, m2), mo = m1 m2
uuw    :math:`z_{w,k} = \sum_u W_{uw} s_{u,k}`         (m1, mo), m1 = m2
uuu    :math:`z_{u,k} = W_u s_{u,k}`                   (m1,), m1 = m2 = mo
====== ============================================= ===================

A weightless path drops ``W`` (uvu sums over v, uvv over u, uuw over u with mo = 1; uvw must be
weighted). Output block ``io`` is :math:`\sum_{p \to io} c_p z^{(p)}`, zero without a path, with

.. math::

    c_p = \sqrt{\alpha_p\;\mathrm{out\_var}_{io}\;\mathrm{path\_weight}_p / F_p},

:math:`\alpha_p = 2l_o + 1` (``irrep_normalization='component'``), :math:`(2l_1+1)(2l_2+1)`
(``'norm'``) or 1 (``'none'``); :math:`F_p = \sum_{q \to io} v1_{q} v2_{q} n_q` (``'element'``),
:math:`v1_p v2_p n_p \cdot \#\{q \to io\}` (``'path'``) or 1 (``'none'``), not divided when 0;
fan-in ``n``: uvw ``m1 m2``, uvu ``m2``, uvv ``m1``, uuw ``m1``, uuu/uvuv ``1``. **The user's
``path_weight`` sits under the square root** (e3nn's semantics: 4 scales the path by 2).

Conventions: those of e3nn >= 0.5 (irreps layout multiplicity-major, coupling tensors from
:func:`~geomp_ref.o3.wigner_3j`); weights flat in e3nn's exact layout (weighted instructions in
order, each ``W_p`` row-major), so e3nn weights copy across unchanged. The spec keeps the
user's ``path_weight`` in ``instructions``; the constants :math:`c_p` are in
``spec.path_coefficients`` (e3nn overwrites its instructions' ``path_weight`` with :math:`c_p`).

VJP (bilinear, derivation ``derivations/tensor_product.py``): with :math:`g = c_p\,\partial L /
\partial z^{(p)}`, the weight gradient is the same einsum with ``W`` and ``z`` swapped
(uvw: :math:`\bar W_{uvw} = \sum_{k} s_{uv,k} g_{w,k}`), :math:`\bar s` is the transpose einsum,
:math:`\bar x1_{u,i} = \sum_{vk} \bar s_{uv,k} t_{v,ik}`,
:math:`\bar t_{v,ik} = \sum_u \bar s_{uv,k} x1_{u,i}` and
:math:`\bar x2_{v,j} = \sum_{ik} \bar t_{v,ik} C_{ijk}`.

References
----------
M. Geiger, T. Smidt, "e3nn: Euclidean Neural Networks", arXiv:2207.09453 (2022), §4 (tensor
product, eq. for the path normalization). N. Thomas et al., "Tensor field networks",
arXiv:1802.08219 (2018), eq. (4).
"""

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._validate import as_float64, as_rng, check_bool, check_cache, check_choice, check_params
from .._validate import grad_out as _grad_out
from ..layers.base import Block
from . import _tp_grouped
from ._tp_instructions import (
    MODES,
    Instruction,
    _blocks,
    _check_var,
    _fan_in,
    _normalise_instruction,
    _safe_irreps,
)
from ._tp_modes import apply_weight, apply_weight_vjp
from .wigner import wigner_3j

__all__ = [
    "MODES",
    "FullyConnectedTensorProduct",
    "Instruction",
    "TensorProduct",
    "TensorProductCache",
]


class TensorProductCache(NamedTuple):
    """Forward locals: inputs as (Z, dim) rows, the weight ``w`` (None without weights), per
    instruction ``t`` and ``s`` (or ``y`` on the weights-first path), and the batch shape."""

    x1: np.ndarray
    x2: np.ndarray
    w: np.ndarray | None
    ts: tuple  # per instruction: (Z, m2, d1, do) = sum_j C_ijk x2_vj
    ss: tuple  # per instruction: (Z, m1, m2, do) (uv modes) or (Z, m1, do) (uu modes); on the
    # weights-first path y = x1 W, (Z, d1, m2, mo)
    batch: tuple
    weights_first: bool = False
    blocks: Any = None  # grouped path: the component-major input blocks of x1


@dataclass(frozen=True)
class TensorProduct(Block):
    r"""Weighted Clebsch–Gordan tensor product (spec; see the module docstring for the maths).

    Parameters
    ----------
    irreps_in1, irreps_in2, irreps_out : Irreps or str
    instructions : sequence of tuple
        ``(i_in1, i_in2, i_out, connection_mode, has_weight[, path_weight=1.0])``; normalised to
        :class:`Instruction` (with ``path_shape``).
    in1_var, in2_var, out_var : sequence of float, optional
        Per-block variances (default 1), entering :math:`c_p` as in e3nn.
    irrep_normalization : {'component', 'norm', 'none'}
    path_normalization : {'element', 'path', 'none'}
    internal_weights, shared_weights : bool, optional
        e3nn's rules: ``shared_weights`` defaults to True; ``internal_weights`` defaults to
        ``shared_weights`` (and False without weighted paths). With internal weights ``params =
        {"weight": (weight_numel,)}``; otherwise the weight is the last input of ``forward``:
        shape ``(weight_numel,)`` when shared, ``(*batch, weight_numel)`` per sample.

    Notes
    -----
    ``forward(params, x1, x2, weight=None) -> (out, cache)`` with ``x1`` ``(*batch, dim1)`` and
    ``x2`` ``(*batch, dim2)`` (same batch shape); ``weight`` is given exactly when
    ``takes_weight``. ``backward(params, cache, grad_out) -> (grad_params, (grad_x1, grad_x2,
    grad_weight))`` with ``grad_weight = None`` when the weight is not an input. Properties
    (tested): bilinear in (x1, x2), linear in the weight, equivariant
    ``f(x1 D1^T, x2 D2^T) = f(x1, x2) Do^T`` for every orthogonal Q (parity included), equal to
    e3nn's module with the same weights.
    """

    irreps_in1: Any
    irreps_in2: Any
    irreps_out: Any
    instructions: Any
    in1_var: Any = None
    in2_var: Any = None
    out_var: Any = None
    irrep_normalization: str = "component"
    path_normalization: str = "element"
    internal_weights: bool | None = None
    shared_weights: bool | None = None
    path_coefficients: tuple = field(init=False, repr=False, compare=False)
    weight_numel: int = field(init=False, repr=False, compare=False)
    _tables: tuple = field(init=False, repr=False, compare=False)
    _groups: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        owner = type(self).__name__
        for name in ("irreps_in1", "irreps_in2", "irreps_out"):
            put(self, name, _safe_irreps(getattr(self, name), f"{owner}.{name}"))
        b1, b2, bo = (_blocks(self.irreps_in1), _blocks(self.irreps_in2), _blocks(self.irreps_out))
        if isinstance(self.instructions, (str, bytes)) or not hasattr(
            self.instructions, "__iter__"
        ):
            raise TypeError(
                f"{owner}.instructions must be a sequence of tuples "
                "(i_in1, i_in2, i_out, mode, has_weight[, path_weight])"
            )
        ins = tuple(
            _normalise_instruction(k, x, b1, b2, bo, owner) for k, x in enumerate(self.instructions)
        )
        put(self, "instructions", ins)
        put(self, "in1_var", _check_var(self.in1_var, len(b1), f"{owner}.in1_var"))
        put(self, "in2_var", _check_var(self.in2_var, len(b2), f"{owner}.in2_var"))
        put(self, "out_var", _check_var(self.out_var, len(bo), f"{owner}.out_var"))
        check_choice(self.irrep_normalization, f"{owner}.irrep_normalization",
                     ("component", "norm", "none"))
        check_choice(self.path_normalization, f"{owner}.path_normalization",
                     ("element", "path", "none"))
        for name in ("internal_weights", "shared_weights"):
            if getattr(self, name) is not None:
                check_bool(getattr(self, name), f"{owner}.{name}")
        shared = True if self.shared_weights is None else bool(self.shared_weights)
        internal = self.internal_weights
        if internal is None:
            internal = shared and any(i.has_weight for i in ins)
        if internal and not shared:
            raise ValueError(
                f"{owner}.internal_weights=True needs shared_weights=True (per-sample weights "
                "are an input); set internal_weights=False"
            )
        put(self, "shared_weights", shared)
        put(self, "internal_weights", bool(internal))
        put(self, "weight_numel", int(sum(math.prod(i.path_shape) for i in ins if i.has_weight)))
        put(self, "path_coefficients", self._coefficients(b1, b2, bo))
        # Constant tables, built once: block slices and the CG tensor of every live path.
        tables, offset = [], 0
        for i in ins:
            (m1, l1, _, a1, e1), (m2, l2, _, a2, e2), (mo, lo, _, ao, eo) = (
                b1[i.i_in1],
                b2[i.i_in2],
                bo[i.i_out],
            )
            n_w = math.prod(i.path_shape) if i.has_weight else 0
            live = m1 * m2 * mo > 0
            cg = np.ascontiguousarray(wigner_3j(l1, l2, lo), dtype=np.float64) if live else None
            tables.append(
                (
                    slice(a1, e1),
                    slice(a2, e2),
                    slice(ao, eo),
                    (m1, m2, mo),
                    (2 * l1 + 1, 2 * l2 + 1, 2 * lo + 1),
                    cg,
                    slice(offset, offset + n_w),
                    live,
                )
            )
            offset += n_w
        put(self, "_tables", tuple(tables))
        put(self, "_groups", _tp_grouped.plan(ins, self._tables))

    def _coefficients(self, b1, b2, bo) -> tuple:
        v1 = self.in1_var or (1.0,) * len(b1)
        v2 = self.in2_var or (1.0,) * len(b2)
        vo = self.out_var or (1.0,) * len(bo)

        def n(i):
            return _fan_in(i.connection_mode, b1[i.i_in1][0], b2[i.i_in2][0])

        out = []
        for p in self.instructions:
            l1, l2, lo = b1[p.i_in1][1], b2[p.i_in2][1], bo[p.i_out][1]
            alpha = {"component": 2 * lo + 1, "norm": (2 * l1 + 1) * (2 * l2 + 1), "none": 1}[
                self.irrep_normalization
            ]
            same = [q for q in self.instructions if q.i_out == p.i_out]
            if self.path_normalization == "element":
                fan = sum(v1[q.i_in1] * v2[q.i_in2] * n(q) for q in same)
            elif self.path_normalization == "path":
                fan = v1[p.i_in1] * v2[p.i_in2] * n(p) * len(same)
            else:
                fan = 1
            # Same operation order as e3nn so that the constants agree to the last bit.
            a = float(alpha)
            if fan > 0:
                a /= fan
            a *= vo[p.i_out]
            a *= p.path_weight
            out.append(math.sqrt(a))
        return tuple(out)

    # ------------------------------------------------------------------ API
    @property
    def takes_weight(self) -> bool:
        """True when the weight is an input of ``forward`` rather than a param."""
        return not self.internal_weights and self.weight_numel > 0

    def param_shapes(self) -> dict:
        """``{"weight": (weight_numel,)}`` with internal weights, else ``{}``."""
        return {"weight": (self.weight_numel,)} if self.internal_weights else {}

    def init(self, rng) -> dict:
        """``{"weight": N(0, 1) of shape (weight_numel,)}`` with internal weights, else ``{}``."""
        rng = as_rng(rng, "rng")
        if not self.internal_weights:
            return {}
        return {"weight": rng.standard_normal(self.weight_numel)}

    def _inputs(self, params, x1, x2, weight):
        owner = type(self).__name__
        check_params(params, self.param_shapes(), owner, exact=True)
        x1 = as_float64(x1, "x1")
        x2 = as_float64(x2, "x2")
        d1, d2 = self.irreps_in1.dim, self.irreps_in2.dim
        if x1.ndim < 1 or x1.shape[-1] != d1:
            raise ValueError(
                f"x1 must have shape (..., {d1}) for irreps_in1={self.irreps_in1}; got {x1.shape}"
            )
        if x2.ndim < 1 or x2.shape[-1] != d2:
            raise ValueError(
                f"x2 must have shape (..., {d2}) for irreps_in2={self.irreps_in2}; got {x2.shape}"
            )
        batch = tuple(x1.shape[:-1])
        if x2.shape[:-1] != batch:
            raise ValueError(
                f"x1 and x2 must share their batch shape; got x1 {x1.shape} and x2 {x2.shape} "
                "(broadcast them first)"
            )
        z = math.prod(batch)
        if self.takes_weight:
            want = (self.weight_numel,) if self.shared_weights else batch + (self.weight_numel,)
            if weight is None:
                raise ValueError(
                    f"weight must be passed to {owner}.forward (internal_weights=False) with "
                    f"shape {want}"
                )
            w = as_float64(weight, "weight")
            if w.shape != want:
                raise ValueError(
                    f"weight must have shape {want} ("
                    + ("shared" if self.shared_weights else "one row per sample")
                    + f", weight_numel={self.weight_numel}); got {w.shape}"
                )
            if not self.shared_weights:
                w = w.reshape(z, self.weight_numel)
        elif weight is not None:
            raise ValueError(
                f"weight must not be passed to {owner}.forward: this spec keeps it in "
                "params['weight'] (internal_weights=True) or has no weighted path"
            )
        elif self.internal_weights:
            w = as_float64(params["weight"], "params['weight']")
        else:
            w = None
        return x1.reshape(z, d1), x2.reshape(z, d2), w, batch

    def forward(self, params, x1, x2, weight=None):
        """Evaluate the tensor product; returns ``(out (*batch, dim_out), cache)``."""
        x1, x2, w, batch = self._inputs(params, x1, x2, weight)
        z = x1.shape[0]
        per_sample = w is not None and w.ndim == 2
        out = np.zeros((z, self.irreps_out.dim))
        if self._groups is not None and w is not None and not per_sample:
            # every path uvw with a shared weight: contract the multiplicities first, one stacked
            # matrix product per input block (geomp_ref.o3._tp_grouped)
            ts, ys, blocks = _tp_grouped.forward(self._groups, self._tables,
                                                 self.path_coefficients, x1, x2, w, out)
            cache = TensorProductCache(x1, x2, w, ts, ys, batch, True, blocks)
            return out.reshape(batch + (self.irreps_out.dim,)), cache
        ts, ss = [], []
        for ins, c_p, tab in zip(self.instructions, self.path_coefficients, self._tables):
            sl1, sl2, slo, (m1, m2, mo), (d1, d2, do), cg, slw, live = tab
            if not live:
                ts.append(None)
                ss.append(None)
                continue
            x1_u = x1[:, sl1].reshape(z, m1, d1)
            x2_v = x2[:, sl2].reshape(z, m2, d2)
            # t_{z,v,i,k} = sum_j C_ijk x2_{z,v,j}: one GEMM against the CG table.
            t = (x2_v.reshape(z * m2, d2) @ cg.transpose(1, 0, 2).reshape(d2, d1 * do)).reshape(
                z, m2, d1, do
            )
            mode = ins.connection_mode
            if mode[:2] == "uu":
                s = np.einsum("zui,zuik->zuk", x1_u, t)
            else:
                # s_{z,u,v,k} = sum_i x1_{z,u,i} t_{z,v,i,k}: batched (m1 x d1)(d1 x m2 do).
                s = (x1_u @ t.transpose(0, 2, 1, 3).reshape(z, d1, m2 * do)).reshape(z, m1, m2, do)
            W = None
            if ins.has_weight:
                W = w[..., slw].reshape(((z,) if per_sample else ()) + ins.path_shape)
            zp = apply_weight(mode, W, s, per_sample, z, mo, do)
            out[:, slo] += c_p * zp.reshape(z, mo * do)
            ts.append(t)
            ss.append(s)
        cache = TensorProductCache(x1, x2, w, tuple(ts), tuple(ss), batch)
        return out.reshape(batch + (self.irreps_out.dim,)), cache

    def backward(self, params, cache: TensorProductCache, grad_out):
        """VJP: ``(grad_params, (grad_x1, grad_x2, grad_weight or None))``."""
        owner = type(self).__name__
        check_cache(cache, TensorProductCache, owner)
        batch = cache.batch
        g = _grad_out(grad_out, batch + (self.irreps_out.dim,), owner)
        z = cache.x1.shape[0]
        g = g.reshape(z, self.irreps_out.dim)
        w = cache.w
        per_sample = w is not None and w.ndim == 2
        grad_x1 = np.zeros_like(cache.x1)
        grad_x2 = np.zeros_like(cache.x2)
        grad_w = None if w is None else np.zeros_like(w)
        if cache.weights_first:
            # reverses the weights-first evaluation of the forward
            _tp_grouped.backward(self._groups, self._tables, self.path_coefficients, cache.x1,
                                 w, cache.ts, cache.ss, g, grad_x1, grad_x2, grad_w,
                                 cache.blocks)
        for ins, c_p, tab, t, s in zip(
            self.instructions, self.path_coefficients, self._tables, cache.ts, cache.ss
        ):
            sl1, sl2, slo, (m1, m2, mo), (d1, d2, do), cg, slw, live = tab
            if not live or cache.weights_first:
                continue
            mode = ins.connection_mode
            # reverses `out[:, slo] += c_p * zp`
            g_p = c_p * g[:, slo].reshape(z, mo, do)
            W = None
            if ins.has_weight:
                W = w[..., slw].reshape(((z,) if per_sample else ()) + ins.path_shape)
            # reverses `zp = apply_weight(...)`
            grad_s, grad_W = apply_weight_vjp(mode, W, s, g_p, per_sample, m1, m2)
            if grad_W is not None:
                grad_w[..., slw] += grad_W.reshape(grad_w[..., slw].shape)
            x1_u = cache.x1[:, sl1].reshape(z, m1, d1)
            # reverses the contraction of x1 with t (`s = ...`)
            if mode[:2] == "uu":
                grad_x1_u = np.einsum("zuk,zuik->zui", grad_s, t)
                grad_t = np.einsum("zuk,zui->zuik", grad_s, x1_u)
            else:
                gs = grad_s.reshape(z, m1, m2 * do)
                tt = t.transpose(0, 2, 1, 3).reshape(z, d1, m2 * do)
                grad_x1_u = gs @ tt.transpose(0, 2, 1)
                grad_t = (x1_u.transpose(0, 2, 1) @ gs).reshape(z, d1, m2, do).transpose(0, 2, 1, 3)
            # reverses `t = x2_v @ C`
            grad_x2_v = np.ascontiguousarray(grad_t).reshape(z * m2, d1 * do) @ (
                cg.transpose(1, 0, 2).reshape(d2, d1 * do).T
            )
            grad_x1[:, sl1] += grad_x1_u.reshape(z, m1 * d1)
            grad_x2[:, sl2] += grad_x2_v.reshape(z, m2 * d2)
        grad_x1 = grad_x1.reshape(batch + (self.irreps_in1.dim,))
        grad_x2 = grad_x2.reshape(batch + (self.irreps_in2.dim,))
        if self.internal_weights:
            return {"weight": grad_w}, (grad_x1, grad_x2, None)
        if self.takes_weight and per_sample:
            grad_w = grad_w.reshape(batch + (self.weight_numel,))
        return {}, (grad_x1, grad_x2, grad_w)

    def weight_views(self, weight) -> list:
        """Per instruction, the view ``W_p`` of a flat weight (``None`` for weightless paths)."""
        w = np.asarray(weight)
        return [
            w[..., tab[6]].reshape(w.shape[:-1] + ins.path_shape) if ins.has_weight else None
            for ins, tab in zip(self.instructions, self._tables)
        ]


@dataclass(frozen=True, init=False)
class FullyConnectedTensorProduct(TensorProduct):
    r"""All ``uvw`` paths allowed by the selection rules, in e3nn's order.

    Every ``(i1, i2, io)`` with :math:`|l_1 - l_2| \le l_o \le l_1 + l_2` and
    :math:`p_o = p_1 p_2`, looped ``i1`` outer, then ``i2``, then ``io``, over the irreps as
    written; weighted, ``path_weight = 1``. Other arguments as :class:`TensorProduct`.
    """

    # derived from the irreps: not an argument (so ``dataclasses.replace`` recomputes it)
    instructions: Any = field(default=(), init=False)

    def __init__(
        self,
        irreps_in1,
        irreps_in2,
        irreps_out,
        in1_var=None,
        in2_var=None,
        out_var=None,
        irrep_normalization="component",
        path_normalization="element",
        internal_weights=None,
        shared_weights=None,
    ):
        ir1, ir2, iro = (
            _safe_irreps(irreps_in1, "irreps_in1"),
            _safe_irreps(irreps_in2, "irreps_in2"),
            _safe_irreps(irreps_out, "irreps_out"),
        )
        b1, b2, bo = _blocks(ir1), _blocks(ir2), _blocks(iro)
        fc = [
            (a, b, c, "uvw", True, 1.0)
            for a, (_, l1, p1, _, _) in enumerate(b1)
            for b, (_, l2, p2, _, _) in enumerate(b2)
            for c, (_, lo, po, _, _) in enumerate(bo)
            if abs(l1 - l2) <= lo <= l1 + l2 and po == p1 * p2
        ]
        super().__init__(
            ir1,
            ir2,
            iro,
            fc,
            in1_var,
            in2_var,
            out_var,
            irrep_normalization,
            path_normalization,
            internal_weights,
            shared_weights,
        )
