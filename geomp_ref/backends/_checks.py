"""Argument checks shared by the host backends (``numpy_backend``, ``numba_cpu``).

They are cheap: dtypes, shapes and lengths, plus one pass over an index array where one is given
(it must be read anyway). A :class:`~geomp_ref.graph.Graph` sealed by
:func:`~geomp_ref.graph.make_graph` is trusted in O(1); any other ``Graph`` is range-checked in
full by :func:`geomp_ref._validate.check_graph` before a kernel reads it. So neither a hand-built
graph nor a raw index array can make a kernel read or write out of bounds, and negative indices
never wrap around.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import check_alloc, check_graph

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(x, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32/float64 array with at least one dimension.

    Integers are refused (a sum of ints would silently stay an int); convert them first.
    """
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a float32 or float64 array") from exc
    if x.dtype not in FLOATS:
        raise TypeError(
            f"{name} must be a float32 or float64 array; got dtype {x.dtype}. "
            f"Convert it with np.asarray({name}, dtype=np.float64)"
        )
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (rows); got a scalar")
    return np.ascontiguousarray(x)


def as_2d(x: np.ndarray) -> np.ndarray:
    """``x`` as (rows, channels); the channel count is spelled out so that empty arrays reshape."""
    return x if x.ndim == 2 else x.reshape(x.shape[0], math.prod(x.shape[1:]))


def graph(g):
    """The sealed graph (O(1) for graphs from make_graph; a full range check otherwise)."""
    return check_graph(g, "graph")


def index_array(index, name: str, rows: int) -> np.ndarray:
    """A 1-D int64 index of length ``rows`` (range checked separately, see :func:`in_range`)."""
    if not isinstance(index, np.ndarray):
        try:
            index = np.asarray(index)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a 1-D integer array (int64)") from exc
    if index.dtype.kind not in "iu" or index.dtype == np.uint64:
        raise TypeError(
            f"{name} must be an integer array (int64); got dtype {index.dtype}. "
            f"Use {name}.astype(np.int64)"
        )
    if index.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {index.shape}")
    if index.shape[0] != rows:
        raise ValueError(
            f"{name} has length {index.shape[0]} but values has {rows} rows; they must match"
        )
    return np.ascontiguousarray(index, dtype=np.int64)


def in_range(index: np.ndarray, name: str, num_segments: int) -> None:
    """Raise unless every entry of ``index`` lies in ``[0, num_segments)``."""
    if index.size:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= num_segments:
            bad = lo if lo < 0 else hi
            pos = int(np.flatnonzero(index == bad)[0])
            raise ValueError(
                f"{name} holds {bad} at position {pos}, out of range for "
                f"num_segments={num_segments}; indices must satisfy 0 <= {name} < num_segments"
            )


def num_segments(num, name: str, tail: tuple = ()) -> int:
    """A non-negative int whose output ``(num, *tail)`` fits in memory."""
    if isinstance(num, (bool, np.bool_)) or not isinstance(num, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(num).__name__}")
    if num < 0:
        raise ValueError(f"{name} must be >= 0; got {num}")
    check_alloc((int(num),) + tuple(tail), name)
    return int(num)


def out_array(out, shape: tuple, dtype, name: str = "out") -> np.ndarray:
    """Allocate the output, or check a caller's ``out=`` (C-contiguous, writeable, shape, dtype)."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array; got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}; got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous; pass np.ascontiguousarray(...) or a new array")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only; pass a writeable array")
    return out


def edge_rows(m: np.ndarray, name: str, g) -> None:
    if m.shape[0] != g.num_edges:
        raise ValueError(f"{name} must have num_edges = {g.num_edges} rows; got shape {m.shape}")


def weighted_operands(g, f: np.ndarray, w: np.ndarray) -> None:
    """Shapes and dtypes of ``weighted_aggregate(graph, f, w)``."""
    n, e = g.num_nodes, g.num_edges
    if f.ndim != 2 or f.shape[0] != n:
        raise ValueError(f"f must have shape (num_nodes, C) = ({n}, C); got {f.shape}")
    if w.shape not in ((e,), (e, f.shape[1])):
        raise ValueError(
            f"w must have shape (E,) or (E, C) = ({e},) or ({e}, {f.shape[1]}); got {w.shape}")
    if w.dtype != f.dtype:
        raise TypeError(f"w must have the dtype of f ({f.dtype}); got {w.dtype}")


def product_operands(g, gg: np.ndarray, f: np.ndarray) -> None:
    """Shapes and dtypes of ``edge_product(graph, g, f)``."""
    n = g.num_nodes
    if f.ndim != 2 or f.shape[0] != n:
        raise ValueError(f"f must have shape (num_nodes, C) = ({n}, C); got {f.shape}")
    if gg.shape != f.shape:
        raise ValueError(f"g must have the shape of f {f.shape}; got {gg.shape}")
    if gg.dtype != f.dtype:
        raise TypeError(f"g must have the dtype of f ({f.dtype}); got {gg.dtype}")
