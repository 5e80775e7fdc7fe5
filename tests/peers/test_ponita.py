"""PONITA's layers (ebekkers/ponita) against the oracle through ``geomp_ref.interop.ponita``.

The classes below are test doubles written from the published structure: the same class names
(``Conv``, ``FiberBundleConv``, ``PolynomialFeatures``, ``PolynomialCutoff``), the same attribute,
submodule, parameter and buffer names (``kernel``, ``fiber_kernel``, ``bias``, ``callibrated``,
``depthwise``, ``separable``; ``p``, ``r_max``), the same forward signatures and semantics
(messages from ``edge_index[0]`` summed at ``edge_index[1]``; the fibre sum divided by the grid
size; the one-off calibration of the first training call; the constructor that sets
``in_channels``/``out_channels`` only for depthwise layers), and the basis network
``Sequential(PolynomialFeatures, Linear, GELU, Linear, GELU)`` with one GELU instance used twice.
The invariants are written here from their published definitions. Bases fed to the layers come
from that pipeline on 3D and 2D point sets, with self loops as PONITA's transform adds them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")

from geomp_ref import interop, make_graph  # noqa: E402
from geomp_ref.interop import ponita  # noqa: E402
from geomp_ref.layers.position_orientation_ops import (  # noqa: E402
    bundle_coords,
    bundle_coords_vjp,
    point_cloud_invariants,
)

F64 = torch.float64


# --- test doubles -------------------------------------------------------------------------------


class Conv(pyg_nn.MessagePassing):
    def __init__(self, in_channels, out_channels, attr_dim, bias=True, aggr="add", groups=1):
        super().__init__(node_dim=0, aggr=aggr)
        if groups == 1:
            self.depthwise = False
        elif groups == in_channels == out_channels:
            self.depthwise = True
            self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel = torch.nn.Linear(attr_dim, in_channels * out_channels // groups, bias=False)
        self.bias = torch.nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("callibrated", torch.tensor(False))

    def forward(self, x, edge_index, edge_attr, **kwargs):
        out = self.propagate(edge_index, x=x, kernel=self.kernel(edge_attr))
        if self.training and not self.callibrated:
            with torch.no_grad():
                self.kernel.weight.data = self.kernel.weight.data * x.std() / out.std()
                self.callibrated = ~self.callibrated
        return out if self.bias is None else out + self.bias

    def message(self, x_j, kernel):
        if self.depthwise:
            return kernel * x_j
        k = kernel.reshape(kernel.shape[0], self.out_channels, self.in_channels)
        return (k * x_j[:, None, :]).sum(-1)


class FiberBundleConv(pyg_nn.MessagePassing):
    def __init__(self, in_channels, out_channels, attr_dim, bias=True, aggr="add",
                 separable=True, groups=1):
        super().__init__(node_dim=0, aggr=aggr)
        if groups == 1:
            self.depthwise = False
        elif groups == in_channels == out_channels:
            self.depthwise = True
            self.in_channels, self.out_channels = in_channels, out_channels
        self.separable = separable
        mixed = in_channels * out_channels // groups
        self.kernel = torch.nn.Linear(attr_dim, in_channels if separable else mixed, bias=False)
        if separable:
            self.fiber_kernel = torch.nn.Linear(attr_dim, mixed, bias=False)
        self.bias = torch.nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("callibrated", torch.tensor(False))

    def forward(self, x, edge_index, edge_attr, fiber_attr=None, **kwargs):
        x1 = self.propagate(edge_index, x=x, kernel=self.kernel(edge_attr))
        x2 = x1
        if self.separable:
            fk = self.fiber_kernel(fiber_attr)  # (O, O, K)
            n_ori = fk.shape[0]
            if self.depthwise:
                x2 = (x1[:, :, None, :] * fk[None]).sum(1) / n_ori
            else:
                fk = fk.reshape(n_ori, n_ori, self.out_channels, self.in_channels)
                x2 = torch.einsum("nkc,kldc->nld", x1, fk) / n_ori
        if self.training and not self.callibrated:
            with torch.no_grad():
                self.kernel.weight.data = self.kernel.weight.data * x.std() / x1.std()
                if self.separable:
                    self.fiber_kernel.weight.data = self.fiber_kernel.weight.data * (
                        x1.std() / x2.std()
                    )
                self.callibrated = ~self.callibrated
        return x2 if self.bias is None else x2 + self.bias

    def message(self, x_j, kernel):
        if self.separable:
            return kernel * x_j
        if self.depthwise:
            return (kernel * x_j[:, :, None, :]).sum(1)
        k = kernel.reshape(*kernel.shape[:3], self.out_channels, self.in_channels)
        return torch.einsum("ekldc,ekc->eld", k, x_j)


class PolynomialFeatures(torch.nn.Module):
    def __init__(self, degree):
        super().__init__()
        self.degree = degree

    def forward(self, x):
        terms = [x]
        for _ in range(1, self.degree):
            terms.append((terms[-1][..., :, None] * x[..., None, :]).flatten(-2))
        return torch.cat(terms, -1)


class PolynomialCutoff(torch.nn.Module):
    def __init__(self, r_max, p=6):
        super().__init__()
        if r_max is None:
            self.r_max = None
        else:
            self.register_buffer("p", torch.tensor(p, dtype=torch.get_default_dtype()))
            self.register_buffer("r_max", torch.tensor(r_max, dtype=torch.get_default_dtype()))

    def forward(self, x):
        if self.r_max is None:
            return torch.ones_like(x)
        u, p = x / self.r_max, self.p
        env = (1.0 - (p + 1) * (p + 2) / 2 * u**p + p * (p + 2) * u ** (p + 1)
               - p * (p + 1) / 2 * u ** (p + 2))
        return env * (x < self.r_max)


def basis_net(n_inv, degree=3, hidden=12, basis_dim=6, act=None):
    act = torch.nn.GELU() if act is None else act
    feats = sum(n_inv**k for k in range(1, degree + 1))
    return torch.nn.Sequential(
        PolynomialFeatures(degree), torch.nn.Linear(feats, hidden), act,
        torch.nn.Linear(hidden, basis_dim), act,
    )


def fiber_bundle_invariants(pos, ori, edge_index, separable):
    """PONITA's R3xS2 / R2xS1 fibre-bundle invariants (attr, fiber_attr) or the joint attr."""
    rel = pos[edge_index[0]] - pos[edge_index[1]]
    inv1 = rel @ ori.T  # (E, O)
    if pos.shape[1] == 3:
        inv2 = (rel[:, None, :] - inv1[..., None] * ori[None]).norm(dim=-1)
    else:
        inv2 = rel[:, None, 1] * ori[None, :, 0] - rel[:, None, 0] * ori[None, :, 1]
    dots = (ori @ ori.T)[..., None]
    if separable:
        return torch.stack([inv1, inv2], -1), dots
    n_ori = ori.shape[0]
    e1 = inv1[:, :, None, None].expand(-1, -1, n_ori, 1)
    e2 = inv2[:, :, None, None].expand(-1, -1, n_ori, 1)
    return torch.cat([e1, e2, dots[None].expand(rel.shape[0], -1, -1, -1)], -1)


