"""Boundary validation shared by every public entry point.

Every check raises ``ValueError`` or ``TypeError`` whose message names the offending argument and
says how to fix it. Internal code calls these once, at the public boundary, never in hot loops.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_float64",
    "as_index",
    "as_rng",
    "check_alloc",
    "check_bool",
    "check_cache",
    "check_choice",
    "check_finite",
    "check_graph",
    "check_int",
    "check_nonnegative",
    "check_params",
    "check_positive",
    "check_shape",
    "cotangent",
    "edge_array",
    "grad_out",
    "grad_outs",
    "graph_array",
    "node_array",
    "positions",
]


def as_float64(x, name: str, *, ndim: int | tuple[int, ...] | None = None, finite: bool = True):
    """Convert ``x`` to a C-contiguous float64 array, checking rank and finiteness.

    Integer and float32 inputs are converted exactly. Complex or non-numeric input is rejected.
    """
    if isinstance(x, np.ndarray) and x.dtype == np.float64:
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise TypeError(
                f"{name} must be array-like of real numbers; got {type(x).__name__}") from exc
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} must hold real numbers (float or int); got dtype {arr.dtype}. "
                "Convert it with np.asarray(..., dtype=np.float64)."
            )
        arr = arr.astype(np.float64)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(str(a) for a in allowed)} dimensions; "
                f"got shape {arr.shape}"
            )
    if finite:
        check_finite(arr, name)
    # np.ascontiguousarray would turn a 0-d array into shape (1,)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if ``arr`` holds NaN or inf."""
    # A sum is finite only if every term is (NaN and inf propagate), and it reads the array
    # once without a temporary; a non-finite sum (NaN/inf, or finite terms that overflow) is
    # settled by the elementwise test.
    if not arr.size:
        return
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is no error here
        total = arr.sum()
    if not np.isfinite(total) and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or inf (first at index {tuple(int(b) for b in bad)}); "
            "the oracle refuses non-finite input: clean the data first"
        )


def check_shape(arr: np.ndarray, shape: tuple, name: str) -> None:
    """Check ``arr.shape`` against ``shape`` where ``None`` entries match anything."""
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}; got {arr.shape}")


def as_index(x, name: str, *, size: int | None = None, ndim: int = 1,
             size_name: str | None = None):
    """Convert ``x`` to an int64 array, rejecting floats, bools, negatives and ``>= size``.

    ``size_name`` names the quantity ``size`` comes from (``"num_nodes"``) in the range error.
    Unsigned input above the int64 range is refused instead of wrapping to negative numbers.
    """
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise TypeError(
            f"{name} must be a rectangular integer array; got {type(x).__name__}") from exc
    empty_float = arr.dtype.kind == "f" and arr.size == 0  # np.zeros((2, 0)) is a valid index
    if arr.dtype == bool or (arr.dtype.kind not in "iu" and not empty_float):
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            raise TypeError(
                f"{name} must be an integer array; got dtype {arr.dtype}. "
                f"Use {name}.astype(np.int64)"
            )
        raise TypeError(f"{name} must be an integer array (int64); got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds index {int(arr.max())}, beyond the int64 range")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size:
        lo = int(arr.min())
        if lo < 0:
            raise ValueError(f"{name} holds a negative index ({lo}); indices must be >= 0")
        if size is not None:
            hi = int(arr.max())
            if hi >= size:
                what = f"{size_name}={size}" if size_name else f"size {size}"
                raise ValueError(
                    f"{name} holds index {hi}, out of range for {what}; "
                    "indices must be < the number of rows they address"
                )
    return arr


def check_positive(value, name: str) -> float:
    """Return ``value`` as float, raising if it is not a finite positive real."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value}")
    return v


def check_int(value, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Return ``value`` as int, raising if it is not an integer in ``[minimum, maximum]``.

    Floats (even ``2.0``) and bools are refused: a size written as a float is usually a bug.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {v}")
    return v


# --- sizes, choices, randomness ----------------------------------------------------------------

_ITEM_BYTES = 8


def _memory_bytes() -> int:
    """Physical memory of this machine (falls back to 1 TiB where the OS does not say)."""
    try:
        import os

        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 40


def check_alloc(shape, name: str, *, itemsize: int = _ITEM_BYTES) -> tuple:
    """Refuse, before allocating, an array of ``shape`` that cannot fit in memory.

    ``name`` says which argument asked for the size (e.g. ``"num_nodes"``), so the error points at
    the input a user can change rather than at a NumPy allocation deep inside a layer.
    """
    dims = tuple(int(s) for s in shape)
    total = 1
    for s in dims:
        if s < 0:
            raise ValueError(f"{name} gives a negative size {s}")
        total *= s
    need = total * itemsize
    have = _memory_bytes()
    if need > have:
        raise ValueError(
            f"{name} asks for an array of shape {dims} ({need / 2**30:.3g} GiB), more than this "
            f"machine's memory ({have / 2**30:.3g} GiB); use a smaller size"
        )
    return dims


def check_choice(value, name: str, choices) -> object:
    """Return ``value`` if it is one of ``choices``; the error lists them."""
    choices = tuple(choices)
    try:
        # True == 1 in Python: a bool matches only a bool choice, and vice versa
        ok = any(
            isinstance(value, bool) == isinstance(c, bool) and bool(c == value) for c in choices
        )
    except (TypeError, ValueError):  # incomparable (arrays, odd objects)
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """Return ``value`` if it is a ``bool`` (NumPy bools accepted); ints and strings are refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {value!r}")


