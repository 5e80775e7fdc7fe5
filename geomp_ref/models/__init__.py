"""Whole models built only from library blocks (each is itself a block with a hand backward).

* :mod:`geomp_ref.models.nbody`: the charged N-body models of the EGNN paper (Satorras et al.
  2021, Table 2): :class:`NBodyLinear`, :class:`NBodyGNN`, :class:`NBodyRF` (Radial Field) and
  :class:`NBodyEGNN` (``EGNN_vel``); :func:`make_model` builds any of the nine by its name in
  ``MODELS`` (the names ``geomp-ref nbody train --model`` takes) with the published
  configuration, and :func:`model_inputs` turns a data batch into the forward's inputs.
* :mod:`geomp_ref.models.nbody_steerable`: the steerable ones, :class:`NBodySEGNN` (SEGNN's
  published N-body configuration), :class:`NBodyTFN` (a TFN baseline from e3nn's convolution)
  and :class:`NBodySE3TFN` (the published TFN baseline's own architecture).
* :mod:`geomp_ref.models.nbody_ponita`: :class:`NBodyPONITA`, PONITA's fibre-bundle network on
  R^3 x S^2 in its published N-body configuration.
* :mod:`geomp_ref.models.nbody_features`: their input features (speeds, charge products,
  input-frame squared distances) and the VJPs of those features.

Names are resolved lazily from the submodules, as in :mod:`geomp_ref.layers`.
"""

from __future__ import annotations

import importlib

#: public name -> the module of this package that defines it
_EXPORTS = {
    "MODELS": "nbody",
    "NBodyLinear": "nbody",
    "NBodyGNN": "nbody",
    "NBodyRF": "nbody",
    "NBodyEGNN": "nbody",
    "make_model": "nbody",
    "model_inputs": "nbody",
    "NBodyPONITA": "nbody_ponita",
    "NBodySEGNN": "nbody_steerable",
    "NBodyTFN": "nbody_steerable",
    "NBodySE3TFN": "nbody_steerable",
}
_SUBMODULES = ("nbody", "nbody_features", "nbody_ponita", "nbody_steerable")

__all__ = [*_EXPORTS, *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'geomp_ref.models' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
