r"""Gate nonlinearity for irreps features (e3nn's ``nn.Gate``), parameter-free.

Equations
---------
The input is ``scalars ⊕ gates ⊕ gated`` laid out as e3nn orders it: the three irreps are each
simplified, concatenated, stably sorted by ``(l, p)`` (odd before even at equal ``l``) and
simplified again (``Gate.irreps_in``). With per-block activations :math:`\phi_k` (scalars) and
:math:`\psi_k` (gates), each normalised to unit second moment,

.. math::

    \mathrm{out} = \Big(\bigoplus_k c_{\phi_k}\, \phi_k(s_k)\Big) \oplus
    \Big(\bigoplus_j c_{\psi}\, \psi(g_j)\; y_j\Big),\qquad
    c_f = \big(\mathbb{E}_{z \sim N(0,1)}[f(z)^2]\big)^{-1/2},

where gate ``j`` multiplies the ``j``-th irrep copy :math:`y_j` (all ``2l+1`` components) of
``irreps_gated`` in the order written. Output irreps: the scalars (parity after the activation)
then the gated irreps, whose parity is multiplied by the activated gate's parity.

Normalisation constants (``normalize_act``)
-------------------------------------------
* ``'exact'`` (default): :math:`c_f` from the Gaussian integral, evaluated with mpmath at 40
  digits and rounded once to float64 (``EXACT_CONSTANTS``; closed forms: identity and abs 1,
  relu :math:`\sqrt 2`). Re-derived by ``derivations/tensor_product.py --check``.
* ``'e3nn'``: e3nn's ``normalize2mom`` Monte-Carlo values (10^6 float64 normal samples from a
  torch generator seeded 0; ``E3NN_CONSTANTS``, copied bit-exactly from e3nn 0.6.0 / torch 2.13),
  so that outputs match e3nn to rounding. e3nn treats ``|c - 1| < 1e-4`` as the identity; none
  of the tabulated values qualifies (identity and abs get 1.0011106). In this mode ``softplus``
  and ``shifted_softplus`` also follow torch's ``threshold=20`` (return ``x`` above 20).
* ``'none'``: :math:`c = 1`.

An activation ``None`` is the identity *without* normalisation (e3nn's convention).

Parity (e3nn's rule): an odd scalar (``0o``) needs an odd activation (stays ``0o``) or an even
one (becomes ``0e``); any other activation raises ``ValueError``. Parities here: odd —
identity, tanh; even — abs; none — silu, sigmoid, relu, softplus, shifted_softplus.

VJP (derivation ``derivations/tensor_product.py``): :math:`\bar s_k = c\,\phi_k'(s_k)\,\bar o_k`;
:math:`\bar y_j = a_j \bar o_j` with :math:`a_j = c\,\psi(g_j)`; :math:`\bar g_j = c\,\psi'(g_j)
\sum_m y_{j,m}\, \bar o_{j,m}`.

References
----------
M. Weiler et al., "3D Steerable CNNs", NeurIPS 2018 (gated nonlinearity); M. Geiger, T. Smidt,
"e3nn", arXiv:2207.09453 (2022); ``reference/e3nn_conventions.md`` §8.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._validate import as_float64, check_shape
from ..ops import activations as _act
from ._tp_instructions import _blocks, _safe_irreps
from .irreps import Irreps

__all__ = [
    "ACTIVATIONS",
    "E3NN_CONSTANTS",
    "EXACT_CONSTANTS",
    "Gate",
    "GateCache",
    "gate",
    "gate_vjp",
]


def _abs(x):
    return np.abs(np.asarray(x, dtype=np.float64))


def _abs_vjp(x, grad_y):
    return grad_y * np.sign(x)  # subgradient 0 at 0, as torch


_ALIASES = {"swish": "silu", "ssp": "shifted_softplus"}
#: name -> (f, f_vjp, parity): +1 even, -1 odd, 0 neither.
ACTIVATIONS = {
    "identity": (_act.identity, _act.identity_vjp, -1),
    "silu": (_act.silu, _act.silu_vjp, 0),
    "tanh": (_act.tanh, _act.tanh_vjp, -1),
    "sigmoid": (_act.sigmoid, _act.sigmoid_vjp, 0),
    "relu": (_act.relu, _act.relu_vjp, 0),
    "abs": (_abs, _abs_vjp, 1),
    "softplus": (_act.softplus, _act.softplus_vjp, 0),
    "shifted_softplus": (_act.shifted_softplus, _act.shifted_softplus_vjp, 0),
}

#: 1/sqrt(E[f(z)^2]), z ~ N(0,1): mpmath quadrature at 40 digits, rounded once
#: (derivations/tensor_product.py re-derives and checks every entry).
EXACT_CONSTANTS = {
    "identity": 1.0,
    "silu": 1.676532470331091,  # E f^2 = 0.35577551981735215623
    "tanh": 1.5925374197228315,  # E f^2 = 0.39429449039784117442
    "sigmoid": 1.8462285453386054,  # E f^2 = 0.29337903585809296274
    "relu": 1.4142135623730951,  # sqrt(2): E f^2 = 1/2
    "abs": 1.0,
    "softplus": 1.0418668355353018,  # E f^2 = 0.92124590885930027868
    "shifted_softplus": 1.8755962561350417,  # E f^2 = 0.28426362217404189196
}

#: e3nn.math.normalize2mom(f).cst for the torch functions (e3nn 0.6.0, torch 2.13, CPU), as
#: float hex so that they are bit-exact; tests/peers/test_e3nn_o3_blocks.py recomputes them.
E3NN_CONSTANTS = {
    "identity": float.fromhex("0x1.0048c8ca47b65p+0"),  # 1.001110600838467
    "silu": float.fromhex("0x1.adde87bf8e3e3p+0"),  # 1.6791767923989418
    "tanh": float.fromhex("0x1.97feea4a85186p+0"),  # 1.5937334472592695
    "sigmoid": float.fromhex("0x1.d8c1b1a2cc34cp+0"),  # 1.8467055342154763
    "relu": float.fromhex("0x1.6a95371d3cc5ep+0"),  # 1.4163393446331365
    "abs": float.fromhex("0x1.0048c8ca47b65p+0"),  # 1.001110600838467
    "softplus": float.fromhex("0x1.0aeab1e103611p+0"),  # 1.0426436590527184
    "shifted_softplus": float.fromhex("0x1.e0d2056a949acp+0"),  # 1.878204668541552
}


def _resolve_act(act, normalize_act: str, name: str):
    """``(canonical name or None, f, f_vjp, c, parity)`` for one activation entry."""
    if act is None:
        return None, _act.identity, _act.identity_vjp, 1.0, -1
    key = _ALIASES.get(act, act) if isinstance(act, str) else act
    if key not in ACTIVATIONS:
        raise ValueError(
            f"{name} entries must be None or one of "
            f"{sorted(ACTIVATIONS) + sorted(_ALIASES)}; got {act!r}"
        )
    f, f_vjp, parity = ACTIVATIONS[key]
    if normalize_act == "exact":
        c = EXACT_CONSTANTS[key]
    elif normalize_act == "e3nn":
        c = E3NN_CONSTANTS[key]
        if abs(c - 1.0) < 1e-4:  # e3nn's identity shortcut
            c = 1.0
        if key in ("softplus", "shifted_softplus"):
            f = functools.partial(f, threshold=20.0)
            f_vjp = functools.partial(f_vjp, threshold=20.0)
    else:
        c = 1.0
    return key, f, f_vjp, c, parity


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
    activated gates ``a`` and gated inputs ``y``."""

    s: np.ndarray
    g: np.ndarray
    a: np.ndarray
    y: np.ndarray
    batch_shape: tuple


