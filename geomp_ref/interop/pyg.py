r"""PyTorch Geometric adapters (and the torch recurrent cells PyG's examples use).

Supported module types (recognised by class name and structure, so vendored copies work):

* ``torch_geometric.nn.models.SchNet`` -> :class:`~geomp_ref.layers.schnet.SchNet`
  (:mod:`geomp_ref.interop._pyg_schnet`: weights, the module's own constants and interaction
  graph; ``dipole``, ``mean``/``std``, ``atomref`` and ``scale`` raise);
* ``torch_geometric.nn.NNConv`` -> :class:`~geomp_ref.layers.nnconv.NNConv`, ``Set2Set`` ->
  :class:`~geomp_ref.layers.set2set.Set2Set`, and the Gilmer MPNN ``Net`` of PyG's
  ``examples/qm9_nn_conv.py`` -> :class:`~geomp_ref.layers.mpnn.MPNN` (``mode="pyg"``)
  (:mod:`geomp_ref.interop._pyg_mpnn`);
* ``torch.nn.GRU`` (one layer) -> :class:`~geomp_ref.interop._torch_rnn.GRUSequence` and
  ``torch.nn.GRUCell`` -> :class:`~geomp_ref.layers.recurrent.GRUCell`
  (:mod:`geomp_ref.interop._torch_rnn`).

The module functions are the adapter protocol: :func:`matches`, :func:`from_torch`,
:func:`inputs_from_torch`, :func:`binding` and :func:`compare`. :func:`schnet` is the older name
of ``from_torch`` for SchNet.
"""

from __future__ import annotations

from . import _pyg_mpnn as _mpnn
from . import _pyg_schnet as _schnet
from . import _torch_rnn as _rnn
from ._adapter import KindTable
from ._torch import import_torch
from .compare import bind_compare

__all__ = [
    "SUPPORTED",
    "binding",
    "compare",
    "from_torch",
    "inputs_from_torch",
    "matches",
    "schnet",
]

# (name, matches, convert(module, **options) -> (spec, links, notes), binding)
_KINDS = (
    ("Net (PyG qm9_nn_conv example)", _mpnn.qm9_net_matches, _mpnn.qm9_net_convert,
     _mpnn.qm9_net_binding),
    ("torch_geometric.nn.models.SchNet", _schnet.schnet_matches, _schnet.schnet_convert,
     _schnet.schnet_binding),
    ("torch_geometric.nn.NNConv", _mpnn.nnconv_matches, _mpnn.nnconv_convert,
     _mpnn.nnconv_binding),
    ("torch_geometric.nn.aggr.Set2Set", _mpnn.set2set_matches, _mpnn.set2set_convert,
     _mpnn.set2set_binding),
    ("torch.nn.GRUCell", _rnn.gru_cell_matches, _rnn.gru_cell_convert, _rnn.gru_cell_binding),
    ("torch.nn.GRU", _rnn.gru_matches, _rnn.gru_convert, _rnn.gru_binding),
)

_TABLE = KindTable(__name__, _KINDS)

#: The module types this adapter converts.
SUPPORTED = _TABLE.supported


def matches(module) -> bool:
    """True when this adapter converts ``module`` (class name and structure; no torch import)."""
    return _TABLE.matches(module)


def from_torch(module, **options):
    """``(spec, params)`` equivalent to ``module`` (weights copied as float64).

    ``options``: ``backend=`` for SchNet; ``steps=`` for the QM9 ``Net`` (its forward hard-codes
    the number of message-passing steps).

    Raises
    ------
    TypeError
        Not a supported module type.
    ValueError
        An option the oracle cannot express (the message names it).
    ImportError
        torch is missing (the ``peers`` extra).
    """
    return _TABLE.from_torch(module, **options)


def binding(module, *args, **kwargs):
    """The :class:`~geomp_ref.interop.Binding` of one ``module(*args, **kwargs)`` call."""
    return _TABLE.binding(module, *args, **kwargs)


def inputs_from_torch(module, *args, **kwargs):
    """``(graph, inputs)`` for ``spec.forward(params, graph, *inputs)`` from the peer's call
    arguments (``graph`` is None for the graph-free GRU cells)."""
    return _TABLE.inputs(module, *args, **kwargs)


compare = bind_compare(__name__)


def schnet(module, *, backend: str = "numpy"):
    """``(spec, params)`` for a PyG ``SchNet`` (same as :func:`from_torch`).

    Raises
    ------
    TypeError
        ``module`` is not a PyG SchNet.
    ValueError
        ``dipole``, ``mean``/``std``, ``atomref``, ``scale``, a readout other than add/mean.
    """
    import_torch()
    if not _schnet.schnet_matches(module):
        raise TypeError(
            f"module must be a torch_geometric.nn.models.SchNet; got {type(module).__name__}"
        )
    return from_torch(module, backend=backend)
