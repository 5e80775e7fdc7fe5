"""Position-orientation convolution (R^3 x S^2, R^2 x S^1): what is specific to this layer.

The registry battery (``tests/test_cases.py``) covers VJPs, symmetry and backends of the
registered configurations. Here:

* an independent NumPy statement of PONITA's model pieces, written from the paper's equations and
  the published code's semantics with explicit loops (kernel basis: polynomial features,
  two-layer GELU networks, polynomial window; ``FiberBundleConv`` separable and not, depthwise and
  full; ``Conv``; the first-training-call calibration), against the library blocks fed the same
  bases and weights (weights written in torch's (out, in) layout, as an adapter reads them);
* a stack of layers sharing one basis, its summed basis gradients checked by finite differences;
* option semantics (invariants vs bases, the sender's orientation in the non-separable kernel),
  exact E(3) invariance on hypothesis graphs, what is only approximate, and the layer's errors.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geomp_ref import testing
from geomp_ref.cases import cases
from geomp_ref.graph import make_graph
from geomp_ref.layers.basis_conv import BasisConv
from geomp_ref.layers.kernels import MLPKernel
from geomp_ref.layers.position_orientation import PositionOrientationConv
from geomp_ref.layers.position_orientation_basis import PositionOrientationBasis
from geomp_ref.params import flatten

# --- the independent statement of PONITA ----------------------------------------------------------

_erf = np.vectorize(math.erf)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _torch_linear(x, weight, bias=None):
    """``torch.nn.Linear``: ``x W^T + b`` with ``weight`` (out, in)."""
    y = x @ weight.T
    return y if bias is None else y + bias


def _poly(z, degree):
    """Monomials in PONITA's order: z_a; z_a z_b (a slow); z_a z_b z_c; ... (no recursion)."""
    n = z.shape[-1]
    cols = []
    for d in range(1, degree + 1):
        for idx in np.ndindex(*(n,) * d):
            cols.append(np.prod([z[..., a] for a in idx], axis=0))
    return np.stack(cols, axis=-1)


def _window(d, r):
    u = d / r
    return np.where(u < 1.0, 1.0 - 28.0 * u**6 + 48.0 * u**7 - 21.0 * u**8, 0.0)


def _basis_net(z, w, degree):
    """``GELU(Lin2(GELU(Lin1(P(z)))))`` with torch-layout weights ``w = (W1, b1, W2, b2)``."""
    return _gelu(_torch_linear(_gelu(_torch_linear(_poly(z, degree), w[0], w[1])), w[2], w[3]))


def _ponita_attr(pos, ori, edge_index):
    """Fibre-bundle invariants per edge and orientation, and the fibre attribute."""
    src, dst = edge_index
    rel = pos[src] - pos[dst]
    E, O = len(src), len(ori)
    attr = np.zeros((E, O, 2))
    for e in range(E):
        for o in range(O):
            i1 = rel[e] @ ori[o]
            if pos.shape[1] == 3:
                i2 = np.linalg.norm(rel[e] - i1 * ori[o])
            else:
                i2 = -rel[e, 0] * ori[o, 1] + rel[e, 1] * ori[o, 0]
            attr[e, o] = (i1, i2)
    fiber_attr = np.array([[ori[k] @ ori[m] for m in range(O)] for k in range(O)])[..., None]
    return attr, fiber_attr, np.linalg.norm(rel, axis=1)


def _ponita_basis(pos, ori, edge_index, w, wf, degree, radius):
    attr, fiber_attr, dists = _ponita_attr(pos, ori, edge_index)
    basis = _basis_net(attr, w, degree)
    if radius is not None:
        basis = basis * _window(dists, radius)[:, None, None]
    return basis, _basis_net(fiber_attr, wf, degree)


