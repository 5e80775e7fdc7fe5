"""The testing kit itself must be able to fail: wrong backward passes and broken symmetries are caught."""

import dataclasses

import numpy as np
import pytest

from geomp_ref import radius_graph
from geomp_ref.layers.mpnn import DistanceMPNN
from geomp_ref.testing import (
    assert_equivariant, check_vjp, graph_strategy, random_graph, random_orthogonal, random_points, vjp,
)


@dataclasses.dataclass(frozen=True)
class _WrongGrad(DistanceMPNN):
    def backward(self, params, cache, grad_out):
        gp, (gf, gpos) = super().backward(params, cache, grad_out)
        return gp, (gf, 1.001 * gpos)  # a 0.1 % error in the position gradient


@dataclasses.dataclass(frozen=True)
class _Chiral(DistanceMPNN):
    """Adds a pseudo-scalar (a triple product): rotation-invariant, reflection-odd."""

    def forward(self, params, graph, f, pos):
        out, cache = super().forward(params, graph, f, pos)
        y = pos - pos.mean(0)
        r = np.linalg.norm(y, axis=1)[:, None]
        v = [np.sum(r**k * y, axis=0) for k in (1, 2, 3)]  # permutation-invariant vectors
        out = out + np.linalg.det(np.stack(v))
        return out, cache


def _problem(rng):
    pos = random_points(rng, 7)
    return radius_graph(pos, 2.5), pos, rng.normal(size=(7, 3))


def test_check_vjp_catches_wrong_backward(rng):
    g, pos, f = _problem(rng)
    layer = _WrongGrad(3)
    p = layer.init(rng)
    errs = check_vjp(layer, p, g, (f, pos), rng=rng)
    assert errs["input:1"] > 1e-6  # a 0.1 % error shows up above the noise
    assert errs["input:0"] < 1e-7


def test_symmetry_catches_reflection_only_failure(rng):
    g, pos, f = _problem(rng)
    layer = _Chiral(3)
    p = layer.init(rng)
    kinds = (("node_scalar", "position"), ("node_scalar",))
    assert_equivariant(layer, p, g, (f, pos), *kinds, "SE3", rng=rng)  # proper rotations: fine
    with pytest.raises(AssertionError):
        assert_equivariant(layer, p, g, (f, pos), *kinds, "E3", rng=rng)


def test_permutation_check_catches_order_dependence(rng):
    @dataclasses.dataclass(frozen=True)
    class _OrderDependent(DistanceMPNN):
        def forward(self, params, graph, f, pos):
            out, cache = super().forward(params, graph, f, pos)
            return out + np.arange(len(out))[:, None], cache

    g, pos, f = _problem(rng)
    layer = _OrderDependent(3)
    with pytest.raises(AssertionError):
        assert_equivariant(layer, layer.init(rng), g, (f, pos), ("node_scalar", "position"),
                           ("node_scalar",), "E3", rng=rng)


def test_helpers(rng):
    q = random_orthogonal(rng, 3, proper=False)
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-14)
    assert np.linalg.det(q) < 0
    pts = random_points(rng, 20, min_dist=0.9)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(20) * 10
    assert d.min() >= 0.9
    g = random_graph(rng, 12, num_graphs=3, multi_edges=True)
    assert g.num_graphs == 3 and g.num_nodes == 12
    layer = DistanceMPNN(3)
    p = layer.init(rng)
    gg, pos, f = _problem(rng)
    out, pull = vjp(layer, p, gg, f, pos)
    gp, (gf, gpos) = pull(np.ones_like(out))
    assert gf.shape == f.shape and gpos.shape == pos.shape
    assert graph_strategy() is not None
