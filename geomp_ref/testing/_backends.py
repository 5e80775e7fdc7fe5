"""Backend agreement: a block's outputs and gradients on every backend against NumPy."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..params import flatten
from ._blocks import as_tuple, call_forward, check_block, rel_err


def _has_backend_field(layer) -> bool:
    return dataclasses.is_dataclass(layer) and any(
        f.name == "backend" for f in dataclasses.fields(layer))


def _entries(prefix: str, obj) -> list:
    """``(path, array or None)`` for every leaf of an output / gradient structure, in order.

    ``None`` leaves are kept, so a backend that returns ``None`` where NumPy returns an array (or
    drops or adds an entry) is seen as a different structure, not silently skipped.
    """
    if obj is None:
        return [(prefix, None)]
    if isinstance(obj, dict):
        return [(f"{prefix}/{k}", v) for k, v in flatten(obj).items()]
    if isinstance(obj, (tuple, list)):
        out = []
        for k, o in enumerate(obj):
            out.extend(_entries(f"{prefix}[{k}]", o))
        return out
    return [(prefix, np.asarray(obj))]


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


#: A gradient entry is judged relative to max(its own largest |value|, GRAD_FLOOR times the
#: largest |gradient| of the block): a gradient that is zero in exact arithmetic (e.g. the bias of
#: a layer followed by an instance norm) is a sum that cancels to rounding noise, which no two
#: evaluation orders share, so it can only be compared against the scale of the gradients around
#: it (as :func:`geomp_ref.interop.compare` does). At the default tolerance 1e-13 the floor admits
#: absolute differences of 1e-16 times the largest gradient: below one rounding unit at that scale.
GRAD_FLOOR = 1e-3


def _compare(got: list, ref: list) -> float:
    """Max :func:`rel_err` over matching entries (gradients with :data:`GRAD_FLOOR`); ``inf`` if
    the structures differ."""
    if [p for p, _ in got] != [p for p, _ in ref]:
        return float("inf")
    grads = [np.max(np.abs(b)) for p, b in ref
             if p.startswith("grad") and b is not None and np.size(b)]
    floor = GRAD_FLOOR * float(max(grads, default=0.0))
    return max((rel_err(a, b, floor if p.startswith("grad") else 0.0)
                for (p, a), (_, b) in zip(got, ref)), default=0.0)


def backend_errors(layer, params, graph, inputs, *, backends=None, rng=None) -> dict[str, float]:
    """Max relative difference of outputs and all gradients of each backend against NumPy.

    Each backend runs twice; two runs that are not bit-identical report ``inf``, and so does a
    backend that returns a different structure than NumPy (another number of outputs or
    gradients, ``None`` where NumPy has an array, other shapes). Blocks without a ``backend``
    field report ``{}``. Gradients are measured against their own scale, but never against less
    than :data:`GRAD_FLOOR` times the block's largest gradient (exactly-zero gradients).

    Parameters
    ----------
    backends : sequence of str, optional
        Backends to compare (default: every available one). ``"numpy"`` itself is skipped.

    Raises
    ------
    ValueError
        For a block with a ``backend`` field, when no backend besides NumPy is left to compare
        (an empty ``backends``, or only NumPy available): a check that compares nothing must not
        pass.
    """
    from .. import backends as _backends

    inputs = check_block(layer, inputs, graph)
    if not _has_backend_field(layer):
        return {}
    if backends is None:
        names = _backends.available()
    elif isinstance(backends, str) or not isinstance(backends, (tuple, list)):
        raise TypeError(
            f"backends must be a list of backend names such as ['numba']; got {backends!r}")
    else:
        names = list(backends)
    for b in names:
        _backends.get(b)  # unknown or unavailable: a named error, never a silent skip
    names = [b for b in names if b != "numpy"]
    if not names:
        raise ValueError(
            f"backends: no backend besides numpy to compare for {type(layer).__name__} (got "
            f"{backends!r}; available {_backends.available()}); name at least one, e.g. ['numba']"
        )

    def run(b):
        lay = dataclasses.replace(layer, backend=b)
        out, cache = call_forward(lay, params, graph, inputs)
        cot_rng = np.random.default_rng(1234)
        cots = tuple(None if o is None else cot_rng.normal(size=np.shape(o)) for o in as_tuple(out))
        gp, gi = lay.backward(params, cache, cots if isinstance(out, tuple) else cots[0])
        return _entries("out", out) + _entries("grad_params", gp) + _entries("grad_inputs", gi)

    ref = run("numpy")
    errs = {}
    for b in names:
        r1 = run(b)
        r2 = run(b)
        same = len(r1) == len(r2) and all(p == q and _same(x, y)
                                          for (p, x), (q, y) in zip(r1, r2))
        errs[b] = _compare(r1, ref) if same else float("inf")
    return errs


def assert_backends_agree(layer, params, graph, inputs, *, backends=None, rtol: float = 1e-13):
    """Raise ``AssertionError`` unless every backend matches NumPy within ``rtol`` (relative to
    each array's scale) and repeats bit-identically."""
    errs = backend_errors(layer, params, graph, inputs, backends=backends)
    bad = {k: v for k, v in errs.items() if not v <= rtol}
    if bad:
        raise AssertionError(f"backends disagree with NumPy: {bad} (rtol {rtol})")
    return errs