def _ponita_fiber_bundle_conv(x, edge_index, kernel_basis, fiber_basis, wk, wf, bias, *,
                              separable, full, c_out):
    """FiberBundleConv with explicit loops: returns (x_1, x_2 + bias)."""
    src, dst = edge_index
    N, O, C = x.shape
    kernel = _torch_linear(kernel_basis, wk)
    if separable:
        x1 = np.zeros((N, O, C))
        for e in range(len(src)):
            x1[dst[e]] += kernel[e] * x[src[e]]
        fk = _torch_linear(fiber_basis, wf)
        x2 = np.zeros((N, O, c_out))
        for b in range(N):
            for p in range(O):
                for o in range(O):
                    if full:
                        x2[b, p] += fk[o, p].reshape(c_out, C) @ x1[b, o]
                    else:
                        x2[b, p] += fk[o, p] * x1[b, o]
        x2 /= O
    else:
        x2 = np.zeros((N, O, c_out))
        for e in range(len(src)):
            for p in range(O):
                for o in range(O):
                    k, xs = kernel[e, o, p], x[src[e], o]
                    x2[dst[e], p] += (k.reshape(c_out, C) @ xs) if full else k * xs
        x1 = x2
    return x1, x2 + bias


def _ponita_conv(x, edge_index, kernel_basis, wk, bias, *, full, c_out):
    src, dst = edge_index
    kernel = _torch_linear(kernel_basis, wk)
    out = np.zeros((x.shape[0], c_out))
    for e in range(len(src)):
        k = kernel[e]
        out[dst[e]] += (k.reshape(c_out, -1) @ x[src[e]]) if full else k * x[src[e]]
    return out + bias


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _problem(rng, dim, N=6, O=5):
    """Points, a PONITA-style edge list (self loops always present) and a random unit grid."""
    pos = rng.normal(size=(N, dim)) * 1.5
    pairs = rng.integers(0, N, size=(2, 3 * N))
    ei = np.unique(np.concatenate([pairs, np.stack([np.arange(N)] * 2)], axis=1), axis=1)
    ori = rng.normal(size=(O, dim))
    return pos, ei, ori / np.linalg.norm(ori, axis=1, keepdims=True)


def _mlp_params(w):
    """Torch-layout ``(W1, b1, W2, b2)`` -> ``MLPKernel`` params (weights stored (in, out))."""
    return {"W0": w[0].T.copy(), "b0": w[1], "W1": w[2].T.copy(), "b1": w[3]}


def _torch_weights(rng, P, H, B):
    return (rng.normal(size=(H, P)) / np.sqrt(P), rng.normal(size=H) * 0.1,
            rng.normal(size=(B, H)) / np.sqrt(H), rng.normal(size=B) * 0.1)


@pytest.mark.parametrize("dim", [3, 2])
def test_ponita_model_pieces_with_a_shared_basis(dim, rng):
    """Basis (degree 3, GELU, window) -> two depthwise separable FiberBundleConvs sharing it."""
    O, C, B, H, radius = 5, 4, 6, 7, 2.4
    pos, ei, ori = _problem(rng, dim, O=O)
    w, wf = _torch_weights(rng, 14, H, B), _torch_weights(rng, 3, H, B)
    layers = [(rng.normal(size=(C, B)), rng.normal(size=(C, B)), rng.normal(size=C))
              for _ in range(2)]
    x = rng.normal(size=(len(pos), O, C))

    kb, fkb = _ponita_basis(pos, ori, ei, w, wf, 3, radius)
    want = x
    for wk, wfk, bias in layers:
        want = _ponita_fiber_bundle_conv(want, ei, kb, fkb, wk, wfk, bias, separable=True,
                                         full=False, c_out=C)[1]

    grid = "fibonacci" if dim == 3 else "uniform"
    block = PositionOrientationBasis(B, dim=dim, grid=grid, num_ori=O, hidden=H, radius=radius)
    conv = PositionOrientationConv(C, C, dim=dim, grid=grid, num_ori=O, basis_dim=B,
                                   mixing="depthwise")
    graph = make_graph(ei, len(pos))
    basis, fiber_basis = block(
        {"kernel": _mlp_params(w), "fiber_kernel": _mlp_params(wf)}, graph, pos, ori
    )
    assert _rel(basis, kb) < 1e-13 and _rel(fiber_basis, fkb) < 1e-13
    h = x
    for wk, wfk, bias in layers:
        p = {"kernel": {"W0": wk.T}, "fiber_kernel": {"W0": wfk.T}, "b": bias}
        h = conv(p, graph, h, None, None, basis, fiber_basis)
    assert _rel(h, want) < 1e-13


