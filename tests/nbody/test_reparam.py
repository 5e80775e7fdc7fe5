"""Rescaled blocks and the standard parametrisation (``geomp_ref.train.reparam``).

Independent routes: the fan-in constants of ``o3.Linear`` are read off its forward pass with
one-hot weights; the effective radial weights of ``TFNConv`` off its cached pre-activations; the
rescaled VJP against central differences; Adam's first step, whose size per stored coordinate is
the learning rate whatever the gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomp_ref import backends, o3, testing
from geomp_ref.cases import get_case
from geomp_ref.layers.tfn import TFNConv
from geomp_ref.models.nbody import NBodyEGNN
from geomp_ref.params import flatten, tree_map
from geomp_ref.train import Adam, Rescaled, standard_parametrization

LINEARS = [
    o3.Linear("3x0e+2x1o", "2x0e+4x1o"),
    o3.Linear("3x0e+2x0e+2x1o", "5x0e+1x1o", biases=True),
    o3.Linear("2x0e+1x0e+3x1o+2x2e", "4x0e+2x1o+1x2e", path_normalization="path"),
]


@pytest.mark.parametrize("lin", LINEARS, ids=[f"{x.irreps_in}->{x.irreps_out}" for x in LINEARS])
def test_linear_weight_normalization_is_what_forward_applies(lin):
    norm = lin.weight_normalization()
    assert set(norm) == set(lin.param_shapes())
    eye = np.eye(lin.irreps_in.dim)  # every input component at once
    bias = {"bias": np.zeros(lin.bias_numel)} if lin.bias_numel else {}
    for k in range(lin.weight_numel):
        w = np.zeros(lin.weight_numel)
        w[k] = 1.0
        out = lin.forward({"weight": w, **bias}, eye)[0]
        # a single weight maps x_{u,m} to c * x_{u,m} at one output channel, for each m
        assert norm["weight"][k] == np.abs(out).max()
    if lin.bias_numel:
        assert np.all(norm["bias"] == 1.0)


def test_tfnconv_standard_parametrization_stores_the_effective_weights():
    conv = TFNConv("2x0e+1x1o", "3x0e+2x1o", lmax=2, max_radius=4.0, num_basis=5,
                   radial_neurons=6, radial_layers=2)
    model = standard_parametrization(conv)
    rng = np.random.default_rng(3)
    graph = testing.random_graph(rng, 6, avg_degree=3.0, isolated=True)
    f = rng.normal(size=(6, conv.irreps_in.dim))
    pos = rng.normal(size=(6, 3))
    P = model.init(rng)
    _, cache = model.forward(P, graph, f, pos)
    inner = cache.inner
    for k in range(len(conv.radial_sizes) - 1):
        # pre-activation = layer input @ stored weight: no fan-in constant left
        np.testing.assert_allclose(inner.zs[k], inner.hs[k] @ P["radial"][f"W{k}"],
                                   rtol=1e-13, atol=1e-15)
    for name in ("lin1", "lin2", "sc"):
        np.testing.assert_array_equal(
            conv.weight_normalization()[name]["weight"],
            getattr(conv, name).weight_normalization()["weight"])


def _tfn_case():
    case = get_case("NBodyTFN/small")
    rng = np.random.default_rng(11)
    graph, inputs = case.make_inputs(rng, 10)
    return case, graph, inputs, rng


def test_rescaled_starts_as_the_block_and_its_vjp_matches_finite_differences():
    case, graph, inputs, rng = _tfn_case()
    model = standard_parametrization(case.layer)
    P = model.init(np.random.default_rng(5))
    W = case.layer.init(np.random.default_rng(5))
    for a, b in zip(flatten(model.block_params(P)).values(), flatten(W).values()):
        np.testing.assert_allclose(a, b, rtol=4e-16, atol=0)
    out = model.forward(P, graph, *inputs)[0]
    ref = case.layer.forward(W, graph, *inputs)[0]
    np.testing.assert_allclose(out, ref, rtol=1e-14, atol=1e-14)
    errs = testing.check_vjp(model, P, graph, inputs, rng=rng, kinds=case.input_kinds,
                             eps=case.fd_eps)
    assert max(errs.values()) <= case.vjp_rtol, errs
    assert any(k.startswith("param:") for k in errs) and "input:0" in errs


@settings(max_examples=6, deadline=None)
@given(graph=testing.graph_strategy(max_nodes=6, max_edges=14), seed=st.integers(0, 2**31 - 1))
def test_rescaled_is_as_equivariant_as_its_block(graph, seed):
    """E(3) and node permutations on arbitrary graphs (empty ones and isolated nodes included),
    with stored parameters that are not the block's init."""
    rng = np.random.default_rng(seed)
    case = get_case("NBodyTFN/small")
    model = standard_parametrization(case.layer)
    P = tree_map(lambda p: p * rng.uniform(0.5, 2.0, np.shape(p)), model.init(rng))
    n = graph.num_nodes
    inputs = (rng.normal(size=(n, 3)) * 2.0, rng.normal(size=(n, 3)),
              rng.choice([-1.0, 1.0], size=(n, 1)))
    errs = testing.symmetry_errors(model, P, graph, inputs, case.input_kinds, case.output_kinds,
                                   "E3", rng=rng)
    assert max(errs.values(), default=0.0) <= case.sym_atol, errs


