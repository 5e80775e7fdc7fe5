"""The dispatch every table-driven adapter module shares.

An adapter module (:mod:`geomp_ref.interop.egnn`, ``pyg``, ``segnn``, ``ponita``, ``lieconv``)
lists the peer module types it converts in a ``_KINDS`` table of ``(name, matches, convert,
binding)`` rows and hands that table to a :class:`KindTable`; its public ``matches``,
``from_torch``, ``binding`` and ``inputs_from_torch`` keep their own signatures and docstrings and
delegate here. What one adapter alone does (PONITA's calibration refusal, LieConv's graph built
without running the peer) stays in that adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ._torch import import_peer, import_torch, params_from_links

__all__ = ["Kind", "KindTable"]


class Kind(NamedTuple):
    """One row of an adapter's table.

    ``matches(module) -> bool`` recognises the type without importing torch;
    ``convert(module, **options) -> (spec, links, notes)``;
    ``binding(module, *args, **kwargs) -> Binding`` of one call.
    """

    name: str
    matches: Callable
    convert: Callable
    binding: Callable


class KindTable:
    """The rows of one adapter module, tried in order: the first whose ``matches`` is true wins.

    Parameters
    ----------
    adapter : str
        The adapter module's name (``__name__``), which starts the TypeError for an unsupported
        module: ``"<adapter> converts <names>; got <class name>"``.
    kinds : sequence of ``(name, matches, convert, binding)``
    sep : str
        Joins the type names in that message (``"; "`` where a name holds commas).
    peers : tuple of str
        Peer packages imported (after torch) before any conversion or binding, each ImportError
        naming the adapter.
    check_links : callable, optional
        ``check_links(module, links)``, run on the parameter links of every conversion and
        binding (e.g. refusing a module with weights the links leave out).
    """

    def __init__(self, adapter: str, kinds, *, sep: str = ", ", peers: tuple = (),
                 check_links: Callable | None = None):
        self.adapter = adapter
        self.kinds = tuple(Kind(*row) for row in kinds)
        #: The names of the rows, in dispatch order (the adapter's ``SUPPORTED``).
        self.supported = tuple(kind.name for kind in self.kinds)
        self.sep = sep
        self.peers = tuple(peers)
        self.check_links = check_links

    def matches(self, module) -> bool:
        """True when a row recognises ``module`` (no torch import)."""
        return any(kind.matches(module) for kind in self.kinds)

    def kind(self, module) -> Kind:
        """The first row recognising ``module``; TypeError listing the supported types."""
        for kind in self.kinds:
            if kind.matches(module):
                return kind
        raise TypeError(
            f"{self.adapter} converts {self.sep.join(self.supported)}; got "
            f"{type(module).__name__}"
        )

    def load(self, module) -> Kind:
        """Import torch and the peers (ImportError first), then :meth:`kind`."""
        import_torch()
        for name in self.peers:
            import_peer(name, self.adapter)
        return self.kind(module)

    def from_torch(self, module, **options):
        """``(spec, params)``: the row's conversion, weights copied through its links."""
        spec, links, _ = self.load(module).convert(module, **options)
        if self.check_links is not None:
            self.check_links(module, links)
        return spec, params_from_links(spec, module, links)

    def binding(self, module, *args, **kwargs):
        """The row's :class:`~geomp_ref.interop.Binding` of ``module(*args, **kwargs)``."""
        b = self.load(module).binding(module, *args, **kwargs)
        if self.check_links is not None:
            self.check_links(module, b.param_links)
        return b

    def inputs(self, module, *args, **kwargs):
        """``(graph, inputs)`` of :meth:`binding`."""
        b = self.binding(module, *args, **kwargs)
        return b.graph, b.inputs
