r"""Layer-by-layer comparison of a model whose forward no adapter knows, built from modules that
adapters do know (PONITA's model: a basis network, a window, and FiberBundleConv layers inside
ConvNext blocks; LieConv's ResNet; or a user's stack of such layers). It works for every adapter:
``geomp_ref.interop.compare_layers``.

:func:`compare_layers` finds the *layers*: the submodules, outermost first, that some adapter's
``matches`` accepts (a matched module's own children are its business, reached through its
taps). It runs the model once, recording the arguments of every layer call with forward
pre-hooks (the model's own hooks stay in place: a hook that changes a layer's output is part of
that layer), then compares each layer call on exactly the arguments it received
(:func:`geomp_ref.interop.compare`). Because every layer is checked on its real inputs, the first
layer call whose report fails is where the model and the oracle part ways, whatever the glue code
between the layers does; the glue code itself (PONITA's LayerNorm and MLP of each ConvNext block,
its read-outs) is not checked, and the report lists the submodules with parameters that no layer
covers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from . import _torch
from ._torch import map_tensors

__all__ = ["LayerReport", "StackReport", "compare_layers", "find_layers"]


class LayerReport(NamedTuple):
    """One layer call: its ``named_modules()`` name, which call (0-based) of how many, and the
    :class:`~geomp_ref.interop.CompareReport` of that call."""

    name: str
    call: int
    calls: int
    report: object

    @property
    def label(self) -> str:
        name = self.name or "<model>"
        return name if self.calls <= 1 else f"{name} (call {self.call + 1}/{self.calls})"


@dataclass
class StackReport:
    """What :func:`compare_layers` found.

    Attributes
    ----------
    ok : bool
        Every layer call agrees.
    layers : list of LayerReport
        In the order the calls ran.
    first_divergence : str or None
        ``named_modules()`` name of the first failing layer call's layer, extended by that
        layer's own first diverging tap when one fails (``"layers.1.kernel"``); None when all
        agree.
    unchecked : list of str
        Submodules with parameters outside every layer (not compared).
    notes : list of str
    """

    ok: bool
    layers: list
    first_divergence: str | None
    unchecked: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __str__(self) -> str:
        lines = ["compare_layers: every layer call on the arguments it received"]
        width = max([len(layer.label) for layer in self.layers] + [5])
        for layer in self.layers:
            r = layer.report
            worst = max((row.max_rel for row in r.rows), default=0.0)
            worst = max([worst] + [t.max_rel for t in r.taps])
            lines.append(
                f"{layer.label:<{width}}  {r.module:<18} worst rel {worst:9.2e}  "
                f"{'ok' if r.ok else 'FAIL'}"
            )
        lines.append(f"first divergence: {self.first_divergence}")
        if self.unchecked:
            lines.append(f"not checked (no adapter): {', '.join(self.unchecked)}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def _keep(t):
    return t.detach().clone()


def find_layers(model) -> list:
    """``[(name, module, adapter)]``: the outermost submodules some adapter converts, in
    ``named_modules()`` order (a module shared under two names is listed once)."""
    from ._registry import adapters

    known = adapters()
    found, seen = [], set()

    def visit(prefix, mod):
        if id(mod) in seen:
            return
        seen.add(id(mod))
        for adapter in known:
            if adapter.matches(mod):
                found.append((prefix, mod, adapter))
                return
        for name, child in mod.named_children():
            visit(f"{prefix}.{name}" if prefix else name, child)

    visit("", model)
    return found


def _unchecked(model, layers) -> list:
    names = [n for n, _, _ in layers]
    if "" in names:
        return []
    owners = []
    for pname, _ in model.named_parameters():
        owner = pname.rsplit(".", 1)[0] if "." in pname else ""
        if not any(owner == n or owner.startswith(n + ".") for n in names):
            if owner not in owners:
                owners.append(owner)
    return [o or "<model>" for o in owners]


def compare_layers(model, *args, tol_out=None, tol_grad=None, seed=0, **kwargs) -> StackReport:
    """Compare every adapter-known layer of ``model`` on the arguments it receives in one call.

    Parameters
    ----------
    model : torch.nn.Module
        Any module; its layers are found by :func:`find_layers`.
    *args, **kwargs
        Exactly what ``model.forward`` takes (copied: the model runs on copies, under
        ``torch.no_grad``).
    tol_out, tol_grad, seed
        As :func:`geomp_ref.interop.compare`, for every layer call.

    Raises
    ------
    ValueError
        No layer is found, or a layer refuses its call before the model runs (e.g. a PONITA
        layer in training mode that is not yet callibrated: the model run would rescale it).
    """
    torch = _torch.import_torch()
    from ._ponita_conv import check_calibration
    from .compare import compare_with

    layers = find_layers(model)
    if not layers:
        raise ValueError(
            f"compare_layers: no submodule of {type(model).__name__} is a type any adapter "
            "converts"
        )
    for name, mod, _ in layers:
        check_calibration(mod, name or type(mod).__name__)
    records = []
    handles = []
    try:
        for name, mod, adapter in layers:

            def pre(_mod, a, kw, name=name, mod=mod, adapter=adapter):
                records.append((name, mod, adapter, map_tensors(a, _keep), map_tensors(kw, _keep)))

            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
        with torch.no_grad():
            model(*map_tensors(args, torch.clone), **map_tensors(kwargs, torch.clone))
    finally:
        for h in handles:
            h.remove()
    totals: dict = {}
    for name, *_ in records:
        totals[name] = totals.get(name, 0) + 1
    seen: dict = {}
    out = []
    for name, mod, adapter, a, kw in records:
        k = seen.get(name, 0)
        seen[name] = k + 1
        report = compare_with(
            adapter, mod, *a, tol_out=tol_out, tol_grad=tol_grad, seed=seed, **kw
        )
        out.append(LayerReport(name, k, totals[name], report))
    first = next((layer for layer in out if not layer.report.ok), None)
    notes = []
    if first is None:
        divergence = None
    else:
        inner = first.report.first_divergence
        divergence = f"{first.name}.{inner}" if (inner and first.name) else (inner or first.name)
        notes.append(
            f"first failing layer call: {first.label}; every layer call before it agrees on "
            "its own inputs"
        )
    missing = sorted(set(n for n, _, _ in layers) - set(totals))
    if missing:
        notes.append(f"never called in this forward: {', '.join(missing)}")
    return StackReport(first is None, out, divergence, _unchecked(model, layers), notes)
