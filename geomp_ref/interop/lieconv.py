r"""mfinzi/LieConv adapters (Finzi et al., ICML 2020, ``lie_conv/lieConv.py``).

Supported module types (recognised by class name and structure, so vendored copies work):

* ``LieConv`` (any group with a ``distance``: ``SE2``, ``SE3``, ``T(d)``, ``SO2``, ``SO3``, ...;
  ``mean`` True or False) and
* ``PointConv`` (``mean`` True or False, ``knn_channels``)

-> :class:`~geomp_ref.interop._lieconv_block.LieConvTriple` around
:class:`~geomp_ref.layers.lieconv.LieConv` with ``kernel_input="given"``. Each takes the padded
triple its ``forward`` takes, ``layer((coords, values, mask))``, and returns the triple it
returns: ``spec.forward(params, graph, coords, values, mask)`` with ``coords`` LieConv's lifted
``abq_pairs`` (B, n, n, d) or PointConv's ``xyz`` (B, n, D).

The pairs go to the kernel as they are (``abq_pairs[b, i, j]`` for edge j -> i: query i,
neighbour j), so no Lie group map is recomputed and the group only decides the neighbourhoods;
LieConv's own float64 SE(3) pair logarithm loses accuracy for relative rotations near
:math:`\pi` (on random lifts it differs from ours by up to ~2e-7), which recomputing the pairs
would report as a difference of the layer. LieConv's WeightNet is an
:class:`~geomp_ref.layers.kernels.MLPKernel` with the activation after every layer, the last
included; its ``linear`` contracts the (C, K) product channel-major, ours kernel-major (the
adapter regroups the columns); ``mean=True`` divides the whole output, bias included, by the
number of neighbours (``aggr="lieconv_mean"``); padded points give exactly 0. Details:
:mod:`geomp_ref.interop._lieconv_convert`.

LieConv draws its neighbourhoods at random; the comparison is exact when that draw changes only
the order of the neighbours: eval mode (training moves the radius ``r``), no batch norm
(``bn=False``), ``ds_frac=1``, ``knn=False`` (or ``knn=True`` with ``mc_samples >= n`` and no
padding) and ``mc_samples`` at least the number of points of every ball of radius ``r`` (e.g.
``mc_samples >= n``). Anything else raises ValueError naming the setting; the graph is built
with the module's own ``group.distance`` and ``r`` (:mod:`geomp_ref.interop._lieconv_graph`).

A model built from these layers (LieConv's ``LieResNet``, ``LieConvBNrelu`` stacks, a user's
``Sequential``) is checked layer by layer with :func:`compare_layers`: every LieConv/PointConv
call on the triple it received, ``first_divergence`` naming the first one that differs (and its
first differing WeightNet layer). The glue between layers (batch norms, swish, linear maps,
pooling) is listed as unchecked.

The module functions are the adapter protocol: :func:`matches`, :func:`from_torch`,
:func:`inputs_from_torch`, :func:`binding` and :func:`compare`.
"""

from __future__ import annotations

from . import _lieconv_convert as _convert
from . import _lieconv_graph as _graph
from ._adapter import KindTable
from ._stack import LayerReport, StackReport, find_layers
from ._stack import compare_layers as _compare_layers
from ._torch import import_torch
from .compare import bind_compare

__all__ = [
    "SUPPORTED",
    "LayerReport",
    "StackReport",
    "binding",
    "compare",
    "compare_layers",
    "from_torch",
    "inputs_from_torch",
    "matches",
]


def _run_binding(module, *args, **kwargs):
    return _graph.binding(module, args, kwargs, run=True)


# (name, matches, convert(module) -> (spec, links, info), binding): one conversion serves both
_KINDS = (
    ("lie_conv LieConv", _convert.lieconv_matches, _convert.convert, _run_binding),
    ("lie_conv PointConv", _convert.pointconv_matches, _convert.convert, _run_binding),
)

_TABLE = KindTable(__name__, _KINDS)

#: The module types this adapter converts.
SUPPORTED = _TABLE.supported


def matches(module) -> bool:
    """True when this adapter converts ``module`` (class name and structure; no torch import)."""
    return _TABLE.matches(module)


def from_torch(module):
    """``(spec, params)`` equivalent to ``module`` (weights copied as float64).

    The spec's graph comes with the call: build it with :func:`inputs_from_torch`.

    Raises
    ------
    TypeError
        Not a supported module type.
    ValueError
        An option the oracle cannot express (``bn=True``, ``ds_frac < 1``, an activation other
        than swish or ReLU); the message names it.
    ImportError
        torch is missing (the ``peers`` extra).
    """
    return _TABLE.from_torch(module)


def binding(module, *args, **kwargs):
    """The :class:`~geomp_ref.interop.Binding` of one ``module(inp)`` call (refuses a LieConv in
    training mode: that call would move its radius)."""
    return _TABLE.binding(module, *args, **kwargs)


def inputs_from_torch(module, *args, **kwargs):
    """``(graph, (coords, values, mask))`` for ``spec.forward(params, graph, *inputs)`` from the
    call's triple; the graph holds the neighbourhoods the module would use (its ``r`` now).

    Raises
    ------
    ValueError
        The call's neighbourhoods would be drawn at random (``mc_samples``, ``knn``), or a
        setting of :func:`from_torch` is refused.
    """
    _TABLE.load(module)
    b = _graph.binding(module, args, kwargs, run=False)  # no mode check: the peer does not run
    return b.graph, b.inputs


compare = bind_compare(__name__)


def compare_layers(model, *args, tol_out=None, tol_grad=None, seed=0, **kwargs) -> StackReport:
    """Compare every LieConv/PointConv call of ``model`` on the triple it receives in one call
    of ``model(*args, **kwargs)`` (see :func:`geomp_ref.interop.ponita.compare_layers`, the same
    engine; layers of other adapters in the model are compared too).

    Refuses, before anything runs, a model holding a LieConv in training mode (each call would
    move its radius). Returns a :class:`StackReport`: ``first_divergence`` is the name of the
    first layer call that differs, extended by its first differing tap (``"net.2.weightnet.3"``).
    """
    import_torch()
    for name, mod, adapter in find_layers(model):
        if adapter.__name__ == __name__ and _convert.lieconv_matches(mod):
            _graph.check_mode(mod, name or type(mod).__name__)
    return _compare_layers(
        model, *args, tol_out=tol_out, tol_grad=tol_grad, seed=seed, **kwargs
    )
