"""SEGNN blocks, layer and network: VJPs, O(3) equivariance (and the reference's documented
breaks), backends, the lmax = 0 identity with an invariant distance MPNN, errors.
The e3nn cross-check lives in tests/peers/test_e3nn_steerable.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geomp_ref.graph import complete_graph, make_graph
from geomp_ref.layers.segnn import SEGNN, SEGNNAttributes, SEGNNLayer, nbody_features
from geomp_ref.layers.segnn_blocks import O3TensorProduct, O3TensorProductGate
from geomp_ref.layers.segnn_common import make_gate
from geomp_ref.ops import activations
from geomp_ref.testing import (
    assert_backends_agree,
    assert_equivariant,
    check_vjp,
    graph_strategy,
    random_graph,
    random_points,
    symmetry_errors,
)

VJP_TOL = 1e-7
HID = "4x0e+2x1o+1x1e"


def _problem(rng, dim, n=6, num_graphs=2):
    pos = random_points(rng, n)
    graph = random_graph(rng, n, avg_degree=3.0, num_graphs=num_graphs)
    return graph, rng.normal(size=(n, dim)), pos


@pytest.mark.parametrize("mode", ["reference", "corrected"])
@pytest.mark.parametrize("gated", [False, True])
def test_block_vjp(mode, gated, rng):
    cls = O3TensorProductGate if gated else O3TensorProduct
    lay = cls("3x0e+1x0o+2x1o", "3x0e+1x1o+1x2e" if gated else "2x0e+1x0o+1x1e",
              "1x0e+1x1o", mode=mode)
    params = lay.init(rng)
    x1 = rng.normal(size=(5, lay.irreps_in1.dim if not gated else lay.tp.irreps_in1.dim))
    x2 = rng.normal(size=(5, 4))
    errs = check_vjp(lay, params, None, (x1, x2), rng=rng)
    assert max(errs.values()) <= VJP_TOL, errs
    single = cls("2x0e+1x1o", "2x0e+1x1o", mode=mode)  # no second input: ones
    p = single.init(rng)
    errs = check_vjp(single, p, None, (rng.normal(size=(4, 5)),), rng=rng)
    assert max(errs.values()) <= VJP_TOL, errs


@pytest.mark.parametrize("mode,norm", [("reference", "integral"), ("corrected", "component")])
def test_layer_vjp(mode, norm, rng):
    lay = SEGNNLayer(HID, lmax_attr=2, mode=mode, sh_normalization=norm)
    params = lay.init(rng)
    graph, h, pos = _problem(rng, lay.irreps_hidden.dim)
    errs = check_vjp(lay, params, graph, (h, pos), rng=rng)
    assert {"input:0", "input:1", "param:msg1/weight", "param:upd2/bias"} <= set(errs)
    assert max(errs.values()) <= VJP_TOL, errs


def _scale(tree, s):
    return {k: _scale(v, s) if isinstance(v, dict) else v * s for k, v in tree.items()}


class _GivenAttributes:
    """SEGNNLayer with the attributes as explicit inputs: (h, a_ij, a_i, s_ij)."""

    def __init__(self, lay):
        self.lay = lay

    def forward(self, params, graph, h, a_ij, a_i, s_ij):
        att = SEGNNAttributes(graph, None, None, a_ij, a_i, s_ij)
        out, cache = self.lay.forward_with_attributes(params, att, h)
        return out, (graph, cache)

    def backward(self, params, cache, grad_out):
        graph, c = cache
        grads, g_h, g_aij, g_ai, g_s = self.lay.backward_with_attributes(params, c, graph,
                                                                         grad_out)
        return grads, (g_h, g_aij, g_ai, g_s)


def test_layer_vjp_wrt_attributes(rng):
    """Edge attributes a_ij, node attributes a_i and s_ij as free inputs (not from positions)."""
    lay = SEGNNLayer(HID, lmax_attr=1)
    params = lay.init(rng)
    graph, h, _ = _problem(rng, lay.irreps_hidden.dim)
    E, N = graph.num_edges, graph.num_nodes
    inputs = (h, rng.normal(size=(E, 4)), rng.normal(size=(N, 4)), rng.uniform(1, 2, (E, 1)))
    errs = check_vjp(_GivenAttributes(lay), params, graph, inputs, rng=rng)
    assert {"input:1", "input:2", "input:3"} <= set(errs)
    assert max(errs.values()) <= VJP_TOL, errs


@pytest.mark.parametrize("task", ["node", "graph"])
def test_network_vjp(task, rng):
    out = "1x1o+1x0e" if task == "node" else "2x0e"
    net = SEGNN("2x1o+1x0e", "3x0e+1x1o", out, num_layers=1, task=task, pool="sum")
    # SEGNN's U(+-1/sqrt(fan_in)) init leaves the deep parameters with gradients ~1e-6, below
    # what a central difference resolves in float64; weights x3 keep every gradient O(1e-2+).
    params = _scale(net.init(rng), 3.0)
    graph, f, pos = _problem(rng, 7)
    errs = check_vjp(net, params, graph, (f, pos), rng=rng, eps=1e-4)
    assert max(errs.values()) <= VJP_TOL, errs


@given(graph=graph_strategy(max_nodes=6, max_edges=14, max_graphs=2),
       seed=st.integers(0, 2**32 - 1))
def test_layer_o3_equivariance_hypothesis(graph, seed):
    rng = np.random.default_rng(seed)
    lay = SEGNNLayer(HID, lmax_attr=2, mode="corrected")
    params = lay.init(rng)
    pos = random_points(rng, graph.num_nodes) if graph.num_nodes else np.zeros((0, 3))
    h = rng.normal(size=(graph.num_nodes, lay.irreps_hidden.dim))
    assert_equivariant(lay, params, graph, (h, pos), (f"irreps:{HID}", "position"),
                       (f"irreps:{HID}",), "E3", rng=rng, atol=1e-12)


def test_network_parity_reference_vs_corrected(rng):
    """Pseudoscalar biases (reference) break reflections but not rotations; corrected is E(3)."""
    kw = {"irreps_in": "2x1o+1x0e+1x0o", "irreps_hidden": "3x0e+1x1o+1x1e",
              "irreps_out": "1x1o+1x0o", "num_layers": 1, "task": "node"}
    graph, f, pos = _problem(rng, 8)
    kinds = (("irreps:2x1o+1x0e+1x0o", "position"), ("irreps:1x1o+1x0o",))
    ref = SEGNN(mode="reference", **kw)
    p = ref.init(rng)
    assert symmetry_errors(ref, p, graph, (f, pos), *kinds, "SE3", rng=rng)["transform"] < 1e-12
    assert symmetry_errors(ref, p, graph, (f, pos), *kinds, "E3", rng=rng)["transform"] > 1e-3
    cor = SEGNN(mode="corrected", **kw)
    p = cor.init(rng)
    assert_equivariant(cor, p, graph, (f, pos), *kinds, "E3", rng=rng, atol=1e-12)


def test_graph_readout_is_invariant(rng):
    net = SEGNN("2x1o+1x0e", "3x0e+1x1o", "1x0e", num_layers=2, task="graph")
    params = net.init(rng)
    graph, f, pos = _problem(rng, 7, n=7)
    assert_equivariant(net, params, graph, (f, pos), ("irreps:2x1o+1x0e", "position"),
                       ("graph_scalar",), "E3", rng=rng, atol=1e-12)


def test_nbody_centring_bug(rng):
    """Reference centring on each node's own xyz mean breaks E(3); the centroid fix does not."""
    graph = complete_graph(5)
    pos, vel = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    Q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    t = rng.normal(size=3)
    from geomp_ref import o3

    D = o3.Irreps("2x1o+1x0e").D_from_matrix(Q)
    for mode, ok in (("corrected", True), ("reference", False)):
        a = nbody_features(graph, pos @ Q.T + t, vel @ Q.T, mode) @ np.eye(7)
        b = nbody_features(graph, pos, vel, mode) @ D.T
        assert (np.abs(a - b).max() < 1e-12) == ok