@pytest.mark.parametrize("separable", [True, False])
@pytest.mark.parametrize("full", [False, True])
def test_fiber_bundle_conv_variants(separable, full, rng):
    """Separable or not, depthwise (groups = C) or full (groups = 1, (C_out, C_in) row-major)."""
    N, O, C, B = 5, 4, 3, 4
    c_out = 2 if full else C
    pos, ei, _ = _problem(rng, 3, N=N, O=O)
    E = ei.shape[1]
    x = rng.normal(size=(N, O, C))
    kb = rng.normal(size=(E, O, B) if separable else (E, O, O, B))
    fkb = rng.normal(size=(O, O, B))
    k_out = C if separable or not full else C * c_out
    wk = rng.normal(size=(k_out, B))
    wf = rng.normal(size=(C * c_out if full else C, B))
    bias = rng.normal(size=c_out)
    _, want = _ponita_fiber_bundle_conv(x, ei, kb, fkb, wk, wf, bias, separable=separable,
                                        full=full, c_out=c_out)
    layer = PositionOrientationConv(C, c_out, num_ori=O, basis_dim=B, separable=separable,
                                    mixing="full" if full else "depthwise")
    p = {"kernel": {"W0": wk.T}, "b": bias}
    if separable:
        p["fiber_kernel"] = {"W0": wf.T}
    out = layer(p, make_graph(ei, N), x, None, None, kb, fkb if separable else None)
    assert _rel(out, want) < 1e-13


@pytest.mark.parametrize("full", [False, True])
def test_basis_conv_is_ponitas_conv(full, rng):
    N, C, B = 6, 3, 5
    c_out = 4 if full else C
    _, ei, _ = _problem(rng, 3, N=N)
    x, kb = rng.normal(size=(N, C)), rng.normal(size=(ei.shape[1], B))
    wk, bias = rng.normal(size=(C * c_out if full else C, B)), rng.normal(size=c_out)
    want = _ponita_conv(x, ei, kb, wk, bias, full=full, c_out=c_out)
    layer = BasisConv(C, c_out, B, mixing="full" if full else "depthwise")
    out = layer({"kernel": {"W0": wk.T}, "b": bias}, make_graph(ei, N), x, kb)
    assert _rel(out, want) < 1e-13


@pytest.mark.parametrize("separable", [True, False])
def test_calibration_scales_reproduce_ponitas_rescaling(separable, rng):
    """PONITA's first training call: kernel weight *= std(x)/std(x_1), fibre weight *=
    std(x_1)/std(x_2) (unbiased std), after the call. The spec with the scales multiplied in
    computes what the re-scaled layer computes."""
    N, O, C, B = 6, 4, 3, 5
    _, ei, _ = _problem(rng, 3, N=N, O=O)
    E = ei.shape[1]
    x = rng.normal(size=(N, O, C))
    kb = rng.normal(size=(E, O, B) if separable else (E, O, O, B))
    fkb = rng.normal(size=(O, O, B))
    wk, wf, bias = rng.normal(size=(C, B)), rng.normal(size=(C, B)), rng.normal(size=C)
    x1, x2 = _ponita_fiber_bundle_conv(x, ei, kb, fkb, wk, wf, bias, separable=separable,
                                       full=False, c_out=C)
    x2 = x2 - bias
    s1 = np.std(x, ddof=1) / np.std(x1, ddof=1)
    s2 = np.std(x1, ddof=1) / np.std(x2, ddof=1) if separable else 1.0
    _, after = _ponita_fiber_bundle_conv(x, ei, kb, fkb, wk * s1, wf * s2, bias,
                                         separable=separable, full=False, c_out=C)
    layer = PositionOrientationConv(C, C, num_ori=O, basis_dim=B, separable=separable,
                                    mixing="depthwise")
    p = {"kernel": {"W0": wk.T}, "b": bias}
    if separable:
        p["fiber_kernel"] = {"W0": wf.T}
    graph = make_graph(ei, N)
    inputs = (x, None, None, kb, fkb if separable else None)
    _, cache = layer.forward(p, graph, *inputs)
    scales = layer.calibration_scales(cache)
    np.testing.assert_allclose(scales, (s1, s2), rtol=1e-13)
    rescaled = dataclasses.replace(layer, kernel_scale=scales[0], fiber_scale=scales[1])
    assert _rel(rescaled(p, graph, *inputs), after) < 1e-13
    conv = BasisConv(C, C, B)
    xc, kc = x[:, 0], rng.normal(size=(E, B))
    _, cc = conv.forward({"kernel": {"W0": wk.T}, "b": bias}, graph, xc, kc)
    y = _ponita_conv(xc, ei, kc, wk, np.zeros(C), full=False, c_out=C)
    assert conv.calibration_scales(cc) == pytest.approx(np.std(xc, ddof=1) / np.std(y, ddof=1))


