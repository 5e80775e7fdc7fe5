"""SEGNN: what the registry battery (tests/test_cases.py) does not cover.

The reference mode's VJPs and documented symmetry breaks, the 0o gate layout, InstanceNorm
against a plain per-graph loop, the N-body attributes against hand formulas, the attribute
options' semantics, the lmax = 0 identity with an invariant distance MPNN, hypothesis graphs, and
the errors. The e3nn / published-code cross-checks live in tests/peers/test_e3nn_steerable.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geomp_ref import o3
from geomp_ref.graph import complete_graph, make_graph
from geomp_ref.layers.segnn import SEGNN, SEGNNLayer
from geomp_ref.layers.segnn_blocks import O3TensorProduct, O3TensorProductGate
from geomp_ref.layers.segnn_nbody import NBodyAttributes
from geomp_ref.layers.segnn_norm import InstanceNorm
from geomp_ref.ops import activations
from geomp_ref.testing import (
    assert_equivariant,
    check_vjp,
    graph_strategy,
    random_graph,
    random_points,
    symmetry_errors,
)

VJP_TOL = 1e-7
HID = "4x0e+2x1o+1x1e"
Y0 = 1 / math.sqrt(4 * math.pi)
#: kinds of SEGNN's (pos, edge_attr, node_attr, message_features) slots with computed attributes
UNUSED = ("position", "edge_scalar", "node_scalar", "edge_scalar")


def _problem(rng, dim, n=6, num_graphs=2):
    pos = random_points(rng, n)
    graph = random_graph(rng, n, avg_degree=3.0, num_graphs=num_graphs)
    return graph, rng.normal(size=(n, dim)), pos


def _scale(tree, s):
    return {k: _scale(v, s) if isinstance(v, dict) else v * s for k, v in tree.items()}


# --- the O3 layers --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["reference", "corrected"])
@pytest.mark.parametrize("gated", [False, True])
def test_block_vjp(mode, gated, rng):
    cls = O3TensorProductGate if gated else O3TensorProduct
    lay = cls("3x0e+1x0o+2x1o+1x1e", "3x0e+1x0o+1x1o+1x2e" if gated else "2x0e+1x0o+1x1e",
              "1x0e+1x1o", mode=mode)
    params = lay.init(rng)
    x1 = rng.normal(size=(5, lay.irreps_in1.dim))
    x2 = rng.normal(size=(5, 4))
    errs = check_vjp(lay, params, None, (x1, x2), rng=rng)
    assert max(errs.values()) <= VJP_TOL, errs
    single = cls("2x0e+1x1o", "2x0e+1x1o", mode=mode)  # no second input: ones
    p = single.init(rng)
    errs = check_vjp(single, p, None, (rng.normal(size=(4, 5)),), rng=rng)
    assert max(errs.values()) <= VJP_TOL, errs


def test_gate_with_0o_hidden_block(rng):
    """A 0o after the 0e scalars is gated; e3nn's gate reads its input sorted (0o first)."""
    kw = {"irreps_in1": "2x0e+1x1o+1x1e", "irreps_out": "4x0e+2x0o+1x1o",
          "irreps_in2": "1x0e+1x1o"}
    cor = O3TensorProductGate(mode="corrected", **kw)
    ref = O3TensorProductGate(mode="reference", **kw)
    assert str(cor.tp.irreps_out) == "7x0e+2x0o+1x1o"  # scalars, 3 gates, gated (written)
    assert str(cor.gate.irreps_in) == "2x0o+7x0e+1x1o"
    params = cor.init(rng)
    x1, x2 = rng.normal(size=(6, 8)), rng.normal(size=(6, 4))
    kinds = (("irreps:2x0e+1x1o+1x1e", "irreps:1x0e+1x1o"), ("irreps:4x0e+2x0o+1x1o",))
    assert_equivariant(cor, params, None, (x1, x2), *kinds, "O3", rng=rng, atol=1e-12)
    # the published code hands the written layout to the sorted gate: parity breaks
    p_ref = ref.init(rng)
    assert symmetry_errors(ref, p_ref, None, (x1, x2), *kinds, "O3", rng=rng)["transform"] > 1e-3
    # the corrected gate input is the written product output with its columns permuted
    zt = cor.tp(params, x1, x2)
    np.testing.assert_array_equal(cor(params, x1, x2), cor.gate({}, zt[:, cor.gate.input_columns]))
    np.testing.assert_array_equal(ref(p_ref, x1, x2), ref.gate({}, ref.tp(p_ref, x1, x2)))


