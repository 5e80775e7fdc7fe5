r"""The cross-check engine: one call compares a peer's PyTorch module with the oracle.

:func:`compare` (re-exported as ``geomp_ref.interop.compare``) takes a module and exactly the
arguments its ``forward`` takes, and

1. finds the adapter whose ``matches(module)`` is true and asks it for a
   :class:`~geomp_ref.interop.Binding` (our spec, params, graph and inputs, and the links back to
   the peer's names);
2. copies the call arguments and makes every floating tensor among them a fresh leaf that requires
   grad; the peer runs on *copies of those leaves*, so a peer that updates an input in place
   (``coord += ...``) changes neither the leaves nor what the oracle saw;
3. runs the peer forward with forward hooks on the binding's taps, draws one cotangent per
   compared output from ``numpy.random.default_rng(seed).standard_normal(shape)`` (float64, drawn
   in output order, rounded to the peer's dtype and used as those same values on both sides) and
   runs torch autograd for the peer's parameter and input gradients;
4. runs our ``forward`` and hand ``backward`` with the same cotangents, maps our gradients back
   through each link's ``to_peer`` and reports, row by row, under the peer's own names.

Errors are :math:`\max|a - b|` and :math:`\max|a - b| / \max|b_{peer}|` (an output row whose
peer values are all zero passes only when ours are exactly zero too); a gradient row's scale is
never taken below ``GRAD_FLOOR`` (1e-4) times the largest peer gradient of the report, so a
gradient that is zero in exact arithmetic (a bias cancelled by a normalisation) is not judged
relative to its own round-off. Default tolerances (relative): outputs
and taps ``1e-12``, gradients ``1e-10`` for a float64 module; a float32 module (any float32
parameter or input) runs in float32 while the oracle runs in float64 on the same (float32-rounded)
values, and the defaults become ``1e-5`` and ``1e-4``; the report says which.
"""

from __future__ import annotations

import numpy as np

from . import _torch
from ._report import CompareReport, Row, TapRow, _err
from ._torch import bind_call, get_path, iter_tensors, map_tensors, np64

__all__ = ["CompareReport", "Row", "TapRow", "bind_compare", "compare", "compare_with"]

#: A gradient row is judged relative to max(its own largest |peer value|, GRAD_FLOOR times the
#: largest |peer gradient| of the whole report): with the default tolerance 1e-10 that still
#: catches any error above 1e-14 of the largest gradient, while a row that is exactly zero in exact
#: arithmetic (pure round-off on both sides) is not judged against its own noise.
GRAD_FLOOR = 1e-4

#: Default (output, gradient) relative tolerances per peer dtype.
TOLERANCES = {"float64": (1e-12, 1e-10), "float32": (1e-5, 1e-4)}


def _peer_dtype(torch, module, args, kwargs) -> str:
    found = [p.dtype for p in module.parameters() if p.is_floating_point()]
    found += [t.dtype for t in iter_tensors((args, kwargs)) if t.is_floating_point()]
    names = {str(d).removeprefix("torch.") for d in found}
    low = names - {"float64", "float32"}
    if low:
        raise ValueError(
            f"compare supports float64 and float32 modules; this one holds {sorted(low)} tensors"
        )
    return "float32" if "float32" in names else "float64"


def _leaf(t):
    c = t.detach().clone()
    if c.is_floating_point():
        c.requires_grad_(True)
    return c


def _check_links(module, b) -> list:
    """The trainable peer parameters; raise on an adapter whose links miss or misname one."""
    named = dict(module.named_parameters())
    for link in b.param_links:
        if link.peer not in named:
            raise RuntimeError(f"adapter bug: ParamLink names unknown parameter {link.peer!r}")
        leaf = get_path(b.params, link.path)
        block = leaf if link.index is None else leaf[link.index]
        want = np.asarray(link.to_ours(np64(named[link.peer])), dtype=np.float64)
        if np.shape(block) != want.shape or not np.array_equal(block, want):
            raise RuntimeError(
                f"adapter bug: params{list(link.path)} does not hold to_ours({link.peer})"
            )
    linked = {link.peer for link in b.param_links}
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.numel() and n not in linked]
    if missing:
        raise RuntimeError(
            f"adapter bug: no ParamLink covers the trainable parameter(s) {missing} of "
            f"{type(module).__name__}"
        )
    return trainable


def _run_peer(torch, module, b, peer_args, peer_kwargs):
    """The peer forward with hooks recording (copies of) every tapped submodule output."""
    subs = dict(module.named_modules())
    recorded = {tap.peer: [] for tap in b.taps}
    handles = []
    for name in list(recorded):
        if name not in subs:
            raise RuntimeError(f"adapter bug: Tap names unknown submodule {name!r}")

        def hook(_mod, _inp, out, name=name):
            recorded[name].append(map_tensors(out, lambda t: t.detach().clone()))

        handles.append(subs[name].register_forward_hook(hook))
    try:
        result = module(*peer_args, **peer_kwargs)
    finally:
        for h in handles:
            h.remove()
    outs = b.outputs(result)
    return (tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)), recorded


