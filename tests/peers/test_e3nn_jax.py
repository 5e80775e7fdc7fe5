"""Cross-checks against e3nn-jax 0.21 (float64 through ``jax_enable_x64``), and one test for each
convention that differs from e3nn / geomp_ref (documented in ``geomp_ref.interop.e3nn_jax``).

Shapes are tiny and each e3nn-jax function is traced as few times as possible: the spherical
harmonics of degree 8 take seconds to trace, once per normalisation.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

jax = pytest.importorskip("jax")
e3nn = pytest.importorskip("e3nn_jax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from e3nn_jax import legacy  # noqa: E402

from geomp_ref import o3  # noqa: E402
from geomp_ref.interop import e3nn_jax as adapter  # noqa: E402
from geomp_ref.o3.activations import E3NN_CONSTANTS, EXACT_CONSTANTS  # noqa: E402

pytestmark = pytest.mark.peers

#: Highest degree of the default run's spherical-harmonic and D checks; 8 under -m slow.
LMAX_FAST = 4
JAX_ACTS = {"silu": jax.nn.silu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
            "relu": jax.nn.relu, "abs": jnp.abs, "identity": lambda x: x}


@pytest.fixture
def gen(request):
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-300))


def jax_sh(lmax, x, normalize, normalization=None):
    ls = list(range(lmax + 1))
    return np.asarray(e3nn.spherical_harmonics(
        ls, e3nn.IrrepsArray("1o", jnp.asarray(x)), normalize, normalization).array)


# --- spherical harmonics ----------------------------------------------------------------------


def _check_sh(normalization, lmax, gen):
    x = gen.normal(size=(6, 3)) * 1.7
    for normalize in (True, False):
        got = jax_sh(lmax, x, normalize, normalization)
        want = o3.spherical_harmonics(list(range(lmax + 1)), x, normalize, normalization)
        assert rel(got, want) < 1e-13, (normalization, normalize)
        ours = adapter.spherical_harmonics(list(range(lmax + 1)), x, normalize, normalization)
        assert rel(got, ours) < 1e-13


@pytest.mark.parametrize("normalization", ["component", "integral", "norm"])
def test_spherical_harmonics_every_normalization(normalization, gen):
    _check_sh(normalization, LMAX_FAST, gen)


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["component", "integral", "norm"])
def test_spherical_harmonics_degree_8(normalization, gen):
    _check_sh(normalization, 8, gen)


def test_spherical_harmonics_default_is_component(gen):
    x = gen.normal(size=(4, 3))
    got = jax_sh(2, x, True)  # no normalization argument: e3nn-jax's config says 'component'
    assert e3nn.config("spherical_harmonics_normalization") == "component"
    assert rel(got, o3.spherical_harmonics([0, 1, 2], x, True, "component")) < 1e-14
    assert rel(got, o3.spherical_harmonics([0, 1, 2], x, True)) > 0.5  # ours: 'integral'
    assert rel(got, adapter.spherical_harmonics([0, 1, 2], x, True)) < 1e-14


def test_spherical_harmonics_have_no_floor():
    x = np.array([[3e-14, -4e-14, 1.2e-13], [0.0, 0.0, 0.0], [0.3, -0.4, 1.2]])
    got = jax_sh(2, x, True, "component")
    unit = x[0] / np.linalg.norm(x[0])
    assert rel(got[0], o3.spherical_harmonics([0, 1, 2], unit, False, "component")) < 1e-14
    assert np.array_equal(got[1], np.eye(9)[0])  # zero vector: Y^0 only
    assert rel(got, adapter.spherical_harmonics([0, 1, 2], x, True)) < 1e-14
    # ours by default: the same for nonzero vectors, an error for a zero one
    assert rel(got[[0, 2]], o3.spherical_harmonics([0, 1, 2], x[[0, 2]], True, "component")) \
        < 1e-14
    with pytest.raises(ValueError):
        o3.spherical_harmonics([0, 1, 2], x, True, "component")
    # e3nn's floor (our zero_vector='e3nn'): |x| = 1.3e-13 is divided by 1e-12 instead
    floored = o3.spherical_harmonics([0, 1, 2], x, True, "component", zero_vector="e3nn")
    assert abs(floored[0, 1] - got[0, 1]) > 0.1
    assert rel(floored[1:], got[1:]) < 1e-14


# --- Clebsch-Gordan, rotations ------------------------------------------------------------------


def test_clebsch_gordan_equals_wigner_3j_up_to_l6():
    worst, count = 0.0, 0
    for l1 in range(7):
        for l2 in range(7):
            for l3 in range(abs(l1 - l2), min(l1 + l2, 6) + 1):
                c = np.asarray(e3nn.clebsch_gordan(l1, l2, l3))
                assert c.dtype == np.float64
                worst = max(worst, float(np.max(np.abs(c - o3.wigner_3j(l1, l2, l3)))))
                count += 1
    assert count == 175 and worst < 5e-15
    assert not hasattr(e3nn, "wigner_3j")


def _check_D(irreps, gen):
    a, b, c = gen.uniform(-7, 7, size=3)  # beyond 2 pi: e3nn-jax reduces the angles mod 2 pi
    Q = -o3.angles_to_matrix(a, b, c)  # a reflection: D = p^k D(det(Q) Q)
    ir = e3nn.Irreps(irreps)

    @jax.jit  # one compilation instead of one per eager operation
    def peer(a, b, c, Q):
        return (ir.D_from_angles(a, b, c, 0), ir.D_from_angles(a, b, c, 1), ir.D_from_matrix(Q),
                e3nn.angles_to_matrix(a, b, c), e3nn.matrix_to_angles(Q))

    d0, d1, dq, R, angles = peer(a, b, c, jnp.asarray(Q))
    ours = o3.Irreps(irreps)
    assert rel(d0, ours.D_from_angles(a, b, c, 0)) < 1e-13
    assert rel(d1, ours.D_from_angles(a, b, c, 1)) < 1e-13
    assert rel(dq, ours.D_from_matrix(Q)) < 1e-13
    assert rel(R, o3.angles_to_matrix(a, b, c)) < 1e-15
    # matrix_to_angles: e3nn-jax returns angles for a reflection, ours refuses
    angles = [float(t) for t in angles]
    assert all(np.isfinite(angles))
    assert rel(o3.angles_to_matrix(*angles), Q) > 0.5
    with pytest.raises(ValueError, match="determinant"):
        o3.matrix_to_angles(Q)


def test_wigner_D_and_euler_angles(gen):
    _check_D("+".join(f"1x{l}{'eo'[l % 2]}" for l in range(LMAX_FAST + 1)) + "+2x2o", gen)


@pytest.mark.slow
def test_wigner_D_degree_8(gen):
    _check_D("+".join(f"1x{l}{'eo'[l % 2]}" for l in range(9)) + "+2x2o", gen)


# --- irreps and layouts -------------------------------------------------------------------------


def test_sort_order_differs_at_even_l():
    text = "1x2o+2x0o+1x1e+1x2e+3x0e+1x1o+0x3e+1x0e"
    ref = e3nn.Irreps(text).sort()
    ours_sorted, p, inv = adapter.e3nn_jax_sort(text)
    assert str(ours_sorted) == str(ref.irreps) and p == ref.p and inv == ref.inv
    assert str(ref.irreps).startswith("3x0e+1x0e+2x0o+1x1o+1x1e+1x2e+1x2o")
    assert str(o3.Irreps(text).sort().irreps).startswith("2x0o+3x0e+1x0e+1x1o+1x1e+1x2o+1x2e")
    assert str(e3nn.Irreps("0e+0o").sort().irreps) == "1x0e+1x0o"
    assert str(o3.Irreps("0e+0o").sort().irreps) == "1x0o+1x0e"


def test_regroup_and_chunks_layout(gen):
    text = "1x2o+2x0o+1x1e+1x2e+3x0e+1x1o+1x0e"
    x = gen.normal(size=(2, o3.Irreps(text).dim))
    arr = e3nn.IrrepsArray(text, jnp.asarray(x))
    regrouped, cols = adapter.regroup_columns(text)
    ref = arr.regroup()
    assert str(regrouped) == str(ref.irreps)
    assert np.array_equal(x[:, cols], np.asarray(ref.array))
    # chunks are (..., mul, 2l+1) views of our multiplicity-major blocks
    for (mul, ir), sl, chunk in zip(o3.Irreps(text), o3.Irreps(text).slices(), arr.chunks):
        assert np.array_equal(x[:, sl].reshape(2, mul, 2 * ir.l + 1), np.asarray(chunk))
    irreps, back = adapter.array_from_e3nn_jax(adapter.array_to_e3nn_jax(text, x))
    assert str(irreps) == str(o3.Irreps(text)) and np.array_equal(back, x)


def test_mul_to_axis_and_back(gen):
    text = "6x0e+3x1e+9x2o"
    x = gen.normal(size=(2, o3.Irreps(text).dim))
    ref = e3nn.IrrepsArray(text, jnp.asarray(x)).mul_to_axis()
    irreps, y = adapter.mul_to_axis(text, x)
    assert str(irreps) == str(ref.irreps) and np.array_equal(y, np.asarray(ref.array))
    irreps2, z = adapter.axis_to_mul(irreps, y)
    back = e3nn.IrrepsArray(str(irreps), jnp.asarray(y)).axis_to_mul()
    assert str(irreps2) == str(back.irreps) == str(o3.Irreps(text))
    assert np.array_equal(z, x) and np.array_equal(z, np.asarray(back.array))


# --- tensor products and linears ------------------------------------------------------------------


@pytest.mark.parametrize("normalization", ["component", "norm"])
def test_weightless_tensor_product_is_uvuv_without_path_normalisation(normalization, gen):
    i1, i2 = "2x0o+1x1e+1x0e+1x2o", "1x0e+1x2e+1x1o"
    x1 = gen.normal(size=(3, o3.Irreps(i1).dim))
    x2 = gen.normal(size=(3, o3.Irreps(i2).dim))
    ref = e3nn.tensor_product(e3nn.IrrepsArray(i1, jnp.asarray(x1)),
                              e3nn.IrrepsArray(i2, jnp.asarray(x2)),
                              irrep_normalization=normalization)
    m = adapter.weightless_tensor_product(i1, i2, irrep_normalization=normalization)
    assert m.spec.weight_numel == 0 and m.spec.path_normalization == "none"
    out = m.spec.forward({}, x1[:, m.in1_columns], x2[:, m.in2_columns])[0][:, m.out_columns]
    assert str(m.irreps_out) == str(ref.irreps)
    assert rel(out, ref.array) < 1e-14
    filt = ["0e", "2o"]
    ref_f = e3nn.tensor_product(e3nn.IrrepsArray(i1, jnp.asarray(x1)),
                                e3nn.IrrepsArray(i2, jnp.asarray(x2)), filter_ir_out=filt,
                                irrep_normalization=normalization)
    mf = adapter.weightless_tensor_product(i1, i2, filter_ir_out=filt,
                                           irrep_normalization=normalization)
    out_f = mf.spec.forward({}, x1[:, mf.in1_columns], x2[:, mf.in2_columns])[0]
    assert str(mf.irreps_out) == str(ref_f.irreps)
    assert rel(out_f[:, mf.out_columns], ref_f.array) < 1e-14


TP_IN1, TP_IN2 = "2x0e+2x1o+1x1e", "2x0e+2x1o"
TP_OUT = "2x0e+2x1o+4x1e+2x2e+1x1e+2x1o"
#: every connection mode, a user path weight and a path without weights
TP_INS = [(0, 0, 0, "uvw", True), (1, 1, 0, "uuw", True, 0.5), (1, 0, 1, "uvu", True),
          (0, 1, 1, "uvv", True), (1, 1, 2, "uvuv", True), (2, 0, 4, "uvu", False),
          (1, 1, 3, "uuu", True), (2, 1, 5, "uvv", True)]


def _jax_tp_vjp(tp, w, x1, x2, cot):
    def f(w, a, b):
        return jax.vmap(lambda u, v: tp.left_right(
            w, e3nn.IrrepsArray(tp.irreps_in1, u), e3nn.IrrepsArray(tp.irreps_in2, v)).array)(a, b)

    out, vjp = jax.vjp(f, jnp.asarray(w), jnp.asarray(x1), jnp.asarray(x2))
    return np.asarray(out), [np.asarray(g) for g in vjp(jnp.asarray(cot))]


@pytest.mark.parametrize("norms", [("component", "element", "path"), ("norm", "path", "path"),
                                   ("component", "element", "element")])
def test_functional_tensor_product_same_weights(norms, gen):
    irrep_norm, path_norm, grad_norm = norms
    tp = legacy.FunctionalTensorProduct(TP_IN1, TP_IN2, TP_OUT, TP_INS, in1_var=[1.0, 2.0, 0.5],
                                        irrep_normalization=irrep_norm,
                                        path_normalization=path_norm,
                                        gradient_normalization=grad_norm)
    assert adapter.matches(tp) and not adapter.matches(object())
    n = sum(int(np.prod(i.path_shape)) for i in tp.instructions if i.has_weight)
    w = gen.normal(size=n)
    spec, params = adapter.from_e3nn_jax(tp, w)
    x1 = gen.normal(size=(3, o3.Irreps(TP_IN1).dim))
    x2 = gen.normal(size=(3, o3.Irreps(TP_IN2).dim))
    cot = gen.normal(size=(3, o3.Irreps(TP_OUT).dim))
    ref, (gw, g1, g2) = _jax_tp_vjp(tp, w, x1, x2, cot)
    out, cache = spec.forward(params, x1, x2)
    assert rel(out, ref) < 1e-13
    gp, (o1, o2, _) = spec.backward(params, cache, cot)
    assert rel(gp["weight"], gw) < 1e-13 and rel(o1, g1) < 1e-13 and rel(o2, g2) < 1e-13
    assert np.array_equal(adapter.weights_to_e3nn_jax(spec, params), w)
    # the list form of the weights converts the same
    _, p2 = adapter.from_e3nn_jax(tp, [w[: 2 * 2 * 2], w[8:]])
    assert np.array_equal(p2["weight"], w)


def test_fully_connected_tensor_product_recovers_normalisation_names(gen):
    tp = legacy.FunctionalFullyConnectedTensorProduct(TP_IN1, TP_IN2, "3x0e+2x1e+1x2e",
                                                      irrep_normalization="norm",
                                                      path_normalization="path")
    w = gen.normal(size=sum(int(np.prod(i.path_shape)) for i in tp.instructions))
    spec, params = adapter.from_e3nn_jax(tp, w)
    assert (spec.irrep_normalization, spec.path_normalization) == ("norm", "path")
    x1, x2 = gen.normal(size=o3.Irreps(TP_IN1).dim), gen.normal(size=o3.Irreps(TP_IN2).dim)
    ref = tp.left_right(jnp.asarray(w), e3nn.IrrepsArray(TP_IN1, jnp.asarray(x1)),
                        e3nn.IrrepsArray(TP_IN2, jnp.asarray(x2)))
    assert rel(spec.forward(params, x1, x2)[0], ref.array) < 1e-13
    with pytest.raises(AssertionError, match="vmap"):  # left_right takes one sample only
        tp.left_right(jnp.asarray(w), e3nn.IrrepsArray(TP_IN1, jnp.asarray(x1[None])),
                      e3nn.IrrepsArray(TP_IN2, jnp.asarray(x2[None])))


def test_tensor_product_modes_without_counterpart_raise():
    tp = legacy.FunctionalTensorProduct("3x1o", "3x1o", "3x0e", [(0, 0, 0, "uvu<v", True)])
    with pytest.raises(ValueError, match="uvu<v"):
        adapter.from_e3nn_jax(tp, np.zeros(3))
    with pytest.raises(TypeError, match="FunctionalLinear"):
        adapter.from_e3nn_jax(object())


@pytest.mark.parametrize("path_norm", ["element", "path"])
def test_functional_linear_same_weights_and_names(path_norm, gen):
    i_in, i_out = "2x0e+1x1o+3x0e+2x1o", "3x0e+2x1o+1x0o"
    lin = e3nn.FunctionalLinear(i_in, i_out, biases=True, path_normalization=path_norm)
    w = gen.normal(size=lin.num_weights)
    spec, params = adapter.from_e3nn_jax(lin, w)
    assert spec.path_normalization == path_norm and spec.bias_numel == 3
    x = gen.normal(size=(3, o3.Irreps(i_in).dim))
    cot = gen.normal(size=(3, o3.Irreps(i_out).dim))

    def f(w, x):
        return jax.vmap(lambda v: lin(w, e3nn.IrrepsArray(i_in, v)).array)(x)

    ref, vjp = jax.vjp(f, jnp.asarray(w), jnp.asarray(x))
    gw, gx = vjp(jnp.asarray(cot))
    out, cache = spec.forward(params, x)
    assert rel(out, ref) < 1e-13
    gp, (ox,) = spec.backward(params, cache, cot)
    assert rel(adapter.weights_to_e3nn_jax(spec, gp), gw) < 1e-13 and rel(ox, gx) < 1e-13
    # the names flax / haiku give, read from e3nn-jax's own parameter callback
    seen = []

    def get_parameter(name, shape, std, dtype):
        seen.append((name, tuple(shape)))
        return jnp.zeros(shape, dtype)

    from e3nn_jax._src.linear import linear_vanilla

    linear_vanilla(e3nn.IrrepsArray(i_in, jnp.asarray(x[0])), lin, get_parameter)
    names = adapter.linear_param_names(spec)
    assert [(n, s) for n, _, _, s in names] == seen
    flat = adapter.weights_to_e3nn_jax(spec, params)
    split = [np.asarray(a) for a in lin.split_weights(jnp.asarray(flat))]
    for (_, leaf, sl, shape), part in zip(names, split):
        assert np.array_equal(params[leaf][sl].reshape(shape), part)


def test_linear_with_gradient_normalization_element_raises(gen):
    lin = e3nn.FunctionalLinear("2x0e+3x0e", "2x0e", gradient_normalization="element")
    with pytest.raises(ValueError, match="gradient_normalization"):
        adapter.from_e3nn_jax(lin, gen.normal(size=lin.num_weights))


# --- gate -------------------------------------------------------------------------------------


def test_gate_layout_driven_with_deterministic_constants(gen):
    # 6 scalars for 3 gated irreps: the last three scalars (2x0e, then a 0o whose tanh flips
    # the parity of the 1e it gates) are the gates; the 0o among the others goes through tanh
    irreps = "2x0e+1x1o+1x0o+2x0e+1x0o+1x2e+1x1e"
    x = gen.normal(size=(4, o3.Irreps(irreps).dim))
    acts = dict(even_act="silu", odd_act="tanh", even_gate_act="sigmoid", odd_gate_act="tanh")
    ref = e3nn.gate(e3nn.IrrepsArray(irreps, jnp.asarray(x)),
                    **{k: JAX_ACTS[v] for k, v in acts.items()})
    m = adapter.gate_from_e3nn_jax(irreps, **acts)
    out = m.spec.forward({}, x[:, m.input_columns])[0] * m.output_scale
    assert str(m.irreps_out) == str(ref.irreps.simplify())
    assert rel(out, ref.array) < 1e-14
    # the constants: e3nn-jax's own normalize_function, neither e3nn's nor the exact ones
    for name in ("silu", "tanh", "sigmoid", "relu", "abs", "identity"):
        c = adapter.normalize_function_constant(name)
        psi = e3nn.normalize_function(JAX_ACTS[name])
        assert abs(float(psi(jnp.asarray(1.7))) - c * float(JAX_ACTS[name](1.7))) < 1e-14
        assert abs(c - EXACT_CONSTANTS[name]) > 5e-7 and abs(c - E3NN_CONSTANTS[name]) > 1e-4
    assert abs(adapter.normalize_function_constant("identity") - 1.0000126) < 1e-7
    with pytest.raises(ValueError, match="even_act"):
        adapter.gate_from_e3nn_jax(irreps)  # e3nn-jax's default gelu has no counterpart


# --- float32 ----------------------------------------------------------------------------------


def test_float32_unless_x64(gen):
    x = gen.normal(size=(3, 3))
    with jax.enable_x64(False):
        y = e3nn.spherical_harmonics("1o", jnp.asarray(x), True).array
        assert y.dtype == jnp.float32
        err = rel(np.asarray(y), o3.spherical_harmonics(1, x, True, "component"))
        assert 1e-9 < err < 1e-6
        with pytest.raises(RuntimeError, match="jax_enable_x64"):
            adapter.require_x64()
        with pytest.raises(ValueError, match="float64"):
            adapter.array_from_e3nn_jax(e3nn.IrrepsArray("1o", y))
    adapter.require_x64()
