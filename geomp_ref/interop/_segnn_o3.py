r"""Steerable-E3-GNN's O3 blocks -> specs and :class:`ParamLink` lists: ``O3TensorProduct``,
``O3TensorProductSwishGate`` and ``InstanceNorm`` (no torch import here).

``tp_convert`` / ``norm_convert`` ``(module, name, prefix, path) -> (spec, links, notes)``:
``name`` is how error messages call the module (``"layers.2.update_layer_1"``), ``prefix`` the
peer's parameter prefix and ``path`` where our params of that module live. Specs are built in
``mode="reference"`` (biases on every ``l = 0`` output block, ``0o`` included; the swish gate
reading the product's columns as they come), and everything the module stores is checked
against what our spec computes: irreps, the tensor product's paths and path constants, the
rescaling buffer, the bias columns, the gate's activations and constants. Anything else raises
``ValueError`` naming the attribute.

The published ``O3TensorProduct`` divides the e3nn product by its buffer
``sqrt_k_correction`` :math:`= F_o^{-1/2}` per output block (:math:`F_o = \sum_{p \to o} m_1
m_2`). A module built under torch's float32 default dtype and converted with ``.double()``
keeps float32-rounded constants there (and in e3nn's Clebsch-Gordan buffers): the conversion
says so in its notes, because such a module differs from the float64 oracle by about 1e-8.
"""

from __future__ import annotations

import math

import numpy as np

from .. import o3
from ..layers.segnn_blocks import O3TensorProduct, O3TensorProductGate
from ..layers.segnn_norm import InstanceNorm
from ._binding import ParamLink
from ._torch import class_names, np64

__all__ = ["built", "check_covered", "norm_convert", "norm_matches", "read_irreps", "same_block",
           "tp_convert", "tp_matches", "units"]

_FLOAT32_NOTE = (
    "sqrt_k_correction holds float32-rounded constants (the module was built under torch's "
    "float32 default dtype; so are e3nn's Clebsch-Gordan buffers): in float64 it differs from "
    "the oracle near 1e-8. Build it under torch.set_default_dtype(torch.float64)"
)


def tp_matches(module) -> bool:
    """``O3TensorProduct`` or ``O3TensorProductSwishGate`` (class name and attributes)."""
    names = class_names(module)
    need = ("tp", "irreps_in1", "irreps_in2", "irreps_out", "biases", "sqrt_k_correction")
    return bool({"O3TensorProduct", "O3TensorProductSwishGate"} & names) and all(
        hasattr(module, k) for k in need
    )


def norm_matches(module) -> bool:
    """Steerable-E3-GNN's ``InstanceNorm`` (not torch's ``InstanceNorm1d``)."""
    need = ("irreps", "eps", "affine", "reduce", "normalization")
    return "InstanceNorm" in class_names(module) and all(hasattr(module, k) for k in need)


# --- helpers -------------------------------------------------------------------------------------


def read_irreps(value, name: str):
    """Our Irreps of an e3nn Irreps (through its string); ValueError naming ``name``."""
    try:
        return o3.Irreps(str(value))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"{name}: cannot read the irreps {value!r} ({exc})") from None


def built(make, name: str):
    """``make()``, with the oracle's ValueError prefixed by the peer module's name."""
    try:
        return make()
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def units(irreps) -> list:
    """Every irrep copy in order (``2x0e+1x1o`` -> ``[0e, 0e, 1o]``): simplify-invariant."""
    return [ir for mul, ir in irreps for _ in range(mul)]


def check_covered(module, links, name: str) -> None:
    """Every parameter of ``module`` must be linked: the oracle cannot express extra weights."""
    linked = {link.peer for link in links}
    extra = [n for n, p in module.named_parameters() if p.numel() and n not in linked]
    if extra:
        raise ValueError(
            f"{name} holds parameters the published module does not have: {extra}; the oracle "
            "cannot express them"
        )


def _rel(a, b) -> float:
    scale = float(np.max(np.abs(b))) if np.size(b) else 0.0
    return float(np.max(np.abs(a - b))) / scale if scale else float(np.max(np.abs(a), initial=0))