def test_swish_without_gated_irreps_is_plain_silu(rng):
    lay = O3TensorProductGate("3x0e", "2x0e", "1x0e+1x1o")
    p = lay.init(rng)
    x1, x2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 4))
    np.testing.assert_array_equal(lay(p, x1, x2), activations.silu(lay.tp(p, x1, x2)))


def test_rescale_and_bias_by_hand(rng):
    """0e x 1x0e -> 0e: z = W^T x / sqrt(F) * sqrt(F) + b with the e3nn path constant 1/sqrt(F)."""
    lay = O3TensorProduct("3x0e", "2x0e")
    p = lay.init(rng)
    x = rng.normal(size=(5, 3))
    W = p["weight"].reshape(3, 2)
    np.testing.assert_allclose(lay(p, x), x @ W + p["bias"], rtol=1e-14, atol=1e-15)
    bound = 1 / math.sqrt(3)  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 3
    assert np.all(np.abs(p["weight"]) <= bound) and np.all(np.abs(p["bias"]) <= bound)


# --- reference mode: VJPs and its documented breaks ---------------------------------------


def test_reference_mode_vjps(rng):
    lay = SEGNNLayer(HID, "1x0e+1x1o+1x2e", additional_message_irreps="1x0e", mode="reference")
    graph, h, _ = _problem(rng, lay.irreps_hidden.dim)
    E, N = graph.num_edges, graph.num_nodes
    inputs = (h, rng.normal(size=(E, 9)), rng.normal(size=(N, 9)), rng.normal(size=(E, 1)))
    errs = check_vjp(lay, lay.init(rng), graph, inputs, rng=rng)
    assert max(errs.values()) <= VJP_TOL, errs
    net = SEGNN("2x1o+1x0e+1x0o", "3x0e+1x0o+1x1o", "1x0e", num_layers=1, task="graph",
                mode="reference", sh_normalization="integral")
    # SEGNN's U(+-1/sqrt(fan_in)) init leaves deep parameters with gradients ~1e-6, below what a
    # central difference resolves in float64; weights x3 keep every gradient O(1e-2+).
    params = _scale(net.init(rng), 3.0)
    graph, f, pos = _problem(rng, 8)
    errs = check_vjp(net, params, graph, (f, pos, None, None, None), rng=rng, eps=1e-4)
    assert max(errs.values()) <= VJP_TOL, errs


def test_network_parity_reference_vs_corrected(rng):
    """Pseudoscalar biases (reference) break reflections but not rotations; corrected is E(3)."""
    kw = {"irreps_in": "2x1o+1x0e+1x0o", "irreps_hidden": "3x0e+1x1o+1x1e",
          "irreps_out": "1x1o+1x0o", "num_layers": 1, "task": "node"}
    graph, f, pos = _problem(rng, 8)
    inputs = (f, pos, None, None, None)
    kinds = (("irreps:2x1o+1x0e+1x0o",) + UNUSED, ("irreps:1x1o+1x0o",))
    ref = SEGNN(mode="reference", **kw)
    p = ref.init(rng)
    assert symmetry_errors(ref, p, graph, inputs, *kinds, "SE3", rng=rng)["transform"] < 1e-12
    assert symmetry_errors(ref, p, graph, inputs, *kinds, "E3", rng=rng)["transform"] > 1e-3
    cor = SEGNN(mode="corrected", **kw)
    assert_equivariant(cor, cor.init(rng), graph, inputs, *kinds, "E3", rng=rng, atol=1e-12)


@given(graph=graph_strategy(max_nodes=6, max_edges=14, max_graphs=2),
       seed=st.integers(0, 2**32 - 1))
