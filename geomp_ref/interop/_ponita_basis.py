r"""PONITA's kernel-basis modules: ``PolynomialFeatures``, ``PolynomialCutoff``, the basis network
``Sequential(PolynomialFeatures, Linear, GELU, Linear, GELU)``, and the shared basis of a model.

* ``PolynomialFeatures`` -> :class:`~geomp_ref.interop._ponita_blocks.PolynomialFeaturesMap`
  (a ``degree`` below 1 computes what degree 1 computes: PONITA's loop then adds no power).
* ``PolynomialCutoff`` -> :class:`~geomp_ref.interop._ponita_blocks.PolynomialWindow`, with the
  module's own ``r_max`` and ``p`` buffers (read as stored: a buffer created in float32 keeps its
  float32-rounded value); ``r_max=None`` is the constant window 1.
* The basis network -> :class:`~geomp_ref.interop._ponita_blocks.KernelBasisNet`: a
  ``Sequential`` that starts with ``PolynomialFeatures`` and continues with ``Linear`` layers, each
  followed by one activation of a single kind (GELU as PONITA; ReLU, SiLU, Tanh, Sigmoid also map),
  the last one optional. PONITA passes *one* GELU instance twice, so ``named_modules()`` lists
  it once (as ``"2"``) and it runs twice: the taps are ``0``, ``1``, ``2`` (call 1), ``3``,
  ``2`` (call 2). A ``LazyLinear`` that has not run yet is refused (its weights do not exist).
* :func:`basis_from_torch` builds
  :class:`~geomp_ref.layers.position_orientation_basis.PositionOrientationBasis` from a module
  holding ``basis_fn``, ``fiber_basis_fn`` and ``windowing_fn`` (PONITA's model): the block that
  computes ``basis_fn(attr) * windowing_fn(dists)[..., None]`` and ``fiber_basis_fn(fiber_attr)``
  from positions and the orientation grid, once per forward, for every layer.
"""

from __future__ import annotations

import numpy as np

from ..layers.position_orientation_basis import PositionOrientationBasis
from ..layers.position_orientation_ops import polynomial_features_size
from ._binding import Binding, InputLink, Tap, linear_links
from ._ponita_blocks import KernelBasisNet, PolynomialFeaturesMap, PolynomialWindow
from ._torch import bind_call, class_names, np64, params_from_links

__all__ = [
    "basis_from_torch",
    "cutoff_binding",
    "cutoff_convert",
    "cutoff_matches",
    "features_binding",
    "features_convert",
    "features_matches",
    "net_binding",
    "net_convert",
    "net_matches",
]

_ACTIVATIONS = {"GELU": "gelu", "ReLU": "relu", "SiLU": "silu", "Tanh": "tanh",
                "Sigmoid": "sigmoid"}


def _degree(module, name: str) -> int:
    d = getattr(module, "degree", None)
    if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
        raise ValueError(f"{name}.degree must be an int; got {d!r}")
    return max(int(d), 1)


def _one_input(module, args, kwargs, name: str):
    call = bind_call(module, args, kwargs)
    if len(call) != 1:
        raise ValueError(f"{name}.forward must take one tensor")
    (key,) = call
    t = call[key]
    if not hasattr(t, "dim") or not t.is_floating_point():
        raise ValueError(f"{name}: {key} must be a floating tensor")
    return key, t


# --- PolynomialFeatures -------------------------------------------------------------------------


def features_matches(module) -> bool:
    return "PolynomialFeatures" in class_names(module) and hasattr(module, "degree")


def features_convert(module, name: str = "PolynomialFeatures"):
    return PolynomialFeaturesMap(_degree(module, name)), [], []


def features_binding(module, *args, **kwargs):
    key, z = _one_input(module, args, kwargs, "PolynomialFeatures")
    spec, links, notes = features_convert(module)
    links_in = [InputLink(key, lambda c: c[key], 0)]
    return Binding(spec, {}, None, (np64(z),), links, links_in, lambda r: r, [], notes)


# --- PolynomialCutoff ---------------------------------------------------------------------------


def cutoff_matches(module) -> bool:
    return "PolynomialCutoff" in class_names(module) and hasattr(module, "r_max")


