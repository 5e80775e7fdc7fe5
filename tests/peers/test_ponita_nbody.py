"""PONITA's N-body model and training step against :class:`NBodyPONITA` and the training recipe.

Test doubles written from the published structure (ebekkers/ponita ``ponita/models/ponita.py``,
``ponita/nn/convnext.py``, ``lightning_wrappers/nbody.py``): ``ConvNext`` (``conv``, ``norm``,
``linear_1``, ``linear_2``, ``layer_scale``), ``PonitaFiberBundle`` (``basis_fn``,
``fiber_basis_fn``, ``windowing_fn``, ``x_embedder``, ``interaction_layers``,
``read_out_layers``; lift of the charge and the velocity to the grid, read-outs averaged over
the layers, the vector read-out :math:`\\frac1G \\sum_o f(o)\\, o`), with the layer doubles of
``test_ponita.py``. The double takes its orientation grid as an argument (PONITA draws its own
from the global torch RNG) and the graph with its self loops. The optimizer groups follow the
published ``configure_optimizers`` rule (decay on ``nn.Linear`` weights; none on biases,
``LayerNorm`` weights and layer scales).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric.nn")

from geomp_ref.graph import make_graph  # noqa: E402
from geomp_ref.models.nbody_ponita import NBodyPONITA, with_self_loops  # noqa: E402
from geomp_ref.nbody.cli import _weights_decay  # noqa: E402
from geomp_ref.params import flatten  # noqa: E402
from geomp_ref.train import Adam, clip_grad_norm  # noqa: E402

from .test_ponita import FiberBundleConv, PolynomialCutoff, basis_net  # noqa: E402

F64 = torch.float64


class ConvNext(torch.nn.Module):
    def __init__(self, channels, conv, act=None, layer_scale=1e-6, widening_factor=4):
        super().__init__()
        self.conv = conv
        self.act_fn = torch.nn.GELU() if act is None else act
        self.linear_1 = torch.nn.Linear(channels, widening_factor * channels)
        self.linear_2 = torch.nn.Linear(widening_factor * channels, channels)
        if layer_scale is not None:
            self.layer_scale = torch.nn.Parameter(torch.ones(channels) * layer_scale)
        else:
            self.register_buffer("layer_scale", None)
        self.norm = torch.nn.LayerNorm(channels)

    def forward(self, x, edge_index, edge_attr, **kwargs):
        h = self.norm(self.conv(x, edge_index, edge_attr, **kwargs))
        h = self.linear_2(self.act_fn(self.linear_1(h)))
        if self.layer_scale is not None:
            h = self.layer_scale * h
        return h + x if h.shape == x.shape else h


class PonitaFiberBundle(torch.nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, num_layers, output_dim_vec=0,
                 radius=None, basis_dim=None, degree=3, widening_factor=4, layer_scale=None,
                 multiple_readouts=True):
        super().__init__()
        self.output_dim, self.output_dim_vec = output_dim, output_dim_vec
        act = torch.nn.GELU()
        basis_dim = hidden_dim if basis_dim is None else basis_dim
        self.basis_fn = basis_net(2, degree, hidden_dim, basis_dim, act)
        self.fiber_basis_fn = basis_net(1, degree, hidden_dim, basis_dim, act)
        self.windowing_fn = PolynomialCutoff(radius)
        self.x_embedder = torch.nn.Linear(input_dim, hidden_dim, False)
        self.interaction_layers = torch.nn.ModuleList()
        self.read_out_layers = torch.nn.ModuleList()
        for i in range(num_layers):
            conv = FiberBundleConv(hidden_dim, hidden_dim, basis_dim, groups=hidden_dim)
            self.interaction_layers.append(ConvNext(hidden_dim, conv, act, layer_scale,
                                                    widening_factor))
            last = multiple_readouts or i == num_layers - 1
            self.read_out_layers.append(
                torch.nn.Linear(hidden_dim, output_dim + output_dim_vec) if last else None)

    def forward(self, pos, charges, vel, ori, edge_index):
        rel = pos[edge_index[0]] - pos[edge_index[1]]
        inv1 = rel @ ori.T
        inv2 = (rel[:, None, :] - inv1[..., None] * ori[None]).norm(dim=-1)
        attr, fiber_attr = torch.stack([inv1, inv2], -1), (ori @ ori.T)[..., None]
        dists = rel.norm(dim=-1, keepdim=True)
        kernel_basis = self.basis_fn(attr) * self.windowing_fn(dists).unsqueeze(-2)
        fiber_kernel_basis = self.fiber_basis_fn(fiber_attr)
        G = ori.shape[0]
        lifted = torch.cat([charges[:, None, :].expand(-1, G, -1),
                            torch.einsum("bcd,nd->bnc", vel[:, None, :], ori)], -1)
        x = self.x_embedder(lifted)
        readouts = []
        for layer, readout in zip(self.interaction_layers, self.read_out_layers):
            x = layer(x, edge_index, edge_attr=kernel_basis, fiber_attr=fiber_kernel_basis)
            if readout is not None:
                readouts.append(readout(x))
        readout = sum(readouts) / len(readouts)
        vec = readout[..., self.output_dim:]
        out_vec = torch.einsum("bnc,nd->bcd", vec, ori) / G
        return pos + out_vec[:, 0, :]  # PONITA_NBODY.forward: pos + pred[..., 0, :]


def optimizer_groups(model, weight_decay):
    """The published ``configure_optimizers`` split."""
    decay, no_decay = set(), set()
    for mn, m in model.named_modules():
        for pn, _ in m.named_parameters():
            fpn = f"{mn}.{pn}" if mn else pn
            if pn.endswith("bias"):
                no_decay.add(fpn)
            elif pn.endswith("weight") and isinstance(m, torch.nn.Linear):
                decay.add(fpn)
            elif pn.endswith("weight") and isinstance(m, torch.nn.LayerNorm):
                no_decay.add(fpn)
            elif pn.endswith("layer_scale"):
                no_decay.add(fpn)
    params = dict(model.named_parameters())
    assert decay | no_decay == set(params) and not decay & no_decay
    return [{"params": [params[n] for n in sorted(decay)], "weight_decay": weight_decay},
            {"params": [params[n] for n in sorted(no_decay)], "weight_decay": 0.0}]


# --- weights, inputs ---------------------------------------------------------------------------

CONFIG = {"hidden": 6, "num_layers": 3, "num_ori": 7, "basis_dim": 5, "degree": 3,
          "widening": 2, "layer_scale": 0.2}


def _double(cfg=CONFIG, seed=0):
    torch.manual_seed(seed)
    m = PonitaFiberBundle(2, cfg["hidden"], 0, cfg["num_layers"], output_dim_vec=1,
                          radius=cfg.get("radius"), basis_dim=cfg["basis_dim"],
                          degree=cfg["degree"], widening_factor=cfg["widening"],
                          layer_scale=cfg["layer_scale"],
                          multiple_readouts=cfg.get("multiple_readouts", True)).double()
    with torch.no_grad():  # non-trivial LayerNorm and conv biases
        for layer in m.interaction_layers:
            layer.norm.weight.add_(0.3 * torch.randn(cfg["hidden"], dtype=F64))
            layer.norm.bias.add_(0.3 * torch.randn(cfg["hidden"], dtype=F64))
            layer.conv.bias.add_(0.3 * torch.randn(cfg["hidden"], dtype=F64))
    return m


def _T(t):
    return t.detach().numpy().T.copy()


def _V(t):  # a copy: torch's optimizer updates its tensors in place
    return t.detach().numpy().copy()


def _net(seq):
    return {"W0": _T(seq[1].weight), "b0": seq[1].bias.detach().numpy().copy(),
            "W1": _T(seq[3].weight), "b1": seq[3].bias.detach().numpy().copy()}


def params_from(m):
    """Our params tree from the double's modules (weights transposed to (in, out))."""
    layers, readout = {}, {}
    for k, (layer, ro) in enumerate(zip(m.interaction_layers, m.read_out_layers)):
        p = {"conv": {"kernel": {"W0": _T(layer.conv.kernel.weight)},
                      "fiber_kernel": {"W0": _T(layer.conv.fiber_kernel.weight)},
                      "b": layer.conv.bias.detach().numpy().copy()},
             "norm": {"gamma": layer.norm.weight.detach().numpy().copy(),
                      "beta": layer.norm.bias.detach().numpy().copy()},
             "mlp": {"W0": _T(layer.linear_1.weight), "b0": _V(layer.linear_1.bias),
                     "W1": _T(layer.linear_2.weight), "b1": _V(layer.linear_2.bias)}}
        if layer.layer_scale is not None:
            p["layer_scale"] = layer.layer_scale.detach().numpy().copy()
        layers[str(k)] = p
        if ro is not None:
            readout[str(k)] = {"W": _T(ro.weight), "b": ro.bias.detach().numpy().copy()}
    return {"embed": {"W": _T(m.x_embedder.weight)},
            "basis": {"kernel": _net(m.basis_fn), "fiber_kernel": _net(m.fiber_basis_fn)},
            "layers": layers, "readout": readout}