def test_network_e3_equivariance_hypothesis(graph, seed):
    rng = np.random.default_rng(seed)
    net = SEGNN("1x0e+1x1o", HID, "1x1o+1x0e", num_layers=1, lmax_attr=2, task="node",
                norm="instance")
    pos = random_points(rng, graph.num_nodes) if graph.num_nodes else np.zeros((0, 3))
    f = rng.normal(size=(graph.num_nodes, 4))
    assert_equivariant(net, net.init(rng), graph, (f, pos, None, None, None),
                       ("irreps:1x0e+1x1o",) + UNUSED, ("irreps:1x1o+1x0e",), "E3",
                       rng=rng, atol=1e-12)


# --- attributes -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,want", [("reference", 1.0), ("corrected", Y0)])
def test_computed_node_attributes(mode, want, rng):
    """a_i = mean_j Y(x_ij) with column 0 replaced (isolated node 2: only that column)."""
    graph = make_graph(np.array([[0, 1, 0], [1, 0, 3]]), 4)  # node 2 isolated
    pos = random_points(rng, 4)
    net = SEGNN("1x0e", "2x0e+1x1o", "1x0e", num_layers=1, task="node", mode=mode)
    _, cache = net.forward(net.init(rng), graph, np.ones((4, 1)), pos)
    a_i = cache.embed.tp.x2  # the node attribute the embedding read
    u = (pos[graph.src] - pos[graph.dst]) / np.linalg.norm(pos[graph.src] - pos[graph.dst],
                                                           axis=1)[:, None]
    y1 = math.sqrt(3) * Y0 * u  # Y^1 = sqrt(3/4pi) (x, y, z), integral normalisation
    np.testing.assert_allclose(a_i[:, 0], want, rtol=1e-15)
    np.testing.assert_allclose(a_i[1, 1:], y1[0], rtol=1e-14)
    np.testing.assert_allclose(a_i[3, 1:], y1[2], rtol=1e-14)
    assert np.all(a_i[2, 1:] == 0)


def test_given_node_attributes_reference_overwrites_column0(rng):
    graph, f, _ = _problem(rng, 1, n=5)
    E = graph.num_edges
    kw = {"num_layers": 1, "task": "node", "edge_attr": "input", "node_attr": "input",
          "message_features": "none"}
    na = rng.normal(size=(5, 4))
    ea = rng.normal(size=(E, 4))
    for mode, col0 in (("reference", np.ones(5)), ("corrected", na[:, 0])):
        net = SEGNN("1x0e", "2x0e+1x1o", "1x0e", mode=mode, **kw)
        _, cache = net.forward(net.init(rng), graph, f, None, ea, na, None)
        np.testing.assert_array_equal(cache.embed.tp.x2[:, 0], col0)
        np.testing.assert_array_equal(cache.embed.tp.x2[:, 1:], na[:, 1:])
    assert na[0, 0] != 1.0  # the caller's array is untouched


def test_nbody_attributes_by_hand(rng):
    graph = complete_graph(5, np.repeat([0, 1], [3, 2]))
    pos, vel = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    q = rng.choice([-1.0, 1.0], size=(5, 1))
    (f, ea, na, msg), _ = NBodyAttributes(lmax_attr=1).forward({}, graph, pos, vel, q)
    src, dst = graph.src, graph.dst
    rel = pos[src] - pos[dst]
    d = np.sqrt(np.sum(rel**2, axis=1))
    np.testing.assert_allclose(ea[:, 0], Y0, rtol=1e-15)
    np.testing.assert_allclose(ea[:, 1:], math.sqrt(3) * Y0 * rel / d[:, None], rtol=1e-14)
    v1 = math.sqrt(3) * Y0 * vel / np.linalg.norm(vel, axis=1)[:, None]
    mean1 = np.stack([ea[dst == i, 1:].mean(0) for i in range(5)])
    np.testing.assert_allclose(na[:, 1:], mean1 + v1, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(na[:, 0], 1.0)
    np.testing.assert_allclose(msg, np.stack([d, q[dst, 0] * q[src, 0]], 1), rtol=1e-15)
    cent = np.concatenate([pos[:3] - pos[:3].mean(0), pos[3:] - pos[3:].mean(0)])
    np.testing.assert_allclose(f, np.concatenate([cent, vel, np.linalg.norm(vel, axis=1)[:, None]],
                                                 1), rtol=1e-14, atol=1e-15)
    (f_ref, *_), _ = NBodyAttributes(lmax_attr=1, mode="reference").forward({}, graph, pos, vel,
                                                                             q)
    np.testing.assert_allclose(f_ref[:, :3], pos - pos.mean(1, keepdims=True), rtol=1e-15)


def test_nbody_reference_centring_breaks_e3(rng):
    graph = complete_graph(5)
    inputs = (rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), np.ones((5, 1)))
    kinds = (("position", "vector", "node_scalar"),
             ("irreps:2x1o+1x0e", "edge_irreps:1x0e+1x1o", "irreps:1x0e+1x1o", "edge_scalar"))
    import geomp_ref.cases.steerable  # noqa: F401  (registers the edge_irreps kind)

    ref = NBodyAttributes(mode="reference")
    assert symmetry_errors(ref, {}, graph, inputs, *kinds, "E3", rng=rng)["transform"] > 1e-3
    assert_equivariant(NBodyAttributes(), {}, graph, inputs, *kinds, "E3", rng=rng, atol=1e-12)