def point_cloud_attr(pos_ori, edge_index, dim):
    """PONITA's point-cloud invariants: orientation stored after the position in each row."""
    src, dst = edge_index
    rel = pos_ori[src, :dim] - pos_ori[dst, :dim]
    o_s, o_r = pos_ori[src, dim:], pos_ori[dst, dim:]
    inv1 = (rel * o_r).sum(-1)
    if dim == 3:
        inv2 = (rel - o_r * inv1[:, None]).norm(dim=-1)
    else:
        inv2 = rel[:, 1] * o_r[:, 0] - rel[:, 0] * o_r[:, 1]
    return torch.stack([inv1, inv2, (o_s * o_r).sum(-1)], -1)


class Holder(torch.nn.Module):
    """What PONITA's model holds for its bases (the shape ``basis_from_torch`` reads)."""

    def __init__(self, degree=3, hidden=12, basis_dim=6, radius=2.0, separable=True):
        super().__init__()
        act = torch.nn.GELU()
        self.basis_fn = basis_net(2 if separable else 3, degree, hidden, basis_dim, act)
        if separable:
            self.fiber_basis_fn = basis_net(1, degree, hidden, basis_dim, act)
        self.windowing_fn = PolynomialCutoff(radius)

    def bases(self, pos, ori, edge_index):
        d = (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=-1, keepdim=True)
        sep = hasattr(self, "fiber_basis_fn")
        attr = fiber_bundle_invariants(pos, ori, edge_index, sep)
        if not sep:
            return (self.basis_fn(attr) * self.windowing_fn(d)[:, :, None, None],)
        attr, fiber_attr = attr
        basis = self.basis_fn(attr) * self.windowing_fn(d).unsqueeze(-2)
        return basis, self.fiber_basis_fn(fiber_attr)