# --- a stack sharing one basis: gradients summed over the layers ------------------------------


class _StackCache(NamedTuple):
    basis: tuple
    layers: tuple


@dataclasses.dataclass(frozen=True)
class _SharedBasisStack:
    """Basis block once, then ``depth`` convolutions that all read it (test composite)."""

    block: PositionOrientationBasis
    conv: PositionOrientationConv
    depth: int = 2

    def init(self, rng):
        return {"basis": self.block.init(rng),
                "layers": {str(k): self.conv.init(rng) for k in range(self.depth)}}

    def forward(self, params, graph, f, pos, ori):
        (basis, fiber_basis), bc = self.block.forward(params["basis"], graph, pos, ori)
        caches, h = [], f
        for k in range(self.depth):
            h, c = self.conv.forward(params["layers"][str(k)], graph, h, None, None, basis,
                                     fiber_basis)
            caches.append(c)
        return h, _StackCache(bc, tuple(caches))

    def backward(self, params, cache, grad_out):
        g, grads = grad_out, {"layers": {}}
        g_basis = g_fiber = 0.0
        for k in reversed(range(self.depth)):
            gp, (g, _, _, gb, gf) = self.conv.backward(params["layers"][str(k)],
                                                       cache.layers[k], g)
            grads["layers"][str(k)] = gp
            g_basis, g_fiber = g_basis + gb, g_fiber + gf  # every layer's share of the basis
        grads["basis"], (g_pos, g_ori) = self.block.backward(params["basis"], cache.basis,
                                                             (g_basis, g_fiber))
        return grads, (g, g_pos, g_ori)


def test_shared_basis_gradients_are_summed_over_layers(rng):
    O, C = 4, 3
    block = PositionOrientationBasis(4, dim=3, num_ori=O, hidden=5, degree=2, radius=3.0)
    conv = PositionOrientationConv(C, C, num_ori=O, basis_dim=4, mixing="depthwise")
    stack = _SharedBasisStack(block, conv)
    graph = testing.random_graph(rng, 5, self_loops=True)
    inputs = (rng.normal(size=(5, O, C)), testing.random_points(rng, 5, 3), block.ori)
    errs = testing.check_vjp(stack, stack.init(rng), graph, inputs, rng=rng)
    assert max(errs.values()) < 1e-7, errs


# --- option semantics ---------------------------------------------------------------------------


