r"""Adapter: e3nn (PyTorch) modules -> geomp_ref specs and params.

The adapter protocol (:func:`matches`, :func:`from_torch`, :func:`inputs_from_torch`,
:func:`binding`, :func:`compare`) covers ``e3nn.o3.TensorProduct`` (and its subclasses with a
two-input forward, e.g. ``FullyConnectedTensorProduct``), ``e3nn.o3.Linear`` and
``e3nn.nn.Gate``, recognised by class name and structure. ``from_e3nn(module) -> (spec,
params)`` is the older name of :func:`from_torch`; the per-type functions are
:func:`tensor_product_from_e3nn`, :func:`linear_from_e3nn` and :func:`gate_from_e3nn`.
Weights copy across unchanged (same flat layout), converted to float64 NumPy arrays. e3nn
broadcasts the batch shapes of a tensor product's inputs; the binding broadcasts them for the
oracle (which wants equal batch shapes) and sums the gradients back over the broadcast axes.

What e3nn does not store is recovered from what it does store:

* A ``TensorProduct`` keeps only :math:`c_p` (in ``instructions[p].path_weight``), not the user's
  ``path_weight``, variances or normalisation names. A ``FullyConnectedTensorProduct`` is
  rebuilt as ours when one of our normalisation settings reproduces every :math:`c_p` (to 1e-14
  relative); otherwise (and for a general ``TensorProduct``) the spec uses the default
  normalisations and the user path weight :math:`(c_p / c_p^{(1)})^2` that reproduces e3nn's
  constant (:math:`c^{(1)}_p` = ours with path weight 1), exact to a few ulps.
* ``Linear``: instructions and bias flags are read from its instructions; ``path_normalization``
  is the one whose coefficients match.
* ``Gate``: each activation is identified by evaluating it on a probe grid against the
  activations of :mod:`geomp_ref.o3.gating`; the spec uses ``normalize_act='e3nn'``, and the
  module's normalisation constants must equal the stored e3nn ones (else ``ValueError``).

Cross-checks in float64 must build the e3nn module under
``torch.set_default_dtype(torch.float64)``: e3nn computes its Clebsch-Gordan buffers at
construction in the default dtype, and a float32-built module keeps float32 buffers (and float32
weights), which :func:`compare` reports as a float32 module.
"""

from __future__ import annotations

import math

import numpy as np

from ._binding import Binding, InputLink, ParamLink, reshaper
from ._torch import bind_call, class_names, np64
from .compare import bind_compare

__all__ = [
    "SUPPORTED",
    "binding",
    "compare",
    "from_e3nn",
    "from_torch",
    "gate_from_e3nn",
    "inputs_from_torch",
    "linear_from_e3nn",
    "matches",
    "tensor_product_from_e3nn",
]

#: The module types this adapter converts.
SUPPORTED = (
    "e3nn.o3.TensorProduct (two-input subclasses, e.g. FullyConnectedTensorProduct)",
    "e3nn.o3.Linear",
    "e3nn.nn.Gate",
)

_MISSING = (
    "this adapter needs PyTorch and e3nn: pip install geomp-ref[peers] (or pip install torch e3nn)"
)


def _import_e3nn():
    try:
        import e3nn.nn
        import e3nn.o3
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without the peers
        raise ImportError(_MISSING) from exc
    return torch, e3nn.o3, e3nn.nn


def _np(t) -> np.ndarray:
    return np64(t)


def _is_tp(module) -> bool:
    need = ("irreps_in1", "irreps_in2", "irreps_out", "instructions")
    return (
        "TensorProduct" in class_names(module)
        and "TensorSquare" not in class_names(module)
        and all(hasattr(module, k) for k in need)
    )


def _is_linear(module) -> bool:
    need = ("irreps_in", "irreps_out", "instructions", "internal_weights")
    return "Linear" in class_names(module) and all(hasattr(module, k) for k in need)


def _is_gate(module) -> bool:
    need = ("act_scalars", "act_gates", "irreps_gated")
    return "Gate" in class_names(module) and all(hasattr(module, k) for k in need)


def _irreps_str(irreps) -> str:
    return str(irreps)


def _close(a, b, rtol=1e-14) -> bool:
    return len(a) == len(b) and all(
        abs(x - y) <= rtol * max(abs(x), abs(y), 1e-300) for x, y in zip(a, b)
    )


