r"""PONITA adapters (ebekkers/ponita, Bekkers et al., ICLR 2024).

Supported module types (recognised by class name and structure, so vendored copies work):

* ``FiberBundleConv`` (separable or not, depthwise ``groups = C`` or full ``groups = 1``, with
  or without bias) ->
  :class:`~geomp_ref.layers.position_orientation.PositionOrientationConv` with ``basis_dim``
  set, taking PONITA's precomputed bases as its forward takes them:
  ``conv(x, edge_index, edge_attr, fiber_attr)`` is our
  ``forward(params, graph, x, None, None, edge_attr, fiber_attr)``
  (:mod:`geomp_ref.interop._ponita_conv`). Taps: ``kernel``, ``fiber_kernel``.
* ``Conv`` (point clouds) -> :class:`~geomp_ref.layers.basis_conv.BasisConv`,
  ``conv(x, edge_index, edge_attr)`` is ``forward(params, graph, x, edge_attr)``. Tap: ``kernel``.
* The basis network ``Sequential(PolynomialFeatures(d), Linear, GELU, Linear, GELU)`` (PONITA's
  ``basis_fn`` / ``fiber_basis_fn``), ``PolynomialFeatures`` and the window
  ``PolynomialCutoff`` -> graph-free blocks of :mod:`geomp_ref.interop._ponita_blocks`
  (:mod:`geomp_ref.interop._ponita_basis`); the network is tapped after every child.

Both convolutions sum the messages of ``edge_index[0]`` (senders) at ``edge_index[1]``
(receivers). The graph is used as given: PONITA's transform adds self loops (and coalesces) before
the layers run, so pass the graph the layer actually sees.

Options the oracle does not express raise ValueError naming them: ``aggr`` other than ``"add"``,
``groups`` other than 1 or C, ``groups = 1`` on a module without ``in_channels``/``out_channels``
(the published forward fails there), a call in training mode with ``callibrated`` False (PONITA's
one-off calibration rescales the weights during that call; compare in eval mode or after it), a
tanh-approximated GELU, an uninitialised ``LazyLinear``. ``from_torch`` of a ``FiberBundleConv``
needs ``num_ori=`` (the module does not store its grid size; ``compare`` and
``inputs_from_torch`` read it from ``x``).

PONITA's invariants are functions, not modules; their counterparts
(:mod:`geomp_ref.layers.position_orientation_ops`):
``invariant_attr_r3s2_fiber_bundle`` / ``invariant_attr_r2s1_fiber_bundle`` ->
``bundle_coords(pos[src] - pos[dst], ori_grid, separable)`` (``(attr, fiber_attr)`` when
separable, the (E, O, O, 3) attribute otherwise); ``*_point_cloud`` ->
``point_cloud_invariants(edge_vec, ori[src], ori[dst])``; ``invariant_attr_rn`` ->
:func:`geomp_ref.ops.geometry.edge_length`. :func:`basis_from_torch` turns a module holding
``basis_fn``, ``fiber_basis_fn`` and ``windowing_fn`` (PONITA's model) into the shared-basis block
:class:`~geomp_ref.layers.position_orientation_basis.PositionOrientationBasis`.

A model built from these layers (PONITA's own, or a stack sharing one basis) is checked layer by
layer with :func:`compare_layers` (:func:`geomp_ref.interop.compare_layers`): every known layer
on the arguments it received, ``first_divergence`` naming the first layer call that differs.

The module functions are the adapter protocol: :func:`matches`, :func:`from_torch`,
:func:`inputs_from_torch`, :func:`binding` and :func:`compare`.
"""

from __future__ import annotations

from . import _ponita_basis as _basis
from . import _ponita_conv as _conv
from ._adapter import KindTable
from ._ponita_basis import basis_from_torch
from ._stack import LayerReport, StackReport, compare_layers, find_layers
from .compare import bind_compare

__all__ = [
    "SUPPORTED",
    "LayerReport",
    "StackReport",
    "basis_from_torch",
    "binding",
    "compare",
    "compare_layers",
    "find_layers",
    "from_torch",
    "inputs_from_torch",
    "matches",
]

# (name, matches, convert(module, **options) -> (spec, links, notes), binding)
_KINDS = (
    ("ponita FiberBundleConv", _conv.fiber_bundle_matches, _conv.fiber_bundle_convert,
     _conv.fiber_bundle_binding),
    ("ponita Conv", _conv.conv_matches, _conv.conv_convert, _conv.conv_binding),
    ("ponita basis network Sequential(PolynomialFeatures, Linear, GELU, Linear, GELU)",
     _basis.net_matches, _basis.net_convert, _basis.net_binding),
    ("ponita PolynomialFeatures", _basis.features_matches, _basis.features_convert,
     _basis.features_binding),
    ("ponita PolynomialCutoff", _basis.cutoff_matches, _basis.cutoff_convert,
     _basis.cutoff_binding),
)

_TABLE = KindTable(__name__, _KINDS)

#: The module types this adapter converts.
SUPPORTED = _TABLE.supported


def matches(module) -> bool:
    """True when this adapter converts ``module`` (class name and structure; no torch import)."""
    return _TABLE.matches(module)


def from_torch(module, **options):
    """``(spec, params)`` equivalent to ``module`` (weights copied as float64).

    ``options``: ``num_ori=`` (required for ``FiberBundleConv``); ``in_dim=`` for a basis network
    (default: read from its first Linear).

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
    kind = _TABLE.load(module)
    _conv.check_calibration(module, type(module).__name__)
    return kind.binding(module, *args, **kwargs)


def inputs_from_torch(module, *args, **kwargs):
    """``(graph, inputs)`` for ``spec.forward(params, graph, *inputs)`` from the peer's call
    arguments (``graph`` is None for the graph-free basis modules)."""
    return _TABLE.inputs(module, *args, **kwargs)  # no calibration check: nothing runs


compare = bind_compare(__name__)
