r"""e3nn-compatible O(3) machinery: irreps, rotations, Wigner matrices, spherical harmonics,
Clebsch–Gordan tensor products, equivariant linear maps and gates.

Conventions (identical to e3nn >= 0.5): polar axis +y, l = 1 components in (x, y, z) order,
Euler angles Y-X-Y, multiplicity-major feature layout, coupling tensors = Condon–Shortley
Clebsch–Gordan coefficients moved to e3nn's real basis (with its (-i)^l phase) and normalised to
Frobenius norm 1; features transform as ``x -> x @ D(Q).T`` with parity ``p`` under ``det Q = -1``.

The blocks (:class:`TensorProduct`, :class:`FullyConnectedTensorProduct`, :class:`Linear`,
:class:`Gate`) follow the library's block contract: ``param_shapes()``, ``init(rng)``,
``forward(params, *inputs) -> (out, cache)``, ``backward(params, cache, grad_out)``. Gating has
one form, the :class:`Gate` block.

Names are resolved lazily from the submodules listed in ``_EXPORTS`` so that importing
``geomp_ref.o3`` stays cheap and never imports sympy.
"""

from __future__ import annotations

import importlib

# A function named like its module would be shadowed by the module object as soon as anything
# imports the submodule; binding it eagerly here (numpy only, no sympy) keeps
# ``o3.spherical_harmonics`` the function.
from .spherical_harmonics import (  # noqa: F401  (bound eagerly, see above)
    spherical_harmonics,
    spherical_harmonics_vjp,
)

_EXPORTS = {
    # irreps.py
    "Irrep": "irreps",
    "Irreps": "irreps",
    "MulIr": "irreps",
    # rotation.py
    "angles_to_matrix": "rotation",
    "matrix_to_angles": "rotation",
    "axis_angle_to_matrix": "rotation",
    "random_rotation": "rotation",
    "random_orthogonal": "rotation",
    "angles_to_matrix_vjp": "rotation",
    "axis_angle_to_matrix_vjp": "rotation",
    "matrix_x": "rotation",
    "matrix_y": "rotation",
    "matrix_z": "rotation",
    # wigner.py
    "wigner_D": "wigner",
    "wigner_3j": "wigner",
    "change_basis_real_to_complex": "wigner",
    "so3_generators": "wigner",
    # spherical_harmonics.py
    "spherical_harmonics": "spherical_harmonics",
    "spherical_harmonics_vjp": "spherical_harmonics",
    "edge_harmonics": "spherical_harmonics",
    "edge_harmonics_vjp": "spherical_harmonics",
    # tensor_product.py
    "Instruction": "tensor_product",
    "TensorProduct": "tensor_product",
    "FullyConnectedTensorProduct": "tensor_product",
    # linear.py
    "Linear": "linear",
    # gating.py
    "Gate": "gating",
    # activations.py
    "resolve_activation": "activations",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605  (a sorted list, built once)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'geomp_ref.o3' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
