"""TensorProduct / FullyConnectedTensorProduct: VJPs, O(3) equivariance, closed forms, errors.

Independent routes: central finite differences (exact up to rounding: the map is linear in each
argument separately), the representation matrices ``Irreps.D_from_matrix`` with random
orthogonal matrices of both determinants, closed forms (dot and cross products) and the
normalisation constants of e3nn (11 paths, 36 weights for the example below).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from geomp_ref.o3.irreps import Irreps
from geomp_ref.o3.tensor_product import FullyConnectedTensorProduct, Instruction, TensorProduct


@pytest.fixture
def gen(request):
    import zlib

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def _orthogonal(gen, det):
    q, r = np.linalg.qr(gen.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) * det > 0 else -q


# One spec per connection mode, weighted and weightless, with both parities.
MODE_SPECS = {
    "uvw": (
        "3x1o+1x0e",
        "2x1e+1x2o",
        "4x0o+2x1o+1x2o+1x3e",
        [
            (0, 0, 0, "uvw", True),
            (0, 0, 1, "uvw", True, 0.5),
            (1, 1, 2, "uvw", True),
            (0, 1, 3, "uvw", True, 3.0),
        ],
    ),
    "uvu": ("3x1o", "2x2e", "3x1o", [(0, 0, 0, "uvu", True, 2.0)]),
    "uvu_noweight": ("3x1o", "2x2e", "3x3o", [(0, 0, 0, "uvu", False)]),
    "uvv": ("3x1o", "2x2e", "2x2o", [(0, 0, 0, "uvv", True)]),
    "uvv_noweight": ("3x1o", "2x2e", "2x1o", [(0, 0, 0, "uvv", False)]),
    "uuw": ("3x1o", "3x1e", "2x2o+1x0o", [(0, 0, 0, "uuw", True), (0, 0, 1, "uuw", False)]),
    "uuu": (
        "3x1o+2x0o",
        "3x1o+2x2e",
        "3x1e+2x2o",
        [(0, 0, 0, "uuu", True), (1, 1, 1, "uuu", False)],
    ),
    "uvuv": ("3x1o", "2x2e", "6x3o+6x1o", [(0, 0, 0, "uvuv", True), (0, 0, 1, "uvuv", False)]),
}


def _spec(key, **kw):
    a, b, o, ins = MODE_SPECS[key]
    return TensorProduct(a, b, o, ins, **kw)


def _inputs(spec, gen, n=5):
    x1 = gen.standard_normal((n, spec.irreps_in1.dim))
    x2 = gen.standard_normal((n, spec.irreps_in2.dim))
    w = None
    if spec.takes_weight:
        shape = (spec.weight_numel,) if spec.shared_weights else (n, spec.weight_numel)
        w = gen.standard_normal(shape)
    return x1, x2, w


def _fd_check(spec, params, inputs, gen, eps=1e-5):
    """Central difference of <g, f> along a random direction, for every input and the weight."""
    out, cache = spec.forward(params, *inputs)
    g = gen.standard_normal(out.shape)
    grad_params, grad_inputs = spec.backward(params, cache, g)
    assert len(grad_inputs) == len(inputs)

    def loss(p, xs):
        return float(np.sum(g * spec.forward(p, *xs)[0]))

    for k, x in enumerate(inputs):
        if x is None:
            assert grad_inputs[k] is None
            continue
        d = gen.standard_normal(x.shape)
        xs_p = list(inputs)
        xs_m = list(inputs)
        xs_p[k] = x + eps * d
        xs_m[k] = x - eps * d
        fd = (loss(params, xs_p) - loss(params, xs_m)) / (2 * eps)
        an = float(np.sum(grad_inputs[k] * d))
        assert abs(fd - an) <= 1e-8 * (abs(an) + np.linalg.norm(grad_inputs[k])), (k, fd, an)
    for name, w in params.items():
        d = gen.standard_normal(w.shape)
        fd = (loss({name: w + eps * d}, inputs) - loss({name: w - eps * d}, inputs)) / (2 * eps)
        an = float(np.sum(grad_params[name] * d))
        assert abs(fd - an) <= 1e-8 * (abs(an) + np.linalg.norm(grad_params[name])), (fd, an)


@pytest.mark.parametrize("key", sorted(MODE_SPECS))
@pytest.mark.parametrize("shared", [True, False])
def test_vjp_matches_finite_differences(key, shared, gen):
    spec = _spec(
        key,
        shared_weights=shared,
        irrep_normalization="norm" if shared else "component",
        path_normalization="path" if shared else "element",
    )
    params = spec.init(gen)
    _fd_check(spec, params, _inputs(spec, gen), gen)


def test_vjp_fully_connected_and_external_shared_weight(gen):
    fc = FullyConnectedTensorProduct("2x0e+1x1o+1x2e", "1x1o+1x0o", "2x1e+1x0o+1x2o")
    _fd_check(fc, fc.init(gen), _inputs(fc, gen), gen)
    ext = FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "2x1o+1x0e", internal_weights=False)
    assert ext.takes_weight and ext.init(gen) == {}
    _fd_check(ext, {}, _inputs(ext, gen), gen)


@pytest.mark.parametrize("key", sorted(MODE_SPECS))
@pytest.mark.parametrize("det", [1, -1])
def test_equivariant_under_o3(key, det, gen):
    spec = _spec(key, shared_weights=key != "uvw")
    params = spec.init(gen)
    inputs = _inputs(spec, gen)
    Q = _orthogonal(gen, det)
    D1 = Irreps(spec.irreps_in1).D_from_matrix(Q)
    D2 = Irreps(spec.irreps_in2).D_from_matrix(Q)
    Do = Irreps(spec.irreps_out).D_from_matrix(Q)
    out = spec(params, *inputs)
    rot = spec(params, inputs[0] @ D1.T, inputs[1] @ D2.T, *inputs[2:])
    np.testing.assert_allclose(rot, out @ Do.T, atol=1e-12 * (1 + np.abs(out).max()))


def test_reflection_kills_wrong_parity_guess(gen):
    # 1o x 1o couples to 1e (cross product): under -I it must NOT flip sign.
    tp = TensorProduct("1x1o", "1x1o", "1x1e", [(0, 0, 0, "uuu", False)])
    x, y = gen.standard_normal((2, 4, 3))
    np.testing.assert_allclose(tp({}, -x, -y), tp({}, x, y), atol=1e-15)


def test_closed_forms(gen):
    x, y = gen.standard_normal((2, 6, 3))
    # uuu 1o x 1o -> 1e = cross(x, y)/sqrt(6) times c = sqrt(3): cross/sqrt(2).
    tp = TensorProduct("1x1o", "1x1o", "1x1e", [(0, 0, 0, "uuu", False)])
    np.testing.assert_allclose(tp({}, x, y), np.cross(x, y) / math.sqrt(2), atol=1e-15)
    # 1o x 1o -> 0e: C = delta/sqrt(3), c = 1: dot/sqrt(3); path_weight 4 doubles it.
    tp = TensorProduct("1x1o", "1x1o", "1x0e", [(0, 0, 0, "uuu", False, 4.0)])
    np.testing.assert_allclose(tp({}, x, y)[:, 0], 2 * np.sum(x * y, 1) / math.sqrt(3), atol=1e-14)
    # 0e x 1o -> 1o with a weight: w * s * v (C = delta/sqrt(3), c = sqrt(3)).
    tp = TensorProduct("1x0e", "1x1o", "1x1o", [(0, 0, 0, "uvw", True)])
    s = gen.standard_normal((6, 1))
    np.testing.assert_allclose(tp({"weight": np.array([1.7])}, s, y), 1.7 * s * y, atol=1e-14)


def test_fully_connected_reference_constants():
    # e3nn builds 11 paths and 36 weights here, with c = sqrt(1/5), sqrt(3/7), sqrt(5/6).
    fc = FullyConnectedTensorProduct("2x0e+2x1o+1x2e", "1x0e+1x1o+1x2e", "2x0e+2x1o+2x2e")
    assert len(fc.instructions) == 11 and fc.weight_numel == 36
    want = {0: math.sqrt(1 / 5), 1: math.sqrt(3 / 7), 2: math.sqrt(5 / 6)}
    for ins, c in zip(fc.instructions, fc.path_coefficients):
        assert c == pytest.approx(want[ins.i_out], rel=1e-15)
    # e3nn's order: i1 outer, then i2, then i_out.
    keys = [(i.i_in1, i.i_in2, i.i_out) for i in fc.instructions]
    assert keys == sorted(keys)
    assert keys[:3] == [(0, 0, 0), (0, 1, 1), (0, 2, 2)]
    assert all(isinstance(i, Instruction) and i.connection_mode == "uvw" for i in fc.instructions)
    assert fc.instructions[0].path_shape == (2, 1, 2)


def test_weight_layout_is_row_major_per_instruction(gen):
    tp = TensorProduct(
        "2x0e",
        "3x0e",
        "4x0e+2x0e",
        [(0, 0, 0, "uvw", True), (0, 0, 1, "uvu", False), (0, 0, 1, "uvu", True)],
    )
    w = np.arange(tp.weight_numel, dtype=float)
    views = tp.weight_views(w)
    assert views[0].shape == (2, 3, 4) and views[1] is None and views[2].shape == (2, 3)
    assert views[0][1, 2, 3] == 1 * 12 + 2 * 4 + 3 and views[2][1, 0] == 24 + 3
    # Only path 0 reaches block 0: with x1 = e_u, x2 = e_v, out_w = c W_uvw.
    x1 = np.eye(2)[[1]]
    x2 = np.eye(3)[[2]]
    out = tp({"weight": w}, x1, x2)
    np.testing.assert_allclose(out[0, :4], tp.path_coefficients[0] * views[0][1, 2], rtol=1e-15)


def test_batch_dims_and_bilinearity(gen):
    fc = FullyConnectedTensorProduct("2x0e+1x1o", "1x1o+1x2e", "1x1e+2x1o+1x2o")
    p = fc.init(gen)
    x1 = gen.standard_normal((3, 4, fc.irreps_in1.dim))
    x2 = gen.standard_normal((3, 4, fc.irreps_in2.dim))
    out = fc(p, x1, x2)
    assert out.shape == (3, 4, fc.irreps_out.dim)
    flat = fc(p, x1.reshape(12, -1), x2.reshape(12, -1))
    np.testing.assert_array_equal(out.reshape(12, -1), flat)
    x1b = gen.standard_normal(x1.shape)
    np.testing.assert_allclose(fc(p, 2 * x1 - x1b, x2), 2 * out - fc(p, x1b, x2), atol=1e-13)
    empty = fc(p, np.zeros((0, fc.irreps_in1.dim)), np.zeros((0, fc.irreps_in2.dim)))
    assert empty.shape == (0, fc.irreps_out.dim)


def test_output_block_without_path_is_zero(gen):
    tp = TensorProduct("1x1o", "1x1o", "1x0e+1x2e", [(0, 0, 0, "uvw", True)])
    out = tp(tp.init(gen), *gen.standard_normal((2, 3, 3)))
    assert np.all(out[:, 1:] == 0)


def test_shared_weight_equals_per_sample_copies(gen):
    shared = _spec("uvu")
    per = _spec("uvu", shared_weights=False)
    p = shared.init(gen)
    x1, x2, _ = _inputs(shared, gen)
    np.testing.assert_allclose(
        per({}, x1, x2, np.tile(p["weight"], (5, 1))), shared(p, x1, x2), atol=1e-14
    )


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ins, match",
    [
        ([(0, 0, 0, "uvw", True)], "cannot couple"),  # 1o x 1o -> 1o violates parity
        ([(0, 0, 1, "uvw", True)], "out of range"),
        ([(0, 0, 0, "uvx", True)], "connection mode"),
        ([(0, 0)], r"instructions\[0\]"),
    ],
)
def test_bad_instructions(ins, match):
    with pytest.raises(ValueError, match=match):
        TensorProduct("2x1o", "1x1o", "2x1o", ins)


def test_bad_multiplicities_and_settings():
    with pytest.raises(ValueError, match=r"instructions\[0\]: mode 'uvw' needs has_weight=True"):
        TensorProduct("2x1o", "1x1o", "2x1e", [(0, 0, 0, "uvw", False)])
    with pytest.raises(ValueError, match="mul_in1 == mul_in2 == mul_out"):
        TensorProduct("2x1o", "3x1o", "2x1e", [(0, 0, 0, "uuu", True)])
    with pytest.raises(ValueError, match=r"instructions\[0\]: irreps cannot couple"):
        TensorProduct("1x2e", "1x0e", "1x0e", [(0, 0, 0, "uvw", True)])
    with pytest.raises(ValueError, match="irrep_normalization"):
        FullyConnectedTensorProduct("1x0e", "1x0e", "1x0e", irrep_normalization="unit")
    with pytest.raises(ValueError, match="path_normalization"):
        FullyConnectedTensorProduct("1x0e", "1x0e", "1x0e", path_normalization="x")
    with pytest.raises(ValueError, match="in1_var"):
        FullyConnectedTensorProduct("1x0e+1x1o", "1x0e", "1x0e", in1_var=[1.0])
    with pytest.raises(ValueError, match="irreps_in2"):
        FullyConnectedTensorProduct("1x0e", "1xq", "1x0e")
    with pytest.raises(ValueError, match="internal_weights"):
        FullyConnectedTensorProduct(
            "1x0e", "1x0e", "1x0e", internal_weights=True, shared_weights=False
        )


def test_bad_inputs(gen):
    fc = FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x1o+1x0e")
    p = fc.init(gen)
    x1, x2 = gen.standard_normal((4, 5)), gen.standard_normal((4, 3))
    with pytest.raises(ValueError, match="x1 must have shape"):
        fc(p, x1[:, :4], x2)
    with pytest.raises(ValueError, match="x2 must have shape"):
        fc(p, x1, x2[:, :2])
    with pytest.raises(ValueError, match="batch shape"):
        fc(p, x1, x2[:3])
    bad = x2.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="x2 contains NaN"):
        fc(p, x1, bad)
    with pytest.raises(ValueError, match=r"params\['weight'\]"):
        fc({"weight": p["weight"][:-1]}, x1, x2)
    with pytest.raises(ValueError, match="weight must not be passed"):
        fc(p, x1, x2, p["weight"])
    per = FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x1o+1x0e", shared_weights=False)
    with pytest.raises(ValueError, match="weight must be passed"):
        per({}, x1, x2)
    with pytest.raises(ValueError, match="weight must have shape"):
        per({}, x1, x2, np.ones((3, per.weight_numel)))
    out, cache = fc.forward(p, x1, x2)
    with pytest.raises(ValueError, match="grad_out of FullyConnectedTensorProduct.backward"):
        fc.backward(p, cache, out[:, :-1])
    with pytest.raises(TypeError, match="cache"):
        fc.backward(p, tuple(cache), out)


def test_zero_multiplicities(gen):
    fc = FullyConnectedTensorProduct("0x1o+2x0e", "1x1o", "0x0e+1x1o+3x1e")
    p = fc.init(gen)
    assert fc.weight_numel == 2
    _fd_check(fc, p, _inputs(fc, gen), gen)


def test_replace_recomputes_fully_connected_paths():
    import dataclasses

    fc = FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x1e+1x0e")
    assert fc == FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x1e+1x0e")
    g = dataclasses.replace(
        fc, irreps_out="2x1o+1x0e", shared_weights=False, internal_weights=False
    )
    assert g.takes_weight and [(i.i_in1, i.i_out) for i in g.instructions] == [(0, 0), (1, 1)]