def grads_from(m):
    """The double's ``.grad`` in our tree (the same map as :func:`params_from`)."""
    saved = {n: p.data.clone() for n, p in m.named_parameters()}
    with torch.no_grad():
        for p in m.parameters():
            p.data = p.grad.clone()
    tree = params_from(m)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.data = saved[n]
    return tree


def _systems(rng, num_systems):
    """Charged five-body systems, the graph with self loops in PONITA's (coalesced) order."""
    n = 5 * num_systems
    x = rng.normal(size=(n, 3)) * 1.5
    v = rng.normal(size=(n, 3))
    q = rng.choice([-1.0, 1.0], size=(n, 1))
    blocks = [np.array([(j, i) for i in range(5) for j in range(5)]).T + 5 * s
              for s in range(num_systems)]
    ei = np.concatenate(blocks, axis=1)
    graph = make_graph(ei, n, np.repeat(np.arange(num_systems), 5))
    return graph, x, v, q


def _ours(cfg=CONFIG):
    return NBodyPONITA(**{k: v for k, v in cfg.items()})


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# --- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [
    CONFIG,
    {**CONFIG, "layer_scale": None, "multiple_readouts": False, "radius": 4.0},
], ids=["published-shape", "no-scale-last-readout-window"])
def test_forward_and_every_gradient_agree(cfg, rng):
    m = _double(cfg)
    ours = _ours(cfg)
    params = params_from(m)
    graph, x, v, q = _systems(rng, 3)
    ori = ours.ori
    pred, cache = ours.forward(params, graph, x, v, q)
    tx, tv, tq = (torch.tensor(a, requires_grad=True) for a in (x, v, q))
    tpred = m(tx, tq, tv, torch.tensor(ori), torch.tensor(np.asarray(graph.edge_index)))
    assert _rel(pred, tpred.detach().numpy()) <= 1e-13
    g = rng.normal(size=pred.shape)
    (tpred * torch.tensor(g)).sum().backward()
    grads, (gx, gv, gq, gori) = ours.backward(params, cache, g)
    assert gori is None
    for ours_g, t in ((gx, tx), (gv, tv), (gq, tq)):
        assert _rel(ours_g, t.grad.numpy()) <= 1e-12
    theirs = flatten(grads_from(m))
    for key, value in flatten(grads).items():
        assert _rel(value, theirs[key]) <= 1e-11, key


