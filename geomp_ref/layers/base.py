"""What every block spec shares: ``__call__`` for inference and parameter validation.

Blocks are frozen dataclasses (hyper-parameters only) with ``init(rng)``, ``forward(params,
[graph,] *inputs) -> (out, cache)`` and ``backward(params, cache, grad_out) -> (grad_params,
grad_inputs)``; see DESIGN.md §3.3 and :mod:`geomp_ref.layers.mlp`, the smallest example.
"""

from __future__ import annotations

import numpy as np

from .. import backends as _backends
from .._validate import check_params  # noqa: F401  (re-exported: blocks import it from here)

__all__ = ["Block", "check_params", "check_backend"]


class Block:
    """Mixin: ``block(params, *inputs)`` returns the forward output without the cache."""

    def __call__(self, params, *inputs):
        return self.forward(params, *inputs)[0]


def check_backend(backend: str, owner: str) -> None:
    if backend not in _backends.NAMES:
        raise ValueError(f"{owner}.backend must be one of {_backends.NAMES}; got {backend!r}")
