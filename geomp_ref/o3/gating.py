r"""Gate nonlinearity for irreps features (e3nn's ``nn.Gate``), parameter-free.

Equations
---------
The input is ``scalars ⊕ gates ⊕ gated`` laid out as e3nn orders it: the three irreps are each
simplified, concatenated, stably sorted by ``(l, p)`` (odd before even at equal ``l``, so a ``0o``
block comes before the ``0e`` blocks) and simplified again (``Gate.irreps_in``). With per-block
activations :math:`\phi_k` (scalars) and :math:`\psi_k` (gates), each normalised to unit second
moment (:mod:`geomp_ref.o3.activations`),

.. math::

    \mathrm{out} = \Big(\bigoplus_k c_{\phi_k}\, \phi_k(s_k)\Big) \oplus
    \Big(\bigoplus_j c_{\psi}\, \psi(g_j)\; y_j\Big),\qquad
    c_f = \big(\mathbb{E}_{z \sim N(0,1)}[f(z)^2]\big)^{-1/2},

where gate ``j`` multiplies the ``j``-th irrep copy :math:`y_j` (all ``2l+1`` components) of
``irreps_gated`` in the order written. Output irreps: the scalars (parity after the activation)
then the gated irreps, whose parity is multiplied by the activated gate's parity.

A producer that writes ``scalars ⊕ gates ⊕ gated`` in the written order (unsorted) reaches the
gate's layout through ``Gate.input_columns``: ``x_in = x_written[..., input_columns]``.

Parity (e3nn's rule): an odd scalar (``0o``) needs an odd activation (stays ``0o``) or an even
one (becomes ``0e``); any other activation raises ``ValueError``.

VJP: :math:`\bar s_k = c\,\phi_k'(s_k)\,\bar o_k`; :math:`\bar y_j = a_j \bar o_j` with
:math:`a_j = c\,\psi(g_j)`; :math:`\bar g_j = c\,\psi'(g_j) \sum_m y_{j,m}\, \bar o_{j,m}`
(checked symbolically by ``derivations/tensor_product.py``).

References
----------
M. Weiler et al., "3D Steerable CNNs", NeurIPS 2018 (gated nonlinearity); M. Geiger, T. Smidt,
"e3nn", arXiv:2207.09453 (2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .. import backends as _backends
from .._validate import as_float64, as_rng, check_cache, check_choice, check_params
from .._validate import grad_out as _grad_out
from ..layers.base import Block, check_backend
from ..ops import activations as _ops_act
from ._tp_instructions import _blocks, _safe_irreps
from .activations import (  # ACTIVATIONS and the constants are re-exported here
    ACTIVATIONS,
    E3NN_CONSTANTS,
    EXACT_CONSTANTS,
    NORMALIZE_ACT,
    resolve_activation,
)
from .irreps import Irreps

#: Activations the fused path evaluates (as e3nn's Gate calls them); others use the reference.
_FUSED = frozenset({"silu", "sigmoid", "tanh"})

__all__ = [
    "ACTIVATIONS",
    "E3NN_CONSTANTS",
    "EXACT_CONSTANTS",
    "Gate",
    "GateCache",
]


def _simplify(blocks):
    out = []
    for mul, l_, p in blocks:
        if out and out[-1][1:] == (l_, p):
            out[-1] = (out[-1][0] + mul, l_, p)
        elif mul > 0:
            out.append((mul, l_, p))
    return out


def _to_irreps(blocks):
    return Irreps([(mul, (l_, p)) for mul, l_, p in blocks])


class GateCache(NamedTuple):
    """Forward locals (rows ``Z = prod(batch)``): scalar inputs ``s``, gate inputs ``g``,
    activated gates ``a`` and gated inputs ``y``; ``batch`` is the input's batch shape."""

    s: np.ndarray
    g: np.ndarray
    a: np.ndarray
    y: np.ndarray
    batch: tuple
    # c f'(s) and c psi'(g) from the forward pass (non-numpy backends); None: recomputed
    ds: np.ndarray | None = None
    dg: np.ndarray | None = None


