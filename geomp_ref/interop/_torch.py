"""What every torch adapter shares: the lazy torch import, tensor <-> NumPy conversion, the bound
call of a ``forward``, copies of call arguments, and params built from :class:`ParamLink` lists.

Nothing here knows a particular peer; the adapters (:mod:`geomp_ref.interop.pyg`,
:mod:`geomp_ref.interop.e3nn`, ...) and the engine (:mod:`geomp_ref.interop.compare`) build on it.
"""

from __future__ import annotations

import copy
import importlib
import inspect

import numpy as np

from ..params import tree_map

__all__ = [
    "bind_call",
    "class_names",
    "count_calls",
    "get_path",
    "import_peer",
    "import_torch",
    "iter_tensors",
    "map_tensors",
    "np64",
    "params_from_links",
]

_EXTRA = "pip install geomp-ref[peers]"


def import_peer(name: str, what: str):
    """Import the peer package ``name`` (``"torch"``, ``"torch_geometric"``, ``"e3nn.o3"``).

    Raises
    ------
    ImportError
        Naming the ``peers`` extra that installs it, and ``what`` needs it.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs {name.split('.')[0]}: install the `peers` extra ({_EXTRA})"
        ) from exc


def import_torch():
    """The torch module (ImportError naming the ``peers`` extra when it is missing)."""
    return import_peer("torch", "geomp_ref.interop")


def class_names(obj) -> set:
    """Names of the classes in ``type(obj).__mro__``: how adapters recognise a peer class without
    importing it (a vendored copy of the peer's file has the same names)."""
    return {c.__name__ for c in type(obj).__mro__}


def np64(t) -> np.ndarray:
    """A float64 NumPy copy of a tensor (or array), detached from any autograd graph."""
    if hasattr(t, "detach"):
        t = t.detach().cpu()
        if t.is_floating_point():
            t = t.double()
        return np.array(t.numpy(), copy=True)
    return np.array(t, dtype=np.float64, copy=True)


def map_tensors(obj, fn):
    """A copy of ``obj`` with every tensor ``t`` inside replaced by ``fn(t)``.

    Walks tuples, lists and dicts, and PyG ``Data``/``Batch`` objects (anything with a
    ``stores`` attribute and an ``apply`` method: copied shallowly, then its tensors replaced, so
    the original is untouched). Other objects are returned as they are.
    """
    t = import_torch()
    if isinstance(obj, t.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        items = [map_tensors(v, fn) for v in obj]
        if hasattr(obj, "_fields"):  # a NamedTuple
            return type(obj)(*items)
        return tuple(items) if type(obj) is tuple else type(obj)(items)  # e.g. torch.Size
    if isinstance(obj, list):
        return [map_tensors(v, fn) for v in obj]
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if hasattr(obj, "stores") and callable(getattr(obj, "apply", None)):
        out = copy.copy(obj)
        out.apply(fn)
        return out
    return obj


def iter_tensors(obj) -> list:
    """Every tensor inside ``obj`` (same walk as :func:`map_tensors`)."""
    found = []

    def keep(t):
        found.append(t)
        return t

    map_tensors(obj, keep)
    return found


def bind_call(module, args: tuple, kwargs: dict) -> dict:
    """The arguments of one ``module.forward`` call by parameter name, defaults filled in.

    This is the ``call`` dict that :attr:`InputLink.get` receives.
    """
    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(
            f"the arguments do not fit {type(module).__name__}.forward: {exc}"
        ) from None
    bound.apply_defaults()
    return dict(bound.arguments)


def get_path(tree: dict, path: tuple):
    """``tree[path[0]][path[1]]...``."""
    node = tree
    for key in path:
        node = node[key]
    return node


def params_from_links(spec, module, links) -> dict:
    """Our params for ``spec``: zeros in the shapes ``spec.init`` gives, every linked block filled
    with ``to_ours`` of the peer parameter (as float64).

    A leaf that no link touches stays zero: that is how an absent peer term is expressed exactly
    (e.g. a layer built without a bias).
    """
    template = spec.init(np.random.default_rng(0))
    params = tree_map(lambda a: np.zeros_like(np.asarray(a, dtype=np.float64)), template)
    named = dict(module.named_parameters())
    for link in links:
        if link.peer not in named:
            raise RuntimeError(
                f"adapter bug: ParamLink names {link.peer!r}, which is not among "
                f"{type(module).__name__}.named_parameters()"
            )
        leaf = get_path(params, link.path)
        value = np.asarray(link.to_ours(np64(named[link.peer])), dtype=np.float64)
        if link.index is None:
            leaf[...] = value
        else:
            leaf[link.index] = value
    return params


def count_calls(module, args: tuple, kwargs: dict, names) -> dict:
    """How often each named submodule runs during one forward.

    A no-grad run on copies of the arguments, with the module's own forward hooks set aside for
    its duration: the caller's tensors are never touched and a user's (possibly stateful) hook
    sees only the forward that :func:`~geomp_ref.interop.compare` compares.
    """
    t = import_torch()
    subs = dict(module.named_modules())
    counts = {name: 0 for name in names}
    # set the user's hooks aside (torch keeps them in these per-module ordered dicts)
    saved = [(m, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in module.modules()]
    for m, _, _ in saved:
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    handles = []
    try:
        for name in names:

            def hook(_mod, _inp, _out, name=name):
                counts[name] += 1

            handles.append(subs[name].register_forward_hook(hook))
        with t.no_grad():
            module(*map_tensors(args, t.clone), **map_tensors(kwargs, t.clone))
    finally:
        for h in handles:
            h.remove()
        for m, hooks, pre in saved:
            m._forward_hooks.update(hooks)
            m._forward_pre_hooks.update(pre)
    return counts