# --- O3TensorProduct and O3TensorProductSwishGate ------------------------------------------------


def _same_gate(g, h) -> bool:
    """Gates that compute the same map: the gated irreps may be written merged or not."""
    if g is None or h is None:
        return g is h
    keys = ("irreps_scalars", "act_scalars", "irreps_gates", "act_gates", "normalize_act")
    return all(getattr(g, k) == getattr(h, k) for k in keys) and (
        g.irreps_gated.simplify() == h.irreps_gated.simplify())


def same_block(a, b) -> bool:
    """Two steerable blocks that compute the same map with the same params layout: equal specs,
    except that a gate's output irreps may merge equal neighbouring gated blocks (the
    published graph read-out gates ``(out * n).simplify().sort()``, unmerged after the sort,
    while e3nn's Gate reports its gated irreps merged)."""
    if isinstance(a, O3TensorProductGate) and isinstance(b, O3TensorProductGate):
        return (a.tp == b.tp and a.act_constants == b.act_constants
                and a.irreps_out[0] == b.irreps_out[0] and _same_gate(a.gate, b.gate))
    return type(a) is type(b) and a == b


def _gate_out(gate, tp_out, name: str):
    """The gated block's output irreps: the product's (plain SiLU) or e3nn's Gate's."""
    from .e3nn import _is_gate

    if type(gate).__name__ == "SiLU":
        return tp_out
    if not _is_gate(gate):
        raise ValueError(
            f"{name}.gate must be e3nn's Gate (SiLU scalars, sigmoid gates) or torch.nn.SiLU; "
            f"got {type(gate).__name__}"
        )
    return read_irreps(gate.irreps_out, f"{name}.gate.irreps_out")


def _check_gate(module, spec, name: str) -> None:
    gate = module.gate
    if spec.gate is None:
        if type(gate).__name__ != "SiLU":
            raise ValueError(
                f"{name}.gate must be torch.nn.SiLU when there are no gated irreps (the "
                f"published layer); got {type(gate).__name__}"
            )
        return
    from .e3nn import gate_from_e3nn

    try:
        ours, _ = gate_from_e3nn(gate)
    except ValueError as exc:
        raise ValueError(f"{name}.gate: {exc}") from None
    if not _same_gate(ours, spec.gate):
        raise ValueError(
            f"{name}.gate is {ours}, but the published swish gate of these irreps is "
            f"{spec.gate} (SiLU on the first block, one sigmoid 0e gate per gated irrep)"
        )


def _check_product(module, otp, name: str, notes: list) -> None:
    """The e3nn product's paths and constants, the rescaling buffer and the bias columns."""
    tp = module.tp
    ours = otp.tp
    peer_ins = [(i.i_in1, i.i_in2, i.i_out, i.connection_mode, bool(i.has_weight))
                for i in tp.instructions]
    our_ins = [(i.i_in1, i.i_in2, i.i_out, i.connection_mode, bool(i.has_weight))
               for i in ours.instructions]
    coeff = [float(i.path_weight) for i in tp.instructions]
    if peer_ins != our_ins or not np.allclose(coeff, ours.path_coefficients, rtol=1e-12,
                                              atol=0):
        raise ValueError(
            f"{name}.tp: its paths or path constants differ from e3nn's "
            "FullyConnectedTensorProduct(irreps_in1, irreps_in2, irreps_out, "
            "normalization='component') that the published layer builds"
        )
    if int(tp.weight.numel()) != ours.weight_numel:
        raise ValueError(f"{name}.tp.weight has {tp.weight.numel()} entries, the product "
                         f"{ours.weight_numel}")
    # the rescaling: F_o^(-1/2) per output block, from the paths
    fan = {}
    for ins in ours.instructions:
        fan[ins.i_out] = fan.get(ins.i_out, 0) + ins.path_shape[0] * ins.path_shape[1]
    want = np.zeros(otp.irreps_out.dim)
    for k, sl in enumerate(otp.irreps_out.slices()):
        want[sl] = 1.0 / math.sqrt(fan[k])
    got = np64(module.sqrt_k_correction)
    if got.shape != want.shape or _rel(got, want) > 1e-6:
        raise ValueError(f"{name}.sqrt_k_correction is not 1/sqrt(fan_in) per output block")
    if _rel(got, want) > 1e-15 and _FLOAT32_NOTE not in notes:
        notes.append(_FLOAT32_NOTE)
    # biases on every l = 0 block, in block order
    cols = [np.arange(sl.start, sl.stop) for (_, ir), sl in
            zip(otp.irreps_out, otp.irreps_out.slices()) if ir.l == 0]
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    if module.biases is None:
        if cols.size:
            raise ValueError(f"{name}.biases is None, but the published layer biases every "
                             "l = 0 output block")
    elif not np.array_equal(np64(module.bias_idx).astype(np.int64), cols):
        raise ValueError(f"{name}.bias_idx is not the columns of the l = 0 output blocks")


