r"""numba.cuda kernels over receiver CSR segments: deterministic, bit-identical to NumPy in float64.

The same kernels as :mod:`geomp_ref.backends.numpy_backend`, with the same signatures:

.. math::

    \mathrm{scatter\_sum}(v, idx)_k = \sum_{r:\, idx_r = k} v_r, \qquad
    \mathrm{aggregate}(m)_i = \sum_{e:\, dst_e = i} m_e, \qquad
    \mathrm{weighted\_aggregate}(f, w)_i = \sum_{e:\, dst_e = i} w_e \odot f_{src_e},

    \mathrm{edge\_product}(g, f)_e = g_{dst_e} \odot f_{src_e}.

Kernel layout (torch_scatter's ``segment_csr`` for C > 1): one thread per (row, channel). The
thread walks its row's CSR segment sequentially, in increasing edge id, accumulating from 0.0 in
the input dtype, and writes the result once; adjacent threads handle adjacent channels, so every
edge row is read coalesced. There are no atomics and no tree reductions, so the order of every sum
is the NumPy reference's and float64 (and float32) results are bit-identical to it, on every run.

NVVM contracts ``a * b + c`` into a fused multiply-add by default (``-fma=1``), which would change
the last bit. The products are therefore formed with libdevice's ``__nv_dmul_rn`` /
``__nv_fmul_rn``: PTX ``mul.rn`` carries an explicit rounding mode and is never fused. Under the
simulator (``NUMBA_ENABLE_CUDASIM=1``) the kernels run as Python on NumPy scalars, where there is
no contraction, and a plain product is used.

Data residency: host arrays in -> host arrays out (inputs are copied to the device and the result
back). Objects exposing ``__cuda_array_interface__`` (numba device arrays, CuPy, torch CUDA
tensors) in -> numba device arrays out. A host :class:`~geomp_ref.graph.Graph` is copied to the
device on every call; :func:`to_device` makes a device-resident copy once, for scripts that call
the kernels repeatedly on large graphs.

Validation happens on the host before any launch (dtypes, shapes, lengths, and for
:func:`scatter_sum` the index range, which is needed anyway to build its CSR). A host graph sealed
by :func:`~geomp_ref.graph.make_graph` is trusted in O(1) (its arrays are read-only); any other
host ``Graph`` is range-checked in full first. Device-resident graphs can be overwritten by their
owner, so the kernels also bound-check every index they read (``backends/_cuda_kernels.py``) and
raise ``ValueError`` after the launch instead of reading out of bounds.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .._validate import check_alloc, check_graph
from ..graph import Graph
from ._cuda_kernels import SIM as _SIM
from ._cuda_kernels import build as _build

__all__ = [
    "aggregate",
    "edge_product",
    "is_available",
    "scatter_max",
    "scatter_mean",
    "scatter_sum",
    "to_device",
    "unavailable_reason",
    "weighted_aggregate",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_TPB = 256


def is_available() -> bool:
    """True under ``NUMBA_ENABLE_CUDASIM=1`` or when numba.cuda finds a usable GPU."""
    if _SIM:
        return True
    return bool(cuda.is_available())  # False (not an exception) when the driver is missing


def unavailable_reason() -> str:
    if is_available():
        return ""
    return "numba.cuda found no usable NVIDIA GPU and driver (cuda.is_available() is False)"


_KERNELS = {np.dtype(np.float32): _build(np.float32), np.dtype(np.float64): _build(np.float64)}


def _launch(kernel, total: int, *args) -> None:
    """Launch over ``total`` threads with an error flag as the last argument; raise if it is set."""
    if total == 0:
        return
    err = cuda.to_device(np.zeros(1, dtype=np.int32))
    tpb = min(_TPB, total)
    kernel[(total + tpb - 1) // tpb, tpb](*args, err)
    if int(err.copy_to_host()[0]):
        raise ValueError(
            "graph holds an index out of range (edge_index, dst_ptr or dst_perm of a device-"
            "resident graph was overwritten); rebuild it with to_device(make_graph(...))"
        )


# --- residency and validation helpers ----------------------------------------------------------


def _is_device(x) -> bool:
    # numba device arrays (real and simulated) carry __cuda_ndarray__; other libraries' device
    # arrays (CuPy, torch) expose __cuda_array_interface__.
    return getattr(x, "__cuda_ndarray__", False) or hasattr(x, "__cuda_array_interface__")


def _wrap(x):
    return x if getattr(x, "__cuda_ndarray__", False) else cuda.as_cuda_array(x)


def _float_input(x, name: str):
    """Return ``(array, on_device)``; device arrays are wrapped without a copy."""
    if _is_device(x):
        d = _wrap(x)
        if not d.is_c_contiguous():
            raise ValueError(f"{name} (a device array) must be C-contiguous")
        arr, dev = d, True
    else:
        arr, dev = np.ascontiguousarray(x), False
    if arr.dtype not in _FLOATS:
        raise TypeError(
            f"{name} must be a float32 or float64 array; got dtype {arr.dtype}. "
            f"Convert it with .astype(np.float64)"
        )
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (rows); got a scalar")
    return arr, dev


def _rows2d(arr):
    k = 1
    for s in arr.shape[1:]:
        k *= s
    return arr.reshape(arr.shape[0], k), k


def _dev(x):
    return _wrap(x) if _is_device(x) else cuda.to_device(np.ascontiguousarray(x))


def _check_graph(graph):
    """A host graph is sealed (or range-checked in full); a device graph is shape-checked here
    and bound-checked inside the kernels."""
    if not isinstance(graph, Graph):
        raise TypeError(
            f"graph must be a Graph built by geomp_ref.make_graph; got {type(graph).__name__}"
        )
    if not _is_device(graph.edge_index):
        return check_graph(graph)
    n, e = graph.num_nodes, graph.edge_index.shape[1]
    shapes = {"edge_index": (2, e), "dst_ptr": (n + 1,), "dst_perm": (e,)}
    for field, shape in shapes.items():
        arr = getattr(graph, field)
        if not _is_device(arr) or tuple(arr.shape) != shape or arr.dtype != np.int64:
            raise ValueError(
                f"graph.{field} of a device graph must be an int64 device array of shape {shape} "
                "(inconsistent CSR caches); build it with to_device(make_graph(...))"
            )
    return graph


def to_device(graph: Graph) -> Graph:
    """A copy of ``graph`` whose index arrays (edge_index, CSR caches, batch) live on the GPU.

    Pass it to this module's kernels to avoid copying the topology on every call. Only the
    kernels of this module accept it (``reverse()`` and NumPy code need the host graph).
    """
    graph = check_graph(graph)
    return graph._replace(
        token=None,
        **{
            name: cuda.to_device(np.ascontiguousarray(getattr(graph, name)))
            for name in ("edge_index", "batch", "dst_ptr", "dst_perm", "src_ptr", "src_perm")
        },
    )


def _finish(out, dev: bool, shape):
    out = out.reshape(*shape) if tuple(out.shape) != tuple(shape) else out
    return out if dev else out.copy_to_host()


def _index_csr(index, rows: int, num_segments):
    """Host-side validation and stable CSR (counting order) of ``index``."""
    if isinstance(num_segments, bool) or not isinstance(num_segments, (int, np.integer)):
        raise TypeError(f"num_segments must be an int; got {type(num_segments).__name__}")
    if num_segments < 0:
        raise ValueError(f"num_segments must be >= 0; got {num_segments}")
    num_segments = int(num_segments)
    check_alloc((num_segments,), "num_segments")
    idx = _wrap(index).copy_to_host() if _is_device(index) else index
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu" or idx.dtype == np.uint64:
        raise TypeError(
            f"index must be an integer array (int64); got dtype {idx.dtype}. "
            "Use index.astype(np.int64)"
        )
    if idx.ndim != 1:
        raise ValueError(f"index must be 1-D; got shape {idx.shape}")
    if idx.shape[0] != rows:
        raise ValueError(
            f"index has length {idx.shape[0]} but values has {rows} rows; they must match")
    idx = idx.astype(np.int64, copy=False)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= num_segments:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"index holds {bad}, out of range for num_segments={num_segments}; "
                "indices must satisfy 0 <= index < num_segments"
            )
    perm = np.argsort(idx, kind="stable").astype(np.int64)
    ptr = np.zeros(num_segments + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=num_segments), out=ptr[1:])
    return num_segments, perm, ptr


# --- public kernels ----------------------------------------------------------------------------


def _segment_reduce(values, index, num_segments, mean: bool):
    values, dev = _float_input(values, "values")
    n, perm, ptr = _index_csr(index, values.shape[0], num_segments)
    shape = (n,) + tuple(values.shape[1:])
    v2, k = _rows2d(_dev(values))
    out = cuda.device_array((n, k), dtype=values.dtype)
    _launch(_KERNELS[values.dtype]["sum"], n * k, v2, cuda.to_device(perm), cuda.to_device(ptr),
            out, mean)
    return _finish(out, dev, shape)


def scatter_sum(values, index, num_segments):
    """``out[k] = sum_{r: index[r] = k} values[r]``, shape (num_segments, *values.shape[1:]).

    Parameters
    ----------
    values : array, shape (R, ...), float32 or float64 (host or device)
    index : array, shape (R,), integer, each in [0, num_segments) (host or device)
    num_segments : int
    """
    return _segment_reduce(values, index, num_segments, False)


def scatter_mean(values, index, num_segments):
    """Segment mean (sum divided by the count; empty segments give 0)."""
    return _segment_reduce(values, index, num_segments, True)


def scatter_max(values, index, num_segments):
    """Segment max per column and the first row attaining it (0.0 and -1 when empty)."""
    values, dev = _float_input(values, "values")
    n, perm, ptr = _index_csr(index, values.shape[0], num_segments)
    shape = (n,) + tuple(values.shape[1:])
    v2, k = _rows2d(_dev(values))
    out = cuda.device_array((n, k), dtype=values.dtype)
    arg = cuda.device_array((n, k), dtype=np.int64)
    _launch(_KERNELS[values.dtype]["max"], n * k, v2, cuda.to_device(perm), cuda.to_device(ptr),
            out, arg)
    return _finish(out, dev, shape), _finish(arg, dev, shape)


def aggregate(graph, m):
    """Sum of per-edge messages at their receivers, ``out_i = sum_{e: dst_e = i} m_e``.

    ``m`` has shape (E, ...) in the order of ``graph.edge_index``; the result (N, ...).
    """
    graph = _check_graph(graph)
    m, dev = _float_input(m, "m")
    if m.shape[0] != graph.num_edges:
        raise ValueError(f"m must have num_edges = {graph.num_edges} rows; got shape {m.shape}")
    n = graph.num_nodes
    shape = (n,) + tuple(m.shape[1:])
    m2, k = _rows2d(_dev(m))
    out = cuda.device_array((n, k), dtype=m.dtype)
    _launch(_KERNELS[m.dtype]["sum"], n * k, m2, _dev(graph.dst_perm), _dev(graph.dst_ptr), out,
            False)
    return _finish(out, dev, shape)


def _pair(f, other, fname: str, oname: str):
    f, fdev = _float_input(f, fname)
    other, odev = _float_input(other, oname)
    if other.dtype != f.dtype:
        raise TypeError(f"{oname} must have the dtype of {fname} ({f.dtype}); got {other.dtype}")
    return f, other, fdev or odev


def weighted_aggregate(graph, f, w):
    """Fused ``out_i = sum_{e: dst_e = i} w_e * f[src_e]``; ``f`` (N, C), ``w`` (E,) or (E, C)."""
    graph = _check_graph(graph)
    f, w, dev = _pair(f, w, "f", "w")
    n, e = graph.num_nodes, graph.num_edges
    if f.ndim != 2 or f.shape[0] != n:
        raise ValueError(f"f must have shape (num_nodes, C) = ({n}, C); got {tuple(f.shape)}")
    c = f.shape[1]
    if tuple(w.shape) not in ((e,), (e, c)):
        raise ValueError(
            f"w must have shape (E,) or (E, C) = ({e},) or ({e}, {c}); got {tuple(w.shape)}")
    out = cuda.device_array((n, c), dtype=f.dtype)
    w2 = _dev(w)
    per_channel = w.ndim == 2
    if not per_channel:
        w2 = w2.reshape(e, 1)
    _launch(_KERNELS[f.dtype]["weighted"], n * c, _dev(f), w2, _dev(graph.edge_index),
            _dev(graph.dst_perm), _dev(graph.dst_ptr), out, per_channel)
    return _finish(out, dev, (n, c))


def edge_product(graph, g, f):
    """``p_e = g[dst_e] * f[src_e]``, shape (E, C)."""
    graph = _check_graph(graph)
    f, g, dev = _pair(f, g, "f", "g")
    n, e = graph.num_nodes, graph.num_edges
    if f.ndim != 2 or f.shape[0] != n:
        raise ValueError(f"f must have shape (num_nodes, C) = ({n}, C); got {tuple(f.shape)}")
    if tuple(g.shape) != tuple(f.shape):
        raise ValueError(f"g must have the shape of f {tuple(f.shape)}; got {tuple(g.shape)}")
    c = f.shape[1]
    out = cuda.device_array((e, c), dtype=f.dtype)
    _launch(_KERNELS[f.dtype]["edge_product"], e * c, _dev(g), _dev(f), _dev(graph.edge_index), out)
    return _finish(out, dev, (e, c))