def _tap_rows(b, cache, recorded, tol) -> tuple[list, list]:
    rows, notes = [], []
    for tap in b.taps:
        seen = recorded[tap.peer]
        calls = max([t.call for t in b.taps if t.peer == tap.peer]) + 1
        if tap.call >= len(seen):
            notes.append(
                f"tap {tap.peer} call {tap.call + 1} never ran (the submodule ran {len(seen)} "
                "times): the module's forward differs from what the adapter assumes"
            )
            rows.append(TapRow(tap.peer, tap.call, calls, float("inf"), float("inf"), tol))
            continue
        peer = np64(tap.peer_value(seen[tap.call]))
        ours = np.asarray(tap.ours(cache), dtype=np.float64)
        if ours.shape != peer.shape:
            raise RuntimeError(
                f"adapter bug: tap {tap.peer}: ours has shape {ours.shape}, peer {peer.shape}"
            )
        rows.append(TapRow(tap.peer, tap.call, calls, *_err(ours, peer), tol))
    return rows, notes


def compare_with(adapter, module, *args, tol_out=None, tol_grad=None, seed=0, **kwargs):
    """:func:`compare` with a given adapter module (one that has ``binding``)."""
    torch = _torch.import_torch()
    dtype = _peer_dtype(torch, module, args, kwargs)
    d_out, d_grad = TOLERANCES[dtype]
    tol_out = d_out if tol_out is None else float(tol_out)
    tol_grad = d_grad if tol_grad is None else float(tol_grad)
    leaf_args, leaf_kwargs = map_tensors(args, _leaf), map_tensors(kwargs, _leaf)
    call = bind_call(module, leaf_args, leaf_kwargs)
    detached = map_tensors((leaf_args, leaf_kwargs), lambda t: t.detach().clone())
    b = adapter.binding(module, *detached[0], **detached[1])
    trainable = _check_links(module, b)

    # the peer runs on copies of the leaves: in-place updates of its inputs stay on its side
    peer_args, peer_kwargs = map_tensors((leaf_args, leaf_kwargs), lambda t: t.clone())
    outs, recorded = _run_peer(torch, module, b, peer_args, peer_kwargs)
    if b.graph is None:
        out, cache = b.spec.forward(b.params, *b.inputs)
    else:
        out, cache = b.spec.forward(b.params, b.graph, *b.inputs)
    ours_outs = out if isinstance(out, tuple) else (out,)
    if len(ours_outs) != len(outs):
        raise RuntimeError(
            f"adapter bug: binding.outputs gives {len(outs)} tensors, the spec {len(ours_outs)}"
        )

    rng = np.random.default_rng(seed)
    cot_peer, cot_ours = [], []
    for k, (o, mine) in enumerate(zip(outs, ours_outs)):
        if tuple(o.shape) != np.shape(mine):
            raise RuntimeError(
                f"adapter bug: output {k} has shape {tuple(o.shape)} (peer) vs "
                f"{np.shape(mine)} (ours)"
            )
        if not o.is_floating_point():
            cot_peer.append(None)
            cot_ours.append(None)
            continue
        c = torch.as_tensor(rng.standard_normal(np.shape(mine)), dtype=o.dtype)
        cot_peer.append(c)
        cot_ours.append(np64(c))

    input_tensors, seen_ids = [], set()
    for link in b.input_links:
        t = link.get(call)
        if not getattr(t, "requires_grad", False):
            raise RuntimeError(f"adapter bug: InputLink {link.peer!r} is not a floating tensor")
        if id(t) not in seen_ids:
            seen_ids.add(id(t))
            input_tensors.append(t)
    wrt = [p for _, p in trainable] + input_tensors
    diff = [(o, c) for o, c in zip(outs, cot_peer) if c is not None and o.requires_grad]
    if diff and wrt:
        peer_grads = torch.autograd.grad(
            [o for o, _ in diff], wrt, grad_outputs=[c for _, c in diff], allow_unused=True
        )
    else:
        peer_grads = [None] * len(wrt)
    grad_of = {id(t): g for t, g in zip(wrt, peer_grads)}

    grad_out = cot_ours[0] if not isinstance(out, tuple) else tuple(cot_ours)
    gp, gi = b.spec.backward(b.params, cache, grad_out)

    rows, kinds = [], []
    names = b.output_names or (
        ("output",) if len(outs) == 1 else tuple(f"output[{k}]" for k in range(len(outs)))
    )
    for name, o, mine in zip(names, outs, ours_outs):
        rows.append(Row(name, *_err(mine, np64(o)), tol_out))
        kinds.append("output")

    ours_p: dict = {}
    for link in b.param_links:
        g = np.asarray(get_path(gp, link.path), dtype=np.float64)
        g = g if link.index is None else g[link.index]
        ours_p[link.peer] = ours_p.get(link.peer, 0.0) + np.asarray(link.to_peer(g))
    grad_rows = []  # (name, ours, peer, kind): judged together below
    for name, p in trainable:
        ref = grad_of[id(p)]
        ref = np.zeros(tuple(p.shape)) if ref is None else np64(ref)
        grad_rows.append((name, np.broadcast_to(ours_p.get(name, 0.0), ref.shape), ref, "param"))

    ours_i: dict = {}
    tensor_of = {}
    for link in b.input_links:
        t = link.get(call)
        tensor_of.setdefault(link.peer, t)
        g = gi[link.index]
        g = np.zeros(np.shape(b.inputs[link.index])) if g is None else np.asarray(g, float)
        g = g if link.block is None else g[link.block]
        ours_i[link.peer] = ours_i.get(link.peer, 0.0) + np.asarray(link.to_peer(g))
    for name, t in tensor_of.items():
        ref = grad_of[id(t)]
        ref = np.zeros(tuple(t.shape)) if ref is None else np64(ref)
        grad_rows.append((name, np.broadcast_to(ours_i[name], ref.shape), ref, "input"))
    # A gradient that is zero in exact arithmetic (e.g. a bias cancelled by a normalisation) is
    # round-off on both sides; each row is judged relative to its own scale, but never to less
    # than GRAD_FLOOR times the largest peer gradient of the report.
    largest = max((float(np.abs(ref).max()) for _, _, ref, _ in grad_rows if ref.size), default=0.0)
    for name, mine, ref, kind in grad_rows:
        rows.append(Row(name, *_err(mine, ref, GRAD_FLOOR * largest), tol_grad))
        kinds.append(kind)

    taps, notes = _tap_rows(b, cache, recorded, tol_out)
    first = next((t for t in taps if not t.ok), None)
    notes = list(b.notes) + notes
    if dtype == "float32":
        notes.append(
            "float32 module: the peer ran in float32, the oracle in float64 on the same "
            f"float32-rounded weights, inputs and cotangents; tolerances {tol_out:g} (outputs) "
            f"and {tol_grad:g} (gradients)"
        )
    ok_out = all(r.ok for r, k in zip(rows, kinds) if k == "output")
    if first is not None:
        notes.append(
            f"first divergence: {first.label}; every tap before it agrees. Compare its output "
            "with the matching field of our forward cache (see the adapter's taps)"
        )
    elif not ok_out:
        notes.append(
            "the outputs differ but every tap agrees: the difference arises after the last tap"
            if taps
            else "the outputs differ (this module type has no taps)"
        )
    elif not all(r.ok for r in rows):
        notes.append(
            "the forward agrees everywhere, gradients do not: suspect a backward pass, or a "
            "peer that detaches part of its graph from autograd"
        )
    ok = all(r.ok for r in rows) and all(t.ok for t in taps)
    return CompareReport(
        ok=ok,
        rows=rows,
        kinds=kinds,
        taps=taps,
        first_divergence=None if first is None else first.name,
        notes=notes,
        module=type(module).__name__,
        spec=type(b.spec).__name__,
        dtype=dtype,
        seed=int(seed),
        tol_out=tol_out,
        tol_grad=tol_grad,
        failed=[r.name for r in rows if not r.ok] + [t.label for t in taps if not t.ok],
        cotangents=tuple(cot_ours),
    )