@dataclass(frozen=True)
class Gate:
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

    Attributes
    ----------
    irreps_in, irreps_out : Irreps
        e3nn's layouts (sorted-and-simplified input; scalars then gated output).

    Notes
    -----
    ``init(rng) -> {}``; ``forward(params, x) -> (out, cache)``;
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
    irreps_in: Any = field(init=False, repr=False, compare=False)
    irreps_out: Any = field(init=False, repr=False, compare=False)
    _plan: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        names = ("irreps_scalars", "irreps_gates", "irreps_gated")
        for n in names:
            put(self, n, _safe_irreps(getattr(self, n), n))
        if self.normalize_act not in ("exact", "e3nn", "none"):
            raise ValueError(
                f"normalize_act must be 'exact', 'e3nn' or 'none'; got {self.normalize_act!r}"
            )
        bs, bg, by = (_blocks(getattr(self, n)) for n in names)
        for n, b in (("irreps_scalars", bs), ("irreps_gates", bg)):
            if any(l_ != 0 for _, l_, _, _, _ in b):
                raise ValueError(f"{n} must hold scalars only (l = 0); got {getattr(self, n)}")
        n_gates, n_gated = sum(m for m, *_ in bg), sum(m for m, *_ in by)
        if n_gates != n_gated:
            raise ValueError(
                f"irreps_gates must hold one scalar per irrep copy of irreps_gated "
                f"({n_gated}); got {n_gates} (irreps_gates={self.irreps_gates})"
            )
        acts = {}
        for n, b in (("act_scalars", bs), ("act_gates", bg)):
            a = getattr(self, n)
            if isinstance(a, (str, bytes)) or not hasattr(a, "__len__"):
                raise TypeError(
                    f"{n} must be a list with one activation (name or None) per block; got {a!r}"
                )
            if len(a) != len(b):
                raise ValueError(f"{n} must hold one activation per block ({len(b)}); got {len(a)}")
            put(self, n, tuple(a))
            acts[n] = [_resolve_act(x, self.normalize_act, n) for x in a]
        # Activated scalars and gates: parity after the activation (e3nn's Activation rule).
        out_par = {}
        for n, b in (("act_scalars", bs), ("act_gates", bg)):
            pars = []
            for k, ((mul, _, p, _, _), (key, *_, par)) in enumerate(zip(b, acts[n])):
                if p == 1 or key is None:
                    pars.append(p)
                elif par == 0:
                    raise ValueError(
                        f"{n}[{k}]: the input scalar is odd (0o) but {key!r} is "
                        "neither even nor odd; use an odd (tanh, identity) or even "
                        "(abs) activation"
                    )
                else:
                    pars.append(par)
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
        for i, (blk, part) in enumerate(concat):
            part_slices[part].append((starts[i], starts[i] + blk[0] * (2 * blk[1] + 1)))
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
        rep = np.repeat(np.arange(len(sizes)), sizes)
        copy_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        put(
            self,
            "_plan",
            (part_slices, acts["act_scalars"], acts["act_gates"], bs, bg, rep, copy_starts),
        )

    def init(self, rng: np.random.Generator) -> dict:
        """No parameters: ``{}``."""
        return {}

    def __call__(self, params, x):
        return self.forward(params, x)[0]

    def forward(self, params, x):
        """Apply the gate to ``x`` of shape ``(*batch, irreps_in.dim)``."""
        x = as_float64(x, "x")
        if x.ndim < 1 or x.shape[-1] != self.irreps_in.dim:
            raise ValueError(
                f"x must have shape (..., {self.irreps_in.dim}) laid out as "
                f"irreps_in={self.irreps_in}; got {x.shape}"
            )
        batch = x.shape[:-1]
        z = math.prod(batch)
        x = x.reshape(z, self.irreps_in.dim)
        part_slices, act_s, act_g, bs, bg, rep, _ = self._plan
        s, g, y = (
            np.concatenate([x[:, a:b] for a, b in sl], axis=1) if sl else np.zeros((z, 0))
            for sl in part_slices
        )
        out_s = np.empty_like(s)
        for (_, _, _, a, b), (_, f, _, c, _) in zip(bs, act_s):
            out_s[:, a:b] = c * f(s[:, a:b])
        a_g = np.empty_like(g)
        for (_, _, _, a0, b0), (_, f, _, c, _) in zip(bg, act_g):
            a_g[:, a0:b0] = c * f(g[:, a0:b0])
        out_y = y * a_g[:, rep]
        out = np.concatenate([out_s, out_y], axis=1)
        return (
            out.reshape(tuple(batch) + (self.irreps_out.dim,)),
            GateCache(s, g, a_g, y, tuple(batch)),
        )

    def backward(self, params, cache: GateCache, grad_out):
        """VJP: ``({}, (grad_x,))``."""
        batch = cache.batch_shape
        z = cache.s.shape[0]
        grad_out = as_float64(grad_out, "grad_out")
        check_shape(grad_out, tuple(batch) + (self.irreps_out.dim,), "grad_out")
        go = grad_out.reshape(z, self.irreps_out.dim)
        part_slices, act_s, act_g, bs, bg, rep, copy_starts = self._plan
        ns = cache.s.shape[1]
        go_s, go_y = go[:, :ns], go[:, ns:]
        # reverses `out_y = y * a_g[:, rep]`
        grad_y = go_y * cache.a[:, rep]
        grad_a = np.zeros_like(cache.a)
        if rep.size:  # sum over the 2l+1 components of each gated copy
            grad_a = np.add.reduceat(go_y * cache.y, copy_starts, axis=1)
        # reverses `a_g[:, a0:b0] = c * f(g[:, a0:b0])`
        grad_g = np.empty_like(cache.g)
        for (_, _, _, a0, b0), (_, _, f_vjp, c, _) in zip(bg, act_g):
            grad_g[:, a0:b0] = f_vjp(cache.g[:, a0:b0], c * grad_a[:, a0:b0])
        # reverses `out_s[:, a:b] = c * f(s[:, a:b])`
        grad_s = np.empty_like(cache.s)
        for (_, _, _, a, b), (_, _, f_vjp, c, _) in zip(bs, act_s):
            grad_s[:, a:b] = f_vjp(cache.s[:, a:b], c * go_s[:, a:b])
        grad_x = np.zeros((z, self.irreps_in.dim))
        for sl, gpart in zip(part_slices, (grad_s, grad_g, grad_y)):
            off = 0
            for a, b in sl:
                grad_x[:, a:b] = gpart[:, off : off + b - a]
                off += b - a
        return {}, (grad_x.reshape(tuple(batch) + (self.irreps_in.dim,)),)