class Stack(Holder):
    """A user model shaped like PONITA's: one basis shared by three FiberBundleConvs."""

    def __init__(self, channels=4, num_layers=3, **kw):
        super().__init__(**kw)
        B = self.basis_fn[3].out_features
        self.layers = torch.nn.ModuleList(
            FiberBundleConv(channels, channels, B, groups=channels) for _ in range(num_layers)
        )

    def forward(self, x, pos, ori, edge_index):
        basis, fiber_basis = self.bases(pos, ori, edge_index)
        for conv in self.layers:
            x = torch.nn.functional.gelu(conv(x, edge_index, basis, fiber_attr=fiber_basis))
        return x


def randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module.eval()


# --- inputs as PONITA builds them ----------------------------------------------------------------


def grid(dim, n_ori, rng):
    if dim == 2:
        t = 2 * np.pi * np.arange(n_ori) / n_ori
        return torch.tensor(np.stack([np.cos(t), np.sin(t)], 1))
    v = rng.standard_normal((n_ori, 3))
    return torch.tensor(v / np.linalg.norm(v, axis=1, keepdims=True))


def scene(n, dim, n_ori, rng, degree=3, radius=2.0, separable=True, neighbours=4):
    """``(x, edge_index, bases)``: random edges plus every self loop (PONITA's transform)."""
    pos = torch.tensor(rng.uniform(-1.0, 1.0, (n, dim)))
    e = rng.integers(0, n, (2, neighbours * n))
    ei = np.unique(np.concatenate([e, np.tile(np.arange(n), (2, 1))], 1), axis=1)
    edge_index = torch.tensor(ei)
    holder = randomize(Holder(degree=degree, radius=radius, separable=separable).double(), 7)
    with torch.no_grad():
        bases = holder.bases(pos, grid(dim, n_ori, rng), edge_index)
    return pos, edge_index, bases


def fbc(c_in, c_out, separable, mixing, bias, basis_dim=6, seed=1):
    groups = c_in if mixing == "depthwise" else 1
    m = FiberBundleConv(c_in, c_out, basis_dim, bias=bias, separable=separable, groups=groups)
    if mixing == "full":  # the published constructor never sets these (its forward fails)
        m.in_channels, m.out_channels = c_in, c_out
    return randomize(m.double(), seed)


# --- FiberBundleConv ----------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [3, 2])
@pytest.mark.parametrize("separable", [True, False])
@pytest.mark.parametrize("mixing", ["depthwise", "full"])
@pytest.mark.parametrize("bias", [True, False])
def test_fiber_bundle_conv_agrees(dim, separable, mixing, bias):
    rng = np.random.default_rng(dim)
    n, n_ori, c = 7, 4, 3
    _, edge_index, bases = scene(n, dim, n_ori, rng, separable=separable)
    c_out = c if mixing == "depthwise" else 5
    conv = fbc(c, c_out, separable, mixing, bias)
    x = torch.tensor(rng.standard_normal((n, n_ori, c)))
    report = interop.compare(conv, x, edge_index, *bases)
    assert report.ok, str(report)
    assert report.spec == "PositionOrientationConv"
    names = {r.name for r in report.rows}
    assert {"kernel.weight", "x", "edge_attr"} <= names
    assert ("fiber_kernel.weight" in names) == separable
    assert ("fiber_attr" in names) == separable
    assert ("bias" in names) == bias
    taps = ["kernel", "fiber_kernel"] if separable else ["kernel"]
    assert [t.name for t in report.taps] == taps


@pytest.mark.parametrize("mixing", ["depthwise", "full"])
def test_fiber_bundle_conv_at_a_realistic_size(mixing):
    """150 nodes, 16 orientations, ~900 edges with self loops, 8 channels: PONITA's setting."""
    rng = np.random.default_rng(5)
    n, n_ori, c = 150, 16, 8
    _, edge_index, bases = scene(n, 3, n_ori, rng, neighbours=5)
    conv = fbc(c, c, True, mixing, True, basis_dim=6, seed=3)
    x = torch.tensor(rng.standard_normal((n, n_ori, c)))
    report = interop.compare(conv, x, edge_index, *bases)
    assert report.ok, str(report)
    assert max(r.max_rel for r in report.rows) < 1e-13


