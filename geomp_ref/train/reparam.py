r"""Training a block in another parametrisation: the same function, other stored parameters.

e3nn-style layers (:class:`geomp_ref.o3.Linear`, :class:`geomp_ref.layers.tfn.TFNConv`) store
weights :math:`W \sim N(0, 1)` and multiply them by a fan-in constant :math:`c = 1/\sqrt{F}` in
the forward pass; torch's ``nn.Linear`` stores the effective weight :math:`cW` itself. At
initialisation the two describe the same network, and plain gradient descent takes the same
steps in function space only after its learning rate is rescaled per weight. Adam's step,
:math:`\eta\, \hat m / (\sqrt{\hat v} + \epsilon)`, is about :math:`\eta` per stored coordinate
whatever the gradient's scale, so with the same :math:`\eta` it moves an effective weight by
about :math:`c\eta` in the first parametrisation and by :math:`\eta` in the second: e3nn-style
models take smaller steps, by :math:`\sqrt{F}`.

:class:`Rescaled` trains a block through stored parameters :math:`P` with :math:`W = s \odot P`
for fixed positive scales :math:`s` (one tree of the block's parameter shapes):

.. math::

    \mathrm{forward}(P, \dots) = \mathrm{block.forward}(s \odot P, \dots), \qquad
    \bar P = s \odot \bar W, \qquad P_0 = W_0 / s,

so the initial function is the block's, drawn by the block's own ``init``, and only the
optimiser's view changes (an L2 weight decay then acts on :math:`P`, not on :math:`W`).
:func:`standard_parametrization` picks :math:`s = 1/c` from the block's
``weight_normalization()``, so that the stored parameters are the effective weights, as in torch.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from .._validate import check_cache, check_params
from ..layers.base import Block, check_backend
from ..params import tree_map, tree_map2

__all__ = ["Rescaled", "RescaledCache", "standard_parametrization"]


class RescaledCache(NamedTuple):
    r"""The inner block's cache and the block parameters :math:`W = s \odot P` it was built with."""

    inner: Any
    block_params: Any


def _check_scales(scales, shapes, path="scales"):
    """``scales`` as a tree of read-only float64 arrays of the parameter shapes."""
    if not isinstance(scales, dict):
        raise TypeError(f"Rescaled.{path} must be a dict with the keys of the block's params "
                        f"({sorted(shapes)}); got {type(scales).__name__}")
    if set(scales) != set(shapes):
        raise ValueError(f"Rescaled.{path} must have exactly the keys {sorted(shapes)} of the "
                         f"block's params; got {sorted(map(str, scales))}")
    out = {}
    for key, shape in shapes.items():
        value, where = scales[key], f"{path}[{key!r}]"
        if isinstance(shape, dict):
            out[key] = _check_scales(value, shape, where)
            continue
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.ndarray)):
            raise TypeError(f"Rescaled.{where} must be a positive number or an array of shape "
                            f"{tuple(shape)}; got {type(value).__name__}")
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"Rescaled.{where} must hold real numbers; got dtype {arr.dtype}")
        if arr.ndim and arr.shape != tuple(shape):
            raise ValueError(f"Rescaled.{where} must be a number or have the parameter's shape "
                             f"{tuple(shape)}; got {arr.shape}")
        arr = np.array(np.broadcast_to(arr.astype(np.float64), tuple(shape)))
        bad = arr[~(np.isfinite(arr) & (arr > 0))]
        if bad.size:
            raise ValueError(f"Rescaled.{where} must be finite and > 0 everywhere (a zero scale "
                             f"freezes the weight, a negative one flips it); got {bad.flat[0]!r}")
        arr.setflags(write=False)
        out[key] = arr
    return out


@dataclass(frozen=True)
class Rescaled(Block):
    r"""``block`` with stored parameters :math:`P` and block parameters :math:`W = s \odot P`.

    Parameters
    ----------
    block : Block
        Any block (``param_shapes``, ``init``, ``forward``, ``backward``).
    scales : dict
        Tree of ``block.param_shapes()``; each leaf a positive number or an array of the
        parameter's shape.
    backend : str or None
        None keeps the block's own; a name sets the block's ``backend`` field (for blocks that
        have one).

    Notes
    -----
    ``forward(params, *inputs) -> (out, cache)`` and ``backward(params, cache, grad_out) ->
    (grads, grad_inputs)`` have the block's signature; ``grads`` are with respect to the stored
    :math:`P`. :meth:`block_params` and :meth:`stored_params` convert between the two trees.
    """

    block: Any
    scales: Any = field(compare=False)
    backend: Any = None

    def __post_init__(self):
        for name in ("param_shapes", "init", "forward", "backward"):
            if not callable(getattr(self.block, name, None)):
                raise TypeError(f"Rescaled.block must be a block with {name}(); got "
                                f"{type(self.block).__name__}")
        if self.backend is not None:
            check_backend(self.backend, "Rescaled")
            fields = getattr(self.block, "__dataclass_fields__", {})
            if "backend" not in fields:
                raise ValueError(f"Rescaled.backend: {type(self.block).__name__} has no backend "
                                 "to set; leave backend=None")
            object.__setattr__(self, "block", replace(self.block, backend=self.backend))
        object.__setattr__(self, "scales",
                           _check_scales(self.scales, self.block.param_shapes()))

    def param_shapes(self) -> dict:
        return self.block.param_shapes()

    def block_params(self, params) -> dict:
        """The block's own parameters :math:`W = s \\odot P`."""
        check_params(params, self.param_shapes(), "Rescaled", exact=True)
        return tree_map2(lambda s, p: s * np.asarray(p, np.float64), self.scales, params)

    def stored_params(self, block_params) -> dict:
        """:math:`P = W / s` for the block's parameters ``W``."""
        check_params(block_params, self.param_shapes(), "Rescaled", path="block_params",
                     exact=True)
        return tree_map2(lambda s, w: np.asarray(w, np.float64) / s, self.scales, block_params)

    def init(self, rng) -> dict:
        """The block's own draw, divided by the scales (the same initial function)."""
        return self.stored_params(self.block.init(rng))

    def forward(self, params, *inputs, **optional_inputs):
        W = self.block_params(params)
        out, cache = self.block.forward(W, *inputs, **optional_inputs)
        return out, RescaledCache(cache, W)

    def backward(self, params, cache: RescaledCache, grad_out):
        check_cache(cache, RescaledCache, "Rescaled")
        grads, grad_inputs = self.block.backward(cache.block_params, cache.inner, grad_out)
        # reverses `W = s * P`
        return tree_map2(lambda s, g: s * g, self.scales, grads), grad_inputs


def standard_parametrization(block, backend=None) -> Rescaled:
    """``block`` trained through its effective weights (torch's parametrisation).

    The scales are ``1 / block.weight_normalization()``, so the stored parameters are the
    weights the forward pass actually multiplies by. Blocks without ``weight_normalization``
    (the torch-style ones, whose stored weights are already the effective ones) are refused.
    """
    norm = getattr(block, "weight_normalization", None)
    if not callable(norm):
        raise TypeError(f"standard_parametrization: {type(block).__name__} has no "
                        "weight_normalization(); its stored weights are already the ones its "
                        "forward multiplies by (or it does not say which constants it applies)")
    return Rescaled(block, tree_map(lambda c: 1.0 / np.asarray(c, np.float64), norm()),
                    backend=backend)
