r"""What every block spec shares: ``__call__`` for inference, and small checks used by many blocks.

A block is a frozen dataclass holding hyper-parameters only, with

* ``param_shapes() -> dict``: the complete declared parameter tree (nested dicts of shapes);
* ``init(rng) -> params`` (``rng`` a ``numpy.random.Generator`` or an int seed);
* ``forward(params, [graph,] *inputs) -> (out, cache)`` with a fixed input list (optional inputs
  default to ``None``);
* ``backward(params, cache, grad_out) -> (grad_params, grad_inputs)``, one gradient per forward
  input (``None`` for inputs that were ``None`` or are not differentiable).

Child blocks are held by their parent (built once in ``__post_init__``) and their params live
under the child's name; :class:`geomp_ref.layers.mlp.MLP` is the smallest example.
"""

from __future__ import annotations

import numpy as np

from .. import backends as _backends
from .._validate import (
    check_alloc,
    check_choice,
    check_params,  # noqa: F401  (re-exported for the blocks)
)

__all__ = ["Block", "check_backend", "check_optional", "check_params", "check_real", "linear_init"]


class Block:
    """Mixin: ``block(params, *inputs)`` returns the forward output without the cache."""

    def __call__(self, params, *inputs, **optional_inputs):
        return self.forward(params, *inputs, **optional_inputs)[0]


def check_backend(backend: str, owner: str) -> None:
    """Refuse a backend name that :mod:`geomp_ref.backends` does not know (names the field)."""
    check_choice(backend, f"{owner}.backend", _backends.NAMES)


def check_optional(value, name: str, needed: bool, option: str, owner: str) -> None:
    """An optional forward input must be given exactly when the option that reads it is on.

    ``option`` describes the setting, e.g. ``"velocity=True"``; the error names the input, the
    block and the option so the fix is obvious (pass the input, or change the option).
    """
    if needed and value is None:
        raise TypeError(f"{owner}.forward needs {name} when {option}; got None")
    if not needed and value is not None:
        raise ValueError(
            f"{owner}.forward got {name}, which this configuration does not use ({option} is "
            f"off); pass {name}=None or turn the option on"
        )


def check_real(value, name: str) -> float:
    """``value`` as a float if it is a finite real number of any sign (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return float(value)


def linear_init(rng: np.random.Generator, fan_in: int, fan_out: int, bias: bool = True, *,
                name: str = "layer sizes"):
    """``torch.nn.Linear``'s default draw, stored (in, out): ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    for the weight, then the bias (``None`` when ``bias`` is False). ``name`` (the fields that
    set the sizes) is named if the weight cannot fit in memory."""
    check_alloc((fan_in, fan_out), name)
    bound = 1.0 / np.sqrt(fan_in)
    W = rng.uniform(-bound, bound, size=(fan_in, fan_out))
    return W, (rng.uniform(-bound, bound, size=(fan_out,)) if bias else None)