def test_fiber_bundle_conv_maps_weights_and_inputs():
    rng = np.random.default_rng(0)
    _, edge_index, bases = scene(5, 3, 3, rng)
    conv = fbc(2, 2, True, "depthwise", True)
    spec, params = interop.from_torch(conv, num_ori=3)
    assert (spec.num_ori, spec.basis_dim, spec.mixing, spec.separable) == (3, 6, "depthwise", True)
    np.testing.assert_array_equal(params["kernel"]["W0"], conv.kernel.weight.detach().numpy().T)
    np.testing.assert_array_equal(params["b"], conv.bias.detach().numpy())
    x = torch.tensor(rng.standard_normal((5, 3, 2)))
    graph, inputs = interop.inputs_from_torch(conv, x, edge_index, *bases)
    assert inputs[1] is None and inputs[2] is None
    np.testing.assert_array_equal(graph.src, edge_index[0].numpy())
    np.testing.assert_array_equal(graph.dst, edge_index[1].numpy())
    out, _ = spec.forward(params, graph, *inputs)
    np.testing.assert_allclose(out, conv(x, edge_index, *bases).detach().numpy(), rtol=1e-13,
                               atol=1e-14)


def test_reversed_flow_runs_on_the_reversed_edges():
    rng = np.random.default_rng(2)
    _, edge_index, bases = scene(6, 3, 3, rng)
    conv = fbc(2, 2, True, "depthwise", False)
    conv.flow = "target_to_source"
    x = torch.tensor(rng.standard_normal((6, 3, 2)))
    assert interop.compare(conv, x, edge_index, *bases).ok


def test_non_separable_layer_ignores_fiber_attr_like_ponita():
    rng = np.random.default_rng(3)
    _, edge_index, (basis,) = scene(5, 2, 3, rng, separable=False)
    conv = fbc(2, 2, False, "depthwise", True)
    x = torch.tensor(rng.standard_normal((5, 3, 2)))
    report = interop.compare(conv, x, edge_index, basis, torch.zeros(3, 3, 6, dtype=F64))
    assert report.ok and any("fiber_attr is unused" in n for n in report.notes)


# --- calibration --------------------------------------------------------------------------------


@pytest.mark.parametrize("separable", [True, False])
def test_calibration_is_refused_then_reproduced_by_the_scales(separable):
    rng = np.random.default_rng(4)
    _, edge_index, bases = scene(8, 3, 4, rng, separable=separable)
    conv = fbc(3, 3, separable, "depthwise", True).train()
    x = torch.tensor(rng.standard_normal((8, 4, 3)))
    with pytest.raises(ValueError, match="callibrated"):
        interop.compare(conv, x, edge_index, *bases)
    assert not bool(conv.callibrated)  # the refusal ran nothing
    spec, params = interop.from_torch(conv, num_ori=4)
    graph, inputs = interop.inputs_from_torch(conv, x, edge_index, *bases)
    _, cache = spec.forward(params, graph, *inputs)
    s, s_f = spec.calibration_scales(cache)
    conv(x, edge_index, *bases)  # the one-off calibration, on the double
    assert bool(conv.callibrated)
    rescaled = dataclasses.replace(spec, kernel_scale=s, fiber_scale=s_f)
    want = conv.eval()(x, edge_index, *bases).detach().numpy()
    np.testing.assert_allclose(rescaled.forward(params, graph, *inputs)[0], want, rtol=1e-12,
                               atol=1e-13)
    assert interop.compare(conv.train(), x, edge_index, *bases).ok  # callibrated: exact


