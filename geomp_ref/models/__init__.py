"""Whole models built only from library blocks (each is itself a block with a hand backward).

* :mod:`geomp_ref.models.nbody`: the charged N-body models of the EGNN paper (Linear, GNN, Radial
  Field, EGNN_vel), with :mod:`geomp_ref.models.nbody_features` for their input features.
"""