def test_nbody_reference_vjp_and_zero_velocity(rng):
    graph = complete_graph(4)
    pos, vel, q = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 1))
    lay = NBodyAttributes(lmax_attr=2, mode="reference")
    errs = check_vjp(lay, {}, graph, (pos, vel, q), rng=rng)
    assert max(errs.values()) <= VJP_TOL, errs
    vel[1] = 0.0
    with pytest.raises(ValueError, match="vel: node 1 has zero velocity"):
        lay({}, graph, pos, vel, q)
    out = NBodyAttributes(lmax_attr=2, zero_length="e3nn")({}, graph, pos, vel, q)
    assert np.all(np.isfinite(out[2])) and out[0][1, 6] == 0.0


# --- InstanceNorm -----------------------------------------------------------------------------


def _instance_norm_loop(irreps, x, batch, w, b, eps, normalization, mode):
    """The published equations, one graph and one field at a time."""
    out = np.empty_like(x)
    iw = ib = 0
    for (mul, ir), sl in zip(o3.Irreps(irreps), o3.Irreps(irreps).slices()):
        d = ir.dim
        for u in range(mul):
            cols = slice(sl.start + u * d, sl.start + (u + 1) * d)
            for gidx in np.unique(batch):
                rows = batch == gidx
                fld = x[rows, cols]
                if ir.l == 0:
                    fld = fld - fld.mean(axis=0)
                q = (fld**2).mean(1) if normalization == "component" else (fld**2).sum(1)
                out_f = fld * w[iw + u] / math.sqrt(q.mean() + eps)
                if ir.l == 0 and (ir.p == 1 or mode == "reference"):
                    out_f = out_f + b[ib + u]
                out[rows, cols] = out_f
        iw += mul
        ib += mul if ir.l == 0 and (ir.p == 1 or mode == "reference") else 0
    return out


@pytest.mark.parametrize("normalization", ["component", "norm"])
@pytest.mark.parametrize("mode", ["corrected", "reference"])
def test_instance_norm_against_a_loop(normalization, mode, rng):
    irreps = "2x0e+1x0o+2x1o+1x2e"
    lay = InstanceNorm(irreps, normalization=normalization, mode=mode)
    graph = random_graph(rng, 9, num_graphs=3)
    x = rng.normal(size=(9, 14))
    p = {k: rng.normal(size=v.shape) for k, v in lay.init(rng).items()}
    want = _instance_norm_loop(irreps, x, graph.batch, p["weight"], p["bias"], 1e-5,
                               normalization, mode)
    np.testing.assert_allclose(lay(p, graph, x), want, rtol=1e-13, atol=1e-14)
    assert max(check_vjp(lay, p, graph, (x,), rng=rng).values()) <= VJP_TOL
    plain = InstanceNorm(irreps, affine=False, normalization=normalization)
    assert plain.init(0) == {}
    np.testing.assert_allclose(plain({}, graph, x), _instance_norm_loop(
        irreps, x, graph.batch, np.ones(7), np.zeros(7), 1e-5, normalization, "corrected"),
        rtol=1e-13, atol=1e-14)


