"""Dispatch over the adapter modules: the first whose ``matches(module)`` is true converts it.

Adapters are tried in the order of :data:`ADAPTERS`; a listed adapter whose module does not exist
(yet) is skipped. Importing an adapter module never imports its peer (that happens inside its
functions), so dispatch works, and fails with a clear TypeError, without torch installed.
"""

from __future__ import annotations

import importlib

__all__ = ["ADAPTERS", "adapters", "find_adapter", "supported"]

#: Adapter modules under ``geomp_ref.interop``, in dispatch order.
ADAPTERS = ("e3nn", "pyg", "egnn", "segnn", "lieconv", "ponita", "egnn_pytorch")


def adapters() -> list:
    """The adapter modules that exist, in dispatch order."""
    found = []
    for name in ADAPTERS:
        full = f"geomp_ref.interop.{name}"
        try:
            found.append(importlib.import_module(full))
        except ModuleNotFoundError as exc:
            if exc.name != full:  # the adapter exists but something it imports is missing
                raise
    return found


def supported() -> dict:
    """``{adapter name: tuple of the module types it converts}``."""
    return {a.__name__.rsplit(".", 1)[-1]: tuple(a.SUPPORTED) for a in adapters()}


def find_adapter(module):
    """The adapter module that converts ``module``.

    Raises
    ------
    TypeError
        No adapter matches; the message lists every supported module type.
    """
    for adapter in adapters():
        if adapter.matches(module):
            return adapter
    listing = "; ".join(f"{name}: {', '.join(types)}" for name, types in supported().items())
    raise TypeError(
        f"no geomp_ref.interop adapter converts a {type(module).__name__}; supported module "
        f"types: {listing}"
    )