def tp_convert(module, name: str = "O3TensorProduct", prefix: str = "", path: tuple = (),
               in2=None):
    """``(spec, links, notes)`` of an ``O3TensorProduct`` or ``O3TensorProductSwishGate``.

    ``in2=True`` forces a second input (a module built without one, called with one anyway).
    """
    if getattr(module, "tp_rescale", True) is not True:
        raise ValueError(
            f"{name}.tp_rescale={module.tp_rescale!r} is not supported: the oracle's "
            "O3TensorProduct always multiplies e3nn's path constants back by sqrt(fan_in)"
        )
    in1 = read_irreps(module.irreps_in1, f"{name}.irreps_in1")
    tp_out = read_irreps(module.irreps_out, f"{name}.irreps_out")
    provided = bool(getattr(module, "irreps_in2_provided", True)) or bool(in2)
    irreps_in2 = read_irreps(module.irreps_in2, f"{name}.irreps_in2") if provided else None
    if any(ir.l >= 10 for _, ir in tp_out):
        raise ValueError(
            f"{name}.irreps_out={tp_out}: degrees l >= 10 are not supported (the published "
            "layer reads l from one character of the irreps string)"
        )
    gated = hasattr(module, "gate")
    if gated:
        out = _gate_out(module.gate, tp_out, name)
        spec = built(lambda: O3TensorProductGate(in1, out, irreps_in2, mode="reference"), name)
        if spec.tp.irreps_out != tp_out:
            raise ValueError(
                f"{name}: its product writes {tp_out}, but the swish gate of {out} reads "
                f"{spec.tp.irreps_out} (scalars, one 0e gate per gated irrep, gated irreps)"
            )
        _check_gate(module, spec, name)
        otp = spec.tp
    else:
        spec = built(lambda: O3TensorProduct(in1, tp_out, irreps_in2, mode="reference"), name)
        otp = spec
    notes: list = []
    _check_product(module, otp, name, notes)
    links = [ParamLink(f"{prefix}tp.weight", tuple(path) + ("weight",))]
    if module.biases is not None:
        links.append(ParamLink(f"{prefix}biases", tuple(path) + ("bias",)))
    return spec, links, notes


# --- InstanceNorm --------------------------------------------------------------------------------


def norm_convert(module, name: str = "InstanceNorm", prefix: str = "", path: tuple = ()):
    """``(spec, links, notes)`` of the published ``InstanceNorm`` (``reduce='mean'`` only)."""
    if module.reduce != "mean":
        raise ValueError(
            f"{name}.reduce={module.reduce!r} is not supported (the oracle's InstanceNorm "
            "averages the squared norms per graph: reduce='mean')"
        )
    irreps = read_irreps(module.irreps, f"{name}.irreps")
    spec = built(lambda: InstanceNorm(irreps, eps=float(module.eps), affine=bool(module.affine),
                                       normalization=module.normalization, mode="reference"),
                  name)
    links = []
    if spec.affine:
        links = [ParamLink(f"{prefix}weight", tuple(path) + ("weight",)),
                 ParamLink(f"{prefix}bias", tuple(path) + ("bias",))]
    return spec, links, []
