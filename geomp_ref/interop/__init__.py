"""Peer adapters: turn a peer framework's module (e3nn, PyG) into our spec and params.

Each adapter imports its peer lazily and raises an ImportError naming the ``peers`` extra when the
peer is missing. Submodules: :mod:`geomp_ref.interop.e3nn`, :mod:`geomp_ref.interop.pyg`.
"""
