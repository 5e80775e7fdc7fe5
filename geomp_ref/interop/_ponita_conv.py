r"""PONITA's ``Conv`` and ``FiberBundleConv`` (ebekkers/ponita, ``ponita/nn/conv.py``).

**FiberBundleConv** -> :class:`~geomp_ref.layers.position_orientation.PositionOrientationConv`
with ``basis_dim`` = the kernels' input width, ``num_ori`` = the grid size of the call's ``x``
(N, O, C), ``separable`` as the module, ``mixing="depthwise"`` (``groups = C``) or ``"full"``
(``groups = 1``) and ``bias`` as the module. The forward takes PONITA's precomputed bases as they
are: ``edge_attr`` (E, O, B) and ``fiber_attr`` (O, O, B) when separable, ``edge_attr``
(E, O, O, B) otherwise (PONITA ignores ``fiber_attr`` there; so do we). ``kernel.weight`` and
``fiber_kernel.weight`` (K, B) are our ``W0`` (B, K) transposed; a (C_out, C_in) kernel of the full
mixing is torch's row-major ``unflatten``, which is our layout.

**Conv** -> :class:`~geomp_ref.layers.basis_conv.BasisConv`: ``x`` (N, C) and ``edge_attr``
(E, B).

Both sum messages from ``edge_index[0]`` (sender) at ``edge_index[1]`` (receiver); PyG's
``flow="target_to_source"`` runs on the reversed edge list. Refused with a ValueError naming the
option: ``aggr`` other than ``"add"``; ``groups`` other than 1 or ``in_channels = out_channels``
(the published constructor sets no ``depthwise`` flag there); ``groups = 1`` on a module without
integer ``in_channels``/``out_channels`` attributes (the published forward fails there: it reads
them, the constructor never sets them); and a call in training mode while ``callibrated`` is
False: that call rescales the kernel weights after computing its output (PONITA's calibration),
which no fixed spec reproduces together with its gradients. Compare in eval mode, or after one
training call; ``calibration_scales(cache)`` of our layer gives the factors that call applies.
"""

from __future__ import annotations

import numpy as np

from .. import make_graph
from ..layers.basis_conv import BasisConv
from ..layers.kernels import MLPKernel
from ..layers.position_orientation import PositionOrientationConv
from ._binding import Binding, InputLink, ParamLink, Tap, transpose
from ._torch import bind_call, class_names, np64, params_from_links

__all__ = [
    "check_calibration",
    "conv_binding",
    "conv_convert",
    "conv_matches",
    "fiber_bundle_binding",
    "fiber_bundle_convert",
    "fiber_bundle_matches",
]


def _linear_like(m) -> bool:
    return hasattr(m, "weight") and hasattr(m, "in_features") and hasattr(m, "out_features")


def fiber_bundle_matches(module) -> bool:
    return (
        "FiberBundleConv" in class_names(module)
        and _linear_like(getattr(module, "kernel", None))
        and hasattr(module, "separable")
        and callable(getattr(module, "propagate", None))
    )


def conv_matches(module) -> bool:
    return (
        "Conv" in class_names(module)
        and _linear_like(getattr(module, "kernel", None))
        and not hasattr(module, "separable")
        and callable(getattr(module, "propagate", None))
    )


def _kernel_links(lin, peer: str, path: tuple) -> tuple:
    """``(kernel spec or None, links)`` for a torch Linear used as a basis -> kernel map."""
    links = [ParamLink(f"{peer}.weight", path + ("W0",), None, transpose, transpose)]
    if getattr(lin, "bias", None) is None:
        return None, links  # the layers' default kernel: Linear(B, K, bias=False)
    links.append(ParamLink(f"{peer}.bias", path + ("b0",)))
    return MLPKernel(int(lin.in_features), int(lin.out_features), hidden=(), bias=True), links


def _message_passing(module, name: str, node_dims: tuple) -> None:
    aggr = module.aggr if isinstance(module.aggr, str) else type(module.aggr).__name__
    if aggr not in ("add", "sum"):
        raise ValueError(
            f"{name}.aggr={aggr!r} is not supported: the oracle's layers sum the messages "
            "(PONITA's default aggr='add')"
        )
    if getattr(module, "node_dim", 0) not in node_dims:
        raise ValueError(f"{name}.node_dim={module.node_dim} is not supported (PONITA uses 0)")
    if getattr(module, "flow", "source_to_target") not in ("source_to_target", "target_to_source"):
        raise ValueError(f"{name}.flow={module.flow!r} is not supported")


