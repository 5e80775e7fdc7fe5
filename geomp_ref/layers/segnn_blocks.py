r"""SEGNN's steerable layers: ``O3TensorProduct`` and ``O3TensorProductGate``.

Equations (irreps layout and conventions: e3nn >= 0.5, README "O(3) conventions")
------------------------------------------------------------------------------------

SEGNN's ``O3TensorProduct`` (Brandstetter et al. 2022, eq. 8 and the code's rescaling): a fully
connected Clebsch–Gordan product whose e3nn path constant is multiplied back by
:math:`\sqrt{\mathrm{fan\_in}_o}`, plus a bias on scalar output blocks:

.. math::

    z_{o} = \sqrt{F_o}\, \mathrm{FCTP}_W(x_1, x_2)_o + b_o\,[l_o = 0],\qquad
    F_o = \sum_{p \to o} m_1 m_2 .

``mode="reference"`` puts a bias on every ``l = 0`` block, pseudoscalars ``0o`` included (as
Steerable-E3-GNN reads ``l`` from the irreps string), which breaks parity equivariance;
``mode="corrected"`` biases only ``0e`` blocks. ``O3TensorProductGate`` appends SEGNN's swish
gate: the first output block holds the scalars (SiLU), one ``0e`` gate (sigmoid) per non-scalar
irrep; without non-scalar irreps a plain SiLU (no constant) as in the reference code.

VJPs: the tensor product's is :mod:`geomp_ref.o3.tensor_product`'s (bilinear) times the same
rescaling, the gate's is :class:`geomp_ref.o3.Gate`'s; checked in
``derivations/segnn.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .. import o3
from .._validate import as_float64
from ..ops import activations
from .base import Block
from .segnn_common import _act_parity, gate_backward, gate_forward, make_gate

__all__ = ["O3TensorProduct", "O3TensorProductGate"]

# --- SEGNN's O3 layers -------------------------------------------------------------------------


def _check_mode(mode: str, owner: str) -> None:
    if mode not in ("reference", "corrected"):
        raise ValueError(f"{owner}.mode must be 'reference' (Steerable-E3-GNN's choices) or "
                         f"'corrected' (parity-safe biases); got {mode!r}")


class O3TensorProductCache(NamedTuple):
    tp: Any  # TensorProductCache of the fully connected product
    has_x2: bool


@dataclass(frozen=True)
class O3TensorProduct(Block):
    r"""SEGNN's bilinear steerable layer :math:`z = \sqrt{F}\,\mathrm{FCTP}_W(x_1, x_2) + b`.

    Parameters
    ----------
    irreps_in1, irreps_out : Irreps or str
    irreps_in2 : Irreps or str, optional
        The steerable attribute (``None``: ``"1x0e"`` fed with ones, a per-l linear layer).
    mode : {'corrected', 'reference'}
        Biases on ``0e`` blocks only, or on every ``l = 0`` block (``0o`` included) as the
        reference code does.

    Params: ``{"weight": (weight_numel,), "bias": (num_bias,)}`` (e3nn's flat weight layout;
    ``bias`` concatenates the biased blocks in order, absent when there is none).
    ``forward(params, x1[, x2]) -> (z, cache)``; ``backward -> (grads, (grad_x1[, grad_x2]))``.

    Raises
    ------
    ValueError
        If an output block cannot be reached from ``irreps_in1 x irreps_in2`` (the reference
        code would divide by a zero rescaling factor there and return NaN).
    """

    irreps_in1: Any
    irreps_out: Any
    irreps_in2: Any = None
    mode: str = "corrected"
    tp: Any = field(init=False, repr=False, compare=False)
    _rescale: Any = field(init=False, repr=False, compare=False)
    _bias_cols: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        owner = type(self).__name__
        _check_mode(self.mode, owner)
        for name in ("irreps_in1", "irreps_out"):
            try:
                put(self, name, o3.Irreps(getattr(self, name)))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{owner}.{name} must be an irreps string like '8x0e+8x1o'; got "
                                 f"{getattr(self, name)!r} ({exc})") from None
        in2 = o3.Irreps("1x0e" if self.irreps_in2 is None else self.irreps_in2)
        tp = o3.FullyConnectedTensorProduct(self.irreps_in1, in2, self.irreps_out,
                                            shared_weights=True, internal_weights=True)
        fan = {}
        for ins in tp.instructions:
            m1, m2, _mo = ins.path_shape
            fan[ins.i_out] = fan.get(ins.i_out, 0) + m1 * m2
        rescale = np.zeros(self.irreps_out.dim)
        for k, ((mul, ir), sl) in enumerate(zip(self.irreps_out, self.irreps_out.slices())):
            if k not in fan:
                raise ValueError(
                    f"{owner}.irreps_out: block {k} ({mul}x{ir}) cannot be coupled from "
                    f"irreps_in1={self.irreps_in1} and irreps_in2={in2} (no Clebsch-Gordan path); "
                    "remove it or add an input irrep that reaches it")
            # SEGNN divides by sqrt_k = 1/sqrt(fan_in) (float64 when built under float64)
            rescale[sl] = 1.0 / (1.0 / math.sqrt(fan[k]))
        bias_cols = [np.arange(sl.start, sl.stop) for (mul, ir), sl in
                     zip(self.irreps_out, self.irreps_out.slices())
                     if ir.l == 0 and (ir.p == 1 or self.mode == "reference")]
        put(self, "tp", tp)
        put(self, "_rescale", rescale)
        put(self, "_bias_cols", np.concatenate(bias_cols).astype(np.int64) if bias_cols
            else np.zeros(0, np.int64))

    @property
    def num_bias(self) -> int:
        return int(self._bias_cols.size)

    def _fan_in_bounds(self):
        return 1.0 / self._rescale  # 1/sqrt(fan_in) per output column

    def init(self, rng: np.random.Generator) -> dict:
        """SEGNN's init: weights and biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` per block."""
        w = np.empty(self.tp.weight_numel)
        off = 0
        for ins in self.tp.instructions:
            n = math.prod(ins.path_shape)
            start = self.irreps_out.slices()[ins.i_out].start
            b = self._fan_in_bounds()[start]
            w[off:off + n] = rng.uniform(-b, b, size=n)
            off += n
        params = {"weight": w}
        if self.num_bias:
            b = self._fan_in_bounds()[self._bias_cols]
            params["bias"] = rng.uniform(-b, b)
        return params

    def forward(self, params, x1, x2=None):
        if not isinstance(params, dict) or "weight" not in params:
            raise ValueError(f"params of {type(self).__name__} must be a dict with 'weight'"
                             " (and 'bias'); build them with init(rng)")
        x1 = as_float64(x1, "x1", ndim=2)
        has_x2 = self.irreps_in2 is not None
        if has_x2:
            if x2 is None:
                raise ValueError(f"x2 (irreps {self.irreps_in2}) must be given")
            x2 = as_float64(x2, "x2", ndim=2)
        else:
            if x2 is not None:
                raise ValueError("x2 must be omitted: this layer was built with irreps_in2=None")
            x2 = np.ones((x1.shape[0], 1))
        z, tpc = self.tp.forward({"weight": params["weight"]}, x1, x2)
        z = z * self._rescale
        if self.num_bias:
            b = as_float64(params.get("bias"), "params['bias']", ndim=1)
            if b.shape != (self.num_bias,):
                raise ValueError(f"params['bias'] must have shape ({self.num_bias},)")
            z[:, self._bias_cols] += b
        return z, O3TensorProductCache(tpc, has_x2)

    def backward(self, params, cache: O3TensorProductCache, grad_out):
        g = np.asarray(grad_out, dtype=np.float64)
        grads = {}
        if self.num_bias:
            grads["bias"] = g[:, self._bias_cols].sum(axis=0)  # reverses `z[:, cols] += b`
        # reverses `z = z * rescale` and the tensor product
        gp, (gx1, gx2) = self.tp.backward({"weight": params["weight"]}, cache.tp, g * self._rescale)
        grads["weight"] = gp["weight"]
        return grads, ((gx1, gx2) if cache.has_x2 else (gx1,))