def test_backends_agree(backend, rng):
    lay = SEGNNLayer("3x0e+1x1o", lmax_attr=1, backend=backend)
    params = lay.init(rng)
    graph, h, pos = _problem(rng, 6, n=7)
    assert_backends_agree(lay, params, graph, (h, pos))
    net = SEGNN("1x1o+1x0e", "3x0e+1x1o", "1x0e", num_layers=1, backend=backend)
    p = net.init(rng)
    assert_backends_agree(net, p, graph, (rng.normal(size=(7, 4)), pos))


@pytest.mark.parametrize("mode", ["reference", "corrected"])
def test_lmax0_is_invariant_distance_mpnn(mode, rng):
    """lmax_attr = 0 and scalar features: every steerable layer is a dense layer scaled by the
    constant attribute (Y^0 on edges; 1 or Y^0 on nodes) and SEGNN is an invariant MPNN on
    (h_i, h_j, |x_ij|^2) with SiLU, written here with plain matrices."""
    C = 3
    lay = SEGNNLayer(f"{C}x0e", lmax_attr=0, mode=mode, sh_normalization="integral")
    params = lay.init(rng)
    graph, h, pos = _problem(rng, C, n=6)
    out = lay(params, graph, h, pos)
    y0 = 1 / np.sqrt(4 * np.pi)
    a_node = 1.0 if mode == "reference" else y0

    def dense(p, x, a):  # weight (m1, 1, mo) flat -> (m1, mo); scale a; bias on the 0e block
        W = p["weight"].reshape(x.shape[1], -1)
        return a * (x @ W) + p["bias"]

    silu = activations.silu
    src, dst = graph.edge_index
    s = np.sum((pos[src] - pos[dst]) ** 2, axis=1, keepdims=True)
    m = silu(dense(params["msg2"], silu(dense(params["msg1"],
             np.concatenate([h[dst], h[src], s], 1), y0)), y0))
    agg = np.zeros((graph.num_nodes, C))
    np.add.at(agg, dst, m)
    upd = dense(params["upd2"], silu(dense(params["upd1"], np.concatenate([h, agg], 1), a_node)),
                a_node)
    np.testing.assert_allclose(out, h + upd, rtol=1e-12, atol=1e-13 * np.abs(out).max())