def cutoff_convert(module, name: str = "PolynomialCutoff"):
    """``(PolynomialWindow, [], notes)`` with the module's ``r_max`` and ``p``."""
    if module.r_max is None:
        return PolynomialWindow(None), [], [f"{name}.r_max=None: the window is 1 everywhere"]
    radius = float(np64(module.r_max))
    p = float(np64(module.p))
    if p != round(p) or p < 1:
        raise ValueError(f"{name}.p={p:g} is not supported: the oracle's window needs an int >= 1")
    if not radius > 0:
        raise ValueError(f"{name}.r_max={radius:g} is not supported: it must be positive")
    return PolynomialWindow(radius, int(p)), [], []


def cutoff_binding(module, *args, **kwargs):
    key, x = _one_input(module, args, kwargs, "PolynomialCutoff")
    spec, links, notes = cutoff_convert(module)
    links_in = [InputLink(key, lambda c: c[key], 0)]
    return Binding(spec, {}, None, (np64(x),), links, links_in, lambda r: r, [], notes)


# --- the basis network --------------------------------------------------------------------------


def _net_layout(module):
    """``(children, linear positions, activation name or None, activate_last)``, or None."""
    # iterate like Sequential.forward: children() would list PONITA's shared GELU only once
    children = list(module) if "Sequential" in class_names(module) else []
    if len(children) < 2 or not features_matches(children[0]):
        return None
    linears, acts = [], set()
    expect_linear = True
    for k, child in enumerate(children[1:], start=1):
        kind = type(child).__name__
        if expect_linear:
            if kind not in ("Linear", "LazyLinear"):
                return None
            linears.append(k)
        else:
            if kind not in _ACTIVATIONS:
                return None
            acts.add(kind)
        expect_linear = not expect_linear
    if len(acts) > 1:
        return None
    return children, linears, (acts.pop() if acts else None), expect_linear


def net_matches(module) -> bool:
    return _net_layout(module) is not None


def net_convert(module, in_dim=None, name: str = "Sequential", prefix: str = "", path=("kernel",)):
    """``(KernelBasisNet, links, notes)``; ``in_dim`` (the number of invariants) is read from the
    first Linear's width when not given."""
    layout = _net_layout(module)
    if layout is None:
        raise TypeError(f"{name} is not a PolynomialFeatures -> (Linear, activation)+ Sequential")
    children, linears, act, activate_last = layout
    degree = _degree(children[0], f"{name}.0")
    for k in linears:
        if type(children[k]).__name__ == "LazyLinear":
            raise ValueError(
                f"{name}.{k} is a LazyLinear that has not run yet (its weights do not exist): "
                "run one forward first"
            )
    if act == "GELU":
        for k, child in enumerate(children):
            if type(child).__name__ == "GELU" and getattr(child, "approximate", "none") != "none":
                raise ValueError(
                    f"{name}.{k}.approximate={child.approximate!r} is not supported: the "
                    "oracle's GELU is the exact (erf) one"
                )
    first = children[linears[0]]
    n_feats = int(first.in_features)
    if in_dim is None:
        in_dim = next((n for n in range(1, n_feats + 1)
                       if polynomial_features_size(n, degree) == n_feats), None)
        if in_dim is None:
            raise ValueError(
                f"{name}.{linears[0]}.in_features={n_feats} is no polynomial feature count of "
                f"degree {degree}"
            )
    elif polynomial_features_size(int(in_dim), degree) != n_feats:
        raise ValueError(
            f"{name}.{linears[0]}.in_features={n_feats}, but {in_dim} invariants at degree "
            f"{degree} give {polynomial_features_size(int(in_dim), degree)} features"
        )
    widths = [int(children[k].out_features) for k in linears]
    for j in range(1, len(linears)):
        if int(children[linears[j]].in_features) != widths[j - 1]:
            raise ValueError(f"{name}.{linears[j]}.in_features does not match the layer before")
    has_bias = [getattr(children[k], "bias", None) is not None for k in linears]
    spec = KernelBasisNet(
        int(in_dim), degree, tuple(widths[:-1]), widths[-1],
        activation=_ACTIVATIONS[act] if act else "identity",
        activate_last=bool(activate_last and act), bias=any(has_bias),
    )
    links, notes = [], []
    for j, k in enumerate(linears):
        bias = path + (f"b{j}",) if has_bias[j] else None
        links += linear_links(f"{prefix}{k}", path + (f"W{j}",), bias)
    if any(has_bias) and not all(has_bias):
        notes.append(f"{name}: the bias of the Linear layers without one is held at zero")
    return spec, links, notes


