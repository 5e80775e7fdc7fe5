r"""Multi-layer perceptron: the smallest example of the block convention.

.. math::

    h^{(0)} = x, \qquad z^{(k)} = h^{(k)} W_k + b_k, \qquad
    h^{(k+1)} = \sigma(z^{(k)}) \ (\text{all but the last layer, unless } activate\_last),

with weights stored (in, out) (``W_k = torch_linear.weight.T``). Backward (reverse line order):
:math:`\bar z^{(k)} = \sigma'(z^{(k)}) \odot \bar h^{(k+1)}`,
:math:`\bar W_k = h^{(k)T} \bar z^{(k)}`,
:math:`\bar b_k = \sum \bar z^{(k)}`, :math:`\bar h^{(k)} = \bar z^{(k)} W_k^T`.
Proof: ``derivations/dense_activations.py``.

Backends: with ``backend="numpy"`` the activations and their VJPs are the reference functions of
:mod:`geomp_ref.ops.activations`. With another backend each hidden layer runs the matrix product
without its bias, then one fused pass (:func:`geomp_ref.ops.activations.activate`) adds the bias
and evaluates :math:`\sigma(z)` and :math:`\sigma'(z)`; the cache keeps :math:`\sigma'(z)` and
the backward multiplies by it instead of re-evaluating the activation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import backends as _backends
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
from ..ops import activations
from .base import Block, check_backend, check_params

__all__ = ["MLP", "MLPCache"]


class MLPCache(NamedTuple):
    h: tuple  # input of every linear layer, h[0] = x
    z: tuple  # pre-activation of every linear layer
    dz: tuple | None = None  # sigma'(z) of every activated layer (None elsewhere); non-numpy only


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
    backend : str
        Backend of the activations (see the module docstring); default ``"numpy"``.

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
    backend: str = "numpy"

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
        check_backend(self.backend, "MLP")

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
        return self._run(params, x, None)

    def forward_from_first(self, params, z0):
        """:meth:`forward` given the first product ``z0 = x W0`` (bias not added), shape
        (..., sizes[1]).

        For a block that forms ``x W0`` more cheaply than the product itself (EGNN's edge network
        on concatenated node features: two node-sized products and gathers instead of one
        edge-sized product). The cache holds no input; :meth:`backward_to_first` is its backward.
        """
        check_params(params, self.param_shapes(), "MLP", exact=True)
        z0 = as_float64(z0, "z0")
        if z0.ndim == 0 or z0.shape[-1] != self.sizes[1]:
            raise ValueError(f"z0 must have shape (..., {self.sizes[1]}) for MLP; got {z0.shape}")
        return self._run(params, None, np.array(z0, dtype=np.float64, copy=True))

    def _run(self, params, x, z0):
        fused = self.backend != "numpy"
        act, _ = activations.get(self.activation)
        be = _backends.get(self.backend) if fused else None
        hs, zs, ds = [x], [], []
        h = x
        for k in range(self.num_layers):
            W = np.asarray(params[f"W{k}"], dtype=np.float64)
            b = params.get(f"b{k}") if self._biases[k] else None
            b = None if b is None else np.asarray(b, dtype=np.float64)
            last = k == self.num_layers - 1
            activated = not last or self.activate_last
            # params and x were checked by the caller: no second validation
            z = z0 if (k == 0 and z0 is not None) else _product(h, W)
            if activated and fused and hasattr(be, "activation_with_grad"):
                z, h, dz = be.activation_with_grad(self.activation, z, b, overwrite=True)
            else:
                if b is not None:
                    z += b  # in place: the product is a fresh array (same rounding as z + b)
                dz = None
                h = act(z) if activated else z
                if activated and fused:
                    dz = activations.derivative(self.activation, z)
            zs.append(z)
            ds.append(dz)
            if not last:
                hs.append(h)
        return h, MLPCache(tuple(hs), tuple(zs), tuple(ds) if fused else None)

    def backward(self, params, cache: MLPCache, grad_out):
        check_cache(cache, MLPCache, "MLP")
        if cache.h[0] is None:
            raise ValueError("MLP.backward: this cache comes from forward_from_first; use "
                             "backward_to_first")
        return self._back(params, cache, grad_out, first=False)

    def backward_to_first(self, params, cache: MLPCache, grad_out):
        """Backward of :meth:`forward_from_first`: ``(grads, grad_z0)``; ``grads`` has every
        parameter but ``W0`` (whose gradient needs the caller's input)."""
        check_cache(cache, MLPCache, "MLP")
        return self._back(params, cache, grad_out, first=True)

    def _back(self, params, cache: MLPCache, grad_out, first: bool):
        g = _grad_out(grad_out, cache.z[-1].shape, "MLP")
        _, act_vjp = activations.get(self.activation)
        grads = {}
        owned = False  # g is the caller's array until a product replaces it
        for k in reversed(range(self.num_layers)):
            last = k == self.num_layers - 1
            if not last or self.activate_last:
                # reverses h = act(z): the forward's sigma'(z) where it was kept
                if cache.dz is None:
                    g = act_vjp(cache.z[k], g)
                elif owned:
                    g *= cache.dz[k]  # same rounding as g * dz, without a temporary
                else:
                    g = g * cache.dz[k]
            g2 = g.reshape(-1, g.shape[-1])
            if not (first and k == 0):
                x = cache.h[k]
                grads[f"W{k}"] = x.reshape(-1, x.shape[-1]).T @ g2  # reverses z = h @ W + b
            if self._biases[k]:
                grads[f"b{k}"] = g2.sum(axis=0)
            if first and k == 0:
                return grads, (g if g is not grad_out else g.copy())
            g = _product(g, np.asarray(params[f"W{k}"], dtype=np.float64).T)
            owned = True
        return grads, (g,)


def _product(x, W):
    """``x @ W``; an outer product (``W`` with one row) as a broadcast multiplication.

    With one row each entry is a single rounded product either way (bit-identical), but
    OpenBLAS takes 3-10x longer for such a rank-1 product than one multiplication pass (measured
    on the dev box for EGNN's (E, 1) x (1, 64) coordinate-network gradient).
    """
    if W.shape[0] == 1 and x.ndim >= 1 and x.shape[-1] == 1:
        return x * W[0]
    return x @ W
