r"""Every layer of the library as a block: ``init``, ``forward``, ``backward`` with hand VJPs.

All layers share one equation, Bekkers' message passing as non-linear convolution: for each edge
from sender j to receiver i

.. math::

    m_{ij} = \phi_m(f_i, f_j, a_{ij}), \qquad f'_i = \phi_f\Big(f_i, \sum_j m_{ij}\Big),

with edge attributes :math:`a_{ij}` computed from the geometry (a distance, a relative position,
a relative pose :math:`\mathrm{Log}(g_i^{-1} g_j)`, spherical harmonics). A convolution is the
case :math:`m_{ij} = k(x_j - x_i)\, f_j`. The families:

* message passing: :class:`MLP`, :class:`MPNN` (Gilmer, with :class:`NNConv`, :class:`GRUCell`,
  :class:`LSTMCell`, :class:`Set2Set`), :class:`DistanceMPNN`, :class:`RelativePositionMPNN`;
* point convolutions: :class:`PointConv`, SchNet (:class:`CFConv`, :class:`SchNetInteraction`,
  :class:`SchNet`, :class:`SchNetConstants`);
* E(n)-equivariant networks: :class:`EGNNLayer`, :class:`EGNN`, :class:`GCL` (the non-equivariant
  baseline), :class:`RadialFieldLayer`;
* lifting to the group: :class:`LieConv`, :class:`LiftedLieConv`, :class:`LiftingConv`,
  :class:`GroupConv`, :class:`PositionOrientationConv`, :class:`PositionOrientationBasis`,
  :class:`BasisConv`;
* kernel specs shared by the convolutions: :class:`MLPKernel`, :class:`RadialKernel`,
  :class:`BSplineKernel`;
* steerable: :class:`TFNConv`, the SE(3)-Transformer code's TFN layer :class:`SE3Conv` with
  :class:`SE3NormNonlinearity`, :class:`SEGNN` with its blocks :class:`SEGNNLayer`,
  :class:`O3TensorProduct`, :class:`O3TensorProductGate`, :class:`InstanceNorm`,
  :class:`NBodyAttributes`.

``from geomp_ref.layers import SchNet`` works for every name in ``__all__``. The names are
resolved lazily from their modules (listed in ``_EXPORTS``), so importing this package is cheap
and imports neither numba nor sympy; each module (``geomp_ref.layers.schnet`` ...) also exports
the block's cache type (``SchNetCache``), whose fields are named like the forward's variables.
"""

from __future__ import annotations

import importlib

#: public name -> the module of this package that defines it
_EXPORTS = {
    # the block mixin and the smallest block
    "Block": "base",
    "MLP": "mlp",
    # message passing (Gilmer) and geometric message passing
    "MPNN": "mpnn",
    "DistanceMPNN": "mpnn",
    "RelativePositionMPNN": "mpnn",
    "NNConv": "nnconv",
    "GRUCell": "recurrent",
    "LSTMCell": "recurrent",
    "Set2Set": "set2set",
    # point convolutions and SchNet
    "PointConv": "pointconv",
    "CFConv": "cfconv",
    "SchNetInteraction": "cfconv",
    "SchNet": "schnet",
    "SchNetConstants": "schnet_constants",
    # E(n)-equivariant networks and their baselines
    "EGNNLayer": "egnn_layer",
    "EGNN": "egnn",
    "GCL": "gcl",
    "RadialFieldLayer": "radial_field",
    # lifting to the group
    "LieConv": "lieconv",
    "LiftedLieConv": "lifted_lieconv",
    "LiftingConv": "group_conv",
    "GroupConv": "group_conv",
    "PositionOrientationConv": "position_orientation",
    "PositionOrientationBasis": "position_orientation_basis",
    "BasisConv": "basis_conv",
    # kernel specs
    "MLPKernel": "kernels",
    "RadialKernel": "kernels",
    "BSplineKernel": "kernels",
    # steerable
    "TFNConv": "tfn",
    "SE3Conv": "se3_tfn",
    "SE3NormNonlinearity": "se3_tfn",
    "SEGNN": "segnn",
    "SEGNNLayer": "segnn_layer",
    "O3TensorProduct": "segnn_blocks",
    "O3TensorProductGate": "segnn_blocks",
    "InstanceNorm": "segnn_norm",
    "NBodyAttributes": "segnn_nbody",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'geomp_ref.layers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
