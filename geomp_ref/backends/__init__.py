r"""Aggregation backends: the hot loop only, same kernels in every module.

Names: ``"numpy"`` (reference, always present), ``"numba"`` (``numba_cpu.py``:
``njit(parallel=True)`` over receiver CSR segments, no atomics), ``"cuda"`` (``numba_cuda.py``:
deterministic CSR kernels, needs the ``cuda`` extra and a GPU, or ``NUMBA_ENABLE_CUDASIM=1``).

Every backend module exposes the same kernels with identical signatures:

* ``scatter_sum(values, index, num_segments)``
* ``scatter_mean(values, index, num_segments)``
* ``scatter_max(values, index, num_segments) -> (out, argmax)``
* ``aggregate(graph, m)``: ``out_i = sum_{e: dst_e = i} m_e``
* ``weighted_aggregate(graph, f, w)``: ``out_i = sum_{e: dst_e = i} w_e * f[src_e]``
* ``edge_product(graph, g, f)``: ``p_e = g[dst_e] * f[src_e]``

The numba backend adds fused kernels that the ops and blocks use when a backend has them
(:mod:`geomp_ref.backends.numba_elementwise`, :mod:`geomp_ref.backends.numba_edges`): activations
with their derivatives (``activation``, ``activation_vjp``, ``activation_with_grad``), radial bases
and cutoffs (``gaussian_rbf``, ``bessel_rbf``, ``cosine_cutoff``, ``polynomial_cutoff`` and their
VJPs), SchNet's edge filter (``filter_aggregate`` and its VJP), ``edge_vectors_vjp``,
``edge_pair_sum``, the coupling of weights-first tensor products (``tp_couple`` and its VJP)
and the gate's scaling (``gate_scale`` and its VJP, :mod:`geomp_ref.backends.numba_tp`). For a
backend without them (``"cuda"``) the ops compute these with the NumPy reference on the host. How
the numba kernels share the cores with BLAS is described in :mod:`geomp_ref.backends._nbjit`;
:func:`tune_allocator` makes glibc reuse freed memory (fewer page faults on large temporaries).

Selection is explicit (``backend=`` on ops, a ``backend`` field on specs, default ``"numpy"``);
there is no global default and no silent fallback: asking for an unavailable backend raises an
error naming the missing extra.
"""

from __future__ import annotations

import importlib
import os

from ._allocator import tune_allocator

__all__ = ["get", "available", "tune_allocator", "NAMES"]

NAMES = ("numpy", "numba", "cuda")
_MODULES = {"numpy": "numpy_backend", "numba": "numba_cpu", "cuda": "numba_cuda"}
_EXTRA = {
    "numba": "numba (a core dependency: reinstall with `pip install geomp-ref`)",
    "cuda": "the `cuda` extra (`pip install geomp-ref[cuda]`) and an NVIDIA GPU, "
    "or NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels in the simulator",
}
_cache: dict = {}


def get(name: str = "numpy"):
    """Return the backend module called ``name`` (imported on first use).

    Raises
    ------
    ValueError
        ``name`` is not a backend name.
    RuntimeError
        The backend cannot be loaded here; the message names the missing extra.
    """
    if not isinstance(name, str) or name not in _MODULES:
        raise ValueError(f"backend must be one of {NAMES}; got {name!r}")
    mod = _cache.get(name)
    if mod is not None:
        return mod
    try:
        mod = importlib.import_module(f".{_MODULES[name]}", __name__)
        check = getattr(mod, "is_available", None)
        if check is not None and not check():
            raise RuntimeError(getattr(mod, "unavailable_reason", lambda: "not available")())
    except (ImportError, RuntimeError) as exc:
        raise RuntimeError(
            f"backend {name!r} is not available here ({exc}); it needs {_EXTRA.get(name, '')}"
        ) from exc
    _cache[name] = mod
    return mod


def available() -> list[str]:
    """Names of the backends that load on this machine, in the order of ``NAMES``."""
    out = []
    for name in NAMES:
        simulated = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
        if name == "cuda" and not (simulated or _has_cuda_driver()):
            continue
        try:
            get(name)
        except RuntimeError:
            continue
        out.append(name)
    return out


def _has_cuda_driver() -> bool:
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version"))