@dataclass(frozen=True)
class Gate(Block):
    r"""Gate activation spec (no params; see the module docstring).

    Parameters
    ----------
    irreps_scalars : Irreps or str
        Scalars (``l = 0``) passed through ``act_scalars`` (one entry per block, name or None).
    act_scalars : sequence of str or None
    irreps_gates : Irreps or str
        Gate scalars, one per irrep copy of ``irreps_gated``; activated by ``act_gates``.
    act_gates : sequence of str or None
    irreps_gated : Irreps or str
    normalize_act : {'exact', 'e3nn', 'none'}
        Constants of :mod:`geomp_ref.o3.activations`.
    backend : str
        ``"numpy"`` (default): the reference activations, whose VJPs re-evaluate them. Another
        backend (``"numba"``) evaluates each activation and its derivative in one fused pass
        (:func:`geomp_ref.ops.activations.activate`) and keeps the derivative for the backward
        (same values to rounding).

    Attributes
    ----------
    irreps_in, irreps_out : Irreps
        e3nn's layouts (sorted-and-simplified input; scalars then gated output).
    input_columns : ndarray of int
        ``x_in = x_written[..., input_columns]`` for ``x_written`` laid out as
        ``irreps_scalars + irreps_gates + irreps_gated`` in the order written.

    Notes
    -----
    ``param_shapes() -> {}``; ``init(rng) -> {}``; ``forward(params, x) -> (out, cache)`` with
    ``x`` of shape ``(*batch, irreps_in.dim)`` (any batch shape, empty included);
    ``backward(params, cache, grad_out) -> ({}, (grad_x,))``. Properties (tested): equivariant
    under O(3) with the output parities above; equal to e3nn's ``nn.Gate`` with
    ``normalize_act='e3nn'``.
    """

    irreps_scalars: Any
    act_scalars: Any
    irreps_gates: Any
    act_gates: Any
    irreps_gated: Any
    normalize_act: str = "exact"
    backend: str = "numpy"
    irreps_in: Any = field(init=False, repr=False, compare=False)
    irreps_out: Any = field(init=False, repr=False, compare=False)
    input_columns: Any = field(init=False, repr=False, compare=False)
    _plan: tuple = field(init=False, repr=False, compare=False)
    _runs: Any = field(init=False, repr=False, compare=False)  # the runs as an (R, 5) int64 array

    def __post_init__(self):
        put = object.__setattr__
        names = ("irreps_scalars", "irreps_gates", "irreps_gated")
        for n in names:
            put(self, n, _safe_irreps(getattr(self, n), f"Gate.{n}"))
        check_choice(self.normalize_act, "Gate.normalize_act", NORMALIZE_ACT)
        check_backend(self.backend, "Gate")
        bs, bg, by = (_blocks(getattr(self, n)) for n in names)
        for n, b in (("irreps_scalars", bs), ("irreps_gates", bg)):
            if any(l_ != 0 for _, l_, _, _, _ in b):
                raise ValueError(f"Gate.{n} must hold scalars only (l = 0); got {getattr(self, n)}")
        n_gates, n_gated = sum(m for m, *_ in bg), sum(m for m, *_ in by)
        if n_gates != n_gated:
            raise ValueError(
                f"Gate.irreps_gates must hold one scalar per irrep copy of irreps_gated "
                f"({n_gated}); got {n_gates} (irreps_gates={self.irreps_gates})"
            )
        acts = {}
        for n, b in (("act_scalars", bs), ("act_gates", bg)):
            a = getattr(self, n)
            if isinstance(a, (str, bytes)) or not hasattr(a, "__len__"):
                raise TypeError(
                    f"Gate.{n} must be a list with one activation (name or None) per block; "
                    f"got {a!r}"
                )
            if len(a) != len(b):
                raise ValueError(
                    f"Gate.{n} must hold one activation per block ({len(b)}); got {len(a)}"
                )
            put(self, n, tuple(a))
            acts[n] = [
                resolve_activation(x, self.normalize_act, f"Gate.{n}[{k}]") for k, x in enumerate(a)
            ]
        # Activated scalars and gates: parity after the activation (e3nn's Activation rule).
        out_par = {}
        for n, b in (("act_scalars", bs), ("act_gates", bg)):
            pars = []
            for k, ((_, _, p, _, _), act) in enumerate(zip(b, acts[n])):
                if p == 1 or act.name is None:
                    pars.append(p)
                elif act.parity == 0:
                    raise ValueError(
                        f"Gate.{n}[{k}]: the input scalar is odd (0o) but {act.name!r} is "
                        "neither even nor odd; use an odd (tanh, identity) or even (abs) "
                        "activation"
                    )
                else:
                    pars.append(act.parity)
            out_par[n] = pars
        # Input layout: each part simplified, concatenated, stably sorted, simplified.
        parts = [_simplify([(m, l_, p) for m, l_, p, _, _ in b]) for b in (bs, bg, by)]
        concat = [(blk, part) for part, bl in enumerate(parts) for blk in bl]
        order = sorted(range(len(concat)), key=lambda i: (concat[i][0][1], concat[i][0][2], i))
        starts, pos = [0] * len(concat), 0
        for i in order:
            mul, l_, _ = concat[i][0]
            starts[i] = pos
            pos += mul * (2 * l_ + 1)
        part_slices = [[], [], []]
        columns, written = np.zeros(pos, dtype=np.int64), 0
        for i, (blk, part) in enumerate(concat):
            width = blk[0] * (2 * blk[1] + 1)
            part_slices[part].append((starts[i], starts[i] + width))
            columns[starts[i] : starts[i] + width] = np.arange(written, written + width)
            written += width
        columns.setflags(write=False)
        put(self, "input_columns", columns)
        put(self, "irreps_in", _to_irreps(_simplify([concat[i][0] for i in order])))
        # Gated output, split as e3nn's ElementwiseTensorProduct: gate copy j (after its
        # activation) multiplies irrep copy j; the parities multiply.
        gates_out = _simplify([(m, 0, p) for (m, *_), p in zip(bg, out_par["act_gates"])])
        g_list, y_list, gated_out = list(gates_out), list(parts[2]), []
        while y_list:
            (my, ly, py), (mg, _, pg) = y_list.pop(0), g_list.pop(0)
            m = min(my, mg)
            gated_out.append((m, ly, py * pg))
            if my > m:
                y_list.insert(0, (my - m, ly, py))
            if mg > m:
                g_list.insert(0, (mg - m, 0, pg))
        scal_out = [(m, 0, p) for (m, *_), p in zip(bs, out_par["act_scalars"])]
        put(self, "irreps_out", _to_irreps(scal_out + gated_out))
        sizes = [2 * l_ + 1 for m, l_, _ in parts[2] for _ in range(m)]
        copy_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        # runs of consecutive gated copies of one size d: (columns a:b, copies c:c+n, n, d), so
        # that a run's gates broadcast over a (Z, n, d) view instead of being gathered
        runs, c = [], 0
        while c < len(sizes):
            n = 1
            while c + n < len(sizes) and sizes[c + n] == sizes[c]:
                n += 1
            a = int(copy_starts[c])
            runs.append((a, a + n * sizes[c], c, n, sizes[c]))
            c += n
        put(
            self,
            "_plan",
            (part_slices, acts["act_scalars"], acts["act_gates"], bs, bg, tuple(runs)),
        )
        put(self, "_runs", np.asarray(runs, dtype=np.int64).reshape(-1, 5))

    def param_shapes(self) -> dict:
        """No parameters: ``{}``."""
        return {}

    def init(self, rng) -> dict:
        """No parameters: ``{}`` (``rng`` is still checked)."""
        as_rng(rng, "rng")
        return {}

    def forward(self, params, x):
        """Apply the gate to ``x`` of shape ``(*batch, irreps_in.dim)``."""
        check_params(params, {}, "Gate", exact=True)
        x = as_float64(x, "x")
        if x.ndim < 1 or x.shape[-1] != self.irreps_in.dim:
            raise ValueError(
                f"x must have shape (..., {self.irreps_in.dim}) laid out as "
                f"Gate.irreps_in={self.irreps_in}; got {x.shape}"
            )
        batch = tuple(x.shape[:-1])
        z = math.prod(batch)
        x = x.reshape(z, self.irreps_in.dim)
        part_slices, act_s, act_g, bs, bg, runs = self._plan
        s, g, y = (
            np.concatenate([x[:, a:b] for a, b in sl], axis=1) if sl else np.zeros((z, 0))
            for sl in part_slices
        )
        fused = self.backend != "numpy" and all(
            act.name in _FUSED for act in tuple(act_s) + tuple(act_g))
        out_s, ds = self._activate(s, bs, act_s, fused)
        a_g, dg = self._activate(g, bg, act_g, fused)
        kern = self._kernels()
        if kern is not None:  # one fused pass, the same products
            out_y = kern.gate_scale(y, a_g, self._runs)
        else:
            out_y = _gate_runs(y, a_g, runs)  # each gated copy times its gate
        out = np.concatenate([out_s, out_y], axis=1)
        return out.reshape(batch + (self.irreps_out.dim,)), GateCache(s, g, a_g, y, batch,
                                                                       ds, dg)

    def _kernels(self):
        """The backend module when it has the fused gate kernels (numba), else None."""
        if self.backend == "numpy":
            return None
        be = _backends.get(self.backend)
        return be if hasattr(be, "gate_scale") else None

    def _activate(self, x, blocks, acts, fused):
        """``c f(x)`` per block; with ``fused`` also ``c f'(x)`` (else None)."""
        out = np.empty_like(x)
        if not fused:
            for (_, _, _, a, b), act in zip(blocks, acts):
                out[:, a:b] = act.c * act.f(x[:, a:b])
            return out, None
        d = np.empty_like(x)
        for (_, _, _, a, b), act in zip(blocks, acts):
            _, y, dy = _ops_act.activate(act.name, x[:, a:b], backend=self.backend)
            out[:, a:b] = act.c * y
            d[:, a:b] = act.c * dy
        return out, d

    def backward(self, params, cache: GateCache, grad_out):
        """VJP: ``({}, (grad_x,))``."""
        check_cache(cache, GateCache, "Gate")
        batch = cache.batch
        go = _grad_out(grad_out, batch + (self.irreps_out.dim,), "Gate")
        z = cache.s.shape[0]
        go = go.reshape(z, self.irreps_out.dim)
        part_slices, act_s, act_g, bs, bg, runs = self._plan
        ns = cache.s.shape[1]
        go_s, go_y = go[:, :ns], go[:, ns:]
        # reverses `out_y = y * (gate of each copy)`
        kern = self._kernels()
        if kern is not None:  # one fused pass: the products, the sums over components
            grad_y, grad_a = kern.gate_scale_vjp(np.ascontiguousarray(go_y), cache.y, cache.a,
                                                 self._runs)
        else:
            grad_y = _gate_runs(go_y, cache.a, runs)
            grad_a = np.zeros_like(cache.a)
            p = go_y * cache.y
            for a, b, c, n, d in runs:  # sum over the 2l+1 components of each gated copy
                grad_a[:, c:c + n] = p[:, a:b].reshape(z, n, d).sum(axis=2)
        # reverses `a_g = c f(g)` and `out_s = c f(s)` (with the forward's c f'(.) if kept)
        grad_g = _activate_vjp(cache.g, cache.dg, bg, act_g, grad_a)
        grad_s = _activate_vjp(cache.s, cache.ds, bs, act_s, go_s)
        # reverses the split of x into (s, g, y)
        grad_x = np.zeros((z, self.irreps_in.dim))
        for sl, gpart in zip(part_slices, (grad_s, grad_g, grad_y)):
            off = 0
            for a, b in sl:
                grad_x[:, a:b] = gpart[:, off : off + b - a]
                off += b - a
        return {}, (grad_x.reshape(batch + (self.irreps_in.dim,)),)


def _gate_runs(y, a, runs):
    """``y`` with every gated copy times its gate ``a[:, copy]``, run by run (no gathered copy of
    ``a``; the same products)."""
    out = np.empty_like(y)
    z = y.shape[0]
    for lo, hi, c, n, d in runs:
        out[:, lo:hi] = (y[:, lo:hi].reshape(z, n, d) * a[:, c:c + n, None]).reshape(z, n * d)
    return out


def _activate_vjp(x, d, blocks, acts, g):
    """Reverses ``Gate._activate``: ``d * g`` with the kept derivative ``d = c f'(x)``, else
    block by block ``f_vjp(x, c g)``."""
    if d is not None:
        return d * g
    out = np.empty_like(x)
    for (_, _, _, a, b), act in zip(blocks, acts):
        out[:, a:b] = act.f_vjp(x[:, a:b], act.c * g[:, a:b])
    return out