@functools.lru_cache(maxsize=64)
def _gate_spec(irreps_scalars, act_scalars, irreps_gates, act_gates, irreps_gated, normalize_act):
    return Gate(irreps_scalars, act_scalars, irreps_gates, act_gates, irreps_gated, normalize_act)


def _spec(irreps_scalars, act_scalars, irreps_gates, act_gates, irreps_gated, normalize_act):
    key = [
        str(Irreps(i)) if not isinstance(i, str) else i
        for i in (irreps_scalars, irreps_gates, irreps_gated)
    ]
    tup = [tuple(a) if isinstance(a, (list, tuple)) else a for a in (act_scalars, act_gates)]
    try:
        return _gate_spec(key[0], tup[0], key[1], tup[1], key[2], normalize_act)
    except TypeError:  # unhashable entries: let the spec report them
        return Gate(
            irreps_scalars, act_scalars, irreps_gates, act_gates, irreps_gated, normalize_act
        )


def gate(
    x,
    irreps_scalars,
    act_scalars,
    irreps_gates,
    act_gates,
    irreps_gated,
    normalize_act: str = "exact",
):
    r"""Gate nonlinearity (primitive form of :class:`Gate`).

    Parameters
    ----------
    x : ndarray, shape (..., Gate.irreps_in.dim), float64
        Laid out as e3nn's ``Gate.irreps_in`` (sorted scalars ⊕ gates ⊕ gated).
    irreps_scalars, act_scalars, irreps_gates, act_gates, irreps_gated, normalize_act
        As :class:`Gate`.

    Returns
    -------
    out : ndarray, shape (..., Gate.irreps_out.dim)
    """
    spec = _spec(irreps_scalars, act_scalars, irreps_gates, act_gates, irreps_gated, normalize_act)
    return spec.forward({}, x)[0]


def gate_vjp(
    x,
    grad_out,
    irreps_scalars,
    act_scalars,
    irreps_gates,
    act_gates,
    irreps_gated,
    normalize_act: str = "exact",
):
    """``grad_x`` of :func:`gate` for the cotangent ``grad_out`` (forward recomputed)."""
    spec = _spec(irreps_scalars, act_scalars, irreps_gates, act_gates, irreps_gated, normalize_act)
    _, cache = spec.forward({}, x)
    return spec.backward({}, cache, grad_out)[1][0]