class O3TensorProductGateCache(NamedTuple):
    tp: O3TensorProductCache
    gate: Any  # GateCache, or the pre-activation for the plain SiLU


@dataclass(frozen=True)
class O3TensorProductGate(Block):
    r"""SEGNN's ``O3TensorProductSwishGate``: :class:`O3TensorProduct` into
    ``scalars + gates + gated`` followed by the swish gate.

    ``irreps_out`` must start with its ``0e`` scalars (the reference treats the first block as
    the scalars). ``act_constants``: ``"e3nn"`` (default, matches e3nn's Gate), ``"exact"`` or
    ``"none"``. Params and signatures as :class:`O3TensorProduct`.
    """

    irreps_in1: Any
    irreps_out: Any
    irreps_in2: Any = None
    mode: str = "corrected"
    act_constants: str = "e3nn"
    tp: Any = field(init=False, repr=False, compare=False)
    gate: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        owner = type(self).__name__
        try:
            out = o3.Irreps(self.irreps_out)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{owner}.irreps_out must be an irreps string; got "
                             f"{self.irreps_out!r} ({exc})") from None
        if len(out) == 0 or out[0].ir.l != 0:
            raise ValueError(f"{owner}.irreps_out must start with its scalars (e.g. "
                             f"'16x0e+8x1o'); got {out}")
        put(self, "irreps_out", out)
        scalars = o3.Irreps([out[0]])
        gated = o3.Irreps(list(out)[1:])
        if gated.num_irreps:
            gates = o3.Irreps(f"{gated.num_irreps}x0e")
            gate = make_gate(scalars, ("silu",), gates, ("sigmoid",), gated,
                             self.act_constants, f"{owner}.irreps_out")
            irreps_g = o3.Irreps(list(scalars) + list(gates) + list(gated)).simplify()
            if irreps_g != gate.irreps_in:
                raise ValueError(f"{owner}.irreps_out={out}: the reference feeds {irreps_g} to a "
                                 f"gate expecting {gate.irreps_in}; sort irreps_out first")
        else:
            _act_parity("silu", scalars[0].ir.p, f"{owner}.irreps_out")
            gate, irreps_g = None, out
        put(self, "gate", gate)
        put(self, "tp", O3TensorProduct(self.irreps_in1, irreps_g, self.irreps_in2, self.mode))

    def init(self, rng: np.random.Generator) -> dict:
        return self.tp.init(rng)

    def forward(self, params, x1, x2=None):
        zt, tpc = self.tp.forward(params, x1, x2)
        if self.gate is None:
            return activations.silu(zt), O3TensorProductGateCache(tpc, zt)
        y, gc = gate_forward(self.gate, zt)
        return y, O3TensorProductGateCache(tpc, gc)

    def backward(self, params, cache: O3TensorProductGateCache, grad_out):
        g = np.asarray(grad_out, dtype=np.float64)
        if self.gate is None:
            gz = activations.silu_vjp(cache.gate, g)  # reverses `silu(zt)`
        else:
            gz = gate_backward(self.gate, cache.gate, g)  # reverses the gate
        return self.tp.backward(params, cache.tp, gz)
