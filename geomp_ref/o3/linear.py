r"""Equivariant linear map between irreps features (e3nn's ``o3.Linear``).

Equations
---------
For every instruction ``(i_in, i_out)`` joining two blocks with the same irrep (same ``l`` and
parity), block ``i_out`` of the output receives

.. math::

    z_{w,m} \mathrel{+}= \frac{1}{\sqrt{F}} \sum_u W_{uw}\, x_{u,m},\qquad
    F = \sum_{(i'_{in}, i_{out})} \mathrm{mul}_{i'_{in}}\ (\texttt{'element'}),\quad
    F = \mathrm{mul}_{i_{in}} \cdot \#\{\text{instructions into } i_{out}\}\ (\texttt{'path'}),

(``F = 0 -> 1``), ``u < mul_in``, ``w < mul_out``, ``m`` the ``2l+1`` components. Optional
biases are added, unscaled, to ``0e`` output blocks: :math:`z_{w,0} \mathrel{+}= b_w`. Default
instructions: every pair of equal irreps, ``i_in`` outer (e3nn's order).

Parameters ``{"weight": (weight_numel,)[, "bias": (bias_numel,)]}`` in e3nn's flat layout: per
instruction ``W`` of shape ``(mul_in, mul_out)`` row-major, concatenated; biases concatenated over
the biased output blocks. Init like e3nn: weights ~ N(0, 1), biases 0.

VJP: :math:`\bar x_{u,m} = F^{-1/2} \sum_w W_{uw} \bar z_{w,m}`,
:math:`\bar W_{uw} = F^{-1/2} \sum_{m} x_{u,m} \bar z_{w,m}` (summed over the batch),
:math:`\bar b_w = \sum \bar z_{w,0}` (derivation: a linear map's adjoint; checked against finite
differences and torch autograd in the tests).

Conventions: those of e3nn >= 0.5 (multiplicity-major layout, flat weights as above), so e3nn
weights and biases copy across unchanged.

References
----------
M. Geiger, T. Smidt, "e3nn: Euclidean Neural Networks", arXiv:2207.09453 (2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._validate import as_float64, as_rng, check_cache, check_choice, check_params
from .._validate import grad_out as _grad_out
from ..layers.base import Block
from ._tp_instructions import _blocks, _safe_irreps

__all__ = ["Linear", "LinearCache"]


class LinearCache(NamedTuple):
    """Forward locals: the input rows ``x`` (Z, dim_in) and the batch shape."""

    x: np.ndarray
    batch: tuple


@dataclass(frozen=True)
class Linear(Block):
    r"""Equivariant linear layer ``irreps_in -> irreps_out`` (spec).

    Parameters
    ----------
    irreps_in, irreps_out : Irreps or str
    biases : bool or sequence of bool
        True: a bias on every ``0e`` output block; or one flag per output block (only ``0e``
        blocks may be True).
    instructions : sequence of (i_in, i_out), optional
        Default: every pair of blocks with equal irreps, ``i_in`` outer.
    path_normalization : {'element', 'path'}

    Notes
    -----
    ``param_shapes() -> {"weight": (weight_numel,)[, "bias": (bias_numel,)]}``;
    ``forward(params, x) -> (out, cache)`` with ``x`` of shape ``(*batch, dim_in)``;
    ``backward(params, cache, grad_out) -> (grad_params, (grad_x,))``. Properties (tested):
    linear in ``x`` and in the weights, equivariant under O(3) (parity included), equal to e3nn's
    ``o3.Linear`` with the same weights and biases.
    """

    irreps_in: Any
    irreps_out: Any
    biases: Any = False
    instructions: Any = None
    path_normalization: str = "element"
    weight_numel: int = field(init=False, repr=False, compare=False)
    bias_numel: int = field(init=False, repr=False, compare=False)
    _tables: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        put(self, "irreps_in", _safe_irreps(self.irreps_in, "Linear.irreps_in"))
        put(self, "irreps_out", _safe_irreps(self.irreps_out, "Linear.irreps_out"))
        bi, bo = _blocks(self.irreps_in), _blocks(self.irreps_out)
        check_choice(self.path_normalization, "Linear.path_normalization", ("element", "path"))
        if self.instructions is None:
            ins = tuple(
                (a, b)
                for a, (_, la, pa, _, _) in enumerate(bi)
                for b, (_, lb, pb, _, _) in enumerate(bo)
                if (la, pa) == (lb, pb)
            )
        else:
            try:
                ins = tuple(tuple(int(v) for v in i) for i in self.instructions)
            except (TypeError, ValueError):
                raise TypeError(
                    "Linear.instructions must be a sequence of (i_in, i_out) int pairs; got "
                    f"{self.instructions!r}"
                ) from None
            for k, i in enumerate(ins):
                if len(i) != 2 or not (0 <= i[0] < len(bi) and 0 <= i[1] < len(bo)):
                    raise ValueError(
                        f"Linear.instructions[{k}] must be (i_in, i_out) with valid block "
                        f"indices; got {i}"
                    )
                if bi[i[0]][1:3] != bo[i[1]][1:3]:
                    raise ValueError(
                        f"Linear.instructions[{k}]: blocks {i} do not hold the same irrep"
                    )
        put(self, "instructions", ins)
        if isinstance(self.biases, (bool, np.bool_)):
            flags = tuple(bool(self.biases) and (l_, p_) == (0, 1) for _, l_, p_, _, _ in bo)
        else:
            if isinstance(self.biases, (str, bytes)) or not hasattr(self.biases, "__len__"):
                raise TypeError(
                    f"Linear.biases must be a bool or one bool per output block; got "
                    f"{self.biases!r}"
                )
            flags = tuple(bool(b) for b in self.biases)
            if len(flags) != len(bo):
                raise ValueError(
                    f"Linear.biases must be a bool or one flag per output block "
                    f"({len(bo)}); got {len(flags)}"
                )
            for k, (f, (_, l_, p_, _, _)) in enumerate(zip(flags, bo)):
                if f and (l_, p_) != (0, 1):
                    raise ValueError(f"Linear.biases[{k}]: only 0e output blocks can have a bias")
        put(
            self,
            "biases",
            flags if not isinstance(self.biases, (bool, np.bool_)) else bool(self.biases),
        )
        tables, offset = [], 0
        for i_in, i_out in ins:
            (mi, l_, _, a, e), (mo, _, _, ao, eo) = bi[i_in], bo[i_out]
            if self.path_normalization == "element":
                fan = sum(bi[j][0] for j, o in ins if o == i_out)
            else:
                fan = mi * sum(1 for _, o in ins if o == i_out)
            coeff = (1.0 if fan == 0 else fan) ** (-0.5)
            tables.append(
                (
                    slice(a, e),
                    slice(ao, eo),
                    mi,
                    mo,
                    2 * l_ + 1,
                    slice(offset, offset + mi * mo),
                    coeff,
                )
            )
            offset += mi * mo
        put(self, "weight_numel", offset)
        bias_slices, boff = [], 0
        for f, (mul, _, _, ao, eo) in zip(flags, bo):
            if f and mul > 0:
                bias_slices.append((slice(ao, eo), slice(boff, boff + mul)))
                boff += mul
        put(self, "bias_numel", boff)
        put(self, "_tables", (tuple(tables), tuple(bias_slices)))

    def param_shapes(self) -> dict:
        """``{"weight": (weight_numel,)}`` plus ``{"bias": (bias_numel,)}`` when biased."""
        shapes = {"weight": (self.weight_numel,)}
        if self.bias_numel:
            shapes["bias"] = (self.bias_numel,)
        return shapes

    def init(self, rng) -> dict:
        """``{"weight": N(0,1)}`` plus ``{"bias": zeros}`` when some output block is biased."""
        rng = as_rng(rng, "rng")
        params = {"weight": rng.standard_normal(self.weight_numel)}
        if self.bias_numel:
            params["bias"] = np.zeros(self.bias_numel)
        return params

    def weight_normalization(self) -> dict:
        r"""The constant by which ``forward`` multiplies each stored parameter, as a tree of
        ``param_shapes()``: :math:`F^{-1/2}` for every weight of a path (see the equations), 1 for
        the biases. Dividing weights by it gives the effective weights of the map (what a torch
        ``nn.Linear`` would store); :func:`geomp_ref.train.standard_parametrization` uses it."""
        coeffs = np.ones(self.weight_numel)
        for *_, slw, coeff in self._tables[0]:
            coeffs[slw] = coeff
        out = {"weight": coeffs}
        if self.bias_numel:
            out["bias"] = np.ones(self.bias_numel)
        return out

    def forward(self, params, x):
        """``out = x -> Linear(x)`` with shape ``(*batch, dim_out)``; returns ``(out, cache)``."""
        check_params(params, self.param_shapes(), "Linear", exact=True)
        w = as_float64(params["weight"], "params['weight']")
        b = as_float64(params["bias"], "params['bias']") if self.bias_numel else None
        x = as_float64(x, "x")
        if x.ndim < 1 or x.shape[-1] != self.irreps_in.dim:
            raise ValueError(
                f"x must have shape (..., {self.irreps_in.dim}) for irreps_in="
                f"{self.irreps_in}; got {x.shape}"
            )
        batch = tuple(x.shape[:-1])
        z = math.prod(batch)
        x = x.reshape(z, self.irreps_in.dim)
        out = np.zeros((z, self.irreps_out.dim))
        tables, bias_slices = self._tables
        for sl_in, sl_out, mi, mo, d, slw, coeff in tables:
            if mi * mo == 0:
                continue
            W = w[slw].reshape(mi, mo)
            # z_{w,m} = coeff * sum_u W_uw x_{u,m}: one GEMM with rows (sample, m)
            xt = x[:, sl_in].reshape(z, mi, d).transpose(0, 2, 1).reshape(z * d, mi)
            out[:, sl_out] += coeff * (xt @ W).reshape(z, d, mo).transpose(0, 2, 1).reshape(
                z, mo * d
            )
        for sl_out, slb in bias_slices:
            out[:, sl_out] += b[slb]
        return out.reshape(batch + (self.irreps_out.dim,)), LinearCache(x, batch)

    def backward(self, params, cache: LinearCache, grad_out):
        """VJP: ``(grad_params, (grad_x,))``."""
        check_cache(cache, LinearCache, "Linear")
        check_params(params, self.param_shapes(), "Linear", exact=True)
        w = as_float64(params["weight"], "params['weight']")
        batch = cache.batch
        g = _grad_out(grad_out, batch + (self.irreps_out.dim,), "Linear")
        z = cache.x.shape[0]
        g = g.reshape(z, self.irreps_out.dim)
        tables, bias_slices = self._tables
        grad = {"weight": np.zeros(self.weight_numel)}
        if self.bias_numel:
            grad["bias"] = np.zeros(self.bias_numel)
            # reverses `out[:, sl_out] += b[slb]`
            for sl_out, slb in bias_slices:
                grad["bias"][slb] += g[:, sl_out].sum(axis=0)
        grad_x = np.zeros_like(cache.x)
        for sl_in, sl_out, mi, mo, d, slw, coeff in tables:
            if mi * mo == 0:
                continue
            W = w[slw].reshape(mi, mo)
            # reverses `out[:, sl_out] += coeff * (xt @ W)...`
            gt = g[:, sl_out].reshape(z, mo, d).transpose(0, 2, 1).reshape(z * d, mo)
            xt = cache.x[:, sl_in].reshape(z, mi, d).transpose(0, 2, 1).reshape(z * d, mi)
            grad["weight"][slw] += coeff * (xt.T @ gt).ravel()
            grad_x[:, sl_in] += coeff * (gt @ W.T).reshape(z, d, mi).transpose(0, 2, 1).reshape(
                z, mi * d
            )
        return grad, (grad_x.reshape(batch + (self.irreps_in.dim,)),)
