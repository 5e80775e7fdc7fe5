"""How the kit calls a block (with or without a graph) and compares what it returns."""

from __future__ import annotations

import numpy as np

from .._validate import check_graph


def as_tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def check_block(layer, inputs, graph, name: str = "layer") -> tuple:
    """Refuse what cannot be a block problem; return ``inputs`` as a tuple."""
    if not all(callable(getattr(layer, m, None)) for m in ("forward", "backward")):
        raise TypeError(
            f"{name} must be a block with forward(params, [graph,] *inputs) and "
            f"backward(params, cache, grad_out); got {type(layer).__name__}"
        )
    if graph is not None:
        check_graph(graph)
    if isinstance(inputs, np.ndarray) or not isinstance(inputs, (tuple, list)):
        raise TypeError(
            "inputs must be a tuple with one entry per forward input (None for an unused "
            f"optional input); got {type(inputs).__name__}. Wrap a single array as (x,)"
        )
    return tuple(inputs)


def check_kinds(kinds, count: int, name: str, what: str) -> tuple:
    if kinds is None:
        return (None,) * count
    if isinstance(kinds, str) or not isinstance(kinds, (tuple, list)):
        raise TypeError(f"{name} must be a tuple with one entry per {what}; got {kinds!r}")
    if len(kinds) != count:
        raise ValueError(
            f"{name} has {len(kinds)} entries but there are {count} {what}s; give one entry per "
            f"{what} (any kind for a None entry)"
        )
    return tuple(kinds)


def call_forward(layer, params, graph, inputs):
    if graph is None:
        return layer.forward(params, *inputs)
    return layer.forward(params, graph, *inputs)


def rel_err(a, b, floor: float = 0.0) -> float:
    """Max absolute difference relative to the max of ``|b|`` (never below ``floor``); ``inf``
    if the shapes differ or one side is ``None``."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else float("inf")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(b))), float(floor))
    diff = float(np.max(np.abs(a - b)))
    if not np.isfinite(diff):
        return 0.0 if np.array_equal(a, b, equal_nan=True) else float("inf")
    return diff / scale if scale > 0 else diff


def max_rel_err(got: tuple, want: tuple) -> float:
    """:func:`rel_err` over two tuples of outputs; ``inf`` if their lengths differ."""
    if len(got) != len(want):
        return float("inf")
    return max((rel_err(a, b) for a, b in zip(got, want)), default=0.0)