def tensor_product_from_e3nn(module):
    """``(spec, params)`` for an ``e3nn.o3.TensorProduct`` / ``FullyConnectedTensorProduct``."""
    _import_e3nn()
    from ..o3.tensor_product import FullyConnectedTensorProduct, TensorProduct

    if not _is_tp(module):
        raise TypeError(f"module must be an e3nn.o3.TensorProduct; got {type(module).__name__}")
    i1, i2, io = (
        _irreps_str(module.irreps_in1),
        _irreps_str(module.irreps_in2),
        _irreps_str(module.irreps_out),
    )
    c_e3nn = [float(ins.path_weight) for ins in module.instructions]
    flags = {
        "internal_weights": bool(module.internal_weights),
        "shared_weights": bool(module.shared_weights),
    }
    spec = None
    if "FullyConnectedTensorProduct" in class_names(module):
        for irrep_norm in ("component", "norm", "none"):
            for path_norm in ("element", "path", "none"):
                cand = FullyConnectedTensorProduct(
                    i1,
                    i2,
                    io,
                    irrep_normalization=irrep_norm,
                    path_normalization=path_norm,
                    **flags,
                )
                if _close(cand.path_coefficients, c_e3nn):
                    spec = cand
                    break
            if spec is not None:
                break
    if spec is None:
        base = [
            (i.i_in1, i.i_in2, i.i_out, i.connection_mode, i.has_weight)
            for i in module.instructions
        ]
        unit = TensorProduct(i1, i2, io, base, **flags)
        pw = [(c / c1) ** 2 for c, c1 in zip(c_e3nn, unit.path_coefficients)]
        spec = TensorProduct(i1, i2, io, [b + (w,) for b, w in zip(base, pw)], **flags)
    params = {}
    if spec.internal_weights:
        params["weight"] = _np(module.weight).reshape(spec.weight_numel)
    return spec, params


def linear_from_e3nn(module):
    """``(spec, params)`` for an ``e3nn.o3.Linear`` (internal weights, no ``f_in``)."""
    _import_e3nn()
    from ..o3.linear import Linear

    if not _is_linear(module):
        raise TypeError(f"module must be an e3nn.o3.Linear; got {type(module).__name__}")
    if not module.internal_weights:
        raise ValueError(
            "module has external weights (internal_weights=False); the oracle's "
            "Linear keeps its weights in params: build it with internal weights"
        )
    weighted = [ins for ins in module.instructions if ins.i_in != -1]
    if module.weight.ndim != 1:
        raise ValueError("Linear with f_in/f_out (weight of rank > 1) is not supported")
    biased = {ins.i_out for ins in module.instructions if ins.i_in == -1}
    flags = [k in biased for k in range(len(module.irreps_out))]
    ins = [(i.i_in, i.i_out) for i in weighted]
    i_in, i_out = _irreps_str(module.irreps_in), _irreps_str(module.irreps_out)
    c_e3nn = [float(i.path_weight) for i in weighted]
    spec = None
    for path_norm in ("element", "path"):
        cand = Linear(i_in, i_out, biases=flags, instructions=ins, path_normalization=path_norm)
        if _close([t[-1] for t in cand._tables[0]], c_e3nn):
            spec = cand
            break
    if spec is None:
        raise ValueError(
            "could not reproduce this Linear's path coefficients with "
            "path_normalization 'element' or 'path'"
        )
    params = {"weight": _np(module.weight).reshape(spec.weight_numel)}
    if spec.bias_numel:
        params["bias"] = _np(module.bias).reshape(spec.bias_numel)
    return spec, params


def _identify_activation(f, torch) -> str | None:
    """Name of the oracle activation equal to ``f`` on a probe grid (``None`` for None)."""
    from ..o3.gating import ACTIVATIONS

    if f is None:
        return None
    probe = np.linspace(-6.0, 6.0, 97)
    with torch.no_grad():
        y = _np(f(torch.tensor(probe, dtype=torch.float64)))
    for name, (g, _, _) in ACTIVATIONS.items():
        if np.allclose(y, g(probe), rtol=1e-12, atol=1e-12):
            return name
    raise ValueError(
        f"activation {f!r} matches none of {sorted(ACTIVATIONS)}; the oracle's Gate "
        "supports only these"
    )


