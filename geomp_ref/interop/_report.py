"""What :func:`geomp_ref.interop.compare` returns: rows of (name, max_abs, max_rel, tol), the
tapped layers in forward order, and the readable table ``str(report)`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

__all__ = ["CompareReport", "Row", "TapRow"]


class Row(NamedTuple):
    """One compared quantity: ``(name, max_abs, max_rel, tol)``."""

    name: str
    max_abs: float
    max_rel: float
    tol: float

    @property
    def ok(self) -> bool:
        return bool(self.max_rel <= self.tol)


class TapRow(NamedTuple):
    """One tapped submodule output: its name, which call of it (0-based) and of how many."""

    name: str
    call: int
    calls: int
    max_abs: float
    max_rel: float
    tol: float

    @property
    def ok(self) -> bool:
        return bool(self.max_rel <= self.tol)

    @property
    def label(self) -> str:
        return self.name if self.calls <= 1 else f"{self.name} (call {self.call + 1}/{self.calls})"


@dataclass
class CompareReport:
    """What :func:`compare` found.

    Attributes
    ----------
    ok : bool
        Every row and every tap within its tolerance.
    rows : list of Row
        ``(name, max_abs, max_rel, tol)``: the outputs, then one row per trainable peer
        parameter (its ``named_parameters()`` name), then one per differentiable input.
    kinds : list of str
        ``"output"``, ``"param"`` or ``"input"`` for each row.
    taps : list of TapRow
        The tapped submodule outputs, in forward order.
    first_divergence : str or None
        ``named_modules()`` name of the earliest tap beyond tolerance (None when every tap
        agrees).
    notes : list of str
        How the comparison was set up, and what the numbers suggest.
    cotangents : tuple of ndarray
        The cotangent used for each output (float64 values, rounded to the peer's dtype), to
        repeat a backward pass by hand.
    """

    ok: bool
    rows: list
    kinds: list
    taps: list
    first_divergence: str | None
    notes: list
    module: str = ""
    spec: str = ""
    dtype: str = "float64"
    seed: int = 0
    tol_out: float = 0.0
    tol_grad: float = 0.0
    failed: list = field(default_factory=list)
    cotangents: tuple = ()

    def __str__(self) -> str:
        head = (
            f"compare {self.module} (peer, {self.dtype}) with geomp_ref {self.spec} (float64); "
            f"cotangent seed {self.seed}"
        )
        lines = [head, "=" * len(head)]
        width = max([len(r.name) for r in self.rows] + [len(t.label) for t in self.taps] + [4])

        def fmt(kind, label, max_abs, max_rel, tol, ok):
            return (
                f"{kind:<7} {label:<{width}}  {max_abs:9.2e}  {max_rel:9.2e}  {tol:8.1e}  "
                f"{'ok' if ok else 'FAIL'}"
            )

        lines.append(f"{'kind':<7} {'name':<{width}}  {'max_abs':>9}  {'max_rel':>9}  {'tol':>8}")
        for kind, r in zip(self.kinds, self.rows):
            lines.append(fmt(kind, r.name, r.max_abs, r.max_rel, r.tol, r.ok))
        if self.taps:
            lines.append("taps, in forward order:")
            for t in self.taps:
                lines.append(fmt("tap", t.label, t.max_abs, t.max_rel, t.tol, t.ok))
        lines.append(f"first divergence: {self.first_divergence}")
        for note in self.notes:
            lines.append(f"note: {note}")
        n_bad = sum(not r.ok for r in self.rows) + sum(not t.ok for t in self.taps)
        n_all = len(self.rows) + len(self.taps)
        lines.append("OK" if self.ok else f"FAILED: {n_bad} of {n_all} rows beyond tolerance")
        return "\n".join(lines)


def _err(ours, peer, floor: float = 0.0) -> tuple[float, float]:
    """``(max|a - b|, max|a - b| / max(max|b|, floor))``; ``floor`` keeps a row whose exact value
    is zero (both sides pure round-off) from being judged relative to its own noise."""
    ours = np.asarray(ours, dtype=np.float64)
    peer = np.asarray(peer, dtype=np.float64)
    if ours.size == 0:
        return 0.0, 0.0
    diff = np.abs(ours - peer)
    if not np.all(np.isfinite(diff)):
        return float("inf"), float("inf")
    max_abs = float(diff.max())
    scale = max(float(np.abs(peer).max()), float(floor))
    if scale > 0:
        return max_abs, max_abs / scale
    return max_abs, 0.0 if max_abs == 0 else float("inf")