@pytest.mark.parametrize("separable", [True, False])
def test_invariants_mode_equals_bases_of_the_raw_invariants(separable, rng):
    """The kernels of the invariants are the basis mode fed (inv1, inv2[, A]) as the basis."""
    O, C = 5, 2
    layer = PositionOrientationConv(C, 3, num_ori=O, hidden=6, separable=separable)
    B = 2 if separable else 3
    twin = PositionOrientationConv(C, 3, num_ori=O, basis_dim=B, separable=separable,
                                   kernel=MLPKernel(B, C, (6, 6)),
                                   fiber_kernel=MLPKernel(B, C, (6,)) if separable else None)
    pos, ei, ori = _problem(rng, 3, N=5, O=O)
    attr, fiber_attr, _ = _ponita_attr(pos, ori, ei)
    if separable:
        basis, fiber_basis = attr, np.repeat(fiber_attr, 2, axis=-1)
        # the twin's fibre kernel reads 2 columns; zero weights on the copy keep it equal
        p = layer.init(rng)
        pt = dict(p, fiber_kernel=dict(p["fiber_kernel"],
                                       W0=np.concatenate([p["fiber_kernel"]["W0"],
                                                          np.zeros_like(p["fiber_kernel"]["W0"])])))
    else:
        A = fiber_attr[..., 0]
        E = attr.shape[0]
        basis = np.concatenate([np.repeat(attr[:, :, None], O, axis=2),
                                np.broadcast_to(A[None, :, :, None], (E, O, O, 1))], axis=-1)
        fiber_basis, p = None, layer.init(rng)
        pt = p
    graph = make_graph(ei, 5)
    f = rng.normal(size=(5, O, C))
    np.testing.assert_allclose(layer(p, graph, f, pos, ori),
                               twin(pt, graph, f, None, None, basis, fiber_basis),
                               rtol=1e-13, atol=1e-14)


@given(
    graph=testing.graph_strategy(max_nodes=6, max_edges=14, self_loops=True),
    seed=st.integers(0, 2**16),
)
def test_e3_invariance_hypothesis_graphs(graph, seed):
    rng = np.random.default_rng(seed)
    layer = PositionOrientationConv(2, 3, dim=3, grid="fibonacci", num_ori=5, hidden=6,
                                    separable=bool(seed % 2), mixing="full")
    params = layer.init(rng)
    n = graph.num_nodes
    inputs = (rng.normal(size=(n, 5, 2)), rng.normal(size=(n, 3)) * 2, layer.ori, None, None)
    testing.assert_equivariant(layer, params, graph, inputs,
                               ("node_scalar", "position", "graph_vector", "edge_scalar",
                                "graph_invariant"), ("node_scalar",), "E3", rng=rng, atol=1e-12)


POCASES = [c for c in cases("group_conv")
           if c.name.startswith(("PositionOrientation", "BasisConv"))]


@pytest.mark.parametrize("case", POCASES, ids=[c.name for c in POCASES])
def test_empty_graph(case, rng):
    graph, inputs = case.make_inputs(rng, 0)
    params = case.layer.init(rng)
    out, pullback = testing.vjp(case.layer, params, graph, *inputs)
    outs = out if isinstance(out, tuple) else (out,)
    assert all(o.size == 0 or not o.any() for o in outs[:1])
    _, grad_in = pullback(out)
    assert [None if g is None else g.shape for g in grad_in] == [
        None if x is None else np.shape(x) for x in inputs
    ]


def test_fixed_grid_is_only_approximately_invariant(rng):
    """Sensitivity: with the Fibonacci grid held fixed a rotation changes the pooled output; with
    the grid rotated along it does not."""
    layer = PositionOrientationConv(2, 3, dim=3, grid="fibonacci", num_ori=8, pool=True)
    params = layer.init(rng)
    graph = testing.random_graph(rng, 6)
    f, pos = rng.normal(size=(6, 8, 2)), testing.random_points(rng, 6, 3)
    Q = testing.random_orthogonal(rng, 3, proper=True)
    out = layer(params, graph, f, pos)
    assert np.abs(layer(params, graph, f, pos @ Q.T) - out).max() > 1e-6 * np.abs(out).max()
    np.testing.assert_allclose(
        layer(params, graph, f, pos @ Q.T, layer.ori @ Q.T), out, atol=1e-13 * np.abs(out).max()
    )


def test_2d_is_not_reflection_invariant(rng):
    """inv2 is signed in 2D: SE(2) but not E(2); a reflection changes the output."""
    layer = PositionOrientationConv(2, 3, dim=2, grid="uniform", num_ori=6)
    params = layer.init(rng)
    graph = testing.random_graph(rng, 5)
    f, pos = rng.normal(size=(5, 6, 2)), testing.random_points(rng, 5, 2)
    P = np.diag([1.0, -1.0])
    out = layer(params, graph, f, pos, layer.ori)
    assert np.abs(layer(params, graph, f, pos @ P.T, layer.ori @ P.T) - out).max() > 1e-6