def _net_taps(module, lead: tuple) -> list:
    """Taps on every child, in run order; a child instance that runs twice gets two calls."""
    children, linears, act, activate_last = _net_layout(module)
    name_of = {id(m): n for n, m in module.named_modules()}
    calls: dict = {}
    taps = []

    def tap(child, fn):
        key = id(child)
        taps.append(Tap(name_of[key], fn, call=calls.get(key, 0)))
        calls[key] = calls.get(key, 0) + 1

    def shaped(get):
        return lambda cache: (lambda a: a.reshape(lead + a.shape[-1:]))(get(cache))

    tap(children[0], shaped(lambda c: c.kernel.net.h[0]))
    n = len(linears)
    for j, k in enumerate(linears):
        tap(children[k], shaped(lambda c, j=j: c.kernel.net.z[j]))
        if k + 1 < len(children):
            last = j == n - 1
            tap(children[k + 1], shaped(
                (lambda c: c.kernel.k) if last else (lambda c, j=j: c.kernel.net.h[j + 1])
            ))
    return taps


def net_binding(module, *args, **kwargs):
    key, z = _one_input(module, args, kwargs, "Sequential")
    spec, links, notes = net_convert(module, in_dim=int(z.shape[-1]) if z.dim() else None)
    params = params_from_links(spec, module, links)
    links_in = [InputLink(key, lambda c: c[key], 0)]
    taps = _net_taps(module, tuple(z.shape[:-1]))
    return Binding(spec, params, None, (np64(z),), links, links_in, lambda r: r, taps, notes)


# --- the shared basis of a model ----------------------------------------------------------------


def basis_from_torch(model, num_ori: int, dim: int = 3):
    """``(PositionOrientationBasis, params)`` from a module holding PONITA's basis networks.

    Parameters
    ----------
    model : torch.nn.Module
        Has ``basis_fn`` (the spatial basis network of 2 invariants), and optionally
        ``fiber_basis_fn`` (of the fibre attribute; without it the basis is non-separable: the
        network takes 3 invariants) and ``windowing_fn`` (``PolynomialCutoff``).
    num_ori : int
        The grid size O.
    dim : int
        3 (R3 x S2) or 2 (R2 x S1).

    The block's ``forward(params, graph, pos, ori)`` takes the positions and PONITA's grid
    (``graph.ori_grid``) on the graph after PONITA's transform (self loops added) and returns
    ``(kernel_basis, fiber_kernel_basis)``. Raises ValueError naming what differs from the
    block: different degrees or widths in the two networks, a window ``p`` other than 6.
    """
    fiber_fn = getattr(model, "fiber_basis_fn", None)
    separable = fiber_fn is not None
    spec_k, links, notes = net_convert(
        model.basis_fn, 2 if separable else 3, "basis_fn", "basis_fn.", ("kernel",)
    )
    radius = None
    window = getattr(model, "windowing_fn", None)
    if window is not None:
        w, _, _ = cutoff_convert(window, "windowing_fn")
        if w.radius is not None and w.p != 6:
            raise ValueError(f"windowing_fn.p={w.p}: the shared-basis block's window has p = 6")
        radius = w.radius
    if separable:
        spec_f, more, _ = net_convert(fiber_fn, 1, "fiber_basis_fn", "fiber_basis_fn.",
                                      ("fiber_kernel",))
        for field in ("degree", "activation", "activate_last", "bias"):
            if getattr(spec_f, field) != getattr(spec_k, field):
                raise ValueError(
                    f"fiber_basis_fn differs from basis_fn in {field}: the shared-basis block "
                    "uses one setting for both"
                )
        if spec_f.basis_dim != spec_k.basis_dim:
            raise ValueError("fiber_basis_fn and basis_fn must end in the same basis width")
        links += more
    spec = PositionOrientationBasis(
        spec_k.basis_dim, dim=dim, grid="uniform" if dim == 2 else "fibonacci",
        num_ori=int(num_ori), degree=spec_k.degree, radius=radius,
        activation=spec_k.activation, separable=separable, kernel=spec_k.kernel,
        fiber_kernel=spec_f.kernel if separable else None,
    )
    return spec, params_from_links(spec, model, links)

