"""mfinzi/LieConv's ``LieConv`` and ``PointConv`` against the oracle through
``geomp_ref.interop.lieconv``.

The classes below are test doubles written from the published structure: the same class names
(``LieConv`` subclassing ``PointConv``, ``Pass``, ``Expression``, ``MaskBatchNormNd``,
``FPSsubsample``, ``FarthestSubsample``), submodule, parameter and buffer names (``weightnet`` as a
flat ``Sequential`` of ``Pass(Linear)``, batch norm slot, ``Pass(Swish)``; ``linear``; ``r``), the
forward signature taking the ``(coords, values, mask)`` triple and returning a triple, and the
published semantics: neighbours j of query i are the real points with ``group.distance(pairs[b,
i, j]) < r``, placed in ``min(mc_samples, n)`` slots in random order (random subsets when a ball
is larger); the kernel network sees the pair of every slot, swish after every linear layer; the
(C, K) product is flattened channel-major; ``mean`` divides the whole output by the neighbour
count; padded points give 0. PointConv takes the nearest ``min(mc_samples, n)`` points and
``x_i - x_j``. The lifted pairs are built here with the library's SE(2)/SE(3) logarithm in
LieConv's convention (``pairs[b, i, j] = Log(g_j^-1 g_i)``, rotation first).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from geomp_ref import interop  # noqa: E402
from geomp_ref.interop import lieconv  # noqa: E402
from geomp_ref.interop._lieconv_block import LieConvTriple  # noqa: E402
from geomp_ref.interop._lieconv_convert import _contraction  # noqa: E402
from geomp_ref.lie import se2, se3  # noqa: E402

F64 = torch.float64


# --- test doubles -------------------------------------------------------------------------------


class Expression(nn.Module):
    def __init__(self, func):
        super().__init__()
        self.func = func

    def forward(self, x):
        return self.func(x)


def Swish():  # noqa: N802 - the published factory's name
    return Expression(lambda x: x * torch.sigmoid(x))


class Pass(nn.Module):
    def __init__(self, module, dim=1):
        super().__init__()
        self.module, self.dim = module, dim

    def forward(self, x):
        out = list(x)
        out[self.dim] = self.module(out[self.dim])
        return out


class MaskBatchNormNd(nn.BatchNorm1d):
    def forward(self, inp):
        coords, x, mask = inp
        return coords, x, mask  # never run: the adapter refuses batch norm first


class FPSsubsample(nn.Module):
    def __init__(self, ds_frac):
        super().__init__()
        self.ds_frac = ds_frac

    def forward(self, inp):
        return inp


class FarthestSubsample(FPSsubsample):
    pass


def WeightNet(d_in, d_out, act, bn, k=32):  # noqa: N802
    layers = []
    for a, b in ((d_in, k), (k, k), (k, d_out)):
        layers += [Pass(nn.Linear(a, b)), MaskBatchNormNd(b) if bn else nn.Sequential(),
                   Pass(Swish() if act == "swish" else nn.ReLU())]
    return nn.Sequential(*layers)


class SE3:
    lie_dim, q_dim, alpha = 6, 0, 0.2

    def distance(self, pairs):
        rot, trans = pairs[..., :3].norm(dim=-1), pairs[..., 3:].norm(dim=-1)
        return self.alpha * rot + (1 - self.alpha) * trans


class SE2:
    lie_dim, q_dim, alpha = 3, 0, 0.2

    def distance(self, pairs):
        return self.alpha * pairs[..., 0].abs() + (1 - self.alpha) * pairs[..., 1:].norm(dim=-1)


class PointConv(nn.Module):
    def __init__(self, chin, chout, mc_samples=32, xyz_dim=3, ds_frac=1, knn_channels=None,
                 act="swish", bn=False, mean=False):
        super().__init__()
        self.chin, self.cmco_ci, self.xyz_dim = chin, 16, xyz_dim
        self.knn_channels, self.mc_samples, self.mean = knn_channels, mc_samples, mean
        self.weightnet = WeightNet(xyz_dim, self.cmco_ci, act, bn)
        self.linear = nn.Linear(self.cmco_ci * chin, chout)
        self.subsample = FarthestSubsample(ds_frac)

    def point_convolve(self, slot_coords, slot_vals, slot_mask):
        bs, m, _, c = slot_vals.shape
        kern = self.weightnet((None, slot_coords, slot_mask))[1]
        kern = torch.where(slot_mask[..., None], kern, torch.zeros_like(kern))
        vals = torch.where(slot_mask[..., None], slot_vals, torch.zeros_like(slot_vals))
        out = self.linear(torch.einsum("bmsc,bmsk->bmck", vals, kern).reshape(bs, m, -1))
        if self.mean:
            out = out / slot_mask.sum(-1, keepdim=True).clamp(min=1)
        return out

    def forward(self, inp):
        xyz, vals, mask = inp
        bs, n = mask.shape
        x = xyz[..., : self.knn_channels]
        d2 = ((x[:, :, None] - x[:, None]) ** 2).sum(-1)
        d2 = torch.where(mask[:, None, :], d2, torch.full_like(d2, 1e8))
        idx = torch.topk(d2, min(self.mc_samples, n), dim=-1, largest=False, sorted=False)[1]
        b = torch.arange(bs)[:, None, None]
        out = self.point_convolve(xyz[:, :, None] - xyz[b, idx], vals[b, idx], mask[b, idx])
        return xyz, torch.where(mask[..., None], out, torch.zeros_like(out)), mask


class LieConv(PointConv):
    def __init__(self, *args, group=None, ds_frac=1, fill=1 / 3, knn=False, **kwargs):
        group = SE3() if group is None else group
        super().__init__(*args, xyz_dim=group.lie_dim + 2 * group.q_dim, **kwargs)
        self.group, self.knn, self.fill_frac = group, knn, fill
        self.register_buffer("r", torch.tensor(2.0))
        self.subsample = FPSsubsample(ds_frac)

    def forward(self, inp):
        pairs, vals, mask = inp
        bs, n = mask.shape
        dist = self.group.distance(pairs)
        ball = (dist < self.r) & mask[:, None, :] & mask[:, :, None]
        # slots in random order, ball points first (a random subset when a ball is too large);
        # knn: the nearest real points, whatever r
        score = ball.to(pairs.dtype) + torch.rand(bs, n, n, dtype=pairs.dtype) * 0.5
        if self.knn:
            ball = mask[:, None, :] & mask[:, :, None]
            score = -torch.where(mask[:, None, :], dist, torch.full_like(dist, 1e8))
        idx = torch.topk(score, min(self.mc_samples, n), dim=-1, sorted=False)[1]
        b, i = torch.arange(bs)[:, None, None], torch.arange(n)[None, :, None]
        out = self.point_convolve(pairs[b, i, idx], vals[b, idx], ball[b, i, idx])
        if self.training and not self.knn:
            self.r += 0.5 * (self.fill_frac - ball.double().mean())
        return pairs, torch.where(mask[..., None], out, torch.zeros_like(out)), mask


class Stack(nn.Module):
    """A user's stack: LieConv, swish, LieConv, swish, LieConv on the triple."""

    def __init__(self, group, widths, **kw):
        super().__init__()
        layers = []
        for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [LieConv(a, b, group=group, **kw)] + ([Pass(Swish())] if k < 2 else [])
        self.net = nn.Sequential(*layers)

    def forward(self, inp):
        return self.net(inp)