# --- Conv ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [3, 2])
@pytest.mark.parametrize("mixing", ["depthwise", "full"])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_agrees_on_point_cloud_bases(dim, mixing, bias):
    rng = np.random.default_rng(dim + 10)
    n = 9
    ori = rng.standard_normal((n, dim))
    pos_ori = torch.tensor(np.concatenate(
        [rng.uniform(-1, 1, (n, dim)), ori / np.linalg.norm(ori, axis=1, keepdims=True)], 1))
    ei = np.unique(np.concatenate([rng.integers(0, n, (2, 30)), np.tile(np.arange(n), (2, 1))],
                                  1), axis=1)
    edge_index = torch.tensor(ei)
    attr = point_cloud_attr(pos_ori, edge_index, dim)
    rel = pos_ori[edge_index[0], :dim] - pos_ori[edge_index[1], :dim]
    with torch.no_grad():
        basis = randomize(basis_net(3).double(), 2)(attr) * PolynomialCutoff(2.0).double()(
            rel.norm(dim=-1, keepdim=True))
    c_out = 4 if mixing == "depthwise" else 6
    conv = Conv(4, c_out, 6, bias=bias, groups=4 if mixing == "depthwise" else 1).double()
    if mixing == "full":
        conv.in_channels, conv.out_channels = 4, c_out
    randomize(conv, 3)
    x = torch.tensor(rng.standard_normal((n, 4)))
    report = interop.compare(conv, x, edge_index, basis)
    assert report.ok, str(report)
    assert report.spec == "BasisConv" and [t.name for t in report.taps] == ["kernel"]


# --- the basis modules --------------------------------------------------------------------------


@pytest.mark.parametrize("n_inv", [1, 2, 3])
def test_basis_network_agrees_and_taps_the_shared_gelu_twice(n_inv):
    rng = np.random.default_rng(n_inv)
    net = randomize(basis_net(n_inv).double(), n_inv)
    z = torch.tensor(rng.standard_normal((30, 5, n_inv)))
    report = interop.compare(net, z)
    assert report.ok, str(report)
    assert [t.label for t in report.taps] == ["0", "1", "2 (call 1/2)", "3", "2 (call 2/2)"]
    assert {r.name for r in report.rows} == {"output", "1.weight", "1.bias", "3.weight",
                                             "3.bias", "input"}


def test_polynomial_features_and_cutoff_agree():
    rng = np.random.default_rng(0)
    assert interop.compare(PolynomialFeatures(3), torch.tensor(rng.standard_normal((20, 2)))).ok
    d = torch.tensor(rng.uniform(0.0, 3.0, (40, 1)))
    report = interop.compare(PolynomialCutoff(2.5).double(), d)
    assert report.ok and report.spec == "PolynomialWindow"
    assert interop.compare(PolynomialCutoff(None), d).ok


def test_a_middle_layer_of_the_basis_network_is_named():
    net = randomize(basis_net(2).double())
    net[3].register_forward_hook(lambda m, i, out: out + 1e-6)
    z = torch.tensor(np.random.default_rng(0).standard_normal((10, 2)))
    report = interop.compare(net, z)
    assert not report.ok and report.first_divergence == "3"


@pytest.mark.parametrize("dim", [3, 2])
@pytest.mark.parametrize("separable", [True, False])
def test_shared_basis_block_matches_the_model_expression(dim, separable):
    """``basis_from_torch``: PositionOrientationBasis against basis_fn(attr) * window(dists)."""
    rng = np.random.default_rng(dim)
    n, n_ori = 8, 5
    holder = randomize(Holder(separable=separable).double(), 4)
    pos = torch.tensor(rng.uniform(-1, 1, (n, dim)), requires_grad=True)
    ori = grid(dim, n_ori, rng).requires_grad_(True)
    ei = np.unique(np.concatenate([rng.integers(0, n, (2, 24)), np.tile(np.arange(n), (2, 1))],
                                  1), axis=1)
    peer = holder.bases(pos, ori, torch.tensor(ei))
    spec, params = ponita.basis_from_torch(holder, num_ori=n_ori, dim=dim)
    graph = make_graph(ei, n)
    out, cache = spec.forward(params, graph, pos.detach().numpy(), ori.detach().numpy())
    ours = out if separable else (out,)
    cots = [rng.standard_normal(o.shape) for o in ours]
    for a, b in zip(ours, peer):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=0, atol=1e-13)
    grads, (g_pos, g_ori) = spec.backward(params, cache, tuple(cots) if separable else cots[0])
    w = holder.basis_fn[1].weight
    t_pos, t_ori, t_w = torch.autograd.grad(peer, [pos, ori, w], [torch.tensor(c) for c in cots])
    for a, b in ((g_pos, t_pos), (g_ori, t_ori), (grads["kernel"]["W0"].T, t_w)):
        b = b.numpy()
        assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max()