def test_gate_layout():
    plan = make_gate("1x0o", ("tanh",), "2x0e", ("sigmoid",), "1x1e+1x1o", "e3nn", "test")
    # e3nn's Gate expects the stable sort of scalars + gates + gated (odd before even)
    assert str(plan.irreps_in) == "1x0o+2x0e+1x1o+1x1e"
    assert str(plan.irreps_out) == "1x0o+1x1e+1x1o"


def test_isolated_node_attributes(rng):
    graph = make_graph(np.array([[0, 1], [1, 0]]), 3)  # node 2 isolated
    pos = random_points(rng, 3)
    for mode, want in (("reference", 1.0), ("corrected", 1 / np.sqrt(4 * np.pi))):
        lay = SEGNNLayer("2x0e+1x1o", mode=mode, sh_normalization="integral")
        att = lay.attributes(graph, pos)
        np.testing.assert_allclose(att.a_i[:, 0], want, rtol=1e-15)
        assert np.all(att.a_i[2, 1:] == 0)


@pytest.mark.parametrize("make,word", [
    (lambda: O3TensorProduct("2x0e", "1x1e", "1x0e+1x1o"), "irreps_out"),  # cannot couple
    (lambda: O3TensorProductGate("2x0e+1x1o", "2x0o+1x1o", "1x0e+1x1o"), "irreps_out"),  # silu 0o
    (lambda: O3TensorProductGate("2x0e", "1x1o+2x0e", "1x0e+1x1o"), "irreps_out"),
    (lambda: O3TensorProduct("2x0e", "2x0e", mode="fixed"), "mode"),
    (lambda: SEGNNLayer("2x0e+1x1o", sh_normalization="unit"), "sh_normalization"),
    (lambda: SEGNNLayer("2x0e+1x1o", backend="tpu"), "backend"),
    (lambda: SEGNN("1x0e", "2x0e+1x1o", "1x1o", task="graph"), "irreps_out"),
    (lambda: SEGNN("1x0e", "2x0e+1x1o", "1x0e", pool="max"), "pool"),
])
def test_bad_specs_name_the_field(make, word):
    with pytest.raises((ValueError, TypeError), match=word):
        make()


def test_bad_inputs_name_the_argument(rng):
    lay = SEGNNLayer("2x0e+1x1o")
    params = lay.init(rng)
    graph = make_graph(np.array([[0, 1], [1, 1]]), 2)  # self-loop: zero-length edge
    h = rng.normal(size=(2, 5))
    with pytest.raises(ValueError, match="pos"):
        lay(params, graph, h, np.array([[0.0, 0, 0], [1.0, 0, 0]]))
    with pytest.raises(ValueError, match="h must have shape"):
        lay(params, graph, h[:, :4], np.eye(2, 3))
    e3 = SEGNNLayer("2x0e+1x1o", zero_length="e3nn")
    out = e3(params, graph, h, np.array([[0.0, 0, 0], [1.0, 0, 0]]))
    assert np.all(np.isfinite(out))