def compare(module, *args, tol_out=None, tol_grad=None, seed=0, **kwargs) -> CompareReport:
    """Compare a peer's PyTorch module with the oracle on one call.

    Parameters
    ----------
    module : torch.nn.Module
        A module of a supported peer type (see :func:`geomp_ref.interop.supported`).
    *args, **kwargs
        Exactly what ``module.forward`` takes (tensors, edge lists, a PyG ``Data``, ...). They
        are copied; neither side sees the other's in-place updates.
    tol_out, tol_grad : float, optional
        Relative tolerances of the outputs (and taps) and of the gradients. Defaults: 1e-12 and
        1e-10 for float64 modules, 1e-5 and 1e-4 for float32 ones.
    seed : int
        Seed of the cotangents (``numpy.random.default_rng(seed).standard_normal``, one draw per
        output, in output order).

    Returns
    -------
    CompareReport

    Raises
    ------
    TypeError
        No adapter matches ``module`` (the message lists the supported types).
    ValueError
        The module uses an option the oracle cannot express (the message names it), or holds
        float16/bfloat16 tensors.
    ImportError
        torch (or the adapter's peer) is missing: install the ``peers`` extra.
    """
    from ._registry import find_adapter

    adapter = find_adapter(module)
    return compare_with(
        adapter, module, *args, tol_out=tol_out, tol_grad=tol_grad, seed=seed, **kwargs
    )


def bind_compare(adapter_name: str):
    """The generic :func:`compare` bound to one adapter module (``adapter.compare``)."""

    def compare(module, *args, tol_out=None, tol_grad=None, seed=0, **kwargs):
        import importlib

        adapter = importlib.import_module(adapter_name)
        if not adapter.matches(module):
            raise TypeError(
                f"{adapter_name} supports {', '.join(adapter.SUPPORTED)}; got "
                f"{type(module).__name__}"
            )
        return compare_with(
            adapter, module, *args, tol_out=tol_out, tol_grad=tol_grad, seed=seed, **kwargs
        )

    compare.__doc__ = f"Like :func:`geomp_ref.interop.compare`, for {adapter_name} modules only."
    return compare
