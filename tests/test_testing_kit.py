"""The testing kit itself must be able to fail: wrong backward passes and broken symmetries are
caught, and junk arguments get named errors."""

import dataclasses

import numpy as np
import pytest

from geomp_ref import radius_graph, testing
from geomp_ref.layers.mpnn import DistanceMPNN
from geomp_ref.testing import (
    assert_equivariant,
    check_vjp,
    graph_strategy,
    random_graph,
    random_orthogonal,
    random_points,
    vjp,
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


# --- junk arguments, impossible requests, explicit None, backend structure -----------------------


def test_random_points_validates_and_never_hangs(rng):
    bad = [
        (dict(min_dist=np.nan), ValueError, "min_dist"),
        (dict(min_dist=np.inf), ValueError, "min_dist"),
        (dict(min_dist=-1.0), ValueError, "min_dist"),
        (dict(min_dist="far"), TypeError, "min_dist"),
        (dict(scale=0.0), ValueError, "scale"),
        (dict(scale=np.nan), ValueError, "scale"),
        (dict(min_dist=5.0, scale=1.0), ValueError, "min_dist=5.0 is impossible"),
    ]
    for kwargs, exc, words in bad:
        with pytest.raises(exc, match=words):
            random_points(rng, 10, **kwargs)
    with pytest.raises(ValueError, match="n must be >= 0"):
        random_points(rng, -1)
    with pytest.raises(TypeError, match="n must be an int"):
        random_points(rng, 2.5)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        random_points(rng, 3, 0)
    with pytest.raises(ValueError, match="n asks for"):
        random_points(rng, 2**62)
    with pytest.raises(TypeError, match="rng"):
        random_points("seed", 3)
    assert random_points(0, 0).shape == (0, 3)
    pts = random_points(1, 30, 2, min_dist=3.0)  # a large min_dist grows the box, never hangs
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(30) * 1e9
    assert d.min() >= 3.0
    # a feasible but hard request in a fixed box gives up with a named error instead of looping
    with pytest.raises(ValueError, match="placed only"):
        random_points(2, 40, 2, min_dist=0.42, scale=1.0)


def test_other_helpers_validate(rng):
    bad = [
        (lambda: random_graph(rng, -1), ValueError, "num_nodes"),
        (lambda: random_graph(rng, 5, num_graphs=0), ValueError, "num_graphs"),
        (lambda: random_graph(rng, 5, avg_degree=np.nan), ValueError, "avg_degree"),
        (lambda: random_graph(rng, 5, avg_degree=1e18), ValueError, "avg_degree"),
        (lambda: random_graph(rng, 5, multi_edges="yes"), TypeError, "multi_edges"),
        (lambda: random_graph(rng, 2**62), ValueError, "num_nodes"),
        (lambda: random_orthogonal(rng, 0), ValueError, "dim"),
        (lambda: random_orthogonal(rng, 3, proper=1), TypeError, "proper"),
        (lambda: graph_strategy(max_nodes=-1), ValueError, "max_nodes"),
    ]
    for fn, exc, words in bad:
        with pytest.raises(exc, match=words):
            fn()
    assert random_graph(0, 0).num_nodes == 0


@dataclasses.dataclass(frozen=True)
class _Optional:
    """A block with an optional input ``v`` and an optional second output (None when v is None);
    ``flaw`` breaks the non-NumPy backends in one way."""

    backend: str = "numpy"
    flaw: str = ""

    def init(self, rng):
        return {"a": np.asarray(np.random.default_rng(rng).normal(size=3))}

    def forward(self, params, graph, f, pos, v=None):
        y = f * params["a"] + np.sum((pos - pos.mean(0)) ** 2, axis=1, keepdims=True)
        z = None if v is None else v * 2.0
        if self.backend != "numpy" and self.flaw == "noise":
            y = y * (1 + 1e-9)
        out = (y, z)
        if self.backend != "numpy" and self.flaw == "fewer":
            out = (y,)
        if self.backend != "numpy" and self.flaw == "shape":
            out = (y, z[:, :2])
        return out, (f, pos, v)

    def backward(self, params, cache, grad_out):
        f, pos, v = cache
        gy, gz = (grad_out + (None,))[:2]
        gy = np.zeros((f.shape[0], 3)) if gy is None else gy
        g_a = np.sum(gy * f, axis=0)
        g_f = gy * params["a"]
        # y_i += |c_i|^2 with c = pos - mean(pos): grad_pos = 2 (s_i c_i - mean_j(s_j c_j))
        s = gy.sum(axis=1, keepdims=True)
        c = pos - pos.mean(0)
        g_pos = 2 * (s * c - np.mean(s * c, axis=0))
        g_v = None
        if v is not None:  # reverses z = 2 v (only the columns a flawed z kept)
            g_v = np.zeros_like(v)
            if gz is not None:
                g_v[:, : gz.shape[1]] = 2.0 * gz
        return {"a": g_a}, (g_f, g_pos, g_v)


def test_explicit_none_inputs_and_outputs(rng):
    g, pos, f = _problem(rng)
    layer = _Optional()
    p = layer.init(1)
    errs = check_vjp(layer, p, g, (f, pos, None), kinds=("node_scalar", "position", "vector"),
                     rng=rng)
    assert set(errs) == {"param:a", "input:0", "input:1"} and max(errs.values()) < 1e-7
    kinds = (("node_scalar", "position", "vector"), ("node_scalar", "vector"))
    assert_equivariant(layer, p, g, (f, pos, None), *kinds, "E3", rng=rng)
    v = rng.normal(size=(7, 3))
    errs = check_vjp(layer, p, g, (f, pos, v), kinds=kinds[0], rng=rng)
    assert "input:2" in errs and max(errs.values()) < 1e-7
    assert_equivariant(layer, p, g, (f, pos, v), *kinds, "E3", rng=rng)
    assert testing.backend_errors(layer, p, g, (f, pos, None), backends=["numba"]) == {"numba": 0.0}


def test_backend_errors_fail_on_structure_and_on_nothing_compared(rng):
    g, pos, f = _problem(rng)
    v = rng.normal(size=(7, 3))
    p = _Optional().init(1)
    for flaw in ("fewer", "shape"):
        errs = testing.backend_errors(_Optional(flaw=flaw), p, g, (f, pos, v), backends=["numba"])
        assert errs == {"numba": float("inf")}, flaw
        with pytest.raises(AssertionError, match="disagree"):
            testing.assert_backends_agree(_Optional(flaw=flaw), p, g, (f, pos, v),
                                          backends=["numba"])
    assert 1e-10 < testing.backend_errors(_Optional(flaw="noise"), p, g, (f, pos, v),
                                          backends=["numba"])["numba"] < 1e-8
    for names in ([], ["numpy"]):
        with pytest.raises(ValueError, match="backends: no backend besides numpy"):
            testing.backend_errors(_Optional(), p, g, (f, pos, v), backends=names)
    with pytest.raises(ValueError, match="backend must be one of"):
        testing.backend_errors(_Optional(), p, g, (f, pos, v), backends=["tpu"])
    with pytest.raises(TypeError, match="backends must be a list"):
        testing.backend_errors(_Optional(), p, g, (f, pos, v), backends="numba")


def test_kit_refuses_junk_arguments(rng):
    g, pos, f = _problem(rng)
    layer = DistanceMPNN(3)
    p = layer.init(rng)
    kinds = ("node_scalar", "position")
    bad = [
        (lambda: check_vjp(layer, p, g, f), TypeError, "inputs must be a tuple"),
        (lambda: check_vjp(object(), p, g, (f, pos)), TypeError, "layer must be a block"),
        (lambda: check_vjp(layer, p, g, (f, pos), eps=0.0), ValueError, "eps"),
        (lambda: check_vjp(layer, p, g, (f, pos), num_directions=0), ValueError, "num_directions"),
        (lambda: check_vjp(layer, p, g, (f, pos), kinds=("node_scalar",)), ValueError, "kinds"),
        (lambda: check_vjp(layer, p, g, (f, pos), rng="x"), TypeError, "rng"),
        (lambda: check_vjp(layer, p, "graph", (f, pos)), TypeError, "graph"),
        (lambda: assert_equivariant(layer, p, g, (f, pos), kinds, ("node_scalar",), "E4"),
         ValueError, "unknown group"),
        (lambda: assert_equivariant(layer, p, g, (f, pos), kinds, ("spinor",), "E3"),
         ValueError, "unknown kind"),
        (lambda: assert_equivariant(layer, p, g, (f, pos), kinds, (), "E3"),
         ValueError, "output_kinds has 0 entries"),
        (lambda: assert_equivariant(layer, p, g, (f, pos), kinds, ("node_scalar",), "E3",
                                    trials=0), ValueError, "trials"),
        (lambda: testing.register_kind("", lambda *a: a[0]), TypeError, "prefix"),
        (lambda: testing.register_group("X", None), TypeError, "sampler"),
    ]
    for fn, exc, words in bad:
        with pytest.raises(exc, match=words):
            fn()


def test_public_names_stay_importable():
    import geomp_ref.testing as kit

    for name in kit.__all__ + ["_kind_transform", "_group_sampler"]:
        assert callable(getattr(kit, name)), name


class _Centred:
    """out = z - mean(z), z = x * a + b (b one scalar): the gradient of b is exactly zero, but its
    finite difference is round-off. ``bias_grad`` lets a test plant a wrong gradient for b."""

    def __init__(self, bias_grad=0.0):
        self.bias_grad = bias_grad

    def forward(self, params, x):
        z = x * params["a"] + params["b"]
        return z - z.mean(), x

    def backward(self, params, x, grad_out):
        g = grad_out - grad_out.mean()
        return ({"a": np.sum(g * x, axis=0), "b": np.full(1, self.bias_grad)},
                (g * params["a"],))


def test_check_vjp_zero_gradient_leaf_passes_and_wrong_one_fails(rng):
    x = rng.normal(size=(50, 4)) * 1e3
    params = {"a": rng.normal(size=4), "b": rng.normal(size=1) * 1e3}
    errs = check_vjp(_Centred(), params, None, (x,), rng=rng)
    assert max(errs.values()) <= 1e-7, errs  # exact zero gradient: round-off is not an error
    errs = check_vjp(_Centred(bias_grad=1e-2), params, None, (x,), rng=rng)
    assert errs["param:b"] > 1e-3, errs  # a wrong gradient of a zero-gradient leaf is caught