def test_params_are_never_changed_and_outputs_repeat(rng):
    layer = PositionOrientationConv(2, 2, dim=3, grid="fibonacci", num_ori=6)
    params = layer.init(rng)
    snapshot = {k: v.copy() for k, v in flatten(params).items()}
    graph = testing.random_graph(rng, 5)
    f, pos = rng.normal(size=(5, 6, 2)), rng.normal(size=(5, 3))
    a, b = layer(params, graph, f, pos), layer(params, graph, f, pos)
    np.testing.assert_array_equal(a, b)
    for k, v in flatten(params).items():
        np.testing.assert_array_equal(v, snapshot[k])
    np.testing.assert_array_equal(layer.ori, PositionOrientationConv(2, 2, num_ori=6).ori)


def test_bad_specs(rng):
    P = PositionOrientationConv
    with pytest.raises(ValueError, match="PositionOrientationConv.dim"):
        P(2, 2, dim=4)
    with pytest.raises(ValueError, match="PositionOrientationConv.grid"):
        P(2, 2, dim=2, grid="fibonacci")
    with pytest.raises(ValueError, match="PositionOrientationConv.mixing"):
        P(2, 2, mixing="grouped")
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        P(2, 3, mixing="depthwise")
    with pytest.raises((TypeError, ValueError), match="PositionOrientationConv.basis_dim"):
        P(2, 2, basis_dim=0)
    with pytest.raises(ValueError, match="PositionOrientationConv.kernel_scale"):
        P(2, 2, kernel_scale=0.0)
    with pytest.raises(ValueError, match="PositionOrientationConv.kernel"):
        P(2, 2, kernel=MLPKernel(3, 2))  # separable invariants are 2 coordinates
    with pytest.raises(ValueError, match="PositionOrientationConv.fiber_kernel"):
        P(2, 2, separable=False, fiber_kernel=MLPKernel(1, 2))
    with pytest.raises(ValueError, match="PositionOrientationBasis.radius"):
        PositionOrientationBasis(3, radius=-1.0)
    with pytest.raises(ValueError, match="BasisConv.kernel"):
        BasisConv(2, 2, 3, kernel=MLPKernel(4, 2))


def test_inputs_must_match_the_options(rng):
    layer = PositionOrientationConv(2, 3, dim=3, grid="octahedron")
    params = layer.init(rng)
    graph = make_graph(np.array([[0, 1], [1, 0]]), 2)
    f, pos = rng.normal(size=(2, 6, 2)), rng.normal(size=(2, 3))
    with pytest.raises(ValueError, match="f must have shape"):
        layer(params, graph, f[:, :5], pos)
    with pytest.raises(ValueError, match="ori must have shape"):
        layer(params, graph, f, pos, np.ones((6, 2)))
    with pytest.raises(ValueError, match="pos must have shape"):
        layer(params, graph, f, pos[:, :2])
    with pytest.raises(TypeError, match="needs pos"):
        layer(params, graph, f)
    with pytest.raises(ValueError, match="got basis"):
        layer(params, graph, f, pos, None, np.zeros((2, 6, 3)))
    bad = f.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="f contains NaN"):
        layer(params, graph, bad, pos)
    with pytest.raises(TypeError, match="graph"):
        layer(params, None, f, pos)
    based = PositionOrientationConv(2, 3, grid="octahedron", basis_dim=3)
    bp = based.init(rng)
    basis, fiber_basis = rng.normal(size=(2, 6, 3)), rng.normal(size=(6, 6, 3))
    with pytest.raises(ValueError, match="got pos"):
        based(bp, graph, f, pos, None, basis, fiber_basis)
    with pytest.raises(TypeError, match="needs fiber_basis"):
        based(bp, graph, f, None, None, basis)
    with pytest.raises(ValueError, match="fiber_basis must have shape"):
        based(bp, graph, f, None, None, basis, fiber_basis[:, :5])
    with pytest.raises(ValueError, match="basis must have shape"):
        based(bp, graph, f, None, None, basis[:, :, :2], fiber_basis)