# --- inputs -------------------------------------------------------------------------------------

_ORDER = {"SE2": [2, 0, 1], "SE3": [3, 4, 5, 0, 1, 2]}  # LieConv coordinate r = ours[order[r]]


def lifted(rng, group, bs, points, lifts, channels, pad=()):
    """LieConv's lifted triple of ``bs`` clouds: every point lifted to ``lifts`` poses (random
    rotations, the point's translation); ``pad[b]`` points of cloud b are padding, their pairs
    garbage."""
    mod, D = (se2, 2) if group == "SE2" else (se3, 3)
    n = points * lifts
    g = mod.random(rng, bs * n).reshape(bs, n, D + 1, D + 1)
    g[..., :D, D] = np.repeat(rng.normal(size=(bs, points, D)) * 1.5, lifts, axis=1)
    first = np.broadcast_to(g[:, None, :], (bs, n, n, D + 1, D + 1)).reshape(-1, D + 1, D + 1)
    second = np.broadcast_to(g[:, :, None], (bs, n, n, D + 1, D + 1)).reshape(-1, D + 1, D + 1)
    pairs = mod.relative_log(first, second)[:, _ORDER[group]].reshape(bs, n, n, -1)
    mask = np.ones((bs, n), dtype=bool)
    for b, p in enumerate(pad):
        if p:
            mask[b, -p * lifts:] = False
    pairs[~(mask[:, :, None] & mask[:, None, :])] = rng.normal(size=pairs.shape[-1]) * 5
    values = np.repeat(rng.normal(size=(bs, points, channels)), lifts, axis=1)
    return torch.tensor(pairs), torch.tensor(values), torch.tensor(mask)


def points(rng, bs, n, channels, pad=()):
    mask = np.ones((bs, n), dtype=bool)
    for b, p in enumerate(pad):
        if p:
            mask[b, -p:] = False
    return (torch.tensor(rng.normal(size=(bs, n, 3))), torch.tensor(rng.normal(size=(bs, n,
            channels))), torch.tensor(mask))


