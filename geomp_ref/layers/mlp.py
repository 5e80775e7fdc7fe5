r"""Multi-layer perceptron: the smallest example of the block convention.

.. math::

    h^{(0)} = x, \qquad z^{(k)} = h^{(k)} W_k + b_k, \qquad
    h^{(k+1)} = \sigma(z^{(k)}) \ (\text{all but the last layer, unless } activate\_last),

with weights stored (in, out) (``W_k = torch_linear.weight.T``). Backward (reverse line order):
:math:`\bar z^{(k)} = \sigma'(z^{(k)}) \odot \bar h^{(k+1)}`,
:math:`\bar W_k = h^{(k)T} \bar z^{(k)}`,
:math:`\bar b_k = \sum \bar z^{(k)}`, :math:`\bar h^{(k)} = \bar z^{(k)} W_k^T`.
Proof: ``derivations/dense_activations.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (
    as_float64,
    as_rng,
    check_alloc,
    check_bool,
    check_cache,
    check_choice,
    check_int,
)
from .._validate import grad_out as _grad_out
from ..ops import activations, dense
from .base import Block, check_params

__all__ = ["MLP", "MLPCache"]


class MLPCache(NamedTuple):
    h: tuple  # input of every linear layer, h[0] = x
    z: tuple  # pre-activation of every linear layer


@dataclass(frozen=True)
class MLP(Block):
    """Dense network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Parameters
    ----------
    sizes : tuple of int
        Layer widths including input and output (at least two entries, each >= 1).
    activation : str
        Name from :data:`geomp_ref.ops.activations.NAMES`.
    activate_last : bool
        Also apply the activation after the last layer.
    bias : bool or tuple of bool
        Affine layers (``True``) or linear ones; a tuple gives one flag per layer (e.g.
        ``(True, False)`` for a last layer without bias, as EGNN's coordinate network).

    Params: ``{"W0": (sizes[0], sizes[1]), "b0": (sizes[1],), "W1": ..., ...}`` (``b<k>`` only
    where layer k has a bias). :meth:`init` draws like ``torch.nn.Linear``:
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    ``forward(params, x) -> (y, cache)`` with ``x`` of shape (..., sizes[0]) and ``y`` (...,
    sizes[-1]); ``backward(params, cache, grad_y) -> (grads, (grad_x,))``.
    """

    sizes: tuple
    activation: str = "silu"
    activate_last: bool = False
    bias: object = True

    def __post_init__(self):
        if not isinstance(self.sizes, (tuple, list)) or len(self.sizes) < 2:
            raise ValueError(
                f"MLP.sizes must list >= 2 widths (input, ..., output); got {self.sizes!r}"
            )
        sizes = tuple(check_int(s, f"MLP.sizes[{k}]", minimum=1) for k, s in enumerate(self.sizes))
        object.__setattr__(self, "sizes", sizes)
        check_choice(self.activation, "MLP.activation", activations.NAMES)
        check_bool(self.activate_last, "MLP.activate_last")
        n = len(sizes) - 1
        if isinstance(self.bias, (tuple, list)):
            if len(self.bias) != n:
                raise ValueError(
                    f"MLP.bias must be a bool or one bool per layer ({n}); got {self.bias!r}"
                )
            flags = tuple(check_bool(b, f"MLP.bias[{k}]") for k, b in enumerate(self.bias))
            object.__setattr__(self, "bias", flags)
        else:
            flags = (check_bool(self.bias, "MLP.bias"),) * n
        object.__setattr__(self, "_biases", flags)

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def param_shapes(self) -> dict:
        shapes = {}
        for k in range(self.num_layers):
            shapes[f"W{k}"] = (self.sizes[k], self.sizes[k + 1])
            if self._biases[k]:
                shapes[f"b{k}"] = (self.sizes[k + 1],)
        return shapes

    def init(self, rng) -> dict:
        rng = as_rng(rng, "rng")
        params = {}
        for k in range(self.num_layers):
            check_alloc((self.sizes[k], self.sizes[k + 1]), f"MLP.sizes[{k}:{k + 2}]")
            bound = 1.0 / np.sqrt(self.sizes[k])
            params[f"W{k}"] = rng.uniform(-bound, bound, size=(self.sizes[k], self.sizes[k + 1]))
            if self._biases[k]:
                params[f"b{k}"] = rng.uniform(-bound, bound, size=(self.sizes[k + 1],))
        return params

    def forward(self, params, x):
        check_params(params, self.param_shapes(), "MLP", exact=True)
        x = as_float64(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.sizes[0]:
            raise ValueError(f"x must have shape (..., {self.sizes[0]}) for MLP; got {x.shape}")
        act, _ = activations.get(self.activation)
        hs, zs = [x], []
        h = x
        for k in range(self.num_layers):
            z = dense.linear(h, params[f"W{k}"], params.get(f"b{k}"))
            zs.append(z)
            last = k == self.num_layers - 1
            h = act(z) if (not last or self.activate_last) else z
            if not last:
                hs.append(h)
        return h, MLPCache(tuple(hs), tuple(zs))

    def backward(self, params, cache: MLPCache, grad_out):
        check_cache(cache, MLPCache, "MLP")
        g = _grad_out(grad_out, cache.z[-1].shape, "MLP")
        _, act_vjp = activations.get(self.activation)
        grads = {}
        for k in reversed(range(self.num_layers)):
            last = k == self.num_layers - 1
            if not last or self.activate_last:
                g = act_vjp(cache.z[k], g)  # reverses h = act(z)
            b = params.get(f"b{k}") if self._biases[k] else None
            gx, gW, gb = dense.linear_vjp(cache.h[k], params[f"W{k}"], b, g)
            grads[f"W{k}"] = gW
            if self._biases[k]:
                grads[f"b{k}"] = gb
            g = gx  # reverses z = h @ W + b
        return grads, (g,)
