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
    "check_finite",
    "check_shape",
    "check_positive",
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
            raise TypeError(f"{name} must be array-like of real numbers; got {type(x).__name__}") from exc
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
    if arr.size and not np.isfinite(arr).all():
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


def as_index(x, name: str, *, size: int | None = None, ndim: int = 1):
    """Convert ``x`` to an int64 array, rejecting floats with fractions, negatives and ``>= size``."""
    arr = np.asarray(x)
    if arr.dtype == bool or (arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and arr.size == 0)):
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            raise TypeError(
                f"{name} must be an integer array; got dtype {arr.dtype}. "
                f"Use {name}.astype(np.int64)"
            )
        raise TypeError(f"{name} must be an integer array (int64); got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {arr.shape}")
    if arr.size:
        lo = int(arr.min())
        if lo < 0:
            raise ValueError(f"{name} holds a negative index ({lo}); indices must be >= 0")
        if size is not None:
            hi = int(arr.max())
            if hi >= size:
                raise ValueError(
                    f"{name} holds index {hi}, out of range for size {size}; "
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


def check_int(value, name: str, *, minimum: int = 0) -> int:
    """Return ``value`` as int, raising if it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {v}")
    return v