def test_instance_norm_layer_vjp_and_the_cancelled_bias(rng):
    """After the norm centres scalars per graph, upd2's scalar bias cannot matter: its gradient
    is exactly 0 (up to rounding), and every other leaf matches finite differences."""
    lay = SEGNNLayer(HID, "1x0e+1x1o", norm="instance")
    params = lay.init(rng)
    graph, h, _ = _problem(rng, lay.irreps_hidden.dim, n=8)
    inputs = (h, rng.normal(size=(graph.num_edges, 4)), rng.normal(size=(8, 4)), None)
    out, cache = lay.forward(params, graph, *inputs)
    grads, _ = lay.backward(params, cache, rng.normal(size=out.shape))
    assert np.max(np.abs(grads["upd2"]["bias"])) < 1e-13 * np.max(np.abs(grads["upd2"]["weight"]))
    errs = check_vjp(lay, params, graph, inputs, rng=rng, eps=1e-4)
    errs.pop("param:upd2/bias")
    assert max(errs.values()) <= VJP_TOL, errs


# --- the lmax = 0 identity --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["reference", "corrected"])
def test_lmax0_is_invariant_distance_mpnn(mode, rng):
    """lmax_attr = 0 and scalar features: every steerable layer is a dense layer scaled by the
    constant attribute (Y^0 on edges; 1 or Y^0 on nodes) and SEGNN is an invariant MPNN on
    (h_i, h_j, |x_ij|^2) with SiLU, written here with plain matrices."""
    C = 3
    net = SEGNN(f"{C}x0e", f"{C}x0e", f"{C}x0e", num_layers=1, lmax_attr=0, task="node",
                mode=mode)
    params = net.init(rng)
    graph, h, pos = _problem(rng, C, n=6)
    a_node = 1.0 if mode == "reference" else Y0

    def dense(p, x, a):  # weight (m1, 1, mo) flat -> (m1, mo); scale a; bias on the 0e block
        W = p["weight"].reshape(x.shape[1], -1)
        return a * (x @ W) + p["bias"]

    silu = activations.silu
    src, dst = graph.edge_index
    s = np.sum((pos[src] - pos[dst]) ** 2, axis=1, keepdims=True)
    lp = params["layers"]["0"]
    x = dense(params["embed"], h, a_node)
    m = silu(dense(lp["msg2"], silu(dense(lp["msg1"], np.concatenate([x[dst], x[src], s], 1),
                                          Y0)), Y0))
    agg = np.zeros((graph.num_nodes, C))
    np.add.at(agg, dst, m)
    x = x + dense(lp["upd2"], silu(dense(lp["upd1"], np.concatenate([x, agg], 1), a_node)),
                  a_node)
    want = dense(params["pre2"], silu(dense(params["pre1"], x, a_node)), a_node)
    out = net(params, graph, h, pos)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-13 * np.abs(out).max())


