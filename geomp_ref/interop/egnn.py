r"""Adapters for vgsatorras/egnn (Satorras, Hoogeboom, Welling 2021, github.com/vgsatorras/egnn).

Supported module types (recognised by class name and structure, so vendored copies work):

* layers (:mod:`geomp_ref.interop._egnn_layers`): ``models/gcl.py`` ``E_GCL`` and ``E_GCL_vel``,
  ``models/egnn_clean/egnn_clean.py`` ``E_GCL``, ``qm9/models.py`` ``E_GCL_mask``, each as
  :class:`~geomp_ref.interop._egnn_blocks.EGCL` (an
  :class:`~geomp_ref.layers.egnn_layer.EGNNLayer` returning ``(h', x'[, edge_attr])`` like the
  published forward);
* models (:mod:`geomp_ref.interop._egnn_models`): egnn_clean ``EGNN``
  (:class:`~geomp_ref.layers.egnn.EGNN`), and ``n_body_system/model.py``'s ``EGNN_vel``,
  ``EGNN``, ``GNN``, ``RF_vel`` and ``Linear``.

Every call takes exactly the published forward's arguments, e.g. ``compare(layer, h,
edge_index, coord, edge_attr=None, node_attr=None)`` or ``compare(egnn_vel, h, x, edges, vel,
edge_attr)``. Edges are the published ``[row, col]`` (row = receiver): our ``edge_index`` is
``(col, row)``. The conversion works on copies of the arguments, so ``gcl.py``'s in-place
``coord += ...`` never affects it. Options the oracle cannot express raise ValueError naming them
(e.g. ``act_fn=LeakyReLU``, a fractional ``edge_mask``).

The module functions are the adapter protocol: :func:`matches`, :func:`from_torch`,
:func:`inputs_from_torch`, :func:`binding` and :func:`compare`.
"""

from __future__ import annotations

from . import _egnn_layers as _layers
from . import _egnn_models as _models
from ._adapter import KindTable
from .compare import bind_compare

__all__ = ["SUPPORTED", "binding", "compare", "from_torch", "inputs_from_torch", "matches"]


def _layer_convert(module, in_features=None):
    spec, links = _layers.egcl_from_torch(module, in_features)
    return spec, links, []


# (name, matches, convert(module, **options) -> (spec, links, notes), binding); models first: a
# stack is never mistaken for one of its layers
_KINDS = (
    ("egnn_clean EGNN", _models.egnn_clean_matches, _models.egnn_clean_convert,
     _models.egnn_clean_binding),
    ("n_body_system EGNN_vel", _models.egnn_vel_matches, _models.egnn_vel_convert,
     _models.egnn_vel_binding),
    ("n_body_system EGNN", _models.nbody_egnn_matches, _models.nbody_egnn_convert,
     _models.nbody_egnn_binding),
    ("n_body_system GNN", _models.gnn_matches, _models.gnn_convert, _models.gnn_binding),
    ("n_body_system RF_vel", _models.rf_matches, _models.rf_convert, _models.rf_binding),
    ("n_body_system Linear", _models.linear_matches, _models.linear_convert,
     _models.linear_binding),
    ("gcl E_GCL / E_GCL_vel, egnn_clean E_GCL, qm9 E_GCL_mask", _layers.egcl_matches,
     _layer_convert, _layers.egcl_binding),
)

_TABLE = KindTable(__name__, _KINDS, sep="; ")

#: The module types this adapter converts.
SUPPORTED = _TABLE.supported


def matches(module) -> bool:
    """True when this adapter converts ``module`` (class name and structure; no torch import)."""
    return _TABLE.matches(module)


def from_torch(module, **options):
    """``(spec, params)`` equivalent to ``module`` (weights copied as float64).

    ``options``: ``in_features=`` for a gcl ``E_GCL`` / ``E_GCL_mask`` built with
    ``recurrent=False``, whose weights leave its input width open (``compare`` and
    ``inputs_from_torch`` read it from ``h``).

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
    """``(graph, inputs)`` for ``spec.forward(params, graph, *inputs)`` from the published
    forward's arguments (``graph`` is None for ``Linear``)."""
    return _TABLE.inputs(module, *args, **kwargs)


compare = bind_compare(__name__)