def _mixing(module, name: str, fiber_out: int) -> tuple:
    """``(mixing, C_in, C_out)`` from PONITA's ``groups`` bookkeeping."""
    depthwise = getattr(module, "depthwise", None)
    if depthwise is None:
        raise ValueError(
            f"{name}.groups: only groups=1 or groups=in_channels=out_channels (depthwise) are "
            f"defined; this {name} has no 'depthwise' flag (the published constructor sets none "
            "for any other groups)"
        )
    c_in, c_out = getattr(module, "in_channels", None), getattr(module, "out_channels", None)
    ok = all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in (c_in, c_out))
    if not ok:
        raise ValueError(
            f"{name}.groups=1 (full channel mixing): the published module never sets "
            "in_channels/out_channels, which its forward reads, so it fails; give the module "
            "integer in_channels and out_channels attributes to compare its evident intent"
        )
    c_in, c_out = int(c_in), int(c_out)
    want = c_in if depthwise else c_in * c_out
    if int(fiber_out) != want:
        raise ValueError(
            f"{name}: the channel-mixing kernel has {fiber_out} outputs, not "
            f"{'in_channels' if depthwise else 'in_channels * out_channels'} = {want}"
        )
    return ("depthwise" if depthwise else "full"), c_in, c_out


def _bias_link(module, name: str, c_out: int, links: list) -> bool:
    b = getattr(module, "bias", None)
    if b is None:
        return False
    if tuple(b.shape) != (c_out,):
        raise ValueError(f"{name}.bias has shape {tuple(b.shape)}, not (out_channels,)")
    links.append(ParamLink("bias", ("b",)))
    return True


def check_calibration(module, name: str) -> None:
    """Refuse a call that would run PONITA's one-off calibration (training and not callibrated)."""
    flag = getattr(module, "callibrated", None)
    if flag is None or not module.training or bool(flag):
        return
    raise ValueError(
        f"{name}.callibrated=False in training mode: this call would rescale kernel.weight"
        + (" and fiber_kernel.weight" if getattr(module, "separable", False) else "")
        + " after computing its output (PONITA's calibration), so its weights and gradients "
        "are no fixed function; call module.eval() or run one training forward first "
        "(our layer's calibration_scales(cache) gives the factors that call applies)"
    )


# --- FiberBundleConv ----------------------------------------------------------------------------


def fiber_bundle_convert(module, num_ori=None, name: str = "FiberBundleConv"):
    """``(spec, links, notes)``; ``num_ori`` is the grid size O (the module does not store it)."""
    if num_ori is None:
        raise ValueError(
            "num_ori: FiberBundleConv does not store its grid size; pass "
            "from_torch(conv, num_ori=O), or let compare / inputs_from_torch read it from x"
        )
    _message_passing(module, name, (0,))
    separable = bool(module.separable)
    kernel, links = _kernel_links(module.kernel, "kernel", ("kernel",))
    B = int(module.kernel.in_features)
    fiber_kernel = None
    if separable:
        fk = getattr(module, "fiber_kernel", None)
        if not _linear_like(fk):
            raise ValueError(f"{name}.separable=True but the module has no fiber_kernel Linear")
        if int(fk.in_features) != B:
            raise ValueError(
                f"{name}.fiber_kernel.in_features={fk.in_features} differs from "
                f"kernel.in_features={B}: the oracle's layer takes bases of one width"
            )
        fiber_kernel, more = _kernel_links(fk, "fiber_kernel", ("fiber_kernel",))
        links += more
        mixing, c_in, c_out = _mixing(module, name, fk.out_features)
        if int(module.kernel.out_features) != c_in:
            raise ValueError(f"{name}.kernel has {module.kernel.out_features} outputs, not {c_in}")
    else:
        mixing, c_in, c_out = _mixing(module, name, module.kernel.out_features)
    bias = _bias_link(module, name, c_out, links)
    spec = PositionOrientationConv(
        c_in, c_out, num_ori=int(num_ori), basis_dim=B, separable=separable, mixing=mixing,
        bias=bias, kernel=kernel, fiber_kernel=fiber_kernel,
    )
    return spec, links, []


