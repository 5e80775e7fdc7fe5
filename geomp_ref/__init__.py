"""geomp_ref: float64 ground-truth oracle for geometric and equivariant message passing.

Every layer computes messages ``m_ij = phi_m(f_i, f_j, a_ij)`` from sender j to receiver i, sums
them at i and updates ``f'_i = phi_f(f_i, sum_j m_ij)``; every differentiable function has a
hand-derived VJP. Conventions: the documentation's conventions page (``docs/conventions.rst``)
and each module's docstring.

Subpackages are imported lazily so that ``import geomp_ref`` pulls in neither numba nor sympy.
"""

from __future__ import annotations

import importlib

from .graph import (
    Graph,
    complete_graph,
    concat_graphs,
    edge_vectors,
    edge_vectors_vjp,
    make_graph,
    radius_graph,
)

__version__ = "0.1.0"

_SUBMODULES = (
    "backends",
    "cases",
    "interop",
    "layers",
    "lie",
    "models",
    "o3",
    "ops",
    "params",
    "testing",
    "molecules",
)

__all__ = [
    "Graph",
    "make_graph",
    "radius_graph",
    "complete_graph",
    "concat_graphs",
    "edge_vectors",
    "edge_vectors_vjp",
    "__version__",
    *_SUBMODULES,
]


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'geomp_ref' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