def _layer(cls, *args, **kwargs):
    torch.manual_seed(0)
    return cls(*args, **kwargs).to(F64).eval()


def _worst(report) -> float:
    return max([r.max_rel for r in report.rows] + [t.max_rel for t in report.taps])


# --- agreement ----------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["SE2", "SE3"])
@pytest.mark.parametrize("mean", [True, False])
def test_lieconv_small_random_with_padding(group, mean, rng):
    inp = lifted(rng, group, 3, 4, 2, 3, pad=(0, 1, 2))
    layer = _layer(LieConv, 3, 5, group=SE2() if group == "SE2" else SE3(), mean=mean,
                   mc_samples=100)
    layer.r.fill_(1.2)  # balls that hold some of the points, not all
    report = interop.compare(layer, inp)
    assert report.ok, str(report)
    assert report.spec == "LieConvTriple" and report.first_divergence is None
    assert [t.name for t in report.taps] == [f"weightnet.{k}" for k in (0, 2, 3, 5, 6, 8)] + [
        "linear"]
    names = {r.name for r in report.rows}
    assert {"weightnet.0.module.weight", "linear.weight", "inp[0]", "inp[1]"} <= names
    assert _worst(report) < 1e-13


def test_lieconv_realistic_size(rng):
    """4 clouds x 40 points x 2 lifts (n = 80), balls of radius 1.5, a padded cloud, as many
    neighbourhood slots as the largest ball holds; the ball is the graph, point for point."""
    inp = lifted(rng, "SE3", 4, 40, 2, 8, pad=(0, 5, 0, 0))
    d, mask = SE3().distance(inp[0]).numpy(), inp[2].numpy()
    ball = (d < 1.5) & mask[:, None, :] & mask[:, :, None]
    layer = _layer(LieConv, 8, 12, group=SE3(), mean=True, mc_samples=int(ball.sum(-1).max()))
    layer.r.fill_(1.5)
    assert 0.05 < ball.mean() < 0.5 and layer.mc_samples < 80
    graph, _ = interop.inputs_from_torch(layer, inp)
    assert graph.num_edges == ball.sum()
    b, i = np.divmod(graph.dst, 80)
    assert ball[b, i, graph.src % 80].all()
    report = interop.compare(layer, inp)
    assert report.ok, str(report)


def test_from_torch_and_inputs_reproduce_the_forward(rng):
    inp = lifted(rng, "SE2", 2, 5, 2, 3, pad=(2, 0))
    layer = _layer(LieConv, 3, 4, group=SE2(), mean=True, mc_samples=10)
    spec, params = interop.from_torch(layer)
    graph, inputs = interop.inputs_from_torch(layer, inp)
    assert isinstance(spec, LieConvTriple) and spec.conv.aggr == "lieconv_mean"
    assert spec.conv.kernel.activate_last and spec.conv.kernel.hidden == (32, 32)
    (pairs, out, mask), _ = spec.forward(params, graph, *inputs)
    with torch.no_grad():
        want = layer(inp)[1].numpy()
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-14)
    assert np.all(out[~mask] == 0) and np.array_equal(pairs, inp[0].numpy())


@pytest.mark.parametrize("mean", [True, False])
@pytest.mark.parametrize("mc_samples", [100, 5])
def test_pointconv(mean, mc_samples, rng):
    """PointConv: all points, or the 5 nearest ones (kernel of x_i - x_j)."""
    inp = points(rng, 3, 9, 4, pad=(0, 2, 0))
    layer = _layer(PointConv, 4, 6, mc_samples=mc_samples, mean=mean)
    report = interop.compare(layer, inp)
    assert report.ok, str(report)
    assert [r.name for r in report.rows[:3]] == ["xyz", "values", "mask"]


def test_relu_weightnet_and_knn_over_all_points(rng):
    inp = lifted(rng, "SE3", 2, 4, 2, 3)
    for kw in ({"act": "relu"}, {"knn": True}):
        layer = _layer(LieConv, 3, 4, group=SE3(), mc_samples=100, **kw)
        report = interop.compare(layer, inp)
        assert report.ok, (kw, str(report))


def test_contraction_maps_are_adjoint(rng):
    """<to_ours(w), g> = <w, to_peer(g)>, and LieConv's column c K + k lands on our row k C + c."""
    C, K, co = 3, 4, 2
    to_ours, to_peer = _contraction(C, K, co)
    w, g = rng.normal(size=(co, C * K)), rng.normal(size=(K * C, co))
    np.testing.assert_allclose(np.sum(to_ours(w) * g), np.sum(w * to_peer(g)), rtol=1e-14)
    c, k = 2, 1
    np.testing.assert_array_equal(to_ours(w)[k * C + c], w[:, c * K + k])