def gate_from_e3nn(module):
    """``(spec, {})`` for an ``e3nn.nn.Gate`` (spec with ``normalize_act='e3nn'``)."""
    torch, _, _ = _import_e3nn()
    from ..o3.gating import E3NN_CONSTANTS, Gate

    if not _is_gate(module):
        raise TypeError(f"module must be an e3nn.nn.Gate; got {type(module).__name__}")
    names = {}
    for part in ("act_scalars", "act_gates"):
        act = getattr(module, part)
        names[part] = []
        for k, a in enumerate(act.acts):
            if a is None:
                names[part].append(None)
                continue
            key = _identify_activation(a.f, torch)
            cst = 1.0 if a._is_id else float(a.cst)
            want = E3NN_CONSTANTS[key] if abs(E3NN_CONSTANTS[key] - 1) >= 1e-4 else 1.0
            if not math.isclose(cst, want, rel_tol=0, abs_tol=0):
                raise ValueError(
                    f"{part}[{k}] ({key}): normalisation constant {cst!r} differs "
                    f"from e3nn's stored {want!r} (non-CPU or modified module?)"
                )
            names[part].append(key)
    spec = Gate(
        _irreps_str(module.act_scalars.irreps_in),
        names["act_scalars"],
        _irreps_str(module.act_gates.irreps_in),
        names["act_gates"],
        _irreps_str(module.irreps_gated),
        normalize_act="e3nn",
    )
    return spec, {}


def from_e3nn(module):
    """``(spec, params)`` for an e3nn ``TensorProduct``, ``FullyConnectedTensorProduct``,
    ``Linear`` or ``Gate`` module."""
    _import_e3nn()
    if _is_tp(module):
        return tensor_product_from_e3nn(module)
    if _is_linear(module):
        return linear_from_e3nn(module)
    if _is_gate(module):
        return gate_from_e3nn(module)
    raise TypeError(
        "module must be an e3nn TensorProduct, FullyConnectedTensorProduct, Linear "
        f"or Gate; got {type(module).__name__}"
    )


# --- the adapter protocol -----------------------------------------------------------------------


def matches(module) -> bool:
    """True for the e3nn module types of :data:`SUPPORTED` (by class name and structure)."""
    return _is_tp(module) or _is_linear(module) or _is_gate(module)


def from_torch(module):
    """``(spec, params)``: same as :func:`from_e3nn`."""
    return from_e3nn(module)


def _broadcast(peer_shape: tuple, shape: tuple):
    """``(to_ours, to_peer)``: broadcast a peer array to ``shape`` and the adjoint sum back."""
    peer_shape, shape = tuple(peer_shape), tuple(shape)
    lead = len(shape) - len(peer_shape)
    padded = (1,) * lead + peer_shape
    axes = tuple(k for k, (a, b) in enumerate(zip(padded, shape)) if a == 1 and b != 1)

    def to_ours(a):
        return np.broadcast_to(a, shape).copy()

    def to_peer(g):
        return np.sum(g, axis=axes, keepdims=True).reshape(peer_shape)

    return to_ours, to_peer


def _param_links(module, spec) -> list:
    named = dict(module.named_parameters())
    links = []
    for key in ("weight", "bias"):
        if key in named and named[key].numel():
            shape = tuple(named[key].shape)
            links.append(
                ParamLink(key, (key,), None, reshaper((named[key].numel(),)), reshaper(shape))
            )
    return links


def binding(module, *args, **kwargs):
    """The :class:`~geomp_ref.interop.Binding` of one call of an e3nn module."""
    _import_e3nn()
    spec, params = from_e3nn(module)
    links = _param_links(module, spec)
    call = bind_call(module, args, kwargs)
    names = list(call)
    notes = []
    if _is_tp(module):
        x, y = call[names[0]], call[names[1]]
        w = call.get("weight")
        batch = np.broadcast_shapes(
            tuple(x.shape[:-1]), tuple(y.shape[:-1]),
            *([tuple(w.shape[:-1])] if w is not None and not spec.shared_weights else []),
        )
        inputs, links_in = [], []
        for index, (key, t) in enumerate(((names[0], x), (names[1], y), ("weight", w))):
            if t is None:
                continue
            want = tuple(batch) + (t.shape[-1],)
            if key == "weight" and spec.shared_weights:
                want = tuple(t.shape)
            to_ours, to_peer = _broadcast(tuple(t.shape), want)
            if tuple(t.shape) != want:
                notes.append(f"{key}: batch shape {tuple(t.shape[:-1])} broadcast to {batch}")
            inputs.append(to_ours(np64(t)))
            get = lambda c, k=key: c[k]  # noqa: E731
            links_in.append(InputLink(key, get, index, to_ours=to_ours, to_peer=to_peer))
        inputs = tuple(inputs)
    else:
        if _is_linear(module) and call.get("weight") is not None:
            raise ValueError("Linear: an external weight passed to forward is not supported")
        key = names[0]
        inputs = (np64(call[key]),)
        links_in = [InputLink(key, lambda c: c[key], 0)]
    return Binding(spec, params, None, inputs, links, links_in, lambda r: r, [], notes)


def inputs_from_torch(module, *args, **kwargs):
    """``(None, inputs)``: e3nn blocks take no graph."""
    b = binding(module, *args, **kwargs)
    return b.graph, b.inputs


compare = bind_compare(__name__)
