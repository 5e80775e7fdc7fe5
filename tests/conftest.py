"""Shared fixtures: a seeded ``rng`` per test, the ``backend`` fixture, tolerances, and the
hypothesis profiles."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Tolerances by dtype (relative): the one table every test reads.
TOL = {
    np.float64: {"vjp": 1e-7, "symmetry": 1e-12, "backend": 1e-13, "peer": 1e-12},
    np.float32: {"vjp": 1e-2, "symmetry": 1e-5, "backend": 1e-5, "peer": 1e-5},
}


@pytest.fixture
def rng(request):
    """A generator seeded from the test's node id: reproducible and distinct per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def _backends():
    from geomp_ref import backends

    return backends.available()


@pytest.fixture(params=_backends())
def backend(request):
    return request.param