@pytest.mark.parametrize("dim", [3, 2])
def test_invariants_match_the_published_definitions(dim):
    rng = np.random.default_rng(dim)
    pos = torch.tensor(rng.standard_normal((6, dim)), requires_grad=True)
    ori = torch.tensor(rng.standard_normal((4, dim)), requires_grad=True)
    ei = torch.tensor(rng.integers(0, 6, (2, 15)))
    ev = (pos[ei[0]] - pos[ei[1]]).detach().numpy()
    attr, fiber_attr = fiber_bundle_invariants(pos, ori, ei, True)
    coords, fcoords = bundle_coords(ev, ori.detach().numpy(), True)
    np.testing.assert_allclose(coords, attr.detach().numpy(), atol=1e-14)
    np.testing.assert_allclose(fcoords, fiber_attr.detach().numpy(), atol=1e-14)
    joint = fiber_bundle_invariants(pos, ori, ei, False)
    np.testing.assert_allclose(bundle_coords(ev, ori.detach().numpy(), False)[0],
                               joint.detach().numpy(), atol=1e-14)
    cot = rng.standard_normal(tuple(joint.shape))
    t_pos, t_ori = torch.autograd.grad(joint, [pos, ori], torch.tensor(cot))
    g_ev, g_ori = bundle_coords_vjp(ev, ori.detach().numpy(), cot)
    g_pos = np.zeros((6, dim))
    np.add.at(g_pos, ei[0].numpy(), g_ev)
    np.add.at(g_pos, ei[1].numpy(), -g_ev)
    np.testing.assert_allclose(g_pos, t_pos.numpy(), atol=1e-12)
    np.testing.assert_allclose(g_ori, t_ori.numpy(), atol=1e-12)
    po = torch.cat([pos, ori[:1].expand(6, -1) + pos], 1).detach()
    pc = point_cloud_invariants(ev, po[ei[0], dim:].numpy(), po[ei[1], dim:].numpy())
    np.testing.assert_allclose(pc, point_cloud_attr(po, ei, dim).numpy(), atol=1e-14)


# --- a stack sharing one basis ------------------------------------------------------------------


def _stack_call(seed=0, n=10, n_ori=6, channels=4):
    rng = np.random.default_rng(seed)
    model = randomize(Stack(channels).double(), seed)
    pos = torch.tensor(rng.uniform(-1, 1, (n, 3)))
    ei = np.unique(np.concatenate([rng.integers(0, n, (2, 4 * n)), np.tile(np.arange(n), (2, 1))],
                                  1), axis=1)
    x = torch.tensor(rng.standard_normal((n, n_ori, channels)))
    return model, (x, pos, grid(3, n_ori, rng), torch.tensor(ei))


def test_stack_layers_all_agree():
    model, args = _stack_call()
    report = ponita.compare_layers(model, *args)
    assert report.ok, str(report)
    assert [layer.name for layer in report.layers] == [
        "basis_fn", "windowing_fn", "fiber_basis_fn", "layers.0", "layers.1", "layers.2"]
    assert report.first_divergence is None and report.unchecked == []


@pytest.mark.parametrize("target", ["layers.1", "layers.1.kernel", "fiber_basis_fn.3"])
def test_a_perturbed_middle_layer_is_the_first_divergence(target):
    model, args = _stack_call()
    module = dict(model.named_modules())[target]
    handle = module.register_forward_hook(lambda m, i, out: out + 1e-6)
    report = ponita.compare_layers(model, *args)
    handle.remove()
    assert not report.ok and report.first_divergence == target
    # every other layer is compared on the (perturbed) inputs it received, so only one fails
    owner = {"layers.1": "layers.1"}.get(target, target.rsplit(".", 1)[0])
    assert [layer.name for layer in report.layers if not layer.report.ok] == [owner]
    assert "first divergence" in str(report)


def test_stack_refuses_an_uncalibrated_training_layer_before_running():
    model, args = _stack_call()
    model.train()
    with pytest.raises(ValueError, match=r"layers\.0\.callibrated"):
        ponita.compare_layers(model, *args)
    assert not any(bool(conv.callibrated) for conv in model.layers)


# --- refusals, dispatch, float32 ----------------------------------------------------------------


