r"""Steerable-E3-GNN adapters (RobDHess/Steerable-E3-GNN, Brandstetter et al., ICLR 2022).

Supported module types (recognised by class name and structure, so vendored copies work):

* ``SEGNN`` (``models/segnn/segnn.py``; node and graph tasks, ``pool`` ``'avg'``/``'sum'``,
  ``norm`` None or ``'instance'``, any ``additional_message_irreps``) ->
  :class:`~geomp_ref.layers.segnn.SEGNN` in ``mode="reference"`` with ``edge_attr``,
  ``node_attr`` and ``message_features`` all ``"input"``: ``model(data)`` is our
  ``forward(params, graph, data.x, None, data.edge_attr, data.node_attr,
  data.additional_message_features)``, whatever transform built the Data (QM9's, the N-body
  ``O3Transform``, the gravity one). Taps: ``embedding_layer``, every layer and its four
  steerable blocks (and ``feature_norm``), the pre- and post-pool blocks
  (:mod:`geomp_ref.interop._segnn_bind`).
* ``SEGNNLayer`` -> :class:`~geomp_ref.layers.segnn.SEGNNLayer`, ``layer(x, edge_index,
  edge_attr, node_attr, batch, additional_message_features)``.
* ``InstanceNorm`` (``models/segnn/instance_norm.py``, ``reduce='mean'``) ->
  :class:`~geomp_ref.layers.segnn_norm.InstanceNorm`, ``norm(input, batch)``.
* ``O3TensorProduct`` and ``O3TensorProductSwishGate`` -> graph-free
  :class:`~geomp_ref.layers.segnn_blocks.O3TensorProduct` /
  :class:`~geomp_ref.layers.segnn_blocks.O3TensorProductGate`, ``block(x1[, x2])``.

Every parameter keeps its peer name (``layers.2.update_layer_1.tp.weight``, ``...biases``,
``layers.2.feature_norm.weight``); our params live under ``embed``, ``layers/k/msg1``, ``msg2``,
``upd1``, ``upd2``, ``feature_norm``, ``pre1``, ``pre2``, ``post1``, ``post2`` (``weight`` and
``bias``), weights in e3nn's flat layout unchanged.

Not expressible, refused with ``ValueError`` naming the option: ``norm='batch'`` (e3nn
BatchNorm, running statistics), ``InstanceNorm`` with ``reduce='max'`` (and, inside a layer,
other than the published ``eps``/``affine``/``normalization``), ``tp_rescale=False``, poolers
other than ``global_mean_pool``/``global_add_pool``, message passing other than
``aggr='add'``/``source_to_target``, layers with differing configurations, irreps with
``l >= 10``, and Data the published forward cannot run on (see
:mod:`geomp_ref.interop._segnn_bind`). ``SEConv`` is not a supported type (``TypeError``); its
O3 blocks can be checked one by one.

Conventions to know:

* Build the module under ``torch.set_default_dtype(torch.float64)``: its ``sqrt_k_correction``
  buffer and e3nn's Clebsch-Gordan buffers are computed in the default dtype, so a float32-built
  module converted with ``.double()`` differs by about 1e-8 (the report's notes say so).
* The published ``InstanceNorm`` pools with PyG's ``global_mean_pool`` on (N, mul, 1) arrays,
  which the PyG it was written for (2.0) reduced over nodes (dim 0) and current releases reduce
  over dim -2 (it then fails, or, when ``mul`` equals the node count, pools the wrong axis).
  The oracle implements the intended per-graph mean; under a recent PyG, compare a copy whose
  ``global_mean_pool`` reduces over dim 0.

:func:`nbody_data` builds the ``Data`` of the published N-body pipeline from positions,
velocities and charges (:mod:`geomp_ref.interop._segnn_nbody`).

The module functions are the adapter protocol: :func:`matches`, :func:`from_torch`,
:func:`inputs_from_torch`, :func:`binding` and :func:`compare`.
"""

from __future__ import annotations

from . import _segnn_bind as _bind
from . import _segnn_convert as _convert
from . import _segnn_o3 as _o3
from ._adapter import KindTable
from ._segnn_nbody import nbody_data, nbody_edges
from .compare import bind_compare

__all__ = [
    "SUPPORTED",
    "binding",
    "compare",
    "from_torch",
    "inputs_from_torch",
    "matches",
    "nbody_data",
    "nbody_edges",
]

# (name, matches, convert(module) -> (spec, links, notes), binding)
_KINDS = (
    ("Steerable-E3-GNN SEGNN", _convert.segnn_matches, _convert.segnn_convert,
     _bind.segnn_binding),
    ("Steerable-E3-GNN SEGNNLayer", _convert.layer_matches, _convert.layer_convert,
     _bind.layer_binding),
    ("Steerable-E3-GNN InstanceNorm", _o3.norm_matches, _o3.norm_convert, _bind.norm_binding),
    ("Steerable-E3-GNN O3TensorProduct / O3TensorProductSwishGate", _o3.tp_matches,
     _o3.tp_convert, _bind.tp_binding),
)


def _covered(module, links) -> None:
    _o3.check_covered(module, links, type(module).__name__)


# torch and e3nn imported first; every parameter of the module must be linked
_TABLE = KindTable(__name__, _KINDS, peers=("e3nn",), check_links=_covered)

#: The module types this adapter converts.
SUPPORTED = _TABLE.supported


def matches(module) -> bool:
    """True when this adapter converts ``module`` (class name and structure; no torch import)."""
    return _TABLE.matches(module)


def from_torch(module):
    """``(spec, params)`` equivalent to ``module`` (weights copied as float64).

    Raises
    ------
    TypeError
        Not a supported module type.
    ValueError
        An option the oracle cannot express (the message names it).
    ImportError
        torch or e3nn is missing (the ``peers`` extra).
    """
    return _TABLE.from_torch(module)


def binding(module, *args, **kwargs):
    """The :class:`~geomp_ref.interop.Binding` of one ``module(*args, **kwargs)`` call."""
    return _TABLE.binding(module, *args, **kwargs)


def inputs_from_torch(module, *args, **kwargs):
    """``(graph, inputs)`` for ``spec.forward(params, graph, *inputs)`` (``graph`` is None for
    the graph-free O3 blocks) from the arguments of one ``module`` call (a PyG ``Data`` for
    ``SEGNN``)."""
    return _TABLE.inputs(module, *args, **kwargs)


compare = bind_compare(__name__)
