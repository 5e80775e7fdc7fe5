r"""Activations of equivariant layers: parity and second-moment normalisation (one table).

Every gated or normalised activation of the library (:class:`~geomp_ref.o3.Gate`, TFN's radial
network, SEGNN's swish gate) reads its function, derivative, parity and constant from here.

Normalisation constants (``normalize_act``)
-------------------------------------------
A normalised activation is :math:`c_f\, f(x)` with :math:`c_f = (\mathbb E_{z\sim N(0,1)}
[f(z)^2])^{-1/2}`, so that a unit-variance Gaussian input keeps unit second moment.

* ``'exact'``: :math:`c_f` from the Gaussian integral evaluated with mpmath at 40 digits and
  rounded once (``EXACT_CONSTANTS``; closed forms: identity and abs 1, relu :math:`\sqrt 2`).
  ``derivations/tensor_product.py --check`` re-derives every entry.
* ``'e3nn'``: e3nn's ``normalize2mom`` values, a Monte-Carlo estimate from :math:`10^6` float64
  normal samples of a torch generator seeded 0 (``E3NN_CONSTANTS``, stored as float hex so they
  are bit-exact for e3nn 0.6.0 / torch 2.13; ``tests/peers/test_e3nn_o3_blocks.py`` recomputes
  them). e3nn treats :math:`|c - 1| < 10^{-4}` as the identity; none of the tabulated values
  qualifies (identity and abs get 1.0011106). In this mode ``softplus`` and ``shifted_softplus``
  follow torch's ``threshold=20`` (they return ``x`` above 20). The samples come from torch's
  default device: an e3nn module built with the GPU as default device has other constants
  (its outputs moved by up to 1.3e-3 relative on an H200), so build it on the CPU and move it.
* ``'none'``: :math:`c = 1`.

An activation ``None`` is the identity *without* normalisation (e3nn's convention).

Parity: an activation is even (:math:`f(-x) = f(x)`: abs), odd (:math:`f(-x) = -f(x)`: identity,
tanh) or neither (silu, sigmoid, relu, softplus, shifted_softplus). An odd scalar (``0o``) stays
``0o`` under an odd activation, becomes ``0e`` under an even one, and cannot pass through one that
is neither (its output would not transform as any irrep under reflections).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..ops import activations as _act

__all__ = [
    "ACTIVATIONS",
    "ALIASES",
    "E3NN_CONSTANTS",
    "EXACT_CONSTANTS",
    "NORMALIZE_ACT",
    "Activation",
    "resolve_activation",
]

NORMALIZE_ACT = ("exact", "e3nn", "none")


def _abs(x):
    return np.abs(np.asarray(x, dtype=np.float64))


def _abs_vjp(x, grad_y):
    return grad_y * np.sign(x)  # subgradient 0 at 0, as torch


ALIASES = {"swish": "silu", "ssp": "shifted_softplus"}
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

#: 1/sqrt(E[f(z)^2]), z ~ N(0,1): mpmath quadrature at 40 digits, rounded once.
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

#: e3nn.math.normalize2mom(f).cst for the torch functions (e3nn 0.6.0, torch 2.13, CPU).
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


class Activation(NamedTuple):
    """A resolved activation: canonical ``name`` (None for the bare identity), ``f``, ``f_vjp``
    (``f_vjp(x, grad_y) = f'(x) grad_y``), constant ``c`` and ``parity`` (+1, -1 or 0)."""

    name: str | None
    f: Callable
    f_vjp: Callable
    c: float
    parity: int


def resolve_activation(act, normalize_act: str, name: str) -> Activation:
    """The :class:`Activation` for ``act`` (a name, an alias or None) under ``normalize_act``.

    ``name`` is the user's field, used in the error (e.g. ``"Gate.act_scalars[1]"``).
    """
    if normalize_act not in NORMALIZE_ACT:
        raise ValueError(f"normalize_act must be one of {NORMALIZE_ACT}; got {normalize_act!r}")
    if act is None:
        return Activation(None, _act.identity, _act.identity_vjp, 1.0, -1)
    key = ALIASES.get(act, act) if isinstance(act, str) else act
    if not isinstance(key, str) or key not in ACTIVATIONS:
        raise ValueError(
            f"{name} must be None or one of {sorted(ACTIVATIONS) + sorted(ALIASES)}; got {act!r}"
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
    return Activation(key, f, f_vjp, c, parity)
