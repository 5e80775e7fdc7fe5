r"""Multi-layer perceptron: the smallest example of the block convention.

.. math::

    h^{(0)} = x, \qquad z^{(k)} = h^{(k)} W_k + b_k, \qquad
    h^{(k+1)} = \sigma(z^{(k)}) \ (\text{all but the last layer, unless } activate\_last),

with weights stored (in, out). Backward (reverse line order):
:math:`\bar z^{(k)} = \sigma'(z^{(k)}) \odot \bar h^{(k+1)}`, :math:`\bar W_k = h^{(k)T} \bar z^{(k)}`,
:math:`\bar b_k = \sum \bar z^{(k)}`, :math:`\bar h^{(k)} = \bar z^{(k)} W_k^T`.
Proof: ``derivations/dense_activations.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_float64
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
        Layer widths including input and output (at least two entries).
    activation : str
        Name from :data:`geomp_ref.ops.activations.NAMES`.
    activate_last : bool
        Also apply the activation after the last layer.
    bias : bool
        Affine layers (``True``) or linear ones.
    init_scale : str
        ``"torch"``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` like ``torch.nn.Linear``.

    Params: ``{"W0": (sizes[0], sizes[1]), "b0": (sizes[1],), "W1": ..., ...}``.
    """

    sizes: tuple
    activation: str = "silu"
    activate_last: bool = False
    bias: bool = True

    def __post_init__(self):
        sizes = tuple(int(s) for s in self.sizes)
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ValueError(f"MLP.sizes must list >= 2 positive widths; got {self.sizes}")
        object.__setattr__(self, "sizes", sizes)
        activations.get(self.activation)  # validates the name

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def _shapes(self) -> dict:
        shapes = {}
        for k in range(self.num_layers):
            shapes[f"W{k}"] = (self.sizes[k], self.sizes[k + 1])
            if self.bias:
                shapes[f"b{k}"] = (self.sizes[k + 1],)
        return shapes

    def init(self, rng: np.random.Generator) -> dict:
        params = {}
        for k in range(self.num_layers):
            bound = 1.0 / np.sqrt(self.sizes[k])
            params[f"W{k}"] = rng.uniform(-bound, bound, size=(self.sizes[k], self.sizes[k + 1]))
            if self.bias:
                params[f"b{k}"] = rng.uniform(-bound, bound, size=(self.sizes[k + 1],))
        return params

    def forward(self, params, x):
        check_params(params, self._shapes(), "MLP")
        x = as_float64(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.sizes[0]:
            raise ValueError(f"x must have shape (..., {self.sizes[0]}); got {x.shape}")
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
        _, act_vjp = activations.get(self.activation)
        grads = {}
        g = np.asarray(grad_out, dtype=np.float64)
        for k in reversed(range(self.num_layers)):
            last = k == self.num_layers - 1
            if not last or self.activate_last:
                g = act_vjp(cache.z[k], g)  # reverses h = act(z)
            gx, gW, gb = dense.linear_vjp(cache.h[k], params[f"W{k}"], params.get(f"b{k}"), g)
            grads[f"W{k}"] = gW
            if self.bias:
                grads[f"b{k}"] = gb
            g = gx  # reverses z = h @ W + b
        return grads, (g,)
