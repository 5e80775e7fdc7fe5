"""Instruction records and their validation for :mod:`geomp_ref.o3.tensor_product`.

Private helpers: block tables of an ``Irreps``, fan-in and weight shapes per connection mode, and
the checks that turn a user's instruction tuple into an :class:`Instruction` (errors name
``instructions[k]`` and the rule that failed).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._validate import as_float64
from .irreps import Irreps

MODES = ("uvw", "uvu", "uvv", "uuw", "uuu", "uvuv")


class Instruction(NamedTuple):
    """One path, as e3nn's ``Instruction`` (``path_weight`` here is the user's value)."""

    i_in1: int
    i_in2: int
    i_out: int
    connection_mode: str
    has_weight: bool
    path_weight: float
    path_shape: tuple


def _blocks(irreps) -> list[tuple[int, int, int, int, int]]:
    """``(mul, l, p, start, stop)`` per block, read only through ``(mul, ir)`` iteration."""
    out, start = [], 0
    for mul, ir in irreps:
        stop = start + mul * (2 * ir.l + 1)
        out.append((int(mul), int(ir.l), int(ir.p), start, stop))
        start = stop
    return out


def _fan_in(mode: str, m1: int, m2: int) -> int:
    return {"uvw": m1 * m2, "uvu": m2, "uvv": m1, "uuw": m1, "uuu": 1, "uvuv": 1}[mode]


def _path_shape(mode: str, m1: int, m2: int, mo: int) -> tuple:
    return {
        "uvw": (m1, m2, mo),
        "uvu": (m1, m2),
        "uvv": (m1, m2),
        "uuw": (m1, mo),
        "uuu": (m1,),
        "uvuv": (m1, m2),
    }[mode]


def _check_var(var, n: int, name: str):
    if var is None:
        return None
    vals = tuple(float(v) for v in np.atleast_1d(as_float64(var, name, ndim=(0, 1))))
    if len(vals) != n:
        raise ValueError(f"{name} must hold one variance per block ({n}); got {len(vals)} values")
    if any(v < 0 for v in vals):
        raise ValueError(f"{name} must be >= 0 (variances); got {vals}")
    return vals


def _normalise_instruction(k: int, ins, b1, b2, bo, owner: str = "TensorProduct") -> Instruction:
    """Validate instruction ``k`` (tuple of 5 or 6 entries, or Instruction) against the irreps."""
    name = f"{owner}.instructions[{k}]"
    if not isinstance(ins, (tuple, list)) or len(ins) not in (5, 6, 7):
        raise ValueError(
            f"{name} must be (i_in1, i_in2, i_out, mode, has_weight[, path_weight]); got {ins!r}"
        )
    i1, i2, io, mode, has_weight = ins[:5]
    try:
        path_weight = float(ins[5]) if len(ins) > 5 else 1.0
    except (TypeError, ValueError):
        raise TypeError(f"{name}: path_weight must be a real number; got {ins[5]!r}") from None
    if not isinstance(has_weight, (bool, np.bool_)):
        raise TypeError(f"{name}: has_weight must be True or False; got {has_weight!r}")
    for idx, blocks, which in (
        (i1, b1, "irreps_in1"),
        (i2, b2, "irreps_in2"),
        (io, bo, "irreps_out"),
    ):
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"{name}: block indices must be ints; got {idx!r}")
        if not 0 <= idx < len(blocks):
            raise ValueError(
                f"{name}: index {idx} is out of range for {which} ({len(blocks)} blocks)"
            )
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"{name}: connection mode must be one of {MODES}; got {mode!r}")
    if not math.isfinite(path_weight) or path_weight < 0:
        raise ValueError(f"{name}: path_weight must be finite and >= 0; got {path_weight}")
    (m1, l1, p1, *_), (m2, l2, p2, *_), (mo, lo, po, *_) = b1[i1], b2[i2], bo[io]
    if p1 * p2 != po or not abs(l1 - l2) <= lo <= l1 + l2:
        raise ValueError(
            f"{name}: irreps cannot couple: {l1}{'eo'[p1 < 0]} x {l2}{'eo'[p2 < 0]} does not "
            f"contain {lo}{'eo'[po < 0]} (need |l1-l2| <= lo <= l1+l2 and p1*p2 = po)"
        )
    need = {
        "uvu": mo == m1,
        "uvv": mo == m2,
        "uuw": m1 == m2 and (has_weight or mo == 1),
        "uuu": m1 == m2 == mo,
        "uvuv": mo == m1 * m2,
        "uvw": bool(has_weight),
    }
    if not need[mode]:
        rule = {
            "uvu": "mul_out == mul_in1",
            "uvv": "mul_out == mul_in2",
            "uuw": "mul_in1 == mul_in2 (and mul_out == 1 without weights)",
            "uuu": "mul_in1 == mul_in2 == mul_out",
            "uvuv": "mul_out == mul_in1 * mul_in2",
            "uvw": "has_weight=True",
        }[mode]
        raise ValueError(
            f"{name}: mode {mode!r} needs {rule}; got multiplicities "
            f"({m1}, {m2}, {mo}) and has_weight={has_weight}"
        )
    return Instruction(
        int(i1),
        int(i2),
        int(io),
        mode,
        bool(has_weight),
        path_weight,
        _path_shape(mode, m1, m2, mo),
    )


def _safe_irreps(x, name):
    try:
        return Irreps(x)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(
            f"{name} must be an Irreps or an irreps string like '2x0e+1x1o'; got {x!r} ({exc})"
        ) from None
