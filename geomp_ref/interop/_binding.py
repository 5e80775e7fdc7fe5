"""What an adapter hands to :func:`geomp_ref.interop.compare`: the links between a peer module and
the oracle.

A :class:`Binding` ties one call of a peer module (its weights and the arguments of one
``forward`` call) to our ``(spec, params, graph, inputs)``:

* :class:`ParamLink` says which block of which of our parameter leaves comes from which peer
  parameter, through ``to_ours`` (e.g. a transpose); ``to_peer`` is its adjoint, so the gradient
  of our leaf block maps back onto the peer parameter's own name and layout. Every trainable peer
  parameter has at least one link; several links to one peer name add up.
* :class:`InputLink` does the same for each differentiable tensor among the call's arguments.
* ``outputs`` picks, from whatever the peer's ``forward`` returned, the tensors that correspond to
  our outputs, in our order.
* :class:`Tap` names a peer submodule (as in ``module.named_modules()``) whose forward output has a
  counterpart in our forward cache; taps are listed in forward order, so the first one that
  differs is where the two implementations part ways.

Nothing here imports torch: the callables receive whatever the adapter's peer objects are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Binding",
    "InputLink",
    "ParamLink",
    "Tap",
    "identity",
    "linear_links",
    "reshaper",
    "transpose",
]


def identity(a: np.ndarray) -> np.ndarray:
    """The trivial link map (its own adjoint)."""
    return a


def transpose(a: np.ndarray) -> np.ndarray:
    """torch ``Linear`` stores (out, in), we store (in, out); the transpose is its own adjoint."""
    return np.swapaxes(a, -1, -2)


def reshaper(shape: tuple):
    """A link map that reshapes to ``shape`` (pair it with ``reshaper(other_shape)`` as adjoint)."""
    shape = tuple(int(s) for s in shape)

    def to_shape(a: np.ndarray) -> np.ndarray:
        return np.reshape(a, shape)

    return to_shape


def linear_links(peer: str, weight: tuple, bias: tuple | None = None) -> list:
    """The links of a torch ``Linear`` named ``peer`` (``"lin0"``) onto our (in, out) weight.

    ``weight`` and ``bias`` are paths in our params tree; ``bias=None`` for a bias-free layer.
    """
    links = [ParamLink(f"{peer}.weight", tuple(weight), None, transpose, transpose)]
    if bias is not None:
        links.append(ParamLink(f"{peer}.bias", tuple(bias)))
    return links


@dataclass(frozen=True)
class ParamLink:
    """``params[path][index] = to_ours(peer_param)``; ``grad_peer += to_peer(grad[path][index])``.

    Attributes
    ----------
    peer : str
        Name in ``module.named_parameters()``.
    path : tuple of str
        Path of the leaf in our params tree.
    index : tuple or None
        NumPy index of the block of our leaf that this peer parameter fills (``None``: the whole
        leaf).
    to_ours, to_peer : callable
        Linear map peer array -> our block, and its adjoint.
    """

    peer: str
    path: tuple
    index: Any = None
    to_ours: Callable = identity
    to_peer: Callable = identity


@dataclass(frozen=True)
class InputLink:
    """``inputs[index] (block) = to_ours(get(call))``; the peer input's gradient is
    ``to_peer(grad_inputs[index] (block))``.

    Attributes
    ----------
    peer : str
        The name the report shows (``"x"``, ``"data.pos"``, ``"args[2]"``).
    get : callable
        ``get(call) -> tensor``: picks the tensor out of the call's bound arguments (a
        ``dict`` from the forward's parameter names to the values actually passed).
    index : int
        Position in our inputs tuple.
    block : tuple or None
        NumPy index of the part of our input this tensor fills (``None``: all of it).
    to_ours, to_peer : callable
    """

    peer: str
    get: Callable
    index: int
    block: Any = None
    to_ours: Callable = identity
    to_peer: Callable = identity

    def __post_init__(self):
        if callable(self.block):
            raise TypeError(
                f"InputLink({self.peer!r}): block is a NumPy index, not a map; pass to_ours= and "
                "to_peer= by keyword"
            )


@dataclass(frozen=True)
class Tap:
    """A peer submodule whose output has a counterpart in our forward cache.

    Attributes
    ----------
    peer : str
        Submodule name as in ``module.named_modules()``.
    ours : callable
        ``ours(cache) -> ndarray``: our value of that output, from the forward cache.
    peer_value : callable
        ``peer_value(hook_output) -> tensor``: the tensor to compare from the submodule's forward
        output (e.g. ``lambda out: out[0]``).
    call : int
        Which invocation of the submodule during one forward (0 = the first): a submodule that
        runs once per step (weights tied across steps) gets one tap per step.
    """

    peer: str
    ours: Callable
    peer_value: Callable = identity
    call: int = 0


@dataclass
class Binding:
    """Everything :func:`geomp_ref.interop.compare` needs for one module and one call.

    Attributes
    ----------
    spec, params
        Our block and its params (float64); ``spec.forward(params, graph, *inputs)``, or
        ``spec.forward(params, *inputs)`` when ``graph`` is None (graph-free blocks).
    graph : Graph or None
    inputs : tuple
        Our forward inputs, in order.
    param_links, input_links : list
        :class:`ParamLink` and :class:`InputLink` objects.
    outputs : callable
        ``outputs(peer_result) -> tuple of tensors`` in our output order and layout.
    taps : list of Tap
        In forward order.
    notes : list of str
        What the report should tell the reader about this conversion.
    output_names : tuple of str
        Row names of the outputs in the report (default ``output``, ``output[k]``).
    """

    spec: Any
    params: dict
    graph: Any
    inputs: tuple
    param_links: list = field(default_factory=list)
    input_links: list = field(default_factory=list)
    outputs: Callable = identity
    taps: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    output_names: tuple = ()