def _refusal_cases():
    rng = np.random.default_rng(0)
    _, ei, bases = scene(5, 3, 3, rng)
    x = torch.tensor(rng.standard_normal((5, 3, 2)))

    def call(conv, *extra):
        return lambda: interop.compare(conv.double().eval(), x, ei, *(extra or bases))

    tanh = basis_net(2, act=torch.nn.GELU(approximate="tanh")).double()
    lazy = torch.nn.Sequential(PolynomialFeatures(2), torch.nn.LazyLinear(4), torch.nn.GELU())
    cutoff = PolynomialCutoff(2.0, p=2.5).double()
    z = torch.tensor(rng.standard_normal((4, 2)))
    mismatched = Holder()
    mismatched.fiber_basis_fn[0].degree = 2
    mismatched.fiber_basis_fn[1] = torch.nn.Linear(2, 12)
    wide_window = Holder()
    wide_window.windowing_fn = PolynomialCutoff(2.0, p=5)
    return {
        "aggr": call(FiberBundleConv(2, 2, 6, aggr="mean", groups=2)),
        "groups=1": call(FiberBundleConv(2, 2, 6, groups=1)),
        "groups:": call(FiberBundleConv(4, 2, 6, groups=2)),
        "Conv.aggr": lambda: interop.compare(
            Conv(2, 2, 6, aggr="max", groups=2).double().eval(), x[:, 0], ei, bases[0][:, 0]),
        "Conv.groups=1": lambda: interop.compare(
            Conv(2, 2, 6, groups=1).double().eval(), x[:, 0], ei, bases[0][:, 0]),
        "fiber_attr": call(FiberBundleConv(2, 2, 6, groups=2), bases[0]),
        "num_ori": lambda: interop.from_torch(FiberBundleConv(2, 2, 6, groups=2)),
        "approximate": lambda: interop.compare(tanh, z),
        "LazyLinear": lambda: interop.compare(lazy, z),
        r"\.p=2\.5": lambda: interop.compare(cutoff, z),
        "degree": lambda: ponita.basis_from_torch(mismatched, num_ori=3),
        "windowing_fn.p": lambda: ponita.basis_from_torch(wide_window, num_ori=3),
    }


_REFUSALS = _refusal_cases()


@pytest.mark.parametrize("option", list(_REFUSALS))
def test_unsupported_options_raise_naming_them(option):
    with pytest.raises(ValueError, match=option):
        _REFUSALS[option]()


def test_dispatch_and_float32():
    assert "ponita" in interop.supported()
    assert interop.find_adapter(FiberBundleConv(2, 2, 3, groups=2)) is ponita
    assert interop.find_adapter(Conv(2, 2, 3, groups=2)) is ponita
    rng = np.random.default_rng(1)
    _, ei, bases = scene(6, 3, 4, rng)
    conv = fbc(3, 3, True, "depthwise", True).float()
    x = torch.tensor(rng.standard_normal((6, 4, 3)), dtype=torch.float32)
    report = ponita.compare(conv, x, ei, *(b.float() for b in bases))
    assert report.ok and report.dtype == "float32"
    with pytest.raises(TypeError, match="ponita"):
        ponita.compare(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_the_docs_page_examples_run(monkeypatch, capsys):
    """Every ``code-block:: python`` of docs/peers/ponita.rst, in order, with the doubles standing
    in for PONITA's files (``ponita.nn.conv``, ``ponita.nn.embedding``, ...)."""
    import re
    import sys
    import textwrap
    import types
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "peers" / "ponita.rst"
    if not path.exists():
        pytest.skip("docs/ is not part of this installation")
    fake = {
        "ponita": {}, "ponita.nn": {}, "ponita.geometry": {}, "ponita.utils": {},
        "ponita.nn.conv": {"Conv": Conv, "FiberBundleConv": FiberBundleConv},
        "ponita.nn.embedding": {"PolynomialFeatures": PolynomialFeatures},
        "ponita.utils.windowing": {"PolynomialCutoff": PolynomialCutoff},
        "ponita.geometry.invariants": {
            "invariant_attr_r3s2_fiber_bundle": fiber_bundle_invariants},
    }
    for name, attrs in fake.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", path.read_text())
    assert len(blocks) >= 5
    code = "\n".join(textwrap.dedent(b) for b in blocks)
    exec(compile(code, str(path), "exec"), {"__name__": "ponita_docs"})
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "True PositionOrientationConv",
        "['kernel', 'fiber_kernel']",
        "FiberBundleConv.callibrated=False in training mode",
        "True",
        "True 2 (call 2/2)",
        "True ['basis_fn', 'fiber_basis_fn', 'layers.0', 'layers.1']",
        "layers.0.kernel",
    ]