def test_rescaled_with_arbitrary_scales_and_backends():
    lin = o3.Linear("3x0e+2x1o", "2x0e+3x1o", biases=True)
    rng = np.random.default_rng(2)
    scales = {"weight": rng.uniform(0.2, 5.0, lin.weight_numel), "bias": 3.0}
    model = Rescaled(lin, scales)
    P = model.init(rng)
    P["bias"] = rng.normal(size=lin.bias_numel)
    x = rng.normal(size=(4, lin.irreps_in.dim))
    errs = testing.check_vjp(model, P, None, (x,), rng=rng)
    assert max(errs.values()) <= 1e-8, errs
    np.testing.assert_allclose(model.forward(P, x)[0],
                               lin.forward(model.block_params(P), x)[0], rtol=0, atol=0)
    case, graph, inputs, _ = _tfn_case()
    tfn = standard_parametrization(case.layer)
    others = [b for b in backends.available() if b not in ("numpy", "cuda")]
    be = testing.backend_errors(tfn, tfn.init(1), graph, inputs, backends=others)
    assert be and all(v <= 1e-13 for v in be.values()), be


def test_first_adam_step_moves_effective_weights_by_lr_only_when_standard():
    """Adam's first step is lr * |g| / (|g| + eps) per stored coordinate: on the effective
    weights that is lr in the standard parametrisation and lr times the fan-in constant (e.g.
    1/sqrt(5) for the radial W0 of this case) in the native one."""
    case, graph, inputs, _ = _tfn_case()
    block = case.layer
    lr, eps = 1e-3, 1e-8
    coeffs = flatten(block.weight_normalization())
    native = Rescaled(block, tree_map(lambda shape: 1.0, block.param_shapes()))
    for model, factor in ((standard_parametrization(block), lambda c: 1.0),
                          (native, lambda c: c)):
        P = model.init(7)
        out, cache = model.forward(P, graph, *inputs)
        grads, _ = model.backward(P, cache, np.ones_like(out))
        opt = Adam(lr, eps=eps)
        P1, _ = opt.step(P, grads, opt.init(P))
        before, after = flatten(model.block_params(P)), flatten(model.block_params(P1))
        for key, g in flatten(grads).items():
            c = coeffs[key]
            moved = np.abs(after[key] - before[key]) * c  # on the effective weights
            expected = lr * np.abs(g) / (np.abs(g) + eps) * factor(c)
            np.testing.assert_allclose(moved, expected, rtol=1e-8, atol=1e-18)
            assert np.all(expected[np.abs(g) > 1e-3] > 0.99 * lr * factor(c[np.abs(g) > 1e-3]))


def test_rescaled_errors():
    lin = o3.Linear("2x0e", "2x0e", biases=True)
    with pytest.raises(TypeError, match="Rescaled.block must be a block"):
        Rescaled(object(), {})
    with pytest.raises(TypeError, match="Rescaled.scales must be a dict"):
        Rescaled(lin, 2.0)
    with pytest.raises(ValueError, match=r"exactly the keys \['bias', 'weight'\]"):
        Rescaled(lin, {"weight": 1.0})
    with pytest.raises(ValueError, match=r"scales\['weight'\] must be a number or have"):
        Rescaled(lin, {"weight": np.ones(3), "bias": 1.0})
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match=r"scales\['bias'\] must be finite and > 0"):
            Rescaled(lin, {"weight": 1.0, "bias": bad})
    with pytest.raises(TypeError, match=r"scales\['bias'\] must be a positive number"):
        Rescaled(lin, {"weight": 1.0, "bias": True})
    with pytest.raises(ValueError, match="has no backend to set"):
        Rescaled(lin, {"weight": 1.0, "bias": 1.0}, backend="numba")
    with pytest.raises(ValueError, match="Rescaled.backend"):
        standard_parametrization(get_case("NBodyTFN/small").layer, backend="fortran")
    model = Rescaled(lin, {"weight": 2.0, "bias": 1.0})
    with pytest.raises(ValueError, match="params of Rescaled lacks"):
        model.forward({"weight": np.ones(4)}, np.ones((1, 2)))
    with pytest.raises(TypeError, match="no weight_normalization"):
        standard_parametrization(NBodyEGNN())
    assert model.scales["weight"].flags.writeable is False