def test_the_graph_without_loops_gets_them(rng):
    """The model adds the self loops PONITA's transform adds; a loop-free input graph gives the
    double's result on the looped graph."""
    m = _double()
    ours = _ours()
    graph, x, v, q = _systems(rng, 2)
    src, dst = graph.edge_index
    plain = make_graph(np.asarray(graph.edge_index)[:, src != dst], graph.num_nodes, graph.batch)
    assert with_self_loops(plain).num_edges == graph.num_edges
    pred, _ = ours.forward(params_from(m), plain, x, v, q)
    tpred = m(*(torch.tensor(a) for a in (x, q, v, ours.ori)),
              torch.tensor(np.asarray(graph.edge_index)))
    assert _rel(pred, tpred.detach().numpy()) <= 1e-13


def test_calibration_matches_the_first_training_call(rng):
    m = _double().train()
    ours = _ours()
    params = params_from(m)
    graph, x, v, q = _systems(rng, 4)
    m(*(torch.tensor(a) for a in (x, q, v, ours.ori)), torch.tensor(np.asarray(graph.edge_index)))
    assert all(bool(layer.conv.callibrated) for layer in m.interaction_layers)
    calibrated = flatten(ours.calibrate(params, graph, x, v, q))
    theirs = flatten(params_from(m))
    for key, value in calibrated.items():
        assert _rel(value, theirs[key]) <= 1e-13, key


def test_training_steps_in_lockstep_with_the_published_recipe(rng):
    """Adam with the published parameter groups, a learning rate set per epoch and gradients
    clipped by norm (Lightning's ``gradient_clip_val``; here 3e-3 instead of the published 0.5,
    so that these small gradients are clipped), eight steps on fresh batches."""
    wd = 0.05  # large enough to show up in eight steps (published 1e-10)
    m = _double().eval()
    ours = _ours()
    params = params_from(m)
    topt = torch.optim.Adam(optimizer_groups(m, wd), lr=1e-2)
    opt = Adam(1e-2, weight_decay=_weights_decay(ours.param_shapes(), wd))
    state = opt.init(params)
    clipped = 0
    for step in range(8):
        lr = 1e-2 * (step + 1) / 8
        graph, x, v, q = _systems(rng, 3)
        target = x + 0.1 * rng.normal(size=x.shape)
        # torch
        for group in topt.param_groups:
            group["lr"] = lr
        topt.zero_grad()
        tpred = m(*(torch.tensor(a) for a in (x, q, v, ours.ori)),
                  torch.tensor(np.asarray(graph.edge_index)))
        torch.mean((tpred - torch.tensor(target)) ** 2).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 3e-3)
        topt.step()
        # ours
        pred, cache = ours.forward(params, graph, x, v, q)
        grads, _ = ours.backward(params, cache, 2 * (pred - target) / pred.size)
        grads, total = clip_grad_norm(grads, 3e-3)
        clipped += total > 3e-3
        params, state = opt.step(params, grads, state, lr=lr)
    assert 0 < clipped < 8
    theirs = flatten(params_from(m))
    for key, value in flatten(params).items():
        assert _rel(value, theirs[key]) <= 1e-12, key