def _edges(module, edge_index, name: str) -> np.ndarray:
    if not hasattr(edge_index, "dim") or edge_index.is_sparse or edge_index.dim() != 2:
        raise ValueError(f"{name}: edge_index must be a dense (2, E) tensor")
    if edge_index.shape[0] != 2 or edge_index.is_floating_point():
        raise ValueError(f"{name}: edge_index must be an integer tensor of shape (2, E)")
    ei = np64(edge_index).astype(np.int64)
    if getattr(module, "flow", "source_to_target") == "target_to_source":
        ei = ei[::-1].copy()
    return ei


def _tensor(call: dict, key: str, ndim: int, name: str, shape: str):
    t = call.get(key)
    if t is None or not hasattr(t, "dim") or t.dim() != ndim:
        got = "None" if t is None else f"shape {tuple(getattr(t, 'shape', ()))}"
        raise ValueError(f"{name}: {key} must be a tensor of shape {shape}; got {got}")
    return t


def fiber_bundle_binding(module, *args, **kwargs):
    name = "FiberBundleConv"
    call = bind_call(module, args, kwargs)
    x = _tensor(call, "x", 3, name, "(N, num_ori, in_channels)")
    spec, links, notes = fiber_bundle_convert(module, int(x.shape[1]))
    params = params_from_links(spec, module, links)
    graph = make_graph(_edges(module, call["edge_index"], name), int(x.shape[0]))
    links_in = [InputLink("x", lambda c: c["x"], 0)]
    if spec.separable:
        ea = _tensor(call, "edge_attr", 3, name, "(E, num_ori, basis_dim)")
        fa = _tensor(call, "fiber_attr", 3, name, "(num_ori, num_ori, basis_dim) (separable)")
        inputs = (np64(x), None, None, np64(ea), np64(fa))
        links_in += [
            InputLink("edge_attr", lambda c: c["edge_attr"], 3),
            InputLink("fiber_attr", lambda c: c["fiber_attr"], 4),
        ]
        taps = [
            Tap("kernel", lambda cache: cache.kappa),
            Tap("fiber_kernel", lambda cache: cache.fiber.kappa_f),
        ]
    else:
        ea = _tensor(call, "edge_attr", 4, name, "(E, num_ori, num_ori, basis_dim)")
        inputs = (np64(x), None, None, np64(ea), None)
        links_in.append(InputLink("edge_attr", lambda c: c["edge_attr"], 3))
        taps = [Tap("kernel", lambda cache: cache.kappa)]
        if call.get("fiber_attr") is not None:
            notes.append("separable=False: fiber_attr is unused (by PONITA and by the oracle)")
    return Binding(spec, params, graph, inputs, links, links_in, lambda r: r, taps, notes)


# --- Conv ---------------------------------------------------------------------------------------


def conv_convert(module, name: str = "Conv"):
    _message_passing(module, name, (0, -2))
    kernel, links = _kernel_links(module.kernel, "kernel", ("kernel",))
    mixing, c_in, c_out = _mixing(module, name, module.kernel.out_features)
    bias = _bias_link(module, name, c_out, links)
    spec = BasisConv(
        c_in, c_out, int(module.kernel.in_features), mixing=mixing, bias=bias, kernel=kernel
    )
    return spec, links, []


def conv_binding(module, *args, **kwargs):
    name = "Conv"
    call = bind_call(module, args, kwargs)
    x = _tensor(call, "x", 2, name, "(N, in_channels)")
    ea = _tensor(call, "edge_attr", 2, name, "(E, basis_dim)")
    spec, links, notes = conv_convert(module)
    params = params_from_links(spec, module, links)
    graph = make_graph(_edges(module, call["edge_index"], name), int(x.shape[0]))
    links_in = [
        InputLink("x", lambda c: c["x"], 0),
        InputLink("edge_attr", lambda c: c["edge_attr"], 1),
    ]
    taps = [Tap("kernel", lambda cache: cache.kappa)]
    inputs = (np64(x), np64(ea))
    return Binding(spec, params, graph, inputs, links, links_in, lambda r: r, taps, notes)