# --- a stack: the first layer that differs ------------------------------------------------------


def _shift(module, inputs, out):
    out = list(out)
    out[1] = out[1] + 1e-6
    return out


def test_stack_first_divergence(rng):
    inp = lifted(rng, "SE2", 2, 4, 2, 3, pad=(1, 0))
    model = _layer(Stack, SE2(), (3, 4, 4, 2), mean=True, mc_samples=100)
    report = lieconv.compare_layers(model, inp)
    assert report.ok and report.first_divergence is None, str(report)
    assert [layer.name for layer in report.layers] == ["net.0", "net.2", "net.4"]
    for target, want in (("net.2", "net.2"), ("net.2.weightnet.3", "net.2.weightnet.3")):
        handle = model.get_submodule(target).register_forward_hook(_shift)
        try:
            report = lieconv.compare_layers(model, inp)
        finally:
            handle.remove()
        assert not report.ok and report.first_divergence == want, str(report)
        assert report.layers[0].report.ok and not report.layers[1].report.ok


# --- refused settings ---------------------------------------------------------------------------


def test_refused_settings(rng):
    inp = lifted(rng, "SE3", 2, 4, 2, 3, pad=(1, 0))
    with pytest.raises(ValueError, match=r"LieConv\.bn=True"):
        interop.from_torch(_layer(LieConv, 3, 4, bn=True))
    with pytest.raises(ValueError, match=r"LieConv\.ds_frac=0\.5"):
        interop.from_torch(_layer(LieConv, 3, 4, ds_frac=0.5))
    odd = _layer(LieConv, 3, 4)
    odd.weightnet[2].module = Expression(torch.tanh)
    with pytest.raises(ValueError, match=r"weightnet\.2.*neither swish"):
        interop.from_torch(odd)
    big = _layer(LieConv, 3, 4, mc_samples=3)  # balls of r = 1e6 hold every real point
    big.r.fill_(1e6)
    with pytest.raises(ValueError, match=r"LieConv\.mc_samples=3.*eval mode.*ds_frac=1.*knn"):
        interop.compare(big, inp)
    with pytest.raises(ValueError, match=r"LieConv\.knn=True.*padding"):
        interop.compare(_layer(LieConv, 3, 4, knn=True, mc_samples=100), inp)
    with pytest.raises(ValueError, match=r"LieConv\.knn=True with mc_samples=3"):
        interop.compare(_layer(LieConv, 3, 4, knn=True, mc_samples=3), inp)
    train = _layer(LieConv, 3, 4, mc_samples=100).train()
    with pytest.raises(ValueError, match=r"LieConv\.training=True"):
        interop.compare(train, inp)
    assert float(train.r) == 2.0  # refused before anything ran
    interop.inputs_from_torch(train, inp)  # runs nothing: accepted
    stack = _layer(Stack, SE3(), (3, 4, 4, 2), mc_samples=100).train()
    with pytest.raises(ValueError, match=r"net\.0\.training=True"):
        lieconv.compare_layers(stack, inp)
    assert float(stack.net[0].r) == 2.0


def test_pointconv_knn_tie_refused(rng):
    xyz, vals, mask = points(rng, 1, 6, 2)
    xyz[0, 2] = 2 * xyz[0, 0] - xyz[0, 1]  # points 1 and 2 equally far from point 0
    xyz[0, 3:] = xyz[0, 0] + 100.0 + torch.arange(3.0, dtype=F64)[:, None]
    with pytest.raises(ValueError, match=r"PointConv\.mc_samples=2"):
        interop.compare(_layer(PointConv, 2, 3, mc_samples=2), (xyz, vals, mask))


def test_block_refuses_graphs_that_break_the_layout(rng):
    from geomp_ref import make_graph

    inp = lifted(rng, "SE3", 2, 2, 1, 3, pad=(0, 1))
    spec, params = interop.from_torch(_layer(LieConv, 3, 4))
    inputs = tuple(t.numpy() for t in inp)
    with pytest.raises(ValueError, match="joins two batch elements"):
        spec.forward(params, make_graph(np.array([[0], [2]]), 4), *inputs)
    with pytest.raises(ValueError, match="padded point 3"):
        spec.forward(params, make_graph(np.array([[3], [2]]), 4), *inputs)
    with pytest.raises(TypeError, match="mask must be a boolean"):
        spec.forward(params, make_graph(np.zeros((2, 0), int), 4), *inputs[:2], inputs[2] * 1)