def as_rng(rng, name: str = "rng") -> np.random.Generator:
    """A ``np.random.Generator`` from a Generator or an integer seed (``default_rng(seed)``).

    Nothing here touches NumPy's global random state, so a seed gives the same stream on every run.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and int(rng) >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"{name} must be a numpy.random.Generator (e.g. np.random.default_rng(0)) or a "
        f"non-negative int seed; got {type(rng).__name__}"
    )


# --- graphs and per-node / per-edge arrays ---------------------------------------------------


def check_graph(graph, name: str = "graph"):
    """Return ``graph`` as a :class:`~geomp_ref.graph.Graph` whose indices are known to be valid.

    A graph built by :func:`~geomp_ref.graph.make_graph` (or a builder) carries a seal over its
    read-only arrays and is accepted in O(1). Anything else that is a ``Graph`` (a hand-built
    ``Graph(...)``, ``g._replace(...)``) is range-checked in full and its CSR caches recomputed
    and compared, so no path hands a kernel an out-of-range index; the errors name
    ``<name>.<field>``. The returned graph is the sealed equivalent.
    """
    from .graph import Graph, _checked

    if not isinstance(graph, Graph):
        raise TypeError(
            f"{name} must be a Graph built by geomp_ref.make_graph (or radius_graph, "
            f"complete_graph); got {type(graph).__name__}"
        )
    return _checked(graph, name)


def _trailing(width) -> tuple:
    if width is None:
        return ()
    if isinstance(width, (tuple, list)):
        return tuple(width)
    return (width,)


def _rows_array(x, name, rows, rows_name, width, ndim):
    trailing = _trailing(width)
    want_ndim = ndim if ndim is not None else (1 + len(trailing) if width is not None else None)
    arr = as_float64(x, name, ndim=want_ndim)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array with one row per {rows_name}; got a scalar")
    shape = (rows,) + (trailing if width is not None else tuple([None] * (arr.ndim - 1)))
    if width is not None and want_ndim is not None and len(shape) < want_ndim:
        shape = shape + (None,) * (want_ndim - len(shape))
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(
            f"{name} must have shape {want} (one row per {rows_name}; the graph has {rows} "
            f"{rows_name}s); got {arr.shape}"
        )
    return arr


def node_array(x, name: str, graph, width=None, *, ndim: int | None = None) -> np.ndarray:
    """``x`` as float64 with one finite row per node: shape ``(N,) + width``.

    ``width`` is an int, a tuple of trailing sizes (``None`` entries match anything) or ``None``
    (any trailing shape; ``ndim`` then fixes the rank).
    """
    return _rows_array(x, name, graph.num_nodes, "node", width, ndim)


def edge_array(x, name: str, graph, width=None, *, ndim: int | None = None) -> np.ndarray:
    """``x`` as float64 with one finite row per edge: shape ``(E,) + width``."""
    return _rows_array(x, name, graph.num_edges, "edge", width, ndim)


def graph_array(x, name: str, graph, width=None, *, ndim: int | None = None) -> np.ndarray:
    """``x`` as float64 with one finite row per graph of the batch: shape ``(B,) + width``."""
    return _rows_array(x, name, graph.num_graphs, "graph", width, ndim)


def positions(pos, graph, dim=None, name: str = "pos") -> np.ndarray:
    """Node positions as float64 of shape ``(N, D)``; ``dim`` is an int or a tuple of allowed D."""
    arr = _rows_array(pos, name, graph.num_nodes, "node", None, 2)
    if dim is not None:
        allowed = (dim,) if isinstance(dim, int) else tuple(dim)
        if arr.shape[1] not in allowed:
            raise ValueError(
                f"{name} must have shape (num_nodes, D) with D in {allowed} = "
                f"({graph.num_nodes}, {' or '.join(map(str, allowed))}); got {arr.shape}"
            )
    return arr


# --- parameters, cotangents, caches ----------------------------------------------------------


def check_params(params, expected: dict, owner: str, *, path: str = "params",
                 exact: bool = False) -> None:
    """Check ``params`` against a block's declared shapes (a dict of shapes or nested dicts).

    Missing keys, unexpected keys, leaves that are not arrays (``None``, lists of arrays), wrong
    shapes and NaN/inf each get an error naming the entry and the fix. ``exact=True`` (for blocks
    that declare their whole tree) also refuses keys that the block does not declare.
    """
    if not isinstance(params, dict):
        raise TypeError(
            f"{path} of {owner} must be a dict as returned by {owner}.init(rng); "
            f"got {type(params).__name__}"
        )
    missing = [k for k in expected if k not in params]
    if missing:
        raise ValueError(
            f"{path} of {owner} lacks key(s) {missing}; build params with {owner}.init(rng) "
            f"(expected keys {sorted(expected)})"
        )
    extra = [k for k in params if k not in expected]
    if exact and extra:
        raise ValueError(
            f"{path} of {owner} has unexpected key(s) {sorted(map(str, extra))}; "
            f"expected exactly {sorted(expected)}"
        )
    for key, shape in expected.items():
        value = params[key]
        where = f"{path}[{key!r}]"
        if isinstance(shape, dict):
            check_params(value, shape, owner, path=where, exact=exact)
            continue
        if not isinstance(value, (np.ndarray, numbers.Real)) or isinstance(value, bool):
            raise TypeError(
                f"{where} of {owner} must be a float ndarray of shape {tuple(shape)}; "
                f"got {type(value).__name__}"
            )
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{where} of {owner} must hold real numbers; got dtype {arr.dtype}")
        if arr.shape != tuple(shape):
            raise ValueError(
                f"{where} of {owner} must have shape {tuple(shape)}; got {arr.shape}. "
                f"Build params with {owner}.init(rng) for this configuration"
            )
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(f"{where} of {owner} contains NaN or inf")


def grad_out(g, shape, owner: str, name: str = "grad_out") -> np.ndarray:
    """The cotangent of one forward output as float64 of exactly ``shape``; ``None`` = zeros."""
    shape = tuple(shape)
    if g is None:
        return np.zeros(shape)
    arr = as_float64(g, name)
    if arr.shape != shape:
        raise ValueError(
            f"{name} of {owner}.backward must have the shape of the forward output {shape}; "
            f"got {arr.shape}"
        )
    return arr


def grad_outs(g, shapes, owner: str, name: str = "grad_out") -> tuple:
    """Cotangents of a tuple of outputs: a tuple (or list) of the same length, ``None`` = zeros."""
    shapes = tuple(tuple(s) for s in shapes)
    if not isinstance(g, (tuple, list)) or len(g) != len(shapes):
        raise TypeError(
            f"{name} of {owner}.backward must be a tuple of {len(shapes)} arrays (or None), one "
            f"per forward output; got {type(g).__name__}"
            + (f" of length {len(g)}" if isinstance(g, (tuple, list)) else "")
        )
    return tuple(grad_out(gk, s, owner, f"{name}[{k}]") for k, (gk, s) in enumerate(zip(g, shapes)))


def check_cache(cache, cls, owner: str) -> None:
    """Raise unless ``cache`` is the ``cls`` NamedTuple that ``owner.forward`` returned."""
    if not isinstance(cache, cls):
        raise TypeError(
            f"cache of {owner}.backward must be the {cls.__name__} returned by {owner}.forward "
            f"with the same params and inputs; got {type(cache).__name__}"
        )


# --- primitives (ops) ---------------------------------------------------------------------------


def cotangent(g, shape, op: str, name: str = "grad_out", *, keep_float32: bool = False):
    """The cotangent ``g`` of the primitive ``op``'s output, checked against that output's shape.

    ``shape`` may end with ``...`` (any trailing dimensions, for when only the leading size is
    known). ``keep_float32`` keeps a float32 array as float32 (backend kernels take both).
    """
    if keep_float32 and isinstance(g, np.ndarray) and g.dtype == np.float32:
        arr = np.ascontiguousarray(g)
        check_finite(arr, name)
    else:
        arr = as_float64(g, name)
    shape = tuple(shape)
    if shape and shape[-1] is Ellipsis:
        lead = shape[:-1]
        ok = arr.ndim >= len(lead) and arr.shape[: len(lead)] == lead
        want = "(" + ", ".join(map(str, lead)) + ", ...)"
    else:
        ok = arr.shape == shape
        want = str(shape)
    if not ok:
        raise ValueError(
            f"{name} of {op} must have the shape of {op.removesuffix('_vjp')}'s output {want}; "
            f"got {arr.shape}"
        )
    return arr


def check_nonnegative(value, name: str) -> float:
    """Return ``value`` as float, raising if it is not a finite real ``>= 0``."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    return v
