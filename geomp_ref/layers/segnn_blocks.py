r"""SEGNN's steerable layers: ``O3TensorProduct`` and ``O3TensorProductGate``.

Equations (irreps layout: e3nn >= 0.5, multiplicity-major)
----------------------------------------------------------
SEGNN's ``O3TensorProduct`` (Brandstetter et al. 2022, eq. 8 and the published code's rescaling)
is a fully connected Clebsch–Gordan product whose e3nn path constant is multiplied back by
:math:`\sqrt{\mathrm{fan\_in}_o}` (the published code divides by :math:`1/\sqrt{F_o}`; so does
this one), plus a bias on scalar output blocks:

.. math::

    z_{o} = \mathrm{FCTP}_W(x_1, x_2)_o \,/\, F_o^{-1/2} + b_o\,[l_o = 0],\qquad
    F_o = \sum_{p \to o} m_1 m_2 .

Without a second input (``irreps_in2=None``) the product is taken with the constant ``1x0e``
feature 1, i.e. an equivariant linear map.

``O3TensorProductGate`` (the published ``O3TensorProductSwishGate``) appends the swish gate: the
first block of ``irreps_out`` holds the scalars (SiLU), each further irrep copy gets one ``0e``
gate (sigmoid). The product writes ``scalars + gates + gated`` in that order (``irreps_g``, simply
concatenated), while e3nn's ``Gate`` reads its input sorted by ``(l, p)`` (``0o`` before ``0e``,
``1o`` before ``1e``, lower ``l`` first). Without non-scalar irreps the gate is a plain SiLU (no
normalisation constant), as in the published code.

Modes (``mode``)
----------------
``"reference"`` reproduces Steerable-E3-GNN (RobDHess, commit 1b95898) exactly: a bias on every
``l = 0`` output block, pseudoscalars ``0o`` included (it reads ``l`` from the irreps string),
which breaks parity equivariance; and the product's output is handed to the gate as it is, so
when ``irreps_g`` is not already sorted (a ``0o`` or an unsorted hidden irreps such as
``"8x0e+2x2e+2x1o"``) the gate reads columns of the wrong irreps, which breaks parity or even
rotation equivariance. ``"corrected"`` biases only ``0e`` blocks and permutes the columns into the
gate's layout (``Gate.input_columns``), with the same parameters, so it is E(3)-equivariant for
any hidden irreps whose first block is ``0e``.

VJPs: the tensor product's is :class:`geomp_ref.o3.TensorProduct`'s (bilinear) through the same
rescaling; the permutation reverses into a scatter of columns; the gate's is
:class:`geomp_ref.o3.Gate`'s (``derivations/segnn.py`` checks the whole layer symbolically).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .. import o3
from .._validate import as_float64, as_rng, check_cache, check_choice, check_params
from .._validate import grad_out as _grad_out
from ..o3.activations import NORMALIZE_ACT
from ..ops import activations
from . import segnn_gathered
from .base import Block, check_backend

__all__ = ["MODES", "O3GatheredCache", "O3TensorProduct", "O3TensorProductCache",
           "O3TensorProductGate", "O3TensorProductGateCache"]

O3GatheredCache = segnn_gathered.O3GatheredCache

MODES = ("corrected", "reference")


def _irreps(value, name):
    try:
        return o3.Irreps(value)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"{name} must be an irreps string like '8x0e+8x1o'; got {value!r} "
                         f"({exc})") from None


def check_mode(mode, owner: str) -> str:
    """``mode`` if it is ``'corrected'`` or ``'reference'``; the error names ``owner.mode``."""
    return check_choice(mode, f"{owner}.mode", MODES)


class O3TensorProductCache(NamedTuple):
    """``tp``: the product's :class:`~geomp_ref.o3.tensor_product.TensorProductCache`;
    ``has_x2``: whether ``x2`` was an input; ``rows``: the number of samples."""

    tp: Any
    has_x2: bool
    rows: int


@dataclass(frozen=True)
class O3TensorProduct(Block):
    r"""SEGNN's bilinear steerable layer :math:`z = \mathrm{FCTP}_W(x_1, x_2) / F^{-1/2} + b`.

    Parameters
    ----------
    irreps_in1, irreps_out : Irreps or str
    irreps_in2 : Irreps or str, optional
        The steerable attribute (``None``: the constant ``1x0e`` feature 1, a per-l linear map).
    mode : {'corrected', 'reference'}
        Biases on ``0e`` blocks only, or on every ``l = 0`` block (``0o`` included) as the
        published code does.

    Notes
    -----
    ``param_shapes() -> {"weight": (weight_numel,)[, "bias": (num_bias,)]}`` (e3nn's flat weight
    layout; ``bias`` concatenates the biased blocks in order, absent when there is none).
    ``forward(params, x1, x2=None) -> (z, cache)`` with ``x1`` ``(Z, dim1)`` and ``x2``
    ``(Z, dim2)`` exactly when ``irreps_in2`` is set; ``backward(params, cache, grad_out) ->
    (grads, (grad_x1, grad_x2 or None))``. ``forward_gathered(params, graph, segments, x2,
    backend)`` takes the edge rows of ``x1`` as node rows read at the receivers or senders plus
    edge rows, and on non-numpy backends runs the weights on the node rows
    (:mod:`geomp_ref.layers.segnn_gathered`; SEGNN's first message layer).

    Raises
    ------
    ValueError
        If an output block cannot be reached from ``irreps_in1 x irreps_in2`` (the published code
        would divide by a zero rescaling factor there and return NaN).
    """

    irreps_in1: Any
    irreps_out: Any
    irreps_in2: Any = None
    mode: str = "corrected"
    tp: Any = field(init=False, repr=False, compare=False)
    _sqrt_k: Any = field(init=False, repr=False, compare=False)
    _bias_cols: Any = field(init=False, repr=False, compare=False)
    _plans: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        owner = type(self).__name__
        check_mode(self.mode, owner)
        for name in ("irreps_in1", "irreps_out"):
            put(self, name, _irreps(getattr(self, name), f"{owner}.{name}"))
        if self.irreps_in2 is not None:
            put(self, "irreps_in2", _irreps(self.irreps_in2, f"{owner}.irreps_in2"))
        in2 = o3.Irreps("1x0e") if self.irreps_in2 is None else self.irreps_in2
        tp = o3.FullyConnectedTensorProduct(self.irreps_in1, in2, self.irreps_out,
                                            shared_weights=True, internal_weights=True)
        fan = {}
        for ins in tp.instructions:
            m1, m2, _mo = ins.path_shape
            fan[ins.i_out] = fan.get(ins.i_out, 0) + m1 * m2
        sqrt_k = np.zeros(self.irreps_out.dim)
        for k, ((mul, ir), sl) in enumerate(zip(self.irreps_out, self.irreps_out.slices())):
            if k not in fan:
                raise ValueError(
                    f"{owner}.irreps_out: block {k} ({mul}x{ir}) cannot be coupled from "
                    f"irreps_in1={self.irreps_in1} and irreps_in2={in2} (no Clebsch-Gordan path); "
                    "remove it or add an input irrep that reaches it")
            sqrt_k[sl] = 1.0 / math.sqrt(fan[k])
        bias_cols = [np.arange(sl.start, sl.stop) for (mul, ir), sl in
                     zip(self.irreps_out, self.irreps_out.slices())
                     if ir.l == 0 and (ir.p == 1 or self.mode == "reference")]
        put(self, "tp", tp)
        put(self, "_plans", {})  # segment layout -> weights-first plan (segnn_gathered)
        put(self, "_sqrt_k", sqrt_k)
        put(self, "_bias_cols", np.concatenate(bias_cols).astype(np.int64) if bias_cols
            else np.zeros(0, np.int64))

    @property
    def num_bias(self) -> int:
        return int(self._bias_cols.size)

    def _bias_index(self):
        """The biased columns as a slice when they are one run (the usual leading ``0e``
        block): the same additions as the index array, without a gather and a scatter."""
        cols = self._bias_cols
        if cols.size and np.array_equal(cols, np.arange(cols[0], cols[0] + cols.size)):
            return slice(int(cols[0]), int(cols[0]) + cols.size)
        return cols

    def param_shapes(self) -> dict:
        shapes = {"weight": (self.tp.weight_numel,)}
        if self.num_bias:
            shapes["bias"] = (self.num_bias,)
        return shapes

    def init(self, rng) -> dict:
        """SEGNN's init: weights and biases ``U(-1/sqrt(F), 1/sqrt(F))`` per output block."""
        rng = as_rng(rng, "rng")
        w = np.empty(self.tp.weight_numel)
        off = 0
        starts = [sl.start for sl in self.irreps_out.slices()]
        for ins in self.tp.instructions:
            n = math.prod(ins.path_shape)
            b = self._sqrt_k[starts[ins.i_out]]
            w[off:off + n] = rng.uniform(-b, b, size=n)
            off += n
        params = {"weight": w}
        if self.num_bias:
            b = self._sqrt_k[self._bias_cols]
            params["bias"] = rng.uniform(-b, b)
        return params

    def forward(self, params, x1, x2=None):
        owner = type(self).__name__
        check_params(params, self.param_shapes(), owner, exact=True)
        # finiteness: checked once, by the product (self.tp), under the same names
        x1 = as_float64(x1, "x1", ndim=2, finite=False)
        if x1.shape[1] != self.irreps_in1.dim:
            raise ValueError(f"x1 must have shape (num_samples, {self.irreps_in1.dim}) for "
                             f"{owner}.irreps_in1={self.irreps_in1}; got {x1.shape}")
        has_x2 = self.irreps_in2 is not None
        if has_x2:
            if x2 is None:
                raise ValueError(f"x2 (irreps {self.irreps_in2}) must be given: {owner} was built "
                                 "with irreps_in2")
            x2 = as_float64(x2, "x2", ndim=2, finite=False)
            if x2.shape != (x1.shape[0], self.irreps_in2.dim):
                raise ValueError(
                    f"x2 must have shape ({x1.shape[0]}, {self.irreps_in2.dim}) (one row per row "
                    f"of x1, irreps_in2={self.irreps_in2}); got {x2.shape}")
        else:
            if x2 is not None:
                raise ValueError(f"x2 must be None: {owner} was built with irreps_in2=None")
            x2 = np.ones((x1.shape[0], 1))
        z, tpc = self.tp.forward({"weight": params["weight"]}, x1, x2)
        z = z / self._sqrt_k
        if self.num_bias:
            z[:, self._bias_index()] += as_float64(params["bias"], "params['bias']")
        return z, O3TensorProductCache(tpc, has_x2, x1.shape[0])

    def backward(self, params, cache: O3TensorProductCache, grad_out):
        owner = type(self).__name__
        check_cache(cache, O3TensorProductCache, owner)
        g = _grad_out(grad_out, (cache.rows, self.irreps_out.dim), owner)
        grads = {}
        # reverses `z[:, cols] += b`
        if self.num_bias:
            grads["bias"] = g[:, self._bias_index()].sum(axis=0)
        # reverses `z = z / sqrt_k` and the tensor product
        gp, (gx1, gx2, _) = self.tp.backward({"weight": params["weight"]}, cache.tp,
                                             g / self._sqrt_k)
        grads["weight"] = gp["weight"]
        return grads, (gx1, gx2 if cache.has_x2 else None)

    def forward_gathered(self, params, graph, segments, x2, backend="numpy"):
        r""":meth:`forward` of the edge rows ``x1 = [seg_0, seg_1, ...]``, a segment being
        ``("dst", h)`` (node rows read at the receivers, ``h[dst]``), ``("src", h)`` (at the
        senders) or ``("edge", s)`` (edge rows), without forming ``x1`` on non-numpy backends:
        the weight contraction runs on the node rows and the coupling with ``x2`` per edge
        (:mod:`geomp_ref.o3._tp_split`; agrees with :meth:`forward` to rounding). The numpy
        backend, and products that do not split (a path with ``m2 > 1``, a segment boundary
        inside an irrep), evaluate :meth:`forward` on the concatenated rows. Returns ``(z,
        cache)``; :meth:`backward_gathered` reverses it (:mod:`.segnn_gathered`)."""
        return segnn_gathered.forward(self, params, graph, segments, x2, backend)

    def backward_gathered(self, params, cache, grad_out):
        """VJP of :meth:`forward_gathered`: ``(grads, (grad per segment, grad_x2))``, a node
        segment's gradient summed over the edges that read it."""
        return segnn_gathered.backward(self, params, cache, grad_out)


class O3TensorProductGateCache(NamedTuple):
    """``tp``: the product's cache; ``gate``: the :class:`~geomp_ref.o3.gating.GateCache`, or the
    pre-activation ``zt`` for the plain SiLU."""

    tp: O3TensorProductCache
    gate: Any


@dataclass(frozen=True)
class O3TensorProductGate(Block):
    r"""SEGNN's ``O3TensorProductSwishGate``: :class:`O3TensorProduct` into
    ``scalars + gates + gated`` followed by the swish gate (module docstring).

    Parameters
    ----------
    irreps_in1, irreps_out, irreps_in2, mode
        As :class:`O3TensorProduct`; ``irreps_out`` is the gate's output and its first block
        (the SiLU scalars) must be ``0e``.
    act_constants : {'e3nn', 'exact', 'none'}
        Normalisation constants of the gate's SiLU and sigmoid (:mod:`geomp_ref.o3.activations`);
        ``'e3nn'`` (default) is what the published code gets from e3nn's ``Gate``.
    backend : str
        Backend of the gate's activations (:class:`geomp_ref.o3.Gate`); ``"numpy"`` by default.

    Notes
    -----
    The gate has no parameters, so the block's params are exactly those of its product ``tp``
    (as in the published code, where the gated layer subclasses the product): ``param_shapes()``
    and the signatures are those of :class:`O3TensorProduct`.
    """

    irreps_in1: Any
    irreps_out: Any
    irreps_in2: Any = None
    mode: str = "corrected"
    act_constants: str = "e3nn"
    backend: str = "numpy"
    tp: Any = field(init=False, repr=False, compare=False)
    gate: Any = field(init=False, repr=False, compare=False)
    _columns: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        owner = type(self).__name__
        check_mode(self.mode, owner)
        check_choice(self.act_constants, f"{owner}.act_constants", NORMALIZE_ACT)
        check_backend(self.backend, owner)
        out = _irreps(self.irreps_out, f"{owner}.irreps_out")
        if len(out) == 0 or out[0].ir.l != 0:
            raise ValueError(f"{owner}.irreps_out must start with its scalars (e.g. "
                             f"'16x0e+8x1o'); got {out}")
        if out[0].ir.p != 1:
            blocks = list(out)
            k = next((i for i, b in enumerate(blocks) if b.ir == o3.Irrep("0e")), None)
            fix = ("add 0e scalars in front, e.g. '8x0e+" + str(out) + "'" if k is None else
                   f"e.g. '{o3.Irreps([blocks[k]] + blocks[:k] + blocks[k + 1:])}'")
            raise ValueError(
                f"{owner}.irreps_out: the first block ({out[0]}) goes through SiLU, which is "
                "neither even nor odd, so it must be 0e (e3nn's sort puts 0o before 0e, so do "
                "not sort these irreps); put a 0e block first, and any 0o block after it is "
                f"gated: {fix}")
        put(self, "irreps_out", out)
        scalars = o3.Irreps([out[0]])
        gated = o3.Irreps(list(out)[1:])
        columns = None
        if gated.num_irreps:
            gates = o3.Irreps(f"{gated.num_irreps}x0e")
            gate = o3.Gate(scalars, ["silu"], gates, ["sigmoid"], gated,
                           normalize_act=self.act_constants, backend=self.backend)
            irreps_g = (scalars + gates + gated).simplify()
            identity = np.array_equal(gate.input_columns, np.arange(irreps_g.dim))
            if self.mode == "corrected" and not identity:
                columns = gate.input_columns
        else:
            gate, irreps_g = None, out
        put(self, "gate", gate)
        put(self, "_columns", columns)
        try:
            tp = O3TensorProduct(self.irreps_in1, irreps_g, self.irreps_in2, self.mode)
        except ValueError as exc:  # name the block the user built
            raise ValueError(f"{owner} (its product into {irreps_g}): {exc}") from None
        put(self, "tp", tp)
        put(self, "irreps_in1", tp.irreps_in1)
        put(self, "irreps_in2", tp.irreps_in2)

    def param_shapes(self) -> dict:
        return self.tp.param_shapes()

    def init(self, rng) -> dict:
        return self.tp.init(rng)

    def forward(self, params, x1, x2=None):
        zt, tpc = self.tp.forward(params, x1, x2)
        return self._gate(zt, tpc)

    def _gate(self, zt, tpc):
        if self.gate is None:
            return activations.silu(zt), O3TensorProductGateCache(tpc, zt)
        xg = zt if self._columns is None else zt[:, self._columns]
        y, gc = self.gate.forward({}, xg)
        return y, O3TensorProductGateCache(tpc, gc)

    def forward_gathered(self, params, graph, segments, x2):
        """:meth:`O3TensorProduct.forward_gathered` (on this block's backend) and the gate."""
        zt, tpc = self.tp.forward_gathered(params, graph, segments, x2, self.backend)
        return self._gate(zt, tpc)

    def backward_gathered(self, params, cache: O3TensorProductGateCache, grad_out):
        """VJP of :meth:`forward_gathered`: ``(grads, (grad per segment, grad_x2))``."""
        gz = self._gate_vjp(cache, grad_out)
        return self.tp.backward_gathered(params, cache.tp, gz)

    def backward(self, params, cache: O3TensorProductGateCache, grad_out):
        gz = self._gate_vjp(cache, grad_out)  # checks the cache first
        return self.tp.backward(params, cache.tp, gz)

    def _gate_vjp(self, cache, grad_out):
        owner = type(self).__name__
        check_cache(cache, O3TensorProductGateCache, owner)
        g = _grad_out(grad_out, (cache.tp.rows, self.irreps_out.dim), owner)
        if self.gate is None:
            gz = activations.silu_vjp(cache.gate, g)  # reverses `silu(zt)`
        else:
            _, (gxg,) = self.gate.backward({}, cache.gate, g)  # reverses the gate
            if self._columns is None:
                gz = gxg
            else:  # reverses `xg = zt[:, columns]` (a permutation)
                gz = np.empty_like(gxg)
                gz[:, self._columns] = gxg
        return gz
