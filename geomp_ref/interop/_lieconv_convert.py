r"""The weights and options of mfinzi/LieConv's ``LieConv`` and ``PointConv`` layers.

Both layers (``lie_conv/lieConv.py``) hold

* ``weightnet``: LieConv's ``WeightNet``, a ``Sequential`` of ``Pass(Linear)``, a batch norm
  slot (an empty ``Sequential`` when ``bn=False``) and ``Pass(activation)``, three times; the
  activation follows every linear layer, the last one included. ``Pass`` applies its module to
  the values of the triple it receives. Here it becomes an
  :class:`~geomp_ref.layers.kernels.MLPKernel` with ``activate_last=True``; ``W_k`` is the
  transposed weight of the k-th ``Linear``.
* ``linear``: the contraction of the K kernel channels with the C input channels. LieConv
  flattens the (C, K) product channel-major, column :math:`cK + k`; our
  :class:`~geomp_ref.layers.lieconv.LieConv` flattens kernel-major, row :math:`kC + c` of ``W``.
  So ``W = weight.T`` with its rows regrouped from (C, K) to (K, C).
* ``mean``: divide the whole output, bias included, by the number of neighbours: our
  ``aggr="lieconv_mean"`` (``"sum"`` when False).

Options refused with a ValueError naming them: a batch norm inside ``weightnet`` (``bn=True``:
its statistics depend on which neighbourhood slots the random sampling filled),
``subsample.ds_frac`` below 1 (farthest-point subsampling starts from a random point), an
activation other than swish (:math:`x\sigma(x)`, LieConv's ``Swish``, tested on sample values)
or ReLU, and any other module inside ``weightnet``. The neighbourhood options (``mc_samples``,
``knn``, the radius ``r``, training mode) concern the call: :mod:`._lieconv_graph`.
"""

from __future__ import annotations

import numpy as np

from ..layers.kernels import MLPKernel
from ..layers.lieconv import LieConv
from ._binding import ParamLink, transpose
from ._lieconv_block import LieConvTriple
from ._torch import class_names, import_torch

__all__ = ["convert", "lieconv_matches", "pointconv_matches", "weightnet_layers"]


def _common(module) -> bool:
    lin = getattr(module, "linear", None)
    return (
        hasattr(module, "weightnet")
        and hasattr(lin, "in_features")
        and hasattr(module, "mc_samples")
        and hasattr(module, "subsample")
    )


def lieconv_matches(module) -> bool:
    """mfinzi/LieConv's ``LieConv``: class name plus ``weightnet``, ``linear``, ``group`` with a
    ``distance``, the radius buffer ``r`` and ``knn``."""
    return (
        "LieConv" in class_names(module)
        and _common(module)
        and callable(getattr(getattr(module, "group", None), "distance", None))
        and hasattr(module, "r")
        and hasattr(module, "knn")
    )


def pointconv_matches(module) -> bool:
    """mfinzi/LieConv's ``PointConv`` (not a ``LieConv``, which subclasses it)."""
    return (
        "PointConv" in class_names(module)
        and "LieConv" not in class_names(module)
        and _common(module)
        and hasattr(module, "knn_channels")
    )


# --- WeightNet ----------------------------------------------------------------------------------


def _flat(seq, prefix: str):
    """``(name, module)`` of the leaves of nested ``Sequential`` containers, in order (an empty
    ``Sequential``, LieConv's batch norm slot with ``bn=False``, yields nothing)."""
    for name, child in seq.named_children():
        full = f"{prefix}.{name}"
        if type(child).__name__ == "Sequential":
            yield from _flat(child, full)
        else:
            yield full, child


def _activation(mod, where: str) -> str:
    names = class_names(mod)
    if "ReLU" in names:
        return "relu"
    if "SiLU" in names:
        return "silu"
    # LieConv's Swish() is an Expression around a lambda: recognise it by what it computes
    torch = import_torch()
    x = torch.linspace(-9.0, 9.0, 181, dtype=torch.float64)
    try:
        with torch.no_grad():
            y = mod(x)
    except Exception:  # noqa: BLE001 - any failure means "not an elementwise activation"
        y = None
    if isinstance(y, torch.Tensor) and y.shape == x.shape:
        want = x * torch.sigmoid(x)
        if float((y - want).abs().max()) <= 4 * np.finfo(np.float64).eps * float(want.abs().max()):
            return "silu"
    raise ValueError(
        f"{where} ({type(mod).__name__}) is neither swish (x * sigmoid(x), LieConv's Swish) nor "
        "ReLU: the oracle's kernel supports those two activations of LieConv's WeightNet"
    )


