"""What every block spec shares: ``__call__`` for inference and parameter validation.

Blocks are frozen dataclasses (hyper-parameters only) with ``init(rng)``, ``forward(params,
[graph,] *inputs) -> (out, cache)`` and ``backward(params, cache, grad_out) -> (grad_params,
grad_inputs)``; see DESIGN.md §3.3 and :mod:`geomp_ref.layers.mlp`, the smallest example.
"""

from __future__ import annotations

import numpy as np

from .. import backends as _backends

__all__ = ["Block", "check_params", "check_backend"]


class Block:
    """Mixin: ``block(params, *inputs)`` returns the forward output without the cache."""

    def __call__(self, params, *inputs):
        return self.forward(params, *inputs)[0]


def check_backend(backend: str, owner: str) -> None:
    if backend not in _backends.NAMES:
        raise ValueError(f"{owner}.backend must be one of {_backends.NAMES}; got {backend!r}")


def check_params(params, expected: dict, owner: str) -> None:
    """Check that ``params`` has the keys and shapes of ``expected`` (a dict of shapes or dicts)."""
    if not isinstance(params, dict):
        raise TypeError(f"params of {owner} must be a dict as returned by {owner}.init; got {type(params).__name__}")
    for key, shape in expected.items():
        if key not in params:
            raise ValueError(f"params of {owner} lacks key {key!r}; build params with {owner}.init(rng)")
        if isinstance(shape, dict):
            check_params(params[key], shape, f"{owner}[{key!r}]")
            continue
        arr = params[key]
        if np.shape(arr) != tuple(shape):
            raise ValueError(f"params[{key!r}] of {owner} must have shape {tuple(shape)}; got {np.shape(arr)}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"params[{key!r}] of {owner} contains NaN or inf")
