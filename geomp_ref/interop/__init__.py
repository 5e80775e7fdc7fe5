"""Peer adapters and the cross-check engine: check a PyTorch model against the oracle in one call.

* :func:`compare` ``(module, *args, **kwargs) -> CompareReport``: runs the peer module and the
  oracle on the same weights, inputs and random cotangents and reports outputs, every parameter
  gradient (under the peer's own names), every input gradient, and the first tapped layer that
  differs (:mod:`geomp_ref.interop.compare`).
* :func:`compare_layers` ``(model, *args, **kwargs)``: for a model whose forward no adapter
  knows but whose layers adapters do know (PONITA's model, a LieConv ResNet, your own stack):
  every adapted layer call is compared on the arguments it really received
  (:mod:`geomp_ref.interop._stack`).
* :func:`from_torch` ``(module) -> (spec, params)`` and :func:`inputs_from_torch`
  ``(module, *args, **kwargs) -> (graph, inputs)``: the two halves, to keep working in the oracle.

Each goes to the first adapter module whose ``matches(module)`` is true (by class name and
structure, so vendored copies of a peer's files work): :mod:`geomp_ref.interop.e3nn`,
:mod:`geomp_ref.interop.pyg`, and the adapters listed in ``_registry.ADAPTERS``. Every adapter
module offers the same functions (``matches``, ``from_torch``, ``inputs_from_torch``, ``binding``,
``compare``) and raises ``ValueError`` naming any option of the peer module that the oracle cannot
express. Torch and the peers are imported lazily; when missing, an ImportError names the ``peers``
extra (``pip install geomp-ref[peers]``). An adapter hands the engine a :class:`Binding`.
"""

from __future__ import annotations

from ._binding import Binding, InputLink, ParamLink, Tap, identity, linear_links, transpose
from ._registry import find_adapter, supported
from ._stack import LayerReport, StackReport, compare_layers
from .compare import CompareReport, compare

__all__ = [
    "Binding",
    "CompareReport",
    "InputLink",
    "ParamLink",
    "Tap",
    "LayerReport",
    "StackReport",
    "compare",
    "compare_layers",
    "find_adapter",
    "from_torch",
    "identity",
    "inputs_from_torch",
    "linear_links",
    "supported",
    "transpose",
]


def from_torch(module, **options):
    """``(spec, params)`` equivalent to a supported peer module (see :func:`supported`).

    ``options`` go to the adapter (e.g. ``backend=`` for the PyG SchNet).

    Raises
    ------
    TypeError
        No adapter converts ``module``; the message lists the supported types.
    ValueError
        The module uses an option the oracle cannot express; the message names it.
    """
    return find_adapter(module).from_torch(module, **options)


def inputs_from_torch(module, *args, **kwargs):
    """``(graph, inputs)``: the arguments of one ``module.forward`` call converted for
    ``spec.forward(params, graph, *inputs)`` (``graph`` is None for graph-free blocks)."""
    return find_adapter(module).inputs_from_torch(module, *args, **kwargs)