def test_positions_at_extreme_scales(rng):
    """Computed harmonics are scale-free: positions x 1e-150 give the same output with the
    |x_ij|^2 feature switched off, and finite gradients (scaled by 1e150)."""
    net = SEGNN("1x0e+1x1o", "3x0e+1x1o", "1x1o", num_layers=1, task="node",
                message_features="none")
    params = net.init(rng)
    graph, f, pos = _problem(rng, 4, n=6)
    out, cache = net.forward(params, graph, f, pos)
    cot = rng.normal(size=out.shape)
    g_pos = net.backward(params, cache, cot)[1][1]
    for s in (1e-150, 1e150):
        out_s, cache_s = net.forward(params, graph, f, pos * s)
        np.testing.assert_allclose(out_s, out, rtol=1e-12, atol=1e-14)
        g_s = net.backward(params, cache_s, cot)[1][1]
        np.testing.assert_allclose(g_s * s, g_pos, rtol=1e-10, atol=1e-12 * np.abs(g_pos).max())
    with pytest.raises(ValueError, match="squared edge length exceeds"):
        sq = SEGNN("1x0e+1x1o", "3x0e+1x1o", "1x1o", num_layers=1, task="node")
        sq(sq.init(rng), graph, f, pos * 1e200)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("make,word", [
    (lambda: O3TensorProduct("2x0e", "1x1e", "1x0e+1x1o"), "irreps_out"),  # cannot couple
    (lambda: O3TensorProductGate("2x0e+1x1o", "2x0o+1x1o", "1x0e+1x1o"), "must be 0e"),
    (lambda: O3TensorProductGate("2x0e+1x1o", "2x0o+2x0e+1x1o", "1x0e+1x1o"),
     "2x0e\\+2x0o\\+1x1o"),  # the suggested order
    (lambda: O3TensorProductGate("2x0e", "1x1o+2x0e", "1x0e+1x1o"), "start with its scalars"),
    (lambda: O3TensorProduct("2x0e", "2x0e", mode="fixed"), "O3TensorProduct.mode"),
    (lambda: SEGNNLayer("2x0e+1x1o", norm="batch"), "SEGNNLayer.norm"),
    (lambda: SEGNNLayer("2x0e+1x1o", backend="tpu"), "backend"),
    (lambda: SEGNN("1x0e", "2x0e+1x1o", "1x1o", task="graph"), "SEGNN.irreps_out"),
    (lambda: SEGNN("1x0e", "2x0e+1x1o", "1x0e", pool="max"), "SEGNN.pool"),
    (lambda: SEGNN("1x0e", "2x0e+1x1o", "1x0e", sh_normalization="unit"), "sh_normalization"),
    (lambda: SEGNN("1x0e", "2x0e+1x1o", "1x0e", message_features="input"),
     "additional_message_irreps must be given"),
    (lambda: SEGNN("1x0e", "2x0e+1x1o", "1x0e", irreps_node_attr="1x0e"), "irreps_node_attr"),
    (lambda: SEGNN("1x0e", "2x0e+1x1o", "1x0e", edge_attr="input", irreps_edge_attr="1x1o"),
     "start with 0e"),
    (lambda: SEGNN("1x0e", "2x0e+1x1o", "1x0e", num_layers=2.5), "num_layers"),
    (lambda: InstanceNorm("2x0e", eps=0.0), "InstanceNorm.eps"),
    (lambda: NBodyAttributes(mode="published"), "NBodyAttributes.mode"),
])
def test_bad_specs_name_the_field(make, word):
    with pytest.raises((ValueError, TypeError), match=word):
        make()


def test_bad_inputs_name_the_argument(rng):
    net = SEGNN("1x0e", "2x0e+1x1o", "1x0e", num_layers=1, task="node")
    params = net.init(rng)
    graph = make_graph(np.array([[0, 1], [1, 1]]), 2)  # self-loop: zero-length edge
    f = np.ones((2, 1))
    with pytest.raises(ValueError, match="pos: edge 1 joins coincident points"):
        net(params, graph, f, np.array([[0.0, 0, 0], [1.0, 0, 0]]))
    with pytest.raises(TypeError, match="SEGNN.forward needs pos"):
        net(params, graph, f)
    with pytest.raises(ValueError, match="edge_attr"):
        net(params, graph, f, np.eye(2, 3), np.ones((2, 4)))
    with pytest.raises(ValueError, match="f must have shape"):
        net(params, graph, np.ones((2, 2)), np.eye(2, 3))
    lay = SEGNNLayer("2x0e+1x1o", additional_message_irreps="2x0e")
    p = lay.init(rng)
    h, ea, na = np.ones((2, 5)), np.ones((2, 4)), np.ones((2, 4))
    with pytest.raises(TypeError, match="needs message_features"):
        lay(p, graph, h, ea, na)
    with pytest.raises(ValueError, match="message_features must have shape"):
        lay(p, graph, h, ea, na, np.ones((2, 1)))
    with pytest.raises(ValueError, match="layers"):
        net({k: v for k, v in params.items() if k != "layers"}, graph, f, np.eye(2, 3))
    e3 = SEGNN("1x0e", "2x0e+1x1o", "1x0e", num_layers=1, task="node", zero_length="e3nn",
               message_features="none")
    out = e3(e3.init(rng), graph, f, np.array([[0.0, 0, 0], [1.0, 0, 0]]))
    assert np.all(np.isfinite(out))