def weightnet_layers(module, name: str) -> dict:
    """Read ``module.weightnet``.

    Returns
    -------
    dict
        ``linears``: ``[(peer name, Linear)]``; ``taps``: ``[(peer name, what, k)]`` in forward
        order, ``what`` being ``"z"`` (output of linear layer k) or ``"h"`` (its activation);
        ``activation``; ``activate_last``.
    """
    linears, taps, acts, last = [], [], [], None
    for full, child in _flat(module.weightnet, "weightnet"):
        inner = getattr(child, "module", None)
        if "Pass" not in class_names(child) or inner is None:
            kind = "a batch norm" if "Norm" in type(child).__name__ else type(child).__name__
            option = f"{name}.bn=True" if "Norm" in type(child).__name__ else f"{name}.{full}"
            raise ValueError(
                f"{option}: {full} is {kind}; the oracle expresses LieConv's WeightNet without "
                "batch norm (Pass(Linear), Pass(activation) only). Batch norm inside the "
                "kernel network averages over the sampled neighbourhood slots; build the layer "
                "with bn=False"
            )
        if getattr(child, "dim", 1) != 1:
            raise ValueError(f"{name}.{full}.dim={child.dim}: WeightNet must act on the values")
        if hasattr(inner, "in_features") and hasattr(inner, "weight"):
            if last == "linear":
                raise ValueError(f"{name}.{full}: two linear layers without an activation between")
            taps.append((full, "z", len(linears)))
            linears.append((f"{full}.module", inner))
            last = "linear"
        else:
            act = _activation(inner, f"{name}.{full}")
            if last != "linear":
                raise ValueError(f"{name}.{full}: an activation that follows no linear layer")
            acts.append(act)
            taps.append((full, "h", len(linears) - 1))
            last = "act"
    if not linears:
        raise ValueError(f"{name}.weightnet holds no linear layer")
    if len(set(acts)) > 1:
        raise ValueError(f"{name}.weightnet mixes activations {sorted(set(acts))}")
    biases = {lin.bias is not None for _, lin in linears}
    if len(biases) > 1:
        raise ValueError(f"{name}.weightnet: some linear layers have a bias and some do not")
    return {
        "linears": linears,
        "taps": taps,
        "activation": acts[0] if acts else "silu",
        "activate_last": last == "act",
        "bias": biases == {True},
    }


# --- the layer ----------------------------------------------------------------------------------


def _nominal_group(module) -> str:
    """Our LieConv's ``group`` field: with given pairs it names only where they came from."""
    group = getattr(module, "group", None)
    names = class_names(group) if group is not None else set()
    two_d = names & {"SE2", "SO2", "RxSO2"} or getattr(group, "rep_dim", None) == 2
    return "SE2" if two_d else "SE3"


def _contraction(C: int, K: int, co: int):
    """``(to_ours, to_peer)`` for ``linear.weight`` (co, C K), column c K + k -> our W
    (K C, co), row k C + c; the second map is the adjoint (a transpose of the regrouping)."""

    def to_ours(w):
        return np.swapaxes(w, 0, 1).reshape(C, K, co).transpose(1, 0, 2).reshape(K * C, co)

    def to_peer(g):
        return np.swapaxes(g.reshape(K, C, co).transpose(1, 0, 2).reshape(C * K, co), 0, 1)

    return to_ours, to_peer


def convert(module, name: str | None = None):
    """``(spec, links, info)`` for a LieConv or PointConv layer (links by peer parameter name).

    ``info`` holds ``taps`` (the WeightNet taps of :func:`weightnet_layers`) and ``kind``
    (``"LieConv"`` or ``"PointConv"``).
    """
    kind = "LieConv" if lieconv_matches(module) else "PointConv"
    name = name or kind
    ds = getattr(module.subsample, "ds_frac", 1)
    if ds != 1:
        raise ValueError(
            f"{name}.ds_frac={ds}: farthest-point subsampling starts from a random point, so the "
            "query points are random; the comparison is exact only with ds_frac=1"
        )
    net = weightnet_layers(module, name)
    linears = net["linears"]
    K = int(linears[-1][1].out_features)
    lin = module.linear
    co, width = int(lin.out_features), int(lin.in_features)
    if width % K:
        raise ValueError(
            f"{name}.linear.in_features={width} is not a multiple of the kernel width {K}"
        )
    C = width // K
    chin = getattr(module, "chin", C)
    if int(chin) != C:
        raise ValueError(f"{name}.chin={chin} but linear reads {C} channels x {K} kernel values")
    kernel = MLPKernel(
        int(linears[0][1].in_features),
        K,
        tuple(int(m.out_features) for _, m in linears[:-1]),
        net["activation"],
        net["activate_last"],
        net["bias"],
    )
    aggr = "lieconv_mean" if bool(module.mean) else "sum"
    conv = LieConv(
        _nominal_group(module), C, co, aggr=aggr, kernel=kernel, kernel_input="given"
    )
    spec = LieConvTriple(conv, "pairs" if kind == "LieConv" else "positions")
    links = []
    for k, (peer, m) in enumerate(linears):
        links.append(ParamLink(f"{peer}.weight", ("conv", "kernel", f"W{k}"), None, transpose,
                               transpose))
        if m.bias is not None:
            links.append(ParamLink(f"{peer}.bias", ("conv", "kernel", f"b{k}")))
    to_ours, to_peer = _contraction(C, K, co)
    links.append(ParamLink("linear.weight", ("conv", "W"), None, to_ours, to_peer))
    if lin.bias is not None:
        links.append(ParamLink("linear.bias", ("conv", "b")))
    return spec, links, {"taps": net["taps"], "kind": kind}
